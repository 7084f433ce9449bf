"""pqike.bench: tiny runs of every command; no timing is asserted."""

from __future__ import annotations

import json

import click
from click.testing import CliRunner

from pqike.bench import perf, report, scenarios, sizes
from pqike.bench import strongswan as ss
from pqike.bench.cli import bench, plan

X25519 = scenarios.Scenario("x25519", "aes256-sha256-x25519", "aes256-sha256-x25519")


def test_scenario_matrix() -> None:
    scens = scenarios.scenarios()
    names = [s.name for s in scens]
    assert names[:3] == ["walkthrough", "host-child", "3mlkem"]
    assert {"x25519", "modp3072", "x25519+mlkem768", "x25519+frodos5"} <= set(names)
    walk = scens[0]
    assert walk.auth == "mldsa87" and walk.child and "frodoa3" in walk.methods()
    assert scenarios.profile("v6") == scenarios.Profile("v6", 1280, True)
    assert scenarios.profile("1480").ipv6 is False
    ref = scenarios.reference_messages(None, "walkthrough")
    assert ref[12][:3] == ["IKE_FOLLOWUP_KE", 1, "initiator"] and ref[12][3] == 15728


def test_sizes_rows_and_summary() -> None:
    prof = scenarios.profile("1280")
    rows, info = sizes.measure([X25519], [prof], ["psk"], strongswan=False)
    assert info == {}
    assert [r["exchange"] for r in rows][:4] == [
        "IKE_SA_INIT",
        "IKE_SA_INIT",
        "IKE_AUTH",
        "IKE_AUTH",
    ]
    assert all(r["plan_match"] for r in rows if r["status"] == "ok")
    summ = sizes.summaries(rows)
    assert summ[0]["round_trips"] == 2 and summ[0]["plan_match"]


def test_unavailable_is_a_row_not_a_crash() -> None:
    bogus = scenarios.Scenario("falcon", "aes256-sha256-x25519", None)
    out = sizes.run_pqike(bogus, scenarios.profile("1480"), "falcon1024")
    if out.status["ike_sa"] != "ok":  # Falcon certificates cannot be issued here
        assert out.status["ike_sa"].startswith("unavailable:")


def test_cpu_split_adds_up() -> None:
    out = sizes.run_pqike(X25519, scenarios.profile("1480"), "psk", cpu=True, create_child=False)
    for side in ("initiator", "responder"):
        parts = out.cpu[side]
        assert (
            abs(sum(parts[k] for k in ("kem", "auth", "sym", "protocol")) - parts["total"]) < 1e-6
            or parts["protocol"] == 0.0
        )


def test_strongswan_log_parser() -> None:
    log = """
09[ENC] <home|1> generating IKE_INTERMEDIATE request 2 [ KE ]
09[ENC] <home|1> splitting IKE message (1648 bytes) into 2 fragments
09[ENC] <home|1> generating IKE_INTERMEDIATE request 2 [ EF(1/2) ]
09[ENC] <home|1> generating IKE_INTERMEDIATE request 2 [ EF(2/2) ]
09[NET] <home|1> sending packet: from 192.168.0.3[4500] to 192.168.0.2[4500] (1444 bytes)
09[NET] <home|1> sending packet: from 192.168.0.3[4500] to 192.168.0.2[4500] (276 bytes)
10[ENC] <home|1> generating IKE_AUTH request 4 [ IDi IDr AUTH ]
10[NET] <home|1> sending packet: from 192.168.0.3[4500] to 192.168.0.2[4500] (320 bytes)
11[IKE] <home|1> retransmit 1 of request with message ID 4
11[NET] <home|1> sending packet: from 192.168.0.3[4500] to 192.168.0.2[4500] (320 bytes)
"""
    msgs, retransmitted = ss.parse_log(log)
    assert retransmitted
    assert [(m.exchange, m.length, m.packets) for m in msgs] == [
        ("IKE_INTERMEDIATE", 1648, [1444, 276]),
        ("IKE_AUTH", 320, [320]),
    ]
    assert ss.speaks("aes256-sha256-x25519-ke1_mlkem768") and not ss.speaks("aes256-sha256-kyber3")


def test_perf_tiny() -> None:
    row = perf.load(X25519, 2, 4)
    assert row["established"] == 4
    mem = perf.memory_per_sa(X25519, 3)
    assert mem["established"] == 3 and mem["bytes_per_sa"] > 0
    (rt,) = perf.rtt_loss([X25519], scenarios.profile("1480"), [100], [0.0])
    assert rt["failed"] == 0 and abs(rt["mean_s"] - 0.2) < 1e-9  # two round trips
    (hs,) = perf.handshake_cpu([X25519], scenarios.profile("1480"), ["psk"], repeat=1)
    assert hs["status"] == "ok" and hs["i_total_ms"] > 0


def test_report_table_and_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = [{"a": 1, "b": None, "c": 1.5, "d": True}, {"a": 22, "b": "x", "c": 0.0, "d": False}]
    text = report.table(rows, [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")])
    assert text.splitlines()[2].split() == ["1", "-", "1.50", "yes"]
    paths = report.write(tmp_path, "t", rows, {"k": 1})
    assert json.loads(paths[1].read_text())["meta"] == {"k": 1}
    assert paths[0].read_text().startswith("a,b,c,d")


def _cli() -> click.Group:
    @click.group()
    def main() -> None:
        pass

    main.add_command(bench)
    main.add_command(plan)
    return main


def test_cli_plan_and_sizes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = CliRunner().invoke(_cli(), ["plan", "aes256-sha256-x25519-ke1_mlkem768", "--no-cpu"])
    assert r.exit_code == 0, r.output
    assert "IKE_INTERMEDIATE 1" in r.output
    r = CliRunner().invoke(_cli(), ["plan", "aes256-sha256-nosuch", "--no-cpu"])
    assert r.exit_code != 0 and "Error" in r.output
    r = CliRunner().invoke(
        _cli(),
        [
            "bench",
            "sizes",
            "--no-references",
            "--only",
            "x25519",
            "--profile",
            "1480",
            "--no-strongswan",
            "--out",
            str(tmp_path),
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "x25519" in r.output and (tmp_path / "sizes.csv").is_file()
    assert (tmp_path / "sizes_summary.json").is_file()
