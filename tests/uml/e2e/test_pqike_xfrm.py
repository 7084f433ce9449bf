"""pqike <-> pqike with ``--kernel xfrm`` on a real kernel (inside UML): ESP SAs, policies,
the virtual IP and table-220 routes are the kernel's, not pqike's userspace data plane.

    carol 192.168.0.3 (VIP 10.3.0.1) ==eth0 veth eth0== moon 192.168.0.2, intranet 10.1.0.1/24

- ping 10.1.0.1 from the VIP through raw ESP (no UDP encapsulation without NAT); list-sas
  byte/packet counters are the kernel's (compared with an XFRM dump); initiate-terminate
  leaves no SA, policy, VIP, route or rule behind, and the namespaces end as they began;
- CHILD_SA and IKE_SA rekeying (CLI and lifetimes) under ping traffic, with the loss;
- the same with 50 ms delay and 1 % loss (netem) on both veth ends;
- make-before-break reauthentication under ping (50 ms delay): nothing lost.

Run: ``scripts/uml-test.sh tests/uml/e2e -v -s`` (or the host wrapper tests/uml/test_uml_e2e.py).
"""

from __future__ import annotations

import os
import re
import time

import pytest

from pqike.netns import Topology
from tests.e2e.daemons import Pqike, psk_tree
from tests.uml.e2e.common import (
    CAROL,
    ESP,
    IKE,
    INTRANET,
    MOON,
    NOTHING,
    BackgroundPing,
    XSa,
    cli_ok,
    ensure_tun,
    kernel_errors,
    leftovers,
    netem,
    ping,
    snapshot,
    userspace_drops,
    xfrm_daemon,
    xfrm_errors,
    xfrm_state,
)

VIP = "10.3.0.1"


def _configure(carol: Pqike, moon: Pqike, kernel: str = "xfrm", **kw) -> None:  # type: ignore[no-untyped-def]
    for peer in (carol, moon):
        tree = psk_tree(peer.name, peer.socket, proposals=IKE, esp=ESP, kernel=kernel, **kw)
        peer.write_config(tree)


def _installed(peer: Pqike) -> tuple[dict, list[dict]]:
    (sa,) = peer.sas()
    return sa, [c for c in sa["child-sas"].values() if c["state"] == "INSTALLED"]


def _child_sas_in_kernel(ns: str, local: str, remote: str, children: list[dict]) -> list[XSa]:
    """The kernel SAs of ``children`` (in: to ``local``, out: to ``remote``), asserting that
    the namespace holds exactly those."""
    sas, _ = xfrm_state(ns)
    by_key = {(s.spi, s.dst): s for s in sas}
    want = [(c["spi-in"], local) for c in children] + [(c["spi-out"], remote) for c in children]
    assert set(by_key) == set(want), f"kernel SAs {sorted(by_key)} != CHILD_SAs {sorted(want)}"
    return [by_key[k] for k in want]


def _policies(ns: str) -> set[tuple[str, str, str]]:
    return {(p.src, p.dst, p.dir) for p in xfrm_state(ns)[1]}


def _wait(cond, timeout: float = 20.0, step: float = 0.3):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def _assert_clean(topo: Topology, carol: Pqike, moon: Pqike) -> None:
    for peer in (carol, moon):
        assert peer.sas() == [], f"{peer.name} still lists SAs"
        assert leftovers(peer.ns) == NOTHING, f"{peer.name} left kernel state behind"
        assert not kernel_errors(peer.log), "\n".join(kernel_errors(peer.log))
    assert f"{VIP}/32" not in snapshot(topo.carol)["addrs"], "virtual IP left on carol"


