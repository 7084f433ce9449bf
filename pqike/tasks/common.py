"""Helpers several tasks share: the responder's proposal choice with its diagnosis, the
initiator's check of the answer, the key exchange backend for a negotiated method, and the
log line of a new CHILD_SA."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from kem import registry
from pqike.events import EventKind
from pqike.memo import Memo
from pqike.proposal import (
    PRIVATE_SKIPPED_LOG,
    NoProposalChosen,
    PrivateUseRefused,
    Proposal,
    Transform,
    check_selected,
    select_proposal,
)
from pqike.proposal.model import is_ke_type
from pqike.sa.ts import TrafficSelector, fmt
from pqike.tasks.base import TaskFailed
from pqike.tasks.ike_vendor import private_algs_ok
from pqike.wire.iana import NotifyType

if TYPE_CHECKING:
    from kem.registry import Method
    from pqike.config import Child
    from pqike.sa.child_sa import ChildSa
    from pqike.sa.ike_sa import IkeSa


# Methods found computable here. kem.registry loads each provider once and keeps what it
# got, so a method available once stays available: asked for every KE transform of our
# proposals in every IKE_SA_INIT, that answer is kept (at most one entry per registered ID).
_AVAILABLE: set[int] = set()


def _available(m: Method) -> bool:
    if m.id in _AVAILABLE:
        return True
    if m.available:
        _AVAILABLE.add(m.id)
        return True
    return False


def ke_backend(method: int) -> Method:
    """The registry entry for a negotiated method; NO_PROPOSAL_CHOSEN if we cannot run it."""
    try:
        m = registry.get(method)
    except KeyError as e:
        raise TaskFailed(
            f"key exchange method {method} unknown", NotifyType.NO_PROPOSAL_CHOSEN
        ) from e
    if not _available(m):
        raise TaskFailed(
            f"key exchange method {m.log_name} unavailable: {m.unavailable_reason}",
            NotifyType.NO_PROPOSAL_CHOSEN,
        )
    return m


def _computable_id(method: int) -> bool:
    if method == 0:  # NONE: an optional additional key exchange
        return True
    if method in _AVAILABLE:
        return True
    try:
        return _available(registry.get(method))
    except KeyError:
        return False


def computable(sa: IkeSa, configured: Sequence[Proposal]) -> list[Proposal]:
    """Our proposals without the key exchange methods no provider here computes (liboqs
    went away after the config was loaded): a responder must never select one and then
    fail half-way through the handshake. A type left empty drops its proposal."""
    out = []
    for p in configured:
        if _AVAILABLE.issuperset(p.ke_ids):  # each method found computable before
            out.append(p)
            continue
        gone = [
            t
            for ttype in p.types
            if is_ke_type(ttype)
            for t in p.of_type(ttype)
            if not _computable_id(t.id)
        ]
        if gone:
            keep = tuple(t for t in p.transforms if t not in gone)
            if {t.type for t in keep} != set(p.types):
                sa.cfg("proposal %s dropped: a key exchange method is unavailable here", p)
                continue
            p = replace(p, transforms=keep)
        out.append(p)
    return out


# Successful selections by what decides them: the received proposals without their SPIs,
# our usable proposals and the options. Every peer of a kind sends the same SA payload
# (IKE_SA_INIT's, IKE_AUTH's ESP one with a fresh SPI): the walk over both lists runs once.
# The value: index of the received proposal chosen, the proposal chosen (a hit renumbers it
# with that proposal's number and SPI: no sort and grouping again), private-use transforms
# skipped on the way (logged again on a hit).
_SELECTED_TRANSFORMS_MAX = 64  # a longer SA payload is selected afresh, not kept
_Selected = tuple[int, Proposal, tuple[str, ...]]
_selected: Memo[tuple[object, ...], _Selected] = Memo(256)


def _selection_key(
    received: Sequence[Proposal], usable: list[Proposal], *options: bool
) -> tuple[object, ...] | None:
    """None if not worth keeping: too long, or proposal numbers repeated (the SPI of the
    chosen one is found by its number)."""
    numbers = {p.number for p in received}
    if len(numbers) != len(received):
        return None
    if sum(len(p.transforms) for p in received) > _SELECTED_TRANSFORMS_MAX:
        return None
    shape = tuple((p.protocol, p.number, p.transforms) for p in received)
    return (shape, tuple(usable), *options)


def responder_select(
    sa: IkeSa,
    received: Sequence[Proposal],
    configured: Sequence[Proposal],
    what: str | Callable[[], str],
    *,
    strip_ke: bool = False,
) -> Proposal:
    """Select as responder; on failure log why (received vs configured, the first
    transform type that did not match) and raise NO_PROPOSAL_CHOSEN naming ``what`` (a
    callable if the name takes work: only a failure needs it). Private-use IDs are
    only selected if the peer sent strongSwan's vendor ID (or accept_private_algs)."""
    usable = computable(sa, configured)
    prefer = sa.svc.config.daemon.prefer_configured_proposals
    skip_private = not private_algs_ok(sa)
    key = _selection_key(received, usable, strip_ke, prefer, skip_private)
    hit = _selected.get(key) if key is not None else None
    if hit is not None:
        index, chosen, skipped_names = hit
        r = received[index]
        _log_private_skipped(sa, list(skipped_names))
        return chosen.numbered(r.number, r.spi)
    skipped: list[Transform] = []
    try:
        selected = select_proposal(
            received,
            usable,
            strip_ke=strip_ke,
            prefer_configured=prefer,
            skip_private=skip_private,
            on_private_skipped=skipped.append,
        )
    except NoProposalChosen as e:
        _log_private_skipped(sa, [str(t) for t in skipped])
        for line in e.diagnosis.log_lines():
            sa.cfg("%s", line)
        label = what() if callable(what) else what
        raise TaskFailed(f"{label}: no acceptable proposal", NotifyType.NO_PROPOSAL_CHOSEN) from e
    names = [str(t) for t in skipped]
    _log_private_skipped(sa, names)
    if key is not None:
        index = next(i for i, r in enumerate(received) if r.number == selected.number)
        _selected.keep(key, (index, selected, tuple(names)))
    return selected


