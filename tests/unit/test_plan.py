"""pqike.plan: the registry-only size model, checked against what two engines send."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kem import registry
from pqike import plan as planner
from pqike.bench.scenarios import Profile, Scenario
from pqike.bench.sizes import run_pqike

REPO = Path(__file__).resolve().parents[2]


def _need(*keywords: str) -> None:
    for k in keywords:
        m = registry.by_keyword(k)
        if not m.available:
            pytest.skip(f"{m.log_name} unavailable: {m.unavailable_reason}")


def _planned(p: planner.Plan, which: str) -> list[tuple[str, bool, int, list[int]]]:
    return [
        (m.exchange, m.response, m.length, m.packets)
        for x in getattr(p, which)
        for m in (x.request, x.response)
    ]


def _sent(out, phase: str) -> list[tuple[str, bool, int, list[int]]]:  # type: ignore[no-untyped-def]
    return [(m.exchange, m.response, m.length, m.packets) for m in out.messages[phase]]


@pytest.mark.parametrize(
    ("ike", "child", "profile", "auth"),
    [
        ("aes256-sha256-x25519", None, Profile("1480", 1480, False), "psk"),
        ("aes128gcm16-prfsha256-ecp256", None, Profile("1280", 1280, False), "psk"),
        (
            "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024",
            "aes256-sha256-x25519-ke1_mlkem1024",
            Profile("1280", 1280, False),
            "psk",
        ),
        (
            "aes256-sha256-x25519-ke1_mlkem1024",
            "aes256-sha256-x25519-ke1_mlkem768",
            Profile("v6", 1280, True),
            "mldsa44",
        ),
    ],
)
def test_plan_matches_engine(ike: str, child: str | None, profile: Profile, auth: str) -> None:
    scen = Scenario("t", ike, child)
    out = run_pqike(scen, profile, auth)
    assert out.status["ike_sa"] == "ok"
    p = planner.plan(
        ike,
        child=child,
        auth=auth,
        fragment_size=profile.fragment_size,
        ipv6=profile.ipv6,
        cpu=False,
    )
    assert _sent(out, "ike_sa") == _planned(p, "establishment")
    if child and out.status.get("create_child") == "ok":
        assert _sent(out, "create_child") == _planned(p, "create_child")


def test_reference_walkthrough_numbers() -> None:
    """The pq-strongswan walkthrough at fragment_size 1480 (strongSwan's 1-byte ADD_KE link;
    HQC in the reference used liboqs <= 0.9 sizes, so it is left out here)."""
    _need("kyber3", "bike3", "frodoa3")
    p = planner.plan(
        "aes256-sha256-x25519-ke1_kyber3-ke2_bike3",
        fragment_size=1480,
        child="aes256-sha256-modp3072-ke1_frodoa3-ke2_bike3",
        cpu=False,
        link_size=planner.STRONGSWAN_LINK_SIZE,
    )
    est = _planned(p, "establishment")
    assert est[2][2:] == (1264, [1264]) and est[3][2:] == (1168, [1168])
    assert est[4][2:] == (3168, [1444, 1444, 420]) and est[5][2:] == (3200, [1444, 1444, 452])
    cc = _planned(p, "create_child")
    assert [m[2] for m in cc] == [624, 624, 15728, 15840, 3168, 3200]
    assert cc[2][3] == [1444] * 11 + [596] and cc[3][3] == [1444] * 11 + [708]
    assert cc[4][3] == [1444, 1444, 420] and cc[5][3] == [1444, 1444, 452]


def test_warnings() -> None:
    _need("frodoa3")
    p = planner.plan("aes256-sha256-frodoa3", fragment_size=1280, cpu=False)
    assert any(
        "IKE_SA_INIT request is" in w and "cannot use IKE fragmentation" in w for w in p.warnings
    )
    assert any("max_packet" in w for w in p.warnings)
    classic = planner.plan("aes256-sha256-x25519", cpu=False)
    assert any("no post-quantum" in w for w in classic.warnings)
    hybrid = planner.plan("aes256-sha256-x25519-ke1_mlkem768", cpu=False)
    assert not any("IKE_SA_INIT" in w or "post-quantum" in w for w in hybrid.warnings)


def test_totals_and_render() -> None:
    p = planner.plan("aes256-sha256-x25519-ke1_mlkem768", cpu=False, fragment_size=1280)
    t = p.totals()
    assert t["round_trips"] == 3
    assert t["packets_i2r"] == sum(x.request.fragments for x in p.establishment)
    text = planner.render(p)
    assert "IKE_INTERMEDIATE 1" in text and "round trips" in text
    d = p.as_dict()
    assert d["establishment_totals"]["bytes_i2r"] == t["bytes_i2r"]


def test_cpu_estimate_positive() -> None:
    p = planner.plan("aes256-sha256-x25519", cpu=True)
    assert p.totals()["cpu_initiator"] > 0


def test_bad_input() -> None:
    with pytest.raises(planner.PlanError):
        planner.plan("aes256-sha256-nosuchgroup", cpu=False)
    with pytest.raises(planner.PlanError):
        planner.plan("aes256-sha256-x25519", auth="nosuch", cpu=False)


README_EXAMPLE = "aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3"
HIDDEN = "liboqs hidden by the test"


def _hide_liboqs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every liboqs-only method as on a machine without liboqs (the registry caches each
    provider's outcome per method: seed that cache with a failure)."""
    for m in registry.all():
        if m.provider_names == ("liboqs",):
            monkeypatch.setattr(m, "_backends", {"liboqs": HIDDEN})


