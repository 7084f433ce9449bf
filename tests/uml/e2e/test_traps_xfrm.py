"""Trap policies on a real kernel (inside UML): the xfrm backend's trap is an OUT policy
with a template and no SA; the first packet makes the kernel multicast an ACQUIRE, which
starts the CHILD_SA; the later packets pass through ESP.

    carol 192.168.0.3 (inner 10.3.0.1 on lo) ==veth== moon 192.168.0.2, intranet 10.1.0.1/24

- start_action = trap: the first ping starts the negotiation (pings lost reported), the
  CHILD_SA has the trap's reqid and the kernel's larval ACQUIRE state is gone; after the peer
  deletes the CHILD_SA (close_action = trap) the trap catches the next ping again;
- dpd_action = trap: moon frozen, DPD declares it dead, the trap comes back and the next
  ping after moon resumes brings the tunnel up again (not "Network is unreachable");
- the daemon's exit leaves no SA (larval ones included), policy, route or rule.
"""

from __future__ import annotations

import os
import signal
import time

from pqike.netns import Topology, add_address
from tests.e2e.daemons import Pqike, psk_tree
from tests.uml.e2e.common import (
    CAROL,
    ESP,
    IKE,
    INTRANET,
    MOON,
    NOTHING,
    cli_ok,
    kernel_errors,
    leftovers,
    ping,
    snapshot,
    xfrm_daemon,
    xfrm_state,
)

INNER = "10.3.0.1"


def _configure(carol: Pqike, moon: Pqike, **child: object) -> None:
    tree = psk_tree("carol", carol.socket, proposals=IKE, esp=ESP, kernel="xfrm",
                    child={"local_ts": [f"{INNER}/32"], **child},
                    ike={"vips": [], "local_addrs": [CAROL], "dpd_delay": "2s"})  # fmt: skip
    tree["daemon"].update(retransmit_tries=2, retransmit_timeout=1.0)
    carol.write_config(tree)
    tree = psk_tree("moon", moon.socket, proposals=IKE, esp=ESP, kernel="xfrm",
                    child={"remote_ts": [f"{INNER}/32"]}, ike={"pools": []})  # fmt: skip
    del tree["pools"]
    moon.write_config(tree)


def _wait(cond, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := cond()) and time.monotonic() < deadline:
        time.sleep(0.3)
    return value


def _larval(ns: str) -> list:
    return [s for s in xfrm_state(ns)[0] if s.spi == "00000000"]


def _first_pings(topo: Topology, what: str) -> tuple[int, int]:
    st = ping(topo.carol, INTRANET, INNER, count=10, interval=0.2, deadline=6)
    lost = st.sent - st.received
    print(f"\n{what}: {st.sent} pings, {lost} lost before the tunnel was up "
          f"(unanswered {' '.join(st.missing_at())})")  # fmt: skip
    return st.sent, st.received


def test_start_and_close_action_trap(topo: Topology, peers: tuple[Pqike, Pqike]) -> None:
    carol, moon = peers
    add_address(topo.carol, "lo", f"{INNER}/32")
    before = {ns: snapshot(ns, (2,)) for ns in topo.namespaces}
    _configure(carol, moon, start_action="trap", close_action="trap")
    with xfrm_daemon(moon, MOON), xfrm_daemon(carol, CAROL):
        assert _wait(lambda: xfrm_state(topo.carol)[1]), carol.log
        (trap,) = xfrm_state(topo.carol)[1]
        assert (trap.src, trap.dst, trap.dir, trap.tmpl) == (
            f"{INNER}/32", "10.1.0.0/16", "out", (CAROL, MOON))  # fmt: skip
        assert xfrm_state(topo.carol)[0] == [] and carol.sas() == []
        sent, received = _first_pings(topo, "start_action=trap, xfrm")
        assert received >= sent - 2 and received > 0, carol.log[-4000:]
        (sa,) = carol.sas()
        (child,) = sa["child-sas"].values()
        assert "received XFRM ACQUIRE for reqid 1" in carol.log
        assert child["reqid"] == 1 and child["packets-out"] >= received
        assert _larval(topo.carol) == []  # the outbound SA replaced the larval state
        assert ping(topo.carol, INTRANET, INNER, count=3).received == 3

        cli_ok(moon, "terminate", "--child", "net")  # the peer deletes: close_action
        assert _wait(lambda: not carol.sas()[0]["child-sas"]), carol.log[-3000:]
        # the trap again (the CHILD_SA was narrowed to moon's 10.1.0.0/24: its own policies)
        assert [(p.dst, p.dir) for p in xfrm_state(topo.carol)[1]] == [("10.1.0.0/16", "out")]
        sent, received = _first_pings(topo, "close_action=trap, xfrm")
        assert received >= sent - 2 and received > 0, carol.log[-4000:]
        assert len(carol.sas()) == 1  # on the same IKE_SA
    for peer in (carol, moon):
        assert leftovers(peer.ns) == NOTHING, f"{peer.name} left kernel state behind"
        assert not kernel_errors(peer.log), "\n".join(kernel_errors(peer.log))
    assert {ns: snapshot(ns, (2,)) for ns in topo.namespaces} == before


def test_dpd_action_trap(topo: Topology, peers: tuple[Pqike, Pqike]) -> None:
    carol, moon = peers
    add_address(topo.carol, "lo", f"{INNER}/32")
    before = {ns: snapshot(ns, (2,)) for ns in topo.namespaces}
    _configure(carol, moon, dpd_action="trap")
    with xfrm_daemon(moon, MOON), xfrm_daemon(carol, CAROL):
        cli_ok(carol, "initiate", "--child", "net")
        assert ping(topo.carol, INTRANET, INNER, count=3).received == 3
        assert moon.proc is not None
        os.kill(moon.proc.pid, signal.SIGSTOP)
        try:
            assert _wait(lambda: carol.sas() == [], 40), carol.log[-3000:]
            assert [p.dir for p in xfrm_state(topo.carol)[1]] == ["out"]
            assert xfrm_state(topo.carol)[0] == []
        finally:
            os.kill(moon.proc.pid, signal.SIGCONT)
        sent, received = _first_pings(topo, "dpd_action=trap, xfrm, after the dead peer")
        assert received >= sent - 3 and received > 0, carol.log[-4000:]
        assert carol.cli("list-pols").stdout.startswith("home/net, TUNNEL, reqid")
        cli_ok(carol, "uninstall", "--child", "net")  # the CHILD_SA's policies stay
        pols = {(p.dst, p.dir) for p in xfrm_state(topo.carol)[1]}
        assert pols == {("10.1.0.0/24", "out"), (f"{INNER}/32", "in"), (f"{INNER}/32", "fwd")}
    for peer in (carol, moon):
        assert leftovers(peer.ns) == NOTHING, f"{peer.name} left kernel state behind"
        assert not kernel_errors(peer.log), "\n".join(kernel_errors(peer.log))
    assert {ns: snapshot(ns, (2,)) for ns in topo.namespaces} == before
