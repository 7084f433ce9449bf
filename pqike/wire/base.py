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
    "Fields",
    "Payload",
    "Reader",
    "as_enum",
    "check_u16",
    "payload_name",
    "truncated",
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


def truncated(what: str, needed: int, left: int, offset: int) -> InvalidSyntax:
    """The error for a field cut short by the end of its payload or substructure."""
    return InvalidSyntax(f"truncated {what}: {needed} bytes needed, {left} left", offset)


class Fields:
    """A fixed run of fields read in one unpack, with the name and size of each, so that a
    run cut short is the error naming the first field that does not fit (and its offset).
    A field may span several struct values, or one value several fields (a 24-bit one)."""

    __slots__ = ("fields", "size", "unpack_from")

    def __init__(self, fmt: str, *fields: tuple[str, int]) -> None:
        packed = struct.Struct(fmt)
        if sum(size for _, size in fields) != packed.size:
            raise ValueError(f"{fmt!r} is {packed.size} octets, not the fields' total")
        self.fields = fields
        self.size = packed.size
        self.unpack_from = packed.unpack_from

    def read(self, data: bytes, pos: int, base: int) -> tuple[int, ...]:
        """The values at ``data[pos:]``; ``base`` is the absolute offset of ``data[0]``."""
        try:
            return self.unpack_from(data, pos)  # type: ignore[no-any-return]
        except struct.error:  # too few bytes (no length check first: it would cost every read)
            raise self._cut_short(data, pos, base) from None

    def _cut_short(self, data: bytes, pos: int, base: int) -> InvalidSyntax:
        for what, size in self.fields:
            if pos + size > len(data):
                return truncated(what, size, len(data) - pos, base + pos)
            pos += size
        raise AssertionError("the fields fit")  # pragma: no cover


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
        return truncated(what, n, self.left, self.offset)

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
        pos = self.pos
        if pos + 3 > len(self.data):
            raise self._truncated(3, what)
        self.pos = pos + 3
        data = self.data
        return (data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2]

    def unpack(self, fields: Fields) -> tuple[int, ...]:
        """The fixed fields at once; a run cut short is the error of its first cut field."""
        pos = self.pos
        values = fields.read(self.data, pos, self.base)
        self.pos = pos + fields.size
        return values

    def rest(self) -> bytes:
        # the body of most payloads: no bounds to check, and no copy of a whole reader
        data, pos = self.data, self.pos
        self.pos = len(data)
        return data[pos:] if pos else data

    def sub(self, n: int, what: str) -> Reader:
        """A reader over the next ``n`` bytes (a substructure), advancing past them."""
        start = self.offset
        return Reader(self.take(n, what), start)


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
    def decode_body(cls, next_type: int, body: bytes, offset: int) -> Self:
        """The payload from its whole ``body`` (after the generic header), which starts at
        absolute ``offset``; every byte of it must be accounted for."""
        raise NotImplementedError

    def header_next(self, following: int) -> int:
        """The Next Payload value written in this payload's generic header."""
        return following
