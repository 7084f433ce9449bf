"""pqike daemons in network namespaces for end-to-end tests, and a netlink snapshot of
what a namespace holds (links, addresses, routes, rules, XFRM state) to prove cleanup."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

from pqike.netns import ns_argv
from tests.exchange.peers import _toml

PSK = "e2e-secret-0123456789abcdef"


def psk_tree(
    role: str,
    sock: Path,
    *,
    proposals: str,
    esp: str,
    kernel: str = "userspace",
    pool: str = "10.3.0.0/24",
    child: dict | None = None,
    ike: dict | None = None,
) -> dict:
    tree: dict = {
        "daemon": {
            "fragment_size": 1480,
            "max_packet": 65535,
            "kernel": kernel,
            "control_socket": str(sock),
        }
    }
    ids = ("carol@strongswan.org", "moon.strongswan.org")
    if role == "carol":
        conn = {
            "remote_addrs": ["192.168.0.2"],
            "vips": ["0.0.0.0"],
            "proposals": [proposals],
            "local": {"auth": "psk", "id": ids[0]},
            "remote": {"auth": "psk", "id": ids[1]},
            "children": {
                "net": {"remote_ts": ["10.1.0.0/16"], "esp_proposals": [esp], **(child or {})}
            },
            **(ike or {}),
        }
        tree["connections"] = {"home": conn}
    else:
        conn = {
            "local_addrs": ["192.168.0.2"],
            "pools": ["rw_pool"],
            "proposals": [proposals],
            "local": {"auth": "psk", "id": ids[1]},
            "remote": {"auth": "psk", "id": ids[0]},
            "children": {
                "net": {"local_ts": ["10.1.0.0/24"], "esp_proposals": [esp], **(child or {})}
            },
            **(ike or {}),
        }
        tree["connections"] = {"rw": conn}
        tree["pools"] = {"rw_pool": {"addrs": pool}}
    tree["secrets"] = {"ike-1": {"id-1": ids[0], "id-2": ids[1], "secret": PSK}}
    return tree


@dataclass
class Pqike:
    name: str
    ns: str
    directory: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "pqike.sock"

    @property
    def log(self) -> str:
        return (self.directory / "daemon.log").read_text(errors="replace")

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pqike", *args, "--socket", str(self.socket)]
        return subprocess.run(
            ns_argv(self.ns, argv), capture_output=True, text=True, timeout=timeout
        )

    def sas(self) -> list[dict]:
        """The IKE_SAs of ``list-sas --json`` (vici's field names, pqike.vici)."""
        out = self.cli("list-sas", "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        return list(json.loads(out.stdout)["ike-sas"].values())

    def write_config(self, tree: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "pqike.toml").write_text(_toml(tree))


@contextlib.contextmanager
def daemon(peer: Pqike, log_level: str = "1") -> Iterator[Pqike]:
    log = open(peer.directory / "daemon.log", "wb")  # noqa: SIM115 - closed below
    argv = [
        sys.executable,
        "-m",
        "pqike",
        "daemon",
        "--config",
        str(peer.directory),
        "-F",
        "--log-level",
        log_level,
    ]
    peer.proc = subprocess.Popen(ns_argv(peer.ns, argv), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not peer.socket.exists():
            if peer.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{peer.name} daemon did not start:\n{peer.log}")
            time.sleep(0.05)
        yield peer
    finally:
        peer.proc.terminate()
        try:
            peer.proc.wait(10)
        except subprocess.TimeoutExpired:
            peer.proc.kill()
            peer.proc.wait()
        log.close()


def snapshot(ns: str, families: tuple[int, ...] = (2, 10)) -> dict[str, list]:
    """Links, addresses, routes (every table but local) and rules of a namespace, via netlink.

    The route dump is not filtered by table: pyroute2 0.9's ``get_routes(table=0)`` returns
    nothing at all. ``families=(2,)``: IPv4 only (where ipv6 is a module loaded on first
    use, as in UML, link-local addresses and routes may appear during a test).
    """
    with IPRoute(netns=ns) as ipr:
        links = sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())
        addrs = sorted(
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for fam in families
            for a in ipr.get_addr(family=fam)
        )
        routes = sorted(
            f"{r.get_attr('RTA_DST') or 'default'}/{r['dst_len']} table {r.get_attr('RTA_TABLE')}"
            for fam in families
            for r in ipr.get_routes(family=fam)
            if r.get_attr("RTA_TABLE") != 255  # local table: follows the addresses
        )
        rules = sorted(
            f"{r['family']} prio {r.get_attr('FRA_PRIORITY')} table {r.get_attr('FRA_TABLE')}"
            for fam in families
            for r in ipr.get_rules(family=fam)
        )
    return {"links": links, "addrs": addrs, "routes": routes, "rules": rules}


def ping(
    ns: str,
    dst: str,
    src: str,
    count: int = 3,
    interval: float = 0.2,
    deadline: float | None = None,
) -> tuple[int, int]:
    """(sent, received) of ping from ``src`` in ``ns``."""
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "1", "-I", src, dst]
    if deadline:
        argv[1:1] = ["-w", str(int(deadline))]
    out = subprocess.run(
        ns_argv(ns, argv),
        capture_output=True,
        text=True,
        timeout=(deadline or count * interval + 5) + 10,
    )
    for line in out.stdout.splitlines():
        if "packets transmitted" in line:
            parts = line.split(",")
            return int(parts[0].split()[0]), int(parts[1].split()[0])
    return count, 0
