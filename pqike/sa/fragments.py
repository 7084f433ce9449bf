"""RFC 7383 reassembly of Encrypted Fragment (SKF) payloads, with bounded memory.

Fragments reach this module already decrypted and authenticated (each SKF carries its own
ICV), so what is bounded here is what a peer that holds the keys, or a replaying attacker,
can make us keep: the number of fragments per message, the bytes of one message, and the
bytes held by all reassemblies together (one budget shared by every IKE_SA).

Rules (RFC 7383 §2.6, as strongSwan's ``add_fragment_v2()`` applies them):
- fragment numbers run 1..total; 0 or > total is dropped;
- a duplicate is ignored (the first copy wins, even if the content differs);
- a larger total restarts the reassembly, a smaller total is dropped;
- the first inner payload type is taken from fragment 1 only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class FragmentVerdict(Enum):
    WAITING = "waiting"
    COMPLETE = "complete"
    DUPLICATE = "duplicate"
    DROPPED = "dropped"


@dataclass(frozen=True)
class FragmentLimits:
    max_fragments: int = 255  # Total Fragments field is 16 bits; strongSwan caps at 255
    max_message: int = 65535  # bytes of reassembled plaintext (charon.max_packet)
    max_total: int = 4 * 1024 * 1024  # bytes held by all reassemblies of the daemon


@dataclass
class FragmentResult:
    verdict: FragmentVerdict
    reason: str = ""
    first_inner: int = 0
    plaintext: bytes = b""
    received: int = 0
    total: int = 0


class MemoryBudget:
    """Bytes held by every pending reassembly of the daemon."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used = max(0, self.used - n)


@dataclass
class _Pending:
    message_id: int
    total: int
    chunks: dict[int, bytes] = field(default_factory=dict)
    first_inner: int = 0
    size: int = 0


class Reassembler:
    """Reassembly of one direction of one IKE_SA (requests or responses)."""

    def __init__(self, limits: FragmentLimits, budget: MemoryBudget | None = None) -> None:
        self.limits = limits
        self.budget = budget or MemoryBudget(limits.max_total)
        self._pending: _Pending | None = None

    @property
    def pending_message_id(self) -> int | None:
        return self._pending.message_id if self._pending else None

    def reset(self) -> None:
        if self._pending:
            self.budget.give(self._pending.size)
        self._pending = None

    def add(
        self, message_id: int, number: int, total: int, first_inner: int, chunk: bytes
    ) -> FragmentResult:
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
            p = self._pending = _Pending(message_id, total)

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
        if not self.budget.take(len(chunk)):
            self.reset()
            return self._drop("reassembly memory budget exhausted")
        p.chunks[number] = chunk
        p.size += len(chunk)
        if number == 1:
            p.first_inner = first_inner

        if len(p.chunks) < p.total:
            return FragmentResult(FragmentVerdict.WAITING, "", 0, b"", len(p.chunks), p.total)
        data = b"".join(p.chunks[i] for i in range(1, p.total + 1))
        first = p.first_inner
        self.reset()
        return FragmentResult(FragmentVerdict.COMPLETE, "", first, data, total, total)

    def _drop(self, reason: str) -> FragmentResult:
        return FragmentResult(FragmentVerdict.DROPPED, reason)