def test_ping_counters_and_clean_teardown(topo: Topology, peers: tuple[Pqike, Pqike]) -> None:
    carol, moon = peers
    before = {ns: snapshot(ns, (2,)) for ns in topo.namespaces}
    _configure(carol, moon)
    with xfrm_daemon(moon, MOON), xfrm_daemon(carol, CAROL):
        t0 = time.monotonic()
        cli_ok(carol, "initiate", "--child", "net")
        setup = time.monotonic() - t0
        st = ping(topo.carol, INTRANET, VIP, count=5)
        assert (st.sent, st.received) == (5, 5), st.output + carol.log[-4000:]
        print(f"\ninitiate {setup:.1f}s; ping through kernel ESP: {st.summary()}")

        sa, (child,) = _installed(carol)
        msa, (mchild,) = _installed(moon)
        assert sa["local-vips"] == [VIP]
        assert (sa["initiator-spi"], sa["responder-spi"]) == (
            msa["initiator-spi"],
            msa["responder-spi"],
        )
        assert (child["spi-in"], child["spi-out"]) == (mchild["spi-out"], mchild["spi-in"])
        assert not child["encap"], "no NAT here: ESP must not be UDP-encapsulated"
        assert child["remote-ts"] == ["10.1.0.0/24"] and child["local-ts"] == [f"{VIP}/32"]

        # list-sas counters are the kernel's: compare with what an XFRM dump says
        c_in, c_out = _child_sas_in_kernel(topo.carol, CAROL, MOON, [child])
        m_in, m_out = _child_sas_in_kernel(topo.moon, MOON, CAROL, [mchild])
        assert not (c_in.encap or c_out.encap or m_in.encap or m_out.encap)
        assert c_out.packets >= 5 and c_in.packets >= 5, (c_in, c_out)
        assert (child["packets-out"], child["bytes-out"]) == (c_out.packets, c_out.bytes)
        assert (child["packets-in"], child["bytes-in"]) == (c_in.packets, c_in.bytes)
        assert m_in.packets == c_out.packets and m_out.packets == c_in.packets
        assert m_in.bytes == c_out.bytes and m_out.bytes == c_in.bytes
        assert c_in.reqid == c_out.reqid == child["reqid"]
        print(f"carol kernel SAs: in {c_in}, out {c_out}")
        for peer in (carol, moon):
            assert xfrm_errors(peer.proc.pid) == {}, f"{peer.name}: XFRM errors"

        net, vip = "10.1.0.0/24", f"{VIP}/32"
        assert _policies(topo.carol) == {(vip, net, "out"), (net, vip, "in"), (net, vip, "fwd")}
        assert _policies(topo.moon) == {(net, vip, "out"), (vip, net, "in"), (vip, net, "fwd")}
        tmpl = {p.dir: p.tmpl for p in xfrm_state(topo.carol)[1]}
        assert tmpl["out"] == (CAROL, MOON) and tmpl["in"] == (MOON, CAROL)
        snap = snapshot(topo.carol)
        assert vip in snap["addrs"]
        assert "10.1.0.0/24 table 220" in snap["routes"], snap["routes"]
        assert f"{VIP}/32 table 220" in snapshot(topo.moon)["routes"]

        cli_ok(carol, "terminate", "--ike", "home")
        _assert_clean(topo, carol, moon)
        # traffic to the intranet is no longer tunnelled (and the VIP is gone)
        assert ping(topo.carol, INTRANET, CAROL, count=1).received == 0
    assert {ns: snapshot(ns, (2,)) for ns in topo.namespaces} == before


