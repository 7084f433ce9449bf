"""The MODP constants are right: re-derived from pi (RFC 2409/3526) or checked algebraically."""

from __future__ import annotations

import random

import pytest

from kem import KeMethod
from kem.providers.modp_groups import GROUPS

# RFC 2409 §6.1/6.2 and RFC 3526: p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) pi) + k)
PI_OFFSETS = {
    KeMethod.MODP_768: (768, 149686),
    KeMethod.MODP_1024: (1024, 129093),
    KeMethod.MODP_1536: (1536, 741804),
    KeMethod.MODP_2048: (2048, 124476),
    KeMethod.MODP_3072: (3072, 1690314),
    KeMethod.MODP_4096: (4096, 240904),
    KeMethod.MODP_6144: (6144, 929484),
    KeMethod.MODP_8192: (8192, 4743158),
}


def _arctan_inv(x: int, one: int) -> int:
    total = term = one // x
    n, sign = 1, -1
    while term:
        term //= x * x
        n += 2
        total += sign * (term // n)
        sign = -sign
    return total


def _pi_fixed(bits: int) -> int:
    """floor(pi * 2^bits) via Machin's formula (64 guard bits)."""
    one = 1 << (bits + 64)
    return (4 * (4 * _arctan_inv(5, one) - _arctan_inv(239, one))) >> 64


def _probably_prime(n: int, rounds: int = 8) -> bool:
    if n < 4:
        return n in (2, 3)
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    rng = random.Random(n)  # deterministic witnesses; this checks constants, not secrets
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


@pytest.mark.parametrize("method", list(PI_OFFSETS), ids=lambda m: m.name)
def test_pi_derived_prime(method: KeMethod) -> None:
    n, k = PI_OFFSETS[method]
    p = 2**n - 2 ** (n - 64) - 1 + 2**64 * (_pi_fixed(n - 130) + k)
    group = GROUPS[method]
    assert group.p == p
    assert group.g == 2 and group.q is None


@pytest.mark.parametrize(
    "method", [KeMethod.MODP_768, KeMethod.MODP_1024, KeMethod.MODP_2048], ids=lambda m: m.name
)
def test_safe_prime(method: KeMethod) -> None:
    p = GROUPS[method].p
    assert _probably_prime(p) and _probably_prime((p - 1) // 2)


@pytest.mark.parametrize(
    ("method", "pbits", "qbits"),
    [
        (KeMethod.MODP_1024_160, 1024, 160),
        (KeMethod.MODP_2048_224, 2048, 224),
        (KeMethod.MODP_2048_256, 2048, 256),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_rfc5114_group(method: KeMethod, pbits: int, qbits: int) -> None:
    p, g, q = GROUPS[method]
    assert q is not None
    assert p.bit_length() == pbits and q.bit_length() == qbits
    assert _probably_prime(p) and _probably_prime(q)
    assert (p - 1) % q == 0
    assert 1 < g < p - 1 and pow(g, q, p) == 1
