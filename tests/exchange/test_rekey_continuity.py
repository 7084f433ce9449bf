"""The data plane through rekeys (issue 11): a peer only sends with an SA the other end can
receive on, and the inbound SA of a replaced CHILD_SA stays for ``delete_rekeyed_delay``
(strongSwan's charon.delete_rekeyed_delay, 5 s) for the ESP still in flight on it, then goes;
nothing is left behind when the IKE_SA goes or the daemon stops."""

from __future__ import annotations

import random

import pytest

from pqike.events import Datagram
from pqike.kernel.base import KernelError
from pqike.wire.iana import ExchangeType
from pqike.wire.message import decode_header
from tests.exchange.peers import (
    CAROL,
    MOON,
    Net,
    current_sas,
    kept_inbound,
    make_pair,
    psk_config,
)

IKE = "aes256-sha256-x25519"
ESP = "aes256-sha256-x25519"


def _up(delay: int | None = None, child: dict | None = None, vips: bool = True) -> Net:
    daemon = {} if delay is None else {"delete_rekeyed_delay": delay}
    net = make_pair(
        psk_config("carol", IKE, esp=ESP, extra_daemon=daemon, child_extra=child, vips=vips),
        psk_config("moon", IKE, esp=ESP, extra_daemon=daemon, child_extra=child, vips=vips),
    )
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    return net


def _seeded(seed: int) -> Net:
    """A tunnel up whose engines draw SPIs and nonces from one seeded generator, so each
    seed replays the same collision."""
    rng = random.Random(seed)
    net = _up()
    for p in net.peers.values():
        p.engine.rng = lambda n: rng.randbytes(n)
        for sa in p.engine.sas.values():
            sa.svc.rng = p.engine.rng
    return net


def _child(net: Net, who: str):  # type: ignore[no-untyped-def]
    (sa,) = [s for s in net.peers[who].engine.sas.values() if s.children]
    (child,) = sa.children
    return child


def _outbound_receivable(net: Net) -> None:
    """Every outbound SA one end has installed (the kernel may send with any of them: the
    newest of a reqid) has its inbound SA installed at the other end."""
    for a, b in (("carol", "moon"), ("moon", "carol")):
        ka, kb = net.peers[a].kernel, net.peers[b].kernel
        for key, sa in ka.sas.items():
            if not sa.inbound:
                assert key in kb.sas and kb.sas[key].inbound, f"{a} sends on {key}, {b} lacks it"


def _checking(net: Net) -> None:
    def check(d: Datagram) -> list[Datagram]:
        _outbound_receivable(net)
        return [d]

    net.filter = check


def test_rekeyed_inbound_sa_kept_for_default_delay_then_removed() -> None:
    net = _up()
    old = {w: _child(net, w) for w in ("carol", "moon")}
    net.peers["carol"].engine.rekey(None, "net", net.now)
    net.run()
    for who, peer in net.peers.items():
        o = old[who]
        new = _child(net, who)
        assert new.spi_in != o.spi_in
        # after the DELETE exchange: the old inbound SA is still there, its outbound is not
        assert kept_inbound(peer) == {k for k in peer.kernel.sas if k[0] == o.spi_in}
        assert len(peer.kernel.sas) == 3 and len(current_sas(peer)) == 2
        assert len(peer.kernel.policies) == 3  # the old CHILD_SA's policies went with it
    net.advance(4.5)
    assert all(len(p.kernel.sas) == 3 for p in net.peers.values())
    net.advance(1.0)
    for peer in net.peers.values():
        assert not kept_inbound(peer) and len(peer.kernel.sas) == 2


@pytest.mark.parametrize("delay", [1, 20])
def test_delete_rekeyed_delay_is_configurable(delay: int) -> None:
    net = _up(delay)
    net.peers["moon"].engine.rekey(None, "net", net.now)
    net.run()
    net.advance(delay - 0.5)
    assert all(len(kept_inbound(p)) == 1 for p in net.peers.values())
    net.advance(1.0)
    assert all(len(p.kernel.sas) == 2 for p in net.peers.values())


