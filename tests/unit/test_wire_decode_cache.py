"""Received payloads that repeat byte for byte are decoded once: the caches are pure
functions of the bytes, bounded, never hold a failure, and change nothing that is decoded,
accepted or refused."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace
from ipaddress import ip_address

import pytest

from pqike.memo import Memo
from pqike.wire import security_association, traffic_selectors
from pqike.wire.errors import DecodeError
from pqike.wire.iana import (
    EncrId,
    KeMethod,
    NotifyType,
    PayloadType,
    ProtocolId,
    TransformAttr,
    TransformType,
)
from pqike.wire.payloads import (
    AddressRangeSelector,
    Notify,
    Proposal,
    SecurityAssociation,
    TrafficSelectors,
    Transform,
    TransformAttribute,
    TSi,
    TSr,
    decode_payloads,
    encode_payloads,
)
from pqike.wire.traffic_selectors import _decode_selector


def _sa(spi: bytes, *, ke: int = KeMethod.ML_KEM_768) -> SecurityAssociation:
    transforms = [
        Transform(
            TransformType.ENCR, EncrId.AES_CBC, [TransformAttribute(TransformAttr.KEY_LENGTH, 256)]
        ),
        Transform(TransformType.KE, KeMethod.CURVE_25519),
        Transform(TransformType.ADDKE1, ke),
    ]
    return SecurityAssociation([Proposal(1, ProtocolId.ESP, transforms, spi)])


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts Transform.decode calls, starting from an empty cache."""
    monkeypatch.setattr(security_association, "_TRANSFORMS", Memo(256))
    calls: list[int] = []
    decode = Transform.decode.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Transform], r: object) -> object:
        calls.append(1)
        return decode(cls, r)

    monkeypatch.setattr(Transform, "decode", classmethod(counting))
    return calls


def _round_trip(sa: SecurityAssociation) -> tuple[SecurityAssociation, bytes]:
    first, wire = encode_payloads([sa])
    (decoded,) = decode_payloads(first, wire)
    assert isinstance(decoded, SecurityAssociation)
    return decoded, wire


def test_same_transforms_under_another_spi_are_decoded_once(decodes: list[int]) -> None:
    a, wire_a = _round_trip(_sa(b"\x01\x02\x03\x04"))
    assert len(decodes) == 3
    b, wire_b = _round_trip(_sa(b"\x05\x06\x07\x08"))
    assert len(decodes) == 3  # the child SA of the next IKE_AUTH: only its SPI differs
    assert b.proposals[0].spi == b"\x05\x06\x07\x08"
    assert b == _sa(b"\x05\x06\x07\x08") and a == _sa(b"\x01\x02\x03\x04")
    assert encode_payloads([b])[1] == wire_b and encode_payloads([a])[1] == wire_a
    # the kept transforms themselves, immutable, in a list of each message's own: a change
    # to one message's list reaches neither the cache nor another message
    kept = a.proposals[0].transforms
    assert all(x is y for x, y in zip(kept, b.proposals[0].transforms, strict=True))
    with pytest.raises(FrozenInstanceError):
        kept[0].attributes[0].value = 128  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        kept[1].transform_id = 0  # type: ignore[misc]
    kept[1] = replace(kept[1], transform_id=0)
    del kept[2]
    assert b == _sa(b"\x05\x06\x07\x08") and _round_trip(_sa(b"\x01\x02\x03\x04"))[0] == _sa(
        b"\x01\x02\x03\x04"
    )
    _round_trip(_sa(b"\x01\x02\x03\x04", ke=KeMethod.ML_KEM_1024))
    assert len(decodes) == 6  # other bytes, decoded


def test_a_refused_proposal_is_refused_again_and_not_cached(decodes: list[int]) -> None:
    first, wire = encode_payloads([_sa(b"")])
    bad = bytearray(wire)
    bad[4 + 8] = 0  # the ENCR transform's Last Substruc says last, two more follow
    for _ in range(2):
        with pytest.raises(DecodeError, match="last but more follow"):
            decode_payloads(first, bytes(bad))
    assert security_association._TRANSFORMS == {}
    assert len(decodes) == 2


