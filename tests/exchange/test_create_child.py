"""CREATE_CHILD_SA with IKE_FOLLOWUP_KE (RFC 9370 §2.2.4): new CHILD_SAs, CHILD_SA and
IKE_SA rekeying, PFS mismatches; both ends must install the same keys for every SPI."""

from __future__ import annotations

import pytest

from kem import registry
from pqike.events import EventKind
from tests.exchange.peers import current_sas, make_pair, psk_config

IKE = "aes256-sha256-x25519-ke1_mlkem768"


def _need(*keywords: str) -> None:
    for k in keywords:
        m = registry.by_keyword(k)
        if not m.available:
            pytest.skip(f"{m.log_name} unavailable: {m.unavailable_reason}")


def _up(**kw):  # type: ignore[no-untyped-def]
    net = make_pair(psk_config("carol", kw.pop("ike", IKE), **kw), psk_config("moon", IKE, **kw))
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    return net


def _keys_agree(net) -> None:  # type: ignore[no-untyped-def]
    """The current SAs (not the kept inbound ones of replaced CHILD_SAs) agree."""
    ck, mk = current_sas(net.peers["carol"]), current_sas(net.peers["moon"])
    assert ck.keys() == mk.keys()
    for key, sa in ck.items():
        peer = mk[key]
        assert (sa.encr_key, sa.integ_key) == (peer.encr_key, peer.integ_key), key
        assert sa.inbound != peer.inbound


def _children(net, who: str):  # type: ignore[no-untyped-def]
    (sa,) = net.peers[who].engine.list_sas()
    return {c.name: c for c in sa.children}


def test_second_child_with_followup_ke_chain() -> None:
    _need("mlkem512")
    esp = "aes256-sha256-modp3072-ke1_mlkem768-ke2_mlkem512"
    net = _up(host_esp=esp)
    start = len(net.log)
    net.peers["carol"].engine.initiate("host", "home", net.now)
    net.run()
    c, m = _children(net, "carol"), _children(net, "moon")
    assert set(c) == set(m) == {"net", "host"}
    assert c["host"].proposal == (
        "ESP:AES_CBC_256/HMAC_SHA2_256_128/MODP_3072/NO_EXT_SEQ/KE1_ML_KEM_768/KE2_ML_KEM_512"
    )
    assert (c["host"].spi_in, c["host"].spi_out) == (m["host"].spi_out, m["host"].spi_in)
    # CREATE_CHILD_SA + two IKE_FOLLOWUP_KE exchanges: 6 messages
    assert len(net.log) - start == 6
    _keys_agree(net)


def test_host_child_of_reference_frodo_bike() -> None:
    """modp3072 + FrodoKEM-AES-L3 + BIKE-L3: the FrodoKEM request needs 12 fragments."""
    _need("frodoa3", "bike3")
    net = _up(
        host_esp="aes256-sha256-modp3072-ke1_frodoa3-ke2_bike3",
        extra_daemon={"send_vendor_id": True},  # private-use methods: strongSwan's vendor ID
    )
    start = len(net.log)
    net.peers["carol"].engine.initiate("host", "home", net.now)
    net.run()
    c = _children(net, "carol")
    assert c["host"].proposal.endswith("MODP_3072/NO_EXT_SEQ/KE1_FRODO_AES_L3/KE2_BIKE_L3")
    carol_sent = [len(d.data) for d in net.log[start:] if d.src.host == "192.168.0.3"]
    assert carol_sent[0] == 624  # CREATE_CHILD_SA request, as in the walkthrough
    assert carol_sent[1:13] == [1444] * 11 + [carol_sent[12]] and len(carol_sent) == 16
    _keys_agree(net)


def test_child_rekey_with_pfs_and_followups() -> None:
    _need("mlkem512")
    esp = "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem512"
    net = _up(esp=esp)
    old = _children(net, "carol")["net"]
    net.peers["carol"].engine.rekey(None, "net", net.now)
    net.run()
    for who in ("carol", "moon"):
        (sa,) = net.peers[who].engine.list_sas()
        assert len(sa.children) == 1
        assert sa.children[0].spi_in not in (old.spi_in, old.spi_out)
        assert net.peers[who].events[-1].kind in (EventKind.CHILD_REKEYED, EventKind.CHILD_DELETED)
    _keys_agree(net)
    assert len(current_sas(net.peers["carol"])) == 2  # the old pair is gone


def test_ike_rekey_moves_children_and_new_keys_work() -> None:
    _need("mlkem512")
    net = _up(ike="aes256-sha256-x25519-ke1_mlkem768")
    (before,) = net.peers["carol"].engine.list_sas()
    net.peers["carol"].engine.rekey("home", None, net.now)
    net.run()
    (c,) = net.peers["carol"].engine.list_sas()
    (m,) = net.peers["moon"].engine.list_sas()
    assert (c.spi_i, c.spi_r) == (m.spi_i, m.spi_r) != (before.spi_i, before.spi_r)
    assert c.unique_id != before.unique_id
    assert [x.spi_in for x in c.children] == [x.spi_in for x in before.children]
    assert c.local_vips == ["10.3.0.1"]
    # the new IKE_SA works: rekey the child over it
    net.peers["moon"].engine.rekey(None, "net", net.now)
    net.run()
    _keys_agree(net)


