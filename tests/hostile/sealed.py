"""Mutation under SK/SKF before sealing: the peer holds the keys (before IKE_AUTH anybody
does: IKE_SA_INIT needs no credentials) and sends hostile content with a valid ICV.

``SealHook`` patches ``IkeSa._encode`` (where an engine turns a built message into packets)
so the n-th protected message of a session, counting both ends, is mutated before
``pqike.wire.sk`` seals it: either its payload list (structure-aware: drop, duplicate,
reorder, random notifies, wrong KE groups and sizes, bad TS, SA proposals, IDs, AUTH, CP,
DELETE SPIs; see mutate.py) or its encoded plaintext (bytes, lengths, Next Payload,
critical bits). The sender's own state is untouched, the receiver gets authentic garbage.

A campaign runs a scenario once per (message index, variant) and checks afterwards: no
traceback; nothing in a kernel that no CHILD_SA of a live IKE_SA owns, and no CHILD_SA under
an IKE_SA that never completed IKE_AUTH; every established IKE_SA is with the configured
peer; after time passes nothing is left half-open, outstanding or being reassembled; and a
fresh legitimate initiator still gets an IKE_SA and a CHILD_SA from the responder.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from random import Random
from typing import Any

import pqike.wire.sk as wire_sk
from pqike.engine import EngineError
from pqike.sa.ike_sa import IkeSa, IkeState
from pqike.tasks.base import Outgoing
from pqike.wire.iana import ExchangeType
from tests.hostile.mutate import Context, family_of, mutate_payloads, mutate_plaintext
from tests.hostile.watch import LogWatch, Report, kernel_orphans
from tests.hostile.world import (
    PEER_IDS,
    SCENARIOS,
    Scenario,
    StepSkipped,
    World,
    fresh_handshake,
    run_step,
)

Encode = Callable[[IkeSa, Outgoing], list[bytes]]  # IkeSa._encode


class SealHook:
    """Mutates the ``target``-th protected message built while active (None: count only)."""

    def __init__(self, rng: Random, target: int | None, family: str | None, raw: bool):
        self.rng = rng
        self.target = target
        self.family = family
        self.raw = raw
        self.count = 0
        self.applied = ""  # what was done, for reports
        self.families: list[set[str]] = []  # per message: the payload families it carries

    def mutate(self, sa: IkeSa, out: Outgoing, encode: Encode) -> list[bytes]:
        index, self.count = self.count, self.count + 1
        self.families.append({family_of(p) for p in out.payloads})
        if index != self.target:
            return encode(sa, out)
        where = f"{sa.label} {out.exchange.name} {'response' if out.is_response else 'request'}"
        if self.raw:
            return self._raw(sa, out, encode, where)
        ctx = Context(
            child_spis=[s.to_bytes(4, "big") for c in sa.children for s in (c.spi_in, c.spi_out)],
            ike_spis=[sa.spi_i, sa.spi_r],
        )
        op, payloads = mutate_payloads(out.payloads, self.rng, ctx, self.family)
        self.applied = f"{where}: {op}"
        original, out.payloads = out.payloads, payloads
        try:
            return encode(sa, out)
        finally:
            out.payloads = original

    def _raw(self, sa: IkeSa, out: Outgoing, encode: Encode, where: str) -> list[bytes]:
        real = wire_sk.encode_payloads
        done: dict[bytes, tuple[int, bytes]] = {}

        def mutated(payloads: Any) -> tuple[int, bytes]:
            first, plain = real(payloads)
            if plain not in done:  # protect and protect_fragments must seal the same bytes
                op, new_first, new_plain = mutate_plaintext(first, plain, self.rng)
                done[plain] = (new_first, new_plain)
                self.applied = f"{where}: raw {op}"
            return done[plain]

        wire_sk.encode_payloads = mutated  # type: ignore[assignment]
        try:
            return encode(sa, out)
        finally:
            wire_sk.encode_payloads = real


@contextmanager
def sealing(hook: SealHook) -> Iterator[SealHook]:
    original = IkeSa._encode

    def _encode(sa: IkeSa, out: Outgoing) -> list[bytes]:
        if out.exchange == ExchangeType.IKE_SA_INIT:
            return original(sa, out)
        return hook.mutate(sa, out, original)

    IkeSa._encode = _encode  # type: ignore[method-assign]
    try:
        yield hook
    finally:
        IkeSa._encode = original  # type: ignore[method-assign]


@functools.cache
def protected_messages(scenario: Scenario) -> tuple[frozenset[str], ...]:
    """The protected messages a clean run of the scenario builds: their payload families."""
    hook = SealHook(Random(0), None, None, False)
    with sealing(hook):
        w = scenario.world(seed=0)
        for step in scenario.steps:
            run_step(w, step)
    return tuple(frozenset(f) for f in hook.families)


def targets(scenario: Scenario, family: str | None) -> list[int]:
    """The messages worth mutating for a family: those that carry such a payload (all of
    them for list operations or any mutation)."""
    messages = protected_messages(scenario)
    if family in (None, "list"):
        return list(range(len(messages)))
    return [i for i, families in enumerate(messages) if family in families]


def _run_script(w: World, scenario: Scenario, report: Report) -> None:
    for step in scenario.steps:
        try:
            problem = run_step(w, step)
        except (EngineError, StepSkipped) as e:
            problem = f"not started: {e}"
        report.outcomes[f"{step.name}: {'as without mutation' if not problem else 'changed'}"] += 1


def _converged(w: World, report: Report, what: str) -> None:
    """After the session and the half-open timeout: nothing half-built anywhere."""
    w.advance(w.peers["moon"].engine.config.daemon.half_open_timeout + 1)
    w.settle()
    for name, peer in w.peers.items():
        engine = peer.engine
        for problem in kernel_orphans(engine, peer.kernel):
            report.violate(f"{what}: {name}: {problem}")
        for sa in engine.sas.values():
            if sa.state in (IkeState.CREATED, IkeState.CONNECTING):
                report.violate(f"{what}: {name} keeps {sa.label} {sa.state.value}")
            elif sa.established and sa.remote_id != PEER_IDS[name]:
                report.violate(f"{what}: {name} has {sa.label} with {sa.remote_id!r}")
            if sa.request is not None:
                report.violate(f"{what}: {name} {sa.label} still waits for a response")
        if engine._budget.used:
            report.violate(f"{what}: {name} holds {engine._budget.used} reassembly bytes")


def sealed_run(
    scenario: Scenario,
    target: int,
    variant: int,
    rng: Random,
    report: Report,
    watch: LogWatch,
    family: str | None = None,
) -> None:
    raw = family is None and rng.random() < 0.3
    hook = SealHook(rng, target, family, raw)
    seed = rng.randrange(1 << 30)
    errors = watch.tracebacks
    what = f"{scenario.name} message {target} variant {variant}"
    try:
        with sealing(hook):
            w = scenario.world(seed)
            _run_script(w, scenario, report)
        what = f"{what} ({hook.applied})"
        _converged(w, report, what)
        report.legit_attempts += 1
        problem = fresh_handshake(w, seed + 1)
        if problem:
            report.violate(f"{what}: fresh handshake afterwards failed: {problem}")
        else:
            report.legit_ok += 1
    except Exception as e:  # an exception escaping the engine (tick, commands) is a finding
        report.violate(f"{what} ({hook.applied}): {type(e).__name__}: {e}")
    report.packets[f"sealed {'raw' if raw else family or 'any'}"] += 1
    report.ops[hook.applied.split(": ", 1)[-1].split("+")[0]] += 1
    if watch.tracebacks != errors:
        report.violate(f"{what}: traceback in the log:\n{watch.problems[-1]}")


def sealed_campaign(seed: int, runs: int, family: str | None = None) -> Report:
    """About ``runs`` sessions per scenario, each with one mutated message; the messages
    worth mutating (``targets``) take turns so every one gets its share."""
    report = Report(f"sealed {family or 'any'}")
    rng = Random(seed)
    with LogWatch() as watch:
        for scenario in SCENARIOS:
            chosen = targets(scenario, family)
            report.figures[f"{scenario.name} messages mutated"] = len(chosen)
            for i in range(max(runs, len(chosen)) if chosen else 0):
                target = chosen[i % len(chosen)]
                sealed_run(scenario, target, i // len(chosen), rng, report, watch, family)
    report.absorb(watch)
    return report
