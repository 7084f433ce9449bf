"""IKEv2 key schedule (RFC 7296 §2.13-2.18, RFC 9242 §3.3, RFC 9370 §2.2.2/2.2.4, RFC 8784 §3).
Pure functions.

Every formula was checked against strongSwan src/libcharon/sa/ikev2/keymat_v2.c (master,
2026-05) and against the keys in strongSwan 6.1.0 level-4 logs (tests/data/strongswan61_keys.json,
tests/data/strongswan61_ppk_keys.json for the PPK step).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pqike.crypto.algorithms import (
    KeyLengths,
    encr_key_len,
    encr_spec,
    integ_spec,
    prf_spec,
)
from pqike.crypto.mac import verify_icv
from pqike.crypto.prf import prf, prf_plus
from pqike.wire.iana import EncrId, IntegId, PrfId

__all__ = [
    "KEY_PAD",
    "ChildKeys",
    "IkeKeys",
    "KeyLengths",
    "derive_child_keys",
    "derive_ike_keys",
    "initiator_signed_octets",
    "int_auth",
    "int_auth_octets",
    "ppk_ike_keys",
    "ppk_key",
    "psk_auth",
    "rekey_ike_keys",
    "responder_signed_octets",
    "skeyseed",
    "skeyseed_additional",
    "skeyseed_rekey",
    "update_ike_keys",
    "verify_psk_auth",
]

KEY_PAD = b"Key Pad for IKEv2"  # RFC 7296 §2.15: 17 octets, no NUL

_FIXED_KEY_PRFS = (PrfId.AES128_XCBC, PrfId.AES128_CMAC)


def _spi(spi: bytes | int) -> bytes:
    if type(spi) is bytes and len(spi) == 8:  # an IKE_SA's own SPIs: four key updates each
        return spi
    b = spi.to_bytes(8, "big") if isinstance(spi, int) else bytes(spi)
    if len(b) != 8:
        raise ValueError(f"an IKE SPI is 8 bytes, got {len(b)}")
    return b


@dataclass(frozen=True, slots=True)
class IkeKeys:
    """The seven IKE SA keys. repr() hides the key material."""

    sk_d: bytes = field(repr=False)
    sk_ai: bytes = field(repr=False)
    sk_ar: bytes = field(repr=False)
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    sk_pi: bytes = field(repr=False)
    sk_pr: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ChildKeys:
    """CHILD_SA KEYMAT split (RFC 7296 §2.17); encr keys include the AEAD/CTR salt."""

    encr_i: bytes = field(repr=False)  # initiator-to-responder
    integ_i: bytes = field(repr=False)
    encr_r: bytes = field(repr=False)  # responder-to-initiator
    integ_r: bytes = field(repr=False)


# --- IKE SA keys -------------------------------------------------------------------------


def skeyseed(prf_id: PrfId, ni: bytes, nr: bytes, g_ir: bytes) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir) after IKE_SA_INIT (RFC 7296 §2.14).

    For the fixed-key PRFs (AES128-XCBC, AES128-CMAC) only the first half-key of each nonce
    is used: 8 + 8 bytes (RFC 7296 §2.14; keymat_v2.c derive_ike_keys() "fixed_nonce").
    """
    if prf_id in _FIXED_KEY_PRFS:
        half = prf_spec(prf_id).key_len // 2
        ni, nr = ni[:half], nr[:half]
    return prf(prf_id, ni + nr, g_ir)


def derive_ike_keys(
    prf_id: PrfId,
    skeyseed: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes | int,
    spi_r: bytes | int,
    lengths: KeyLengths,
) -> IkeKeys:
    """{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni|Nr|SPIi|SPIr).

    Full nonces in the seed even for XCBC/CMAC (keymat_v2.c "full_nonce").
    """
    d, a, e = lengths.sk_d, lengths.sk_a, lengths.sk_e
    ar = d + a  # the end of SK_ai, then of each key in turn
    ei = ar + a
    er = ei + e
    pi = er + e
    pr = pi + lengths.sk_p
    end = pr + lengths.sk_p
    keymat = prf_plus(prf_id, skeyseed, ni + nr + _spi(spi_i) + _spi(spi_r), end)
    return IkeKeys(
        keymat[:d],
        keymat[d:ar],
        keymat[ar:ei],
        keymat[ei:er],
        keymat[er:pi],
        keymat[pi:pr],
        keymat[pr:end],
    )


