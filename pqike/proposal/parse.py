"""strongSwan proposal strings (``aes256-sha256-x25519-ke1_mlkem768``) to Proposals.

Mirrors libstrongswan: keywords from crypto/proposal/proposal_keywords_static.txt (exact,
case-sensitive match), ``ke<1-7>_<method>`` from crypto/key_exchange.c
additional_key_exchange_parser() (prefix case-insensitive), the per-protocol fix-ups of
proposal.c check_proposal(), and ``default`` from vici_config.c add_default_proposals().
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from kem.ids import KEYWORDS as KE_KEYWORDS
from pqike.proposal.model import Proposal, Transform, is_aead
from pqike.wire.iana import (
    ADDKE_TYPES,
    EncrId,
    EsnId,
    IntegId,
    KeMethod,
    PrfId,
    ProtocolId,
    TransformType,
)

__all__ = [
    "KEYWORDS",
    "ProposalError",
    "default_proposals",
    "keyword_string",
    "parse_proposal",
    "parse_proposals",
]

T = TransformType


class ProposalError(ValueError):
    """A proposal string that strongSwan would refuse; names the token and the reason."""

    def __init__(self, token: str, reason: str, proposal: str = "") -> None:
        self.token = token
        self.reason = reason
        self.proposal = proposal
        where = f" in proposal '{proposal}'" if proposal else ""
        super().__init__(f"'{token}'{where}: {reason}")


def _encr(words: Iterable[str], alg: EncrId, bits: int | None) -> dict[str, Transform]:
    return {w: Transform(T.ENCR, alg, bits) for w in words}


def _sized(prefix: str, alg: EncrId, *aliases: str) -> dict[str, Transform]:
    """``aes128gcm16`` style keywords for 128/192/256 bits, with the given suffixes."""
    return {
        f"{prefix}{bits}{alias}": Transform(T.ENCR, alg, bits)
        for bits in (128, 192, 256)
        for alias in aliases
    }


def _build_keywords() -> dict[str, Transform]:
    kw: dict[str, Transform] = {}
    kw |= _encr(["null"], EncrId.NULL, None)
    kw |= _encr(["des"], EncrId.DES, None)
    kw |= _encr(["3des"], EncrId.TRIPLE_DES, None)
    kw |= _sized("aes", EncrId.AES_CBC, "")
    kw |= _encr(["aes"], EncrId.AES_CBC, 128)
    kw |= _sized("aes", EncrId.AES_CTR, "ctr")
    # ICV length in bytes or bits; a bare "ccm"/"gcm" means the 16-byte ICV
    for mode, ids in (
        ("ccm", (EncrId.AES_CCM_8, EncrId.AES_CCM_12, EncrId.AES_CCM_16)),
        ("gcm", (EncrId.AES_GCM_8, EncrId.AES_GCM_12, EncrId.AES_GCM_16)),
    ):
        kw |= _sized("aes", ids[0], f"{mode}8", f"{mode}64")
        kw |= _sized("aes", ids[1], f"{mode}12", f"{mode}96")
        kw |= _sized("aes", ids[2], f"{mode}16", f"{mode}128", mode)
    kw |= _sized("aes", EncrId.NULL_AUTH_AES_GMAC, "gmac")
    kw |= _encr(["chacha20poly1305"], EncrId.CHACHA20_POLY1305, None)
    kw |= _encr(["chacha20poly1305compat"], EncrId.CHACHA20_POLY1305, 256)
    kw |= _sized("blowfish", EncrId.BLOWFISH, "")
    kw |= _encr(["blowfish"], EncrId.BLOWFISH, 128)
    kw |= _sized("camellia", EncrId.CAMELLIA_CBC, "")
    kw |= _encr(["camellia"], EncrId.CAMELLIA_CBC, 128)
    kw |= _sized("camellia", EncrId.CAMELLIA_CTR, "ctr")
    kw |= _sized("camellia", EncrId.CAMELLIA_CCM_8, "ccm8", "ccm64")
    kw |= _sized("camellia", EncrId.CAMELLIA_CCM_12, "ccm12", "ccm96")
    kw |= _sized("camellia", EncrId.CAMELLIA_CCM_16, "ccm16", "ccm128")
    kw |= _encr(["cast128"], EncrId.CAST, 128)
    for words, integ in (
        (("sha1", "sha"), IntegId.HMAC_SHA1_96),
        (("sha1_160",), IntegId.HMAC_SHA1_160),
        (("sha256", "sha2_256"), IntegId.HMAC_SHA2_256_128),
        (("sha256_96", "sha2_256_96"), IntegId.HMAC_SHA2_256_96),
        (("sha384", "sha2_384"), IntegId.HMAC_SHA2_384_192),
        (("sha512", "sha2_512"), IntegId.HMAC_SHA2_512_256),
        (("md5",), IntegId.HMAC_MD5_96),
        (("md5_128",), IntegId.HMAC_MD5_128),
        (("aesxcbc",), IntegId.AES_XCBC_96),
        (("aescmac",), IntegId.AES_CMAC_96),
    ):
        kw |= {w: Transform(T.INTEG, integ) for w in words}
    for word, prf in (
        ("prfsha1", PrfId.HMAC_SHA1),
        ("prfsha256", PrfId.HMAC_SHA2_256),
        ("prfsha384", PrfId.HMAC_SHA2_384),
        ("prfsha512", PrfId.HMAC_SHA2_512),
        ("prfmd5", PrfId.HMAC_MD5),
        ("prfaesxcbc", PrfId.AES128_XCBC),
        ("prfaescmac", PrfId.AES128_CMAC),
    ):
        kw[word] = Transform(T.PRF, prf)
    kw |= {w: Transform(T.KE, KeMethod.NONE) for w in ("none", "modpnone")}
    kw |= {w: Transform(T.KE, m) for w, m in KE_KEYWORDS.items()}
    kw["noesn"] = Transform(T.ESN, EsnId.NO_EXT_SEQ)
    kw["esn"] = Transform(T.ESN, EsnId.EXT_SEQ)
    return kw


KEYWORDS: dict[str, Transform] = _build_keywords()

_GMAC_INTEG = {128: IntegId.AES_128_GMAC, 192: IntegId.AES_192_GMAC, 256: IntegId.AES_256_GMAC}

# Reverse map, first keyword listed wins; AH's GMAC is configured as the cipher keyword.
_WORD: dict[Transform, str] = {
    **{Transform(T.INTEG, i): f"aes{bits}gmac" for bits, i in _GMAC_INTEG.items()},
    **{t: w for w, t in reversed(KEYWORDS.items())},
}

# strongSwan keywords whose algorithms pqike has no ID for (strongSwan-private or testing).
_UNSUPPORTED = re.compile(
    r"(serpent|twofish)(128|192|256)?|(prf)?camelliaxcbc|modpnull|gost(256|512)"
)

_ADDKE = re.compile(r"(?i:ke)(\d)_(.+)")

# proposal.c integ_prf_map: the PRF assumed for an integrity algorithm when none is given
_INTEG_PRF: dict[int, PrfId] = {
    IntegId.HMAC_SHA1_96: PrfId.HMAC_SHA1,
    IntegId.HMAC_SHA1_160: PrfId.HMAC_SHA1,
    IntegId.HMAC_SHA2_256_128: PrfId.HMAC_SHA2_256,
    IntegId.HMAC_SHA2_384_192: PrfId.HMAC_SHA2_384,
    IntegId.HMAC_SHA2_512_256: PrfId.HMAC_SHA2_512,
    IntegId.HMAC_MD5_96: PrfId.HMAC_MD5,
    IntegId.HMAC_MD5_128: PrfId.HMAC_MD5,
    IntegId.AES_XCBC_96: PrfId.AES128_XCBC,
    IntegId.AES_CMAC_96: PrfId.AES128_CMAC,
}


def _token(word: str, text: str) -> Transform:
    if not word:
        raise ProposalError(word, "empty algorithm (stray '-')", text)
    if word in KEYWORDS:
        return KEYWORDS[word]
    if _UNSUPPORTED.fullmatch(word):
        raise ProposalError(word, "strongSwan algorithm without an ID in pqike", text)
    m = _ADDKE.fullmatch(word)
    if m:
        num, method = int(m.group(1)), m.group(2)
        if not 1 <= num <= len(ADDKE_TYPES):
            raise ProposalError(word, "additional key exchanges are ke1_ .. ke7_", text)
        base = KEYWORDS.get(method)
        if base is None or base.type != T.KE:
            raise ProposalError(word, f"'{method}' is not a key exchange method", text)
        return Transform(ADDKE_TYPES[num - 1], base.id)
    if word.lower() in KEYWORDS or word.lower() == "default":
        raise ProposalError(word, f"keywords are case-sensitive, use '{word.lower()}'", text)
    raise ProposalError(word, "algorithm not recognized", text)


def _check(protocol: ProtocolId, ts: list[Transform], text: str) -> list[Transform]:
    """proposal.c check_proposal(): derive/strip transforms per protocol, reject the rest."""

    def has(ttype: TransformType) -> bool:
        return any(t.type == ttype for t in ts)

    if protocol == ProtocolId.IKE:
        if not has(T.PRF):
            # "No explicit PRF found. We assume the same algorithm as used for integrity."
            ts += [
                Transform(T.PRF, _INTEG_PRF[t.id])
                for t in ts
                if t.type == T.INTEG and t.id in _INTEG_PRF
            ]
        if not has(T.PRF):
            raise ProposalError(
                text, "a PRF algorithm is mandatory in IKE proposals (add e.g. prfsha256)"
            )
        ts = [t for t in ts if not (t.type == T.KE and t.is_none)]  # KE is never optional here
        if not has(T.KE):
            raise ProposalError(
                text, "a key exchange method (DH group) is mandatory in IKE proposals"
            )
    else:
        ts = [t for t in ts if t.type != T.PRF]  # strongSwan drops PRFs from ESP/AH silently

    encrs = [t for t in ts if t.type == T.ENCR]
    if protocol in (ProtocolId.IKE, ProtocolId.ESP):
        if not encrs:
            raise ProposalError(
                text, f"an encryption algorithm is mandatory in {protocol.name} proposals"
            )
        aead = [t for t in encrs if is_aead(t.id)]
        if aead and len(aead) != len(encrs):
            classic = next(t for t in encrs if not is_aead(t.id))
            raise ProposalError(
                text,
                f"classic ({classic.algorithm}) and combined-mode/AEAD ({aead[0].algorithm}) "
                f"encryption can't be in the same {protocol.name} proposal; "
                "configure two proposals",
            )
        if aead:
            ts = [t for t in ts if t.type != T.INTEG]  # AEAD proposals MUST NOT carry INTEG
        elif protocol == ProtocolId.IKE and not has(T.INTEG):
            raise ProposalError(
                text,
                "an integrity algorithm is mandatory in IKE "
                "proposals with classic (non-AEAD) encryption",
            )
    else:  # AH: only AES-GMAC survives, as the matching integrity algorithm
        out = []
        for t in ts:
            if t.type != T.ENCR:
                out.append(t)
            elif t.id == EncrId.NULL_AUTH_AES_GMAC and t.key_length in _GMAC_INTEG:
                out.append(Transform(T.INTEG, _GMAC_INTEG[t.key_length]))
        ts = out
        if not has(T.INTEG):
            raise ProposalError(text, "an integrity algorithm is mandatory in AH proposals")

    if protocol in (ProtocolId.ESP, ProtocolId.AH) and not has(T.ESN):
        ts.append(Transform(T.ESN, EsnId.NO_EXT_SEQ))  # "ESN not specified, assume not supported"
    return ts


def parse_proposal(protocol: ProtocolId, text: str) -> Proposal:
    """One proposal string, e.g. ``aes256-sha256-x25519-ke1_mlkem768``.

    Tokens are separated by ``-`` (spaces around them are ignored); several algorithms of a
    type are kept in the order given, which is the order of preference.
    """
    protocol = ProtocolId(protocol)
    if protocol not in (ProtocolId.IKE, ProtocolId.ESP, ProtocolId.AH):
        raise ProposalError(text, f"no proposals for protocol {protocol.name}")
    if text.strip().lower() == "default":
        raise ProposalError(text, "'default' expands to several proposals; use parse_proposals()")
    ts = [_token(word.strip(" "), text) for word in text.split("-")]
    return Proposal(protocol, tuple(_check(protocol, ts, text)))


def parse_proposals(
    protocol: ProtocolId,
    text: str | Iterable[str],
    *,
    supported: Callable[[Transform], bool] | None = None,
) -> tuple[Proposal, ...]:
    """A swanctl ``proposals``/``esp_proposals`` value: comma-separated, or a list.

    ``default`` (any case) expands to :func:`default_proposals`; ``supported`` filters it.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[Proposal] = []
    for item in items:
        item = item.strip()
        if item.lower() == "default":
            out += default_proposals(protocol, supported=supported)
        else:
            out.append(parse_proposal(protocol, item))
    if not out:
        raise ProposalError(str(text), "no proposals given")
    return tuple(out)


