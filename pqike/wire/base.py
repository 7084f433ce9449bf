"""Shared pieces of the payload codec: the payload base class, a bounds-checked reader,
and the conversion of registry numbers to enums (unknown values stay plain ``int``)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self, TypeVar

from pqike.wire.errors import InvalidSyntax
from pqike.wire.iana import PayloadType

__all__ = [
    "CRITICAL",
    "GENERIC_HEADER",
    "GENERIC_HEADER_LEN",
    "U16",
    "EncodeError",
    "Payload",
    "Reader",
    "as_enum",
    "check_u16",
    "payload_name",
]

GENERIC_HEADER_LEN = 4
GENERIC_HEADER = struct.Struct("!BBH")  # Next Payload, C and RESERVED, Payload Length
CRITICAL = 0x80  # the C bit of the generic payload header
U16 = 0xFFFF

E = TypeVar("E", bound=IntEnum)


class EncodeError(ValueError):
    """A payload cannot be put on the wire as given (field too large, SK not last, ...)."""


def as_enum(enum: type[E], value: int) -> E | int:
    """The enum member for ``value``, or the plain int when the registry entry is unknown."""
    # the value map is what enum(value) looks in first; without the call and the exception
    # it is several times faster, and decoding does this for every field
    return enum._value2member_map_.get(value, value)  # type: ignore[return-value]


def payload_name(ptype: int) -> str:
    try:
        return PayloadType(ptype).name
    except ValueError:
        return f"type {ptype}"


class Reader:
    """Bounds-checked cursor over a payload body; errors carry absolute offsets."""

    __slots__ = ("base", "data", "pos")

    def __init__(self, data: bytes, base: int) -> None:
        self.data = data
        self.base = base
        self.pos = 0

    @property
    def offset(self) -> int:
        return self.base + self.pos

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def _truncated(self, n: int, what: str) -> InvalidSyntax:
        return InvalidSyntax(f"truncated {what}: {n} bytes needed, {self.left} left", self.offset)

    # take/u8/u16 run for every field of every payload: no property or call in the way
    def take(self, n: int, what: str) -> bytes:
        pos = self.pos
        end = pos + n
        if end > len(self.data):
            raise self._truncated(n, what)
        self.pos = end
        return self.data[pos:end]

    def u8(self, what: str) -> int:
        pos = self.pos
        if pos >= len(self.data):
            raise self._truncated(1, what)
        self.pos = pos + 1
        return self.data[pos]

    def u16(self, what: str) -> int:
        pos = self.pos
        if pos + 2 > len(self.data):
            raise self._truncated(2, what)
        self.pos = pos + 2
        return (self.data[pos] << 8) | self.data[pos + 1]

    def u24(self, what: str) -> int:
        return int.from_bytes(self.take(3, what), "big")

    def rest(self) -> bytes:
        # the body of most payloads: no bounds to check, and no copy of a whole reader
        data, pos = self.data, self.pos
        self.pos = len(data)
        return data[pos:] if pos else data

    def sub(self, n: int, what: str) -> Reader:
        """A reader over the next ``n`` bytes (a substructure), advancing past them."""
        start = self.offset
        return Reader(self.take(n, what), start)

    def done(self, what: str) -> None:
        if self.left:
            raise InvalidSyntax(f"{self.left} unexpected bytes after {what}", self.offset)


def check_u16(value: int, what: str) -> int:
    if not 0 <= value <= U16:
        raise EncodeError(f"{what} {value} does not fit in 16 bits")
    return value


# --- base ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Payload:
    """A payload: the generic header's C bit and reserved bits, plus a typed body."""

    TYPE: ClassVar[PayloadType]

    critical: bool = False
    reserved_bits: int = 0  # the 7 RESERVED bits after C (RFC 7296 §3.2), kept for re-encoding

    @property
    def type(self) -> int:
        return self.TYPE

    def encode_body(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def decode_body(cls, next_type: int, r: Reader) -> Self:
        raise NotImplementedError

    def header_next(self, following: int) -> int:
        """The Next Payload value written in this payload's generic header."""
        return following
