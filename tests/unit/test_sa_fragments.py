"""RFC 7383 reassembly: ordering, duplicates, total changes and hostile input bounds."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pqike.sa.fragments import FragmentLimits, FragmentVerdict, MemoryBudget, Reassembler

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


def test_shared_budget_bounds_all_reassemblies() -> None:
    budget = MemoryBudget(1000)
    sas = [Reassembler(FragmentLimits(), budget) for _ in range(5)]
    verdicts = [sa.add(1, 1, 2, 34, b"x" * 300).verdict for sa in sas]
    assert verdicts.count(V.WAITING) == 3 and verdicts.count(V.DROPPED) == 2
    assert budget.used <= 1000
    for sa in sas:
        sa.reset()
    assert budget.used == 0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),  # message id
            st.integers(-1, 300),  # fragment number
            st.integers(-1, 300),  # total
            st.integers(0, 255),  # first inner
            st.binary(max_size=64),
        ),
        max_size=60,
    )
)
def test_hostile_sequences_never_raise_and_stay_bounded(events) -> None:  # type: ignore[no-untyped-def]
    limits = FragmentLimits(max_fragments=32, max_message=512, max_total=2048)
    r = Reassembler(limits)
    for mid, num, total, first, chunk in events:
        res = r.add(mid, num, total, first, chunk)
        assert res.verdict in V
        assert r.budget.used <= limits.max_total
        if res.verdict is V.COMPLETE:
            assert len(res.plaintext) <= limits.max_message


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
