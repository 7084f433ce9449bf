"""Responses leave the moment they are sealed (Engine.set_transmit, the daemon's UDP send),
and the IKE_SA_INIT responder derives SKEYSEED/SK_* only once its response is out."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import pytest

from pqike.engine import Engine
from pqike.events import Datagram, EventKind
from pqike.log import Subsystem
from pqike.tasks import ike_init
from pqike.wire.iana import ExchangeType
from tests.exchange.peers import MOON, make_pair, psk_config
from tests.unit import test_daemon_rxqueue as rxq_tests
from tests.unit.test_daemon_rxqueue import RecordingEngine, init_request, send_all, until

PROPOSAL = "aes256-sha256-x25519-ke1_mlkem768"
HEADER_EXCHANGE = 18


def _relay(carol: Engine, moon: Engine, each: Callable[[], None] | None = None) -> None:
    """carol initiates; her datagrams go to moon by hand (moon's reach carol from its
    transmit), ``each`` called after every one moon takes in."""
    carol.initiate("net", "home", 0.0)
    for _ in range(10):
        for d in carol.pop_outgoing():
            moon.receive(d, 0.0)
            if each is not None:
                each()


def _pair():  # type: ignore[no-untyped-def]
    return make_pair(psk_config("carol", PROPOSAL), psk_config("moon", PROPOSAL))


def _transmitting(engine: Engine, sent: list[Datagram], during: list[bool]) -> None:
    """engine.set_transmit() into ``sent``; ``during`` says, per datagram, whether a
    receive() call was still running when it was handed over."""
    busy = [False]
    real = engine.receive

    def receive(dgram: Datagram, now: float) -> None:
        busy[0] = True
        try:
            real(dgram, now)
        finally:
            busy[0] = False

    def transmit(d: Datagram) -> None:
        sent.append(d)
        during.append(busy[0])

    engine.receive = receive  # type: ignore[method-assign]
    engine.set_transmit(transmit)


def test_transmit_gets_each_response_while_receive_still_runs() -> None:
    net = _pair()
    carol, moon = net.peers["carol"].engine, net.peers["moon"].engine
    sent: list[Datagram] = []
    during: list[bool] = []
    _transmitting(moon, sent, during)
    carol.initiate("net", "home", 0.0)
    for _ in range(10):  # relay by hand: moon's datagrams come from transmit, not the queue
        for d in carol.pop_outgoing():
            moon.receive(d, 0.0)
            assert moon.pop_outgoing() == []  # nothing waits for the call to return
        relay, sent[:] = list(sent), []
        for d in relay:
            carol.receive(d, 0.0)
    kinds = [e.kind for e in net.peers["carol"].events]
    assert EventKind.IKE_ESTABLISHED in kinds and EventKind.CHILD_ESTABLISHED in kinds
    assert during == [True] * 3  # INIT, INTERMEDIATE and AUTH responses, all mid-receive
    counted = moon.counters.values
    assert counted["ike-init-out-resp"] == counted["ike-auth-out-resp"] == 1
    assert counted["ike-intermediate-out-resp"] == 1


def test_set_transmit_sends_what_was_queued_before_and_none_restores_the_queue() -> None:
    net = _pair()
    carol = net.peers["carol"].engine
    carol.initiate("net", "home", 0.0)  # IKE_SA_INIT request queued
    sent: list[Datagram] = []
    carol.set_transmit(sent.append)
    assert [d.data[HEADER_EXCHANGE] for d in sent] == [ExchangeType.IKE_SA_INIT]
    assert carol.pop_outgoing() == []
    carol.set_transmit(None)
    carol.tick(10.0)  # the request's retransmission is queued again
    (again,) = carol.pop_outgoing()
    assert again.data == sent[0].data and len(sent) == 1


def test_ike_sa_init_keys_are_derived_after_the_response_left() -> None:
    net = _pair()
    carol, moon = net.peers["carol"].engine, net.peers["moon"].engine
    keys_when_sent: list[bool] = []

    def transmit(d: Datagram) -> None:
        keys_when_sent.extend(sa.keys is not None for sa in moon.sas.values())

    moon.set_transmit(transmit)
    carol.initiate("net", "home", 0.0)
    (request,) = carol.pop_outgoing()
    moon.receive(request, 0.0)
    (sa,) = moon.sas.values()
    assert keys_when_sent == [False]  # the response went out before SKEYSEED was derived
    assert sa.keys is not None and sa.suite is not None  # and they are there once it returns
    assert sa.proposal is not None and sa.proposal.has_additional_ke


def test_a_failed_derivation_after_answering_ends_the_ike_sa(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for sub in Subsystem:
        caplog.set_level(logging.DEBUG, logger=f"pqike.{sub.value}")

    def broken(*args: object) -> bytes:
        raise ValueError("no entropy today")

    monkeypatch.setattr(ike_init, "skeyseed", broken)
    net = _pair()
    carol, moon = net.peers["carol"].engine, net.peers["moon"].engine
    carol.initiate("net", "home", 0.0)
    (request,) = carol.pop_outgoing()
    moon.receive(request, 0.0)
    (response,) = moon.pop_outgoing()  # answered: the KE and proposal were fine
    assert response.dst.host != MOON
    assert moon.sas == {} and moon._half_open == {}  # no state kept for it
    (event,) = [e for e in net.peers["moon"].events if e.kind == EventKind.IKE_FAILED]
    assert "deriving IKE_SA keys failed: ValueError: no entropy today" in (event.message or "")
    assert "deriving IKE_SA keys failed: ValueError: no entropy today" in caplog.text
    assert "Traceback" not in caplog.text and "internal error" not in caplog.text


# --- the daemon ---------------------------------------------------------------------------


class _TransmittingEngine(RecordingEngine):
    """Answers each datagram through set_transmit() and looks, before receive() returns,
    whether the answer is already in the peer's socket."""

    def __init__(self, config, kernel, events) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, kernel, events)
        self.transmit: Callable[[Datagram], None] | None = None
        self.peer: socket.socket | None = None
        self.arrived_during_receive: list[bool] = []

    def set_transmit(self, transmit: Callable[[Datagram], None] | None) -> None:
        self.transmit = transmit

    def receive(self, datagram: Datagram, now: float) -> None:
        super().receive(datagram, now)
        assert self.transmit is not None and self.peer is not None
        self.transmit(Datagram(b"answer" + datagram.data, datagram.dst, datagram.src))
        try:  # loopback UDP: sendmsg() has queued it at the peer by the time it returns
            self.arrived_during_receive.append(self.peer.recv(2048).startswith(b"answer"))
        except BlockingIOError:
            self.arrived_during_receive.append(False)


