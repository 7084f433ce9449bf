"""NIST and Brainpool ECP groups via cryptography's ec module (OpenSSL).

RFC 5903 §7 / RFC 6954: the KE data is x | y, each zero-padded to the field size, without
the SEC1 0x04 prefix; the shared secret is the x coordinate of the shared point.
"""

from __future__ import annotations

from functools import cache, partial
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kem.base import DhBackend, Initiator, Sizes
from kem.errors import ProviderUnavailable
from kem.ids import KeMethod
from kem.providers import pyca

_CURVES: dict[KeMethod, str] = {
    KeMethod.ECP_192: "SECP192R1",
    KeMethod.ECP_224: "SECP224R1",
    KeMethod.ECP_256: "SECP256R1",
    KeMethod.ECP_384: "SECP384R1",
    KeMethod.ECP_521: "SECP521R1",
    KeMethod.ECP_224_BP: "BrainpoolP224R1",  # not in cryptography 50: reported unavailable
    KeMethod.ECP_256_BP: "BrainpoolP256R1",
    KeMethod.ECP_384_BP: "BrainpoolP384R1",
    KeMethod.ECP_512_BP: "BrainpoolP512R1",
}


class EcpBackend(DhBackend):
    def __init__(self, method: KeMethod, curve: ec.EllipticCurve) -> None:
        self._curve = curve
        self._coord = (curve.key_size + 7) // 8
        ec.generate_private_key(curve)  # probe: raises if this OpenSSL lacks the curve
        super().__init__(
            method, pyca.provider_info(), Sizes(2 * self._coord, 2 * self._coord, self._coord)
        )

    def _public(self, key: ec.EllipticCurvePrivateKey) -> bytes:
        point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return point[1:]  # drop 0x04

    def _generate(self) -> tuple[Any, bytes]:
        key = ec.generate_private_key(self._curve)
        return key, self._public(key)

    def _agree(self, private: Any, peer_value: bytes) -> bytes:
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(self._curve, b"\x04" + peer_value)
        except ValueError:
            raise self.invalid(peer_value, f"not a point on {self._curve.name}") from None
        try:
            secret = private.exchange(ec.ECDH(), peer)
        except ValueError as exc:  # pragma: no cover - prime-order curves: on-curve suffices
            raise self.invalid(peer_value, f"ECDH failed ({exc})") from None
        return secret.rjust(self._coord, b"\0")

    def initiator_from_private(self, scalar: bytes) -> Initiator:
        """Known-answer tests only: an initiator with a fixed private scalar."""
        key = ec.derive_private_key(int.from_bytes(scalar, "big"), self._curve)
        return Initiator(self, self._public(key), partial(self._agree, key))


@cache
def backend(method: KeMethod) -> EcpBackend:
    name = _CURVES.get(method)
    curve_cls = getattr(ec, name, None) if name else None
    if curve_cls is None:
        raise ProviderUnavailable(
            f"cryptography {pyca.provider_info().version} has no curve {name or method.name}"
        )
    try:
        return EcpBackend(method, curve_cls())
    except UnsupportedAlgorithm as exc:
        raise ProviderUnavailable(f"OpenSSL lacks {name}: {exc}") from None
