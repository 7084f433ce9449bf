"""Bounded memos of pure functions the responder repeats for every peer of a kind: decoding a
received offer or selector body, encoding our chosen transforms, selecting a proposal.

A memo is a dict that starts over when it is full: a flood of distinct inputs (a hostile peer's
offers) costs at most ``limit`` entries and no eviction bookkeeping per hit. Only values that
are a function of the key alone go in, and never a failure."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(dict[K, V]):
    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def keep(self, key: K, value: V) -> V:
        """Remember ``value`` for ``key`` (starting over first if full); returns ``value``."""
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value
