"""pqike <-> pq-strongswan (strongSwan 6.0.0beta6 + oqs plugin, the system of the reference
walkthrough 004), PSK authentication, fragment_size 1480, both sides sending strongSwan's
vendor ID as in the walkthrough's strongswan.conf (send_vendor_id = yes):

- the walkthrough: IKE_SA x25519 + Kyber-L3 + BIKE-L3 + HQC-L3 with child ``net`` (the same
  four as PFS), then child ``host`` (MODP-3072 + FrodoKEM-AES-L3 + BIKE-L3), rekeys of both
  children and of the IKE_SA from either side, ping through each child after each step
  (pqike's userspace ESP against kernel-libipsec), in both roles and between two
  pq-strongswans; every message's size and fragment count from the senders' logs, printed as
  "SIZES" lines (pytest -s) and compared with pq-strongswan's own;
- each of the 15 private-use methods (IDs 1080-1094) as ADDKE1 after x25519, both roles,
  one pair of daemons per role (one connection per method on the initiator);
- pq-strongswan's stock behaviour against a peer without its vendor ID (the failure of
  issue 9): private-use methods skipped, NO_PROPOSAL_CHOSEN / "peer's proposal selection
  invalid".

Needs root, scripts/pq-strongswan.sh's build and liboqs for pqike (OQS_INSTALL_PATH).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kem.ids import KEYWORDS
from pqike.wire.iana import PRIVATE_USE
from tests.harness import netns as nsh
from tests.harness.pq_strongswan import PqCharon, prefix_dir, prefix_problem
from tests.harness.strongswan import CharonLog, charon_pids, leaked_mounts
from tests.interop.pqike_peer import PqikePeer

pytestmark = pytest.mark.interop

PSK = "qwerty-psk-0123456789"
CAROL_ID, MOON_ID = "carol@strongswan.org", "moon.strongswan.org"
WALK_IKE = "aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3"
NET_ESP = WALK_IKE  # the walkthrough's net child rekeys with the same four methods
HOST_ESP = "aes256-sha256-modp3072-ke1_frodoa3-ke2_bike3"
# one host behind moon (the walkthrough's host child is moon's own outer address, which
# kernel-libipsec on carol refuses to route: "conflicts with IKE traffic")
HOST_TS = "10.2.0.1/32"
VIP = "10.3.0.1"
FRAGMENT_SIZE, MAX_PACKET = 1480, 30000  # the walkthrough's strongswan.conf
# the 15 methods of pq-strongswan's oqs plugin: every private-use keyword of the registry
PRIVATE = [word for word, method in KEYWORDS.items() if method >= PRIVATE_USE]
PAIRINGS = ("pqike-initiator", "pqike-responder")  # pqike as carol / as moon
SKIPPED = "an algorithm from private space would match, but peer implementation is unknown"


# --------------------------------------------------------------------------- environment


def pq_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "not root: interop tests need network namespaces and mounts"
    if problem := prefix_problem():
        return problem
    from kem import registry

    unavailable = [m for m in PRIVATE if not registry.by_keyword(m).available]
    if unavailable:
        m = registry.by_keyword(unavailable[0])
        return f"pqike lacks {', '.join(unavailable)}: {m.unavailable_reason}"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun: kernel-libipsec and pqike's userspace ESP need a TUN device"
    for tool in ("nsenter", "unshare", "mount", "ping"):
        if not shutil.which(tool):
            return f"{tool} missing"
    return None


@pytest.fixture(scope="module")
def pq_env() -> Path:
    if reason := pq_skip_reason():
        pytest.skip(reason)
    nsh.remove_stale()
    return prefix_dir()


@contextlib.contextmanager
def pq_topology() -> Iterator[nsh.Topology]:
    """carol <-> moon; moon has the net (10.1.0.1/24) and the host (10.2.0.1) behind it."""
    with nsh.topology() as t:
        nsh.add_address(t.moon, "intranet", HOST_TS)
        yield t
        leftovers = {ns: nsh.ns_pids(ns) for ns in t.namespaces}
    assert not any(leftovers.values()), f"processes left in namespaces: {leftovers}"


class Daemons:
    """Starts pq-strongswan charons and pqike daemons in a topology; stops all at the end
    and checks that nothing is left behind."""

    def __init__(self, topo: nsh.Topology, workdir: Path, prefix: Path) -> None:
        self.topo, self.workdir, self.prefix = topo, workdir, prefix
        self.started: list[PqCharon | PqikePeer] = []

    def ns(self, who: str) -> str:
        return self.topo.carol if who == "carol" else self.topo.moon

    def charon(
        self, who: str, conf: str, tag: str = "", files: dict[str, bytes] | None = None
    ) -> PqCharon:
        c = PqCharon(
            who,
            self.ns(who),
            conf,
            self.workdir / f"ss-{who}{tag}",
            root=self.prefix,
            fragment_size=FRAGMENT_SIZE,
            max_packet=MAX_PACKET,
            options={"send_vendor_id": True},
            files=files,
        )
        self.started.append(c)
        c.start()
        c.load_all()
        return c

    def pqike(
        self,
        who: str,
        tree: dict[str, Any],
        kernel: str,
        tag: str = "",
        files: dict[str, bytes] | None = None,
    ) -> PqikePeer:
        addr = self.topo.carol_addr if who == "carol" else self.topo.moon_addr
        workdir = self.workdir / f"pq-{who}{tag}"
        p = PqikePeer(who, self.ns(who), tree, workdir, listen=addr, kernel=kernel, files=files)
        self.started.append(p)
        return p.start()

    def stop(self) -> None:
        pids = [d.pid for d in self.started if isinstance(d, PqCharon)]
        for d in self.started:
            d.stop()
        assert not leaked_mounts(self.prefix), leaked_mounts(self.prefix)
        assert not set(pids) & set(charon_pids()), "charon processes left"


@contextlib.contextmanager
def daemons(workdir: Path, prefix: Path) -> Iterator[Daemons]:
    with pq_topology() as topo:
        d = Daemons(topo, workdir, prefix)
        try:
            yield d
        finally:
            d.stop()


# --------------------------------------------------------------------------- configurations


def swanctl_conf(
    who: str,
    conns: dict[str, str],
    esp: str = "aes256-sha256",
    host_esp: str | None = None,
    auth: str = "psk",
) -> str:
    """swanctl.conf for carol (one connection per entry, VIP) or moon (pool); ``auth``
    "pubkey": WHOCert.pem (x509/) and its key, moon trusting caCert.pem (x509ca/), as in the
    reference."""
    carol = who == "carol"
    local_id, remote_id = (CAROL_ID, MOON_ID) if carol else (MOON_ID, CAROL_ID)
    local, remote = f"auth = psk\n id = {local_id}", f"auth = psk\n id = {remote_id}"
    if auth == "pubkey":
        local = f"auth = pubkey\n id = {local_id}\n certs = {who}Cert.pem"
        remote = f"auth = pubkey\n id = {remote_id}" + ("" if carol else "\n cacerts = caCert.pem")
    side = "remote_ts" if carol else "local_ts"
    where = "remote_addrs = 192.168.0.2\n vips = 0.0.0.0" if carol else "pools = rw_pool"
    host = f"host {{ {side} = {HOST_TS}\n esp_proposals = {host_esp} }}" if host_esp else ""
    blocks = [
        f"""  {name} {{
    {where}
    version = 2
    proposals = {proposal}
    local {{ {local} }}
    remote {{ {remote} }}
    children {{
      net {{ {side} = 10.1.0.0/24\n esp_proposals = {esp} }}
      {host}
    }}
  }}"""
        for name, proposal in conns.items()
    ]
    conf = "connections {\n" + "\n".join(blocks) + "\n}\n"
    if not carol:
        conf += "pools { rw_pool { addrs = 10.3.0.0/24 } }\n"
    if auth == "pubkey":
        return conf
    ids = f"id-1 = {MOON_ID}\n id-2 = {CAROL_ID}"
    return conf + f'secrets {{ ike-1 {{ {ids}\n secret = "{PSK}" }} }}\n'


def pqike_tree(
    who: str,
    conns: dict[str, str],
    esp: str = "aes256-sha256",
    host_esp: str | None = None,
    send_vendor_id: bool = True,
    auth: str = "psk",
) -> dict[str, Any]:
    """The same as a pqike configuration tree (``auth`` "pubkey": x509/WHOCert.pem and
    private/WHOKey.pem, the peer checked against x509ca/caCert.pem)."""
    carol = who == "carol"
    local_id, remote_id = (CAROL_ID, MOON_ID) if carol else (MOON_ID, CAROL_ID)
    side = "remote_ts" if carol else "local_ts"
    connections: dict[str, Any] = {}
    for name, proposal in conns.items():
        children: dict[str, Any] = {"net": {side: ["10.1.0.0/24"], "esp_proposals": [esp]}}
        if host_esp:
            children["host"] = {side: [HOST_TS], "esp_proposals": [host_esp]}
        conn: dict[str, Any] = {
            "proposals": [proposal],
            "local": {"auth": "psk", "id": local_id},
            "remote": {"auth": "psk", "id": remote_id},
            "children": children,
        }
        if auth == "pubkey":
            key = {"certs": [f"x509/{who}Cert.pem"], "key": f"private/{who}Key.pem"}
            conn["local"] = {"auth": "pubkey", "id": local_id, **key}
            conn["remote"] = {"auth": "pubkey", "id": remote_id, "cacerts": ["x509ca/caCert.pem"]}
        if carol:
            conn |= {"remote_addrs": ["192.168.0.2"], "local_addrs": ["192.168.0.3"]}
            conn["vips"] = ["0.0.0.0"]
        else:
            conn |= {"local_addrs": ["192.168.0.2"], "pools": ["rw_pool"]}
        connections[name] = conn
    tree: dict[str, Any] = {
        "daemon": {
            "fragment_size": FRAGMENT_SIZE,
            "max_packet": MAX_PACKET,
            "send_vendor_id": send_vendor_id,
        },
        "connections": connections,
    }
    if auth == "psk":
        tree["secrets"] = {"ike-1": {"id-1": MOON_ID, "id-2": CAROL_ID, "secret": PSK}}
    if not carol:
        tree["pools"] = {"rw_pool": {"addrs": "10.3.0.0/24"}}
    return tree


# --------------------------------------------------------------------------- both kinds of peer


@dataclass(frozen=True)
class Snap:
    """An IKE_SA as one end sees it, settled (one ESTABLISHED IKE_SA, one INSTALLED
    CHILD_SA per name): SPIs, proposal, children name -> (spi_in, spi_out, algorithms)."""

    spis: tuple[str, str]
    proposal: str
    children: dict[str, tuple[str, str, tuple[str, ...]]]


def snapshot(peer: PqCharon | PqikePeer) -> Snap | None:
    if isinstance(peer, PqikePeer):
        sas = [s for s in peer.list_sas() if s.state == "ESTABLISHED"]
        if len(sas) != 1 or any(c.state != "INSTALLED" for c in sas[0].children):
            return None
        (sa,) = sas
        kids = {
            c.name: (c.spi_in, c.spi_out, _esp_algs(c.proposal.partition(":")[2]))
            for c in sa.children
        }
        if len(kids) != len(sa.children):
            return None
        return Snap((sa.spi_i, sa.spi_r), sa.proposal, kids)
    sas = [s for s in peer.list_sas() if s.state == "ESTABLISHED"]
    if len(sas) != 1:
        return None
    (ss,) = sas
    # charon keeps a rekeyed CHILD_SA's inbound SA a few seconds (not INSTALLED)
    installed = [c for c in ss.children if c.state == "INSTALLED"]
    kids = {c.name: (c.spi_in, c.spi_out, tuple(c.algorithms)) for c in installed}
    if len(kids) != len(installed):
        return None
    return Snap(ss.spis, f"IKE:{ss.proposal}", kids)


def _esp_algs(text: str) -> tuple[str, ...]:
    return tuple(a for a in text.split("/") if a and a != "NO_EXT_SEQ")


def agreed(carol: PqCharon | PqikePeer, moon: PqCharon | PqikePeer) -> Snap | None:
    """carol's snapshot if both ends are settled and agree on everything."""
    c, m = snapshot(carol), snapshot(moon)
    if c is None or m is None or c.spis != m.spis or c.proposal != m.proposal:
        return None
    mirrored = {n: (o, i, a) for n, (i, o, a) in m.children.items()}
    return c if c.children == mirrored else None


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if found := check():
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout}s")
        time.sleep(0.1)


