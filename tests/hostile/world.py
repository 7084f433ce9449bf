"""Engines in memory, moved one hop at a time, with scripted legitimate sessions.

A hop is what one engine emitted for one destination in one go (a message, or its
fragments). Before a hop is delivered, an attacker hook may aim packets at its receiver:
the receiver is then in exactly the state the hop's message is meant for (an initiator
waiting for that response, a responder waiting for that request), so mutating the hop is
stateless fuzzing of every state a session passes through. Whatever the receiver answers
to the attacker is delivered too (if it is addressed to a peer we run): "provoked" hops.

Scenarios are the legitimate sessions the suite runs and captures: ``psk`` passes through
COOKIE, INVALID_KE, fragmented IKE_INTERMEDIATE, IKE_AUTH (PSK), a new CHILD_SA, CHILD_SA
rekeys by either end, DPD by either end, an IKE_SA rekey (all three with IKE_FOLLOWUP_KE)
and deletes; ``cert`` authenticates with ML-DSA certificates (IKE_AUTH fragmented both
ways) and rekeys and deletes.
"""

from __future__ import annotations

import atexit
import functools
import ipaddress
import shutil
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

import msgspec

from pqike.config import Config
from pqike.engine import Engine
from pqike.events import Datagram, Endpoint, Event
from pqike.kernel.base import MemoryKernel
from pqike.sa.ike_sa import IkeSa, IkeState
from pqike.tasks.informational import Dpd
from tests.exchange.peers import CAROL, MOON, Peer, cert_configs, current_sas, psk_config

CAROL_ID, MOON_ID = "carol@strongswan.org", "moon.strongswan.org"
PEER_IDS = {"carol": MOON_ID, "moon": CAROL_ID}  # who each end must be talking to

# carol offers x25519 first, moon only takes ecp256: one INVALID_KE_PAYLOAD round; two
# ML-KEMs in IKE_INTERMEDIATE (the ML-KEM-1024 request is fragmented at 1480 bytes)
PSK_I = "aes256-sha256-x25519-ecp256-ke1_mlkem768-ke2_mlkem1024"
PSK_R = "aes256-sha256-ecp256-ke1_mlkem768-ke2_mlkem1024"
HOST_ESP = "aes256gcm16-x25519-ke1_mlkem768"  # a CHILD_SA with PFS and IKE_FOLLOWUP_KE
CERT_PROP = "aes256-sha256-x25519-ke1_mlkem768"


FLAG_I, FLAG_R = 0x08, 0x20  # IKE header flags
IKE_SA_INIT = 34


def is_init_request(data: bytes) -> bool:
    return len(data) >= 28 and data[18] == IKE_SA_INIT and data[19] & (FLAG_I | FLAG_R) == FLAG_I


def is_init_response(data: bytes) -> bool:
    return len(data) >= 28 and data[18] == IKE_SA_INIT and bool(data[19] & FLAG_R)


def attacker_address(i: int) -> str:
    """Addresses the attacker owns or spoofs (100.64.0.0/10), never a peer's."""
    return str(ipaddress.IPv4Address("100.64.0.0") + (i % (1 << 22)))


@dataclass
class Hop:
    sender: str
    receiver: str | None  # a peer's name, None when the destination is nobody we run
    packets: list[Datagram]
    provoked: bool = False  # an answer to the attacker, not part of the session


