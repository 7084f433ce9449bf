"""Helpers several tasks share: the responder's proposal choice with its diagnosis, the
key exchange backend for a negotiated method, and the log line of a new CHILD_SA."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kem import registry
from pqike.events import EventKind
from pqike.proposal import NoProposalChosen, Proposal, select_proposal
from pqike.sa.ts import fmt
from pqike.tasks.base import TaskFailed
from pqike.wire.iana import NotifyType

if TYPE_CHECKING:
    from kem.registry import Method
    from pqike.sa.child_sa import ChildSa
    from pqike.sa.ike_sa import IkeSa


def ke_backend(method: int) -> Method:
    """The registry entry for a negotiated method; NO_PROPOSAL_CHOSEN if we cannot run it."""
    try:
        m = registry.get(method)
    except KeyError as e:
        raise TaskFailed(
            f"key exchange method {method} unknown", NotifyType.NO_PROPOSAL_CHOSEN
        ) from e
    if not m.available:
        raise TaskFailed(
            f"key exchange method {m.log_name} unavailable: {m.unavailable_reason}",
            NotifyType.NO_PROPOSAL_CHOSEN,
        )
    return m


def responder_select(
    sa: IkeSa,
    received: Sequence[Proposal],
    configured: Sequence[Proposal],
    what: str,
    *,
    strip_ke: bool = False,
) -> Proposal:
    """Select as responder; on failure log why (received vs configured, the first
    transform type that did not match) and raise NO_PROPOSAL_CHOSEN."""
    try:
        return select_proposal(
            received,
            configured,
            strip_ke=strip_ke,
            prefer_configured=sa.svc.config.daemon.prefer_configured_proposals,
        )
    except NoProposalChosen as e:
        for line in e.diagnosis.log_lines():
            sa.cfg("%s", line)
        raise TaskFailed(f"{what}: no acceptable proposal", NotifyType.NO_PROPOSAL_CHOSEN) from e


def child_established(sa: IkeSa, child: ChildSa, rekeyed: ChildSa | None = None) -> None:
    sa.log(
        "CHILD_SA %s established with SPIs %08x_i %08x_o and TS %s === %s",
        child.label,
        child.spi_in,
        child.spi_out,
        fmt(child.local_ts),
        fmt(child.remote_ts),
    )
    if rekeyed is not None:
        sa.emit(EventKind.CHILD_REKEYED, f"{rekeyed.label} -> {child.label}", child)
    else:
        sa.emit(EventKind.CHILD_ESTABLISHED, "", child)
