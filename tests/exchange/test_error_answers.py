"""RFC 7296 error answers (§2.5, §2.21, §3.10.1): what an unprotected IKE_SA_INIT response
may carry, unsupported critical payloads, unknown major versions, and malformed payloads in
requests whose ICV is valid."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pqike.events import Datagram
from pqike.wire.iana import ExchangeType, HeaderFlag, IdType, NotifyType
from pqike.wire.message import Message, decode_message
from pqike.wire.payloads import (
    IDi,
    KeyExchange,
    Nonce,
    Notify,
    SecurityAssociation,
    UnknownPayload,
)
from tests.exchange.crafted import (
    AEAD,
    INTERMEDIATE,
    captured_log,
    dropping,
    established,
    notify_types,
    open_answer,
    pair,
    sa_of,
    send_sealed,
)
from tests.exchange.peers import Net

UNKNOWN = 200  # an unassigned payload type


def _init_request(net: Net) -> Datagram:
    """carol's first IKE_SA_INIT request, not delivered."""
    net.peers["carol"].engine.initiate("net", None, net.now)
    (d,) = net.peers["carol"].engine.pop_outgoing()
    return d


def _to_moon(net: Net, d: Datagram, data: bytes) -> list[Message]:
    moon = net.peers["moon"].engine
    moon.receive(Datagram(data=data, src=d.src, dst=d.dst), net.now)
    return [decode_message(out.data) for out in moon.pop_outgoing()]


def _edited_init(edit) -> tuple[Net, list[Message]]:  # type: ignore[no-untyped-def]
    net = pair()
    d = _init_request(net)
    msg = decode_message(d.data)
    msg.payloads = edit(msg.payloads)
    return net, _to_moon(net, d, msg.encode())


def _moon_sas(net: Net) -> list[str]:
    return [s.state for s in net.peers["moon"].engine.list_sas()]


# --- (a) nothing but what RFC 7296 allows goes unprotected ---------------------------------


def test_ike_sa_init_request_without_ke_is_dropped_unanswered() -> None:
    with captured_log() as log:
        net, answers = _edited_init(lambda ps: [p for p in ps if not isinstance(p, KeyExchange)])
    assert answers == []  # was an unprotected INVALID_SYNTAX
    assert _moon_sas(net) == []
    assert "IKE_SA_INIT request lacks SA, KE or Nonce, IKE_SA_INIT request dropped" in log.text


def test_ike_sa_init_request_with_an_unusable_ke_value_gets_no_proposal_chosen() -> None:
    def cut_ke(payloads):  # type: ignore[no-untyped-def]
        for p in payloads:
            if isinstance(p, KeyExchange):
                p.data = p.data[:5]
        return payloads

    net, answers = _edited_init(cut_ke)
    (answer,) = answers
    assert answer.response and answer.spi_r == bytes(8)
    assert notify_types(answer.payloads) == [NotifyType.NO_PROPOSAL_CHOSEN]
    assert _moon_sas(net) == []


def test_undecodable_ike_sa_init_request_is_dropped_unanswered() -> None:
    net = pair()
    d = _init_request(net)
    msg = decode_message(d.data)
    for p in msg.payloads:
        if isinstance(p, Nonce):
            p.data = b"abc"  # RFC 7296 §3.9: 16..256 octets
    assert _to_moon(net, d, msg.encode()) == []
    assert _moon_sas(net) == []


MOON_FOR_MUTATIONS = pair()
INIT = _init_request(MOON_FOR_MUTATIONS)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_mutated_ike_sa_init_requests_never_get_unprotected_invalid_syntax(data) -> None:  # type: ignore[no-untyped-def]
    net, moon = MOON_FOR_MUTATIONS, MOON_FOR_MUTATIONS.peers["moon"].engine
    b = bytearray(INIT.data)
    for _ in range(data.draw(st.integers(1, 6))):
        b[data.draw(st.integers(28, len(b) - 1))] = data.draw(st.integers(0, 255))
    for answer in _to_moon(net, INIT, bytes(b)):
        assert answer.exchange == ExchangeType.IKE_SA_INIT and answer.sealed is None
        assert NotifyType.INVALID_SYNTAX not in notify_types(answer.payloads)
    for sa in moon.list_sas():  # next example starts with no half-open SA
        moon.terminate(None, None, sa.unique_id, net.now)


