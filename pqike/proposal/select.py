"""Proposal selection (RFC 7296 §2.7, §3.3.6; RFC 9370 §2.2.1) with a mismatch diagnosis.

The algorithm is strongSwan's (libstrongswan crypto/proposal/proposal.c proposal_select(),
select_proposal(), select_algos(), select_algo()):

- one side's proposals are iterated in order ("preferred"), and for each the other side's
  in order; the first pair that matches wins. By default (``prefer_configured_proposals =
  yes``) our configured proposals are preferred, otherwise the received ones;
- within a pair, every transform type either side has is matched, in display order (ENCR,
  INTEG, PRF, KE, ESN, ADDKE1..7), taking the preferred side's algorithms in order and the
  first one the other side also has (same ID and key length);
- a KE type (ESP/AH KE, any ADDKE) one side lacks entirely matches only if the other side
  offers NONE for it; when both sides have it, NONE is chosen only if both offer it;
  a NONE choice leaves the type out of the selected proposal;
- a KE/ADDKE method already chosen for an earlier KE type is skipped (RFC 9370: no
  repeated method except NONE); the choice is greedy, there is no backtracking;
- INTEG is not needed once an AEAD cipher is chosen;
- proposal number and SPI always come from the received proposal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from pqike.memo import Memo
from pqike.proposal.model import (
    Proposal,
    Transform,
    display_key,
    format_proposals,
    is_aead,
    is_ke_type,
    type_label,
)
from pqike.proposal.parse import ProposalError
from pqike.wire.iana import PRIVATE_USE, ProtocolId, TransformType

__all__ = [
    "PRIVATE_SKIPPED_LOG",
    "PRIVATE_USE",
    "Diagnosis",
    "MismatchKind",
    "NoProposalChosen",
    "PairDiagnosis",
    "PrivateUseRefused",
    "TypeMismatch",
    "check_selected",
    "diagnose",
    "select_proposal",
    "strip_ke",
]

T = TransformType
# strongSwan's proposal.c select_algo() line when PROPOSAL_SKIP_PRIVATE refuses a match
PRIVATE_SKIPPED_LOG = (
    "an algorithm from private space would match, but peer implementation is unknown, skipped"
)


class MismatchKind(Enum):
    PROTOCOL = "protocol"  # IKE vs ESP vs AH
    ABSENT = "absent"  # a type one side lacks and that is not optional
    NO_COMMON = "no common algorithm"
    REPEATED = "repeated key exchange method"  # only methods already chosen in common
    PRIVATE = "private-use algorithm skipped"  # only private IDs in common, peer unknown


def _names(ts: Sequence[Transform]) -> str:
    return ", ".join(t.algorithm for t in ts) or "none"


@dataclass(frozen=True, slots=True)
class TypeMismatch:
    """Why one transform type of a received/configured proposal pair did not match."""

    type: int | None  # None for a protocol mismatch
    kind: MismatchKind
    protocol: ProtocolId
    received: tuple[Transform, ...] = ()
    configured: tuple[Transform, ...] = ()
    repeated: tuple[Transform, ...] = ()  # methods already chosen for an earlier KE type
    configured_protocol: ProtocolId | None = None  # set for a protocol mismatch

    @property
    def is_pfs(self) -> bool:
        """The KE transform of a CHILD_SA proposal: the PFS group."""
        return self.type == T.KE and self.protocol != ProtocolId.IKE

    @property
    def label(self) -> str:
        if self.type is None:
            return "protocol"
        return "KE (PFS group)" if self.is_pfs else type_label(self.type)

    def __str__(self) -> str:
        rx, cfg = _names(self.received), _names(self.configured)
        if self.kind is MismatchKind.PROTOCOL:
            other = self.configured_protocol.name if self.configured_protocol else "?"
            return f"protocol: received {self.protocol.name}, configured {other}"
        if self.is_pfs:
            return f"{self.label} mismatch: {self._pfs_text()}"
        text = f"{self.label}: received {rx}, configured {cfg}"
        if self.kind is MismatchKind.ABSENT:
            if self.type is not None and is_ke_type(self.type):
                text += " (no NONE offered)"
            else:
                text += " (not optional)"
        elif self.kind is MismatchKind.REPEATED:
            text += (
                f" (only {_names(self.repeated)} in common, already chosen for an earlier "
                "key exchange; RFC 9370 forbids repeating a method)"
            )
        elif self.kind is MismatchKind.PRIVATE:
            text += (
                " (only private-use IDs in common, and the peer sent no strongSwan vendor ID:"
                " send_vendor_id = yes on its side, or accept_private_algs = yes here)"
            )
        return text

    def _pfs_text(self) -> str:
        rx = [t for t in self.received if not t.is_none]
        cfg = [t for t in self.configured if not t.is_none]
        if not self.received:
            return f"peer offered no KE transform, we require {_names(cfg)}"
        if not self.configured:
            return (
                f"peer requires {_names(rx)}, we have no KE configured (no PFS) "
                "and it did not offer NONE"
            )
        if not rx:
            return f"peer offered only NONE (no PFS), we require {_names(cfg)}"
        return f"peer offered {_names(self.received)}, we require {_names(self.configured)}"


@dataclass(frozen=True, slots=True)
class PairDiagnosis:
    """All mismatching types of one received/configured proposal pair, first one first."""

    received_index: int
    configured_index: int
    received: Proposal
    configured: Proposal
    mismatches: tuple[TypeMismatch, ...]

    @property
    def first(self) -> TypeMismatch:
        return self.mismatches[0]

    @property
    def pfs_only(self) -> bool:
        """Everything but the PFS group (CHILD_SA KE) would have matched."""
        return all(m.is_pfs for m in self.mismatches)

    def __str__(self) -> str:
        return (
            f"received #{self.received_index + 1} vs configured #{self.configured_index + 1}: "
            f"{self.first}"
        )


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Why no proposal was chosen: both lists and every pair that was tried."""

    received: tuple[Proposal, ...]
    configured: tuple[Proposal, ...]
    pairs: tuple[PairDiagnosis, ...]
    strip_ke: bool = False

    @property
    def closest(self) -> PairDiagnosis | None:
        """The pair with the fewest mismatching types (earliest on ties)."""
        candidates = [p for p in self.pairs if p.first.kind is not MismatchKind.PROTOCOL]
        return min(candidates or self.pairs, key=lambda p: len(p.mismatches), default=None)

    @property
    def pfs_mismatch(self) -> bool:
        """The closest pair differs only in its PFS group: this CHILD_SA came up in IKE_AUTH
        (where KE is ignored) and now fails on every rekey (reference 001)."""
        best = self.closest
        return best is not None and best.pfs_only

    @property
    def reason(self) -> str:
        if not self.received:
            return "peer sent no proposals"
        if not self.configured:
            return "no proposals configured"
        best = self.closest
        assert best is not None
        return str(best.first)

    @property
    def hint(self) -> str | None:
        """Operator advice for the PFS case, the one that silently breaks rekeying."""
        best = self.closest
        if best is None or not self.pfs_mismatch:
            return None
        return (
            f"only the PFS group differs from {best.configured}; a CHILD_SA created in "
            "IKE_AUTH ignores KE, so this fails when rekeying or in CREATE_CHILD_SA: "
            "configure the same KE method (or none) in esp_proposals on both ends"
        )

    def log_lines(self) -> list[str]:
        """What to log at level 1, like strongSwan, plus one line per pair tried."""
        return [
            f"received proposals: {format_proposals(self.received)}",
            f"configured proposals: {format_proposals(self.configured)}",
            f"no acceptable proposal found: {self.reason}",
            *([f"  hint: {self.hint}"] if self.hint else []),
            *(f"  {pair}" for pair in self.pairs),
        ]

    def __str__(self) -> str:
        return "\n".join(self.log_lines())