def initiate(peer: PqCharon | PqikePeer, child: str, ike: str) -> None:
    r = peer.initiate(child=child, ike=ike, timeout=30)
    assert r.ok, f"{peer.name}: initiate {ike}/{child} failed:\n{r.output}"


def rekey(peer: PqCharon | PqikePeer, child: str | None = None, ike: str | None = None) -> None:
    if isinstance(peer, PqikePeer):
        r: Any = peer.rekey(child=child, ike=ike, timeout=30)
    else:
        r = peer.swanctl("--rekey", *(["--child", child] if child else ["--ike", str(ike)]))
    assert r.ok, f"{peer.name}: rekey {child or ike} failed:\n{r.output}"


def terminate(peer: PqCharon | PqikePeer, ike: str) -> None:
    r = peer.terminate(ike=ike, timeout=15)
    assert r.ok, f"{peer.name}: terminate {ike} failed:\n{r.output}"


def ping(ns: str, dst: str) -> None:
    r = nsh.ns_run(ns, ["ping", "-n", "-c", "2", "-W", "2", "-i", "0.2", "-I", VIP, dst])
    assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout


# --------------------------------------------------------------------------- sizes from logs

_GEN = re.compile(r"generating (\S+) (request|response) (\d+) \[ (.*) \]")
_SPLIT = re.compile(r"splitting IKE message \((\d+) bytes\) into (\d+) fragments")
_SENT = re.compile(r"sending packet: from \S+ to \S+ \((\d+) bytes\)")


