"""Hostile and malformed input against engines: nothing crashes, nothing is half-built,
and an established IKE_SA survives garbage aimed at it."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pqike.events import Datagram, Endpoint
from pqike.wire.iana import ExchangeType
from pqike.wire.message import Message, decode_message
from pqike.wire.payloads import EncryptedFragment
from tests.exchange.peers import CAROL, MOON, make_pair, psk_config

PROP = "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024"


def _established():  # type: ignore[no-untyped-def]
    net = make_pair(psk_config("carol", PROP), psk_config("moon", PROP))
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    return net


NET = _established()
CAPTURED = [d for d in NET.log]


def _dgram(data: bytes) -> Datagram:
    return Datagram(data=data, src=Endpoint(CAROL, 500), dst=Endpoint(MOON, 500))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_mutated_packets_never_crash_or_break_the_sa(data) -> None:  # type: ignore[no-untyped-def]
    moon = NET.peers["moon"].engine
    orig = data.draw(st.sampled_from(CAPTURED)).data
    b = bytearray(orig)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(b) - 1))
        b[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        b = b[: data.draw(st.integers(0, len(b)))]
    moon.receive(_dgram(bytes(b)), NET.now)
    moon.pop_outgoing()
    sas = [s for s in moon.list_sas() if s.state == "ESTABLISHED"]
    assert len(sas) == 1 and len(sas[0].children) == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_are_dropped(blob: bytes) -> None:
    moon = NET.peers["moon"].engine
    moon.receive(_dgram(blob), NET.now)
    assert len([s for s in moon.list_sas() if s.state == "ESTABLISHED"]) == 1


def test_hostile_fragments_for_established_sa() -> None:
    """Forged SKF fragments (wrong keys) for the live SA: each is dropped at the ICV."""
    net = _established()
    moon = net.peers["moon"].engine
    (sa,) = moon.sas.values()
    rng = random.Random(3)
    for number, total in [(0, 3), (4, 3), (1, 65535), (2, 2), (1, 1)]:
        skf = EncryptedFragment(
            first_inner=0, number=max(number, 1), total=max(total, 1), body=rng.randbytes(64)
        )
        msg = Message(
            spi_i=sa.spi_i,
            spi_r=sa.spi_r,
            exchange=ExchangeType.INFORMATIONAL,
            message_id=sa.peer_mid,
            payloads=[skf],
            initiator=True,
        )
        raw = bytearray(msg.encode())
        if number == 0:
            raw[28 + 4 : 28 + 6] = b"\x00\x00"  # fragment number 0 on the wire
        moon.receive(_dgram(bytes(raw)), net.now)
    assert moon.pop_outgoing() == []
    (info,) = moon.list_sas()
    assert info.state == "ESTABLISHED"
    assert sa._frag_requests.budget.used == 0


def test_init_flood_cookies_bound_half_open_state() -> None:
    """Past cookie_threshold half-open SAs, the responder answers with a COOKIE and keeps
    no state; a legitimate initiator that echoes it still gets through."""
    carol = psk_config("carol", "aes256-sha256-x25519")
    moon = psk_config("moon", "aes256-sha256-x25519", extra_daemon={"cookie_threshold": 3})
    net = make_pair(carol, moon)
    template = make_pair(carol, moon).peers["carol"].engine
    template.initiate("net", None, 0.0)
    (init,) = template.pop_outgoing()
    m = net.peers["moon"].engine
    for i in range(20):
        msg = decode_message(init.data)
        msg.spi_i = i.to_bytes(8, "big")
        m.receive(
            Datagram(
                data=msg.encode(), src=Endpoint(f"192.168.0.{10 + i}", 500), dst=Endpoint(MOON, 500)
            ),
            0.0,
        )
    assert len(m.sas) == 3  # the rest got COOKIE answers, no state
    m.pop_outgoing()
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    established = [s for s in m.list_sas() if s.state == "ESTABLISHED"]
    assert len(established) == 1
    for _ in range(5):
        net.advance(10.0)
    assert len(m.sas) == 1  # half-open SAs timed out (half_open_timeout 30 s)


def test_block_threshold_limits_half_open_per_address() -> None:
    """charon.block_threshold: one address cannot hold more half-open IKE_SAs."""
    carol = psk_config("carol", "aes256-sha256-x25519")
    moon = psk_config(
        "moon", "aes256-sha256-x25519", extra_daemon={"block_threshold": 2, "cookie_threshold": 0}
    )
    template = make_pair(carol, moon).peers["carol"].engine
    template.initiate("net", None, 0.0)
    (init,) = template.pop_outgoing()
    m = make_pair(carol, moon).peers["moon"].engine
    for i in range(6):
        msg = decode_message(init.data)
        msg.spi_i = (100 + i).to_bytes(8, "big")
        m.receive(
            Datagram(data=msg.encode(), src=Endpoint(CAROL, 500), dst=Endpoint(MOON, 500)), 0.0
        )
    assert len(m.sas) == 2
    m.tick(60.0)  # half-open SAs time out and the address may try again
    assert len(m.sas) == 0
    m.receive(Datagram(data=init.data, src=Endpoint(CAROL, 500), dst=Endpoint(MOON, 500)), 61.0)
    assert len(m.sas) == 1