class NoProposalChosen(Exception):
    """No acceptable proposal: answer NO_PROPOSAL_CHOSEN; ``diagnosis`` says why."""

    def __init__(self, diagnosis: Diagnosis) -> None:
        self.diagnosis = diagnosis
        super().__init__(f"no acceptable proposal found: {diagnosis.reason}")


OnPrivateSkipped = Callable[[Transform], None]


@dataclass(slots=True)
class _Match:
    selected: list[Transform] = field(default_factory=list)
    mismatches: list[TypeMismatch] = field(default_factory=list)


def _select_type(
    pref: Proposal,
    other: Proposal,
    ttype: int,
    used: set[int],
    skip_private: OnPrivateSkipped | None,
) -> tuple[Transform | None, MismatchKind | None, tuple[Transform, ...]]:
    """select_algo(): (chosen transform or None for "nothing/NONE", failure kind, repeats)."""
    mine, theirs = pref.of_type(ttype), other.of_type(ttype)
    optional = is_ke_type(ttype) and (pref.protocol != ProtocolId.IKE or ttype != T.KE)
    if not mine or not theirs:
        present = mine or theirs
        if optional and any(t.is_none for t in present):
            return None, None, ()  # absent on one side == NONE, which the other offers
        return None, MismatchKind.ABSENT, ()
    repeated: list[Transform] = []
    private = False
    for t1 in mine:
        for t2 in theirs:
            if t1.id != t2.id or t1.key_length != t2.key_length:
                continue
            if is_ke_type(ttype) and not t1.is_none and t1.id in used:
                repeated.append(t1)
            elif skip_private is not None and t1.id >= PRIVATE_USE:
                skip_private(t1)
                private = True
            else:
                return (None if t1.is_none else t1), None, ()
            break
    if repeated:
        return None, MismatchKind.REPEATED, tuple(repeated)
    return None, (MismatchKind.PRIVATE if private else MismatchKind.NO_COMMON), ()


