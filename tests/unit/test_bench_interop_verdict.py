"""pqike bench interop: one line per proposal (and via) saying whether both of pqike's roles
against charon are within 1.1x charon<->charon (issue 12), from the summary's medians."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from pqike.bench import cli, interop


def _rows(proposal: str, medians: dict[str, float | None], via: str = "socket") -> list[dict]:
    """Three handshakes per pairing around ``median`` (None: all of them failed)."""
    rows = []
    for pairing, median in medians.items():
        for delta in (-0.5, 0.0, 0.5):
            ok = median is not None
            log = median + delta if ok else None
            rows.append({"pairing": pairing, "proposal": proposal, "via": via, "ok": ok,
                         "log_ms": log, "cmd_ms": (log or 0) + 1, "overhead_ms": 1.0})  # fmt: skip
    return rows


def test_both_roles_within_the_target() -> None:
    rows = _rows("x25519+mlkem768", {"ss->ss": 4.0, "pq->ss": 4.4, "ss->pq": 3.8})
    (line,) = interop.verdicts(interop.summarize(rows))
    assert line == (
        "x25519+mlkem768 (socket): pq->ss 1.10x, ss->pq 0.95x; both <= 1.1x ss->ss: yes"
    )


def test_one_role_above_the_target_per_proposal_and_via() -> None:
    rows = _rows("3mlkem", {"ss->ss": 4.0, "pq->ss": 4.0, "ss->pq": 5.0})
    rows += _rows("3mlkem", {"ss->ss": 4.0, "pq->ss": 4.8, "ss->pq": 4.0}, via="cli")
    rows += _rows("x25519", {"ss->ss": 2.0, "pq->ss": 2.0, "pq->pq": 9.0})
    socket, x25519, cli_ = interop.verdicts(interop.summarize(rows))
    assert socket.startswith("3mlkem (socket): pq->ss 1.00x, ss->pq 1.25x;")
    assert socket.endswith("NO, above 1.1x: ss->pq")
    assert cli_.startswith("3mlkem (cli): pq->ss 1.20x") and cli_.endswith("above 1.1x: pq->ss")
    # socket before cli; pqike as responder not measured: no verdict (pq->pq is no role)
    assert x25519.endswith("ss->pq -; both <= 1.1x ss->ss: not known (ss->pq: no ratio)")


def test_no_reference_no_verdict() -> None:
    rows = _rows("3mlkem", {"ss->ss": None, "pq->ss": 4.0, "ss->pq": 4.0})
    (line,) = interop.verdicts(interop.summarize(rows))
    assert line.endswith("not known (pq->ss, ss->pq: no ratio)")


def test_cli_prints_the_verdicts_and_keeps_the_json(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rows = _rows("x25519+mlkem768", {"ss->ss": 4.0, "pq->ss": 5.0, "ss->pq": 4.0})

    def fake_run(opts: Any, progress: Any = None) -> tuple[list[dict], None]:
        return [dict(r) for r in rows], None

    monkeypatch.setattr(interop, "run", fake_run)
    args = ["interop", "--out", str(tmp_path), "--no-progress"]
    r = CliRunner().invoke(cli.bench, args)
    assert r.exit_code == 0, r.output
    assert "x25519+mlkem768 (socket): pq->ss 1.25x, ss->pq 1.00x; both <= 1.1x ss->ss: NO" in (
        r.output
    )
    summary = json.loads((tmp_path / "interop_summary.json").read_text())["rows"]
    assert {s["pairing"]: s["vs_ss"] for s in summary} == {
        "ss->ss": 1.0,
        "pq->ss": 1.25,
        "ss->pq": 1.0,
    }
    assert set(summary[0]) == set(interop.summarize(rows)[0])
