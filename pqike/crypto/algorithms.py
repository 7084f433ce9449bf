"""Transform specs: key, salt, IV, block and ICV sizes of the ENCR, INTEG and PRF transforms.

Sizes follow RFC 7296 §3.3.2 and the cipher RFCs (RFC 3602 AES-CBC, RFC 3686/5930 AES-CTR,
RFC 4106/5282 AES-GCM, RFC 4309/5282 AES-CCM, RFC 7634 ChaCha20-Poly1305, RFC 4868 HMAC-SHA2,
RFC 3566/4434 AES-XCBC, RFC 4494/4615 AES-CMAC). Salt lengths match strongSwan
keymat_v2.c create_ike_aead() / derive_child_keys(): 4 for GCM/CTR/ChaCha, 3 for CCM.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from pqike.wire.iana import EncrId, IntegId, PrfId

__all__ = [
    "EncrSpec",
    "IkeSuite",
    "IntegSpec",
    "KeyLengths",
    "PrfSpec",
    "UnsupportedTransform",
    "encr_key_len",
    "encr_spec",
    "integ_spec",
    "prf_spec",
]


class UnsupportedTransform(ValueError):
    """A transform ID (or key length) this implementation does not support."""


@dataclass(frozen=True, slots=True)
class EncrSpec:
    encr: EncrId
    key_bits: tuple[int, ...]  # allowed Key Length attribute values; first is the default
    salt_len: int  # implicit nonce part appended to the key in KEYMAT (RFC 4106 §8.1 style)
    iv_len: int  # explicit IV carried in each message
    block_size: int  # padding alignment inside SK/ESP (1 for stream/AEAD modes)
    icv_len: int  # 0 when integrity comes from a separate INTEG transform
    is_aead: bool
    needs_key_length: bool  # Key Length attribute mandatory in the proposal (RFC 7296 §3.3.5)
    sk_capable: bool  # usable for the IKE SK payload by SkCipher (otherwise ESP-only)


@dataclass(frozen=True, slots=True)
class IntegSpec:
    integ: IntegId
    key_len: int
    icv_len: int


@dataclass(frozen=True, slots=True)
class PrfSpec:
    prf: PrfId
    key_len: int  # preferred key length: size of SK_d, SK_pi, SK_pr (RFC 7296 §2.14)
    out_len: int  # output length, the prf+ block size


_AES = (128, 192, 256)

_ENCR: dict[EncrId, EncrSpec] = {
    e.encr: e
    for e in (
        EncrSpec(EncrId.AES_CBC, _AES, 0, 16, 16, 0, False, True, True),
        # RFC 5930: AES-CTR in IKE; kept for ESP KEYMAT sizing only (SkCipher does not do CTR).
        EncrSpec(EncrId.AES_CTR, _AES, 4, 8, 1, 0, False, True, False),
        EncrSpec(EncrId.AES_CCM_8, _AES, 3, 8, 1, 8, True, True, True),
        EncrSpec(EncrId.AES_CCM_12, _AES, 3, 8, 1, 12, True, True, True),
        EncrSpec(EncrId.AES_CCM_16, _AES, 3, 8, 1, 16, True, True, True),
        EncrSpec(EncrId.AES_GCM_8, _AES, 4, 8, 1, 8, True, True, True),
        EncrSpec(EncrId.AES_GCM_12, _AES, 4, 8, 1, 12, True, True, True),
        EncrSpec(EncrId.AES_GCM_16, _AES, 4, 8, 1, 16, True, True, True),
        EncrSpec(EncrId.CHACHA20_POLY1305, (256,), 4, 8, 1, 16, True, False, True),
        # ESP only (RFC 7296 §5: ENCR_NULL MUST NOT be used for IKE).
        EncrSpec(EncrId.NULL, (0,), 0, 0, 1, 0, False, False, False),
    )
}

_INTEG: dict[IntegId, IntegSpec] = {
    i.integ: i
    for i in (
        IntegSpec(IntegId.HMAC_SHA1_96, 20, 12),
        IntegSpec(IntegId.AES_XCBC_96, 16, 12),
        IntegSpec(IntegId.AES_CMAC_96, 16, 12),
        IntegSpec(IntegId.HMAC_SHA2_256_128, 32, 16),
        IntegSpec(IntegId.HMAC_SHA2_384_192, 48, 24),
        IntegSpec(IntegId.HMAC_SHA2_512_256, 64, 32),
    )
}

_PRF: dict[PrfId, PrfSpec] = {
    p.prf: p
    for p in (
        PrfSpec(PrfId.HMAC_SHA1, 20, 20),
        PrfSpec(PrfId.AES128_XCBC, 16, 16),
        PrfSpec(PrfId.HMAC_SHA2_256, 32, 32),
        PrfSpec(PrfId.HMAC_SHA2_384, 48, 48),
        PrfSpec(PrfId.HMAC_SHA2_512, 64, 64),
        PrfSpec(PrfId.AES128_CMAC, 16, 16),
    )
}


def _name(enum_type: type, value: int) -> str:
    try:
        return f"{enum_type.__name__}.{enum_type(value).name}"
    except ValueError:
        return f"{enum_type.__name__} {value}"


def encr_spec(encr: int) -> EncrSpec:
    spec = _ENCR.get(encr)  # type: ignore[call-overload]  # an int finds its IntEnum key
    if spec is None:
        raise UnsupportedTransform(f"unsupported ENCR transform {_name(EncrId, encr)}")
    return spec


def integ_spec(integ: int) -> IntegSpec:
    spec = _INTEG.get(integ)  # type: ignore[call-overload]  # an int finds its IntEnum key
    if spec is None:
        raise UnsupportedTransform(f"unsupported INTEG transform {_name(IntegId, integ)}")
    return spec


def prf_spec(prf: int) -> PrfSpec:
    spec = _PRF.get(prf)  # type: ignore[call-overload]  # an int finds its IntEnum key
    if spec is None:
        raise UnsupportedTransform(f"unsupported PRF transform {_name(PrfId, prf)}")
    return spec


def encr_key_len(encr: int, key_bits: int | None) -> int:
    """Bytes of encryption KEYMAT for one direction: cipher key plus salt."""
    spec = encr_spec(encr)
    if key_bits is None:
        if spec.needs_key_length:
            raise UnsupportedTransform(f"{spec.encr.name} needs a Key Length attribute")
        key_bits = spec.key_bits[0]
    if key_bits not in spec.key_bits:
        raise UnsupportedTransform(f"{spec.encr.name} does not support a {key_bits}-bit key")
    return key_bits // 8 + spec.salt_len


@dataclass(frozen=True, slots=True)
class KeyLengths:
    """Byte lengths of the IKE SA keys (RFC 7296 §2.14); sk_e includes any AEAD salt."""

    sk_d: int
    sk_a: int
    sk_e: int
    sk_p: int

    @property
    def total(self) -> int:
        return self.sk_d + 2 * self.sk_a + 2 * self.sk_e + 2 * self.sk_p


@dataclass(frozen=True, slots=True)
class IkeSuite:
    """The negotiated IKE SA ENCR/INTEG/PRF transforms (the KE methods don't affect key sizes)."""

    encr: EncrId
    encr_key_bits: int | None
    integ: IntegId  # IntegId.NONE with an AEAD cipher
    prf: PrfId

    def __post_init__(self) -> None:
        spec = encr_spec(self.encr)
        if not spec.sk_capable:
            raise UnsupportedTransform(f"{spec.encr.name} is not supported for IKE SAs")
        encr_key_len(self.encr, self.encr_key_bits)
        if spec.is_aead and self.integ != IntegId.NONE:
            raise UnsupportedTransform(f"{spec.encr.name} is AEAD: INTEG must be NONE")
        if not spec.is_aead:
            integ_spec(self.integ)
        prf_spec(self.prf)

    @property
    def key_lengths(self) -> KeyLengths:
        return _key_lengths(self.encr, self.encr_key_bits, self.integ, self.prf)


@functools.lru_cache(maxsize=64)
def _key_lengths(encr: EncrId, key_bits: int | None, integ: IntegId, prf: PrfId) -> KeyLengths:
    # once per suite, not per key derivation (every IKE_INTERMEDIATE derives the keys anew)
    p = prf_spec(prf).key_len
    a = 0 if encr_spec(encr).is_aead else integ_spec(integ).key_len
    return KeyLengths(sk_d=p, sk_a=a, sk_e=encr_key_len(encr, key_bits), sk_p=p)
