"""Trap policies in memory: start/close/dpd_action = trap, ACQUIREs, install/uninstall.

The MemoryKernel plays the data plane: ``send()`` says what a packet would meet (an SA, a
trap that reports an ACQUIRE to the engine, or nothing), as XFRM and the TUN path do.
"""

from __future__ import annotations

import msgspec
import pytest

from pqike.engine import EngineError
from pqike.events import EventKind
from tests.exchange.peers import CAROL, MOON, Net, make_pair, psk_config

PROP = "aes256-sha256-x25519"
INSIDE = "10.1.0.5"  # behind moon (carol's remote_ts 10.1.0.0/16)


def _pair(**child: object) -> Net:
    carol = psk_config("carol", PROP, vips=False, child_extra=child)
    moon = psk_config("moon", PROP, vips=False)
    net = make_pair(carol, moon)
    carol_kernel = net.peers["carol"].kernel
    carol_eng = net.peers["carol"].engine
    carol_kernel.on_acquire = lambda reqid, s, d: carol_eng.acquire(reqid, s, d, net.now)
    return net


def _ping(net: Net) -> str:
    return net.peers["carol"].kernel.send(CAROL, INSIDE)


def _established(net: Net) -> list:
    return [
        c for sa in net.peers["carol"].engine.list_sas() for c in sa.children if c.name == "net"
    ]


def test_start_action_trap_first_packet_starts_child_sa() -> None:
    net = _pair(start_action="trap")
    carol = net.peers["carol"]
    assert carol.kernel.traps() == []  # nothing before the daemon starts the engine
    carol.engine.install_traps()
    (trap,) = carol.kernel.traps()
    assert (str(trap.src_ts), str(trap.dst_ts), trap.tunnel) == (
        f"{CAROL}/32",
        "10.1.0.0/16",
        (CAROL, MOON),
    )
    assert carol.kernel.sas == {} and carol.engine.list_sas() == []
    assert _ping(net) == "acquire"
    assert _ping(net) == "acquire"  # a second packet while negotiating: no second IKE_SA
    assert len(carol.engine.list_sas()) == 1
    net.run()
    (child,) = _established(net)
    assert child.reqid == trap.reqid  # the CHILD_SA takes the trap's reqid
    assert _ping(net) == "protected"
    assert [p for p in carol.engine.list_pols()] == [
        {
            "name": "net",
            "ike": "home",
            "reqid": trap.reqid,
            "mode": "TUNNEL",
            "local_ts": [f"{CAROL}/32"],
            "remote_ts": ["10.1.0.0/16"],
            "origin": "start_action",
            "acquiring": False,
        }
    ]


def test_acquire_after_failed_negotiation_tries_again() -> None:
    net = _pair(start_action="trap")
    carol = net.peers["carol"]
    carol.engine.install_traps()
    net.filter = lambda d: [] if d.dst.host == MOON else [d]  # moon unreachable
    assert _ping(net) == "acquire"
    for _ in range(40):
        net.advance(10.0)
    assert [e.kind for e in carol.events].count(EventKind.IKE_FAILED) == 1
    assert carol.engine.list_sas() == []
    net.filter = None
    assert _ping(net) == "acquire"  # the failed acquire completed: this one starts anew
    net.run()
    assert len(_established(net)) == 1


def test_trap_takes_over_when_the_child_sa_goes_and_is_removed_at_close() -> None:
    net = _pair(start_action="trap")
    carol = net.peers["carol"]
    carol.engine.install_traps()
    _ping(net)
    net.run()
    carol.engine.terminate(None, "net", None, net.now)
    net.run()
    assert _established(net) == [] and carol.kernel.sas == {}
    assert len(carol.kernel.traps()) == 1
    assert _ping(net) == "acquire"  # on the IKE_SA that is still up
    net.run()
    assert len(_established(net)) == 1 and len(carol.engine.list_sas()) == 1
    carol.engine.close(net.now)
    assert carol.kernel.policies == [] and carol.kernel.sas == {}


