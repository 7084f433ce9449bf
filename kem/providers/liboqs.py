"""KEMs via liboqs (through liboqs-python, loaded by oqs_loader).

Algorithm choice per strongSwan 6.0beta private ID (beta6 oqs_kem.c used liboqs 0.9):
  * Kyber = round-3 Kyber512/768/1024 (not ML-KEM);
  * FrodoKEM = eFrodoKEM-*: liboqs 0.16's "FrodoKEM-*" is the salted ISO variant whose
    ciphertexts are 32..64 bytes longer than the 6.0beta frodo plugin's; eFrodoKEM keeps the
    round-3 sizes (9720/15744/21632) and IKE keys are single-use anyway;
  * HQC = HQC-1/3/5 (liboqs 0.16 names; sizes differ from every earlier liboqs release, so no
    HQC interop with pq-strongswan builds on liboqs <= 0.15);
  * BIKE = BIKE-L1/L3/L5.
Sizes and NIST levels are read from liboqs at run time.
"""

from __future__ import annotations

import threading
from functools import cache, partial
from typing import Any

from kem.base import Initiator, KemBackend, NativeHandle, ProviderInfo, Sizes
from kem.errors import ProviderUnavailable
from kem.ids import KeMethod
from kem.providers import oqs_loader

ALGORITHMS: dict[KeMethod, str] = {
    KeMethod.ML_KEM_512: "ML-KEM-512",
    KeMethod.ML_KEM_768: "ML-KEM-768",
    KeMethod.ML_KEM_1024: "ML-KEM-1024",
    KeMethod.KYBER_L1: "Kyber512",
    KeMethod.KYBER_L3: "Kyber768",
    KeMethod.KYBER_L5: "Kyber1024",
    KeMethod.FRODO_AES_L1: "eFrodoKEM-640-AES",
    KeMethod.FRODO_AES_L3: "eFrodoKEM-976-AES",
    KeMethod.FRODO_AES_L5: "eFrodoKEM-1344-AES",
    KeMethod.FRODO_SHAKE_L1: "eFrodoKEM-640-SHAKE",
    KeMethod.FRODO_SHAKE_L3: "eFrodoKEM-976-SHAKE",
    KeMethod.FRODO_SHAKE_L5: "eFrodoKEM-1344-SHAKE",
    KeMethod.BIKE_L1: "BIKE-L1",
    KeMethod.BIKE_L3: "BIKE-L3",
    KeMethod.BIKE_L5: "BIKE-L5",
    KeMethod.HQC_L1: "HQC-1",
    KeMethod.HQC_L3: "HQC-3",
    KeMethod.HQC_L5: "HQC-5",
}


class LiboqsBackend(KemBackend):
    def __init__(self, method: KeMethod, oqs: Any, alg: str, info: ProviderInfo) -> None:
        self._oqs = oqs
        self.algorithm = alg
        kem = oqs.KeyEncapsulation(alg)
        try:
            d = kem.details
        finally:
            kem.free()
        self.nist_level: int = d["claimed_nist_level"]
        self.seed_length: int = d["length_keypair_seed"]
        sizes = Sizes(d["length_public_key"], d["length_ciphertext"], d["length_shared_secret"])
        super().__init__(method, info, sizes)
        self._encapsulator: NativeHandle | None = None
        self._encaps_lock = threading.Lock()

    def _new(self) -> NativeHandle:
        kem = self._oqs.KeyEncapsulation(self.algorithm)
        return NativeHandle(kem, kem.free)  # free() cleanses the secret key; call it once

    def _keygen(self) -> tuple[Any, bytes]:
        handle = self._new()
        return handle, handle.obj.generate_keypair()

    def _encaps(self, public_value: bytes) -> tuple[bytes, bytes]:
        # Encapsulation uses no key of the object (only the algorithm's functions), so one
        # object serves every responder: making and freeing one per call cost 40% of it.
        with self._encaps_lock:
            if self._encapsulator is None:
                self._encapsulator = self._new()
            try:
                ciphertext, secret = self._encapsulator.obj.encap_secret(public_value)
            except RuntimeError:  # OQS_ERROR, e.g. the ML-KEM modulus check
                raise self.invalid(public_value, "encapsulation key rejected by liboqs") from None
        return ciphertext, secret

    def _decaps(self, private: Any, ciphertext: bytes) -> bytes:
        try:
            return private.obj.decap_secret(ciphertext)
        except RuntimeError:
            raise self.invalid(ciphertext, "ciphertext rejected by liboqs") from None
        finally:
            private.close()

    def initiator_from_seed(self, seed: bytes) -> Initiator:
        """Known-answer tests only: deterministic keygen (ML-KEM: d || z)."""
        handle = self._new()
        pk = handle.obj.generate_keypair_seed(seed)
        return Initiator(self, pk, partial(self._decaps, handle))


def provider_info(status: oqs_loader.OqsStatus, alg: str) -> ProviderInfo:
    detail = f"{alg}; liboqs-python {status.python_version}; {status.library}"
    if status.notes:
        detail += "; " + "; ".join(status.notes)
    return ProviderInfo("liboqs", status.version, detail)


@cache
def backend(method: KeMethod) -> LiboqsBackend:
    alg = ALGORITHMS.get(method)
    if alg is None:
        raise ProviderUnavailable(f"no liboqs algorithm for {method.name}")
    status = oqs_loader.load()
    if status.module is None:
        raise ProviderUnavailable(status.reason or "liboqs unavailable")
    oqs = status.module
    if alg not in oqs.get_enabled_kem_mechanisms():
        raise ProviderUnavailable(f"{alg} is not enabled in liboqs {status.version}")
    return LiboqsBackend(method, oqs, alg, provider_info(status, alg))