@dataclass
class World:
    peers: dict[str, Peer] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)  # peer name -> address
    now: float = 0.0
    step: str = ""
    log: list[tuple[str, Datagram]] = field(default_factory=list)  # legitimate traffic
    queue: deque[Hop] = field(default_factory=deque)
    on_hop: Callable[[World, Hop], None] | None = None
    drop: Callable[[Hop], bool] | None = None  # hops lost on the way (not delivered)

    def add_peer(self, name: str, address: str, config: Config, seed: int) -> Peer:
        """An engine at ``address`` (replacing any peer of that name), its RNG seeded."""
        kernel = MemoryKernel()
        events: list[Event] = []
        engine = Engine(
            config,
            kernel,
            events=events.append,
            rng=Random(seed).randbytes,
            source_for=lambda remote: address,
        )
        self.peers[name] = Peer(name, engine, kernel, events)
        self.addresses[name] = address
        return self.peers[name]

    def owner(self, host: str) -> str | None:
        return next((n for n, a in self.addresses.items() if a == host), None)

    # ---- moving packets

    def _collect(self, name: str, provoked: bool = False) -> list[Hop]:
        """Queue what ``name`` sent, one hop per run of datagrams to one destination."""
        hops: list[Hop] = []
        for d in self.peers[name].engine.pop_outgoing():
            if hops and hops[-1].packets[-1].dst == d.dst:
                hops[-1].packets.append(d)
            else:
                hops.append(Hop(name, self.owner(d.dst.host), [d], provoked))
        self.queue.extend(hops)
        return hops

    def provoked(self, name: str) -> list[Datagram]:
        """Queue what ``name`` answered to the attacker; returns those datagrams."""
        return [d for hop in self._collect(name, provoked=True) for d in hop.packets]

    def run(self, max_hops: int = 20000) -> None:
        for _ in range(max_hops):
            for name in list(self.peers):
                self._collect(name)
            if not self.queue:
                return
            hop = self.queue.popleft()
            if not hop.provoked:
                self.log += [(self.step, d) for d in hop.packets]
                if self.on_hop is not None and hop.receiver is not None:
                    self.on_hop(self, hop)
            if hop.receiver is not None and not (self.drop and self.drop(hop)):
                engine = self.peers[hop.receiver].engine
                for d in hop.packets:
                    engine.receive(d, self.now)
        raise AssertionError(f"still moving packets after {max_hops} hops")

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for p in self.peers.values():
            p.engine.tick(self.now)
        self.run()

    def busy(self) -> bool:
        """Whether a legitimate peer still has an exchange under way (attackers stall)."""
        return any(
            sa.request is not None or sa.queued or sa.active
            for name, p in self.peers.items()
            if not name.startswith("attacker")
            for sa in p.engine.sas.values()
            if sa.state != IkeState.DESTROYED
        )

    def settle(self, limit: float = 400.0, step: float = 5.0) -> None:
        """Deliver everything, then let time pass until no exchange is outstanding."""
        self.run()
        start = self.now
        while self.busy() and self.now - start < limit:
            self.advance(step)

    # ---- looking at state

    def established(self, name: str) -> list[IkeSa]:
        return [
            sa
            for sa in self.peers[name].engine.sas.values()
            if sa.state in (IkeState.ESTABLISHED, IkeState.REKEYING)
        ]


# ---- scripted sessions ----------------------------------------------------------------------


class StepSkipped(Exception):
    """A step cannot start (its IKE_SA is gone): a mutated session may end up there."""


def _dpd(who: str) -> Callable[[World], None]:
    def go(w: World) -> None:
        engine = w.peers[who].engine
        sas = w.established(who)
        if len(sas) != 1:
            raise StepSkipped(f"{who} has {len(sas)} established IKE_SAs")
        (sa,) = sas
        sa.queue(Dpd(sa, True))
        sa.initiate(w.now)
        engine.tick(w.now)  # lets the engine settle the SA's timers

    return go


@functools.cache
def _stray_config() -> Config:
    return psk_config("carol", PSK_R)  # moon's own KE method: no INVALID_KE, a half-open SA


def _stray_half_open(w: World) -> None:
    """One half-open IKE_SA from elsewhere, so moon (cookie_threshold 1) asks for COOKIEs."""
    template = Engine(
        _stray_config(),
        MemoryKernel(),
        rng=Random(99).randbytes,
        source_for=lambda remote: CAROL,
    )
    template.initiate("net", None, w.now)
    (init,) = template.pop_outgoing()
    src = Endpoint(attacker_address(0), 500)
    w.peers["moon"].engine.receive(Datagram(init.data, src, init.dst), w.now)
    w.peers["moon"].engine.pop_outgoing()


Expect = Callable[[World, dict[str, object]], str | None]  # None: as expected, else why


@dataclass(frozen=True)
class Step:
    name: str
    action: Callable[[World], None]
    expect: Expect


@dataclass(frozen=True)
class Scenario:
    name: str
    configs: Callable[[], tuple[Config, Config]]
    steps: tuple[Step, ...]

    def world(self, seed: int) -> World:
        carol, moon = self.configs()
        w = World()
        w.add_peer("carol", CAROL, carol, seed * 2 + 1)
        w.add_peer("moon", MOON, moon, seed * 2 + 2)
        return w