def test_close_action_trap_after_peer_deletes_child_sa() -> None:
    net = _pair(close_action="trap")
    carol, moon = net.peers["carol"], net.peers["moon"]
    carol.engine.initiate("net", None, net.now)
    net.run()
    assert carol.kernel.traps() == []
    carol.engine.rekey(None, "net", net.now)  # a rekey's DELETE is no close
    net.run()
    assert carol.kernel.traps() == [] and len(_established(net)) == 1
    moon.engine.terminate(None, "net", None, net.now)
    net.run()
    assert _established(net) == []
    (trap,) = carol.kernel.traps()
    assert carol.engine.list_pols()[0]["origin"] == "close_action"
    assert _ping(net) == "acquire"
    net.run()
    assert [c.reqid for c in _established(net)] == [trap.reqid]


def test_close_action_trap_after_peer_deletes_the_ike_sa() -> None:
    net = _pair(close_action="trap")
    carol, moon = net.peers["carol"], net.peers["moon"]
    carol.engine.initiate("net", None, net.now)
    net.run()
    carol.engine.rekey("home", None, net.now)  # the old IKE_SA's DELETE is no close
    net.run()
    assert carol.kernel.traps() == [] and len(_established(net)) == 1
    moon.engine.terminate("rw", None, None, net.now)
    net.run()
    assert carol.engine.list_sas() == []
    assert len(carol.kernel.traps()) == 1
    assert carol.engine.list_pols()[0]["origin"] == "close_action"
    assert _ping(net) == "acquire"
    net.run()
    assert len(_established(net)) == 1


def _up_then_moon_dies(net: Net) -> None:
    """carol (dpd_delay 30 s) brings the CHILD_SA up, then moon stops answering until
    carol's DPD gives up."""
    carol = net.peers["carol"]
    conn = msgspec.structs.replace(carol.engine.config.connections["home"], dpd_delay=30)
    carol.engine.load_config(
        msgspec.structs.replace(carol.engine.config, connections={"home": conn})
    )
    carol.engine.initiate("net", None, net.now)
    net.run()
    net.filter = lambda d: [] if d.dst.host == MOON else [d]
    for _ in range(30):
        net.advance(10.0)


def test_dpd_action_trap_after_dead_peer() -> None:
    net = _pair(dpd_action="trap")
    carol = net.peers["carol"]
    _up_then_moon_dies(net)
    assert EventKind.IKE_DELETED in [e.kind for e in carol.events]
    assert carol.engine.list_sas() == [] and carol.kernel.sas == {}
    (trap,) = carol.kernel.traps()  # not "Network is unreachable": traffic is caught
    assert carol.engine.list_pols()[0]["origin"] == "dpd_action"
    net.filter = None
    assert _ping(net) == "acquire"
    net.run()
    assert [c.reqid for c in _established(net)] == [trap.reqid]


def test_dpd_action_clear_installs_no_trap() -> None:
    net = _pair()
    carol = net.peers["carol"]
    _up_then_moon_dies(net)
    assert carol.kernel.policies == [] and _ping(net) == "bypass"


def test_install_uninstall_commands() -> None:
    net = _pair()
    carol = net.peers["carol"]
    reqid = carol.engine.install("net", None)
    assert [p.reqid for p in carol.kernel.traps()] == [reqid]
    with pytest.raises(EngineError, match="already routed"):
        carol.engine.install("net", None)
    with pytest.raises(EngineError, match="no CHILD_SA config named 'nope'"):
        carol.engine.install("nope", None)
    carol.engine.uninstall("net", None)
    assert carol.kernel.policies == [] and carol.engine.list_pols() == []
    with pytest.raises(EngineError, match="no trap policy for CHILD_SA 'net'"):
        carol.engine.uninstall("net", None)
    carol.engine.acquire(reqid, CAROL, INSIDE, 0.0)  # a stale ACQUIRE: ignored
    assert carol.engine.list_sas() == []


def test_reload_without_start_action_trap_removes_its_trap() -> None:
    net = _pair(start_action="trap")
    carol = net.peers["carol"]
    carol.engine.install_traps()
    assert len(carol.kernel.traps()) == 1
    child = msgspec.structs.replace(
        carol.engine.config.connections["home"].children["net"], start_action="none"
    )
    conn = msgspec.structs.replace(carol.engine.config.connections["home"], children={"net": child})
    carol.engine.load_config(
        msgspec.structs.replace(carol.engine.config, connections={"home": conn})
    )
    assert carol.kernel.policies == []