# --- (b) unsupported critical payloads ------------------------------------------------------


def test_unknown_critical_payload_in_ike_sa_init_request_is_answered() -> None:
    crit = UnknownPayload(payload_type=UNKNOWN, body=b"x", critical=True)
    net, answers = _edited_init(lambda ps: [*ps, crit])
    (answer,) = answers
    assert answer.response and not answer.initiator and answer.message_id == 0
    assert answer.spi_r == bytes(8) and answer.exchange == ExchangeType.IKE_SA_INIT
    assert answer.payloads == [
        Notify(notify_type=NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, data=bytes([UNKNOWN]))
    ]
    assert _moon_sas(net) == []  # stateless


def test_unknown_noncritical_payload_in_ike_sa_init_request_is_skipped() -> None:
    extra = UnknownPayload(payload_type=UNKNOWN, body=b"x", critical=False)
    net, answers = _edited_init(lambda ps: [*ps, extra])
    (answer,) = answers
    kinds = {type(p) for p in answer.payloads}
    assert {SecurityAssociation, KeyExchange, Nonce} <= kinds
    assert _moon_sas(net) == ["CONNECTING"]


def test_unknown_critical_payload_in_established_sa_is_answered_and_the_sa_goes_on() -> None:
    net = established()
    moon_sa = sa_of(net, "moon")
    mid = moon_sa.peer_mid
    crit = UnknownPayload(payload_type=UNKNOWN, body=b"x", critical=True)
    (answer,) = send_sealed(net, ExchangeType.INFORMATIONAL, [crit])
    msg, inner = open_answer(net, answer)
    assert msg.response and msg.message_id == mid
    assert inner == [
        Notify(notify_type=NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, data=bytes([UNKNOWN]))
    ]
    assert moon_sa.peer_mid == mid + 1 and _moon_sas(net) == ["ESTABLISHED"]
    # carol counts the exchange as hers; the IKE_SA keeps working (a CHILD_SA rekey)
    sa_of(net, "carol").my_mid += 1
    before = moon_sa.children[0].spi_in
    net.peers["carol"].engine.rekey(None, "net", net.now)
    net.run()
    assert [c.spi_in != before for c in sa_of(net, "moon").children] == [True]


def test_unknown_critical_payload_in_ike_auth_request_ends_the_sa() -> None:
    net = dropping(ExchangeType.IKE_AUTH)
    crit = UnknownPayload(payload_type=UNKNOWN, body=b"x", critical=True)
    inner = [IDi(id_type=IdType.ID_FQDN, data=b"carol"), crit]
    (answer,) = send_sealed(net, ExchangeType.IKE_AUTH, inner)
    _, payloads = open_answer(net, answer)
    assert notify_types(payloads) == [NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD]
    assert _moon_sas(net) == []


# --- (c) major and minor versions --------------------------------------------------------


def _version(data: bytes, version: int, flags: int | None = None) -> bytes:
    b = bytearray(data)
    b[17] = version
    if flags is not None:
        b[19] = flags
    return bytes(b)


def test_higher_major_version_ike_sa_init_request_gets_invalid_major_version() -> None:
    net = pair()
    d = _init_request(net)
    with captured_log() as log:
        (answer,) = _to_moon(net, d, _version(d.data, 0x30))
    assert answer.version == 0x20 and answer.response and answer.message_id == 0
    assert answer.exchange == ExchangeType.IKE_SA_INIT
    assert (answer.spi_i, answer.spi_r) == (d.data[:8], bytes(8))
    assert notify_types(answer.payloads) == [NotifyType.INVALID_MAJOR_VERSION]
    assert "sending INVALID_MAJOR_VERSION" in log.text
    assert _moon_sas(net) == []


