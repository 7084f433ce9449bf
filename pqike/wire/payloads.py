"""IKEv2 payloads (RFC 7296 §3.2-3.16, RFC 7383 §2.5) as typed dataclasses, and the chain codec.

Decoding is strict and bounded: every length and count is checked against the bytes actually
present before anything is sliced, the chain is walked iteratively (payloads never nest beyond
SA → proposal → transform → attribute), and each problem raises one ``DecodeError`` naming the
absolute byte offset. Decoding then encoding gives back the exact bytes: the critical bit,
reserved bits and fields, and unknown payloads/selectors/values are kept as received.

Numbers from the IANA registries are converted to their enum when known and kept as ``int``
otherwise, so an unknown notify or transform survives a round trip.

The SA payload lives in ``security_association``, TSi/TSr in ``traffic_selectors`` and the
shared base in ``base``; everything is re-exported here.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Self, TypeVar

from pqike.wire.base import (
    CRITICAL,
    GENERIC_HEADER,
    GENERIC_HEADER_LEN,
    U16,
    EncodeError,
    Fields,
    Payload,
    Reader,
    as_enum,
    check_u16,
    payload_name,
    truncated,
)
from pqike.wire.errors import InvalidSyntax, UnsupportedCriticalPayload
from pqike.wire.iana import (
    AuthMethod,
    CertEncoding,
    CfgAttr,
    CfgType,
    EapCode,
    EapType,
    IdType,
    KeMethod,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from pqike.wire.security_association import (
    Proposal,
    SecurityAssociation,
    Transform,
    TransformAttribute,
)
from pqike.wire.traffic_selectors import (
    AddressRangeSelector,
    RawTrafficSelector,
    TrafficSelector,
    TrafficSelectors,
    TSi,
    TSr,
)

__all__ = [
    "GENERIC_HEADER_LEN",
    "PAYLOAD_CLASSES",
    "AddressRangeSelector",
    "Authentication",
    "Certificate",
    "CertificateRequest",
    "ConfigAttribute",
    "Configuration",
    "Delete",
    "EncodeError",
    "Encrypted",
    "EncryptedFragment",
    "ExtensibleAuthentication",
    "IDi",
    "IDr",
    "Identification",
    "KeyExchange",
    "Nonce",
    "Notify",
    "Payload",
    "Proposal",
    "RawTrafficSelector",
    "SecurityAssociation",
    "TSi",
    "TSr",
    "TrafficSelector",
    "TrafficSelectors",
    "Transform",
    "TransformAttribute",
    "UnknownPayload",
    "VendorId",
    "as_enum",
    "decode_payloads",
    "encode_payloads",
    "find",
    "notifies",
]

_CP_ATTR_R = 0x8000  # reserved bit in front of the CP attribute type (RFC 7296 §3.15.1)
_NONCE_MIN, _NONCE_MAX = 16, 256  # RFC 7296 §3.9

# the fixed part of each payload body, read in one unpack (RFC 7296 §3.4-§3.15, RFC 7383)
_KE_HEADER = Fields("!HH", ("KE method", 2), ("KE reserved", 2))
_ID_HEADER = Fields("!I", ("ID type", 1), ("ID reserved", 3))
_CERT_HEADER = Fields("!B", ("certificate encoding", 1))
_AUTH_HEADER = Fields("!I", ("auth method", 1), ("AUTH reserved", 3))
_NOTIFY_HEADER = Fields(
    "!BBH", ("notify protocol ID", 1), ("notify SPI size", 1), ("notify message type", 2)
)
_DELETE_HEADER = Fields(
    "!BBH", ("delete protocol ID", 1), ("delete SPI size", 1), ("number of SPIs", 2)
)
_SKF_HEADER = Fields("!HH", ("fragment number", 2), ("total fragments", 2))
_CP_HEADER = Fields("!I", ("CFG type", 1), ("CP reserved", 3))
_CP_ATTRIBUTE = Fields(
    "!HH", ("configuration attribute type", 2), ("configuration attribute length", 2)
)
_U24 = 0xFFFFFF
_HH = struct.Struct("!HH").pack
_BBH = struct.Struct("!BBH").pack
_NOTIFY_TYPES: dict[int, NotifyType] = NotifyType._value2member_map_  # type: ignore[assignment]
_PROTOCOL_IDS: dict[int, ProtocolId] = ProtocolId._value2member_map_  # type: ignore[assignment]
_KE_METHODS: dict[int, KeMethod] = KeMethod._value2member_map_  # type: ignore[assignment]

P = TypeVar("P", bound=Payload)


# --- simple payloads ----------------------------------------------------------------------


@dataclass
class KeyExchange(Payload):
    """KE payload (RFC 7296 §3.4): Key Exchange Method (RFC 9370 naming) and data."""

    TYPE: ClassVar[PayloadType] = PayloadType.KE
    method: KeMethod | int = 0
    data: bytes = b""
    reserved: int = 0

    def __post_init__(self) -> None:
        self.method = _KE_METHODS.get(self.method, self.method)  # as_enum, inlined

    def encode_body(self) -> bytes:
        return _HH(self.method, self.reserved) + self.data

    @classmethod
    def decode_body(cls, next_type: int, body: bytes, offset: int) -> Self:
        method, reserved = _KE_HEADER.read(body, 0, offset)
        return cls(method=method, data=body[4:], reserved=reserved)


@dataclass
class Identification(Payload):
    """IDi/IDr payload body (RFC 7296 §3.5)."""

    id_type: IdType | int = 0
    data: bytes = b""
    reserved: int = 0  # 3 octets

    def __post_init__(self) -> None:
        self.id_type = as_enum(IdType, self.id_type)

    def encode_body(self) -> bytes:
        return bytes([self.id_type]) + self.reserved.to_bytes(3, "big") + self.data

    @classmethod
    def decode_body(cls, next_type: int, body: bytes, offset: int) -> Self:
        (head,) = _ID_HEADER.read(body, 0, offset)
        return cls(id_type=head >> 24, data=body[4:], reserved=head & _U24)


@dataclass
class IDi(Identification):
    TYPE: ClassVar[PayloadType] = PayloadType.IDi


@dataclass
class IDr(Identification):
    TYPE: ClassVar[PayloadType] = PayloadType.IDr


@dataclass
class Certificate(Payload):
    """CERT payload (RFC 7296 §3.6)."""

    TYPE: ClassVar[PayloadType] = PayloadType.CERT
    encoding: CertEncoding | int = CertEncoding.X509_SIGNATURE
    data: bytes = b""

    def __post_init__(self) -> None:
        self.encoding = as_enum(CertEncoding, self.encoding)

    def encode_body(self) -> bytes:
        return bytes([self.encoding]) + self.data

    @classmethod
    def decode_body(cls, next_type: int, body: bytes, offset: int) -> Self:
        (encoding,) = _CERT_HEADER.read(body, 0, offset)
        return cls(encoding=encoding, data=body[1:])


@dataclass
class CertificateRequest(Certificate):
    """CERTREQ payload (RFC 7296 §3.7); ``data`` is the concatenated CA key hashes."""

    TYPE: ClassVar[PayloadType] = PayloadType.CERTREQ


@dataclass
class Authentication(Payload):
    """AUTH payload (RFC 7296 §3.8)."""

    TYPE: ClassVar[PayloadType] = PayloadType.AUTH
    method: AuthMethod | int = AuthMethod.PSK
    data: bytes = b""
    reserved: int = 0  # 3 octets

    def __post_init__(self) -> None:
        self.method = as_enum(AuthMethod, self.method)

    def encode_body(self) -> bytes:
        return bytes([self.method]) + self.reserved.to_bytes(3, "big") + self.data

    @classmethod
    def decode_body(cls, next_type: int, body: bytes, offset: int) -> Self:
        (head,) = _AUTH_HEADER.read(body, 0, offset)
        return cls(method=head >> 24, data=body[4:], reserved=head & _U24)


@dataclass
class Nonce(Payload):
    """Nonce payload (RFC 7296 §3.9): 16 to 256 octets."""

    TYPE: ClassVar[PayloadType] = PayloadType.NONCE
    data: bytes = b""

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, next_type: int, body: bytes, offset: int) -> Self:
        if not _NONCE_MIN <= len(body) <= _NONCE_MAX:
            raise InvalidSyntax(
                f"nonce of {len(body)} bytes (must be {_NONCE_MIN}..{_NONCE_MAX})", offset
            )
        return cls(data=body)


@dataclass
class Notify(Payload):
    """Notify payload (RFC 7296 §3.10)."""

    TYPE: ClassVar[PayloadType] = PayloadType.NOTIFY
    notify_type: NotifyType | int = 0
    data: bytes = b""
    protocol: ProtocolId | int = ProtocolId.NONE
    spi: bytes = b""

    def __post_init__(self) -> None:
        # as_enum inlined: every message builds or decodes several notifies
        self.notify_type = _NOTIFY_TYPES.get(self.notify_type, self.notify_type)
        self.protocol = _PROTOCOL_IDS.get(self.protocol, self.protocol)

    def encode_body(self) -> bytes:
        if len(self.spi) > 0xFF:
            raise EncodeError(f"notify SPI of {len(self.spi)} bytes")
        head = _BBH(self.protocol, len(self.spi), self.notify_type)
        return head + self.spi + self.data if self.spi else head + self.data

    @classmethod
    def decode_body(cls, next_type: int, body: bytes, offset: int) -> Self:
        protocol, spi_size, ntype = _NOTIFY_HEADER.read(body, 0, offset)
        spi = body[4 : 4 + spi_size]  # b"" for IKE notifies, most of those a handshake has
        if len(spi) != spi_size:
            what = f"notify SPI of {spi_size} bytes"
            raise truncated(what, spi_size, len(body) - 4, offset + 4)
        return cls(notify_type=ntype, data=body[4 + spi_size :], protocol=protocol, spi=spi)


@dataclass
class Delete(Payload):
    """Delete payload (RFC 7296 §3.11); ``spi_size`` 0 with no SPIs deletes the IKE SA."""

    TYPE: ClassVar[PayloadType] = PayloadType.DELETE
    protocol: ProtocolId | int = ProtocolId.IKE
    spis: list[bytes] = field(default_factory=list)
    spi_size: int | None = None  # None: taken from the SPIs (0 if there are none)

    def __post_init__(self) -> None:
        self.protocol = as_enum(ProtocolId, self.protocol)

    def encode_body(self) -> bytes:
        size = self.spi_size if self.spi_size is not None else len(self.spis[0]) if self.spis else 0
        if any(len(s) != size for s in self.spis) or size > 0xFF:
            raise EncodeError(f"Delete SPIs must all be {size} bytes")
        if size == 0 and self.spis:
            raise EncodeError("Delete with SPI size 0 cannot list SPIs")
        count = check_u16(len(self.spis), "number of SPIs")
        return struct.pack("!BBH", self.protocol, size, count) + b"".join(self.spis)

    @classmethod
    def decode_body(cls, next_type: int, body: bytes, offset: int) -> Self:
        protocol, size, count = _DELETE_HEADER.read(body, 0, offset)
        left = len(body) - 4
        if size * count != left or (size == 0 and count):
            raise InvalidSyntax(
                f"Delete announces {count} SPIs of {size} bytes but carries {left} bytes",
                offset + 2,
            )
        spis = [body[at : at + size] for at in range(4, 4 + left, size)] if size else []
        return cls(protocol=protocol, spis=spis, spi_size=size)


@dataclass
class VendorId(Payload):
    """Vendor ID payload (RFC 7296 §3.12)."""

    TYPE: ClassVar[PayloadType] = PayloadType.VENDOR_ID
    data: bytes = b""

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, next_type: int, body: bytes, offset: int) -> Self:
        return cls(data=body)


# --- SK / SKF -----------------------------------------------------------------------------


@dataclass
class Encrypted(Payload):
    """SK payload (RFC 7296 §3.14), still sealed: ``body`` is IV | ciphertext | ICV.

    Its generic header's Next Payload is the type of the first inner payload, and it is always
    the last payload of a message.
    """

    TYPE: ClassVar[PayloadType] = PayloadType.SK
    first_inner: int = 0
    body: bytes = b""

    def header_next(self, following: int) -> int:
        return self.first_inner

    def encode_body(self) -> bytes:
        return self.body

    @classmethod
    def decode_body(cls, next_type: int, body: bytes, offset: int) -> Self:
        return cls(first_inner=next_type, body=body)


@dataclass
class EncryptedFragment(Payload):
    """SKF payload (RFC 7383 §2.5): first inner type (fragment 1 only), number, total, body."""

    TYPE: ClassVar[PayloadType] = PayloadType.SKF
    first_inner: int = 0
    number: int = 1
    total: int = 1
    body: bytes = b""

    def header_next(self, following: int) -> int:
        return self.first_inner

    def encode_body(self) -> bytes:
        head = _HH(check_u16(self.number, "fragment number"), check_u16(self.total, "total"))
        return head + self.body

    @classmethod
    def decode_body(cls, next_type: int, body: bytes, offset: int) -> Self:
        number, total = _SKF_HEADER.read(body, 0, offset)
        if not 1 <= number <= total:
            raise InvalidSyntax(f"fragment number {number} outside 1..{total}", offset)
        return cls(first_inner=next_type, number=number, total=total, body=body[4:])


# --- CP / EAP -----------------------------------------------------------------------------


@dataclass
class ConfigAttribute:
    """A configuration attribute (RFC 7296 §3.15.1); an empty value asks for one."""

    attr_type: CfgAttr | int
    value: bytes = b""
    reserved_bit: bool = False

    def __post_init__(self) -> None:
        self.attr_type = as_enum(CfgAttr, self.attr_type)

    def encode(self) -> bytes:
        if not 0 <= self.attr_type < _CP_ATTR_R:
            raise EncodeError(f"attribute type {self.attr_type} does not fit in 15 bits")
        head = (_CP_ATTR_R if self.reserved_bit else 0) | self.attr_type
        return struct.pack("!HH", head, check_u16(len(self.value), "attribute length")) + (
            self.value
        )


@dataclass
class Configuration(Payload):
    """CP payload (RFC 7296 §3.15)."""

    TYPE: ClassVar[PayloadType] = PayloadType.CP
    cfg_type: CfgType | int = CfgType.CFG_REQUEST
    attributes: list[ConfigAttribute] = field(default_factory=list)
    reserved: int = 0  # 3 octets

    def __post_init__(self) -> None:
        self.cfg_type = as_enum(CfgType, self.cfg_type)

    def encode_body(self) -> bytes:
        head = bytes([self.cfg_type]) + self.reserved.to_bytes(3, "big")
        return head + b"".join(a.encode() for a in self.attributes)

    @classmethod
    def decode_body(cls, next_type: int, body: bytes, offset: int) -> Self:
        r = Reader(body, offset)
        (head,) = r.unpack(_CP_HEADER)
        cfg_type, reserved = head >> 24, head & _U24
        attrs: list[ConfigAttribute] = []
        while r.left:
            head, length = r.unpack(_CP_ATTRIBUTE)
            value = r.take(length, f"configuration attribute value of {length} bytes")
            attrs.append(ConfigAttribute(head & ~_CP_ATTR_R, value, bool(head & _CP_ATTR_R)))
        return cls(cfg_type=cfg_type, attributes=attrs, reserved=reserved)


@dataclass
class ExtensibleAuthentication(Payload):
    """EAP payload (RFC 7296 §3.16): one EAP message (RFC 3748 §4), kept whole."""

    TYPE: ClassVar[PayloadType] = PayloadType.EAP
    message: bytes = b""

    @property
    def code(self) -> EapCode | int:
        return as_enum(EapCode, self.message[0])

    @property
    def identifier(self) -> int:
        return self.message[1]

    @property
    def eap_type(self) -> EapType | int | None:
        """The method type; only Request and Response carry one."""
        if self.code in (EapCode.REQUEST, EapCode.RESPONSE) and len(self.message) > 4:
            return as_enum(EapType, self.message[4])
        return None

    def encode_body(self) -> bytes:
        return self.message

    @classmethod
    def decode_body(cls, next_type: int, body: bytes, offset: int) -> Self:
        if len(body) < 4:
            raise InvalidSyntax(f"EAP message of {len(body)} bytes (header is 4)", offset)
        length = int.from_bytes(body[2:4], "big")
        if length != len(body):
            raise InvalidSyntax(
                f"EAP Length {length} but the payload carries {len(body)} bytes", offset + 2
            )
        return cls(message=body)


# --- unknown ------------------------------------------------------------------------------


@dataclass
class UnknownPayload(Payload):
    """A non-critical payload of a type we do not implement, skipped and kept raw."""

    payload_type: int = 0
    body: bytes = b""

    @property
    def type(self) -> int:
        return self.payload_type

    def encode_body(self) -> bytes:
        return self.body


# --- chains -------------------------------------------------------------------------------

# every payload type the codec decodes, by type number
PAYLOAD_CLASSES: tuple[type[Payload], ...] = (
    SecurityAssociation,
    KeyExchange,
    IDi,
    IDr,
    Certificate,
    CertificateRequest,
    Authentication,
    Nonce,
    Notify,
    Delete,
    VendorId,
    TSi,
    TSr,
    Encrypted,
    Configuration,
    ExtensibleAuthentication,
    EncryptedFragment,
)
_CLASSES: dict[int, type[Payload]] = {cls.TYPE: cls for cls in PAYLOAD_CLASSES}
_SEALED = (Encrypted, EncryptedFragment)
_SEALED_TYPES = frozenset((PayloadType.SK, PayloadType.SKF))
_GENERIC_PACK = GENERIC_HEADER.pack
_GENERIC_UNPACK = GENERIC_HEADER.unpack_from
_NONE = int(PayloadType.NONE)  # a plain int: no enum member lookup per payload


def decode_chain(
    first_type: int, data: bytes, base_offset: int, *, outer: bool, start: int = 0
) -> list[Payload]:
    """Walk the payload chain filling ``data[start:]``; ``base_offset`` is the absolute
    offset of ``data[0]``. ``outer`` allows SK/SKF, which ends the chain (it is last)."""
    payloads: list[Payload] = []
    ptype, pos, end = first_type, start, len(data)
    while ptype != _NONE:
        off = base_offset + pos
        if end - pos < GENERIC_HEADER_LEN:
            raise InvalidSyntax(
                f"truncated {payload_name(ptype)} payload header: {end - pos} of 4 bytes", off
            )
        next_type, flags, length = _GENERIC_UNPACK(data, pos)
        if length < GENERIC_HEADER_LEN:
            raise InvalidSyntax(f"{payload_name(ptype)} payload length {length} < 4", off + 2)
        if length > end - pos:
            raise InvalidSyntax(
                f"{payload_name(ptype)} payload length {length} exceeds the {end - pos} bytes left",
                off + 2,
            )
        cls = _CLASSES.get(ptype)
        sealed = ptype in _SEALED_TYPES
        if cls is None:
            if flags & CRITICAL:
                raise UnsupportedCriticalPayload(ptype, off)
            payload: Payload = UnknownPayload(payload_type=ptype, body=data[pos + 4 : pos + length])
        else:
            if sealed and not outer:
                raise InvalidSyntax(
                    f"{payload_name(ptype)} payload inside an encrypted payload", off
                )
            payload = cls.decode_body(next_type, data[pos + 4 : pos + length], off + 4)
        if flags:  # else the defaults stand: not critical, no reserved bits
            payload.critical = bool(flags & CRITICAL)
            payload.reserved_bits = flags & ~CRITICAL
        payloads.append(payload)
        pos += length
        ptype = _NONE if sealed else next_type
    if pos != end:
        what = (
            "the encrypted payload"
            if payloads and isinstance(payloads[-1], _SEALED)
            else ("the last payload")
        )
        raise InvalidSyntax(f"{end - pos} bytes after {what}", base_offset + pos)
    return payloads


def encode_chain(payloads: Sequence[Payload], *, outer: bool) -> tuple[int, bytes]:
    """Encode a chain, filling in every Next Payload and Payload Length."""
    if not payloads:  # e.g. the unprotected payloads of every message but IKE_SA_INIT
        return _NONE, b""
    types = [p.type for p in payloads]
    types.append(_NONE)
    last = len(payloads) - 1
    out: list[bytes] = []
    for i, p in enumerate(payloads):
        following = types[i + 1]
        if types[i] in _SEALED_TYPES:  # a set of ints: cheaper than isinstance per payload
            if not outer or i != last:
                raise EncodeError("an SK/SKF payload must be the last payload of a message")
            following = p.header_next(following)
        try:
            body = p.encode_body()
        except (struct.error, OverflowError) as e:  # a field value too large for its octets
            raise EncodeError(f"{payload_name(p.type)} payload: {e}") from None
        length = GENERIC_HEADER_LEN + len(body)
        if length > U16:
            raise EncodeError(f"{payload_name(p.type)} payload of {length} bytes exceeds 65535")
        flags = (CRITICAL if p.critical else 0) | (p.reserved_bits & ~CRITICAL)
        out.append(_GENERIC_PACK(following, flags, length) + body)
    return types[0], b"".join(out)


def decode_payloads(first_type: int, data: bytes, base_offset: int = 0) -> list[Payload]:
    """Decode an SK inner payload chain (decrypted plaintext); SK/SKF inside is an error."""
    return decode_chain(first_type, data, base_offset, outer=False)


def encode_payloads(payloads: Sequence[Payload]) -> tuple[int, bytes]:
    """Encode an SK inner chain: (type of the first payload, bytes)."""
    return encode_chain(payloads, outer=False)


def find(payloads: Sequence[Payload], kind: type[P]) -> P | None:
    """The first payload of that class."""
    return next((p for p in payloads if isinstance(p, kind)), None)


def notifies(payloads: Sequence[Payload], ntype: NotifyType | int) -> list[Notify]:
    """All Notify payloads of one type, in order."""
    return [p for p in payloads if isinstance(p, Notify) and p.notify_type == ntype]
