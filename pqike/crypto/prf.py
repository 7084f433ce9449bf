"""IKEv2 prf and prf+ (RFC 7296 §2.13).

prf+ as in strongSwan kdf_kdf.c get_bytes_prf_plus(): T1 = prf(K, S|0x01),
Tn = prf(K, Tn-1|S|n), a 1-byte counter, so at most 255 blocks.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _chmac

from pqike.crypto.algorithms import UnsupportedTransform, prf_spec
from pqike.crypto.mac import AES_BLOCK, aes_cmac, aes_xcbc_mac
from pqike.wire.iana import PrfId

__all__ = ["PRF_PLUS_MAX_BLOCKS", "prf", "prf_plus"]

PRF_PLUS_MAX_BLOCKS = 255

# one (stateless) hash object per PRF: prf() runs dozens of times per handshake
_PRF_HASH: dict[int, hashes.HashAlgorithm] = {
    PrfId.HMAC_SHA1: hashes.SHA1(),
    PrfId.HMAC_SHA2_256: hashes.SHA256(),
    PrfId.HMAC_SHA2_384: hashes.SHA384(),
    PrfId.HMAC_SHA2_512: hashes.SHA512(),
}


def _xcbc_prf_key(key: bytes) -> bytes:
    # RFC 4434 §2 (strongSwan xcbc.c set_key): pad short keys with zeros, shrink long ones.
    if len(key) <= AES_BLOCK:
        return key.ljust(AES_BLOCK, b"\x00")
    return aes_xcbc_mac(bytes(AES_BLOCK), key)


def _cmac_prf_key(key: bytes) -> bytes:
    # RFC 4615 §3 (strongSwan cmac.c set_key): any key not 16 bytes becomes AES-CMAC(0^128, key).
    return key if len(key) == AES_BLOCK else aes_cmac(bytes(AES_BLOCK), key)


def prf(prf_id: PrfId, key: bytes, data: bytes) -> bytes:
    """prf(K, S) of the negotiated PRF transform."""
    hash_alg = _PRF_HASH.get(prf_id)
    if hash_alg is not None:  # hmac_digest() inline: a dozen prf() calls per handshake
        h = _chmac.HMAC(key, hash_alg)
        h.update(data)
        return h.finalize()
    spec = prf_spec(prf_id)
    if spec.prf == PrfId.AES128_XCBC:
        return aes_xcbc_mac(_xcbc_prf_key(key), data)
    if spec.prf == PrfId.AES128_CMAC:
        return aes_cmac(_cmac_prf_key(key), data)
    raise UnsupportedTransform(f"unsupported PRF transform {spec.prf.name}")  # pragma: no cover


def prf_plus(prf_id: PrfId, key: bytes, seed: bytes, length: int) -> bytes:
    """prf+(K, S) truncated to ``length`` bytes."""
    block_len = prf_spec(prf_id).out_len
    if length < 0 or length > PRF_PLUS_MAX_BLOCKS * block_len:
        raise ValueError(
            f"prf+ can produce at most {PRF_PLUS_MAX_BLOCKS * block_len} bytes "
            f"with {PrfId(prf_id).name}, {length} requested"
        )
    hash_alg = _PRF_HASH.get(prf_id)
    counters = _COUNTERS[: -(-length // block_len)]
    out = []
    t = b""
    if hash_alg is None:  # AES-XCBC/CMAC
        for counter in counters:
            t = prf(prf_id, key, t + seed + counter)
            out.append(t)
        return b"".join(out)[:length]
    # HMAC: the key is set up once and each block but the last starts from a copy of that
    # state; the last one finishes the keyed HMAC itself (one copy fewer per call)
    keyed = _chmac.HMAC(key, hash_alg)
    for counter in counters[:-1]:
        h = keyed.copy()
        h.update(t + seed + counter)
        t = h.finalize()
        out.append(t)
    if counters:
        keyed.update(t + seed + counters[-1])
        out.append(keyed.finalize())
    return b"".join(out)[:length]


_COUNTERS = tuple(bytes([n]) for n in range(1, PRF_PLUS_MAX_BLOCKS + 1))  # prf+'s 0x01..0xff