def test_sizes_without_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sizes come from the specifications: a plan without liboqs has the same bytes and
    fragments as one with it (the walkthrough's numbers), only its CPU is unavailable."""
    _hide_liboqs(monkeypatch)
    assert not registry.by_keyword("kyber3").available
    p = planner.plan(README_EXAMPLE, fragment_size=1480, cpu=True)
    kes = [(m[2], len(m[3])) for m in _planned(p, "establishment")[2:8]]
    # README "Results": Kyber 1264/1168, BIKE 3168/3200 in 3 fragments, HQC 4592/9056 in 4/7
    assert kes == [(1264, 1), (1168, 1), (3168, 3), (3200, 3), (4592, 4), (9056, 7)]
    init, *intermediate, _auth = p.establishment
    assert init.cpu_unavailable is None and init.cpu_initiator > 0  # x25519 is still timed
    assert [x.cpu_unavailable for x in intermediate] == [
        f"{k}: {HIDDEN}" for k in ("kyber3", "bike3", "hqc3")
    ]
    t = p.totals()
    assert t["cpu_initiator"] is None and t["cpu_responder"] is None
    assert t["cpu_unavailable"] == f"kyber3, bike3, hqc3: {HIDDEN}"
    text = planner.render(p)
    assert text.count(f"unavailable: kyber3: {HIDDEN}") == 1
    assert f"expected KE+auth CPU unavailable: kyber3, bike3, hqc3: {HIDDEN}" in text
    monkeypatch.undo()
    if registry.by_keyword("hqc3").available:  # the same plan with liboqs, where there is one
        with_oqs = planner.plan(README_EXAMPLE, fragment_size=1480, cpu=False)
        assert _planned(with_oqs, "establishment") == _planned(p, "establishment")


def _pqike(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pqike", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_readme_commands_without_liboqs(tmp_path: Path) -> None:
    """With no liboqs anywhere (OQS_INSTALL_PATH -> an empty directory) the README's plan
    example, list-algs, --version and bench sizes of the walkthrough all work and say why
    the CPU figures are missing."""
    empty = tmp_path / "no-oqs"
    empty.mkdir()
    env = {"OQS_INSTALL_PATH": str(empty)}
    why = f"liboqs not found in {empty} (OQS_INSTALL_PATH)"
    r = _pqike("plan", README_EXAMPLE, "--auth", "mldsa87", env=env)
    assert r.returncode == 0, r.stderr
    assert "internal error" not in r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("  IKE_INTERMEDIATE 3"))
    assert row.split()[2:4] == ["4592", "4"]  # bytes, fragments at the default 1280
    assert f"unavailable: hqc3: {why}" in row
    r = _pqike("plan", README_EXAMPLE, "--auth", "mldsa87", "--no-cpu", "--json", env=env)
    assert r.returncode == 0, r.stderr
    totals = json.loads(r.stdout)["establishment_totals"]
    assert (totals["bytes_i2r"], totals["bytes_r2i"]) == (21768, 26137)  # README "Results"
    r = _pqike("list-algs", env=env)
    assert r.returncode == 0 and r.stdout.startswith(f"liboqs unavailable: {why}")
    r = _pqike("--version", env=env)
    assert r.returncode == 0 and f"liboqs unavailable: {why}" in r.stdout
    args = ["--no-matrix", "--only", "walkthrough", "--profile", "1480", "--no-strongswan"]
    r = _pqike("bench", "sizes", *args, "--out", str(tmp_path), "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    ike_sa = next(line for line in r.stdout.splitlines() if " ike_sa " in line)
    assert ike_sa.split()[3:7] == ["ike_sa", "plan", "5", "21768"]