@dataclass
class Sent:
    """One message as its sender logged it: IKE message bytes before fragmentation (charon's
    'splitting IKE message (N bytes)' or 'sending packet (N bytes)') and fragments."""

    exchange: str
    kind: str  # request / response
    mid: int
    payloads: str
    size: int = 0
    fragments: int = 0

    def __str__(self) -> str:
        return f"{self.size}" + (f"/{self.fragments}f" if self.fragments > 1 else "")


def sent_messages(lines: list[str]) -> list[Sent]:
    """Messages in the order the log generated them; retransmissions are not counted."""
    out: list[Sent] = []
    pending: Sent | None = None
    for line in lines:
        if (m := _GEN.search(line)) and not m[4].startswith("EF("):
            pending = Sent(m[1], m[2], int(m[3]), m[4])
            out.append(pending)
        elif pending is not None and (m := _SPLIT.search(line)):
            pending.size, pending.fragments = int(m[1]), int(m[2])
            pending = None
        elif pending is not None and (m := _SENT.search(line)):
            pending.size, pending.fragments = int(m[1]), 1
            pending = None
    return out


class Marks:
    """Log positions of both ends, to cut out the messages of one step."""

    def __init__(self, carol: CharonLog, moon: CharonLog) -> None:
        self.peers = {"carol": carol, "moon": moon}
        self.at = {k: 0 for k in self.peers}

    def step(self) -> dict[str, list[Sent]]:
        """Messages each end sent since the last call."""
        out = {}
        for who, peer in self.peers.items():
            lines = peer.log_text().splitlines()
            out[who] = sent_messages(lines[self.at[who] :])
            self.at[who] = len(lines)
        return out


