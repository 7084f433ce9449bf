"""Shared bits of the pyca/cryptography providers."""

from __future__ import annotations

import warnings
from functools import cache

from kem.base import ProviderInfo

# cryptography >= 46 deprecates finite-field DH with a warning at every use; pqike needs
# MODP groups for interop, so silence exactly that warning for our own call sites (the filter
# is process-wide but matches only warnings attributed to kem.providers.*).
try:
    from cryptography.utils import CryptographyDeprecationWarning
except ImportError:  # pragma: no cover - very old cryptography
    CryptographyDeprecationWarning = DeprecationWarning  # type: ignore[misc,assignment]

warnings.filterwarnings(
    "ignore", category=CryptographyDeprecationWarning, module=r"kem\.providers\."
)


@cache
def provider_info() -> ProviderInfo:
    import cryptography

    detail = ""
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        detail = backend.openssl_version_text()
    except Exception:  # pragma: no cover - informational only
        pass
    return ProviderInfo("cryptography", cryptography.__version__, detail)
