"""Typed decoding errors, each naming the notify IKE should answer with (RFC 7296 §2.21.1).

Every error carries the byte ``offset`` (from the start of the decoded buffer, i.e. the IKE
header for whole messages) where the problem was found, so a log line can point at it.
"""

from __future__ import annotations

from pqike.wire.iana import NotifyType

__all__ = [
    "DecodeError",
    "InvalidMajorVersion",
    "InvalidSyntax",
    "UnsupportedCriticalPayload",
]


class DecodeError(Exception):
    """Base class: the bytes are not a well-formed IKEv2 message (or payload chain)."""

    notify: NotifyType = NotifyType.INVALID_SYNTAX

    def __init__(self, what: str, offset: int) -> None:
        super().__init__(f"{what} at offset {offset}")
        self.what = what
        self.offset = offset


class InvalidSyntax(DecodeError):
    """Lengths, counts or field values that contradict the data."""

    notify = NotifyType.INVALID_SYNTAX


class UnsupportedCriticalPayload(DecodeError):
    """An unknown payload with the critical bit set; the answer carries its type."""

    notify = NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD

    def __init__(self, payload_type: int, offset: int) -> None:
        super().__init__(f"unsupported critical payload type {payload_type}", offset)
        self.payload_type = payload_type

    @property
    def notify_data(self) -> bytes:
        # RFC 7296 §3.10.1: the notification data is the one-octet payload type.
        return bytes([self.payload_type])


class InvalidMajorVersion(DecodeError):
    """IKE major version other than 2; the answer carries our version (RFC 7296 §2.5)."""

    notify = NotifyType.INVALID_MAJOR_VERSION

    def __init__(self, major: int, offset: int) -> None:
        super().__init__(f"IKE major version {major} is not 2", offset)
        self.major = major
