"""What ``pqike probe`` must report for a responder configured with given IKE proposals.

Computed from the proposal strings with pqike's parser, independently of the probe's plan:
the union of each transform type over the proposals, the methods of each ADDKE round, and
whether a round may be left out (a proposal without it, or with NONE in it). Interop and
exchange tests compare ``observed(report)`` with ``expected(proposals)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pqike.probe.report import Report, method_name
from pqike.proposal import is_aead, parse_proposals
from pqike.wire.iana import ADDKE_TYPES, ProtocolId, TransformType

T = TransformType


@dataclass(frozen=True)
class Capabilities:
    ke: frozenset[str]
    encr: frozenset[str]
    integ: frozenset[str]
    prf: frozenset[str]
    rounds: dict[int, frozenset[str]] = field(default_factory=dict)
    optional: dict[int, bool] = field(default_factory=dict)


def expected(proposals: str | list[str]) -> Capabilities:
    props = parse_proposals(ProtocolId.IKE, proposals)

    def names(ttype: int, which=props) -> frozenset[str]:
        return frozenset(t.algorithm for p in which for t in p.of_type(ttype))

    plain = [p for p in props if any(not is_aead(t.id) for t in p.of_type(T.ENCR))]
    rounds: dict[int, frozenset[str]] = {}
    optional: dict[int, bool] = {}
    for n, ttype in enumerate(ADDKE_TYPES, start=1):
        methods = frozenset(
            method_name(t.id) for p in props for t in p.of_type(ttype) if not t.is_none
        )
        if methods:
            rounds[n] = methods
            optional[n] = any(
                not p.of_type(ttype) or any(t.is_none for t in p.of_type(ttype)) for p in props
            )
    return Capabilities(
        ke=frozenset(method_name(t.id) for p in props for t in p.of_type(T.KE)),
        encr=names(T.ENCR),
        integ=names(T.INTEG, plain),
        prf=names(T.PRF),
        rounds=rounds,
        optional=optional,
    )


def observed(report: Report) -> Capabilities:
    return Capabilities(
        ke=frozenset(method_name(s.value) for s in report.ke),
        encr=frozenset(s.value.algorithm for s in report.encr),
        integ=frozenset(s.value.algorithm for s in report.integ),
        prf=frozenset(s.value.algorithm for s in report.prf),
        rounds={n: frozenset(method_name(m) for m in r.ids()) for n, r in report.rounds.items()},
        optional={n: r.optional.value for n, r in report.rounds.items() if r.optional is not None},
    )


def check_costs(report: Report) -> None:
    """The report's own accounting adds up, and every finding names a probe that was sent."""
    assert report.datagrams_sent == report.probes + report.retransmits + len(report.cookies)
    assert report.bytes_sent >= report.datagrams_sent * 200
    seen = [
        *report.ke,
        *report.encr,
        *report.integ,
        *report.prf,
        *report.vendor_ids,
        *report.cookies,
        *(s for r in report.rounds.values() for s in r.methods),
        *(r.optional for r in report.rounds.values() if r.optional),
        *(
            s
            for s in (report.fragmentation, report.childless, report.intermediate, report.ppk)
            if s is not None
        ),
    ]
    assert all(1 <= s.probe <= report.probes for s in seen), seen