def test_higher_major_version_is_not_answered_unless_it_starts_an_ike_sa() -> None:
    net = pair()
    d = _init_request(net)
    response = _version(d.data, 0x30, HeaderFlag.RESPONSE)
    not_init = _version(d.data[:18] + bytes([ExchangeType.INFORMATIONAL]) + d.data[19:], 0x30)
    tiny = _version(d.data[:28], 0x30)  # the answer would be larger than the request
    for data in (response, not_init, tiny):
        assert _to_moon(net, d, data) == []
    assert _moon_sas(net) == []


def test_minor_version_is_ignored() -> None:
    net = pair()
    d = _init_request(net)
    (answer,) = _to_moon(net, d, _version(d.data, 0x2F))
    assert answer.version == 0x20
    assert {SecurityAssociation, KeyExchange, Nonce} <= {type(p) for p in answer.payloads}


# --- (d) malformed payloads in authenticated requests ------------------------------------

MALFORMED = Nonce(data=b"abc")  # encodes, but RFC 7296 §3.9 wants 16..256 octets


def test_malformed_payload_in_established_sa_gets_protected_invalid_syntax() -> None:
    net = established()
    moon = net.peers["moon"]
    with captured_log() as log:
        (answer,) = send_sealed(net, ExchangeType.INFORMATIONAL, [MALFORMED])
    msg, inner = open_answer(net, answer)
    assert msg.response and notify_types(inner) == [NotifyType.INVALID_SYNTAX]
    assert "nonce of 3 bytes" in log.text and "sending INVALID_SYNTAX" in log.text
    # RFC 7296 §2.21.3: fatal in both peers, no Delete needed
    assert _moon_sas(net) == [] and moon.kernel.sas == {}


def test_malformed_payload_in_ike_auth_request_ends_the_sa() -> None:
    net = dropping(ExchangeType.IKE_AUTH)
    (answer,) = send_sealed(net, ExchangeType.IKE_AUTH, [MALFORMED])
    _, inner = open_answer(net, answer)
    assert notify_types(inner) == [NotifyType.INVALID_SYNTAX]
    assert _moon_sas(net) == []


def test_malformed_payload_in_ike_intermediate_request_ends_the_sa() -> None:
    net = dropping(ExchangeType.IKE_INTERMEDIATE, INTERMEDIATE)
    (answer,) = send_sealed(net, ExchangeType.IKE_INTERMEDIATE, [MALFORMED])
    msg, inner = open_answer(net, answer)
    assert msg.exchange == ExchangeType.IKE_INTERMEDIATE
    assert notify_types(inner) == [NotifyType.INVALID_SYNTAX]
    assert _moon_sas(net) == []


def test_bad_padding_behind_a_valid_icv_gets_invalid_syntax() -> None:
    net = established(AEAD)
    note = Notify(notify_type=NotifyType.INITIAL_CONTACT)
    (answer,) = send_sealed(net, ExchangeType.INFORMATIONAL, [note], bad_padding=True)
    _, inner = open_answer(net, answer)
    assert notify_types(inner) == [NotifyType.INVALID_SYNTAX]
    assert _moon_sas(net) == []


def test_request_lacking_required_payloads_ends_the_established_sa() -> None:
    """A task's INVALID_SYNTAX is fatal in both peers as well (RFC 7296 §2.21.3)."""
    net = established()
    (answer,) = send_sealed(net, ExchangeType.CREATE_CHILD_SA, [])
    _, inner = open_answer(net, answer)
    assert notify_types(inner) == [NotifyType.INVALID_SYNTAX]
    assert _moon_sas(net) == []


def test_invalid_syntax_answer_ends_the_requesters_sa() -> None:
    net = established()
    carol = net.peers["carol"]
    carol.engine.rekey(None, "net", net.now)
    (request,) = [decode_message(d.data) for d in carol.engine.pop_outgoing()]
    moon_sa = sa_of(net, "moon")
    moon_sa.send_notify_response(request.exchange, request.message_id, NotifyType.INVALID_SYNTAX)
    with captured_log() as log:
        net.run()
    assert "received INVALID_SYNTAX notify error, destroying IKE_SA" in log.text
    assert carol.engine.list_sas() == [] and carol.kernel.sas == {}
