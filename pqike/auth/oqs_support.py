"""liboqs access for Falcon, through the KEM registry's safe loader.

``import oqs`` must never run unchecked: without the shared library liboqs-python tries to
clone and build it. kem.providers.oqs_loader locates and dlopens the library first.
"""

from __future__ import annotations

from types import ModuleType

from pqike.auth.errors import LiboqsUnavailable


def _status() -> tuple[ModuleType | None, str | None]:
    from kem.providers import oqs_loader

    status = oqs_loader.load()
    reason = status.reason
    if reason:
        reason = reason.replace(f"; {oqs_loader.HINT}", "")  # that hint is about KEMs
    return status.module, reason


def liboqs_unavailable_reason() -> str | None:
    """None when liboqs can be used, else why not."""
    return _status()[1]


def oqs_module() -> ModuleType:
    module, reason = _status()
    if module is None:
        raise LiboqsUnavailable(f"Falcon needs liboqs: {reason}")
    return module
