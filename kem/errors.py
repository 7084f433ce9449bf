"""Typed errors of the kem package.

IKE maps them to notifies: InvalidPeerValue to INVALID_SYNTAX (or INVALID_KE_PAYLOAD when the
method itself is wrong), MethodUnavailable to NO_PROPOSAL_CHOSEN / a config-time error.
"""

from __future__ import annotations

from kem.ids import KeMethod, log_name


def _name(method: int) -> str:
    try:
        return log_name(KeMethod(method))
    except ValueError:
        return f"KE method {method}"


class KemError(Exception):
    """Base class of all kem errors."""


class UnknownMethod(KemError, KeyError):
    """No registry entry for this ID or keyword."""

    def __init__(self, key: object) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"unknown key exchange method {self.key!r}"


class MethodUnavailable(KemError):
    """The method is known but no provider for it can be loaded here."""

    def __init__(self, method: KeMethod, reason: str) -> None:
        super().__init__(method, reason)
        self.method = method
        self.reason = reason

    def __str__(self) -> str:
        return f"{_name(self.method)} unavailable: {self.reason}"


class InvalidPeerValue(KemError, ValueError):
    """The peer's KE data is malformed: wrong length, not on the curve, out of range, ..."""

    def __init__(self, method: KeMethod, expected: int | None, got: int, reason: str) -> None:
        super().__init__(method, expected, got, reason)
        self.method = method
        self.expected = expected  # expected length in bytes, None if the length was fine
        self.got = got  # length received
        self.reason = reason

    def __str__(self) -> str:
        if self.expected is not None and self.expected != self.got:
            return (
                f"invalid {_name(self.method)} peer value: {self.reason} "
                f"(expected {self.expected} bytes, got {self.got})"
            )
        return f"invalid {_name(self.method)} peer value ({self.got} bytes): {self.reason}"


class ExchangeFinished(KemError, RuntimeError):
    """finish() was called twice: the private key is dropped after first use."""


class ProviderUnavailable(Exception):
    """Internal: raised by a provider factory; the registry turns it into a reason string."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
