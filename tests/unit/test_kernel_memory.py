"""MemoryKernel (``kernel = none`` and the tests): its policy table behaves as the list it
was, duplicates and order included, and deleting an installed policy does not scan it."""

from __future__ import annotations

import ipaddress
import random

import pytest

from pqike.kernel.base import Direction, KernelPolicy, MemoryKernel, PolicyList


def _policy(n: int, direction: Direction = Direction.OUT) -> KernelPolicy:
    return KernelPolicy(
        src_ts=ipaddress.ip_network(f"10.1.{n // 256}.{n % 256}/32"),
        dst_ts=ipaddress.ip_network("10.2.0.0/16"),
        direction=direction,
        reqid=n,
        tunnel=("192.0.2.1", "192.0.2.2"),
    )


def _copy(policy: KernelPolicy) -> KernelPolicy:
    return KernelPolicy(**vars(policy))  # equal, not the same object


def test_policy_table_keeps_list_semantics() -> None:
    """A seeded mix of installs (with equal copies, as a rekeyed CHILD_SA makes) and
    deletions leaves the same policy objects in the same order as a list would: deleting
    an installed object removes that one, an equal one built again the first equal copy."""
    rng = random.Random(7)
    kernel, model = MemoryKernel(), []
    pool = [_policy(n % 5, d) for n in range(5) for d in Direction]
    for _ in range(600):
        op = rng.random()
        if op < 0.5:
            p = _copy(rng.choice(pool))
            kernel.add_policy(p)
            model.append(p)
        elif op < 0.75 and model:
            p = rng.choice(model)
            kernel.del_policy(p)
            model.pop(next(i for i, q in enumerate(model) if q is p))
        else:
            p = _copy(rng.choice(pool))
            kernel.del_policy(p)  # a policy not installed is ignored, as before
            if p in model:
                model.remove(p)
        assert len(kernel.policies) == len(model)
        assert all(a is b for a, b in zip(kernel.policies, model, strict=True))
        assert all((q in kernel.policies) == (q in model) for q in pool)
    assert kernel.policies == model
    kernel.close()
    assert kernel.policies == [] and not kernel.policies


def test_policy_list_remove() -> None:
    a, b = _policy(1), _policy(2)
    a2 = _copy(a)
    table = PolicyList([a, b, a2, a2])
    table.remove(a2)  # that object, though an equal one was installed first
    assert [id(p) for p in table] == [id(a), id(b), id(a2)]
    table.remove(_copy(a))  # a rebuilt one: the first equal copy
    assert [id(p) for p in table] == [id(b), id(a2)]
    table.remove(a)
    assert table == [b] and a not in table
    with pytest.raises(ValueError):
        table.remove(a)


def test_deleting_a_policy_does_not_scan_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """CHILD_SAs and traps delete the policy objects they installed: found without
    comparing them with every policy installed before (quadratic with thousands)."""
    kernel = MemoryKernel()
    installed = [_policy(n) for n in range(300)]
    for p in installed:
        kernel.add_policy(p)
    compared = 0
    real = KernelPolicy.__eq__

    def counted(self: KernelPolicy, other: object) -> bool:
        nonlocal compared
        compared += 1
        return real(self, other)

    monkeypatch.setattr(KernelPolicy, "__eq__", counted)
    for p in reversed(installed):
        kernel.del_policy(p)
    assert kernel.policies == []
    assert compared == 0