# proposal.c add_supported_ke_methods(): rounds by strength, weak/odd groups left out.
_DEFAULT_KE = (
    KeMethod.ECP_256,
    KeMethod.ECP_384,
    KeMethod.ECP_521,
    KeMethod.ECP_256_BP,
    KeMethod.ECP_384_BP,
    KeMethod.ECP_512_BP,
    KeMethod.CURVE_25519,
    KeMethod.CURVE_448,
    KeMethod.MODP_3072,
    KeMethod.MODP_4096,
    KeMethod.MODP_6144,
    KeMethod.MODP_8192,
    KeMethod.MODP_2048,
)
_SIZES = (128, 192, 256)


def _defaults(protocol: ProtocolId, aead: bool) -> list[Transform]:
    ke = [Transform(T.KE, m) for m in _DEFAULT_KE]
    if protocol == ProtocolId.IKE:
        if aead:
            encr = [
                Transform(T.ENCR, e, b)
                for e in (EncrId.AES_GCM_16, EncrId.AES_CCM_16, EncrId.CAMELLIA_CCM_16)
                for b in _SIZES
            ]
            encr.append(Transform(T.ENCR, EncrId.CHACHA20_POLY1305))
            encr += [
                Transform(T.ENCR, e, b)
                for e in (
                    EncrId.AES_GCM_12,
                    EncrId.AES_GCM_8,
                    EncrId.AES_CCM_12,
                    EncrId.AES_CCM_8,
                    EncrId.CAMELLIA_CCM_12,
                    EncrId.CAMELLIA_CCM_8,
                )
                for b in _SIZES
            ]
            integ: list[Transform] = []
        else:
            encr = [
                Transform(T.ENCR, e, b)
                for e in (EncrId.AES_CBC, EncrId.AES_CTR, EncrId.CAMELLIA_CBC, EncrId.CAMELLIA_CTR)
                for b in _SIZES
            ]
            encr.append(Transform(T.ENCR, EncrId.TRIPLE_DES))
            integ = [
                Transform(T.INTEG, i)
                for i in (
                    IntegId.HMAC_SHA2_256_128,
                    IntegId.HMAC_SHA2_384_192,
                    IntegId.HMAC_SHA2_512_256,
                    IntegId.AES_XCBC_96,
                    IntegId.AES_CMAC_96,
                    IntegId.HMAC_SHA1_96,
                )
            ]
        prf = [
            Transform(T.PRF, p)
            for p in (
                PrfId.HMAC_SHA2_256,
                PrfId.HMAC_SHA2_384,
                PrfId.HMAC_SHA2_512,
                PrfId.AES128_XCBC,
                PrfId.AES128_CMAC,
                PrfId.HMAC_SHA1,
            )
        ]
        return [*encr, *integ, *prf, *ke]
    esn = [Transform(T.ESN, EsnId.NO_EXT_SEQ)]
    pfs = [*ke, Transform(T.KE, KeMethod.NONE)]  # "add all supported KE methods, but optional"
    if aead:
        return [*(Transform(T.ENCR, EncrId.AES_GCM_16, b) for b in _SIZES), *esn, *pfs]
    integ = [
        Transform(T.INTEG, i)
        for i in (
            IntegId.HMAC_SHA2_256_128,
            IntegId.HMAC_SHA2_384_192,
            IntegId.HMAC_SHA2_512_256,
            IntegId.HMAC_SHA1_96,
            IntegId.AES_XCBC_96,
        )
    ]
    encr = (
        [] if protocol == ProtocolId.AH else [Transform(T.ENCR, EncrId.AES_CBC, b) for b in _SIZES]
    )
    return [*encr, *integ, *esn, *pfs]


