from __future__ import annotations

from pqike.memo import Memo


def test_a_full_memo_starts_over_and_keeps_the_newest() -> None:
    memo: Memo[int, str] = Memo(3)
    for i in range(3):
        assert memo.keep(i, str(i)) == str(i)
    assert dict(memo) == {0: "0", 1: "1", 2: "2"}
    memo.keep(3, "3")  # a flood of distinct keys costs at most the limit
    assert dict(memo) == {3: "3"}
    assert memo.get(3) == "3" and memo.get(0) is None