def test_cli_rekeys_under_ping(topo: Topology, peers: tuple[Pqike, Pqike]) -> None:
    """rekey --child and rekey --ike (twice each) while ping runs; the kernel holds exactly the
    current CHILD_SA's SAs afterwards, and counters went on on the new SAs."""
    carol, moon = peers
    _configure(carol, moon)
    with xfrm_daemon(moon, MOON), xfrm_daemon(carol, CAROL):
        cli_ok(carol, "initiate", "--child", "net")
        _, (first,) = _installed(carol)
        first_ike = carol.sas()[0]
        timings = []
        with BackgroundPing(topo.carol, INTRANET, VIP, seconds=16) as bg:
            time.sleep(1.5)
            for args in (("--child", "net"), ("--ike", "home")) * 2:
                t0 = time.monotonic()
                cli_ok(carol, "rekey", *args)
                timings.append(f"{args[0][2:]} {time.monotonic() - t0:.1f}s")
                time.sleep(1.5)
        st = bg.join()
        print(f"\nrekeys ({', '.join(timings)}) under ping: {st.summary()}; {_drops(carol, moon)}")

        sa, children = _installed(carol)
        msa, mchildren = _installed(moon)
        assert (
            sa["uniqueid"] != first_ike["uniqueid"]
            and sa["initiator-spi"] != first_ike["initiator-spi"]
        )
        assert (sa["initiator-spi"], sa["responder-spi"]) == (
            msa["initiator-spi"],
            msa["responder-spi"],
        )
        (child,) = children
        (mchild,) = mchildren
        assert child["spi-in"] not in (first["spi-in"], first["spi-out"])
        assert (child["spi-in"], child["spi-out"]) == (mchild["spi-out"], mchild["spi-in"])
        # old SAs are deleted: only the current ones remain in the kernel (after any grace)
        ok = _wait(lambda: all(len(xfrm_state(ns)[0]) == 2 for ns in topo.namespaces))
        assert ok, (xfrm_state(topo.carol)[0], xfrm_state(topo.moon)[0], carol.sas(), moon.sas())
        sa, (child,) = _installed(carol)
        _, c_out = _child_sas_in_kernel(topo.carol, CAROL, MOON, [child])
        _child_sas_in_kernel(topo.moon, MOON, CAROL, [mchild])
        assert c_out.packets > 0, "the last CHILD_SA carried no traffic"
        assert len(_policies(topo.carol)) == 3 and len(_policies(topo.moon)) == 3
        assert st.loss <= 2.0, st.summary()
        cli_ok(carol, "terminate", "--ike", "home")
        _assert_clean(topo, carol, moon)


def test_lifetime_rekeying_under_ping(topo: Topology, peers: tuple[Pqike, Pqike]) -> None:
    """CHILD_SAs rekey every 2-3 s and the IKE_SA every ~7 s by lifetime, while ping runs.

    Known loss (pqike/tasks, not the kernel backend): the responder of a CHILD_SA rekey
    uses its new outbound SA at once (same reqid, the kernel picks the newest SA), some ms
    before the initiator turned its larval (ALLOCSPI) inbound SA into a real one; such ESP
    packets are dropped as XfrmAcquireError (or XfrmInNoStates). strongSwan's responder
    installs the outbound SA only when the initiator's DELETE of the old SA arrives."""
    carol, moon = peers
    seconds = int(os.environ.get("PQIKE_REKEY_SECONDS", "20"))
    # hard lifetimes well after the rekey (strongSwan's derived +10 % would be 0.3 s here,
    # less than one retransmission: a slow exchange would expire the SA, not rekey it)
    child = {"rekey_time": "3s", "life_time": "10s", "rand_time": "1s"}
    _configure(carol, moon, child=child, ike={"rekey_time": "7s"})
    with xfrm_daemon(moon, MOON), xfrm_daemon(carol, CAROL):
        cli_ok(carol, "initiate", "--child", "net")
        first = carol.sas()[0]
        st = BackgroundPing(topo.carol, INTRANET, VIP, seconds=seconds).__enter__().join()
        rekeys, ike_rekeys = _rekeys(carol, moon)
        print(
            f"\n{seconds}s with CHILD_SA rekey 3s / IKE_SA rekey 7s: {rekeys} CHILD_SA, "
            f"{ike_rekeys} IKE_SA rekeys; ping {st.summary()}; {_drops(carol, moon)}"
        )
        sa = carol.sas()[0]
        assert sa["uniqueid"] != first["uniqueid"], "the IKE_SA was not rekeyed"
        assert rekeys >= seconds // 5, f"only {rekeys} CHILD_SA rekeys"
        assert st.loss < 5.0, st.summary()
        assert ping(topo.carol, INTRANET, VIP).received == 3
        for peer in (carol, moon):
            assert not kernel_errors(peer.log), "\n".join(kernel_errors(peer.log))
        cli_ok(carol, "terminate", "--ike", "home")
        _assert_clean(topo, carol, moon)