def test_delay_zero_keeps_inbound_until_the_hard_lifetime() -> None:
    """strongSwan: delete_rekeyed_delay = 0 keeps it until the CHILD_SA would expire."""
    net = _up(0, {"rekey_time": "200s", "life_time": "300s"})
    old = {w: _child(net, w) for w in ("carol", "moon")}
    net.peers["carol"].engine.rekey(None, "net", net.now)
    net.run()
    for who, peer in net.peers.items():
        ((until, spi, _),) = [e for sa in peer.engine.sas.values() for e in sa.rekeyed_inbound]
        assert spi == old[who].spi_in and until == old[who].expire_at
    # a rekeyed CHILD_SA expires at most 60 s after the rekey (REKEYED_GRACE), not at 300 s
    assert all(o.expire_at == 60.0 for o in old.values())
    net.advance(59.0)
    assert all(len(kept_inbound(p)) == 1 for p in net.peers.values())
    net.advance(2.0)
    assert all(not kept_inbound(p) and len(p.kernel.sas) == 2 for p in net.peers.values())


@pytest.mark.parametrize("by", ["carol", "moon"])
def test_every_outbound_sa_is_receivable_through_rekeys(by: str) -> None:
    net = _up()
    _checking(net)
    for _ in range(3):
        net.peers[by].engine.rekey(None, "net", net.now)
        net.run()
        _outbound_receivable(net)
        net.advance(1.0)
    net.peers[by].engine.rekey("home" if by == "carol" else "rw", None, net.now)
    net.run()
    net.peers[by].engine.rekey(None, "net", net.now)
    net.run()
    _outbound_receivable(net)


@pytest.mark.parametrize("seed", range(6))
def test_every_outbound_sa_is_receivable_in_rekey_collisions(seed: int) -> None:
    """Simultaneous rekeys (RFC 7296 §2.8.1): the loser stops sending with its redundant SA
    before it deletes it, the winner never sends with the peer's redundant SA."""
    net = _seeded(seed)
    _checking(net)
    net.peers["carol"].engine.rekey(None, "net", net.now)
    net.peers["moon"].engine.rekey(None, "net", net.now)
    net.run()
    _outbound_receivable(net)
    c, m = _child(net, "carol"), _child(net, "moon")
    assert (c.spi_in, c.spi_out) == (m.spi_out, m.spi_in)
    net.advance(6.0)
    assert all(len(p.kernel.sas) == 2 for p in net.peers.values())


@pytest.mark.parametrize("seed", range(6))
def test_redundant_sa_of_a_collision_is_never_rekeyed(seed: int) -> None:
    """While the loser's DELETE of its redundant SA is on its way (here: lost), neither end
    may treat that SA as a live one: it would be rekeyed and CHILD_SAs multiply (seen in
    UML at 5 % loss)."""
    net = _seeded(seed)
    net.filter = lambda d: [] if len(d.data) <= 96 else [d]  # INFORMATIONAL DELETEs
    net.peers["carol"].engine.rekey(None, "net", net.now)
    net.peers["moon"].engine.rekey(None, "net", net.now)
    net.run()
    live = {}
    for who, peer in net.peers.items():
        (sa,) = [s for s in peer.engine.sas.values() if s.children]
        live[who] = [c for c in sa.children if c.state.value == "INSTALLED"]
        assert len(live[who]) == 1, sa.children
        assert all(c.rekey_at is None for c in sa.children if c not in live[who])
    (c,), (m,) = live["carol"], live["moon"]
    assert (c.spi_in, c.spi_out) == (m.spi_out, m.spi_in)


def test_kept_inbound_sas_move_with_an_ike_sa_rekey() -> None:
    net = _up()
    net.peers["carol"].engine.rekey(None, "net", net.now)
    net.run()
    net.peers["carol"].engine.rekey("home", None, net.now)
    net.run()  # the old IKE_SA is deleted; what it kept is the new one's now
    assert all(len(kept_inbound(p)) == 1 for p in net.peers.values())
    assert all(len(p.kernel.sas) == 3 for p in net.peers.values())
    net.advance(6.0)
    assert all(len(p.kernel.sas) == 2 for p in net.peers.values())


