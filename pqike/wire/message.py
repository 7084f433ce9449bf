"""IKE messages: the fixed header (RFC 7296 §3.1) and the payload chain that follows it."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from pqike.wire.errors import InvalidMajorVersion, InvalidSyntax
from pqike.wire.iana import (
    IKE_HEADER_LEN,
    IKEV2_VERSION,
    ExchangeType,
    HeaderFlag,
)
from pqike.wire.payloads import (
    EncodeError,
    Encrypted,
    EncryptedFragment,
    Payload,
    decode_chain,
    encode_chain,
)

__all__ = ["Message", "decode_header", "decode_message", "encode_header"]

_HEADER = struct.Struct("!8s8sBBBBII")
# plain ints: an IntFlag operand costs an enum operation per flag of every message
_I, _V, _R = int(HeaderFlag.INITIATOR), int(HeaderFlag.VERSION), int(HeaderFlag.RESPONSE)
_KNOWN_FLAGS = _I | _V | _R
_EXCHANGE_TYPES: dict[int, ExchangeType] = ExchangeType._value2member_map_  # type: ignore[assignment]
_MAX_LEN = 0xFFFFFFFF
# a tuple made once: ``A | B`` in isinstance builds a union object on every call
_SEALED = (Encrypted, EncryptedFragment)


def encode_header(
    spi_i: bytes,
    spi_r: bytes,
    next_payload: int,
    version: int,
    exchange: int,
    flags: int,
    message_id: int,
    length: int,
) -> bytes:
    """The 28-octet IKE header."""
    if len(spi_i) != 8 or len(spi_r) != 8:
        raise EncodeError("IKE SPIs are 8 octets each")
    if length > _MAX_LEN:
        raise EncodeError(f"IKE message of {length} bytes")
    return _HEADER.pack(spi_i, spi_r, next_payload, version, exchange, flags, message_id, length)


@dataclass
class Message:
    """An IKE message: header fields and payloads (an SK/SKF payload stays sealed, and last)."""

    spi_i: bytes
    spi_r: bytes
    exchange: ExchangeType | int
    message_id: int
    payloads: list[Payload] = field(default_factory=list)
    initiator: bool = False  # I flag: sent by the original initiator of the IKE SA
    response: bool = False  # R flag
    version_flag: bool = False  # V flag: sender speaks a higher major version
    reserved_flags: int = 0  # flag bits RFC 7296 leaves reserved, kept for re-encoding
    version: int = IKEV2_VERSION  # major << 4 | minor

    def __post_init__(self) -> None:
        self.exchange = _EXCHANGE_TYPES.get(self.exchange, self.exchange)  # as_enum, inlined

    @property
    def is_request(self) -> bool:
        return not self.response

    @property
    def flags(self) -> int:
        return (
            (_I if self.initiator else 0)
            | (_V if self.version_flag else 0)
            | (_R if self.response else 0)
            | (self.reserved_flags & ~_KNOWN_FLAGS & 0xFF)
        )

    @property
    def sealed(self) -> Encrypted | EncryptedFragment | None:
        """The SK or SKF payload, if any (always the last one)."""
        last = self.payloads[-1] if self.payloads else None
        return last if isinstance(last, _SEALED) else None

    def header(self, next_payload: int, length: int) -> bytes:
        return encode_header(
            self.spi_i,
            self.spi_r,
            next_payload,
            self.version,
            self.exchange,
            self.flags,
            self.message_id,
            length,
        )

    def encode(self) -> bytes:
        first, body = encode_chain(self.payloads, outer=True)
        return self.header(first, IKE_HEADER_LEN + len(body)) + body

    def with_payloads(self, payloads: Sequence[Payload]) -> Message:
        """The same header fields with another payload list."""
        # dataclasses.replace() would look up every field by name and re-run __post_init__
        return Message(
            self.spi_i,
            self.spi_r,
            self.exchange,
            self.message_id,
            list(payloads),
            self.initiator,
            self.response,
            self.version_flag,
            self.reserved_flags,
            self.version,
        )


def decode_header(data: bytes) -> Message:
    """The header fields alone, without payloads and unchecked (any version, any Length):
    enough to answer a message whose body cannot be decoded."""
    return _header_message(*_header_fields(data))


def _header_fields(data: bytes) -> tuple[bytes, bytes, int, int, int, int, int, int]:
    if len(data) < IKE_HEADER_LEN:
        raise InvalidSyntax(f"truncated IKE header: {len(data)} of {IKE_HEADER_LEN} bytes", 0)
    return _HEADER.unpack_from(data)  # type: ignore[return-value]


def _header_message(
    spi_i: bytes,
    spi_r: bytes,
    _first: int,
    version: int,
    exchange: int,
    flags: int,
    message_id: int,
    _length: int,
) -> Message:
    return Message(
        spi_i=spi_i,
        spi_r=spi_r,
        exchange=exchange,
        message_id=message_id,
        initiator=bool(flags & _I),
        response=bool(flags & _R),
        version_flag=bool(flags & _V),
        reserved_flags=flags & ~_KNOWN_FLAGS & 0xFF,
        version=version,
    )


def decode_message(data: bytes) -> Message:
    """Decode one IKE message (UDP payload without the non-ESP marker)."""
    data = bytes(data)
    fields = _header_fields(data)  # unpacked once, for the Message and the checks
    message = _header_message(*fields)
    first, length = fields[2], fields[7]
    if message.version >> 4 != IKEV2_VERSION >> 4:
        raise InvalidMajorVersion(message.version >> 4, 17)
    if length != len(data):
        raise InvalidSyntax(f"IKE header Length {length} but the message has {len(data)} bytes", 24)
    message.payloads = decode_chain(first, data, 0, outer=True, start=IKE_HEADER_LEN)
    return message
