"""Key-exchange method registry for IKEv2: classic DH groups and post-quantum KEMs.

``from kem import registry`` is cheap: providers (cryptography, liboqs, pqcrypto) load only
when a method is first used or probed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kem.errors import (
    ExchangeFinished,
    InvalidPeerValue,
    KemError,
    MethodUnavailable,
    UnknownMethod,
)
from kem.ids import KeMethod

if TYPE_CHECKING:
    from kem import registry
    from kem.base import Initiator, Kind, ProviderInfo, Sizes
    from kem.registry import Method

__all__ = [
    "ExchangeFinished",
    "Initiator",
    "InvalidPeerValue",
    "KeMethod",
    "KemError",
    "Kind",
    "Method",
    "MethodUnavailable",
    "ProviderInfo",
    "Sizes",
    "UnknownMethod",
    "registry",
]

_LAZY = {
    "registry": ("kem.registry", None),
    "Method": ("kem.registry", "Method"),
    "Initiator": ("kem.base", "Initiator"),
    "Kind": ("kem.base", "Kind"),
    "ProviderInfo": ("kem.base", "ProviderInfo"),
    "Sizes": ("kem.base", "Sizes"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'kem' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)