def test_ike_sa_delete_and_shutdown_remove_kept_inbound_sas() -> None:
    net = _up()
    net.peers["carol"].engine.rekey(None, "net", net.now)
    net.run()
    net.peers["carol"].engine.terminate("home", None, None, net.now)
    net.run()
    for peer in net.peers.values():
        assert peer.kernel.sas == {} and peer.kernel.policies == []
    net = _up()
    net.peers["moon"].engine.rekey(None, "net", net.now)
    net.run()
    for peer in net.peers.values():
        peer.engine.close(net.now)
        assert peer.kernel.sas == {} and peer.kernel.policies == []


@pytest.mark.parametrize("by", ["carol", "moon"])
def test_reauthentication_keeps_old_inbound_sas_for_the_delay(by: str) -> None:
    """Make-before-break: the old IKE_SA's DELETE takes its CHILD_SAs, but the peer may send
    on them until that DELETE reaches it; their inbound SAs stay for delete_rekeyed_delay
    like a rekeyed CHILD_SA's, on the new IKE_SA, then go."""
    net = _up(vips=False)  # a responder that assigned a VIP cannot reauthenticate
    old = {w: _child(net, w) for w in ("carol", "moon")}
    _checking(net)
    net.peers[by].engine.reauthenticate(None, net.now)
    net.run()
    for who, peer in net.peers.items():
        (sa,) = peer.engine.sas.values()  # the old IKE_SA is gone
        (new,) = sa.children
        assert new.spi_in != old[who].spi_in
        # one reqid: the kernel's inbound policy names it, ESP on the kept SA must pass it
        assert new.reqid == old[who].reqid
        if who == by:
            kept = (old[who].spi_in, CAROL if who == "carol" else MOON)
            assert kept_inbound(peer) == {kept} and peer.kernel.sas[kept].inbound
        assert len(current_sas(peer)) == 2
    net.advance(4.5)
    assert len(kept_inbound(net.peers[by])) == 1
    net.advance(1.0)
    for peer in net.peers.values():
        assert not kept_inbound(peer) and len(peer.kernel.sas) == 2


def test_rekey_answered_temporary_failure_gives_its_spi_back() -> None:
    """A CHILD_SA rekey the peer refuses with TEMPORARY_FAILURE (it is rekeying the IKE_SA)
    is retried later; the inbound SPI allocated for it goes back now (a larval SA in the
    kernel otherwise, left after the IKE_SA was terminated: seen in UML)."""
    net = _up()
    net.peers["moon"].engine.rekey("rw", None, net.now)
    net.peers["carol"].engine.rekey(None, "net", net.now)
    net.run()
    (sa,) = [s for s in net.peers["carol"].engine.sas.values() if s.children]
    assert sa.retry_at, "carol's rekey was not refused with TEMPORARY_FAILURE"
    for peer in net.peers.values():
        inbound = {spi for (spi, _), sa in peer.kernel.sas.items() if sa.inbound}
        assert peer.kernel._spis == inbound


