"""The SA payload (RFC 7296 §3.3): proposals, transforms (incl. RFC 9370 ADDKE1..7) and
transform attributes (TV/TLV)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Self, TypeVar

from pqike.memo import Memo
from pqike.wire.base import EncodeError, Payload, Reader, as_enum, check_u16
from pqike.wire.errors import InvalidSyntax
from pqike.wire.iana import (
    EncrId,
    EsnId,
    IntegId,
    KeMethod,
    PayloadType,
    PrfId,
    ProtocolId,
    TransformAttr,
    TransformType,
)

__all__ = ["Proposal", "SecurityAssociation", "Transform", "TransformAttribute"]

_MORE_PROPOSALS = 2  # "Last Substruc" values, RFC 7296 §3.3.1/§3.3.2
_MORE_TRANSFORMS = 3
_ATTR_TV = 0x8000  # AF bit: Type/Value format (RFC 7296 §3.3.5)
_TRANSFORM_HEADER = struct.Struct("!BBHBBH")
_PROPOSAL_HEADER = struct.Struct("!BBHBBBB")
S = TypeVar("S")

_TRANSFORM_IDS: dict[int, type[IntEnum]] = {
    TransformType.ENCR: EncrId,
    TransformType.PRF: PrfId,
    TransformType.INTEG: IntegId,
    TransformType.KE: KeMethod,
    TransformType.ESN: EsnId,
    **{t: KeMethod for t in TransformType if t >= TransformType.ADDKE1},
}


@dataclass(frozen=True, slots=True)
class TransformAttribute:
    """A transform attribute: an ``int`` value is TV (2 bytes, AF=1), ``bytes`` is TLV.
    Immutable, so the decode memo can hand the same one to every message that carries it."""

    attr_type: TransformAttr | int
    value: int | bytes

    def encode(self) -> bytes:
        if not 0 <= self.attr_type < _ATTR_TV:
            raise EncodeError(f"attribute type {self.attr_type} does not fit in 15 bits")
        if isinstance(self.value, int):
            return struct.pack("!HH", _ATTR_TV | self.attr_type, check_u16(self.value, "TV"))
        return struct.pack("!HH", self.attr_type, check_u16(len(self.value), "TLV length")) + (
            self.value
        )

    @classmethod
    def decode(cls, r: Reader) -> TransformAttribute:
        head = r.u16("transform attribute header")
        attr_type = as_enum(TransformAttr, head & ~_ATTR_TV)
        if head & _ATTR_TV:
            return cls(attr_type, r.u16("TV attribute value"))
        length = r.u16("TLV attribute length")
        return cls(attr_type, r.take(length, f"TLV attribute value of {length} bytes"))


@dataclass(frozen=True, slots=True)
class Transform:
    """A transform substructure (RFC 7296 §3.3.2); ``transform_id`` is typed by ``type``.
    Immutable (attributes a tuple): the decode memo and our encoded choices hand out the kept
    transforms themselves, no copies; a variant is ``dataclasses.replace(t, ...)``."""

    transform_type: TransformType | int
    transform_id: int
    attributes: tuple[TransformAttribute, ...] = ()
    reserved: int = 0  # the two RESERVED octets, first one high

    def __post_init__(self) -> None:
        # frozen: the typed values go in past __setattr__, once, when the transform is made
        ttype = as_enum(TransformType, self.transform_type)
        object.__setattr__(self, "transform_type", ttype)
        enum = _TRANSFORM_IDS.get(ttype)
        if enum is not None:
            object.__setattr__(self, "transform_id", as_enum(enum, self.transform_id))
        if type(self.attributes) is not tuple:  # a list given by a caller: not to be shared
            object.__setattr__(self, "attributes", tuple(self.attributes))

    @property
    def key_length(self) -> int | None:
        """The KEY_LENGTH attribute (bits), if present."""
        for a in self.attributes:
            if a.attr_type == TransformAttr.KEY_LENGTH and isinstance(a.value, int):
                return a.value
        return None

    def encode(self, last: bool) -> bytes:
        attrs = b"".join(a.encode() for a in self.attributes)
        length = check_u16(8 + len(attrs), "transform length")
        return (
            struct.pack(
                "!BBHBBH",
                0 if last else _MORE_TRANSFORMS,
                self.reserved >> 8,
                length,
                self.transform_type,
                self.reserved & 0xFF,
                self.transform_id,
            )
            + attrs
        )

    @classmethod
    def decode(cls, r: Reader) -> tuple[Transform, bool]:
        """The transform and whether it says it is the last one."""
        start = r.offset
        if r.left >= 8:  # the whole header at once; shorter ones fail field by field below
            more, res1, length, ttype, res2, tid = _TRANSFORM_HEADER.unpack_from(r.data, r.pos)
            if more in (0, _MORE_TRANSFORMS) and 8 <= length <= r.left:
                attrs: tuple[TransformAttribute, ...] = ()
                if length > 8:
                    body = Reader(r.data[r.pos + 8 : r.pos + length], start + 8)
                    attrs = _attributes(body)
                r.pos += length
                return cls(ttype, tid, attrs, (res1 << 8) | res2), more == 0
        more = r.u8("transform Last Substruc")
        if more not in (0, _MORE_TRANSFORMS):
            raise InvalidSyntax(f"transform Last Substruc {more} (0 or 3 expected)", start)
        res1 = r.u8("transform header")
        length = r.u16("transform length")
        if length < 8:
            raise InvalidSyntax(f"transform length {length} < 8", start + 2)
        if length - 4 > r.left:
            raise InvalidSyntax(
                f"transform length {length} exceeds the {r.left + 4} bytes left in the proposal",
                start + 2,
            )
        body = r.sub(length - 4, "transform")
        ttype = as_enum(TransformType, body.u8("transform type"))
        res2 = body.u8("transform header")
        tid = body.u16("transform ID")
        return cls(ttype, tid, _attributes(body), (res1 << 8) | res2), more == 0


def _attributes(body: Reader) -> tuple[TransformAttribute, ...]:
    """The attributes filling the rest of a transform body."""
    attrs: list[TransformAttribute] = []
    while body.left:
        attrs.append(TransformAttribute.decode(body))
    return tuple(attrs)


@dataclass
class Proposal:
    """A proposal substructure (RFC 7296 §3.3.1)."""

    number: int
    protocol: ProtocolId | int
    transforms: list[Transform] = field(default_factory=list)
    spi: bytes = b""
    reserved: int = 0

    def __post_init__(self) -> None:
        self.protocol = as_enum(ProtocolId, self.protocol)

    def encode(self, last: bool) -> bytes:
        if len(self.spi) > 0xFF or len(self.transforms) > 0xFF:
            raise EncodeError("proposal SPI or transform count does not fit in one octet")
        n = len(self.transforms)
        body = _encoded_transforms(self.transforms)
        length = check_u16(8 + len(self.spi) + len(body), "proposal length")
        head = struct.pack(
            "!BBHBBBB",
            0 if last else _MORE_PROPOSALS,
            self.reserved,
            length,
            self.number,
            self.protocol,
            len(self.spi),
            n,
        )
        return head + self.spi + body

    @classmethod
    def decode(cls, r: Reader) -> tuple[Proposal, bool]:
        start = r.offset
        if r.left >= 8:  # the whole header at once; anything amiss goes field by field below
            data, pos = r.data, r.pos
            more, reserved, length, number, protocol, spi_size, count = (
                _PROPOSAL_HEADER.unpack_from(data, pos)
            )
            if more in (0, _MORE_PROPOSALS) and 8 + spi_size <= length <= r.left:
                spi = data[pos + 8 : pos + 8 + spi_size]
                body = Reader(data[pos + 8 + spi_size : pos + length], start + 8 + spi_size)
                r.pos = pos + length
                return cls._with(start, number, protocol, body, spi, reserved, count), more == 0
        more = r.u8("proposal Last Substruc")
        if more not in (0, _MORE_PROPOSALS):
            raise InvalidSyntax(f"proposal Last Substruc {more} (0 or 2 expected)", start)
        reserved = r.u8("proposal header")
        length = r.u16("proposal length")
        if length < 8:
            raise InvalidSyntax(f"proposal length {length} < 8", start + 2)
        if length - 4 > r.left:
            raise InvalidSyntax(
                f"proposal length {length} exceeds the {r.left + 4} bytes left in the SA",
                start + 2,
            )
        body = r.sub(length - 4, "proposal")
        number = body.u8("proposal number")
        protocol = body.u8("protocol ID")
        spi_size = body.u8("SPI size")
        count = body.u8("number of transforms")
        spi = body.take(spi_size, f"SPI of {spi_size} bytes")
        return cls._with(start, number, protocol, body, spi, reserved, count), more == 0

    @classmethod
    def _with(
        cls,
        start: int,
        number: int,
        protocol: int,
        body: Reader,
        spi: bytes,
        reserved: int,
        count: int,
    ) -> Proposal:
        """The proposal at offset ``start`` whose transforms fill the rest of ``body``, if they
        are as many as its header announces."""
        transforms = _transforms(body)
        if len(transforms) != count:
            raise InvalidSyntax(
                f"proposal {number} announces {count} transforms but carries {len(transforms)}",
                start + 7,
            )
        return cls(number, protocol, transforms, spi, reserved)


# Received transforms by the bytes they came from. A peer sends the same offer in every
# IKE_SA_INIT, CREATE_CHILD_SA and IKE_AUTH (there only the SPI, in front, differs), and a
# transform takes most of the SA's decoding. Decoding is a pure function of the bytes, so
# this holds no state of any peer: failures are never cached, and a flood of distinct
# offers fills at most the memo's 256 entries of at most _TRANSFORMS_BYTES each. Transforms
# are immutable, so each decode gets a list of its own holding the kept transforms.
_TRANSFORMS: Memo[bytes, tuple[Transform, ...]] = Memo(256)
_TRANSFORMS_BYTES = 2048


def _substructures(r: Reader, decode: Callable[[Reader], tuple[S, bool]], what: str) -> list[S]:
    """The proposals or transforms filling the rest of ``r``; each says whether it is the
    last one (Last Substruc), and that must be true of the last one only."""
    items: list[S] = []
    while r.left:
        off = r.offset
        item, last = decode(r)
        items.append(item)
        if last != (r.left == 0):
            raise InvalidSyntax(
                f"{what} Last Substruc says "
                + ("last but more follow" if last else "more but none follow"),
                off,
            )
    return items


def _transforms(body: Reader) -> list[Transform]:
    """The transforms filling the rest of a proposal body."""
    region = body.data[body.pos :]
    known = _TRANSFORMS.get(region)
    if known is not None:
        body.pos = len(body.data)
        return list(known)
    transforms = _substructures(body, Transform.decode, "transform")
    if len(region) <= _TRANSFORMS_BYTES:
        _TRANSFORMS.keep(region, tuple(transforms))  # the list stays the caller's
    return transforms


# Our transforms encoded, by value: the responder answers with the same choice in every
# handshake. The key is every field the encoding reads, so this is a pure function of the
# values; our proposals come from the configuration, a bounded set.
_ENCODED: Memo[tuple[object, ...], bytes] = Memo(256)


def _encoded_transforms(transforms: list[Transform]) -> bytes:
    key = tuple(
        [
            (
                t.transform_type,
                t.transform_id,
                t.reserved,
                tuple([(a.attr_type, a.value) for a in t.attributes]) if t.attributes else (),
            )
            for t in transforms
        ]
    )
    encoded = _ENCODED.get(key)
    if encoded is None:
        n = len(transforms)
        encoded = _ENCODED.keep(
            key, b"".join(t.encode(i == n - 1) for i, t in enumerate(transforms))
        )
    return encoded


@dataclass
class SecurityAssociation(Payload):
    """SA payload (RFC 7296 §3.3)."""

    TYPE: ClassVar[PayloadType] = PayloadType.SA
    proposals: list[Proposal] = field(default_factory=list)

    def encode_body(self) -> bytes:
        n = len(self.proposals)
        return b"".join(p.encode(i == n - 1) for i, p in enumerate(self.proposals))

    @classmethod
    def decode_body(cls, next_type: int, body: bytes, offset: int) -> Self:
        return cls(proposals=_substructures(Reader(body, offset), Proposal.decode, "proposal"))
