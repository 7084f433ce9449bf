"""Fragment floods against a responder while legitimate fragmented handshakes run
(fragments.py)."""

from __future__ import annotations

from tests.hostile.fragments import SHAPES, fragment_campaign


def test_fragment_floods_with_and_without_keys() -> None:
    """Six half-open attackers send authentic fragments of every shape, and keyless ones go
    to every IKE_SA of moon, 60 before each packet of six legitimate handshakes."""
    report = fragment_campaign(seed=4, attackers=6, per_hop=60, legit=6)
    print("\n".join(report.lines()))
    report.check()
    assert {f"keyed {shape}" for shape in SHAPES} | {"keyless"} <= set(report.packets)
    assert report.legit_attempts == 7  # one before the flood, six under it


def test_half_open_hoarders_do_not_starve_fragmented_handshakes() -> None:
    """Finding 4: 24 half-open attackers fill the reassembly memory with partial messages,
    six more keep starting new ones; three fragmented handshakes still succeed at once
    (before the fix the first one needed 180 s: until the attackers timed out)."""
    report = fragment_campaign(
        seed=5,
        attackers=30,
        hoarders=24,
        hoard_fill=0.999,
        shapes=("hoard",),
        per_hop=8,
        legit=3,
    )
    print("\n".join(report.lines()))
    report.check()
