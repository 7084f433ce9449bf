"""Two pqike engines in one process: configs, a virtual network, and what it records.

Every datagram is kept (``Run.datagrams``) and grouped into IKE messages (``Run.messages``)
by header: exchange, message ID, response flag, SKF fragment number/total. The size of a
fragmented message before fragmentation comes from the engine's own ENC log line
("splitting IKE message (N bytes) into M fragments"), as in charon's log.

CPU: ``CpuMeter`` wraps the crypto entry points the tasks call (KE primitives of the kem
registry, RFC 7427/PSK AUTH and certificate checks, SK seal/open and key derivation) and
every call into an engine with time.process_time(), so each side's process CPU is split into
"kem", "auth", "sym" and the rest ("protocol": encoding, parsing, state machine, config).
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import logging
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pqike.config import Config, load_config
from pqike.config.toml_writer import dumps as _toml
from pqike.engine import Engine
from pqike.events import Datagram, Event, EventKind
from pqike.kernel.base import MemoryKernel
from pqike.wire.errors import DecodeError
from pqike.wire.iana import ExchangeType
from pqike.wire.message import decode_message
from pqike.wire.payloads import EncryptedFragment

PSK = "qwerty-psk-0123456789"
PPK = "0x" + "5a" * 32  # a 256-bit PPK, as RFC 8784 §3 asks
ADDRS = {False: ("192.168.0.3", "192.168.0.2"), True: ("fd00::3", "fd00::2")}
CATEGORIES = ("kem", "auth", "sym")


# --- configs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """One bench configuration of the carol (initiator) / moon (responder) pair."""

    proposal: str
    esp: str = "aes256-sha256"
    child: str | None = None  # ESP proposal of a second CHILD_SA "host" (CREATE_CHILD_SA)
    auth: str = "psk"  # psk or a pqike.pki key kind (mldsa44/65/87, ...)
    fragment_size: int = 1480
    ipv6: bool = False
    max_packet: int = 65535
    ppk: str = "no"  # RFC 8784 on both ends: pqike.plan.PPK_MODES


@functools.cache
def _pki(kind: str, root: str) -> Path:
    from pqike.pki import create_peer_pki

    d = Path(root) / f"pki-{kind}"
    create_peer_pki(
        {
            "carol": (d / "carol", "carol@strongswan.org"),
            "moon": (d / "moon", "moon.strongswan.org"),
        },
        kind=kind,
    )
    return d


_WORKDIR = tempfile.TemporaryDirectory(prefix="pqike-bench-")


def configs(s: Setup, workdir: str | None = None) -> tuple[Config, Config]:
    carol_ip, moon_ip = ADDRS[s.ipv6]
    daemon = {
        "fragment_size": s.fragment_size,
        "max_packet": s.max_packet,
        "control_socket": "/tmp/pqike-bench-unused",
        "cookie_threshold": 0,  # a load generator is not an attack
        # pqike on both ends: private-use methods (Kyber, BIKE, ...) without vendor IDs, so
        # the sizes stay those of the messages themselves
        "accept_private_algs": True,
    }
    if s.ipv6:
        daemon["fragment_size_v6"] = max(1280, s.fragment_size)
    root = workdir or _WORKDIR.name
    pubkey = s.auth != "psk"
    pki = _pki(s.auth, root) if pubkey else None

    def side(name: str, ident: str) -> dict:
        if not pubkey:
            return {"auth": "psk", "id": ident}
        assert pki is not None
        return {
            "auth": "pubkey",
            "id": ident,
            "certs": [str(pki / name / "x509" / f"{name}Cert.pem")],
            "key": str(pki / name / "private" / f"{name}Key.pem"),
        }

    carol_children: dict[str, Any] = {
        "net": {"remote_ts": ["10.1.0.0/16"], "esp_proposals": [s.esp]}
    }
    moon_children: dict[str, Any] = {"net": {"local_ts": ["10.1.0.0/24"], "esp_proposals": [s.esp]}}
    if s.child:
        carol_children["host"] = {"esp_proposals": [s.child]}
        moon_children["host"] = {"esp_proposals": [s.child]}
    remote_carol: dict[str, Any] = {
        "auth": "pubkey" if pubkey else "psk",
        "id": "moon.strongswan.org",
    }
    remote_moon: dict[str, Any] = {
        "auth": "pubkey" if pubkey else "psk",
        "id": "carol@strongswan.org",
    }
    carol: dict[str, Any] = {
        "daemon": daemon,
        "connections": {
            "home": {
                "remote_addrs": [moon_ip],
                "local_addrs": [carol_ip],
                "vips": ["0.0.0.0"],
                "encap": True,  # NAT-T as under kernel-libipsec: port 4500, non-ESP marker
                "proposals": [s.proposal],
                "local": side("carol", "carol@strongswan.org"),
                "remote": remote_carol,
                "children": carol_children,
            }
        },
    }
    moon: dict[str, Any] = {
        "daemon": daemon,
        "connections": {
            "rw": {
                "local_addrs": [moon_ip],
                "pools": ["rw_pool"],
                "encap": True,
                "proposals": [s.proposal],
                "local": side("moon", "moon.strongswan.org"),
                "remote": remote_moon,
                "children": moon_children,
            }
        },
        "pools": {"rw_pool": {"addrs": "10.3.0.0/16"}},
    }
    if pubkey:
        assert pki is not None
        carol["authorities"] = {"ca": {"cacert": str(pki / "carol" / "x509ca" / "caCert.pem")}}
        remote_moon["cacerts"] = [str(pki / "moon" / "x509ca" / "caCert.pem")]
    else:
        secrets = {
            "ike-1": {"id-1": "moon.strongswan.org", "id-2": "carol@strongswan.org", "secret": PSK}
        }
        carol["secrets"] = moon["secrets"] = secrets
    if s.ppk != "no":
        from pqike.plan import PPK_ID

        for tree in (carol, moon):
            for conn in tree["connections"].values():
                conn |= {"ppk_id": PPK_ID, "ppk_required": s.ppk == "required"}
            tree.setdefault("secrets", {})["ppk-1"] = {"id": PPK_ID, "secret": PPK}
    out = []
    with tempfile.TemporaryDirectory(dir=root) as d:
        for name, tree in (("carol", carol), ("moon", moon)):
            path = Path(d) / f"{name}.toml"
            path.write_text(_toml(tree))
            out.append(load_config(path))
    return out[0], out[1]


# --- CPU accounting -----------------------------------------------------------------------


def _targets() -> list[tuple[Any, str, str]]:
    """(owner, attribute, category) of the crypto entry points to time."""
    import kem.base
    import kem.registry
    import pqike.crypto.sk
    import pqike.sa.ike_sa
    import pqike.tasks.child_create
    import pqike.tasks.ike_auth
    import pqike.tasks.ike_init

    t: list[tuple[Any, str, str]] = [
        (kem.registry.Method, "initiator", "kem"),
        (kem.registry.Method, "respond", "kem"),
        (kem.base.Initiator, "finish", "kem"),
        (pqike.crypto.sk.SkCipher, "seal", "sym"),
        (pqike.crypto.sk.SkCipher, "open", "sym"),
    ]
    for mod, names, cat in (
        (pqike.tasks.ike_init, ("skeyseed", "derive_ike_keys"), "sym"),
        (pqike.sa.ike_sa, ("int_auth", "update_ike_keys"), "sym"),
        (pqike.tasks.child_create, ("derive_child_keys",), "sym"),
        (
            pqike.tasks.ike_auth,
            (
                "initiator_signed_octets",
                "responder_signed_octets",
                "build_psk_auth",
                "verify_psk",
                "ppk_ike_keys",
            ),
            "sym",
        ),
        (
            pqike.tasks.ike_auth,
            (
                "sign_auth_data",
                "verify_auth_data",
                "verify_chain",
                "classic_verify",
                "load_private_key",
                "load_certificate_file",
                "parse_cert_payload",
                "select_scheme",
            ),
            "auth",
        ),
    ):
        t += [(mod, n, cat) for n in names if hasattr(mod, n)]
    # KeChain (CREATE_CHILD_SA) calls the registry too, through Method: already covered
    return t


class CpuMeter:
    """Process CPU per side, split into crypto categories and protocol (the rest)."""

    def __init__(self) -> None:
        self.side = "initiator"
        self.total: dict[str, float] = {"initiator": 0.0, "responder": 0.0}
        self.parts: dict[str, dict[str, float]] = {
            s: dict.fromkeys(CATEGORIES, 0.0) for s in self.total
        }
        self._depth = 0
        self.enabled = True

    def _wrap(self, fn: Callable[..., Any], category: str) -> Callable[..., Any]:
        meter = self

        @functools.wraps(fn)
        def timed(*args: Any, **kw: Any) -> Any:
            if meter._depth or not meter.enabled:
                return fn(*args, **kw)
            meter._depth += 1
            t = time.process_time()
            try:
                return fn(*args, **kw)
            finally:
                meter.parts[meter.side][category] += time.process_time() - t
                meter._depth -= 1

        return timed

    @contextlib.contextmanager
    def installed(self) -> Iterator[CpuMeter]:
        saved = []
        for owner, name, cat in _targets():
            orig = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
            saved.append((owner, name, orig))
            setattr(owner, name, self._wrap(orig, cat))
        try:
            yield self
        finally:
            for owner, name, orig in reversed(saved):
                setattr(owner, name, orig)

    @contextlib.contextmanager
    def on(self, side: str) -> Iterator[None]:
        self.side = side
        t = time.process_time()
        try:
            yield
        finally:
            self.total[side] += time.process_time() - t

    def split(self, side: str) -> dict[str, float]:
        parts = dict(self.parts[side])
        parts["protocol"] = max(0.0, self.total[side] - sum(parts.values()))
        parts["total"] = self.total[side]
        return parts


class NullMeter(CpuMeter):
    @contextlib.contextmanager
    def on(self, side: str) -> Iterator[None]:
        yield


# --- ENC log capture (message size before fragmentation) ---------------------------------


class _SplitLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=1)
        self.sizes: dict[tuple[str, str, str, int], int] = {}
        self._pending: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        sa = getattr(record, "sa", "")
        if record.msg.startswith("splitting IKE message"):
            self._pending[sa] = int(record.args[0])  # type: ignore[index]
        elif record.msg.startswith("generating %s %s %d [ EF(") and sa in self._pending:
            ex, role, mid = record.args[:3]  # type: ignore[index]
            self.sizes[(sa.split("|")[0], str(ex), str(role), int(mid))] = self._pending.pop(sa)


@contextlib.contextmanager
def split_log() -> Iterator[_SplitLog]:
    logger = logging.getLogger("pqike.ENC")
    handler = _SplitLog()
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(20)  # charon level 1
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


# --- the pair and its network ------------------------------------------------------------


@dataclass
class Packet:
    sender: str  # "initiator" | "responder" (of the IKE_SA)
    size: int
    exchange: str
    message_id: int
    response: bool
    fragment: tuple[int, int] | None


@dataclass
class Msg:
    sender: str
    exchange: str
    message_id: int
    response: bool
    length: int
    packets: list[int]

    @property
    def fragments(self) -> int:
        return len(self.packets)


def classify(d: Datagram, initiator_host: str) -> Packet:
    sender = "initiator" if d.src.host == initiator_host else "responder"
    try:
        m = decode_message(d.data)
    except DecodeError:
        return Packet(sender, len(d.data), "?", -1, False, None)
    ex = m.exchange.name if isinstance(m.exchange, ExchangeType) else str(m.exchange)
    skf = m.sealed
    frag = (skf.number, skf.total) if isinstance(skf, EncryptedFragment) else None
    return Packet(sender, len(d.data), ex, m.message_id, m.response, frag)


def group(
    packets: list[Packet],
    split_sizes: dict[tuple[str, str, str, int], int],
    conn_of: dict[str, str],
) -> list[Msg]:
    """Packets to messages, in the order their first packet was sent; retransmitted
    packets (same fragment of the same message) are counted once."""
    out: list[Msg] = []
    index: dict[tuple[str, str, int, bool], tuple[Msg, set[int]]] = {}
    for p in packets:
        key = (p.sender, p.exchange, p.message_id, p.response)
        if key not in index:
            index[key] = (Msg(p.sender, p.exchange, p.message_id, p.response, p.size, []), set())
            out.append(index[key][0])
        m, seen = index[key]
        number = p.fragment[0] if p.fragment else 0
        if number in seen:
            continue
        seen.add(number)
        m.packets.append(p.size)
    for m in out:
        if len(m.packets) > 1:
            role = "response" if m.response else "request"
            m.length = split_sizes.get((conn_of[m.sender], m.exchange, role, m.message_id), -1)
    return out


@dataclass
class Pair:
    """carol (initiator) and moon (responder) engines on a virtual network with a clock.

    ``delay`` is the one-way latency (RTT/2) and ``loss`` the probability to drop each
    datagram (seeded); time is virtual, so retransmission timers cost no wall time."""

    carol: Engine
    moon: Engine
    carol_ip: str
    moon_ip: str
    meter: CpuMeter = field(default_factory=NullMeter)
    delay: float = 0.0
    loss: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    now: float = 0.0
    log: list[Datagram] = field(default_factory=list)
    events: dict[str, list[Event]] = field(default_factory=lambda: {"carol": [], "moon": []})
    _queue: list[tuple[float, int, Datagram]] = field(default_factory=list)
    _seq: int = 0

    @classmethod
    def create(cls, s: Setup, **kw: Any) -> Pair:
        carol_cfg, moon_cfg = configs(s)
        carol_ip, moon_ip = ADDRS[s.ipv6]
        events: dict[str, list[Event]] = {"carol": [], "moon": []}
        carol = Engine(
            carol_cfg, MemoryKernel(), events=events["carol"].append, source_for=lambda r: carol_ip
        )
        moon = Engine(
            moon_cfg, MemoryKernel(), events=events["moon"].append, source_for=lambda r: moon_ip
        )
        return cls(carol, moon, carol_ip, moon_ip, events=events, **kw)

    def _collect(self) -> None:
        for eng in (self.carol, self.moon):
            for d in eng.pop_outgoing():
                self.log.append(d)
                if self.loss and self.rng.random() < self.loss:
                    continue
                self._seq += 1
                heapq.heappush(self._queue, (self.now + self.delay, self._seq, d))

    def _deliver(self, d: Datagram) -> None:
        if d.dst.host == self.moon_ip:
            with self.meter.on("responder"):
                self.moon.receive(d, self.now)
        else:
            with self.meter.on("initiator"):
                self.carol.receive(d, self.now)

    def run(self, until: Callable[[], bool] | None = None, limit: float = 300.0) -> None:
        """Deliver until nothing is in flight and no timer is due before ``limit`` seconds
        of virtual time (or ``until()`` holds)."""
        start = self.now
        self._collect()
        while True:
            if until is not None and until():
                return
            deadlines = [
                t for t in (self.carol.next_deadline(), self.moon.next_deadline()) if t is not None
            ]
            nxt_timer = min(deadlines) if deadlines else None
            nxt_pkt = self._queue[0][0] if self._queue else None
            if nxt_pkt is None and nxt_timer is None:
                return
            if nxt_pkt is not None and (nxt_timer is None or nxt_pkt <= nxt_timer):
                t, _, d = heapq.heappop(self._queue)
                self.now = max(self.now, t)
                self._deliver(d)
            else:
                assert nxt_timer is not None
                if nxt_timer - start > limit:
                    return
                self.now = max(self.now, nxt_timer)
                with self.meter.on("initiator"):
                    self.carol.tick(self.now)
                with self.meter.on("responder"):
                    self.moon.tick(self.now)
            self._collect()

    def initiate(self, child: str = "net", ike: str | None = None) -> int:
        with self.meter.on("initiator"):
            return self.carol.initiate(child, ike, self.now)

    def established(self, side: str = "carol") -> bool:
        return any(e.kind == EventKind.IKE_ESTABLISHED for e in self.events[side])

    def failed(self) -> str | None:
        for side in ("carol", "moon"):
            for e in self.events[side]:
                if e.kind in (EventKind.IKE_FAILED, EventKind.CHILD_FAILED):
                    return f"{side}: {e.message}"
        return None

    def messages(self, start: int = 0, split_sizes: dict | None = None) -> list[Msg]:
        packets = [classify(d, self.carol_ip) for d in self.log[start:]]
        return group(packets, split_sizes or {}, {"initiator": "home", "responder": "rw"})
