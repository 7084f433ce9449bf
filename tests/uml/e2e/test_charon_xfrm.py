"""pqike (carol, initiator, ``--kernel xfrm``) <-> strongSwan 6.1 charon (moon, responder,
kernel-netlink): real kernel SAs on both sides, inside UML.

charon comes from the Debian sid root (scripts/strongswan-root.sh, /var/cache/pqike/
strongswan-sid); the guest sees it read-only through hostfs under its tmpfs overlay, and
tests.harness.strongswan.Charon runs it there unchanged (private mount namespace, /proc and
/dev mounted into the root, the instance directory bound onto ROOT/run).

PSK, hybrid x25519 + ML-KEM-768 for IKE and for the CHILD_SA (PFS), a virtual IP from
charon's pool; ping 10.1.0.1 (moon's intranet) from the VIP, CHILD_SA and IKE_SA rekeyed by
pqike under ping, terminate: neither side leaves SAs, policies or routes behind.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pqike.netns import Topology
from tests.e2e.daemons import PSK, Pqike, psk_tree
from tests.harness.strongswan import Charon, root_problem
from tests.uml.e2e.common import (
    CAROL,
    ESP,
    IKE,
    INTRANET,
    MOON,
    NOTHING,
    BackgroundPing,
    cli_ok,
    kernel_errors,
    leftovers,
    ping,
    xfrm_daemon,
    xfrm_errors,
    xfrm_state,
)

VIP = "10.3.0.1"

MOON_CONF = f"""
connections {{
  rw {{
    local_addrs = {MOON}
    pools = rw_pool
    version = 2
    proposals = {IKE}
    local {{
      auth = psk
      id = moon.strongswan.org
    }}
    remote {{
      auth = psk
      id = carol@strongswan.org
    }}
    children {{
      net {{
        local_ts = 10.1.0.0/24
        esp_proposals = {ESP}
      }}
    }}
  }}
}}
pools {{
  rw_pool {{
    addrs = 10.3.0.0/24
  }}
}}
secrets {{
  ike-1 {{
    id-1 = moon.strongswan.org
    id-2 = carol@strongswan.org
    secret = "{PSK}"
  }}
}}
"""


@pytest.fixture
def charon_moon(topo: Topology, tmp_path: Path):  # type: ignore[no-untyped-def]
    problem = root_problem()
    if problem:
        pytest.skip(problem)
    moon = Charon(
        "moon",
        topo.moon,
        MOON_CONF,
        tmp_path / "charon-moon",
        libipsec=False,  # kernel-netlink: charon's SAs and policies go into the kernel
        log_levels={"default": 1, "ike": 1, "cfg": 1, "knl": 2},
    )
    t0 = time.monotonic()
    moon.start(timeout=60)
    moon.load_all()
    print(f"\ncharon (kernel-netlink) up in UML in {time.monotonic() - t0:.1f}s")
    try:
        yield moon
    finally:
        moon.stop()


def test_pqike_xfrm_with_charon_kernel_netlink(
    topo: Topology, charon_moon: Charon, tmp_path: Path
) -> None:
    moon = charon_moon
    carol = Pqike("carol", topo.carol, tmp_path / "carol")
    carol.write_config(psk_tree("carol", carol.socket, proposals=IKE, esp=ESP, kernel="xfrm"))
    with xfrm_daemon(carol, CAROL):
        t0 = time.monotonic()
        cli_ok(carol, "initiate", "--child", "net")
        setup = time.monotonic() - t0
        st = ping(topo.carol, INTRANET, VIP, count=5)
        assert (st.sent, st.received) == (5, 5), st.output + moon.log_text()[-3000:]
        print(f"initiate {setup:.1f}s; ping pqike -> charon: {st.summary()}")

        (sa,) = carol.sas()
        (child,) = sa["child-sas"].values()
        (ssa,) = moon.list_sas()
        assert ssa.state == "ESTABLISHED" and not ssa.initiator
        assert (ssa.initiator_spi, ssa.responder_spi) == (sa["initiator-spi"], sa["responder-spi"])
        assert ssa.vips == [VIP] and sa["local-vips"] == [VIP]
        (schild,) = ssa.children
        assert schild.state == "INSTALLED" and schild.mode == "TUNNEL"
        assert (schild.spi_in, schild.spi_out) == (child["spi-out"], child["spi-in"])
        assert schild.algorithms == ["AES_GCM_16_256"]  # IKE_AUTH's CHILD_SA: no KE of its own
        assert schild.raw.get("encap") != "yes" and not child["encap"]

        # both sides' SAs are the kernel's: charon's inbound SA counted carol's outbound packets
        c_sas = {s.spi: s for s in xfrm_state(topo.carol)[0]}
        m_sas = {s.spi: s for s in xfrm_state(topo.moon)[0]}
        assert set(c_sas) == set(m_sas) == {child["spi-in"], child["spi-out"]}
        out = c_sas[child["spi-out"]]
        assert out.packets >= 5 and m_sas[child["spi-out"]].packets == out.packets
        assert child["packets-out"] == out.packets
        assert int(schild.raw["packets-in"]) == out.packets
        assert {p.dir for p in xfrm_state(topo.moon)[1]} == {"in", "out", "fwd"}

        # pqike rekeys the CHILD_SA, then the IKE_SA, while ping runs
        timings = []
        with BackgroundPing(topo.carol, INTRANET, VIP, seconds=10) as bg:
            time.sleep(1.5)
            for args in (("--child", "net"), ("--ike", "home")):
                t0 = time.monotonic()
                cli_ok(carol, "rekey", *args)
                timings.append(f"{args[0][2:]} {time.monotonic() - t0:.1f}s")
                time.sleep(2)
        pst = bg.join()
        assert carol.proc is not None and moon.pid is not None
        drops = f"XFRM errors carol {xfrm_errors(carol.proc.pid)} moon {xfrm_errors(moon.pid)}"
        print(f"rekeys with charon ({', '.join(timings)}) under ping: {pst.summary()}; {drops}")
        (sa2,) = carol.sas()
        (ssa2,) = moon.list_sas()
        assert sa2["initiator-spi"] != sa["initiator-spi"]
        assert (ssa2.initiator_spi, ssa2.responder_spi) == (
            sa2["initiator-spi"],
            sa2["responder-spi"],
        )
        (child2,) = [c for c in sa2["child-sas"].values() if c["state"] == "INSTALLED"]
        (schild2,) = [c for c in ssa2.children if c.state == "INSTALLED"]
        assert (schild2.spi_in, schild2.spi_out) == (child2["spi-out"], child2["spi-in"])
        assert child2["spi-in"] != child["spi-in"]
        # the rekeyed CHILD_SA ran the hybrid PFS key exchanges (x25519, then ML-KEM-768)
        assert schild2.algorithms[-2:] == ["CURVE_25519", "KE1_ML_KEM_768"], schild2.algorithms
        deadline = time.monotonic() + 15
        # both keep a rekeyed CHILD_SA's inbound SA for delete_rekeyed_delay (5 s)
        while time.monotonic() < deadline and any(
            len(xfrm_state(ns)[0]) != 2 for ns in (topo.moon, topo.carol)
        ):
            time.sleep(0.3)
        assert {s.spi for s in xfrm_state(topo.moon)[0]} == {child2["spi-in"], child2["spi-out"]}
        assert {s.spi for s in xfrm_state(topo.carol)[0]} == {child2["spi-in"], child2["spi-out"]}
        assert pst.loss <= 2.0, pst.summary()
        assert ping(topo.carol, INTRANET, VIP).received == 3

        cli_ok(carol, "terminate", "--ike", "home")
        assert carol.sas() == []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and moon.list_sas():
            time.sleep(0.2)
        assert moon.list_sas() == []
        assert leftovers(topo.carol) == NOTHING
        assert not kernel_errors(carol.log), "\n".join(kernel_errors(carol.log))
        left = leftovers(topo.moon)
        # charon keeps its "from all lookup 220" rule while it runs
        assert {k: v for k, v in left.items() if k != "rules220"} == {
            k: v for k, v in NOTHING.items() if k != "rules220"
        }, left
    moon.stop()
    assert leftovers(topo.moon) == NOTHING