def default_proposals(
    protocol: ProtocolId, *, supported: Callable[[Transform], bool] | None = None
) -> tuple[Proposal, ...]:
    """strongSwan's ``default``: IKE prefers classic over AEAD, ESP AEAD over classic, AH
    has no AEAD proposal (vici_config.c add_default_proposals(), proposal.c
    proposal_create_default[_aead]()).

    strongSwan builds these from the algorithms its loaded plugins provide; pass
    ``supported`` to do the same with what pqike implements. Within one strength round the
    order here is fixed, where strongSwan's follows plugin registration order. A proposal
    left without a mandatory transform type after filtering is dropped.
    """
    protocol = ProtocolId(protocol)
    keep = supported or (lambda _t: True)
    order = (False, True) if protocol == ProtocolId.IKE else (True, False)
    out: list[Proposal] = []
    for aead in order:
        if aead and protocol == ProtocolId.AH:
            continue
        ts = [t for t in _defaults(protocol, aead) if t.is_none or keep(t)]
        try:
            out.append(Proposal(protocol, tuple(_check(protocol, ts, "default"))))
        except ProposalError:
            continue
    return tuple(out)


def keyword_string(proposal: Proposal) -> str:
    """The proposal as a strongSwan proposal string (``aes256-sha256-x25519-ke1_mlkem768``);
    parsing it gives the same transforms back."""
    words = []
    for t in proposal.transforms:
        if t.type in ADDKE_TYPES:
            base = _WORD.get(Transform(T.KE, t.id))
            word = base and f"ke{t.type - T.ADDKE1 + 1}_{base}"
        else:
            word = _WORD.get(t)
        if word is None:
            raise ProposalError(str(t), "no strongSwan keyword for this transform")
        words.append(word)
    return "-".join(words)
