"""MODP Diffie-Hellman groups via cryptography's dh module (OpenSSL).

Public values and the shared secret are big-endian, zero-padded to the prime's length
(RFC 7296 §3.4; strongSwan pads the same way).
"""

from __future__ import annotations

from functools import cache, partial
from typing import Any

from cryptography.hazmat.primitives.asymmetric import dh

from kem.base import DhBackend, Initiator, Sizes
from kem.errors import ProviderUnavailable
from kem.ids import KeMethod
from kem.providers import pyca
from kem.providers.modp_groups import GROUPS


class ModpBackend(DhBackend):
    def __init__(self, method: KeMethod) -> None:
        group = GROUPS[method]
        self._numbers = dh.DHParameterNumbers(group.p, group.g, group.q)
        # Loading parameters is the slow part (OpenSSL checks non-named groups: ~20-40 ms for
        # 768/1024); do it once per group.
        self._params = self._numbers.parameters()
        self._p = group.p
        self._len = (group.p.bit_length() + 7) // 8
        super().__init__(method, pyca.provider_info(), Sizes(self._len, self._len, self._len))

    def _encode(self, y: int) -> bytes:
        return y.to_bytes(self._len, "big")

    def _generate(self) -> tuple[Any, bytes]:
        key = self._params.generate_private_key()
        return key, self._encode(key.public_key().public_numbers().y)

    def _agree(self, private: Any, peer_value: bytes) -> bytes:
        y = int.from_bytes(peer_value, "big")
        # 0, 1 and p-1 force a known secret; OpenSSL rejects them too, but say why.
        if not 1 < y < self._p - 1:
            raise self.invalid(peer_value, "public value out of range (need 1 < y < p-1)")
        try:
            # For 768/1024 (not OpenSSL named groups) this re-checks p: ~20-40 ms per peer
            # value. Passing q = (p-1)/2 would avoid it but breaks OpenSSL's keygen.
            peer = dh.DHPublicNumbers(y, self._numbers).public_key()
            secret = private.exchange(peer)
        except ValueError as exc:
            # With a subgroup order (RFC 5114) OpenSSL also checks y^q = 1 mod p.
            raise self.invalid(peer_value, f"public value rejected by OpenSSL ({exc})") from None
        return secret.rjust(self._len, b"\0")

    def initiator_from_private(self, x: bytes, y: bytes) -> Initiator:
        """Known-answer tests only: an initiator with private exponent ``x`` (public ``y``)."""
        pub = dh.DHPublicNumbers(int.from_bytes(y, "big"), self._numbers)
        key = dh.DHPrivateNumbers(int.from_bytes(x, "big"), pub).private_key()
        return Initiator(self, self._encode(pub.y), partial(self._agree, key))


@cache
def backend(method: KeMethod) -> ModpBackend:
    if method not in GROUPS:
        raise ProviderUnavailable(f"no MODP group for {method.name}")
    try:
        return ModpBackend(method)
    except Exception as exc:  # e.g. an OpenSSL build refusing small groups
        raise ProviderUnavailable(f"cryptography/OpenSSL refused the group: {exc}") from None
