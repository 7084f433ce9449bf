"""Trap policies against strongSwan 6.1 on a real kernel (inside UML): pqike carol traps
(start_action = trap, dpd_action = trap, ``--kernel xfrm``), charon moon answers with its
kernel-netlink plugin.

- the first ping from carol's inner address hits the trap; the kernel's ACQUIRE starts the
  IKE_SA and CHILD_SA with charon; the later pings pass (pings lost reported);
- charon frozen (SIGSTOP): carol's DPD declares it dead, dpd_action = trap leaves the trap
  catching traffic; charon resumed, the next ping starts a new IKE_SA, which charon accepts
  (INITIAL_CONTACT replaces its stale one); nothing left behind on carol.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from pqike.netns import Topology, add_address
from tests.e2e.daemons import PSK, Pqike, psk_tree
from tests.harness.strongswan import Charon, root_problem
from tests.uml.e2e.common import (
    CAROL,
    ESP,
    IKE,
    INTRANET,
    MOON,
    NOTHING,
    kernel_errors,
    leftovers,
    ping,
    xfrm_daemon,
    xfrm_state,
)

INNER = "10.3.0.1"

MOON_CONF = f"""
connections {{
  rw {{
    local_addrs = {MOON}
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
        remote_ts = {INNER}/32
        esp_proposals = {ESP}
      }}
    }}
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
    moon = Charon("moon", topo.moon, MOON_CONF, tmp_path / "charon-moon", libipsec=False,
                  log_levels={"default": 1, "ike": 1, "cfg": 1, "knl": 1})  # fmt: skip
    moon.start(timeout=60)
    moon.load_all()
    try:
        yield moon
    finally:
        moon.stop()


def _wait(cond, timeout: float = 40.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := cond()) and time.monotonic() < deadline:
        time.sleep(0.3)
    return value


def _first_pings(topo: Topology, what: str) -> tuple[int, int]:
    st = ping(topo.carol, INTRANET, INNER, count=10, interval=0.2, deadline=6)
    print(f"\n{what}: {st.sent} pings, {st.sent - st.received} lost before the tunnel was "
          f"up (unanswered {' '.join(st.missing_at())})")  # fmt: skip
    return st.sent, st.received


def test_trap_and_dpd_action_trap_with_charon(
    topo: Topology, charon_moon: Charon, tmp_path: Path
) -> None:
    moon = charon_moon
    add_address(topo.carol, "lo", f"{INNER}/32")
    carol = Pqike("carol", topo.carol, tmp_path / "carol")
    tree = psk_tree("carol", carol.socket, proposals=IKE, esp=ESP, kernel="xfrm",
                    child={"local_ts": [f"{INNER}/32"], "remote_ts": ["10.1.0.0/24"],
                           "start_action": "trap", "dpd_action": "trap"},
                    ike={"vips": [], "local_addrs": [CAROL], "dpd_delay": "2s"})  # fmt: skip
    tree["daemon"].update(retransmit_tries=2, retransmit_timeout=1.0)
    carol.write_config(tree)
    with xfrm_daemon(carol, CAROL):
        assert _wait(lambda: xfrm_state(topo.carol)[1], 20), carol.log
        assert moon.list_sas() == []
        sent, received = _first_pings(topo, "start_action=trap, pqike (xfrm) -> charon")
        assert received >= sent - 2 and received > 0, carol.log[-4000:]
        (sa,) = carol.sas()
        (ssa,) = moon.list_sas()
        assert (ssa.initiator_spi, ssa.responder_spi) == (sa["initiator-spi"], sa["responder-spi"])
        (child,) = sa["child-sas"].values()
        (schild,) = ssa.children
        assert (schild.spi_in, schild.spi_out) == (child["spi-out"], child["spi-in"])
        assert "received XFRM ACQUIRE for reqid 1" in carol.log and child["reqid"] == 1

        assert moon.pid is not None
        os.killpg(moon.pid, signal.SIGSTOP)  # charon stops answering
        try:
            assert _wait(lambda: carol.sas() == []), carol.log[-3000:]
            assert [(p.dst, p.dir) for p in xfrm_state(topo.carol)[1]] == [("10.1.0.0/24", "out")]
            assert xfrm_state(topo.carol)[0] == []
        finally:
            os.killpg(moon.pid, signal.SIGCONT)
        sent, received = _first_pings(topo, "dpd_action=trap, after charon was dead")
        assert received >= sent - 3 and received > 0, carol.log[-4000:]
        (sa2,) = carol.sas()
        assert sa2["initiator-spi"] != sa["initiator-spi"]
        new_spi = sa2["initiator-spi"]
        assert _wait(lambda: [s.initiator_spi for s in moon.list_sas()] == [new_spi], 15)
    assert leftovers(topo.carol) == NOTHING
    assert not kernel_errors(carol.log), "\n".join(kernel_errors(carol.log))
