"""The seed corpus holds every message kind the issue names, so the stateless campaign
mutates all of them (a scenario change that loses one fails here, not silently)."""

from __future__ import annotations

from tests.hostile.seeds import corpus, kind_of, pcap_seeds
from tests.hostile.world import SCENARIOS

KINDS = {
    "IKE_SA_INIT request",
    "IKE_SA_INIT response",
    "IKE_SA_INIT request N(COOKIE)",
    "IKE_SA_INIT response N(COOKIE)",
    "IKE_SA_INIT response N(INVALID_KE_PAYLOAD)",
    "IKE_INTERMEDIATE request SK",
    "IKE_INTERMEDIATE request SKF",
    "IKE_INTERMEDIATE response SK",
    "IKE_INTERMEDIATE response SKF",
    "IKE_AUTH request SK",
    "IKE_AUTH response SK",
    "IKE_AUTH request SKF",
    "IKE_AUTH response SKF",
    "CREATE_CHILD_SA request SK",
    "CREATE_CHILD_SA response SK",
    "IKE_FOLLOWUP_KE request SK",
    "IKE_FOLLOWUP_KE response SK",
    "IKE_FOLLOWUP_KE request SKF",
    "INFORMATIONAL request SK",
    "INFORMATIONAL response SK",
}
# the jobs behind the protected messages, by scenario step (both directions each)
STEPS = {
    "psk": {"establish", "child", "rekey-child", "peer-rekey-child", "dpd", "peer-dpd",
            "rekey-ike", "delete-child", "delete-ike"},
    "cert": {"establish", "rekey-child", "dpd", "rekey-ike", "delete-ike"},
}  # fmt: skip


def test_corpus_has_every_message_kind() -> None:
    kinds = {s.kind for s in corpus()}
    assert kinds >= KINDS, sorted(KINDS - kinds)


def test_every_scenario_step_sends_and_answers() -> None:
    for scenario in SCENARIOS:
        seeds = [s for s in corpus() if s.origin == scenario.name]
        for step in STEPS[scenario.name]:
            sent = {(s.src.host, "response" in s.kind) for s in seeds if s.step == step}
            assert {r for _, r in sent} == {False, True}, (scenario.name, step)


def test_pcap_seeds_are_the_strongswan_exchange() -> None:
    kinds = [s.kind for s in pcap_seeds()]
    assert kinds[:2] == ["IKE_SA_INIT request", "IKE_SA_INIT response"]
    assert kinds.count("IKE_INTERMEDIATE request SKF") == 2
    assert kinds[-2:] == ["IKE_AUTH request SK", "IKE_AUTH response SK"]
    assert kind_of(b"\x00" * 10) == "undecodable"
