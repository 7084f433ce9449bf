"""Fallback ML-KEM via the ``pqcrypto`` wheel (>= 1.0, Rust, Apache-2.0).

Used only for ML-KEM (the preference order puts it after cryptography and liboqs). Its HQC
has liboqs 0.16's sizes but does not interoperate with liboqs HQC-1 either way (checked with
pqcrypto 1.0.0), so it is not a provider for the strongSwan HQC IDs.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from functools import cache
from typing import Any

from kem.base import KemBackend, ProviderInfo, Sizes
from kem.errors import ProviderUnavailable
from kem.ids import KeMethod

_MODULES = {
    KeMethod.ML_KEM_512: "ml_kem_512",
    KeMethod.ML_KEM_768: "ml_kem_768",
    KeMethod.ML_KEM_1024: "ml_kem_1024",
}


class PqcryptoBackend(KemBackend):
    def __init__(self, method: KeMethod, mod: Any, info: ProviderInfo) -> None:
        self._mod = mod
        sizes = Sizes(mod.PUBLIC_KEY_SIZE, mod.CIPHERTEXT_SIZE, mod.SHARED_SECRET_SIZE)
        super().__init__(method, info, sizes)

    def _keygen(self) -> tuple[Any, bytes]:
        pk, sk = self._mod.keygen()
        return sk, pk

    def _encaps(self, public_value: bytes) -> tuple[bytes, bytes]:
        try:
            return self._mod.encaps(public_value)
        except ValueError as exc:
            raise self.invalid(public_value, f"encapsulation key rejected ({exc})") from None

    def _decaps(self, private: Any, ciphertext: bytes) -> bytes:
        return self._mod.decaps(private, ciphertext)


@cache
def backend(method: KeMethod) -> PqcryptoBackend:
    name = _MODULES.get(method)
    if name is None:
        raise ProviderUnavailable(f"pqcrypto is not used for {method.name}")
    try:
        version = importlib.metadata.version("pqcrypto")
    except importlib.metadata.PackageNotFoundError:
        hint = "pip install 'pqike[pqcrypto]'"
        raise ProviderUnavailable(f"pqcrypto not installed ({hint})") from None
    if int(version.split(".")[0]) < 1:
        raise ProviderUnavailable(f"pqcrypto {version} predates the 1.0 keygen/encaps API")
    try:
        mod = importlib.import_module(f"pqcrypto.kem.{name}")
    except ImportError as exc:
        raise ProviderUnavailable(f"pqcrypto {version}: {exc}") from None
    return PqcryptoBackend(method, mod, ProviderInfo("pqcrypto", version, name))