def skeyseed_additional(prf_id: PrfId, sk_d: bytes, sk_n: bytes, ni: bytes, nr: bytes) -> bytes:
    """SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr) after the n-th IKE_INTERMEDIATE KE.

    RFC 9370 §2.2.2. strongSwan runs this as a "rekey" with the SA's own PRF and SK_d
    (keymat_v2.c: secret = chunk_cat("scc", secret, full_nonce, add_secret), add_secret empty).
    Ni/Nr are the full IKE_SA_INIT nonces, no XCBC truncation.
    """
    return prf(prf_id, sk_d, sk_n + ni + nr)


def update_ike_keys(
    prf_id: PrfId,
    keys: IkeKeys,
    sk_n: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes | int,
    spi_r: bytes | int,
    lengths: KeyLengths,
) -> IkeKeys:
    """The IKE SA keys after the n-th additional key exchange (same SPIs, same suite)."""
    seed = skeyseed_additional(prf_id, keys.sk_d, sk_n, ni, nr)
    return derive_ike_keys(prf_id, seed, ni, nr, spi_i, spi_r, lengths)


def skeyseed_rekey(
    old_prf: PrfId,
    old_sk_d: bytes,
    ke_secret: bytes,
    ni: bytes,
    nr: bytes,
    add_secrets: Iterable[bytes] = (),
) -> bytes:
    """IKE SA rekey: SKEYSEED = prf(SK_d(old), SK(0) | Ni | Nr | SK(1) | ... | SK(n)).

    RFC 7296 §2.18 extended by RFC 9370 §2.2.4; SK(1..n) from IKE_FOLLOWUP_KE in exchange order;
    Ni/Nr from CREATE_CHILD_SA. keymat_v2.c uses the OLD SA's PRF here.
    """
    return prf(old_prf, old_sk_d, ke_secret + ni + nr + b"".join(add_secrets))


def rekey_ike_keys(
    old_prf: PrfId,
    old_sk_d: bytes,
    ke_secret: bytes,
    ni: bytes,
    nr: bytes,
    new_spi_i: bytes | int,
    new_spi_r: bytes | int,
    new_lengths: KeyLengths,
    add_secrets: Iterable[bytes] = (),
) -> IkeKeys:
    """Keys of the new IKE SA from a rekey.

    prf+ also runs with the OLD SA's PRF (keymat_v2.c: "use OLD SAs PRF functions for both
    prf_plus and prf"), over the NEW SPIs; key lengths come from the NEW SA's suite (strongSwan
    sizes SK_d/SK_p with the new PRF's key size).
    """
    seed = skeyseed_rekey(old_prf, old_sk_d, ke_secret, ni, nr, add_secrets)
    return derive_ike_keys(old_prf, seed, ni, nr, new_spi_i, new_spi_r, new_lengths)


# --- Postquantum Preshared Keys (RFC 8784) ----------------------------------------------


def ppk_key(prf_id: PrfId, ppk: bytes, key: bytes) -> bytes:
    """One RFC 8784 §3 step: SK_x = prf+(PPK, SK_x'), as long as SK_x'.

    SK_x' is the key of RFC 7296 (after every RFC 9370 ADDKE): the PPK keys prf+, the old key
    is its seed (keymat_v2.c derive_ppk_key(): KDF_PARAM_KEY = ppk, KDF_PARAM_SALT = key).
    """
    return prf_plus(prf_id, ppk, key, len(key))


def ppk_ike_keys(prf_id: PrfId, ppk: bytes, keys: IkeKeys) -> IkeKeys:
    """SK_d, SK_pi and SK_pr with the PPK mixed in (RFC 8784 §3); SK_a*/SK_e* stay as they are.

    Applied once both AUTH payloads are done: SK_pi/SK_pr then authenticate the PPK (the AUTH
    payloads use them), and SK_d carries it into every CHILD_SA and IKE_SA rekey.
    """
    return IkeKeys(
        sk_d=ppk_key(prf_id, ppk, keys.sk_d),
        sk_ai=keys.sk_ai,
        sk_ar=keys.sk_ar,
        sk_ei=keys.sk_ei,
        sk_er=keys.sk_er,
        sk_pi=ppk_key(prf_id, ppk, keys.sk_pi),
        sk_pr=ppk_key(prf_id, ppk, keys.sk_pr),
    )


# --- CHILD_SA keys -----------------------------------------------------------------------


