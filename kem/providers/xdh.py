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

# RFC 7748 §6.1 / RFC 8031 §2.3: the X25519 u-coordinates of small order, whose shared
# secret is all-zero for any private key (libsodium's has_small_order() list: 0, 1, the two
# of order 8, p-1, p, p+1), compared with bit 255 cleared as X25519 itself masks it
_X25519_SMALL_ORDER = frozenset(
    bytes.fromhex(h)
    for h in (
        "00" * 32,
        "01" + "00" * 31,
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ec" + "ff" * 30 + "7f",
        "ed" + "ff" * 30 + "7f",
        "ee" + "ff" * 30 + "7f",
    )
)

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

    def _refuse_early(self, peer_value: bytes) -> bool:
        if self.method != KeMethod.CURVE_25519:
            return False  # X448's list is not kept here: it agrees at once
        if peer_value[:31] + bytes((peer_value[31] & 0x7F,)) in _X25519_SMALL_ORDER:
            raise self.invalid(peer_value, "small-order point (all-zero shared secret)")
        return True

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