@pytest.mark.parametrize("loss", [1.0, 0.0])
def test_netem_delay_loss_rekeying(topo: Topology, peers: tuple[Pqike, Pqike], loss: float) -> None:
    """50 ms delay + ``loss`` % loss on both veth ends (rtt ~100 ms) while both ends rekey
    the CHILD_SA every 3-4 s (collisions included), ping at 50/s through the tunnel and, on
    the same link at the same time, outside it (netem's own loss).

    Issue 11 asks: loss during rekeys minus netem's own loss below 1 percentage point, and
    XfrmInNoStates 0 on a loss-free link. What rekeys cost is what the kernel dropped for
    want of an SA (XfrmInNoStates: ESP for an SPI the receiver no longer or not yet has;
    XfrmOutNoStates/XfrmAcquireError: no outbound SA; XfrmInTmplMismatch: ESP on an SA the
    inbound policy does not name): netem's random loss does not touch these counters, so
    "below 1 % of the pings" is a deterministic bound. The tunnel-minus-netem difference
    itself is noisy (for two samples of ~1000 pings at ~2 % round-trip loss, one standard
    error is 0.6 pp): asserted below 1 pp plus 4 standard errors of that difference. Issue 11
    saw XfrmInNoStates 17 and 13.2 % loss here."""
    carol, moon = peers
    seconds = int(os.environ.get("PQIKE_NETEM_SECONDS", "20"))
    interval = 0.02  # 50/s, which UML keeps up (100/s it does not: ping's count is never met)
    for ns in topo.namespaces:
        netem(ns, "eth0", 50, loss)
    # life_time 20 s: a lost IKE message costs a 4 s retransmission, which must not outlast
    # the old CHILD_SA (with the derived life_time, 4.4 s, the old SA expired mid-rekey and
    # both ends deleted CHILD_SAs: a 4 s outage, then none at all)
    _configure(carol, moon, child={"rekey_time": "4s", "life_time": "20s", "rand_time": "1s"})
    with xfrm_daemon(moon, MOON), xfrm_daemon(carol, CAROL):
        t0 = time.monotonic()
        cli_ok(carol, "initiate", "--child", "net")
        setup = time.monotonic() - t0
        with BackgroundPing(topo.carol, MOON, CAROL, seconds, interval) as plain:
            st = BackgroundPing(topo.carol, INTRANET, VIP, seconds, interval).__enter__().join()
        # the last 10 pings (0.2 s) may be in flight when ping's deadline ends it
        st, base = st.trimmed(10), plain.join().trimmed(10)
        rekeys, _ = _rekeys(carol, moon)
        retransmits = sum(p.log.lower().count("retransmit") for p in (carol, moon))
        assert carol.proc is not None and moon.proc is not None
        errors = {**xfrm_errors(carol.proc.pid)}
        for name, value in xfrm_errors(moon.proc.pid).items():
            errors[name] = errors.get(name, 0) + value
        extra, se = st.loss - base.loss, st.loss_se(base)
        print(
            f"\nnetem 50ms/{loss}% both ways, initiate {setup:.1f}s, {seconds}s with CHILD_SA "
            f"rekey every 4s: {rekeys} rekeys, {retransmits} retransmit log lines; tunnel ping "
            f"{st.summary()}; same link outside the tunnel: {base.summary()}; extra loss "
            f"{extra:+.2f} pp (standard error {se:.2f}); {_drops(carol, moon)}"
        )
        assert st.rtt()[0] >= 95.0, f"netem delay not in effect: {st.summary()}"
        assert rekeys >= seconds // 6, f"only {rekeys} CHILD_SA rekeys"
        assert st.sent >= 20 * seconds, f"ping too slow for the bounds: {st.summary()}"
        dropped = sum(errors.values())
        if loss == 0:
            assert errors == {}, f"the kernel dropped packets for want of an SA: {errors}"
            assert st.received == st.sent and base.received == base.sent, st.summary()
        else:
            # rekeys cost less than one percentage point of the pings (issue 11)
            assert 100.0 * dropped / st.sent < 1.0, f"{errors} for {st.sent} pings"
            assert extra < 1.0 + 4 * se, f"extra loss {extra:+.2f} pp, standard error {se:.2f}"
            # and no outage beyond what 1 % random loss makes (P(4 in a row) ~ 2e-7)
            assert st.longest_gap <= 4, st.summary()
        cli_ok(carol, "terminate", "--ike", "home")
        _assert_clean(topo, carol, moon)


