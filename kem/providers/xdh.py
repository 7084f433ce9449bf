"""Curve25519 / Curve448 (RFC 7748, RFC 8031) via cryptography."""

from __future__ import annotations

from functools import cache, partial
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import x448, x25519

from kem.base import DhBackend, Initiator, Sizes
from kem.errors import ProviderUnavailable
from kem.ids import KeMethod
from kem.providers import pyca

_CURVES: dict[KeMethod, tuple[Any, Any, int]] = {
    KeMethod.CURVE_25519: (x25519.X25519PrivateKey, x25519.X25519PublicKey, 32),
    KeMethod.CURVE_448: (x448.X448PrivateKey, x448.X448PublicKey, 56),
}


class XdhBackend(DhBackend):
    def __init__(self, method: KeMethod) -> None:
        self._priv_cls, self._pub_cls, size = _CURVES[method]
        self._priv_cls.generate()  # probe
        super().__init__(method, pyca.provider_info(), Sizes(size, size, size))

    def _generate(self) -> tuple[Any, bytes]:
        key = self._priv_cls.generate()
        return key, key.public_key().public_bytes_raw()

    def _agree(self, private: Any, peer_value: bytes) -> bytes:
        peer = self._pub_cls.from_public_bytes(peer_value)  # length already checked
        try:
            return private.exchange(peer)
        except ValueError:
            # RFC 7748 §6 / RFC 8031 §2.3: an all-zero result means a small-order point.
            raise self.invalid(peer_value, "small-order point (all-zero shared secret)") from None

    def initiator_from_private(self, scalar: bytes) -> Initiator:
        """Known-answer tests only: an initiator with a fixed private scalar."""
        key = self._priv_cls.from_private_bytes(scalar)
        return Initiator(self, key.public_key().public_bytes_raw(), partial(self._agree, key))


@cache
def backend(method: KeMethod) -> XdhBackend:
    if method not in _CURVES:
        raise ProviderUnavailable(f"{method.name} is not an XDH curve")
    try:
        return XdhBackend(method)
    except UnsupportedAlgorithm as exc:
        raise ProviderUnavailable(f"OpenSSL lacks {method.name}: {exc}") from None
