"""pqike.bench.rtt: summary, table and CSV/JSON of the netem handshake rows (no UML here)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pqike.bench import rtt


def _row(setting: str, rtt_ms: float, loss: float, prop: str, rep: int, ms, ok=True, retr=0):  # type: ignore[no-untyped-def]
    return {
        "setting": setting,
        "rtt_ms": rtt_ms,
        "loss_pct": loss,
        "ping_rtt_ms": rtt_ms + 0.2,
        "proposal": prop,
        "rep": rep,
        "ok": ok,
        "ms": ms,
        "retransmits": retr,
        "cmd_ms": None if ms is None else ms + 1,
        "error": "" if ok else "timeout",
    }


ROWS = [
    _row("lan", 0, 0, "x25519", 0, 10.0),
    _row("lan", 0, 0, "x25519", 1, 12.0),
    _row("lan", 0, 0, "x25519", 2, 11.0),
    _row("rtt50-loss1", 50, 1, "x25519+mlkem768", 0, 170.0),
    _row("rtt50-loss1", 50, 1, "x25519+mlkem768", 1, 4170.0, retr=1),
    _row("rtt50-loss1", 50, 1, "x25519+mlkem768", 2, None, ok=False),
]


def test_summarize_groups_in_order_with_failures() -> None:
    lan, lossy = rtt.summarize(ROWS)
    assert (lan["setting"], lan["proposal"], lan["n"], lan["failed"]) == ("lan", "x25519", 3, 0)
    assert (lan["median_ms"], lan["min_ms"], lan["max_ms"]) == (11.0, 10.0, 12.0)
    assert lan["round_trips"] == 2 and lan["over_rts_ms"] == 11.0
    assert (lossy["n"], lossy["failed"], lossy["retransmits"]) == (3, 1, 1)
    assert lossy["median_ms"] == lossy["mean_ms"] == 2170.0  # of the two that established
    assert lossy["over_rts_ms"] == 2170.0 - 3 * 50


def test_summarize_all_failed_and_empty() -> None:
    (s,) = rtt.summarize([_row("sat600", 600, 0, "x25519", 0, None, ok=False)])
    assert s["failed"] == 1 and s["median_ms"] is None and s["over_rts_ms"] is None
    assert s["mean_ms"] is None and s["min_ms"] is None
    assert rtt.summarize([]) == []


def test_round_trips_cover_every_proposal() -> None:
    assert set(rtt.ROUND_TRIPS) == set(rtt.PROPOSALS)
    for label, prop in rtt.PROPOSALS.items():
        assert rtt.ROUND_TRIPS[label] == 2 + prop.count("-ke")


def test_table_and_markdown() -> None:
    summ = rtt.summarize(ROWS)
    text = rtt.render(summ).splitlines()
    assert text[0].split()[:3] == ["setting", "RTT", "ms"]
    assert set(text[1]) <= {"-", " "}
    assert len(text) == 2 + len(summ)
    assert "11.00" in text[2] and text[3].split()[0] == "rtt50-loss1"
    md = rtt.markdown(summ).splitlines()
    assert md[0].startswith("| setting | RTT ms |") and md[1].startswith("|---|")
    assert md[2].startswith("| lan | 0 | 0 |") and "| 11 |" in md[2]
    assert md[3].count("|") == md[0].count("|")


def test_write_csv_json(tmp_path: Path) -> None:
    summ, paths = rtt.write(tmp_path, ROWS, {"reps": 3})
    assert {p.name for p in paths} == {"rtt.csv", "rtt.json", "rtt_runs.csv", "rtt_runs.json"}
    with open(tmp_path / "rtt.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert [r["setting"] for r in got] == ["lan", "rtt50-loss1"]
    assert got[0]["median_ms"] == "11.0" and got[1]["failed"] == "1"
    data = json.loads((tmp_path / "rtt_runs.json").read_text())
    assert data["meta"]["reps"] == 3 and len(data["rows"]) == len(ROWS)
    assert json.loads((tmp_path / "rtt.json").read_text())["rows"] == summ


def test_settings_by_name() -> None:
    assert [s.name for s in rtt.settings_by_name(None)] == [s.name for s in rtt.SETTINGS]
    (sat,) = rtt.settings_by_name(["sat600"])
    assert (sat.rtt_ms, sat.delay_ms, sat.loss_pct) == (600, 300, 0)


def test_cli_says_not_run_when_uml_unavailable(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from pqike.bench.cli import bench

    monkeypatch.setattr(rtt, "unavailable", lambda: "UML tests need root")
    res = CliRunner().invoke(bench, ["rtt", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "not run: user-mode Linux unavailable: UML tests need root" in res.output
    assert not list(tmp_path.iterdir())
