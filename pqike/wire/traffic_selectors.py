"""TSi/TSr payloads (RFC 7296 §3.13): IPv4/IPv6 address-range selectors; selectors of other
types are kept raw."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import ClassVar, Self

from pqike.memo import Memo
from pqike.wire.base import EncodeError, Payload, Reader, as_enum, check_u16
from pqike.wire.errors import InvalidSyntax
from pqike.wire.iana import PayloadType, TsType

__all__ = [
    "AddressRangeSelector",
    "RawTrafficSelector",
    "TSi",
    "TSr",
    "TrafficSelector",
    "TrafficSelectors",
]

_TS_LEN = {TsType.TS_IPV4_ADDR_RANGE: 16, TsType.TS_IPV6_ADDR_RANGE: 40}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class AddressRangeSelector:
    """TS_IPV4_ADDR_RANGE / TS_IPV6_ADDR_RANGE (RFC 7296 §3.13.1); protocol 0 = any.
    Immutable, as the selectors of both kinds: the decode memo hands out the kept ones."""

    start_addr: Address
    end_addr: Address
    ip_protocol: int = 0
    start_port: int = 0
    end_port: int = 0xFFFF

    @property
    def ts_type(self) -> TsType:
        v6 = self.start_addr.version == 6
        return TsType.TS_IPV6_ADDR_RANGE if v6 else TsType.TS_IPV4_ADDR_RANGE

    def encode(self) -> bytes:
        if self.start_addr.version != self.end_addr.version:
            raise EncodeError("traffic selector start and end address families differ")
        head = struct.pack(
            "!BBHHH",
            self.ts_type,
            self.ip_protocol,
            _TS_LEN[self.ts_type],
            self.start_port,
            self.end_port,
        )
        return head + self.start_addr.packed + self.end_addr.packed


@dataclass(frozen=True, slots=True)
class RawTrafficSelector:
    """A selector of another type (e.g. TS_SECLABEL), kept as received."""

    ts_type: TsType | int
    body: bytes  # after the 4-octet selector header
    second_octet: int = 0  # IP Protocol ID or RESERVED, depending on the type

    def encode(self) -> bytes:
        length = check_u16(4 + len(self.body), "selector length")
        return struct.pack("!BBH", self.ts_type, self.second_octet, length) + self.body


TrafficSelector = AddressRangeSelector | RawTrafficSelector


def _decode_selector(r: Reader) -> TrafficSelector:
    start = r.offset
    ts_type = as_enum(TsType, r.u8("TS type"))
    second = r.u8("TS IP protocol")
    length = r.u16("selector length")
    if length < 4 or length - 4 > r.left:
        raise InvalidSyntax(
            f"selector length {length} outside 4..{r.left + 4} bytes left", start + 2
        )
    body = r.sub(length - 4, "traffic selector")
    if ts_type in _TS_LEN:
        if length != _TS_LEN[ts_type]:
            raise InvalidSyntax(
                f"{ts_type.name} selector length {length} (must be {_TS_LEN[ts_type]})",
                start + 2,
            )
        sport = body.u16("start port")
        eport = body.u16("end port")
        size = 4 if ts_type == TsType.TS_IPV4_ADDR_RANGE else 16
        lo = ipaddress.ip_address(body.take(size, "start address"))
        hi = ipaddress.ip_address(body.take(size, "end address"))
        return AddressRangeSelector(lo, hi, second, sport, eport)
    return RawTrafficSelector(ts_type, body.rest(), second)


@dataclass
class TrafficSelectors(Payload):
    """TSi/TSr payload body (RFC 7296 §3.13)."""

    selectors: list[TrafficSelector] = field(default_factory=list)
    reserved: int = 0  # 3 octets

    def encode_body(self) -> bytes:
        if len(self.selectors) > 0xFF:
            raise EncodeError(f"{len(self.selectors)} traffic selectors (at most 255)")
        head = bytes([len(self.selectors)]) + self.reserved.to_bytes(3, "big")
        return head + b"".join(s.encode() for s in self.selectors)

    @classmethod
    def decode_body(cls, next_type: int, body: bytes, offset: int) -> Self:
        known = _DECODED.get(body)
        if known is not None:
            return cls(selectors=list(known[0]), reserved=known[1])
        r = Reader(body, offset)
        count = r.u8("number of TSs")
        reserved = r.u24("TS reserved")
        selectors: list[TrafficSelector] = []
        while r.left:
            selectors.append(_decode_selector(r))
        if len(selectors) != count:
            raise InvalidSyntax(
                f"TS payload announces {count} selectors but carries {len(selectors)}",
                r.base,
            )
        if len(r.data) <= _DECODED_BYTES:
            _DECODED.keep(r.data, (tuple(selectors), reserved))  # the list stays the caller's
        return cls(selectors=selectors, reserved=reserved)


# Received TS bodies by their bytes: a peer proposes the same selectors in every IKE_AUTH
# and CREATE_CHILD_SA, and each address is an ipaddress object, slow to build. Decoding is
# a pure function of the bytes, so this holds no state of any peer: failures are never
# cached, each decode gets a list of its own holding the kept selectors (immutable, as their
# addresses), and a flood of distinct bodies fills at most the memo's 256 entries of at most
# _DECODED_BYTES.
_DECODED: Memo[bytes, tuple[tuple[TrafficSelector, ...], int]] = Memo(256)
_DECODED_BYTES = 1024


@dataclass
class TSi(TrafficSelectors):
    TYPE: ClassVar[PayloadType] = PayloadType.TSi


@dataclass
class TSr(TrafficSelectors):
    TYPE: ClassVar[PayloadType] = PayloadType.TSr
