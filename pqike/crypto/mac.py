"""MAC building blocks behind the PRF and INTEG transforms: HMAC, AES-CMAC, AES-XCBC-MAC.

HMAC and CMAC come from ``cryptography``. It has no AES-XCBC-MAC (RFC 3566), so that one is
composed here from the library's AES-CBC: XCBC is a CBC-MAC under K1 with the last block
masked by K2 or K3, i.e. the last ciphertext block of AES-CBC(K1, IV=0, M').
"""

from __future__ import annotations

import hmac as _hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _chmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from pqike.crypto.algorithms import UnsupportedTransform, integ_spec
from pqike.wire.iana import IntegId

__all__ = ["aes_cmac", "aes_xcbc_mac", "hmac_digest", "integ_hash", "integ_icv", "verify_icv"]

AES_BLOCK = 16


def hmac_digest(hash_alg: hashes.HashAlgorithm, key: bytes, data: bytes) -> bytes:
    h = _chmac.HMAC(key, hash_alg)
    h.update(data)
    return h.finalize()


def aes_cmac(key: bytes, data: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def _aes_ecb_block(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def aes_xcbc_mac(key: bytes, data: bytes) -> bytes:
    """AES-XCBC-MAC (RFC 3566) with a 16-byte key; full 16-byte output."""
    if len(key) != AES_BLOCK:
        raise ValueError("AES-XCBC-MAC needs a 16-byte key")
    k1, k2, k3 = (_aes_ecb_block(key, bytes([i]) * AES_BLOCK) for i in (1, 2, 3))
    if data and len(data) % AES_BLOCK == 0:
        head, last, mask = data[:-AES_BLOCK], data[-AES_BLOCK:], k2
    else:
        cut = len(data) - len(data) % AES_BLOCK
        head, mask = data[:cut], k3
        last = (data[cut:] + b"\x80").ljust(AES_BLOCK, b"\x00")
    last = bytes(a ^ b for a, b in zip(last, mask, strict=True))
    enc = Cipher(algorithms.AES(k1), modes.CBC(bytes(AES_BLOCK))).encryptor()
    out = enc.update(head + last) + enc.finalize()
    return out[-AES_BLOCK:]


_INTEG_HASH: dict[IntegId, hashes.HashAlgorithm] = {  # stateless: one object each
    IntegId.HMAC_SHA1_96: hashes.SHA1(),
    IntegId.HMAC_SHA2_256_128: hashes.SHA256(),
    IntegId.HMAC_SHA2_384_192: hashes.SHA384(),
    IntegId.HMAC_SHA2_512_256: hashes.SHA512(),
}


def integ_hash(integ: IntegId) -> hashes.HashAlgorithm | None:
    """The hash of an HMAC INTEG transform; None for the AES-based ones."""
    return _INTEG_HASH.get(integ)


def integ_icv(integ: IntegId, key: bytes, data: bytes) -> bytes:
    """Truncated ICV of an INTEG transform (RFC 2404, 3566, 4494, 4868)."""
    spec = integ_spec(integ)
    if len(key) != spec.key_len:
        raise ValueError(f"{spec.integ.name} needs a {spec.key_len}-byte key, got {len(key)}")
    if spec.integ in _INTEG_HASH:
        full = hmac_digest(_INTEG_HASH[spec.integ], key, data)
    elif spec.integ == IntegId.AES_XCBC_96:
        full = aes_xcbc_mac(key, data)
    elif spec.integ == IntegId.AES_CMAC_96:
        full = aes_cmac(key, data)
    else:  # pragma: no cover - table and dispatch out of sync
        raise UnsupportedTransform(f"unsupported INTEG transform {spec.integ.name}")
    return full[: spec.icv_len]


def verify_icv(expected: bytes, received: bytes) -> bool:
    """Constant-time ICV comparison."""
    return _hmac.compare_digest(expected, received)