def _match_pair(
    received: Proposal,
    configured: Proposal,
    *,
    prefer_configured: bool,
    strip: bool,
    skip_private: OnPrivateSkipped | None,
) -> _Match:
    """select_algos() over every type; keeps going after a failure to list all mismatches."""
    m = _Match()
    pref, other = (configured, received) if prefer_configured else (received, configured)
    if pref.protocol != other.protocol:
        m.mismatches.append(
            TypeMismatch(
                None,
                MismatchKind.PROTOCOL,
                received.protocol,
                configured_protocol=configured.protocol,
            )
        )
        return m
    types = sorted(set(pref.types) | set(other.types), key=display_key)
    used: set[int] = set()
    skip_integ = False
    for ttype in types:
        if (ttype == T.INTEG and skip_integ) or (strip and is_ke_type(ttype)):
            continue
        chosen, kind, repeated = _select_type(pref, other, ttype, used, skip_private)
        if kind is not None:
            m.mismatches.append(
                TypeMismatch(
                    ttype,
                    kind,
                    received.protocol,
                    received.of_type(ttype),
                    configured.of_type(ttype),
                    repeated,
                )
            )
            continue
        if chosen is None:
            continue
        m.selected.append(chosen)
        if is_ke_type(ttype):
            used.add(chosen.id)
        if ttype == T.ENCR and is_aead(chosen.id):
            skip_integ = True  # "no integrity algorithm required, we have an AEAD"
    return m


def _run(
    received: Sequence[Proposal],
    configured: Sequence[Proposal],
    prefer_configured: bool,
    strip: bool,
    skip_private: OnPrivateSkipped | None,
) -> Proposal | Diagnosis:
    pairs: list[PairDiagnosis] = []
    rx = list(enumerate(received))
    cfg = list(enumerate(configured))
    outer, inner = (cfg, rx) if prefer_configured else (rx, cfg)
    for oi, op in outer:
        for ii, ip in inner:
            (ri, r), (ci, c) = ((ii, ip), (oi, op)) if prefer_configured else ((oi, op), (ii, ip))
            m = _match_pair(
                r, c, prefer_configured=prefer_configured, strip=strip, skip_private=skip_private
            )
            if not m.mismatches:
                return Proposal(r.protocol, tuple(m.selected), number=r.number, spi=r.spi)
            pairs.append(PairDiagnosis(ri, ci, r, c, tuple(m.mismatches)))
    return Diagnosis(tuple(received), tuple(configured), tuple(pairs), strip_ke=strip)


def _skipper(
    skip_private: bool, on_private_skipped: OnPrivateSkipped | None
) -> OnPrivateSkipped | None:
    if not skip_private:
        return None
    return on_private_skipped or (lambda t: None)


def select_proposal(
    received: Sequence[Proposal],
    configured: Sequence[Proposal],
    *,
    prefer_configured: bool = True,
    strip_ke: bool = False,
    skip_private: bool = False,
    on_private_skipped: OnPrivateSkipped | None = None,
) -> Proposal:
    """The responder's choice: one transform per type, number and SPI of the received one.

    ``prefer_configured`` is strongSwan's ``charon.prefer_configured_proposals`` (default
    yes). ``strip_ke`` ignores KE and ADDKE on both sides: the CHILD_SA created in IKE_AUTH
    has no key exchange of its own (RFC 7296 §1.2; strongSwan ignores KE transforms a peer
    still sends there). ``skip_private`` refuses IDs >= 1024, as strongSwan does unless the
    peer sent its vendor ID (or ``accept_private_algs``); ``on_private_skipped`` is called
    with each private-use transform that would have matched (where strongSwan logs
    PRIVATE_SKIPPED_LOG).

    Raises NoProposalChosen with a Diagnosis.
    """
    skipper = _skipper(skip_private, on_private_skipped)
    result = _run(received, configured, prefer_configured, strip_ke, skipper)
    if isinstance(result, Diagnosis):
        raise NoProposalChosen(result)
    return result


def diagnose(
    received: Sequence[Proposal],
    configured: Sequence[Proposal],
    *,
    prefer_configured: bool = True,
    strip_ke: bool = False,
    skip_private: bool = False,
) -> Diagnosis | None:
    """The Diagnosis select_proposal() would raise, or None if a proposal matches."""
    result = _run(received, configured, prefer_configured, strip_ke, _skipper(skip_private, None))
    return result if isinstance(result, Diagnosis) else None


