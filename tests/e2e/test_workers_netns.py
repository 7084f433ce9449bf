"""daemon.workers = 2 in network namespaces: one responder, two worker processes behind one
control socket. A live pqike initiator's IKE_SA is rekeyed from both ends and terminated by
name through the CLI; then the load generator's 20 handshakes (from four source addresses,
IKE_AUTH on port 4500 behind its NAT-like sockets) land in the worker each source address
is steered to, and list-sas shows every one of them.

With kernel = xfrm the handshakes carry CHILD_SAs: both workers install their SAs and
policies in one kernel, no two clash, and stopping the daemon leaves nothing behind. That
variant needs a kernel with ESP and runs inside user-mode Linux
(tests/uml/e2e/test_workers_xfrm.py calls ``two_workers`` below)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pqike.bench.inmem import PSK
from pqike.bench.interop import ESP
from pqike.bench.loadgen import RESPONDER_ID
from pqike.bench.udpload import pq_responder
from pqike.netns import Topology, add_address, ns_argv, topology
from pqike.partition import address_owner
from tests.e2e.daemons import Pqike, daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

IKE = "aes256-sha256-x25519"
HANDSHAKES = 20
SOURCES = [f"192.168.0.{100 + i}" for i in range(4)]  # two per worker


def _trees(carol: Pqike, moon: Pqike, kernel: str) -> None:
    secrets = {"ike-any": {"secret": PSK}}
    carol.write_config(
        {
            "daemon": {"kernel": "none", "control_socket": str(carol.socket)},
            "connections": {
                "home": {
                    "remote_addrs": ["192.168.0.2"],
                    "proposals": [IKE],
                    "local": {"auth": "psk", "id": "carol@bench.example"},
                    "remote": {"auth": "psk", "id": RESPONDER_ID},
                    "children": {"net": {"remote_ts": ["10.1.0.0/24"], "esp_proposals": [ESP]}},
                }
            },
            "secrets": secrets,
        }
    )
    # as pqike bench load --udp configures it; its --child asks for a virtual IP
    moon_tree = pq_responder(IKE, pool=kernel == "xfrm")
    moon_tree["daemon"].update(kernel=kernel, control_socket=str(moon.socket), workers=2)
    moon.write_config(moon_tree)


def _ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _stats(moon: Pqike) -> dict:
    return json.loads(_ok(moon.cli("stats", "--json")))


def _xfrm(ns: str, what: str) -> list[str]:
    out = subprocess.run(["ip", "-n", ns, "xfrm", what], capture_output=True, text=True)
    return [block for block in _ok(out).split("src ") if block.strip()]


def test_two_workers_behind_one_control_socket(tmp_path: Path) -> None:
    with topology() as topo:
        two_workers(topo, tmp_path, "none")


def two_workers(topo: Topology, tmp_path: Path, kernel: str) -> None:
    """The whole scenario in ``topo`` with moon's ``daemon.kernel`` = ``kernel``."""
    for source in SOURCES:
        add_address(topo.carol, "eth0", f"{source}/24")
    carol = Pqike("carol", topo.carol, tmp_path / "carol")
    moon = Pqike("moon", topo.moon, tmp_path / "moon")
    _trees(carol, moon, kernel)
    with daemon(moon), daemon(carol):
        workers = _stats(moon)["workers"]
        assert [w["index"] for w in workers] == [0, 1]
        assert len({w["pid"] for w in workers}) == 2

        _ok(carol.cli("initiate", "--child", "net"))
        (first,) = moon.sas()
        _ok(moon.cli("rekey", "--ike", "rw"))  # the owning worker initiates it
        _ok(carol.cli("rekey", "--ike", "home"))  # moon's worker answers, new SPIs
        (now,) = moon.sas()
        (seen_by_carol,) = carol.sas()
        assert (now["initiator-spi"], now["responder-spi"]) == (
            seen_by_carol["initiator-spi"],
            seen_by_carol["responder-spi"],
        )
        assert now["responder-spi"] != first["responder-spi"]
        _ok(carol.cli("rekey", "--child", "net"))  # over the IKE_SA moon's rekey made
        _ok(moon.cli("terminate", "--ike", "rw"))
        assert moon.sas() == [] and carol.sas() == []

        argv = [sys.executable, "-m", "pqike.bench.loadgen", "--target", "192.168.0.2"]
        argv += ["--proposal", IKE, "--handshakes", str(HANDSHAKES), "--concurrency", "4"]
        argv += ["--no-wait", "--timeout", "60"]
        argv += [arg for source in SOURCES for arg in ("--source", source)]
        if kernel == "xfrm":
            argv.append("--child")
        run = subprocess.run(ns_argv(topo.carol, argv), capture_output=True, text=True)
        report = json.loads(_ok(run).strip().splitlines()[-1])
        assert report["established"] == HANDSHAKES, report

        sas = moon.sas()
        assert len(sas) == HANDSHAKES
        assert len({sa["initiator-spi"] for sa in sas}) == HANDSHAKES
        assert {int(sa["local-port"]) for sa in sas} == {4500}  # NAT-T after IKE_SA_INIT
        per_worker = [w["ike_sas"] for w in _stats(moon)["workers"]]
        # each IKE_SA in the worker its peer's address is steered to
        steered = [0, 0]
        for sa in sas:
            steered[address_owner(sa["remote-host"], 2)] += 1
        assert per_worker == steered and min(per_worker) > 0, (per_worker, steered)
        # every message reached the worker owning its IKE_SA, the counters of all
        # workers summed: no unknown SPI, each IKE_AUTH answered once
        counters = json.loads(_ok(moon.cli("counters", "--json")))["counters"]["global"]
        assert counters["invalid-spi"] == 0, counters
        assert counters["ike-auth-in-req"] >= HANDSHAKES + 1, counters
        if kernel == "xfrm":
            # an inbound and an outbound SA per CHILD_SA, whichever worker made it; a
            # policy per CHILD_SA and direction (in, out, fwd) for its initiator's virtual
            # IP: the workers lease disjoint shares of the pool, so no policy clashed
            children = sum(len(sa.get("child-sas", {})) for sa in sas)
            assert children == HANDSHAKES, sas
            vips = [vip for sa in sas for vip in sa["remote-vips"]]
            assert len(set(vips)) == len(vips) == HANDSHAKES, vips
            assert len(_xfrm(topo.moon, "state")) == 2 * HANDSHAKES
            policies = [p for p in _xfrm(topo.moon, "policy") if "proto esp" in p]
            assert len(policies) == 3 * HANDSHAKES, policies
    if kernel == "xfrm":
        assert _xfrm(topo.moon, "state") == []
        assert [p for p in _xfrm(topo.moon, "policy") if "proto esp" in p] == []
    assert "Traceback" not in moon.log and "error" not in moon.log.lower(), moon.log