def pair_problem(w: World) -> str | None:
    """None if carol and moon share exactly one established IKE_SA whose CHILD_SAs mirror
    each other and whose kernel keys agree; else what is wrong."""
    c, m = w.established("carol"), w.established("moon")
    if len(c) != 1 or len(m) != 1:
        return f"established IKE_SAs: carol {len(c)}, moon {len(m)}"
    (cs,), (ms,) = c, m
    if (cs.spi_i, cs.spi_r) != (ms.spi_i, ms.spi_r):
        return "the IKE_SAs have different SPIs"
    if cs.remote_id != MOON_ID or ms.remote_id != CAROL_ID:
        return f"identities {cs.remote_id!r} / {ms.remote_id!r}"
    mine = {(ch.name, ch.spi_in, ch.spi_out) for ch in cs.children}
    theirs = {(ch.name, ch.spi_out, ch.spi_in) for ch in ms.children}
    if mine != theirs:
        return f"CHILD_SAs differ: {sorted(mine)} vs {sorted(theirs)}"
    # the inbound SAs of replaced CHILD_SAs kept for delete_rekeyed_delay have no twin
    ck, mk = current_sas(w.peers["carol"]), current_sas(w.peers["moon"])
    for key, ksa in ck.items():
        other = mk.get(key)
        if other is None or (ksa.encr_key, ksa.integ_key) != (other.encr_key, other.integ_key):
            return f"kernel SA {key[0]:08x} differs between carol and moon"
    return None


def _children(w: World) -> dict[str, tuple[int, int]]:
    (sa,) = w.established("carol")
    return {c.name: (c.spi_in, c.spi_out) for c in sa.children}


def _expect_children(names: set[str], changed: str | None = None) -> Expect:
    def check(w: World, before: dict[str, object]) -> str | None:
        problem = pair_problem(w)
        if problem:
            return problem
        now = _children(w)
        if set(now) != names:
            return f"CHILD_SAs {sorted(now)}, expected {sorted(names)}"
        old = before.get("children")
        if changed and isinstance(old, dict) and old.get(changed) == now[changed]:
            return f"CHILD_SA {changed} was not rekeyed"
        return None

    return check


def _expect_ike_rekeyed(names: set[str]) -> Expect:
    def check(w: World, before: dict[str, object]) -> str | None:
        problem = _expect_children(names)(w, before)
        if problem is None:
            (sa,) = w.established("carol")
            if (sa.spi_i, sa.spi_r) == before.get("ike"):
                return "the IKE_SA was not rekeyed"
        return problem

    return check


def _expect_alive(w: World, before: dict[str, object]) -> str | None:
    problem = pair_problem(w)
    if problem is None:
        (sa,) = w.established("carol")
        if (sa.spi_i, sa.spi_r) != before.get("ike"):
            return "the IKE_SA changed"
    return problem


def _expect_gone(w: World, before: dict[str, object]) -> str | None:
    for name in ("carol", "moon"):
        if w.established(name) or w.peers[name].kernel.sas or w.peers[name].kernel.policies:
            return f"{name} still has SAs after the IKE_SA was deleted"
    return None


def _snapshot(w: World) -> dict[str, object]:
    """What a step's expectation compares with (taken before the step)."""
    c = w.established("carol")
    if len(c) != 1:
        return {}
    return {"children": _children(w), "ike": (c[0].spi_i, c[0].spi_r)}


def run_step(w: World, step: Step) -> str | None:
    """Run one step to completion; None if it ended as expected, else why not."""
    before = _snapshot(w)
    w.step = step.name
    step.action(w)
    w.settle()
    return step.expect(w, before)


def _initiate(child: str, ike: str | None = None) -> Callable[[World], None]:
    def go(w: World) -> None:
        w.peers["carol"].engine.initiate(child, ike, w.now)

    return go


def _rekey(who: str, child: str | None, ike: str | None) -> Callable[[World], None]:
    return lambda w: w.peers[who].engine.rekey(ike, child, w.now)


def _terminate(who: str, ike: str | None, child: str | None) -> Callable[[World], None]:
    return lambda w: w.peers[who].engine.terminate(ike, child, None, w.now)


def _no_check(w: World, before: dict[str, object]) -> str | None:
    return None


ESTABLISH = Step("establish", _initiate("net"), _expect_children({"net"}))

PSK_STEPS = (
    Step("stray", _stray_half_open, _no_check),
    ESTABLISH,
    Step("child", _initiate("host", "home"), _expect_children({"net", "host"})),
    Step("rekey-child", _rekey("carol", "host", None), _expect_children({"net", "host"}, "host")),
    Step("peer-rekey-child", _rekey("moon", "net", None), _expect_children({"net", "host"}, "net")),
    Step("dpd", _dpd("carol"), _expect_alive),
    Step("peer-dpd", _dpd("moon"), _expect_alive),
    Step("rekey-ike", _rekey("carol", None, "home"), _expect_ike_rekeyed({"net", "host"})),
    Step("delete-child", _terminate("carol", None, "host"), _expect_children({"net"})),
    Step("delete-ike", _terminate("moon", "rw", None), _expect_gone),
)