def test_rekey_pfs_mismatch_is_reported_not_silent() -> None:
    """Reference 001: carol wants PFS on rekey, moon has none configured."""
    net = make_pair(
        psk_config("carol", IKE, esp="aes256-sha256-modp3072"),
        psk_config("moon", IKE, esp="aes256-sha256"),
    )
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    assert _children(net, "carol")["net"].state == "INSTALLED"
    net.peers["carol"].engine.rekey(None, "net", net.now)
    net.run()
    ev = net.peers["carol"].events[-1]
    assert ev.kind == EventKind.REKEY_FAILED
    assert "NO_PROPOSAL_CHOSEN" in ev.message and "MODP_3072" in ev.message
    # the old CHILD_SA stays installed and a retry is scheduled
    assert _children(net, "carol")["net"].state == "INSTALLED"
    sa = next(iter(net.peers["carol"].engine.sas.values()))
    assert sa.retry_at
    # and list-sas says so (the CLI shows "last rekey failed: ...")
    assert "NO_PROPOSAL_CHOSEN" in _children(net, "carol")["net"].last_error
    from pqike.cli import format_sas

    text = format_sas(net.peers["carol"].engine.list_sas())
    assert "last rekey failed: NO_PROPOSAL_CHOSEN" in text


def test_lifetimes_rekey_children_and_ike_automatically() -> None:
    net = _up(child_extra={"rekey_time": "60s"})
    spis = {c.spi_in for c in _children(net, "carol").values()}
    (ike0,) = net.peers["carol"].engine.list_sas()
    for _ in range(30):
        net.advance(10.0)
    (c,) = net.peers["carol"].engine.list_sas()
    assert {x.spi_in for x in c.children}.isdisjoint(spis)
    _keys_agree(net)
    assert c.spi_i == ike0.spi_i  # IKE rekey_time defaults to 4h


def test_unknown_followup_link_gets_state_not_found() -> None:
    net = _up()
    (sa,) = [s for s in net.peers["moon"].engine.sas.values()]
    from pqike.tasks.base import Incoming
    from pqike.wire.iana import ExchangeType, NotifyType
    from pqike.wire.payloads import Notify

    msg = Incoming(
        ExchangeType.IKE_FOLLOWUP_KE,
        sa.peer_mid,
        False,
        [Notify(notify_type=NotifyType.ADDITIONAL_KEY_EXCHANGE, data=b"bogus")],
    )
    sa.process_request(msg, sa.remote, sa.local, net.now)
    sent = net.peers["moon"].engine.pop_outgoing()
    assert len(sent) == 1
    assert sa.last_response is not None


@pytest.mark.parametrize("seed", range(6))
def test_simultaneous_child_rekey_resolved_by_nonces(seed: int) -> None:
    """Both peers rekey the same CHILD_SA at once (RFC 7296 §2.8.1): exactly one new
    CHILD_SA survives on both sides, with the same keys, and nothing leaks."""
    import random

    rng = random.Random(seed)
    net = _up(esp="aes256-sha256-x25519")
    for p in net.peers.values():  # deterministic nonces and SPIs per seed
        p.engine.rng = lambda n: rng.randbytes(n)
        for sa in p.engine.sas.values():
            sa.svc.rng = p.engine.rng
    net.peers["carol"].engine.rekey(None, "net", net.now)
    net.peers["moon"].engine.rekey(None, "net", net.now)
    net.run()
    for who in ("carol", "moon"):
        (sa,) = net.peers[who].engine.list_sas()
        assert len(sa.children) == 1, sa.children
        assert sa.children[0].state == "INSTALLED"
    c, m = _children(net, "carol")["net"], _children(net, "moon")["net"]
    assert (c.spi_in, c.spi_out) == (m.spi_out, m.spi_in)
    _keys_agree(net)
    assert len(current_sas(net.peers["carol"])) == 2


def test_responder_picks_best_fitting_child_config() -> None:
    """A request for exactly 'host' selectors gets 'host', not the wider 'net' listed first
    (strongSwan peer_cfg get_ts_match scoring)."""
    from pqike.sa.ts import TrafficSelector as TS
    from pqike.tasks.common import best_child_config

    net = _up()
    (sa,) = [s for s in net.peers["moon"].engine.sas.values()]
    import msgspec

    host = msgspec.structs.replace(sa.conn.children["net"], local_ts=("10.1.0.1/32",))
    sa.conn = msgspec.structs.replace(sa.conn, children={**sa.conn.children, "host": host})
    match = best_child_config(
        sa, [TS.host("10.3.0.1")], [TS.host("10.1.0.1")], [sa.local.host], ["10.3.0.1"]
    )
    assert match is not None and match[0] == "host"
    wide = best_child_config(
        sa, [TS.host("10.3.0.1")], [TS.from_cidr("10.1.0.0/24")], [sa.local.host], ["10.3.0.1"]
    )
    assert wide is not None and wide[0] == "net"


def test_rekey_responder_switches_outbound_only_after_old_sa_deleted() -> None:
    """The kernel sends with the newest SA of a policy: the responder of a rekey must not
    install its new outbound SA before the initiator has the matching inbound one (found
    with real kernels in UML; strongSwan waits for the DELETE of the old CHILD_SA too)."""
    net = _up()
    carol, moon = net.peers["carol"], net.peers["moon"]
    carol.engine.rekey(None, "net", net.now)
    (req,) = carol.engine.pop_outgoing()
    moon.engine.receive(req, net.now)
    (resp,) = moon.engine.pop_outgoing()
    (m,) = moon.engine.list_sas()
    new = next(c for c in m.children if c.state == "INSTALLED")
    assert (int(new.spi_in, 16), "192.168.0.2") in moon.kernel.sas  # inbound: at once
    assert (int(new.spi_out, 16), "192.168.0.3") not in moon.kernel.sas  # outbound: not yet
    carol.engine.receive(resp, net.now)
    (delete,) = carol.engine.pop_outgoing()  # carol now deletes the old CHILD_SA
    moon.engine.receive(delete, net.now)
    assert (int(new.spi_out, 16), "192.168.0.3") in moon.kernel.sas
    net.run()
    _keys_agree(net)
