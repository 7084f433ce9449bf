"""Two sans-IO engines wired back to back in memory, with a controllable 'network'."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pqike.config import Config, load_config
from pqike.config.toml_writer import dumps as _toml
from pqike.engine import Engine
from pqike.events import Datagram, Event
from pqike.kernel.base import KernelSa, MemoryKernel

CAROL, MOON = "192.168.0.3", "192.168.0.2"
PSK = "qwerty-psk-0123456789"


def load_tree(tree: dict) -> Config:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "pqike.toml"
        path.write_text(_toml(tree))
        return load_config(path)


def psk_config(
    role: str,
    proposals: str,
    esp: str = "aes256-sha256",
    *,
    fragment_size: int = 1480,
    extra_daemon: dict | None = None,
    psk: str = PSK,
    vips: bool = True,
    moon_proposals: str | None = None,
    moon_esp: str | None = None,
    host_esp: str | None = None,
    moon_host_esp: str | None = None,
    child_extra: dict | None = None,
    conn_extra: dict | None = None,
) -> Config:
    daemon = {
        "fragment_size": fragment_size,
        "max_packet": 65535,
        "control_socket": "/tmp/x",
        **(extra_daemon or {}),
    }
    if role == "carol":
        conn = {
            "home": {
                "remote_addrs": [MOON],
                "local_addrs": [CAROL],
                "vips": ["0.0.0.0"] if vips else [],
                "proposals": [proposals],
                "local": {"auth": "psk", "id": "carol@strongswan.org"},
                "remote": {"auth": "psk", "id": "moon.strongswan.org"},
                "children": {
                    "net": {
                        "remote_ts": ["10.1.0.0/16"],
                        "esp_proposals": [esp],
                        **(child_extra or {}),
                    }
                },
            }
        }
        if host_esp:
            conn["home"]["children"]["host"] = {"esp_proposals": [host_esp]}
        pools: dict = {}
    else:
        conn = {
            "rw": {
                "local_addrs": [MOON],
                "pools": ["rw_pool"] if vips else [],
                "proposals": [moon_proposals or proposals],
                "local": {"auth": "psk", "id": "moon.strongswan.org"},
                "remote": {"auth": "psk", "id": "carol@strongswan.org"},
                "children": {
                    "net": {
                        "local_ts": ["10.1.0.0/24"],
                        "esp_proposals": [moon_esp or esp],
                        **(child_extra or {}),
                    }
                },
            }
        }
        if host_esp or moon_host_esp:
            conn["rw"]["children"]["host"] = {"esp_proposals": [moon_host_esp or host_esp]}
        pools = {"rw_pool": {"addrs": "10.3.0.0/24"}} if vips else {}
    for c in conn.values():
        c.update(conn_extra or {})
    secrets = {
        "ike-1": {"id-1": "moon.strongswan.org", "id-2": "carol@strongswan.org", "secret": psk}
    }
    tree = {"daemon": daemon, "connections": conn, "pools": pools, "secrets": secrets}
    return load_tree(tree)


@dataclass
class Peer:
    name: str
    engine: Engine
    kernel: MemoryKernel
    events: list[Event] = field(default_factory=list)


@dataclass
class Net:
    """Delivers datagrams between peers; ``filter`` may drop/duplicate/reorder them."""

    peers: dict[str, Peer]
    now: float = 0.0
    log: list[Datagram] = field(default_factory=list)
    filter: Callable[[Datagram], list[Datagram]] | None = None

    def run(self, max_rounds: int = 200) -> None:
        for _ in range(max_rounds):
            moved = False
            for p in self.peers.values():
                for d in p.engine.pop_outgoing():
                    moved = True
                    self.log.append(d)
                    for out in self.filter(d) if self.filter else [d]:
                        target = next(
                            q
                            for q in self.peers.values()
                            if q.engine.config.connections and _owns(q, out.dst.host)
                        )
                        target.engine.receive(out, self.now)
            if not moved:
                return

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for p in self.peers.values():
            p.engine.tick(self.now)
        self.run()


def kept_inbound(peer: Peer) -> set[tuple[int, str]]:
    """(SPI, dst) of the inbound SAs of replaced CHILD_SAs that ``peer`` keeps for
    delete_rekeyed_delay (pqike.tasks.child_create.retire_rekeyed)."""
    return {(spi, dst) for sa in peer.engine.sas.values() for _, spi, dst in sa.rekeyed_inbound}


def current_sas(peer: Peer) -> dict[tuple[int, str], KernelSa]:
    """The kernel SAs of ``peer`` without the kept inbound SAs of replaced CHILD_SAs."""
    kept = kept_inbound(peer)
    assert all(peer.kernel.sas[k].inbound for k in kept), "only inbound SAs are kept"
    return {k: v for k, v in peer.kernel.sas.items() if k not in kept}


def _owns(peer: Peer, host: str) -> bool:
    return host == (CAROL if peer.name == "carol" else MOON)


def make_pair(carol_cfg: Config, moon_cfg: Config) -> Net:
    peers = {}
    for name, cfg in (("carol", carol_cfg), ("moon", moon_cfg)):
        kernel = MemoryKernel()
        events: list[Event] = []
        eng = Engine(cfg, kernel, events=events.append, source_for=lambda r: CAROL)
        peers[name] = Peer(name, eng, kernel, events)
    return Net(peers)


def cert_configs(
    tmp: Path,
    proposals: str,
    esp: str = "aes256-sha256",
    *,
    kind: str = "mldsa87",
    ca_kind: str | None = None,
    fragment_size: int = 1480,
    extra_daemon: dict | None = None,
    side_daemon: dict[str, dict] | None = None,
) -> tuple[Config, Config]:
    """carol/moon with public key authentication under one CA, files written to ``tmp``;
    ``side_daemon``: further daemon options of one side ({"moon": {"rsa_pss": True}})."""
    from pqike.pki import create_peer_pki

    dirs = {
        "carol": (tmp / "carol", "carol@strongswan.org"),
        "moon": (tmp / "moon", "moon.strongswan.org"),
    }
    create_peer_pki(dirs, kind=kind, ca_kind=ca_kind)
    daemon = {
        "fragment_size": fragment_size,
        "max_packet": 65535,
        "control_socket": "/tmp/x",
        **(extra_daemon or {}),
    }
    carol = {
        "daemon": daemon,
        "authorities": {"ca": {"cacert": "x509ca/caCert.pem"}},
        "connections": {
            "home": {
                "remote_addrs": [MOON],
                "local_addrs": [CAROL],
                "vips": ["0.0.0.0"],
                "proposals": [proposals],
                "local": {
                    "auth": "pubkey",
                    "id": "carol@strongswan.org",
                    "certs": ["x509/carolCert.pem"],
                    "key": "private/carolKey.pem",
                },
                "remote": {"auth": "pubkey", "id": "moon.strongswan.org"},
                "children": {"net": {"remote_ts": ["10.1.0.0/16"], "esp_proposals": [esp]}},
            }
        },
    }
    moon = {
        "daemon": daemon,
        "connections": {
            "rw": {
                "local_addrs": [MOON],
                "pools": ["rw_pool"],
                "proposals": [proposals],
                "local": {
                    "auth": "pubkey",
                    "id": "moon.strongswan.org",
                    "certs": ["x509/moonCert.pem"],
                    "key": "private/moonKey.pem",
                },
                "remote": {"auth": "pubkey", "cacerts": ["x509ca/caCert.pem"]},
                "children": {"net": {"local_ts": ["10.1.0.0/24"], "esp_proposals": [esp]}},
            }
        },
        "pools": {"rw_pool": {"addrs": "10.3.0.0/24"}},
    }
    out = []
    for name, tree in (("carol", carol), ("moon", moon)):
        tree["daemon"] = {**daemon, **(side_daemon or {}).get(name, {})}
        path = tmp / name / "pqike.toml"
        path.write_text(_toml(tree))
        out.append(load_config(path))
    return out[0], out[1]