@dataclass
class Exchange:
    """A request and its response (sizes), for the table."""

    exchange: str
    by: str  # carol / moon: who sent the request
    request: Sent
    response: Sent | None

    def row(self) -> str:
        return f"{self.exchange} by {self.by}: {self.request} / {self.response}"


def pair_up(sent: dict[str, list[Sent]]) -> list[Exchange]:
    """Each request with the response to it (same exchange type and message ID, in order)."""
    out = []
    other = {"carol": "moon", "moon": "carol"}
    responses = {who: [s for s in msgs if s.kind == "response"] for who, msgs in sent.items()}
    for who, msgs in sent.items():
        for req in (s for s in msgs if s.kind == "request"):
            pool = responses[other[who]]
            resp = next((r for r in pool if (r.exchange, r.mid) == (req.exchange, req.mid)), None)
            if resp is not None:
                pool.remove(resp)
            out.append(Exchange(req.exchange, who, req, resp))
    return out


@dataclass
class Walk:
    """Exchanges by step of one walkthrough run."""

    steps: dict[str, list[Exchange]] = field(default_factory=dict)

    def sizes(self, step: str, exchange: str | None = None) -> list[tuple[str, str]]:
        """(request, response) sizes of a step's exchanges (INFORMATIONAL left out)."""
        return [
            (str(e.request), str(e.response))
            for e in self.steps[step]
            if e.exchange != "INFORMATIONAL" and (exchange is None or e.exchange == exchange)
        ]

    def report(self, label: str) -> None:
        for step, exchanges in self.steps.items():
            for e in exchanges:
                print(f"SIZES {label} | {step} | {e.row()}")