def strip_ke(proposals: Sequence[Proposal]) -> tuple[Proposal, ...]:
    """Our proposals for IKE_AUTH: KE/ADDKE removed and duplicates that leaves dropped
    (strongSwan child_cfg.c get_proposals(strip_ke))."""
    out: list[Proposal] = []
    for p in proposals:
        q = p.without_ke()
        if not any(q.same_transforms(o) for o in out):
            out.append(q)
    return tuple(out)


class PrivateUseRefused(ProposalError):
    """The responder chose a private-use transform (ID >= 1024) but we don't know that the
    peer means by it what we do (strongSwan: no vendor ID from the peer)."""


# The initiator's checks of answers, by value: a responder answers the same offer with the
# same choice in every handshake, and the check sorts and groups a new Proposal. The key is all
# the check reads (our offer, the answer's protocol, transforms and number, skip_private), so
# the result less its SPI is a function of it; a refusal is never kept, and a hostile
# responder's distinct answers fill at most the memo's 256 entries.
_CHECKED: Memo[tuple[object, ...], Proposal] = Memo(256)


def check_selected(
    offered: Sequence[Proposal], selected: Proposal, *, skip_private: bool = False
) -> Proposal:
    """Initiator side: is the responder's single proposal a valid choice from ours?

    RFC 7296 §3.3.6: it carries the number of one of our proposals and exactly one
    transform of each type, each one we offered in that proposal. A type we offered may
    be missing only where that is a choice: INTEG with an AEAD cipher, and a KE type for
    which we offered NONE (IKE's KE never). An explicit NONE transform is accepted where we
    offered NONE and left out of the result. RFC 9370: no KE method may repeat.

    ``offered`` are the proposals as sent (already stripped for IKE_AUTH); unnumbered ones
    count 1, 2, ... by position. ``skip_private`` refuses a private-use transform, as
    strongSwan's initiator does when it runs its selection with PROPOSAL_SKIP_PRIVATE over
    the answer (PrivateUseRefused). Raises ProposalError naming the offending transform.
    """
    number = selected.number
    key = (tuple(offered), selected.protocol, selected.transforms, number, skip_private)
    checked = _CHECKED.get(key)
    if checked is None:
        checked = _CHECKED.keep(key, _check(offered, selected, skip_private))
    return checked.numbered(number, selected.spi)


def _check(offered: Sequence[Proposal], selected: Proposal, skip_private: bool) -> Proposal:
    """check_selected() without the memo; the result carries no SPI (the caller's)."""
    numbered = {(p.number or i + 1): p for i, p in enumerate(offered)}
    ours = numbered.get(selected.number)
    if ours is None:
        raise ProposalError(f"#{selected.number}", "not a proposal number we offered")
    if ours.protocol != selected.protocol:
        raise ProposalError(selected.protocol.name, f"we offered {ours.protocol.name}")
    kept: list[Transform] = []
    methods: dict[int, int] = {}
    for ttype in selected.types:
        got = selected.of_type(ttype)
        if len(got) != 1:
            raise ProposalError(_names(got), f"{type_label(ttype)}: more than one transform")
        t = got[0]
        if t not in ours.of_type(ttype):
            offered = _names(ours.of_type(ttype))
            raise ProposalError(str(t), f"{type_label(ttype)}: not offered (we offered {offered})")
        if t.is_none:
            continue
        if skip_private and t.id >= PRIVATE_USE:
            raise PrivateUseRefused(
                str(t),
                "private-use algorithm, but the peer sent no strongSwan vendor ID "
                "(send_vendor_id = yes on its side, or accept_private_algs = yes here)",
            )
        if is_ke_type(ttype):
            if t.id in methods:
                raise ProposalError(
                    str(t), f"repeats the method of {type_label(methods[t.id])} (RFC 9370)"
                )
            methods[t.id] = ttype
        kept.append(t)
    encr = selected.first(T.ENCR)
    for ttype in ours.types:
        if selected.of_type(ttype):
            continue
        if ttype == T.INTEG and encr is not None and is_aead(encr.id):
            continue
        optional = is_ke_type(ttype) and (ours.protocol != ProtocolId.IKE or ttype != T.KE)
        if optional and any(t.is_none for t in ours.of_type(ttype)):
            continue
        raise ProposalError(
            type_label(ttype),
            f"missing from the selected proposal (we offered {_names(ours.of_type(ttype))})",
            str(selected),
        )
    return Proposal(selected.protocol, tuple(kept), number=selected.number)
