"""Stateless mutation of every message kind at every state of real sessions (stateless.py).

50,000 mutants: 90 % at the receivers of the psk and cert sessions (before each hop and
while idle after each step, both roles), 10 % at initiators waiting for IKE_SA_INIT.
"""

from __future__ import annotations

from tests.hostile.stateless import stateless_campaign

PACKETS = 50_000


def test_stateless_mutants_change_nothing_and_break_nothing() -> None:
    report = stateless_campaign(seed=1, packets=PACKETS)
    print("\n".join(report.lines()))
    report.check()
    assert report.total_packets >= PACKETS
    # every source of mutants was used, and the sessions kept going under attack
    assert {"in-flight", "session-retargeted", "corpus-retargeted", "random"} <= set(report.packets)
    assert report.packets["init-response"] >= PACKETS // 20
    assert report.legit_attempts >= 20
    # the COOKIE threshold held the attacker's half-open IKE_SAs (psk: 1, cert: 10)
    assert 0 < int(report.figures["max half-open"]) <= 13
