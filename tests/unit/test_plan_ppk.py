"""What a PPK (RFC 8784) costs: pqike.plan's model against two engines that use one, and the
bench rows that show it next to the KEM combinations."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pqike import plan as planner
from pqike.bench import perf
from pqike.bench.cli import plan as plan_cmd
from pqike.bench.scenarios import Profile, Scenario
from pqike.bench.sizes import measure, run_pqike, summaries

HYBRID = "aes256-sha256-x25519-ke1_mlkem768"
P1280 = Profile("1280", 1280, False)


def _sizes(msgs) -> list[tuple[str, bool, int, list[int]]]:  # type: ignore[no-untyped-def]
    return [(m.exchange, m.response, m.length, m.packets) for m in msgs]


@pytest.mark.parametrize("ppk", ["optional", "required"])
@pytest.mark.parametrize("auth", ["psk", "mldsa44"])
def test_plan_matches_engine_with_ppk(ppk: str, auth: str) -> None:
    out = run_pqike(Scenario("t", HYBRID, None), P1280, auth, ppk=ppk)
    assert out.status["ike_sa"] == "ok"
    p = planner.plan(HYBRID, auth=auth, fragment_size=1280, cpu=False, ppk=ppk)
    planned = [m for x in p.establishment for m in (x.request, x.response)]
    assert _sizes(out.messages["ike_sa"]) == _sizes(planned)
    assert "N(USE_PPK)" in planned[0].payloads and "N(USE_PPK)" in planned[1].payloads
    assert ("N(NO_PPK)" in planned[-2].payloads) is (ppk == "optional")
    assert "N(PPK_ID)" in planned[-1].payloads


def test_ppk_cost_is_the_difference_to_no_ppk() -> None:
    base = planner.plan(HYBRID, auth="mldsa44", fragment_size=1280, cpu=False).totals()
    for ppk in ("optional", "required"):
        p = planner.plan(HYBRID, auth="mldsa44", fragment_size=1280, cpu=False, ppk=ppk)
        cost = p.ppk_cost
        assert cost is not None
        assert cost["bytes_i2r"] == p.totals()["bytes_i2r"] - base["bytes_i2r"] > 0
        assert cost["round_trips"] == 0
    optional = planner.plan(HYBRID, auth="mldsa44", cpu=False, ppk="optional").ppk_cost
    required = planner.plan(HYBRID, auth="mldsa44", cpu=False, ppk="required").ppk_cost
    assert optional and required
    # NO_PPK_AUTH carries a second ML-DSA-44 signature (2420 bytes + its AlgorithmIdentifier)
    assert optional["bytes_i2r"] - required["bytes_i2r"] > 2420
    assert optional["bytes_r2i"] == required["bytes_r2i"]
    assert planner.plan(HYBRID, cpu=False).ppk_cost is None


def test_ppk_cpu_second_signature_only_when_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each timed primitive counts 1 "second": the PPK step on both sides, plus the second
    signature of NO_PPK_AUTH on the initiator when the PPK is optional (none for a PSK)."""
    monkeypatch.setattr(planner, "_timeit", lambda fn, repeat: 1.0)
    planner.ppk_costs.cache_clear()
    try:
        assert planner.ppk_costs("mldsa44", True) == (1.0, 1.0)
        assert planner.ppk_costs("mldsa44", False) == (2.0, 1.0)
        assert planner.ppk_costs("psk", False) == (1.0, 1.0)
        cost = planner.plan(HYBRID, auth="mldsa44", ppk="optional").ppk_cost
        assert cost is not None
        assert (cost["cpu_initiator"], cost["cpu_responder"]) == pytest.approx((2.0, 1.0))
    finally:
        planner.ppk_costs.cache_clear()


def test_plan_cli_shows_ppk_cost() -> None:
    r = CliRunner().invoke(plan_cmd, [HYBRID, "--ppk", "optional", "--no-cpu"])
    assert r.exit_code == 0, r.output
    assert "ppk        RFC 8784, optional" in r.output
    assert "PPK cost (vs. no PPK): i->r +72 bytes" in r.output
    r = CliRunner().invoke(plan_cmd, [HYBRID, "--ppk", "required", "--no-cpu", "--json"])
    d = json.loads(r.output)
    assert d["ppk"] == "required" and d["ppk_cost"]["bytes_i2r"] == 40
    r = CliRunner().invoke(plan_cmd, [HYBRID, "--ppk", "maybe"])
    assert r.exit_code != 0


def test_bench_rows_next_to_the_kem_combinations() -> None:
    scens = [Scenario("x25519+mlkem768", HYBRID, None)]
    rows, _ = measure(
        scens, [P1280], ["psk"], strongswan=False, create_child=False, ppks=("no", "optional")
    )
    by_auth = {s["auth"]: s for s in summaries(rows)}
    assert set(by_auth) == {"psk", "psk+ppk"}
    assert all(r["plan_match"] for r in rows)
    assert by_auth["psk+ppk"]["bytes_i2r"] - by_auth["psk"]["bytes_i2r"] == 72
    cpu = perf.handshake_cpu(scens, P1280, ["psk"], repeat=1, ppks=("no", "required"))
    assert [r["auth"] for r in cpu] == ["psk", "psk+ppk-required"]
    assert all(r["status"] == "ok" for r in cpu)