def test_daemon_sends_what_the_engine_transmits_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rxq_tests, "RecordingEngine", _TransmittingEngine)

    async def main() -> None:
        async with rxq_tests.daemon() as (d, engine, peer):
            assert isinstance(engine, _TransmittingEngine)
            peer.setblocking(False)
            engine.peer = peer
            send_all(peer, d, [init_request(1), init_request(2)])
            await until(lambda: len(engine.calls) == 2, "both requests")
            assert engine.arrived_during_receive == [True, True]
            assert d.udp.stats.sent == 2

    asyncio.run(main())


def test_counting_comes_after_the_datagram_left() -> None:
    """A response is handed to transmit before it is counted (the peer waits for the first,
    nobody for the second); every one is counted all the same."""
    net = _pair()
    carol, moon = net.peers["carol"].engine, net.peers["moon"].engine
    seen: list[int] = []

    def transmit(d: Datagram) -> None:
        seen.append(sum(moon.counters.values.values()))
        carol.receive(d, 0.0)

    moon.set_transmit(transmit)
    carol.initiate("net", "home", 0.0)
    for _ in range(10):
        for d in carol.pop_outgoing():
            before = sum(moon.counters.values.values())
            moon.receive(d, 0.0)
            assert seen[-1] == before + 1  # the request counted, its response not yet
    assert len(seen) == 3  # INIT, INTERMEDIATE and AUTH responses
    outbound = {k: v for k, v in moon.counters.values.items() if "-out-" in k and v}
    assert outbound == {
        "ike-init-out-resp": 1,
        "ike-intermediate-out-resp": 1,
        "ike-auth-out-resp": 1,
    }


