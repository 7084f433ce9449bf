"""Trap policies with real traffic: pqike <-> pqike in network namespaces, userspace ESP.

The first ping routed into carol's TUN for a trapped child starts the CHILD_SA (the
userspace ACQUIRE); the later ones pass. After moon stops answering (frozen), DPD with
dpd_action = trap installs the trap again, so the next ping after moon is back brings the
tunnel up again instead of failing. Nothing is left behind."""

from __future__ import annotations

import os
import signal
import time

import pytest

from pqike.netns import add_address, topology
from tests.e2e.daemons import Pqike, daemon, ping, psk_tree, snapshot
from tests.e2e.test_dataplane import ESP, IKE, _skip

pytestmark = pytest.mark.skipif(_skip() is not None, reason=_skip() or "")

CAROL_NET = "10.3.0.1"  # on carol's lo: the inner source, no virtual IP


@pytest.fixture
def pair(tmp_path):  # type: ignore[no-untyped-def]
    with topology() as topo:
        yield (
            topo,
            Pqike("carol", topo.carol, tmp_path / "carol"),
            Pqike("moon", topo.moon, tmp_path / "moon"),
        )


def _configs(carol: Pqike, moon: Pqike, **child: object) -> None:
    tree = psk_tree("carol", carol.socket, proposals=IKE, esp=ESP,
                    child={"local_ts": [f"{CAROL_NET}/32"], **child},
                    ike={"vips": [], "dpd_delay": "2s"})  # fmt: skip
    tree["daemon"].update(retransmit_tries=2, retransmit_timeout=1.0)
    carol.write_config(tree)
    tree = psk_tree("moon", moon.socket, proposals=IKE, esp=ESP,
                    child={"remote_ts": [f"{CAROL_NET}/32"]}, ike={"pools": []})  # fmt: skip
    del tree["pools"]
    moon.write_config(tree)


def _first_pings(ns: str, count: int = 10) -> tuple[int, int]:
    return ping(ns, "10.1.0.1", CAROL_NET, count=count, interval=0.2, deadline=count * 0.2 + 3)


def _wait(predicate, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_start_action_trap_first_ping_starts_the_tunnel(pair) -> None:  # type: ignore[no-untyped-def]
    topo, carol, moon = pair
    add_address(topo.carol, "lo", f"{CAROL_NET}/32")
    before = {ns: snapshot(ns) for ns in topo.namespaces}
    _configs(carol, moon, start_action="trap")
    with daemon(moon), daemon(carol):
        pols = carol.cli("list-pols")
        assert pols.stdout.startswith("home/net, TUNNEL, reqid 1\n"), pols.stdout + carol.log
        assert carol.sas() == []
        sent, received = _first_pings(topo.carol)
        print(f"\nstart_action=trap, userspace: {sent} pings, {sent - received} lost before "
              "the tunnel was up")  # fmt: skip
        assert 1 <= sent - received <= 2 and received >= sent - 2
        (sa,) = carol.sas()
        (child,) = sa["child-sas"].values()
        assert child["reqid"] == 1  # the trap's reqid
        assert "acquire for CHILD_SA 'net' {reqid 1}" in carol.log
        assert ping(topo.carol, "10.1.0.1", CAROL_NET) == (3, 3)
    after = {ns: snapshot(ns) for ns in topo.namespaces}
    assert after == before


def test_install_then_dpd_action_trap_brings_the_tunnel_back(pair) -> None:  # type: ignore[no-untyped-def]
    topo, carol, moon = pair
    add_address(topo.carol, "lo", f"{CAROL_NET}/32")
    before = {ns: snapshot(ns) for ns in topo.namespaces}
    _configs(carol, moon, dpd_action="trap")
    with daemon(moon), daemon(carol):
        out = carol.cli("install", "--child", "net")
        assert out.returncode == 0 and "install policy 'net'" in out.stdout, out.stderr
        sent, received = _first_pings(topo.carol)
        assert received >= sent - 2, carol.log
        out = carol.cli("uninstall", "--child", "net")
        assert out.returncode == 0, out.stderr
        assert carol.cli("list-pols").stdout == ""
        assert ping(topo.carol, "10.1.0.1", CAROL_NET) == (3, 3)  # the SA stays
        assert moon.proc is not None
        os.kill(moon.proc.pid, signal.SIGSTOP)  # moon stops answering
        try:
            assert _wait(lambda: carol.sas() == [], 30), carol.log
            pols = carol.cli("list-pols", "--json").stdout
            assert '"origin": "dpd_action"' in pols or '"origin":"dpd_action"' in pols, pols
        finally:
            os.kill(moon.proc.pid, signal.SIGCONT)
        sent, received = _first_pings(topo.carol)
        print(f"\ndpd_action=trap, userspace: {sent} pings after the dead peer, "
              f"{sent - received} lost before the tunnel was up again")  # fmt: skip
        assert received >= sent - 3 and received > 0, carol.log
    after = {ns: snapshot(ns) for ns in topo.namespaces}
    assert after == before
