"""Every decoding error path: the error class, the notify it maps to, and the byte offset."""

from __future__ import annotations

import struct

import pytest

from pqike.wire.errors import (
    DecodeError,
    InvalidMajorVersion,
    InvalidSyntax,
    UnsupportedCriticalPayload,
)
from pqike.wire.iana import ExchangeType, NotifyType, PayloadType
from pqike.wire.message import Message, decode_message
from pqike.wire.payloads import (
    Delete,
    EncodeError,
    Encrypted,
    IDi,
    KeyExchange,
    UnknownPayload,
    VendorId,
    decode_payloads,
    encode_payloads,
)

PT = PayloadType
HDR = 28  # IKE header
BODY = HDR + 4  # first payload's body


def header(first: int, length: int, version: int = 0x20) -> bytes:
    return bytes(8) + bytes(8) + bytes([first, version, 34, 0x08]) + struct.pack("!II", 0, length)


def msg(first: int, chain: bytes, version: int = 0x20) -> bytes:
    return header(first, HDR + len(chain), version) + chain


def gp(next_type: int, body: bytes, flags: int = 0, length: int | None = None) -> bytes:
    """A payload with generic header."""
    n = 4 + len(body) if length is None else length
    return struct.pack("!BBH", next_type, flags, n) + body


def prop(body: bytes, count: int, more: int = 0, spi: bytes = b"", length: int | None = None):
    n = 8 + len(spi) + len(body) if length is None else length
    return struct.pack("!BBHBBBB", more, 0, n, 1, 1, len(spi), count) + spi + body


def xform(attrs: bytes = b"", more: int = 0, length: int | None = None) -> bytes:
    n = 8 + len(attrs) if length is None else length
    return struct.pack("!BBHBBH", more, 0, n, 1, 0, 12) + attrs


def sa(body: bytes) -> bytes:
    return msg(PT.SA, gp(0, body))