# --------------------------------------------------------------------------- the walkthrough

# CHILD_SA algorithms when created or rekeyed with a key exchange
PFS = {
    "net": (
        "AES_CBC_256",
        "HMAC_SHA2_256_128",
        "CURVE_25519",
        "KE1_KYBER_L3",
        "KE2_BIKE_L3",
        "KE3_HQC_L3",
    ),
    "host": ("AES_CBC_256", "HMAC_SHA2_256_128", "MODP_3072", "KE1_FRODO_AES_L3", "KE2_BIKE_L3"),
}
REKEYS = [
    ("carol", "net"),
    ("carol", "host"),
    ("carol", "ike"),
    ("moon", "net"),
    ("moon", "host"),
    ("moon", "ike"),
]


def walkthrough(d: Daemons, pairing: str) -> Walk:
    """Set up carol and moon for ``pairing`` and run the whole walkthrough."""
    pq_carol, pq_moon = pairing == "pqike-initiator", pairing == "pqike-responder"
    kw = {"esp": NET_ESP, "host_esp": HOST_ESP}
    moon = (
        d.pqike("moon", pqike_tree("moon", {"rw": WALK_IKE}, **kw), kernel="userspace")
        if pq_moon
        else d.charon("moon", swanctl_conf("moon", {"rw": WALK_IKE}, **kw))
    )
    carol = (
        d.pqike("carol", pqike_tree("carol", {"home": WALK_IKE}, **kw), kernel="userspace")
        if pq_carol
        else d.charon("carol", swanctl_conf("carol", {"home": WALK_IKE}, **kw))
    )
    peers = {"carol": carol, "moon": moon}
    names = {"carol": "home", "moon": "rw"}
    walk, marks = Walk(), Marks(carol, moon)

    def settle(what: str, ready: Callable[[Snap], bool]) -> Snap:
        snap = wait_for(what, lambda: (s := agreed(carol, moon)) and ready(s) and s)
        walk.steps[what] = pair_up(marks.step())
        return snap

    def pings(children: tuple[str, ...]) -> None:
        for child in children:
            ping(d.topo.carol, "10.1.0.1" if child == "net" else HOST_TS.split("/")[0])

    initiate(carol, "net", "home")
    snap = settle("establish IKE_SA + net", lambda s: set(s.children) == {"net"})
    assert snap.proposal.endswith("/CURVE_25519/KE1_KYBER_L3/KE2_BIKE_L3/KE3_HQC_L3"), snap
    pings(("net",))
    initiate(carol, "host", "home")
    snap = settle("CHILD_SA host", lambda s: set(s.children) == {"net", "host"})
    assert snap.children["host"][2] == PFS["host"]
    pings(("net", "host"))
    for who, what in REKEYS:
        before = snap
        if what == "ike":
            rekey(peers[who], ike=names[who])
            snap = settle(
                f"rekey IKE_SA by {who}",
                lambda s, b=before: s.spis != b.spis and s.children == b.children,
            )
        else:
            rekey(peers[who], child=what)
            snap = settle(
                f"rekey {what} by {who}",
                lambda s, b=before, c=what: (
                    set(s.children) == {"net", "host"} and s.children[c][0] != b.children[c][0]
                ),
            )
            # (net came up in IKE_AUTH, without a key exchange of its own)
            assert snap.children[what][2] == PFS[what]
        assert snap.proposal == before.proposal
        pings(("net", "host"))
    for peer in (carol, moon):
        assert not peer.grep(SKIPPED), peer.log_path
    terminate(carol, "home")
    wait_for("both ends down", lambda: not carol.list_sas() and not moon.list_sas())
    return walk


