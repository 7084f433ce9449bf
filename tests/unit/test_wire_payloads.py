"""Wire codec round trips: every payload type, whole messages, and fuzzed input.

Properties: encode -> decode gives equal objects and encode(decode(x)) == x for every x the
decoder accepts (also for mutated and random bytes), and the decoder raises nothing but
DecodeError.
"""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pqike.wire.errors import DecodeError
from pqike.wire.iana import (
    IKE_HEADER_LEN,
    AuthMethod,
    CfgAttr,
    CfgType,
    EncrId,
    ExchangeType,
    IdType,
    KeMethod,
    NotifyType,
    PayloadType,
    ProtocolId,
    TransformAttr,
    TransformType,
    TsType,
)
from pqike.wire.message import Message, decode_message
from pqike.wire.payloads import (
    AddressRangeSelector,
    Authentication,
    Certificate,
    CertificateRequest,
    ConfigAttribute,
    Configuration,
    Delete,
    Encrypted,
    EncryptedFragment,
    ExtensibleAuthentication,
    IDi,
    IDr,
    KeyExchange,
    Nonce,
    Notify,
    Payload,
    Proposal,
    RawTrafficSelector,
    SecurityAssociation,
    Transform,
    TransformAttribute,
    TSi,
    TSr,
    UnknownPayload,
    VendorId,
    decode_payloads,
    encode_payloads,
    find,
    notifies,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u24 = st.integers(0, 0xFFFFFF)
data = st.binary(max_size=48)
KNOWN = {int(t) for t in PayloadType}


def common() -> dict:
    return {"critical": st.booleans(), "reserved_bits": st.integers(0, 0x7F)}


attributes = st.builds(
    TransformAttribute, st.integers(0, 0x7FFF), st.one_of(u16, st.binary(max_size=16))
)
transforms = st.builds(Transform, u8, u16, st.lists(attributes, max_size=3), u16)
proposals = st.builds(Proposal, u8, u8, st.lists(transforms, max_size=6), st.binary(max_size=8), u8)
v4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
v6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
selectors = st.one_of(
    st.builds(AddressRangeSelector, v4, v4, u8, u16, u16),
    st.builds(AddressRangeSelector, v6, v6, u8, u16, u16),
    st.builds(
        RawTrafficSelector,
        u8.filter(lambda t: t not in (TsType.TS_IPV4_ADDR_RANGE, TsType.TS_IPV6_ADDR_RANGE)),
        data,
        u8,
    ),
)
delete = st.integers(0, 16).flatmap(
    lambda size: st.builds(
        Delete,
        protocol=u8,
        spis=st.lists(st.binary(min_size=size, max_size=size), max_size=4 if size else 0),
        spi_size=st.just(size),
        **common(),
    )
)
eap = st.builds(
    lambda code, ident, rest: struct.pack("!BBH", code, ident, 4 + len(rest)) + rest,
    u8,
    u8,
    data,
).map(lambda m: ExtensibleAuthentication(message=m))

plain_payloads = st.one_of(
    st.builds(SecurityAssociation, st.lists(proposals, max_size=3), **common()),
    st.builds(KeyExchange, method=u16, data=data, reserved=u16, **common()),
    st.builds(IDi, id_type=u8, data=data, reserved=u24, **common()),
    st.builds(IDr, id_type=u8, data=data, reserved=u24, **common()),
    st.builds(Certificate, encoding=u8, data=data, **common()),
    st.builds(CertificateRequest, encoding=u8, data=data, **common()),
    st.builds(Authentication, method=u8, data=data, reserved=u24, **common()),
    st.builds(Nonce, data=st.binary(min_size=16, max_size=256), **common()),
    st.builds(
        Notify, notify_type=u16, data=data, protocol=u8, spi=st.binary(max_size=8), **common()
    ),
    delete,
    st.builds(VendorId, data=data, **common()),
    st.builds(TSi, selectors=st.lists(selectors, max_size=4), reserved=u24, **common()),
    st.builds(TSr, selectors=st.lists(selectors, max_size=4), reserved=u24, **common()),
    st.builds(
        Configuration,
        cfg_type=u8,
        attributes=st.lists(
            st.builds(ConfigAttribute, st.integers(0, 0x7FFF), data, st.booleans()), max_size=4
        ),
        reserved=u24,
        **common(),
    ),
    eap,
    st.builds(
        UnknownPayload,
        payload_type=st.integers(1, 0xFF).filter(lambda t: t not in KNOWN),
        body=data,
        reserved_bits=st.integers(0, 0x7F),
    ),
)
sealed = st.one_of(
    st.builds(Encrypted, first_inner=u8, body=data, **common()),
    st.integers(1, 0xFFFF).flatmap(
        lambda total: st.builds(
            EncryptedFragment,
            first_inner=u8,
            number=st.integers(1, total),
            total=st.just(total),
            body=data,
            **common(),
        )
    ),
)
messages = st.builds(
    Message,
    spi_i=st.binary(min_size=8, max_size=8),
    spi_r=st.binary(min_size=8, max_size=8),
    exchange=u8,
    message_id=st.integers(0, 2**32 - 1),
    payloads=st.tuples(st.lists(plain_payloads, max_size=6), st.lists(sealed, max_size=1)).map(
        lambda t: t[0] + t[1]
    ),
    initiator=st.booleans(),
    response=st.booleans(),
    version_flag=st.booleans(),
    reserved_flags=st.sampled_from([0, 0x01, 0x80, 0xC7]),
    version=st.integers(0x20, 0x2F),
)


def assert_exact(wire: bytes) -> Message:
    """Decoding is total on valid bytes and re-encoding gives them back."""
    message = decode_message(wire)
    assert message.encode() == wire
    return message


# --- round trips --------------------------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_message_round_trip(message: Message) -> None:
    wire = message.encode()
    decoded = assert_exact(wire)
    assert decoded == message
    assert len(wire) == struct.unpack_from("!I", wire, 24)[0]


@settings(max_examples=200)
@given(st.lists(plain_payloads, max_size=8))
def test_inner_chain_round_trip(payloads: list[Payload]) -> None:
    first, wire = encode_payloads(payloads)
    assert first == (payloads[0].type if payloads else 0)
    decoded = decode_payloads(first, wire)
    assert decoded == payloads
    assert encode_payloads(decoded) == (first, wire)


# --- fuzz ---------------------------------------------------------------------------------


@settings(max_examples=500)
@given(st.binary(max_size=400), u8, st.booleans())
def test_random_bytes_only_decode_error(raw: bytes, first: int, headed: bool) -> None:
    if headed:  # a plausible IKEv2 header, so the payload decoders see the random bytes
        raw = (
            bytes(16) + bytes([first, 0x20, 34, 0x08]) + struct.pack("!II", 0, 28 + len(raw)) + raw
        )
    with contextlib.suppress(DecodeError):
        assert_exact(raw)


@settings(max_examples=300)
@given(u8, st.binary(max_size=300))
def test_random_chain_only_decode_error(first: int, raw: bytes) -> None:
    try:
        payloads = decode_payloads(first, raw)
    except DecodeError:
        return
    assert encode_payloads(payloads)[1] == raw


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(messages, st.data())
def test_mutated_messages_only_decode_error(message: Message, draw: st.DataObject) -> None:
    wire = bytearray(message.encode())
    assume(len(wire) > IKE_HEADER_LEN)
    for _ in range(draw.draw(st.integers(1, 4))):
        pos = draw.draw(st.integers(IKE_HEADER_LEN, len(wire) - 1))
        wire[pos] = draw.draw(u8)
    if draw.draw(st.booleans()):  # truncate, keeping the header's Length consistent
        del wire[draw.draw(st.integers(IKE_HEADER_LEN, len(wire))) :]
        wire[24:28] = len(wire).to_bytes(4, "big")
    try:
        assert_exact(bytes(wire))
    except DecodeError as e:
        assert 0 <= e.offset <= len(wire)


def test_many_tiny_payloads_decode_linearly() -> None:
    # 16000 empty Vendor IDs: a long chain is walked iteratively, not recursively.
    n = 16000
    message = Message(bytes(8), bytes(8), ExchangeType.INFORMATIONAL, 1, [VendorId()] * n)
    decoded = assert_exact(message.encode())
    assert len(decoded.payloads) == n


# --- individual payloads ------------------------------------------------------------------


def test_sa_with_additional_key_exchanges() -> None:
    proposal = Proposal(
        1,
        ProtocolId.IKE,
        [
            Transform(
                TransformType.ENCR,
                EncrId.AES_CBC,
                [TransformAttribute(TransformAttr.KEY_LENGTH, 256)],
            ),
            Transform(TransformType.KE, KeMethod.CURVE_25519),
            Transform(TransformType.ADDKE1, KeMethod.ML_KEM_768),
            Transform(TransformType.ADDKE7, 0),  # NONE: round 7 optional
        ],
    )
    first, wire = encode_payloads([SecurityAssociation([proposal])])
    (sa,) = decode_payloads(first, wire)
    assert isinstance(sa, SecurityAssociation)
    transforms = sa.proposals[0].transforms
    assert [t.transform_type for t in transforms] == [
        TransformType.ENCR,
        TransformType.KE,
        TransformType.ADDKE1,
        TransformType.ADDKE7,
    ]
    assert transforms[0].key_length == 256
    assert transforms[1].key_length is None
    assert transforms[2].transform_id is KeMethod.ML_KEM_768
    # Last Substruc: 3 on every transform but the last, whose is 0 (RFC 7296 §3.3.2).
    offsets = [4 + 8 + 4, 4 + 8 + 12 + 4, 4 + 8 + 12 + 8 + 4, 4 + 8 + 12 + 8 + 8 + 4]
    assert [wire[o - 4] for o in offsets[:3]] == [3, 3, 3]
    assert wire[4 + 8 + 12 + 8 + 8] == 0


def test_tv_and_tlv_attributes() -> None:
    tv = TransformAttribute(TransformAttr.KEY_LENGTH, 128)
    tlv = TransformAttribute(0x1234, b"\x01\x02\x03")
    assert tv.encode() == bytes.fromhex("800e0080")
    assert tlv.encode() == bytes.fromhex("12340003010203")


def test_notify_unknown_type_kept_as_int() -> None:
    first, wire = encode_payloads([Notify(notify_type=40000, data=b"x")])
    (n,) = decode_payloads(first, wire)
    assert isinstance(n, Notify)
    assert n.notify_type == 40000 and not isinstance(n.notify_type, NotifyType)
    assert n.protocol is ProtocolId.NONE


def test_notify_with_esp_spi() -> None:
    rekey = Notify(
        notify_type=NotifyType.REKEY_SA, protocol=ProtocolId.ESP, spi=b"\xc1\x2b\x7e\x01"
    )
    first, wire = encode_payloads([rekey])
    assert wire == bytes.fromhex("0000000c0304 4009 c12b7e01".replace(" ", ""))
    assert decode_payloads(first, wire) == [rekey]


def test_traffic_selectors_v4_v6() -> None:
    ts = TSi(
        selectors=[
            AddressRangeSelector(
                ipaddress.ip_address("10.1.0.0"), ipaddress.ip_address("10.1.0.255")
            ),
            AddressRangeSelector(
                ipaddress.ip_address("fec1::"), ipaddress.ip_address("fec1::ffff"), 17, 500, 500
            ),
        ]
    )
    first, wire = encode_payloads([ts])
    assert first == PayloadType.TSi
    assert len(wire) == 4 + 4 + 16 + 40
    assert wire[8:12] == bytes.fromhex("07000010")  # TS_IPV4_ADDR_RANGE, any protocol, 16
    assert wire[24:28] == bytes.fromhex("08110028")  # TS_IPV6_ADDR_RANGE, UDP, 40
    (decoded,) = decode_payloads(first, wire)
    assert decoded == ts
    assert decoded.selectors[1].ts_type is TsType.TS_IPV6_ADDR_RANGE


def test_configuration_request() -> None:
    cp = Configuration(
        cfg_type=CfgType.CFG_REQUEST,
        attributes=[
            ConfigAttribute(CfgAttr.INTERNAL_IP4_ADDRESS),
            ConfigAttribute(CfgAttr.INTERNAL_IP4_DNS),
        ],
    )
    first, wire = encode_payloads([cp])
    assert wire == bytes.fromhex("00000010010000000001000000030000")
    assert decode_payloads(first, wire) == [cp]


def test_delete_ike_and_esp() -> None:
    ike = Delete(protocol=ProtocolId.IKE)
    esp = Delete(protocol=ProtocolId.ESP, spis=[b"\x00\x00\x00\x01", b"\x00\x00\x00\x02"])
    first, wire = encode_payloads([ike, esp])
    assert wire[:8] == bytes.fromhex("2a00000801000000")
    assert wire[8:16] == bytes.fromhex("0000001003040002")
    a, b = decode_payloads(first, wire)
    assert (a.spi_size, a.spis) == (0, [])
    assert b.spis == esp.spis


def test_eap_fields() -> None:
    eap = ExtensibleAuthentication(message=bytes.fromhex("0207000a01") + b"carol")
    assert (eap.code, eap.identifier, eap.eap_type) == (2, 7, 1)
    success = ExtensibleAuthentication(message=bytes.fromhex("03070004"))
    assert success.eap_type is None


def test_critical_bit_on_known_payload_is_kept() -> None:
    first, wire = encode_payloads([VendorId(data=b"pqike", critical=True)])
    assert wire[1] == 0x80
    (v,) = decode_payloads(first, wire)
    assert v.critical


def test_unknown_noncritical_payload_is_skipped_and_kept() -> None:
    chain = [Nonce(data=bytes(32)), UnknownPayload(payload_type=200, body=b"opaque"), VendorId()]
    first, wire = encode_payloads(chain)
    decoded = decode_payloads(first, wire)
    assert isinstance(decoded[1], UnknownPayload)
    assert decoded[1].type == 200 and decoded[1].body == b"opaque"
    assert isinstance(decoded[2], VendorId)


def test_find_and_notifies() -> None:
    chain = [
        Notify(notify_type=NotifyType.NAT_DETECTION_SOURCE_IP, data=bytes(20)),
        KeyExchange(method=KeMethod.ML_KEM_768, data=b"k"),
        Notify(notify_type=NotifyType.NAT_DETECTION_DESTINATION_IP, data=bytes(20)),
        Notify(notify_type=NotifyType.NAT_DETECTION_DESTINATION_IP, data=b"\1" * 20),
    ]
    assert find(chain, KeyExchange) is chain[1]
    assert find(chain, Nonce) is None
    assert notifies(chain, NotifyType.NAT_DETECTION_DESTINATION_IP) == chain[2:]


def test_payloads_with_a_fixed_header_decode_without_a_reader(monkeypatch) -> None:
    """Notify, KE, ID, AUTH, CERT, Nonce, VendorId and SK bodies are read straight from the
    chain (one unpack of their fixed fields, no cursor object): one way for every notify, the
    flags and SPI kept, truncated ones named by field and offset."""
    import pqike.wire.payloads as payloads_mod
    from pqike.wire.base import Reader
    from pqike.wire.payloads import GENERIC_HEADER, decode_chain, encode_chain

    made: list[bytes] = []

    class Counting(Reader):
        def __init__(self, data: bytes, base: int = 0) -> None:
            made.append(data)
            super().__init__(data, base)

    monkeypatch.setattr(payloads_mod, "Reader", Counting)
    chain = [
        Nonce(data=b"n" * 32),
        Notify(notify_type=NotifyType.REDIRECT_SUPPORTED),
        Notify(notify_type=NotifyType.NAT_DETECTION_SOURCE_IP, data=b"x" * 20, critical=True),
        KeyExchange(method=KeMethod.ML_KEM_768, data=b"k" * 1184, reserved=0x1234),
        IDi(id_type=IdType.ID_FQDN, data=b"carol", reserved=0xABCDEF),
        Authentication(method=AuthMethod.PSK, data=b"a" * 32),
        Certificate(data=b"c"),
        VendorId(data=b"v"),
        Encrypted(first_inner=PayloadType.IDi, body=b"s" * 48),
    ]
    first, data = encode_chain(chain, outer=True)
    assert decode_chain(first, data, 28, outer=True) == chain
    assert made == []  # before: a Reader for each payload but the IKE notifies

    def outcome(body: bytes, flags: int = 0) -> object:
        data = GENERIC_HEADER.pack(PayloadType.NONE, flags, 4 + len(body)) + body
        try:
            (n,) = decode_chain(PayloadType.NOTIFY, data, 28, outer=True)
        except DecodeError as e:
            return (type(e).__name__, str(e))
        return (n.protocol, n.spi, n.notify_type, n.data, n.critical, n.reserved_bits)

    rekey = struct.pack("!BBH", ProtocolId.ESP, 4, NotifyType.REKEY_SA)
    assert outcome(rekey + b"\1\2\3\4" + b"d", 0x81) == (
        ProtocolId.ESP, b"\1\2\3\4", NotifyType.REKEY_SA, b"d", True, 1
    )  # fmt: skip
    assert outcome(rekey + b"\1") == (
        "InvalidSyntax",
        "truncated notify SPI of 4 bytes: 4 bytes needed, 1 left at offset 36",
    )
    assert outcome(b"\0\0\x40") == (
        "InvalidSyntax",
        "truncated notify message type: 2 bytes needed, 1 left at offset 34",
    )
    assert outcome(b"") == (
        "InvalidSyntax",
        "truncated notify protocol ID: 1 bytes needed, 0 left at offset 32",
    )


def test_notifies_encode_to_their_rfc_layout_or_refuse(monkeypatch) -> None:
    """Every notify, IKE ones (no SPI) too, is encoded the one way: the generic header and
    RFC 7296 §3.10's Protocol ID, SPI Size, Notify Message Type, SPI, data; values that do
    not fit their fields are an EncodeError."""
    from pqike.wire.base import EncodeError
    from pqike.wire.payloads import encode_chain

    def encoded(kw: dict, flags: tuple[bool, int]) -> bytes:
        p = Notify(**kw)
        p.critical, p.reserved_bits = flags
        return encode_chain([p, Nonce(data=b"m" * 16)], outer=True)[1][: -(4 + 16)]

    cases = [
        {"notify_type": NotifyType.NAT_DETECTION_SOURCE_IP, "data": b"x" * 20},
        {"notify_type": NotifyType.REDIRECT_SUPPORTED},
        {"notify_type": NotifyType.REKEY_SA, "protocol": ProtocolId.ESP, "spi": b"\x01" * 4},
        {"notify_type": 16384, "data": b"d" * (65535 - 8)},
    ]
    for kw in cases:
        for critical, reserved in ((False, 0), (True, 0), (False, 0x7F)):
            spi, data = kw.get("spi", b""), kw.get("data", b"")
            head = struct.pack(
                "!BBHBBH",
                PayloadType.NONCE,
                (0x80 if critical else 0) | reserved,
                8 + len(spi) + len(data),
                kw.get("protocol", 0),
                len(spi),
                kw["notify_type"],
            )
            assert encoded(kw, (critical, reserved)) == head + spi + data
    for kw in (
        {"notify_type": 0x10000},
        {"notify_type": 16384, "protocol": 256},
        {"notify_type": -1},
        {"notify_type": 16384, "data": b"d" * (65535 - 7)},
        {"notify_type": 16384, "spi": b"s" * 256},
    ):
        with pytest.raises(EncodeError):
            encoded(kw, (False, 0))


def test_a_ke_header_is_read_at_once_and_a_truncated_one_named(monkeypatch) -> None:
    """The KE header is one unpack (no field by field through the Reader); a body too short
    for it is still the error naming the field."""
    from pqike.wire.base import Reader
    from pqike.wire.payloads import GENERIC_HEADER, decode_chain

    def chain(body: bytes) -> bytes:
        return GENERIC_HEADER.pack(PayloadType.NONE, 0, 4 + len(body)) + body

    for short, field, offset in ((b"\x00", "KE method", 32), (b"\x00\x1f\x00", "KE reserved", 34)):
        try:
            decode_chain(PayloadType.KE, chain(short), 28, outer=True)
        except DecodeError as e:
            assert f"truncated {field}" in str(e) and e.offset == offset
        else:
            raise AssertionError("a truncated KE header decoded")

    def refused(self: Reader, what: str) -> int:
        raise AssertionError(f"read {what} field by field")

    monkeypatch.setattr(Reader, "u16", refused)
    for body in (b"\x00\x1f\x00\x00", b"\x00\x23\x12\x34" + b"k" * 1184):
        (ke,) = decode_chain(PayloadType.KE, chain(body), 28, outer=True)
        assert (ke.method, ke.reserved, ke.data) == (
            int.from_bytes(body[:2], "big"),
            int.from_bytes(body[2:4], "big"),
            body[4:],
        )
