"""Proposal strings at load time: validation, the IKE_SA_INIT key exchange, PFS groups.

Validation uses ``pqike.proposal`` (the real parser, strongSwan's keyword table and
check_proposal() rules). Should that package be missing (it is optional to this one), a
lexical check against strongSwan's keyword list (proposal_keywords_static.txt) still
catches the typos that matter at load time. Either way the error names the bad token.
"""

from __future__ import annotations

import re
from typing import Literal

from kem.ids import KEYWORDS as KE_KEYWORDS

__all__ = ["first_ke", "ke_tokens", "validate_proposal"]

Protocol = Literal["ike", "esp"]


def _family(prefix: str, sizes: tuple[int, ...], suffixes: tuple[str, ...]) -> set[str]:
    return {f"{prefix}{s}{x}" for s in sizes for x in suffixes}


_AEAD = (
    _family(
        "aes",
        (128, 192, 256),
        (
            "gcm8",
            "gcm12",
            "gcm16",
            "gcm64",
            "gcm96",
            "gcm128",
            "ccm8",
            "ccm12",
            "ccm16",
            "ccm64",
            "ccm96",
            "ccm128",
        ),
    )
    | {"aesgcm8", "aesgcm12", "aesgcm16", "aesccm8", "aesccm12", "aesccm16", "chacha20poly1305"}
    | _family("camellia", (128, 192, 256), ("ccm8", "ccm12", "ccm16", "ccm64", "ccm96", "ccm128"))
)
_ENCR = (
    {"aes", "3des", "cast128", "blowfish", "null", "camellia", "serpent", "twofish"}
    | _family("aes", (128, 192, 256), ("", "ctr"))
    | _family("camellia", (128, 192, 256), ("", "ctr"))
    | _family("blowfish", (128, 192, 256), ("",))
    | _family("serpent", (128, 192, 256), ("",))
    | _family("twofish", (128, 192, 256), ("",))
)
_INTEG = {
    "md5",
    "md5_128",
    "sha",
    "sha1",
    "sha1_160",
    "sha256",
    "sha2_256",
    "sha256_96",
    "sha2_256_96",
    "sha384",
    "sha2_384",
    "sha512",
    "sha2_512",
    "aesxcbc",
    "aescmac",
    "aes128gmac",
    "aes192gmac",
    "aes256gmac",
}
_PRF = {"prfmd5", "prfsha1", "prfsha256", "prfsha384", "prfsha512", "prfaesxcbc", "prfaescmac"}
_ESN = {"esn", "noesn"}
_ADDKE = re.compile(r"ke([1-7])_(\w+)")


def _kind(token: str) -> str | None:
    if token in _AEAD:
        return "aead"
    if token in _ENCR:
        return "encr"
    if token in _INTEG:
        return "integ"
    if token in _PRF:
        return "prf"
    if token in KE_KEYWORDS:
        return "ke"
    if token in _ESN:
        return "esn"
    m = _ADDKE.fullmatch(token)
    if m and (m.group(2) in KE_KEYWORDS or m.group(2) == "none"):
        return "addke"
    return None


def _lexical(text: str, protocol: Protocol) -> None:
    tokens = text.split("-")
    kinds = []
    for tok in tokens:
        kind = _kind(tok)
        if kind is None:
            raise ValueError(f"proposal token '{tok}' unknown")
        if kind == "esn" and protocol == "ike":
            raise ValueError(f"proposal token '{tok}' is not valid in an IKE proposal")
        if kind == "prf" and protocol == "esp":
            raise ValueError(f"proposal token '{tok}' is not valid in an ESP proposal")
        kinds.append(kind)
    if "encr" not in kinds and "aead" not in kinds:
        raise ValueError(f"proposal '{text}' has no encryption algorithm")
    if "encr" in kinds and "integ" not in kinds and text != "null":
        raise ValueError(f"proposal '{text}' has no integrity algorithm")
    if protocol == "ike" and "ke" not in kinds:
        raise ValueError(f"proposal '{text}' has no key exchange method")


def validate_proposal(text: str, protocol: Protocol) -> None:
    """Raise ValueError naming the offending token; ``default`` is always accepted."""
    text = text.strip()
    if text.lower() == "default":
        return
    try:
        from pqike.proposal import ProposalError, parse_proposal
        from pqike.wire.iana import ProtocolId
    except ImportError:
        _lexical(text, protocol)
        return
    try:
        parse_proposal(ProtocolId.IKE if protocol == "ike" else ProtocolId.ESP, text)
    except ProposalError as e:
        if e.token == text:  # a rule about the whole proposal, not one token
            raise ValueError(f"proposal '{text}': {e.reason}") from None
        if e.reason == "algorithm not recognized":
            raise ValueError(f"proposal token '{e.token}' unknown") from None
        raise ValueError(f"proposal token '{e.token}': {e.reason}") from None


def ke_tokens(text: str) -> list[str]:
    """Key exchange tokens in a proposal, in order (``x25519``, ``ke1_kyber3``, ...)."""
    return [t for t in text.lower().split("-") if _kind(t) in ("ke", "addke")]


def first_ke(proposals: tuple[str, ...]) -> str | None:
    """The KE method an initiator sends in IKE_SA_INIT: the first one of the first proposal."""
    for text in proposals[:1]:
        for tok in text.lower().split("-"):
            if _kind(tok) == "ke":
                return tok
    return None