def test_the_cache_is_bounded(decodes: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security_association, "_TRANSFORMS", Memo(4))
    for ke in range(10, 30):  # a flood of distinct offers
        _round_trip(_sa(b"", ke=ke))
        assert len(security_association._TRANSFORMS) <= 4
    big = _sa(b"")
    big.proposals[0].transforms *= 80  # more bytes than an entry may hold
    _round_trip(big)
    assert all(
        len(k) <= security_association._TRANSFORMS_BYTES for k in security_association._TRANSFORMS
    )


def _ts_round_trip(payload: TrafficSelectors) -> TrafficSelectors:
    first, wire = encode_payloads([payload])
    (decoded,) = decode_payloads(first, wire)
    assert isinstance(decoded, TrafficSelectors)
    assert encode_payloads([decoded])[1] == wire
    return decoded


def test_same_traffic_selectors_are_decoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(traffic_selectors, "_DECODED", Memo(256))
    built: list[object] = []
    monkeypatch.setattr(
        traffic_selectors,
        "_decode_selector",
        lambda r, _d=_decode_selector: built.append(1) or _d(r),
    )
    v4 = AddressRangeSelector(ip_address("10.1.0.0"), ip_address("10.1.255.255"), 6, 80, 443)
    v6 = AddressRangeSelector(ip_address("fd00::1"), ip_address("fd00::1"))
    tsi = _ts_round_trip(TSi(selectors=[v4, v6]))
    tsr = _ts_round_trip(TSr(selectors=[v4, v6], critical=True))
    assert len(built) == 2  # TSr: the same body as TSi, a payload of its own
    assert type(tsr) is TSr and tsr.critical and not tsi.critical
    assert tsi.selectors == tsr.selectors == [v4, v6]
    assert all(x is y for x, y in zip(tsi.selectors, tsr.selectors, strict=True))
    with pytest.raises(FrozenInstanceError):
        tsi.selectors[0].end_port = 8080  # type: ignore[misc]
    tsi.selectors[0] = replace(v4, end_port=8080)  # the list is tsi's: not tsr's, nor the cache's
    assert tsr.selectors == [v4, v6] and _ts_round_trip(TSi(selectors=[v4, v6])).selectors[0] == v4
    _ts_round_trip(TSi(selectors=[v6], reserved=0x010203))
    assert len(built) == 3


def test_a_refused_ts_body_is_refused_again_and_not_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(traffic_selectors, "_DECODED", Memo(256))
    v4 = AddressRangeSelector(ip_address("10.0.0.1"), ip_address("10.0.0.2"))
    first, wire = encode_payloads([TSi(selectors=[v4])])
    bad = bytearray(wire)
    bad[4] = 2  # announces two selectors, carries one
    for _ in range(2):
        with pytest.raises(DecodeError, match="announces 2 selectors"):
            decode_payloads(first, bytes(bad))
    assert traffic_selectors._DECODED == {}


def test_our_sa_is_built_and_encoded_once_per_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from pqike.proposal.parse import parse_proposal
    from pqike.proposal.sa_payload import to_wire

    monkeypatch.setattr(security_association, "_ENCODED", Memo(256))
    encoded: list[int] = []
    encode = Transform.encode

    def counting(self: Transform, last: bool) -> bytes:
        encoded.append(1)
        return encode(self, last)

    monkeypatch.setattr(Transform, "encode", counting)
    chosen = parse_proposal(ProtocolId.ESP, "aes256-sha256-mlkem768")
    one_sa = to_wire([chosen], b"\x00\x00\x00\x01")
    one = one_sa.encode_body()
    two = to_wire([chosen], b"\x00\x00\x00\x02").encode_body()
    assert len(encoded) == 4  # ENCR, INTEG, KE, ESN: once for both handshakes
    assert one[:8] == two[:8] and one[12:] == two[12:] and one[8:12] != two[8:12]
    sent = to_wire([chosen], b"\x00\x00\x00\x02")
    (decoded,) = decode_payloads(*encode_payloads([sent]))
    assert decoded == sent
    sent.proposals[0].transforms[0] = replace(
        sent.proposals[0].transforms[0], transform_id=EncrId.AES_GCM_16
    )  # the list is this SA payload's, not the cache's
    assert to_wire([chosen], b"\x00\x00\x00\x02") == decoded
    again = to_wire([chosen], b"\x00\x00\x00\x02").proposals[0].transforms
    assert again is not one_sa.proposals[0].transforms  # each payload's own list, holding
    assert all(x is y for x, y in zip(again, one_sa.proposals[0].transforms, strict=True))  # ours


