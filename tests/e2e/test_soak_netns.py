"""Soak in network namespaces: pqike <-> pqike (userspace ESP) rekeying both CHILD_SAs and
the IKE_SA every few seconds while nftables drops a share of all IKE and ESP-in-UDP
packets at random (``numgen random``: this kernel has no netem). Afterwards both ends
agree on every SPI, traffic flows, and nothing leaked."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest

from pqike.kernel.tun import tun_available
from pqike.netns import ns_argv, topology
from tests.e2e.daemons import Pqike, daemon, ping, psk_tree, snapshot

IKE = "aes256-sha256-x25519-ke1_mlkem768"
ESP = "aes256gcm16-x25519"


def _skip() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, TUN, nftables)"
    if (why := tun_available()) is not None:
        return why
    for tool in ("ping", "nsenter", "nft"):
        if shutil.which(tool) is None:
            return f"needs {tool} (make test installs it as root)"
    return None


pytestmark = pytest.mark.skipif(_skip() is not None, reason=_skip() or "")


def _loss(ns: str, percent: int) -> None:
    rules = f"""
table inet pqike_loss {{
  chain out {{ type filter hook output priority 0;
    udp dport {{ 500, 4500 }} numgen random mod 100 < {percent} drop; }}
  chain in {{ type filter hook input priority 0;
    udp sport {{ 500, 4500 }} numgen random mod 100 < {percent} drop; }}
}}
"""
    subprocess.run(ns_argv(ns, ["nft", "-f", "-"]), input=rules, text=True, check=True)


def _no_loss(ns: str) -> None:
    subprocess.run(ns_argv(ns, ["nft", "delete", "table", "inet", "pqike_loss"]), check=False)


def test_rekey_soak_with_random_loss(tmp_path) -> None:  # type: ignore[no-untyped-def]
    seconds = int(os.environ.get("PQIKE_NETNS_SOAK_SECONDS", "40"))
    percent = int(os.environ.get("PQIKE_NETNS_SOAK_LOSS", "5"))
    child = {"rekey_time": "5s", "life_time": "20s", "rand_time": "1s"}
    ike = {"rekey_time": "13s", "over_time": "15s", "rand_time": "2s"}
    with topology() as topo:
        before = {ns: snapshot(ns) for ns in topo.namespaces}
        carol = Pqike("carol", topo.carol, tmp_path / "carol")
        moon = Pqike("moon", topo.moon, tmp_path / "moon")
        carol.write_config(
            psk_tree("carol", carol.socket, proposals=IKE, esp=ESP, child=child, ike=ike)
        )
        moon.write_config(
            psk_tree("moon", moon.socket, proposals=IKE, esp=ESP, child=child, ike=ike)
        )
        with daemon(moon), daemon(carol):
            assert carol.cli("initiate", "--child", "net").returncode == 0
            _loss(topo.carol, percent)
            result: dict[str, tuple[int, int]] = {}
            t = threading.Thread(
                target=lambda: result.__setitem__(
                    "ping",
                    ping(
                        topo.carol,
                        "10.1.0.1",
                        "10.3.0.1",
                        count=seconds * 5,
                        interval=0.2,
                        deadline=seconds + 5,
                    ),
                )
            )
            t.start()
            t.join(seconds + 30)
            _no_loss(topo.carol)
            time.sleep(8)  # let retransmissions and pending DELETEs finish on a clean link
            sent, received = result["ping"]
            c_sas = [s for s in carol.sas() if s["state"] == "ESTABLISHED"]
            m_sas = [s for s in moon.sas() if s["state"] == "ESTABLISHED"]
            child_rekeys = carol.log.count("rekeyed: net{")
            ike_rekeys = carol.log.count("rekeyed between")
            print(
                f"\nnetns soak {seconds}s at {percent}% loss each way: {child_rekeys} CHILD_SA "
                f"and {ike_rekeys} IKE_SA rekeys seen by carol; ping {received}/{sent}"
            )
            assert len(c_sas) == len(m_sas) == 1
            (c,), (m,) = c_sas, m_sas
            assert (c["initiator-spi"], c["responder-spi"]) == (
                m["initiator-spi"],
                m["responder-spi"],
            )
            ci = {
                (x["spi-in"], x["spi-out"])
                for x in c["child-sas"].values()
                if x["state"] == "INSTALLED"
            }
            mi = {
                (x["spi-out"], x["spi-in"])
                for x in m["child-sas"].values()
                if x["state"] == "INSTALLED"
            }
            assert ci == mi and ci
            assert ping(topo.carol, "10.1.0.1", "10.3.0.1") == (3, 3)
            assert child_rekeys >= seconds // 10 and ike_rekeys >= 1
            assert carol.cli("terminate", "--ike", "home").returncode == 0
        after = {ns: snapshot(ns) for ns in topo.namespaces}
        assert after == before
