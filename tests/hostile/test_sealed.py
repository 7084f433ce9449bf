"""Mutation under SK/SKF before sealing, in every protected message of the psk and cert
sessions, both directions (sealed.py): the receiver gets authentic garbage."""

from __future__ import annotations

import pytest

from tests.hostile.mutate import FAMILIES
from tests.hostile.sealed import sealed_campaign


def test_any_mutation_of_any_protected_message() -> None:
    """240 sessions, each with one message mutated (payload list or plaintext bytes)."""
    report = sealed_campaign(seed=2, runs=120)
    print("\n".join(report.lines()))
    report.check()
    assert report.packets["sealed raw"] > 40 and report.packets["sealed any"] > 120
    # the mutations had effects: some steps of the sessions ended otherwise
    assert any("changed" in k for k in report.outcomes)


@pytest.mark.parametrize("family", FAMILIES)
def test_one_payload_family(family: str) -> None:
    """Each kind of payload in turn, in the messages that carry it (24 sessions)."""
    report = sealed_campaign(seed=3, runs=12, family=family)
    report.check()
    assert report.legit_attempts >= 24