CASES: list[tuple[str, bytes, type[DecodeError], int, str]] = [
    ("short header", bytes(20), InvalidSyntax, 0, "truncated IKE header"),
    ("length field", header(0, 100), InvalidSyntax, 24, "IKE header Length 100"),
    ("length field short", header(0, 28) + b"\0", InvalidSyntax, 24, "has 29 bytes"),
    ("generic header", msg(PT.VENDOR_ID, b"\0\0"), InvalidSyntax, HDR, "truncated VENDOR_ID"),
    ("payload length < 4", msg(PT.VENDOR_ID, gp(0, b"", length=3)), InvalidSyntax, 30, "< 4"),
    (
        "payload length beyond message",
        msg(PT.VENDOR_ID, gp(0, b"abcd", length=50)),
        InvalidSyntax,
        30,
        "exceeds the 8 bytes left",
    ),
    (
        "next payload beyond message",
        msg(PT.NONCE, gp(PT.VENDOR_ID, bytes(16))),
        InvalidSyntax,
        HDR + 20,
        "truncated VENDOR_ID payload header: 0 of 4",
    ),
    (
        "trailing bytes",
        msg(PT.VENDOR_ID, gp(0, b"") + b"xyz"),
        InvalidSyntax,
        HDR + 4,
        "3 bytes after the last payload",
    ),
    (
        "bytes after SK",
        msg(PT.SK, gp(PT.IDi, b"", length=4) + b"xyz"),
        InvalidSyntax,
        HDR + 4,
        "after the encrypted payload",
    ),
    # SA / proposal / transform / attribute
    ("proposal length < 8", sa(prop(b"", 0, length=7)), InvalidSyntax, BODY + 2, "< 8"),
    (
        "proposal beyond SA",
        sa(prop(b"", 0, length=100)),
        InvalidSyntax,
        BODY + 2,
        "proposal length 100 exceeds",
    ),
    (
        "proposal Last Substruc value",
        sa(prop(b"", 0, more=1)),
        InvalidSyntax,
        BODY,
        "Last Substruc 1",
    ),
    (
        "proposal says more, none follow",
        sa(prop(b"", 0, more=2)),
        InvalidSyntax,
        BODY,
        "more but none follow",
    ),
    (
        "proposal says last, more follow",
        sa(prop(b"", 0) + prop(b"", 0)),
        InvalidSyntax,
        BODY,
        "last but more follow",
    ),
    (
        "SPI beyond proposal",
        sa(prop(b"", 0, spi=b"", length=8)[:6] + b"\x08\x00"),
        InvalidSyntax,
        BODY + 8,
        "truncated SPI of 8 bytes",
    ),
    (
        "transform count",
        sa(prop(xform(), 2)),
        InvalidSyntax,
        BODY + 7,
        "announces 2 transforms but carries 1",
    ),
    ("proposal header cut", sa(b"\0\0"), InvalidSyntax, BODY + 2, "truncated proposal length"),
    (
        "transform header cut",
        sa(prop(xform()[:3], 1)),
        InvalidSyntax,
        BODY + 10,
        "truncated transform length: 2 bytes needed, 1 left",
    ),
    ("transform length < 8", sa(prop(xform(length=7), 1)), InvalidSyntax, BODY + 10, "< 8"),
    (
        "transform beyond proposal",
        sa(prop(xform(length=40), 1)),
        InvalidSyntax,
        BODY + 10,
        "transform length 40 exceeds",
    ),
    (
        "transform says more, none follow",
        sa(prop(xform(more=3), 1)),
        InvalidSyntax,
        BODY + 8,
        "more but none follow",
    ),
    ("transform Last Substruc value", sa(prop(xform(more=7), 1)), InvalidSyntax, BODY + 8, "7"),
    (
        "TLV attribute beyond transform",
        sa(prop(xform(struct.pack("!HH", 1, 10)), 1)),
        InvalidSyntax,
        BODY + 8 + 8 + 4,
        "truncated TLV attribute value of 10 bytes",
    ),
    (
        "attribute header cut",
        sa(prop(xform(b"\x80"), 1)),
        InvalidSyntax,
        BODY + 8 + 8,
        "truncated transform attribute header",
    ),
    # fixed-part payloads
    ("KE truncated", msg(PT.KE, gp(0, b"\x00\x1f")), InvalidSyntax, BODY + 2, "KE reserved"),
    ("IDi truncated", msg(PT.IDi, gp(0, b"\x02\0")), InvalidSyntax, BODY + 1, "ID reserved"),
    ("AUTH truncated", msg(PT.AUTH, gp(0, b"\x02")), InvalidSyntax, BODY + 1, "AUTH reserved"),
    ("CERT empty", msg(PT.CERT, gp(0, b"")), InvalidSyntax, BODY, "certificate encoding"),
    ("CERTREQ empty", msg(PT.CERTREQ, gp(0, b"")), InvalidSyntax, BODY, "certificate encoding"),
    ("nonce short", msg(PT.NONCE, gp(0, bytes(15))), InvalidSyntax, BODY, "nonce of 15 bytes"),
    ("nonce long", msg(PT.NONCE, gp(0, bytes(257))), InvalidSyntax, BODY, "nonce of 257 bytes"),
    (
        "notify SPI beyond payload",
        msg(PT.NOTIFY, gp(0, b"\x03\x04\x40\x09")),
        InvalidSyntax,
        BODY + 4,
        "truncated notify SPI of 4 bytes",
    ),
    (
        "notify type cut",
        msg(PT.NOTIFY, gp(0, b"\x00\x00\x40")),
        InvalidSyntax,
        BODY + 2,
        "truncated notify message type",
    ),
    (
        "delete SPI count",
        msg(PT.DELETE, gp(0, b"\x03\x04\x00\x02" + bytes(4))),
        InvalidSyntax,
        BODY + 2,
        "announces 2 SPIs of 4 bytes but carries 4",
    ),
    (
        "delete SPIs of size 0",
        msg(PT.DELETE, gp(0, b"\x01\x00\x00\x01")),
        InvalidSyntax,
        BODY + 2,
        "1 SPIs of 0 bytes",
    ),
    (
        "TS count",
        msg(PT.TSi, gp(0, b"\x02\0\0\0" + bytes.fromhex("07000010") + bytes(12))),
        InvalidSyntax,
        BODY,
        "announces 2 selectors but carries 1",
    ),
    (
        "TS selector length for its type",
        msg(PT.TSr, gp(0, b"\x01\0\0\0" + bytes.fromhex("07000028") + bytes(36))),
        InvalidSyntax,
        BODY + 6,
        "TS_IPV4_ADDR_RANGE selector length 40 (must be 16)",
    ),
    (
        "TS selector beyond payload",
        msg(PT.TSi, gp(0, b"\x01\0\0\0" + bytes.fromhex("08000028") + bytes(12))),
        InvalidSyntax,
        BODY + 6,
        "selector length 40 outside 4..16",
    ),
    (
        "CP attribute value beyond payload",
        msg(PT.CP, gp(0, b"\x01\0\0\0" + bytes.fromhex("00010004"))),
        InvalidSyntax,
        BODY + 8,
        "configuration attribute value of 4 bytes",
    ),
    ("EAP short", msg(PT.EAP, gp(0, b"\x02\x01\x00")), InvalidSyntax, BODY, "EAP message of 3"),
    (
        "EAP length",
        msg(PT.EAP, gp(0, bytes.fromhex("0201000901"))),
        InvalidSyntax,
        BODY + 2,
        "EAP Length 9 but the payload carries 5",
    ),
    (
        "SKF number 0",
        msg(PT.SKF, gp(PT.KE, b"\0\0\0\2")),
        InvalidSyntax,
        BODY,
        "fragment number 0 outside 1..2",
    ),
    (
        "SKF number > total",
        msg(PT.SKF, gp(0, b"\0\3\0\2")),
        InvalidSyntax,
        BODY,
        "fragment number 3 outside 1..2",
    ),
    ("SKF truncated", msg(PT.SKF, gp(0, b"\0\1\0")), InvalidSyntax, BODY + 2, "total fragments"),
]