def test_abandoned_followup_chain_does_not_block_ike_sa_rekeys() -> None:
    """Both ends rekey the CHILD_SA, moon's answer to carol's CREATE_CHILD_SA is lost: moon's
    rekey completes and deletes the old CHILD_SA before carol's retransmission is answered,
    and carol gives its IKE_FOLLOWUP_KE chain up. Moon's half of that chain goes with the
    CHILD_SA: while one is open, moon refuses every IKE_SA rekey (seen in UML at 1 % loss:
    refused for 60 s, then the IKE_SA reached its hard lifetime and took the tunnel)."""
    esp = f"{ESP}-ke1_mlkem768"
    net = make_pair(psk_config("carol", IKE, esp=esp), psk_config("moon", IKE, esp=esp))
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    lost: list[Datagram] = []

    def lose_first_answer_to_carol(d: Datagram) -> list[Datagram]:
        h = decode_header(d.data)
        answer = h.exchange == ExchangeType.CREATE_CHILD_SA and h.response
        if answer and d.src.host == MOON and not lost:
            lost.append(d)
            return []
        return [d]

    net.filter = lose_first_answer_to_carol
    net.peers["carol"].engine.rekey(None, "net", net.now)
    net.peers["moon"].engine.rekey(None, "net", net.now)
    net.run()
    net.advance(5.0)  # carol's retransmission, answered from moon's cache
    assert lost
    (moon_sa,) = net.peers["moon"].engine.sas.values()
    assert not moon_sa.followups, "moon still waits for carol's abandoned chain"
    (carol_sa,) = net.peers["carol"].engine.sas.values()
    net.peers["carol"].engine.rekey("home", None, net.now)
    net.run()
    (new,) = net.peers["carol"].engine.sas.values()
    assert new is not carol_sa and new.state.value == "ESTABLISHED"


def test_queued_rekey_of_a_child_sa_the_peer_rekeyed_meanwhile_is_dropped() -> None:
    """moon's rekey of net waits in its queue while carol rekeys net (moon answers): when it
    comes up, net is REKEYED (carol's DELETE is on its way) and must not be rekeyed again.
    Seen in UML at 5 % loss on the userspace data plane: moon rekeyed it anyway, deleted it,
    and that switched its outbound to carol's new CHILD_SA before carol, whose last answer
    was lost, had its inbound SA: 144 pings dropped for an unknown SPI."""
    from pqike.tasks.child_sa_ke import ChildSaKe

    net = _up()
    old = _child(net, "moon")
    net.filter = lambda d: (
        [] if decode_header(d.data).exchange == ExchangeType.INFORMATIONAL else [d]
    )
    net.peers["carol"].engine.rekey(None, "net", net.now)
    net.run()  # carol's DELETE of the old CHILD_SA is lost
    assert old.state.value == "REKEYED"
    sent = len(net.log)
    (sa,) = net.peers["moon"].engine.sas.values()
    sa.queue(ChildSaKe(sa, True, rekey=old))
    sa.initiate(net.now)
    net.run()
    moon_requests = [
        h
        for h in (decode_header(d.data) for d in net.log[sent:] if d.src.host == MOON)
        if h.exchange == ExchangeType.CREATE_CHILD_SA and not h.response
    ]
    assert moon_requests == [], "moon rekeyed a CHILD_SA that is already rekeyed"
    _checking(net)
    net.filter = None
    net.advance(5.0)  # carol's DELETE again: moon switches to the new CHILD_SA
    _outbound_receivable(net)
    assert len(current_sas(net.peers["moon"])) == 2


def test_list_sas_while_an_outbound_sa_is_held_back() -> None:
    """moon answered carol's rekey and waits for carol's DELETE (lost here) before it sends
    on the new SA: that outbound SA is not in the kernel yet, whose query fails (xfrm:
    ESRCH). list-sas, and terminate with it, failed on it (UML, pqike <-> charon, 5 %)."""
    net = _up()
    moon = net.peers["moon"]
    lenient = moon.kernel.query_sa

    def strict(spi: int, dst: str):  # type: ignore[no-untyped-def]
        if (spi, dst) not in moon.kernel.sas:
            raise KernelError(f"querying SA {spi:08x} to {dst}: ESRCH")
        return lenient(spi, dst)

    moon.kernel.query_sa = strict  # type: ignore[method-assign]
    net.filter = lambda d: (
        [] if decode_header(d.data).exchange == ExchangeType.INFORMATIONAL else [d]
    )
    net.peers["carol"].engine.rekey(None, "net", net.now)
    net.run()
    (sa,) = moon.engine.sas.values()
    (new,) = [c for c in sa.children if c.pending_outbound is not None]
    (info,) = moon.engine.list_sas(net.now)
    (child,) = [c for c in info.children if c.unique_id == new.unique_id]
    assert (child.packets_out, child.bytes_out) == (0, 0)
    moon.engine.terminate("rw", None, None, net.now)