def check_response(sa: IkeSa, offered: Sequence[Proposal], selected: Proposal) -> Proposal:
    """The initiator's check of the responder's choice (check_selected), refusing a
    private-use algorithm unless the peer sent strongSwan's vendor ID (strongSwan runs its
    selection with PROPOSAL_SKIP_PRIVATE over the answer, too)."""
    try:
        return check_selected(offered, selected, skip_private=not private_algs_ok(sa))
    except PrivateUseRefused as e:
        _log_private_skipped(sa, [e.token])
        raise


def _log_private_skipped(sa: IkeSa, names: list[str]) -> None:
    """strongSwan's line, once per selection, naming what was skipped."""
    if names:
        sa.cfg("%s (%s)", PRIVATE_SKIPPED_LOG, ", ".join(sorted(set(names))))


class _Selectors:
    """Selectors printed when their log line is written: in the daemon's batch that is
    after the response is sent (pqike.log.batched). A tuple of frozen selectors, so the
    line reads the same then."""

    __slots__ = ("tss",)
    _frozen_for_log = True

    def __init__(self, tss: list[TrafficSelector]) -> None:
        self.tss = tuple(tss)

    def __str__(self) -> str:
        return fmt(list(self.tss))


def child_established(sa: IkeSa, child: ChildSa, rekeyed: ChildSa | None = None) -> None:
    if sa.log.enabled(1):  # formatting the selectors is most of the line's cost
        sa.log(
            "CHILD_SA %s established with SPIs %08x_i %08x_o and TS %s === %s",
            child.label,
            child.spi_in,
            child.spi_out,
            _Selectors(child.local_ts),
            _Selectors(child.remote_ts),
        )
    if rekeyed is not None:
        sa.emit(EventKind.CHILD_REKEYED, f"{rekeyed.label} -> {child.label}", child)
    else:
        sa.emit(EventKind.CHILD_ESTABLISHED, "", child)


def best_child_config(
    sa: IkeSa,
    tsi: list[TrafficSelector],
    tsr: list[TrafficSelector],
    my_dyn: list[str],
    peer_dyn: list[str],
) -> tuple[str, Child, list[TrafficSelector], list[TrafficSelector]] | None:
    """The child config that fits the proposed selectors best, with them narrowed.

    As strongSwan's peer_cfg get_ts_match(): a proposed selector equal to a configured one
    scores 5, one that merely intersects scores 1, so a request for exactly a ``host``
    child's selectors is not taken by a wider ``net`` child listed first.
    """
    best: tuple[int, str, Child, list[TrafficSelector], list[TrafficSelector]] | None = None
    for name, cfg in sa.conn.children.items():
        n_tsr, score_r = _narrow_scored(tsr, configured_ts(cfg.selectors("local"), my_dyn))
        if not n_tsr:
            continue
        n_tsi, score_i = _narrow_scored(tsi, configured_ts(cfg.selectors("remote"), peer_dyn))
        if not n_tsi:
            continue
        score = score_r + score_i
        if best is None or score > best[0]:
            best = (score, name, cfg, n_tsr, n_tsi)
    return None if best is None else best[1:]


def _narrow_scored(
    proposed: list[TrafficSelector], configured: list[TrafficSelector]
) -> tuple[list[TrafficSelector], int]:
    """narrow() and the fit of the proposed selectors from one intersection per pair: 5
    for one equal to a configured selector, 1 for one that merely intersects."""
    out: list[TrafficSelector] = []
    score = 0
    for p in proposed:
        fit = 0
        for c in configured:
            i = p.intersect(c)
            if i is None:
                continue
            fit = 5 if fit == 5 or p == c else 1
            if i not in out:
                out.append(i)
        score += fit
    return out, score


def configured_ts(specs: list[TrafficSelector | None], dynamic: list[str]) -> list[TrafficSelector]:
    """Configured selectors with ``dynamic`` (None) replaced by the given addresses."""
    out: list[TrafficSelector] = []
    for ts in specs:
        if ts is None:
            out += [TrafficSelector.host(a) for a in dynamic]
        else:
            out.append(ts)
    return out
