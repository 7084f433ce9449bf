"""Half-open floods: COOKIE-echoing attackers from many addresses while legitimate
handshakes run (cookies.py), and the COOKIE and block thresholds on their own."""

from __future__ import annotations

from pqike.events import Datagram, Endpoint
from pqike.wire.message import decode_message
from tests.exchange.peers import CAROL, MOON, make_pair, psk_config
from tests.hostile.cookies import cookie_flood


def test_cookie_echoing_flood_while_legitimate_handshakes_run() -> None:
    """1000 half-open IKE_SAs from 200 addresses, COOKIEs echoed, 50 before every packet of
    five legitimate handshakes; then the half-open timeout."""
    report = cookie_flood(seed=6, half_open_sas=1000, per_hop=50, legit=5)
    print("\n".join(report.lines()))
    report.check()
    assert report.legit_attempts == 6
    assert report.figures["half-open peak"] >= 900
    assert report.figures["attacker IkeSa objects after"] == 0
    # what one half-open IKE_SA may cost is tests/exchange/test_halfopen.py's business


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
