"""Stateless mutation: byte-level mutants of real messages, aimed at an engine in every
state a legitimate session passes through, while that session runs.

Before each hop of a scenario is delivered, its receiver gets ``per_hop`` mutants of the
message in flight, of earlier messages of the session (often retargeted at the receiver's
own IKE_SAs: its SPIs, the message ID it expects) and of the rest of the corpus. After
every step both ends also get a burst while idle. The attacker holds no keys, so:

- no IKE_SA may change (state, SPIs, keys, message IDs, endpoints, CHILD_SAs, what is
  outstanding or being reassembled, the DPD clock), checked after every packet;
- new IKE_SAs may only be half-open responder SAs (IKE_SA_INIT is unauthenticated), no
  more than the COOKIE threshold lets in, and the kernel does not change;
- every step of the session still ends as it would without the attacker.

One state is different: an initiator waiting for the IKE_SA_INIT response takes the first
plausible answer (RFC 7296 has nothing to check it against), so hops carrying that response
are not attacked in the session; ``sacrificial_initiators`` aims mutants at throwaway
initiators instead and checks they never get past CONNECTING nor install anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from random import Random
from typing import Any

from pqike.config import Config
from pqike.engine import Engine
from pqike.events import Datagram, Endpoint
from pqike.kernel.base import MemoryKernel
from pqike.sa.ike_sa import IkeState
from tests.hostile.mutate import mutate_message
from tests.hostile.seeds import Seed, corpus
from tests.hostile.watch import (
    LogWatch,
    Report,
    engine_fingerprints,
    fingerprint_diff,
    half_open,
    kernel_orphans,
    kernel_state,
    sa_fingerprint,
)
from tests.hostile.world import (
    CAROL,
    FLAG_I,
    FLAG_R,
    MOON,
    SCENARIOS,
    Hop,
    Scenario,
    World,
    attacker_address,
    is_init_request,
    is_init_response,
    psk_configs,
    run_step,
)


def retarget(data: bytes, engine: Engine, rng: Random) -> bytes:
    """Point a message at one of ``engine``'s IKE_SAs: its SPIs, the I flag its peer
    would set and the message ID it expects (or the last one, the retransmit path)."""
    sas = [sa for sa in engine.sas.values() if sa.state != IkeState.DESTROYED]
    if not sas or len(data) < 28:
        return data
    sa = rng.choice(sas)
    b = bytearray(data)
    b[0:16] = sa.spi_i + sa.spi_r
    flags = b[19] & ~FLAG_I
    if not sa.initiator:
        flags |= FLAG_I  # the peer is the original initiator
    b[19] = flags
    mid = sa.my_mid if flags & FLAG_R else sa.peer_mid - rng.choice((0, 0, 0, 1))
    b[20:24] = (max(mid, 0) & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(b)


class StatelessAttacker:
    """The ``on_hop`` hook of a World: bursts of mutants before each hop is delivered."""

    def __init__(self, rng: Random, report: Report, foreign: Sequence[Seed], per_hop: int):
        self.rng = rng
        self.report = report
        self.foreign = foreign
        self.per_hop = per_hop
        self.sources = 0

    def on_hop(self, w: World, hop: Hop) -> None:
        assert hop.receiver is not None
        if is_init_response(hop.packets[0].data):
            self.report.outcomes["IKE_SA_INIT response hops left to sacrificial initiators"] += 1
            return
        self.burst(w, hop.receiver, hop.packets)

    def _attacker_source(self) -> Endpoint:
        self.sources += 1
        return Endpoint(attacker_address(1000 + self.sources % 256), 500)

    def _pick(self, w: World, name: str, in_flight: list[Datagram]) -> tuple[str, bytes, bytes]:
        """(kind, seed bytes, another seed for splices)."""
        rng = self.rng
        engine = w.peers[name].engine
        history = w.log
        r = rng.random()
        if in_flight and r < 0.55:
            kind, data = "in-flight", rng.choice(in_flight).data
        elif history and r < 0.8:
            kind, data = "session", rng.choice(history)[1].data
            if rng.random() < 0.5:
                kind, data = "session-retargeted", retarget(data, engine, rng)
        elif r < 0.97:
            kind, data = "corpus", rng.choice(self.foreign).data
            if rng.random() < 0.6:
                kind, data = "corpus-retargeted", retarget(data, engine, rng)
        else:
            return "random", b"", b""
        other = rng.choice(self.foreign).data
        return kind, data, other

    def _source(self, engine: Engine, data: bytes, genuine: Endpoint) -> Endpoint:
        """IKE_SA_INIT requests come from attacker addresses unless they hit a half-open
        SA of the genuine peer (a mutated retransmit): a copy from the genuine address with
        its SPI would be the on-path race RFC 7296 cannot prevent, not a finding."""
        if is_init_request(data):
            known = any(sa.spi_i == data[:8] and sa.remote == genuine for sa in half_open(engine))
            return genuine if known and self.rng.random() < 0.8 else self._attacker_source()
        return genuine if self.rng.random() < 0.9 else self._attacker_source()

    def burst(self, w: World, name: str, in_flight: list[Datagram], count: int = 0) -> None:
        peer = w.peers[name]
        engine, rng, report = peer.engine, self.rng, self.report
        before = engine_fingerprints(engine)
        kernel_before = kernel_state(peer.kernel)
        genuine = self._genuine(w, name, in_flight)
        for _ in range(count or self.per_hop):
            kind, seed, other = self._pick(w, name, in_flight)
            if kind == "random":
                op, data = "random", rng.randbytes(rng.choice((0, 1, 27, 28, 29, 200, 1500)))
            else:
                op, data = mutate_message(seed, rng, other)
            if any(data == d.data for d in in_flight):
                # a retargeted copy mutated back into the genuine message: delivering it
                # early is no attack (a replay of something the receiver has seen is)
                report.outcomes["mutants equal to the message in flight, not sent"] += 1
                continue
            report.packets[f"{kind}"] += 1
            report.ops[op] += 1
            src = self._source(engine, data, genuine.src)
            # the IKE_SA the packet names (by either SPI), and which IKE_SAs exist at all
            touched = {k: sa_fingerprint(engine.sas[k]) for k in (data[:8], data[8:16])
                       if k in engine.sas}  # fmt: skip
            existing = {k: sa.label for k, sa in engine.sas.items()}
            engine.receive(Datagram(data, src, genuine.dst), w.now)
            for key in existing.keys() - engine.sas.keys() - touched.keys():
                report.violate(
                    f"{name} step {w.step}: {kind} mutant ({op}) from {src} removed "
                    f"{existing[key]} ({key.hex()}): {data.hex()}"
                )
            for key, fp in touched.items():
                sa = engine.sas.get(key)
                now = None if sa is None else sa_fingerprint(sa)
                if now != fp:
                    report.violate(
                        f"{name} step {w.step}: {kind} mutant ({op}) from {src} changed "
                        f"IKE_SA {key.hex()} ({fingerprint_diff(fp, now)}): {data.hex()}"
                    )
        answers = w.provoked(name)
        report.outcomes["answers to the attacker"] += len(answers)
        self._after_burst(w, name, before, kernel_before)

    def _genuine(self, w: World, name: str, in_flight: list[Datagram]) -> Datagram:
        """The legitimate packet whose addresses and ports the mutants borrow."""
        if in_flight:
            return in_flight[0]
        mine = w.addresses[name]
        last = next((d for _, d in reversed(w.log) if d.dst.host == mine), None)
        if last is not None:
            return last
        other = next(a for n, a in w.addresses.items() if n in ("carol", "moon") and n != name)
        return Datagram(b"", Endpoint(other, 500), Endpoint(mine, 500))

    def _after_burst(
        self,
        w: World,
        name: str,
        before: dict[bytes, tuple[Any, ...]],
        kernel_before: tuple[frozenset[tuple[int, str]], int],
    ) -> None:
        """Pre-existing IKE_SAs unchanged, new ones only half-open, kernel untouched."""
        peer, report = w.peers[name], self.report
        after = engine_fingerprints(peer.engine)
        for key, fp in before.items():
            if after.get(key) != fp:
                report.violate(
                    f"{name} step {w.step}: IKE_SA {key.hex()} changed in a burst: "
                    + fingerprint_diff(fp, after.get(key))
                )
        for key in set(after) - set(before):
            sa = peer.engine.sas[key]
            if sa.state != IkeState.CONNECTING or sa.initiator:
                report.violate(f"{name} step {w.step}: attacker made {sa.label} {sa.state}")
        if kernel_state(peer.kernel) != kernel_before:
            report.violate(f"{name} step {w.step}: the kernel changed in a burst")
        limit = peer.engine.config.daemon.cookie_threshold or 10
        n = len(half_open(peer.engine))
        report.figures["max half-open"] = max(int(report.figures.get("max half-open", 0)), n)
        if n > limit + 3:
            report.violate(f"{name} step {w.step}: {n} half-open IKE_SAs (threshold {limit})")


def attacked_session(
    scenario: Scenario, attacker: StatelessAttacker, seed: int, report: Report
) -> None:
    """One scenario with the attacker on every hop and idle bursts after every step."""
    w = scenario.world(seed)
    w.on_hop = attacker.on_hop
    attacker.burst(w, "moon", [], attacker.per_hop)  # a responder with no IKE_SA at all
    for step in scenario.steps:
        report.legit_attempts += 1
        problem = run_step(w, step)
        if problem:
            report.violate(f"{scenario.name} step {step.name} under attack: {problem}")
            return
        report.legit_ok += 1
        for name in ("carol", "moon"):
            attacker.burst(w, name, [])
            for problem in kernel_orphans(w.peers[name].engine, w.peers[name].kernel):
                report.violate(f"{scenario.name} step {step.name}: {name}: {problem}")
    w.on_hop = None
    w.advance(w.peers["moon"].engine.config.daemon.half_open_timeout + 1)
    for name, peer in w.peers.items():
        left = [sa.label for sa in peer.engine.sas.values()]
        if left or peer.engine._budget.used:
            report.violate(
                f"{scenario.name}: {name} keeps {left} and {peer.engine._budget.used} "
                "reassembly bytes after the session and the half-open timeout"
            )


def sacrificial_initiators(rng: Random, report: Report, packets: int) -> None:
    """Mutants of IKE_SA_INIT responses at initiators waiting for one. Allowed: ignore it,
    restart (COOKIE, INVALID_KE), fail cleanly, or go on to the next exchange; never an
    established IKE_SA or anything in the kernel. A moved-on initiator is replaced."""
    responses = [s for s in corpus() if is_init_response(s.data)]
    config = psk_configs()[0]
    engine, kernel, sa_key, fp = _fresh_initiator(config, rng)
    for _ in range(packets):
        seed = rng.choice(responses).data
        if rng.random() < 0.8:
            seed = sa_key[:8] + seed[8:]  # aimed at this initiator's SPI
        op, data = mutate_message(seed, rng)
        report.packets["init-response"] += 1
        report.ops[op] += 1
        engine.receive(Datagram(data, Endpoint(MOON, 500), Endpoint(CAROL, 500)), 0.0)
        engine.pop_outgoing()
        sa = engine.sas.get(sa_key)
        if sa is not None and sa_fingerprint(sa) == fp:
            continue
        outcome = "failed" if sa is None else sa.state.value
        report.outcomes[f"sacrificial initiator {outcome}"] += 1
        if any(s.established for s in engine.sas.values()) or kernel.sas or kernel.policies:
            report.violate(f"an IKE_SA_INIT response mutant ({op}) got past CONNECTING: "
                           f"{data.hex()}")  # fmt: skip
        engine, kernel, sa_key, fp = _fresh_initiator(config, rng)


def _fresh_initiator(
    config: Config, rng: Random
) -> tuple[Engine, MemoryKernel, bytes, tuple[Any, ...]]:
    """An initiator that sent its IKE_SA_INIT request: engine, kernel, SA key, fingerprint."""
    kernel = MemoryKernel()
    engine = Engine(config, kernel, rng=Random(rng.random()).randbytes, source_for=lambda r: CAROL)
    engine.initiate("net", None, 0.0)
    engine.pop_outgoing()
    ((key, sa),) = engine.sas.items()
    return engine, kernel, key, sa_fingerprint(sa)


def stateless_campaign(seed: int, packets: int, per_hop: int = 30) -> Report:
    """At least ``packets`` mutants: 90 % in attacked sessions, 10 % at sacrificial
    initiators. The attacker's choices are seeded and the engines draw SPIs and nonces from
    seeded RNGs; only key pairs come from the crypto providers (same sizes every run)."""
    report = Report("stateless")
    rng = Random(seed)
    attacker = StatelessAttacker(rng, report, corpus(), per_hop)
    with LogWatch() as watch:
        session = 0
        while report.total_packets < packets * 0.9:
            scenario = SCENARIOS[session % len(SCENARIOS)]
            attacked_session(scenario, attacker, seed * 10007 + session, report)
            session += 1
        report.figures["sessions"] = session
        sacrificial_initiators(rng, report, max(1, packets - report.total_packets))
    report.absorb(watch)
    return report