@pytest.mark.parametrize("kernel", ["xfrm", "userspace"])
def test_reauthentication_under_ping(
    topo: Topology, peers: tuple[Pqike, Pqike], kernel: str
) -> None:
    """Three make-before-break reauthentications (``rekey --reauth``) under 50 pings/s with
    50 ms delay each way and no loss, on the kernel's and on the userspace data plane: not
    one ping lost, nothing dropped (XFRM error counters; the userspace data plane's drop
    log lines). Before, ESP still arriving on the old SA failed the new inbound policy
    (xfrm, moon: XfrmInTmplMismatch 10) or found its inbound SA removed at once (userspace:
    10 drops for an unknown SPI): a 5-ping outage per reauthentication."""
    carol, moon = peers
    if kernel == "userspace" and (why := ensure_tun()):
        pytest.skip(why)
    for ns in topo.namespaces:
        netem(ns, "eth0", 50, 0.0)
    _configure(carol, moon, kernel)
    level = "1,knl=2,esp=2"  # esp=2: the userspace data plane logs each packet it drops
    with xfrm_daemon(moon, MOON, level, kernel), xfrm_daemon(carol, CAROL, level, kernel):
        cli_ok(carol, "initiate", "--child", "net")
        first = carol.sas()[0]["uniqueid"]
        with BackgroundPing(topo.carol, INTRANET, VIP, seconds=12, interval=0.02) as bg:
            for _ in range(3):
                time.sleep(3.0)
                cli_ok(carol, "rekey", "--ike", "home", "--reauth")
        st = bg.join().trimmed(10)  # the last ones may be in flight at ping's deadline
        assert carol.proc is not None and moon.proc is not None
        drops = {**xfrm_errors(carol.proc.pid), **userspace_drops((carol.log, moon.log))}
        for name, value in xfrm_errors(moon.proc.pid).items():
            drops[name] = drops.get(name, 0) + value
        print(f"\n3 reauthentications ({kernel}) under ping: {st.summary()}; drops {drops}")
        (sa,) = [s for s in carol.sas() if s["state"] == "ESTABLISHED"]
        assert int(sa["uniqueid"]) >= int(first) + 3, "not reauthenticated three times"
        assert drops == {}
        assert st.sent >= 300 and st.received == st.sent, st.summary()
        cli_ok(carol, "terminate", "--ike", "home")
        if kernel == "xfrm":  # (the userspace data plane keeps its rule until it stops)
            _assert_clean(topo, carol, moon)
    assert all(leftovers(ns) == NOTHING for ns in topo.namespaces)


def _drops(carol: Pqike, moon: Pqike) -> str:
    """Kernel XFRM error counters of both namespaces (XfrmInNoStates: ESP that arrived before
    the receiver had installed the inbound SA, i.e. the peer used a new SA too early)."""
    assert carol.proc is not None and moon.proc is not None
    return f"XFRM errors carol {xfrm_errors(carol.proc.pid)} moon {xfrm_errors(moon.proc.pid)}"


_CHILD_REKEYED = re.compile(r"CHILD_SA \S+ rekeyed: ")
_IKE_REKEYED = re.compile(r"IKE_SA \S+ rekeyed between ")


def _rekeys(carol: Pqike, moon: Pqike) -> tuple[int, int]:
    """(CHILD_SA, IKE_SA) rekeys completed, as the more talkative side's log tells."""
    logs = (carol.log, moon.log)
    return (
        max(len(_CHILD_REKEYED.findall(t)) for t in logs),
        max(len(_IKE_REKEYED.findall(t)) for t in logs),
    )
