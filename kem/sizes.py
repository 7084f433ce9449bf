"""KE data sizes of every registered method, as the algorithms' specifications fix them.

They let ``pqike plan``, ``pqike bench sizes`` and the config checks size messages on a machine
without the method's provider (liboqs, typically). The registry checks every provider that
loads against this table (a provider reporting other sizes is not used: peers send the
specified sizes), and tests/unit/test_kem_registry.py asserts table == provider sizes.

Sizes are (KEi data, KEr data, shared secret) in bytes (RFC 7296 §3.4, RFC 9370):
- MODP: the prime's length for both public values and the secret (RFC 7296 §3.4 and §2.14;
  the primes of RFC 2409 §6, RFC 3526 and RFC 5114 §2);
- ECP: x || y of the curve's coordinate size, secret x (RFC 5903 §7 and §9, RFC 6954);
- Curve25519/Curve448: RFC 8031 §2 (32 and 56 bytes);
- ML-KEM: encapsulation key, ciphertext and shared secret of FIPS 203 §8 Table 3;
- Kyber (round 3), BIKE, HQC and eFrodoKEM: liboqs 0.16.0's headers (src/kem/*/kem_*.h,
  OQS_KEM_<alg>_length_public_key / _ciphertext / _shared_secret), the algorithms
  kem.providers.liboqs maps strongSwan's private-use IDs to.
"""

from __future__ import annotations

from kem.base import Sizes
from kem.ids import KeMethod


def _dh(length: int) -> Sizes:
    return Sizes(length, length, length)


def _ecp(coordinate: int) -> Sizes:
    return Sizes(2 * coordinate, 2 * coordinate, coordinate)


SIZES: dict[KeMethod, Sizes] = {
    KeMethod.MODP_768: _dh(96),
    KeMethod.MODP_1024: _dh(128),
    KeMethod.MODP_1536: _dh(192),
    KeMethod.MODP_2048: _dh(256),
    KeMethod.MODP_3072: _dh(384),
    KeMethod.MODP_4096: _dh(512),
    KeMethod.MODP_6144: _dh(768),
    KeMethod.MODP_8192: _dh(1024),
    KeMethod.MODP_1024_160: _dh(128),
    KeMethod.MODP_2048_224: _dh(256),
    KeMethod.MODP_2048_256: _dh(256),
    KeMethod.ECP_192: _ecp(24),
    KeMethod.ECP_224: _ecp(28),
    KeMethod.ECP_256: _ecp(32),
    KeMethod.ECP_384: _ecp(48),
    KeMethod.ECP_521: _ecp(66),
    KeMethod.ECP_224_BP: _ecp(28),
    KeMethod.ECP_256_BP: _ecp(32),
    KeMethod.ECP_384_BP: _ecp(48),
    KeMethod.ECP_512_BP: _ecp(64),
    KeMethod.CURVE_25519: _dh(32),
    KeMethod.CURVE_448: _dh(56),
    KeMethod.ML_KEM_512: Sizes(800, 768, 32),
    KeMethod.ML_KEM_768: Sizes(1184, 1088, 32),
    KeMethod.ML_KEM_1024: Sizes(1568, 1568, 32),
    KeMethod.KYBER_L1: Sizes(800, 768, 32),
    KeMethod.KYBER_L3: Sizes(1184, 1088, 32),
    KeMethod.KYBER_L5: Sizes(1568, 1568, 32),
    KeMethod.FRODO_AES_L1: Sizes(9616, 9720, 16),
    KeMethod.FRODO_AES_L3: Sizes(15632, 15744, 24),
    KeMethod.FRODO_AES_L5: Sizes(21520, 21632, 32),
    KeMethod.FRODO_SHAKE_L1: Sizes(9616, 9720, 16),
    KeMethod.FRODO_SHAKE_L3: Sizes(15632, 15744, 24),
    KeMethod.FRODO_SHAKE_L5: Sizes(21520, 21632, 32),
    KeMethod.BIKE_L1: Sizes(1541, 1573, 32),
    KeMethod.BIKE_L3: Sizes(3083, 3115, 32),
    KeMethod.BIKE_L5: Sizes(5122, 5154, 32),
    KeMethod.HQC_L1: Sizes(2241, 4433, 32),
    KeMethod.HQC_L3: Sizes(4514, 8978, 32),
    KeMethod.HQC_L5: Sizes(7237, 14421, 32),
}
