"""The SA payload (RFC 7296 §3.3): proposals, transforms (incl. RFC 9370 ADDKE1..7) and
transform attributes (TV/TLV)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Self, TypeVar

from pqike.memo import Memo
from pqike.wire.base import EncodeError, Fields, Payload, Reader, as_enum, check_u16, truncated
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
# the first four octets of a proposal or transform (Last Substruc, RESERVED, Length); the
# four after them are there once the Length is checked
_PROPOSAL_HEAD = Fields(
    "!BBH", ("proposal Last Substruc", 1), ("proposal header", 1), ("proposal length", 2)
)
_PROPOSAL_REST = struct.Struct("!BBBB")  # Proposal Num, Protocol ID, SPI Size, #Transforms
_TRANSFORM_HEAD = Fields(
    "!BBH", ("transform Last Substruc", 1), ("transform header", 1), ("transform length", 2)
)
_TRANSFORM_REST = struct.Struct("!BBH")  # Transform Type, RESERVED, Transform ID
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
        more, res1, length = r.unpack(_TRANSFORM_HEAD)
        if more not in (0, _MORE_TRANSFORMS):
            raise InvalidSyntax(f"transform Last Substruc {more} (0 or 3 expected)", start)
        _check_length(r, length, "transform", "proposal")
        data, pos = r.data, r.pos
        ttype, res2, tid = _TRANSFORM_REST.unpack_from(data, pos)
        attrs: tuple[TransformAttribute, ...] = ()
        if length > 8:
            attrs = _attributes(Reader(data[pos + 4 : pos + length - 4], start + 8))
        r.pos = pos + length - 4
        return cls(ttype, tid, attrs, (res1 << 8) | res2), more == 0


def _check_length(r: Reader, length: int, what: str, within: str) -> None:
    """A substructure's Length, read at ``r.offset - 2``: its 8-octet header at least, and
    within the rest of its ``within``."""
    if length < 8:
        raise InvalidSyntax(f"{what} length {length} < 8", r.offset - 2)
    if length - 4 > r.left:
        raise InvalidSyntax(
            f"{what} length {length} exceeds the {r.left + 4} bytes left in the {within}",
            r.offset - 2,
        )


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
        more, reserved, length = r.unpack(_PROPOSAL_HEAD)
        if more not in (0, _MORE_PROPOSALS):
            raise InvalidSyntax(f"proposal Last Substruc {more} (0 or 2 expected)", start)
        _check_length(r, length, "proposal", "SA")
        data, pos = r.data, r.pos
        number, protocol, spi_size, count = _PROPOSAL_REST.unpack_from(data, pos)
        if 8 + spi_size > length:
            raise truncated(f"SPI of {spi_size} bytes", spi_size, length - 8, start + 8)
        end = pos + length - 4
        spi = data[pos + 4 : pos + 4 + spi_size]
        body = Reader(data[pos + 4 + spi_size : end], start + 8 + spi_size)
        r.pos = end
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
