"""The probe's plan: which IKE_SA_INIT offers to send, and what each answer teaches.

A responder answers an IKE_SA_INIT request in one of a few ways, and each is used:

- INVALID_KE_PAYLOAD(m): some offered proposal is acceptable and the responder picked KE
  method m, but our KE payload is for another method. No state is created on the
  responder, so every yes/no question and the KE methods of IKE_SA_INIT are asked this way,
  with a *decoy* KE payload for a method the offer does not contain.
- an SA payload: the responder picked one proposal, one transform of each type. This leaves
  a half-open IKE_SA on the responder until its half-open timeout, so such probes are
  counted against a budget (Session) and kept to the few that name something new.
- NO_PROPOSAL_CHOSEN: nothing offered is acceptable; it ends a branch.

Enumerating the accepted transforms of a type is "offer every candidate not yet found,
learn which one was picked, remove it, repeat" until NO_PROPOSAL_CHOSEN: one probe per
accepted transform plus one. Every selection names one transform of *every* type, so later
enumerations start with what earlier ones found.

The plan is a generator: it yields ``Ask``s and is sent the ``Answer`` to each.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace

from kem import registry
from kem.errors import KemError
from pqike.probe.offer import NONE, ROUNDS, Candidates, Offer
from pqike.probe.report import Report, Seen
from pqike.probe.wire import USE_PPK_INT, Answer, Kind, redirect_gateway
from pqike.proposal import PRIVATE_USE, Proposal, Transform, is_aead
from pqike.wire.iana import ADDKE_TYPES, NotifyType, TransformType

T = TransformType


@dataclass(frozen=True, slots=True)
class Ask:
    """One probe: an offer, the method of the KE payload, and whether the KE payload is
    real (a selection, and so a half-open SA, may follow) or a decoy (it cannot)."""

    offer: Offer
    ke_method: int
    stateful: bool
    purpose: str
    vendor_id: bool = False  # send strongSwan's vendor ID (private-use methods in play)

    @property
    def proposals(self) -> list[Proposal]:
        return self.offer.proposals()


Plan = Generator[Ask, Answer, None]


def _size(method: int) -> int:
    try:
        return registry.get(method).sizes.public_value
    except KemError:
        return 1 << 20


def _usable(method: int) -> bool:
    """A KE payload we can build for real (the responder computes with it)."""
    try:
        return registry.get(method).available
    except KemError:
        return False


class Planner:
    def __init__(self, report: Report, private: str = "auto") -> None:
        self.r = report
        self.mode = private
        self.private = private == "yes"
        if self.private:
            self.r.private = Seen("--private", 0)
        self.cands = Candidates.from_registry(private=self.private)
        self.base: Offer | None = None
        self.group: int | None = None  # KE method of the stateful probes
        self._last_ask: Ask | None = None
        self._none_seen: dict[int, int] = {}  # round -> probe whose selection left it out
        self._first: Answer | None = None  # a selection made while finding the base

    # ---- plumbing ---------------------------------------------------------------------

    def _ask(
        self, offer: Offer, ke_method: int, *, stateful: bool, purpose: str
    ) -> Generator[Ask, Answer, Answer]:
        ask = Ask(offer, ke_method, stateful, purpose, vendor_id=self.private)
        self._last_ask = ask
        answer = yield ask
        self._learn_common(answer)
        if answer.kind is Kind.SELECTED:
            self._learn_selection(answer)
        return answer

    def _learn_common(self, a: Answer) -> None:
        if self.r.strongswan and self.mode == "auto" and self.r.private is None:
            self._enable_private(f"the gateway sent strongSwan's vendor ID (#{a.probe})", a)
        if a.kind is Kind.REDIRECT and self.r.redirect is None:
            self.r.redirect = Seen(redirect_gateway(a.notifies[NotifyType.REDIRECT]), a.probe)

    def _enable_private(self, why: str, a: Answer) -> None:
        self.private = True
        self.r.private = Seen(why, a.probe)
        self.cands = Candidates.from_registry(private=True)
        if self.base is not None:
            self.base = self._full(self.base.has_addke or bool(self.base.addke[0]))

    def _full(self, addke: bool) -> Offer:
        return Offer.full(self.cands, addke=addke)

    def _learn_selection(self, a: Answer) -> None:
        r, sel = self.r, a.selected
        assert sel is not None
        r.accepted = True
        for ttype, found in ((T.ENCR, r.encr), (T.INTEG, r.integ), (T.PRF, r.prf)):
            t = sel.first(ttype)
            if t is not None and all(s.value != t for s in found):
                found.append(Seen(t, a.probe))
        ke = sel.first(T.KE)
        if ke is not None and all(s.value != ke.id for s in r.ke):
            r.ke.append(Seen(ke.id, a.probe))
        offered = self._offered_rounds(a)
        selected = 0
        for n in range(1, ROUNDS + 1):
            t = sel.first(ADDKE_TYPES[n - 1])
            if t is not None:
                selected += 1
                rnd = r.round(n)
                if t.id not in rnd.ids():
                    rnd.methods.append(Seen(t.id, a.probe))
            elif NONE in offered[n - 1]:
                self._none_seen.setdefault(n, a.probe)
        if selected and (r.max_rounds is None or selected > r.max_rounds.value):
            r.max_rounds = Seen(selected, a.probe)
        self._capabilities(a, selected > 0)

    def _offered_rounds(self, a: Answer) -> list[set[int]]:
        ask = self._last_ask
        return [set(m) for m in ask.offer.addke] if ask else [set()] * ROUNDS

    def _capabilities(self, a: Answer, addke: bool) -> None:
        r = self.r
        if r.fragmentation is None:
            r.fragmentation = Seen(a.has(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED), a.probe)
            data = a.notifies.get(NotifyType.SIGNATURE_HASH_ALGORITHMS, b"")
            hashes = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data) - 1, 2)]
            r.signature_hashes = Seen(hashes, a.probe)
            r.childless = Seen(a.has(NotifyType.CHILDLESS_IKEV2_SUPPORTED), a.probe)
            r.ppk = Seen(a.has(NotifyType.USE_PPK), a.probe)
            r.ppk_int = Seen(a.has(USE_PPK_INT), a.probe)
        # strongSwan and pqike announce IKE_INTERMEDIATE only with additional key exchanges
        # selected, libreswan whenever it is configured: what counts is any announcement
        has_int = a.has(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED)
        if r.intermediate is None or (has_int and not r.intermediate.value):
            r.intermediate = Seen(has_int, a.probe)
            if addke and not has_int:
                r.notes.append(
                    f"#{a.probe} selected additional key exchanges without "
                    "INTERMEDIATE_EXCHANGE_SUPPORTED (RFC 9370 §2.2.1 requires it)"
                )

    # ---- the plan ---------------------------------------------------------------------

    def run(self) -> Plan:
        if not (yield from self._find_base()):
            return
        self.group = self.group or self._pick_group()
        if self.group is None:
            names = ", ".join(str(s.value) for s in self.r.ke)
            self.r.notes.append(f"no accepted KE method can be computed here ({names})")
            return
        assert self.base is not None
        first = self._first or (yield from self._select(self.base, "everything at once"))
        if first is None:
            return
        yield from self._enumerate_encr()
        yield from self._enumerate_integ()
        yield from self._enumerate_prf()
        if self.base.has_addke:
            yield from self._enumerate_rounds()

    def _decoy(self, offered: Sequence[int]) -> int:
        """The smallest KE method not offered: a KE payload the responder cannot accept."""
        pool = [m for m in (*self.cands.ke, *Candidates.from_registry(private=True).ke)]
        return min((m for m in pool if m not in offered), key=_size)

    def _yes_no(self, offer: Offer, purpose: str) -> Generator[Ask, Answer, Answer]:
        """Is any proposal of ``offer`` acceptable? Asked with a decoy KE payload."""
        decoy = self._decoy(offer.ke)
        return (yield from self._ask(offer, decoy, stateful=False, purpose=purpose))

    def _select(self, offer: Offer, purpose: str) -> Generator[Ask, Answer, Answer | None]:
        """Which proposal does the responder pick? A real KE payload; a half-open SA.

        Every KE method found is offered, ours first; a responder that picks a proposal with
        another one asks for it with INVALID_KE_PAYLOAD, and gets it (RFC 7296 §1.2)."""
        assert self.group is not None
        accepted = [s.value for s in self.r.ke if _usable(s.value) and s.value != self.group]
        offer = offer.with_ke([self.group, *accepted])
        if not offer.proposals():
            return None
        method = self.group
        for _ in range(2):
            a = yield from self._ask(offer, method, stateful=True, purpose=purpose)
            if a.kind is not Kind.INVALID_KE or a.group == method or a.group not in accepted:
                break
            method = a.group
        if a.kind is Kind.INVALID_KE:
            self.r.notes.append(f"#{a.probe} asked for KE {a.group}, which was not offered")
        if a.kind is Kind.SELECTED and a.detail:
            self.r.notes.append(f"#{a.probe}: {a.detail}")
        return a if a.kind is Kind.SELECTED else None

    # -- KE methods in IKE_SA_INIT (stateless) --

    def _find_base(self) -> Generator[Ask, Answer, bool]:
        """Find an acceptable offer and the KE methods accepted in IKE_SA_INIT."""
        for addke in (True, False):
            base = self._full(addke)
            if (yield from self._enumerate_ke(base, base.ke)):
                self.base = self._full(addke)  # private-use methods may have come in
                if not addke:
                    self.r.addke_refused = self.r.ke[0]
                    self.r.notes.append(
                        "proposals with additional key exchanges were refused even with NONE "
                        "in every round: the gateway does not know RFC 9370's transform types"
                    )
                if self.private:  # enabled on the way: probe the private-use KE methods
                    extra = [m for m in self.cands.ke if m >= PRIVATE_USE]
                    yield from self._enumerate_ke(self.base, extra)
                return True
            if not self._answered():
                return False
        if self.mode != "auto" or self.private:
            return False
        # nothing with IANA methods: would private-use ones do? (with strongSwan's vendor ID,
        # without which strongSwan never selects them)
        self.private = True
        self.cands = Candidates.from_registry(private=True)
        base = self._full(True)
        found = yield from self._enumerate_ke(base, base.ke)
        if found and self.r.private is None:
            # some responders (pqike) send their vendor ID only with a selection
            self.group = self._pick_group()
            if self.group is not None:
                self._first = yield from self._select(base, "everything, private-use too")
        if found and self.r.private is not None:  # the vendor ID came with an answer
            self.base = self._full(True)
            return True
        if found:  # private-use IDs accepted, but whose? Not named without a vendor ID.
            self.r.private_only = Seen(True, self.r.ke[0].probe)
            self.r.rounds.clear()
            self.r.max_rounds = None
        self.private = False
        return False

    def _answered(self) -> bool:
        return self.r.datagrams_received > 0

    def _enumerate_ke(self, base: Offer, pool: Sequence[int]) -> Generator[Ask, Answer, bool]:
        """INVALID_KE_PAYLOAD names the responder's pick; remove it and ask again. The pool
        is split in two halves, each asked with a decoy KE payload from the other half."""
        ordered = sorted(pool, key=_size)
        halves = [ordered[0::2], ordered[1::2]]
        found_any = False
        for half in halves:
            remaining = list(half)
            while remaining:
                a = yield from self._yes_no(base.with_ke(remaining), "KE methods in IKE_SA_INIT")
                if a.kind is Kind.INVALID_KE and a.group in remaining:
                    remaining.remove(a.group)
                    if all(s.value != a.group for s in self.r.ke):
                        self.r.ke.append(Seen(a.group, a.probe))
                    found_any = True
                    continue
                if a.kind is Kind.SELECTED:  # a responder that ignored our KE payload
                    self.r.notes.append(
                        f"#{a.probe} selected a proposal despite a wrong KE payload"
                    )
                    found_any = True
                    ke = a.selected.first(T.KE) if a.selected else None
                    if ke is not None and ke.id in remaining:
                        remaining.remove(ke.id)
                        continue
                if a.kind is Kind.TIMEOUT and not self._answered():
                    return False
                break
        return found_any

    def _pick_group(self) -> int | None:
        usable = [s.value for s in self.r.ke if _usable(s.value)]
        return min(usable, key=_size) if usable else None

    # -- ENCR / INTEG / PRF (selections) --

    def _remaining(self, cands: Sequence[Transform], found: list[Seen]) -> tuple[Transform, ...]:
        have = {s.value for s in found}
        return tuple(t for t in cands if t not in have)

    def _enumerate_encr(self) -> Generator[Ask, Answer, None]:
        assert self.base is not None
        while rest := self._remaining(self.cands.encr, self.r.encr):
            if (yield from self._select(replace(self.base, encr=rest), "encryption")) is None:
                return

    def _enumerate_integ(self) -> Generator[Ask, Answer, None]:
        assert self.base is not None
        if not any(not is_aead(s.value.id) for s in self.r.encr):
            return  # only AEAD ciphers: no integrity algorithm is ever negotiated
        plain = tuple(t for t in self.cands.encr if not is_aead(t.id))
        while rest := self._remaining(self.cands.integ, self.r.integ):
            offer = replace(self.base, encr=plain, integ=rest)
            if (yield from self._select(offer, "integrity")) is None:
                return

    def _enumerate_prf(self) -> Generator[Ask, Answer, None]:
        assert self.base is not None
        while rest := self._remaining(self.cands.prf, self.r.prf):
            if (yield from self._select(replace(self.base, prf=rest), "PRF")) is None:
                return

    # -- ADDKE1..7 --

    def _enumerate_rounds(self) -> Generator[Ask, Answer, None]:
        """Round by round: its methods not yet found, without NONE, every other round
        complete; stop at the first round that takes nothing (rounds are used in order)."""
        assert self.base is not None
        for n in range(1, ROUNDS + 1):
            yield from self._enumerate_round(n)
            rnd = self.r.round(n)
            if not rnd.methods:
                del self.r.rounds[n]
                break
            if rnd.optional is None and n in self._none_seen:
                rnd.optional = Seen(True, self._none_seen[n])
            if rnd.optional is None:
                offer = self.base.with_round(n, [NONE]).with_ke([s.value for s in self.r.ke])
                a = yield from self._yes_no(offer, f"ADDKE{n} optional?")
                if a.kind in (Kind.INVALID_KE, Kind.SELECTED):
                    rnd.optional = Seen(True, a.probe)
                elif a.kind is Kind.NO_PROPOSAL:
                    rnd.optional = Seen(False, a.probe)

    def _enumerate_round(self, n: int) -> Generator[Ask, Answer, None]:
        assert self.base is not None
        while True:
            found = set(self.r.round(n).ids())
            tested = [m for m in self.cands.addke if m not in found]
            if not tested:
                return
            offer = self.base.with_round(n, tested)
            if (yield from self._select(offer, f"ADDKE{n}")) is not None:
                continue
            # RFC 9370 forbids repeating a method, and responders choose round by round: an
            # earlier round may have taken the method this round would have chosen
            earlier = [m for k in range(1, n) for m in self.r.round(k).ids() if m in tested]
            if not earlier:
                return
            for k in range(1, n):
                offer = offer.with_round(k, [m for m in offer.addke[k - 1] if m not in tested])
            if (yield from self._select(offer, f"ADDKE{n}, earlier rounds without it")) is None:
                return