def derive_child_keys(
    prf_id: PrfId,
    sk_d: bytes,
    ni: bytes,
    nr: bytes,
    *,
    encr: EncrId,
    encr_key_bits: int | None,
    integ: IntegId = IntegId.NONE,
    ke_secret: bytes = b"",
    add_secrets: Iterable[bytes] = (),
) -> ChildKeys:
    """KEYMAT = prf+(SK_d, [SK(0) |] Ni | Nr [| SK(1) | ... | SK(n)]) (RFC 7296 §2.17, RFC 9370).

    Split: encr_i, integ_i, encr_r, integ_r (keymat_v2.c derive_child_keys(), "aaaa"). ESP keys
    for GCM/CTR/ChaCha carry a 4-byte salt, CCM a 3-byte salt (RFC 4106/3686/7634/4309).
    For the CHILD_SA of IKE_AUTH pass no ke_secret (Ni/Nr are the IKE_SA_INIT nonces).
    """
    encr_len = encr_key_len(encr, encr_key_bits)
    if encr_spec(encr).is_aead or integ == IntegId.NONE:
        integ_len = 0
    else:
        integ_len = integ_spec(integ).key_len
    seed = ke_secret + ni + nr + b"".join(add_secrets)
    keymat = prf_plus(prf_id, sk_d, seed, 2 * encr_len + 2 * integ_len)
    a = encr_len
    b = a + integ_len
    c = b + encr_len
    return ChildKeys(encr_i=keymat[:a], integ_i=keymat[a:b], encr_r=keymat[b:c], integ_r=keymat[c:])


# --- IntAuth and AUTH --------------------------------------------------------------------


def int_auth(prf_id: PrfId, sk_p: bytes, previous: bytes | None, a: bytes, p: bytes = b"") -> bytes:
    """One RFC 9242 §3.3.2 chain step: IntAuth_N = prf(SK_p, IntAuth_(N-1) | A | P).

    sk_p is SK_pi for messages the initiator sent, SK_pr for the responder's, in both cases the
    key in force for that IKE_INTERMEDIATE exchange, i.e. before its KE is mixed in
    (keymat_v2.c get_int_auth(): prf(skp, prev | data)). previous is None for the first step.
    """
    return prf(prf_id, sk_p, (previous or b"") + a + p)


def int_auth_octets(int_auth_i: bytes | None, int_auth_r: bytes | None, ike_auth_mid: int) -> bytes:
    """IntAuth = IntAuth_iN | IntAuth_rN | IKE_AUTH_MID (4 bytes, big-endian).

    Empty when no IKE_INTERMEDIATE ran. The same value goes into both peers' signed octets
    (strongSwan ike_auth.c).
    """
    if not int_auth_i and not int_auth_r:
        return b""
    if not int_auth_i or not int_auth_r:
        raise ValueError("IntAuth needs both the initiator's and the responder's chain value")
    return int_auth_i + int_auth_r + ike_auth_mid.to_bytes(4, "big")


def _signed_octets(
    real_message: bytes,
    nonce: bytes,
    prf_id: PrfId,
    sk_p: bytes,
    id_type: int,
    id_data: bytes,
    int_auth: bytes,
) -> bytes:
    # RFC 7296 §2.15 + RFC 9242 §3.3.2; keymat_v2.c get_auth_octets().
    # IDx' = ID Type | RESERVED(3) | ID data, i.e. the ID payload body.
    maced_id = prf(prf_id, sk_p, bytes([id_type, 0, 0, 0]) + id_data)
    return real_message + nonce + maced_id + int_auth


def initiator_signed_octets(
    real_message1: bytes,
    nonce_r: bytes,
    prf_id: PrfId,
    sk_pi: bytes,
    id_type: int,
    id_data: bytes,
    int_auth: bytes = b"",
) -> bytes:
    """RealMessage1 | NonceRData | prf(SK_pi, IDi') | IntAuth."""
    return _signed_octets(real_message1, nonce_r, prf_id, sk_pi, id_type, id_data, int_auth)


def responder_signed_octets(
    real_message2: bytes,
    nonce_i: bytes,
    prf_id: PrfId,
    sk_pr: bytes,
    id_type: int,
    id_data: bytes,
    int_auth: bytes = b"",
) -> bytes:
    """RealMessage2 | NonceIData | prf(SK_pr, IDr') | IntAuth."""
    return _signed_octets(real_message2, nonce_i, prf_id, sk_pr, id_type, id_data, int_auth)


def psk_auth(prf_id: PrfId, psk: bytes, signed_octets: bytes) -> bytes:
    """AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>) (RFC 7296 §2.15)."""
    return prf(prf_id, prf(prf_id, psk, KEY_PAD), signed_octets)


def verify_psk_auth(prf_id: PrfId, psk: bytes, signed_octets: bytes, auth_data: bytes) -> bool:
    """Constant-time check of a received PSK AUTH value."""
    return verify_icv(psk_auth(prf_id, psk, signed_octets), auth_data)