@pytest.mark.parametrize(
    ("wire", "cls", "offset", "what"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decode_error(wire: bytes, cls: type[DecodeError], offset: int, what: str) -> None:
    with pytest.raises(cls) as info:
        decode_message(wire)
    err = info.value
    assert type(err) is cls
    assert err.offset == offset, str(err)
    assert what in str(err)
    assert str(err).endswith(f"at offset {offset}")
    assert err.notify is NotifyType.INVALID_SYNTAX


@pytest.mark.parametrize("version", [0x10, 0x30, 0xF2])
def test_wrong_major_version(version: int) -> None:
    with pytest.raises(InvalidMajorVersion) as info:
        decode_message(msg(0, b"", version))
    assert info.value.offset == 17
    assert info.value.major == version >> 4
    assert info.value.notify is NotifyType.INVALID_MAJOR_VERSION


def test_minor_version_is_accepted_and_kept() -> None:
    wire = msg(0, b"", version=0x2F)
    assert decode_message(wire).encode() == wire


def test_unknown_critical_payload() -> None:
    nonce = gp(99, bytes(32))
    wire = msg(PT.NONCE, nonce + gp(0, b"data", flags=0x80))
    with pytest.raises(UnsupportedCriticalPayload) as info:
        decode_message(wire)
    err = info.value
    assert (err.payload_type, err.offset) == (99, HDR + len(nonce))
    assert err.notify is NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    assert err.notify_data == b"\x63"


def test_unknown_noncritical_payload_is_kept() -> None:
    wire = msg(99, gp(0, b"data", flags=0x01))
    (p,) = decode_message(wire).payloads
    assert isinstance(p, UnknownPayload)
    assert (p.type, p.body, p.critical, p.reserved_bits) == (99, b"data", False, 1)
    assert decode_message(wire).encode() == wire


def test_inner_chain_errors_use_base_offset() -> None:
    with pytest.raises(InvalidSyntax) as info:
        decode_payloads(PT.VENDOR_ID, b"\0\0", base_offset=100)
    assert info.value.offset == 100
    with pytest.raises(InvalidSyntax) as info:
        decode_payloads(PT.NONCE, gp(PT.SK, bytes(16)) + gp(0, b""), base_offset=60)
    assert info.value.offset == 60 + 20
    assert "inside an encrypted payload" in str(info.value)


# --- encoding refuses what cannot be put on the wire --------------------------------------


@pytest.mark.parametrize(
    ("payloads", "what"),
    [
        ([Encrypted(), VendorId()], "must be the last payload"),
        ([VendorId(data=bytes(65532))], "exceeds 65535"),
        ([KeyExchange(method=70000)], "KE payload"),
        ([IDi(reserved=1 << 24)], "IDi payload"),
        ([Delete(protocol=3, spis=[b"1234", b"123"])], "all be 4 bytes"),
        ([Delete(protocol=3, spis=[b"1234"], spi_size=0)], "all be 0 bytes"),
    ],
)
def test_encode_errors(payloads: list, what: str) -> None:
    message = Message(bytes(8), bytes(8), ExchangeType.INFORMATIONAL, 1, payloads)
    with pytest.raises(EncodeError, match=what):
        message.encode()


def test_encode_inner_chain_refuses_sk_and_bad_spis() -> None:
    with pytest.raises(EncodeError, match="last payload"):
        encode_payloads([Encrypted()])
    with pytest.raises(EncodeError, match="8 octets"):
        Message(bytes(4), bytes(8), ExchangeType.INFORMATIONAL, 1).encode()
