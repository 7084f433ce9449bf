"""RFC 7383 reassembly of Encrypted Fragment (SKF) payloads, with bounded memory.

Fragments reach this module already decrypted and authenticated (each SKF carries its own
ICV), but before IKE_AUTH completes the keys are those of IKE_SA_INIT, which an
unauthenticated peer holds: every half-open IKE_SA can make us keep fragments. What is
bounded here:
- per reassembly: the fragments of one message and its bytes (max_packet); each IKE_SA
  reassembles at most one message per direction (a newer one supersedes it);
- daemon-wide: the memory of all reassemblies (reassembly_memory), counted with what Python
  spends on each fragment, so a flood of tiny fragments costs what it weighs;
- IKE_SAs not yet authenticated share at most half of it (PREAUTH_SHARE); the rest is
  always there for IKE_SAs past IKE_AUTH. When that share is full, the oldest partial
  message of an unauthenticated IKE_SA is dropped to make room: a legitimate peer sends
  its fragments back to back and completes long before an attacker's stalled messages,
  so refusing new reassemblies instead would let whoever filled the share first keep it.

Rules (RFC 7383 §2.6, as strongSwan's ``add_fragment_v2()`` applies them):
- fragment numbers run 1..total; 0 or > total is dropped;
- a duplicate is ignored (the first copy wins, even if the content differs);
- a larger total restarts the reassembly, a smaller total is dropped;
- the first inner payload type is taken from fragment 1 only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import Enum

from pqike.log import Subsystem, get_logger

# What Python holds beyond the plaintext (measured in tests/unit/test_sa_fragments.py):
# a bytes object and a dict slot per fragment, a _Pending and its dict per message.
CHUNK_OVERHEAD = 96
PENDING_OVERHEAD = 384
PREAUTH_SHARE = 0.5  # of reassembly_memory, for IKE_SAs that have not completed IKE_AUTH


class FragmentVerdict(Enum):
    WAITING = "waiting"
    COMPLETE = "complete"
    DUPLICATE = "duplicate"
    DROPPED = "dropped"


# read per fragment: a global, not FragmentVerdict.WAITING (~120 ns on Python 3.11, whose
# EnumType.__getattr__ keeps that attribute load from being specialized)
_WAITING, _COMPLETE = FragmentVerdict.WAITING, FragmentVerdict.COMPLETE


@dataclass(frozen=True, slots=True)
class FragmentLimits:
    max_fragments: int = 255  # Total Fragments field is 16 bits; strongSwan caps at 255
    max_message: int = 65535  # bytes of reassembled plaintext (charon.max_packet)
    max_total: int = 4 * 1024 * 1024  # bytes held by all reassemblies of the daemon


@functools.lru_cache(maxsize=16)
def fragment_limits(max_fragments: int, max_message: int, max_total: int) -> FragmentLimits:
    """One shared FragmentLimits per configuration (every IKE_SA holds a reference)."""
    return FragmentLimits(max_fragments, max_message, max_total)


@dataclass(slots=True)
class FragmentResult:
    verdict: FragmentVerdict
    reason: str = ""
    first_inner: int = 0
    plaintext: bytes = b""
    received: int = 0
    total: int = 0


class MemoryBudget:
    """The memory of every pending reassembly of the daemon, and the share of it that
    IKE_SAs not yet authenticated may hold (oldest partial message evicted first)."""

    def __init__(self, limit: int, preauth_limit: int | None = None) -> None:
        self.set_limit(limit, preauth_limit)
        self.used = 0
        self.preauth_used = 0
        self.evictions = 0
        self._preauth: dict[Reassembler, None] = {}  # unauthenticated, oldest message first

    def set_limit(self, limit: int, preauth_limit: int | None = None) -> None:
        """(Re)configure; what is held beyond a smaller limit drains as messages finish."""
        self.limit = limit
        self.preauth_limit = int(limit * PREAUTH_SHARE) if preauth_limit is None else preauth_limit

    def _fits(self, n: int, authenticated: bool) -> bool:
        if self.used + n > self.limit:
            return False
        return authenticated or self.preauth_used + n <= self.preauth_limit

    def take(self, owner: Reassembler, n: int, authenticated: bool) -> bool:
        """Charge ``n`` bytes to ``owner``'s pending message, evicting the oldest
        unauthenticated partial messages (never ``owner``'s, never an authenticated one)
        while they do not fit."""
        while not self._fits(n, authenticated):
            victim = next((r for r in self._preauth if r is not owner), None)
            if victim is None:
                return False
            victim.evict(self.preauth_used, self.preauth_limit)
            self.evictions += 1
        self.used += n
        if not authenticated:
            self.preauth_used += n
            self._preauth.setdefault(owner, None)
        return True

    def give(self, owner: Reassembler, n: int, authenticated: bool) -> None:
        self.used = max(0, self.used - n)
        if not authenticated:
            self.preauth_used = max(0, self.preauth_used - n)
            self._preauth.pop(owner, None)


@dataclass(slots=True)
class _Pending:
    message_id: int
    total: int
    authenticated: bool
    chunks: dict[int, bytes] = field(default_factory=dict)
    first_inner: int = 0
    size: int = 0  # plaintext bytes (max_message applies to these)
    charged: int = 0  # what the budget holds for this message


class Reassembler:
    """Reassembly of one direction of one IKE_SA (requests or responses)."""

    __slots__ = ("_pending", "budget", "limits", "owner")

    def __init__(
        self, limits: FragmentLimits, budget: MemoryBudget | None = None, owner: str = ""
    ) -> None:
        self.limits = limits
        self.budget = budget or MemoryBudget(limits.max_total)
        self.owner = owner  # the IKE_SA's log context, for the eviction log line
        self._pending: _Pending | None = None

    @property
    def pending_message_id(self) -> int | None:
        return self._pending.message_id if self._pending else None

    @property
    def held(self) -> int:
        """Bytes the budget holds for this reassembly."""
        return self._pending.charged if self._pending else 0

    def reset(self) -> None:
        p, self._pending = self._pending, None
        if p is not None and p.charged:
            self.budget.give(self, p.charged, p.authenticated)

    def evict(self, used: int, limit: int) -> None:
        p = self._pending
        if p is None:
            return
        get_logger(Subsystem.ENC, self.owner)(
            "dropping partial IKE message %d (%d of %d fragments, %d bytes): reassembly "
            "memory of unauthenticated IKE_SAs full (%d of %d bytes), it is the oldest",
            p.message_id,
            len(p.chunks),
            p.total,
            p.size,
            used,
            limit,
        )
        self.reset()

    def add(
        self,
        message_id: int,
        number: int,
        total: int,
        first_inner: int,
        chunk: bytes,
        *,
        authenticated: bool = True,
    ) -> FragmentResult:
        """Add one fragment; ``authenticated``: the IKE_SA has completed IKE_AUTH (its
        reassemblies may use the whole budget and are never evicted)."""
        if total < 1 or total > self.limits.max_fragments:
            return self._drop(f"total fragments {total} outside 1..{self.limits.max_fragments}")
        if number < 1 or number > total:
            return self._drop(f"fragment number {number} outside 1..{total}")
        if number != 1 and first_inner != 0:
            return self._drop(f"fragment #{number} names a first payload ({first_inner})")

        p = self._pending
        if p is not None and p.message_id != message_id:
            if message_id < p.message_id:
                return self._drop(
                    f"fragment of old message {message_id} (reassembling {p.message_id})"
                )
            self.reset()  # a newer message supersedes an unfinished one
            p = None
        if p is not None and total != p.total:
            if total < p.total:
                return self._drop(f"total fragments shrank from {p.total} to {total}")
            self.reset()  # RFC 7383 §2.6: a larger total restarts reassembly
            p = None
        if p is None:
            p = self._pending = _Pending(message_id, total, authenticated)

        if number in p.chunks:
            return FragmentResult(
                FragmentVerdict.DUPLICATE,
                f"duplicate fragment #{number}",
                0,
                b"",
                len(p.chunks),
                p.total,
            )
        if p.size + len(chunk) > self.limits.max_message:
            self.reset()
            return self._drop(
                f"reassembled message would exceed {self.limits.max_message} bytes (max_packet)"
            )
        cost = len(chunk) + CHUNK_OVERHEAD + (0 if p.charged else PENDING_OVERHEAD)
        if not self.budget.take(self, cost, p.authenticated):
            self.reset()
            if p.authenticated:
                return self._drop("reassembly memory budget exhausted")
            return self._drop("reassembly memory of unauthenticated IKE_SAs exhausted")
        p.charged += cost
        p.chunks[number] = chunk
        p.size += len(chunk)
        if number == 1:
            p.first_inner = first_inner

        if len(p.chunks) < p.total:
            return FragmentResult(_WAITING, "", 0, b"", len(p.chunks), p.total)
        data = b"".join(map(p.chunks.__getitem__, range(1, p.total + 1)))  # no generator
        first = p.first_inner
        self.reset()
        return FragmentResult(_COMPLETE, "", first, data, total, total)

    def _drop(self, reason: str) -> FragmentResult:
        return FragmentResult(FragmentVerdict.DROPPED, reason)
