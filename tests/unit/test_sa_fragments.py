"""RFC 7383 reassembly: ordering, duplicates, total changes and hostile input bounds."""

from __future__ import annotations

import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pqike.sa.fragments import (
    CHUNK_OVERHEAD,
    PENDING_OVERHEAD,
    FragmentLimits,
    FragmentVerdict,
    MemoryBudget,
    Reassembler,
)

V = FragmentVerdict


def _chunks(data: bytes, n: int) -> list[bytes]:
    size = -(-len(data) // n)
    return [data[i * size : (i + 1) * size] for i in range(n)]


def test_out_of_order_and_duplicates_reassemble_once() -> None:
    r = Reassembler(FragmentLimits())
    parts = _chunks(bytes(range(256)) * 10, 4)
    order = [3, 1, 1, 4, 2]
    verdicts = []
    for n in order:
        res = r.add(7, n, 4, 34 if n == 1 else 0, parts[n - 1])
        verdicts.append(res.verdict)
    assert verdicts == [V.WAITING, V.WAITING, V.DUPLICATE, V.WAITING, V.COMPLETE]
    assert res.plaintext == b"".join(parts)
    assert res.first_inner == 34
    assert r.budget.used == 0


def test_duplicate_with_other_content_keeps_first_copy() -> None:
    r = Reassembler(FragmentLimits())
    r.add(1, 1, 2, 34, b"a" * 10)
    assert r.add(1, 1, 2, 34, b"X" * 10).verdict is V.DUPLICATE
    assert r.add(1, 2, 2, 0, b"b").plaintext == b"a" * 10 + b"b"


def test_numbers_out_of_range_are_dropped() -> None:
    r = Reassembler(FragmentLimits(max_fragments=16))
    assert r.add(1, 0, 3, 34, b"x").verdict is V.DROPPED
    assert r.add(1, 4, 3, 0, b"x").verdict is V.DROPPED
    assert r.add(1, 1, 0, 34, b"x").verdict is V.DROPPED
    res = r.add(1, 1, 17, 34, b"x")
    assert res.verdict is V.DROPPED and "16" in res.reason


def test_first_payload_only_in_first_fragment() -> None:
    r = Reassembler(FragmentLimits())
    res = r.add(1, 2, 2, 34, b"x")
    assert res.verdict is V.DROPPED and "first payload" in res.reason


def test_larger_total_restarts_smaller_total_dropped() -> None:
    r = Reassembler(FragmentLimits())
    r.add(5, 1, 2, 34, b"old")
    assert r.add(5, 2, 3, 0, b"B").verdict is V.WAITING  # restart with total 3
    assert r.add(5, 1, 2, 34, b"x").verdict is V.DROPPED  # smaller total
    r.add(5, 1, 3, 34, b"A")
    assert r.add(5, 3, 3, 0, b"C").plaintext == b"ABC"


def test_newer_message_supersedes_older_is_dropped() -> None:
    r = Reassembler(FragmentLimits())
    r.add(5, 1, 2, 34, b"five")
    assert r.add(6, 1, 2, 34, b"six").verdict is V.WAITING
    assert r.add(5, 2, 2, 0, b"x").verdict is V.DROPPED
    assert r.add(6, 2, 2, 0, b"!").plaintext == b"six!"


def test_message_size_limit() -> None:
    r = Reassembler(FragmentLimits(max_message=100))
    assert r.add(1, 1, 3, 34, b"x" * 60).verdict is V.WAITING
    res = r.add(1, 2, 3, 0, b"x" * 60)
    assert res.verdict is V.DROPPED and "max_packet" in res.reason
    assert r.pending_message_id is None and r.budget.used == 0


def _cost(*chunks: int) -> int:
    """What the budget holds for one message with fragments of these sizes."""
    return PENDING_OVERHEAD + sum(n + CHUNK_OVERHEAD for n in chunks)


def test_shared_budget_bounds_all_reassemblies() -> None:
    """Authenticated IKE_SAs share the whole budget; when it is full the next one is
    refused (they never evict each other)."""
    budget = MemoryBudget(3 * _cost(300) + 10)
    sas = [Reassembler(FragmentLimits(), budget) for _ in range(5)]
    verdicts = [sa.add(1, 1, 2, 34, b"x" * 300).verdict for sa in sas]
    assert verdicts == [V.WAITING] * 3 + [V.DROPPED] * 2
    assert budget.used == 3 * _cost(300) and budget.evictions == 0
    for sa in sas:
        sa.reset()
    assert budget.used == 0


def test_unauthenticated_share_evicts_oldest_partial_message() -> None:
    """Before IKE_AUTH, half of the budget at most; when it is full the oldest partial
    message of another unauthenticated IKE_SA makes room (never the caller's own)."""
    budget = MemoryBudget(8 * _cost(1000))
    assert budget.preauth_limit == 4 * _cost(1000)
    old = [Reassembler(FragmentLimits(), budget, f"rw|{i}") for i in range(4)]
    for r in old:
        assert r.add(1, 1, 9, 46, b"a" * 1000, authenticated=False).verdict is V.WAITING
    assert budget.preauth_used == budget.preauth_limit

    new = Reassembler(FragmentLimits(), budget, "rw|9")
    assert new.add(1, 1, 2, 46, b"b" * 1000, authenticated=False).verdict is V.WAITING
    assert [r.pending_message_id for r in old] == [None, 1, 1, 1]  # the oldest went
    # a growing message evicts the others rather than itself
    res = new.add(1, 2, 2, 0, b"c" * 1000, authenticated=False)
    assert res.verdict is V.COMPLETE and res.plaintext == b"b" * 1000 + b"c" * 1000
    assert [r.pending_message_id for r in old] == [None, None, 1, 1]
    assert budget.evictions == 2 and budget.preauth_used == 2 * _cost(1000)


def test_unauthenticated_reassembly_that_cannot_fit_is_dropped() -> None:
    budget = MemoryBudget(2 * _cost(1000))
    r = Reassembler(FragmentLimits(), budget)
    assert r.add(1, 1, 3, 46, b"a" * 1000, authenticated=False).verdict is V.WAITING
    res = r.add(1, 2, 3, 0, b"a" * 1000, authenticated=False)
    assert res.verdict is V.DROPPED and "unauthenticated" in res.reason
    assert r.pending_message_id is None and budget.used == budget.preauth_used == 0


def test_room_is_kept_for_authenticated_ike_sas() -> None:
    """A full unauthenticated share leaves the other half; beyond it, authenticated
    reassemblies take the room of unauthenticated ones, never the other way round."""
    budget = MemoryBudget(4 * _cost(1000))
    pre = [Reassembler(FragmentLimits(), budget) for _ in range(2)]
    for r in pre:
        assert r.add(1, 1, 2, 46, b"p" * 1000, authenticated=False).verdict is V.WAITING
    auth = [Reassembler(FragmentLimits(), budget) for _ in range(3)]
    for r in auth:
        assert r.add(5, 1, 2, 46, b"a" * 1000).verdict is V.WAITING
    assert budget.evictions == 1 and [r.pending_message_id for r in pre] == [None, 1]
    late = Reassembler(FragmentLimits(), budget)
    res = late.add(1, 1, 2, 46, b"p" * 1000, authenticated=False)
    assert res.verdict is V.WAITING and [r.pending_message_id for r in pre] == [None, None]
    assert [r.pending_message_id for r in auth] == [5, 5, 5]


@pytest.mark.parametrize(("fragments", "size"), [(1, 1), (255, 1), (255, 40), (8, 1400)])
def test_budget_counts_what_python_holds(fragments: int, size: int) -> None:
    """The charge per fragment and per message covers the objects really held, so tiny
    fragments cannot hold more memory than reassembly_memory says."""
    rs = [Reassembler(FragmentLimits(512, 1 << 20, 1 << 30)) for _ in range(50)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for k, r in enumerate(rs):
            for n in range(1, fragments + 1):
                chunk = bytes([k, n % 256]) * (size // 2) + bytes(size % 2)
                r.add(1, n, fragments + 1, 46 if n == 1 else 0, chunk)
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert sum(r.held for r in rs) >= traced


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),  # message id
            st.integers(-1, 300),  # fragment number
            st.integers(-1, 300),  # total
            st.integers(0, 255),  # first inner
            st.binary(max_size=64),
            st.integers(0, 2),  # which IKE_SA
            st.booleans(),  # authenticated
        ),
        max_size=60,
    )
)
def test_hostile_sequences_never_raise_and_stay_bounded(events) -> None:  # type: ignore[no-untyped-def]
    limits = FragmentLimits(max_fragments=32, max_message=512, max_total=4096)
    budget = MemoryBudget(limits.max_total)
    rs = [Reassembler(limits, budget) for _ in range(3)]
    for mid, num, total, first, chunk, which, authenticated in events:
        res = rs[which].add(mid, num, total, first, chunk, authenticated=authenticated)
        assert res.verdict in V
        assert budget.used <= budget.limit and budget.preauth_used <= budget.preauth_limit
        assert budget.used == sum(r.held for r in rs)
        if res.verdict is V.COMPLETE:
            assert len(res.plaintext) <= limits.max_message
    for r in rs:
        r.reset()
    assert budget.used == budget.preauth_used == 0


def test_random_permutations_reassemble_exactly() -> None:
    rng = random.Random(1)
    for total in (1, 2, 7, 12, 31):
        data = rng.randbytes(total * 50)
        parts = _chunks(data, total)
        order = list(range(1, total + 1))
        rng.shuffle(order)
        r = Reassembler(FragmentLimits())
        for i, n in enumerate(order):
            res = r.add(9, n, total, 46 if n == 1 else 0, parts[n - 1])
            assert res.verdict is (V.COMPLETE if i == total - 1 else V.WAITING)
        assert res.plaintext == data and res.first_inner == 46