def test_our_choice_is_made_codec_transforms_once_per_proposal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A responder answers with the same proposal object in each handshake: its codec
    transforms are made (and their tuple hashed) once; another proposal gets its own."""
    from pqike.proposal import sa_payload
    from pqike.proposal.parse import parse_proposal

    made: list[int] = []
    wire_transforms = sa_payload._wire_transforms.__wrapped__

    def counting(transforms: tuple[object, ...]) -> tuple[Transform, ...]:
        made.append(1)
        return wire_transforms(transforms)

    monkeypatch.setattr(sa_payload, "_wire_transforms", counting)
    chosen = parse_proposal(ProtocolId.IKE, "aes256-sha256-x25519-ke1_mlkem768")
    one = sa_payload.to_wire([chosen])
    two = sa_payload.to_wire([chosen])
    assert len(made) == 1 and one == two
    fewer = chosen.without_ke()  # a proposal made from it: its own transforms
    sent = sa_payload.to_wire([fewer]).proposals[0].transforms
    assert sorted(t.transform_type for t in sent) == [
        TransformType.ENCR,
        TransformType.PRF,
        TransformType.INTEG,
    ]
    assert len(made) == 2


def test_a_transform_shares_no_list_with_its_caller() -> None:
    attrs = [TransformAttribute(TransformAttr.KEY_LENGTH, 256)]
    t = Transform(TransformType.ENCR, EncrId.AES_CBC, attrs)
    attrs.append(TransformAttribute(TransformAttr.KEY_LENGTH, 128))
    assert t.attributes == (TransformAttribute(TransformAttr.KEY_LENGTH, 256),)
    assert t.key_length == 256 and hash(t) == hash(replace(t))  # a value: a memo key as it is


def test_encoded_transforms_follow_every_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security_association, "_ENCODED", Memo(256))
    short = _sa(b"")
    long_key = _sa(b"")
    t = long_key.proposals[0].transforms
    t[0] = replace(t[0], attributes=(TransformAttribute(TransformAttr.KEY_LENGTH, 128),))
    private = _sa(b"")
    private.proposals[0].transforms[2] = replace(
        private.proposals[0].transforms[2], reserved=0x0102
    )
    wires = [encode_payloads([sa])[1] for sa in (short, long_key, private, _sa(b""))]
    assert len(set(wires)) == 3 and wires[0] == wires[3]
    assert wires[1][4 + 8 + 8 : 4 + 8 + 12] == bytes.fromhex("800e0080")  # KEY_LENGTH 128
    for sa, wire in zip((short, long_key, private), wires[:3], strict=True):
        security_association._ENCODED.clear()
        assert encode_payloads([sa])[1] == wire  # what the long way gives


@pytest.mark.parametrize("spi", [b"", b"\x01\x02\x03\x04"])
@pytest.mark.parametrize("data", [b"", b"\x00\x01"])
def test_notify_decodes_as_encoded_with_or_without_spi(spi: bytes, data: bytes) -> None:
    sent = Notify(
        notify_type=NotifyType.REKEY_SA, data=data, protocol=ProtocolId.ESP, spi=spi, critical=True
    )
    first, wire = encode_payloads([sent, Notify(notify_type=40000)])
    received = decode_payloads(first, wire)
    assert received == [sent, Notify(notify_type=40000)]
    assert received[0].notify_type is NotifyType.REKEY_SA and received[1].notify_type == 40000
    assert encode_payloads(received) == (first, wire)
    assert encode_payloads([]) == (PayloadType.NONE, b"")


def test_a_received_offer_becomes_proposals_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from pqike.proposal import model, sa_payload

    monkeypatch.setattr(sa_payload, "_RECEIVED", Memo(256))
    built: list[int] = []
    post_init = model.Proposal.__post_init__

    def counting(self: model.Proposal) -> None:
        built.append(1)
        post_init(self)

    monkeypatch.setattr(model.Proposal, "__post_init__", counting)
    first = sa_payload.from_wire(_sa(b"\x01\x02\x03\x04"))
    again = sa_payload.from_wire(_sa(b"\x05\x06\x07\x08"))
    assert len(built) == 1  # the next handshake's offer: only its SPI differs
    monkeypatch.setattr(model.Proposal, "__post_init__", post_init)
    (p,) = again
    transforms = (
        model.Transform(TransformType.ENCR, EncrId.AES_CBC, 256),
        model.Transform(TransformType.KE, KeMethod.CURVE_25519),
        model.Transform(TransformType.ADDKE1, KeMethod.ML_KEM_768),
    )
    assert p == model.Proposal(ProtocolId.ESP, transforms, number=1, spi=b"\x05\x06\x07\x08")
    assert first[0].spi == b"\x01\x02\x03\x04" and p.types == first[0].types
    assert str(p) == "ESP:AES_CBC_256/CURVE_25519/KE1_ML_KEM_768"
    assert p.first(TransformType.ADDKE1) == transforms[2] and p.number == 1
    other = sa_payload.from_wire(_sa(b"", ke=KeMethod.ML_KEM_1024))[0]
    assert other.first(TransformType.ADDKE1) == model.Transform(
        TransformType.ADDKE1, KeMethod.ML_KEM_1024
    )


def test_an_offer_without_spi_is_the_same_numbered_proposal_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """IKE_SA_INIT's offer has no SPI: the numbered proposal is kept, not copied per message;
    another proposal number is another proposal."""
    from pqike.proposal import sa_payload

    monkeypatch.setattr(sa_payload, "_RECEIVED", Memo(256))
    (first,) = sa_payload.from_wire(_sa(b""))
    (again,) = sa_payload.from_wire(_sa(b""))
    assert again is first and first.number == 1 and first.spi == b""
    renumbered = _sa(b"")
    renumbered.proposals[0].number = 2
    (other,) = sa_payload.from_wire(renumbered)
    assert other.number == 2 and other.transforms == first.transforms
    assert (other.number, first.number) == (2, 1)  # the kept one is not renumbered


@pytest.mark.parametrize("flags", [0x00, 0x08, 0x20, 0x28, 0x10, 0xFF])
@pytest.mark.parametrize("exchange", [34, 43, 99])
def test_header_fields_decode_as_encoded(flags: int, exchange: int) -> None:
    from pqike.wire.iana import ExchangeType, HeaderFlag
    from pqike.wire.message import Message, decode_header, decode_message

    sent = Message(
        b"i" * 8,
        b"r" * 8,
        exchange,
        7,
        [Notify(notify_type=NotifyType.COOKIE, data=b"c" * 8)],
        initiator=bool(flags & HeaderFlag.INITIATOR),
        response=bool(flags & HeaderFlag.RESPONSE),
        version_flag=bool(flags & HeaderFlag.VERSION),
        reserved_flags=flags & ~0x38,  # the bits other than I, V, R
    )
    wire = sent.encode()
    assert wire[19] == flags and sent.flags == flags
    received = decode_message(wire)
    assert received == sent and received.encode() == wire
    assert decode_header(wire).payloads == [] and decode_header(wire).flags == flags
    assert isinstance(received.exchange, ExchangeType) == (exchange != 99)


def test_well_formed_proposal_headers_are_read_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from pqike.wire.base import Reader

    monkeypatch.setattr(security_association, "_TRANSFORMS", Memo(256))
    sent = SecurityAssociation(
        [_sa(b"\x01\x02\x03\x04").proposals[0], Proposal(2, ProtocolId.IKE, [], b"")]
    )
    first, wire = encode_payloads([sent])
    assert decode_payloads(first, wire) == [sent]  # the transforms decoded, and kept
    fields: list[str] = []
    for name in ("u8", "u16", "take", "sub"):
        read = getattr(Reader, name)
        monkeypatch.setattr(
            Reader, name, lambda self, *a, _f=read, _n=name: fields.append(_n) or _f(self, *a)
        )
    assert decode_payloads(first, wire) == [sent]
    assert fields == []  # two proposal headers, each in one unpack, and kept transforms