@pytest.mark.parametrize("inbound", [True, False])
def test_counter_names_per_header(inbound: bool) -> None:
    """Each exchange type, R flag and fragment number lands on the counter charon names."""
    from pqike.counters import COUNTER_NAMES, Counters

    way = "in" if inbound else "out"
    names = {34: "ike-init", 35: "ike-auth", 36: "create-child", 37: "info"}
    names |= {43: "ike-intermediate", 44: "ike-followup-ke"}
    for exchange in range(256):
        for flags in (0x00, 0x08, 0x20, 0x28):
            for first, number in ((46, 1), (53, 1), (53, 2)):
                c = Counters()
                header = bytes(16) + bytes([first, 0x20, exchange, flags]) + bytes(8)
                c.count(header + bytes(4) + number.to_bytes(2, "big") + bytes(2), inbound)
                counted = [k for k, v in c.values.items() if v]
                kind = "resp" if flags & 0x20 else "req"
                expected = (
                    []
                    if exchange not in names or number != 1
                    else [f"{names[exchange]}-{way}-{kind}"]
                )
                assert counted == expected, (exchange, flags, first, number)
                assert set(c.values) == set(COUNTER_NAMES)


def test_int_auth_chained_after_the_intermediate_response_left() -> None:
    """The responder extends IntAuth_i and IntAuth_r (RFC 9242) for an IKE_INTERMEDIATE only
    once its response is out: at transmit time both chains are as before that exchange,
    afterwards both moved, and IKE_AUTH (which checks them, each side) still succeeds."""
    net = _pair()
    carol, moon = net.peers["carol"].engine, net.peers["moon"].engine
    at_send: list[tuple[int, object, object]] = []
    after: list[tuple[object, object]] = []

    def transmit(d: Datagram) -> None:
        sa = next(iter(moon.sas.values()))
        at_send.append((d.data[HEADER_EXCHANGE], sa.int_auth_i, sa.int_auth_r))
        carol.receive(d, 0.0)

    moon.set_transmit(transmit)

    def received() -> None:
        sa = next(iter(moon.sas.values()))
        after.append((sa.int_auth_i, sa.int_auth_r))

    _relay(carol, moon, received)
    assert [x for x, _, _ in at_send] == [34, 43, 35]
    assert at_send[1][1:] == (None, None)  # nothing chained yet when the response left
    assert all(after[1]) and after[1] == at_send[2][1:]  # both chained right after
    kinds = [e.kind for e in net.peers["carol"].events]
    assert EventKind.IKE_ESTABLISHED in kinds


def test_sending_packet_is_logged_once_the_datagram_left(caplog: pytest.LogCaptureFixture) -> None:
    """'sending packet' is written after the datagram was handed to transmit (the peer waits
    for the datagram, not for the line), and still once per datagram with its size."""
    caplog.set_level(logging.INFO, logger="pqike")
    for sub in Subsystem:
        caplog.set_level(logging.INFO, logger=f"pqike.{sub.value}")
    net = _pair()
    carol, moon = net.peers["carol"].engine, net.peers["moon"].engine
    lines_at_send: list[int] = []

    def sent_lines() -> list[str]:
        msgs = [r.getMessage() for r in caplog.records if getattr(r, "sa", "").startswith("rw|")]
        return [m for m in msgs if m.startswith("sending packet")]

    def transmit(d: Datagram) -> None:
        lines_at_send.append(len(sent_lines()))
        carol.receive(d, 0.0)

    moon.set_transmit(transmit)
    _relay(carol, moon)
    assert lines_at_send == [0, 1, 2]  # none for the datagram being sent yet
    assert len(sent_lines()) == 3 and all(line.endswith(" bytes)") for line in sent_lines())