@pytest.fixture(scope="module")
def pq_strongswan_walk(pq_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Walk:
    """The walkthrough between two pq-strongswans: the sizes pqike must match."""
    with daemons(tmp_path_factory.mktemp("pqss-walk"), pq_env) as d:
        walk = walkthrough(d, "pq-strongswan")
    walk.report("pq-strongswan<->pq-strongswan")
    return walk


# pqike does not send these notifies of charon's (tests/interop/test_pqike_strongswan.py
# NOT_SENT_BY_PQIKE): REDIRECT_SUPPORTED as initiator, MULTIPLE_AUTH_SUPPORTED as
# responder, 8 bytes each; the vendor ID (20 bytes) both send
NOTIFY = 8


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_walkthrough(pq_env: Path, tmp_path: Path, pq_strongswan_walk: Walk, pairing: str) -> None:
    with daemons(tmp_path, pq_env) as d:
        walk = walkthrough(d, pairing)
    walk.report(
        pairing.replace("pqike-initiator", "pqike->pq-strongswan").replace(
            "pqike-responder", "pq-strongswan->pqike"
        )
    )
    ref = pq_strongswan_walk
    assert list(walk.steps) == list(ref.steps)
    for step in walk.steps:
        # every IKE_INTERMEDIATE, CREATE_CHILD_SA and IKE_FOLLOWUP_KE: pq-strongswan's sizes
        for ex in ("IKE_INTERMEDIATE", "CREATE_CHILD_SA", "IKE_FOLLOWUP_KE"):
            assert walk.sizes(step, ex) == ref.sizes(step, ex), (step, ex)
    (init,) = walk.steps["establish IKE_SA + net"][:1]
    (ref_init,) = ref.steps["establish IKE_SA + net"][:1]
    assert init.exchange == "IKE_SA_INIT" and init.response is not None
    assert ref_init.response is not None
    if pairing == "pqike-initiator":
        assert init.request.size == ref_init.request.size - NOTIFY
        assert init.response.size == ref_init.response.size
    else:
        assert init.request.size == ref_init.request.size
        assert init.response.size == ref_init.response.size - NOTIFY


# --------------------------------------------------------------------------- 15 methods as ke1


def matrix(d: Daemons, pairing: str) -> dict[str, tuple[str, str]]:
    """Each private-use method as ADDKE1 after x25519 with one pair of daemons: carol has a
    connection per method, moon one connection offering all 15. Returns method ->
    IKE_INTERMEDIATE (request, response) sizes."""
    every = "aes256-sha256-x25519-" + "-".join(f"ke1_{m}" for m in PRIVATE)
    per_method = {f"home_{m}": f"aes256-sha256-x25519-ke1_{m}" for m in PRIVATE}
    if pairing == "pqike-responder":
        moon: Any = d.pqike("moon", pqike_tree("moon", {"rw": every}), kernel="none")
    else:
        moon = d.charon("moon", swanctl_conf("moon", {"rw": every}))
    if pairing == "pqike-initiator":
        carol: Any = d.pqike("carol", pqike_tree("carol", per_method), kernel="none")
    else:
        carol = d.charon("carol", swanctl_conf("carol", per_method))
    from kem import registry

    marks, sizes = Marks(carol, moon), {}
    for m in PRIVATE:
        name = registry.by_keyword(m).log_name
        initiate(carol, "net", f"home_{m}")
        snap = wait_for(m, lambda: agreed(carol, moon))
        assert snap.proposal.endswith(f"/CURVE_25519/KE1_{name}"), snap
        terminate(carol, f"home_{m}")
        wait_for(f"{m} down", lambda: not carol.list_sas() and not moon.list_sas())
        (ex,) = [e for e in pair_up(marks.step()) if e.exchange == "IKE_INTERMEDIATE"]
        sizes[m] = (str(ex.request), str(ex.response))
    for peer in (carol, moon):
        assert not peer.grep(SKIPPED), peer.log_path
    return sizes


@pytest.fixture(scope="module")
def pq_strongswan_matrix(
    pq_env: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[str, str]]:
    with daemons(tmp_path_factory.mktemp("pqss-matrix"), pq_env) as d:
        sizes = matrix(d, "pq-strongswan")
    for m, (req, resp) in sizes.items():
        print(f"SIZES pq-strongswan<->pq-strongswan | ke1 {m} | IKE_INTERMEDIATE {req} / {resp}")
    return sizes


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_each_private_method_as_ke1(
    pq_env: Path,
    tmp_path: Path,
    pq_strongswan_matrix: dict[str, tuple[str, str]],
    pairing: str,
) -> None:
    with daemons(tmp_path, pq_env) as d:
        sizes = matrix(d, pairing)
    for m, (req, resp) in sizes.items():
        print(f"SIZES {pairing} | ke1 {m} | IKE_INTERMEDIATE {req} / {resp}")
    assert sizes == pq_strongswan_matrix


# --------------------------------------------------------------------------- stock behaviour


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_private_methods_need_the_vendor_id(pq_env: Path, tmp_path: Path, pairing: str) -> None:
    """pqike without send_vendor_id: pq-strongswan skips the private-use methods, as the
    issue measured before pqike had vendor IDs."""
    with daemons(tmp_path, pq_env) as d:
        if pairing == "pqike-initiator":
            ss = d.charon("moon", swanctl_conf("moon", {"rw": WALK_IKE}))
            pq = d.pqike(
                "carol",
                pqike_tree("carol", {"home": WALK_IKE}, send_vendor_id=False),
                kernel="none",
            )
            r = pq.initiate(child="net", ike="home", timeout=15)
            assert not r.ok and "NO_PROPOSAL_CHOSEN" in r.output, r.output
        else:
            pq = d.pqike(
                "moon", pqike_tree("moon", {"rw": WALK_IKE}, send_vendor_id=False), kernel="none"
            )
            ss = d.charon("carol", swanctl_conf("carol", {"home": WALK_IKE}))
            r = ss.initiate(child="net", ike="home", timeout=15)
            assert not r.ok, r.output
            assert ss.grep(r"peer's proposal selection invalid"), ss.log_path
            # pqike, not knowing pq-strongswan's answer, noted the vendor ID it got
            assert pq.grep(r"received strongSwan vendor ID"), pq.tail()
        assert ss.grep(SKIPPED), ss.log_path
        assert not ss.list_sas()