CERT_STEPS = (
    ESTABLISH,
    Step("rekey-child", _rekey("moon", "net", None), _expect_children({"net"}, "net")),
    Step("dpd", _dpd("carol"), _expect_alive),
    Step("rekey-ike", _rekey("moon", None, "rw"), _expect_ike_rekeyed({"net"})),
    Step("delete-ike", _terminate("carol", "home", None), _expect_gone),
)


@functools.cache
def psk_configs() -> tuple[Config, Config]:
    carol = psk_config("carol", PSK_I, host_esp=HOST_ESP)
    moon = psk_config(
        "moon",
        PSK_I,
        moon_proposals=PSK_R,
        host_esp=HOST_ESP,
        extra_daemon={"cookie_threshold": 1},
    )
    return carol, moon


@functools.cache
def cert_configs_cached() -> tuple[Config, Config]:
    tmp = Path(tempfile.mkdtemp(prefix="pqike-hostile-"))
    atexit.register(shutil.rmtree, tmp, True)
    return cert_configs(tmp, CERT_PROP)


PSK = Scenario("psk", psk_configs, PSK_STEPS)
CERT = Scenario("cert", cert_configs_cached, CERT_STEPS)
SCENARIOS = (PSK, CERT)


def fresh_handshake(w: World, seed: int, patience: float | None = None) -> str | None:
    """Replace carol by a fresh initiator and bring up an IKE_SA and its CHILD_SA with moon:
    None if both ends hold it (same SPIs, mirrored CHILD_SAs), else what went wrong. This
    is "legitimate handshakes keep succeeding" after whatever the attacker did to moon.

    With ``patience`` (simulated seconds), a handshake that needed longer (retransmits:
    the network in memory loses nothing) counts as failed too."""
    config = w.peers["carol"].engine.config
    w.add_peer("carol", CAROL, config, seed)
    w.step = "fresh-handshake"
    start = w.now
    w.peers["carol"].engine.initiate("net", None, w.now)
    w.settle()
    if patience is not None and w.now - start > patience:
        return f"the handshake needed {w.now - start:.0f} s (retransmissions)"
    mine = w.established("carol")
    if len(mine) != 1:
        return f"the fresh initiator has {len(mine)} established IKE_SAs"
    (sa,) = mine
    theirs = [s for s in w.established("moon") if (s.spi_i, s.spi_r) == (sa.spi_i, sa.spi_r)]
    if not theirs or sa.remote_id != MOON_ID or theirs[0].remote_id != CAROL_ID:
        return "moon does not hold the fresh IKE_SA"
    mirrored = {(c.spi_out, c.spi_in) for c in theirs[0].children}
    if not sa.children or {(c.spi_in, c.spi_out) for c in sa.children} != mirrored:
        return "the fresh CHILD_SA is not on both ends"
    return None


# ---- attackers that complete IKE_SA_INIT ---------------------------------------------------


@functools.cache
def attacker_config(proposals: str) -> Config:
    """carol's connection without a local address (each attacker engine sends from its
    own) and with a PSK that is not moon's: it gets through IKE_SA_INIT, never IKE_AUTH."""
    config = psk_config("carol", proposals, psk="not-the-psk-0123456789")
    home = msgspec.structs.replace(config.connections["home"], local_addrs=())
    return msgspec.structs.replace(config, connections={"home": home})


def _attackers_stop_after_init(hop: Hop) -> bool:
    return hop.sender.startswith("attacker") and not is_init_request(hop.packets[0].data)


def start_attackers(w: World, count: int, proposals: str, first: int = 0) -> list[IkeSa]:
    """``count`` attacker initiators, each from its own address, that complete IKE_SA_INIT
    with moon (echoing COOKIEs as any initiator does) and stop: at moon their IKE_SAs stay
    half-open, and each attacker holds the keys moon checks its SKF fragments with. Their
    later requests are dropped on the way (``World.drop``)."""
    config = attacker_config(proposals)
    w.drop = _attackers_stop_after_init
    sas = []
    for i in range(first, first + count):
        name = f"attacker{i}"
        peer = w.add_peer(name, attacker_address(i), config, 7000 + i)
        peer.engine.initiate("net", None, w.now)
        w.run()
        sas += [sa for sa in peer.engine.sas.values() if sa.keys is not None]
    return sas
