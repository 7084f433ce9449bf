"""ML-KEM (FIPS 203) via cryptography (ML-KEM-768/1024 in cryptography 50; 512 if it appears)."""

from __future__ import annotations

from functools import cache, partial
from typing import Any

from kem.base import Initiator, KemBackend, Sizes
from kem.errors import ProviderUnavailable
from kem.ids import KeMethod
from kem.providers import pyca

_CLASSES = {
    KeMethod.ML_KEM_512: "MLKEM512",
    KeMethod.ML_KEM_768: "MLKEM768",
    KeMethod.ML_KEM_1024: "MLKEM1024",
}


class PycaMlKemBackend(KemBackend):
    def __init__(self, method: KeMethod, priv_cls: Any, pub_cls: Any) -> None:
        self._priv_cls, self._pub_cls = priv_cls, pub_cls
        # Sizes from the library itself, via one probe exchange.
        key = priv_cls.generate()
        pk = key.public_key().public_bytes_raw()
        ss, ct = key.public_key().encapsulate()
        super().__init__(method, pyca.provider_info(), Sizes(len(pk), len(ct), len(ss)))

    def _keygen(self) -> tuple[Any, bytes]:
        key = self._priv_cls.generate()
        return key, key.public_key().public_bytes_raw()

    def _encaps(self, public_value: bytes) -> tuple[bytes, bytes]:
        try:
            pub = self._pub_cls.from_public_bytes(public_value)
        except ValueError as exc:  # FIPS 203 §7.2 modulus check
            raise self.invalid(public_value, f"encapsulation key rejected ({exc})") from None
        secret, ciphertext = pub.encapsulate()
        return ciphertext, secret

    def _decaps(self, private: Any, ciphertext: bytes) -> bytes:
        # Implicit rejection: a bad ciphertext yields a pseudo-random secret, never an error.
        return private.decapsulate(ciphertext)

    def initiator_from_seed(self, seed: bytes) -> Initiator:
        """Known-answer tests only: keygen from the 64-byte FIPS 203 seed d || z."""
        key = self._priv_cls.from_seed_bytes(seed)
        pk = key.public_key().public_bytes_raw()
        return Initiator(self, pk, partial(self._decaps, key))


@cache
def backend(method: KeMethod) -> PycaMlKemBackend:
    import cryptography

    try:
        from cryptography.hazmat.primitives.asymmetric import mlkem
    except ImportError:
        version = cryptography.__version__
        raise ProviderUnavailable(f"cryptography {version} has no ML-KEM") from None
    name = _CLASSES.get(method)
    priv_cls = getattr(mlkem, f"{name}PrivateKey", None) if name else None
    pub_cls = getattr(mlkem, f"{name}PublicKey", None) if name else None
    if priv_cls is None or pub_cls is None:
        raise ProviderUnavailable(f"cryptography {cryptography.__version__} has no {method.name}")
    try:
        return PycaMlKemBackend(method, priv_cls, pub_cls)
    except Exception as exc:  # UnsupportedAlgorithm on an OpenSSL without ML-KEM
        raise ProviderUnavailable(f"cryptography cannot use {method.name}: {exc}") from None
