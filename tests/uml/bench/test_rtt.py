"""pqike <-> pqike handshake time under netem delay/loss (see pqike/bench/rtt.py).

Run inside UML by ``pqike bench rtt`` (or ``scripts/uml-test.sh tests/uml/bench -s``); writes
OUTDIR/rtt.json next to the JUnit XML (the only host path the guest can write) and prints the
table. Parameters: OUTDIR/rtt_params.json ({"reps", "settings", "proposals"}), written by the
host side; defaults otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pqike.bench import interop, rtt
from pqike.netns import ns_argv, remove_stale, topology

CAROL, MOON = "192.168.0.3", "192.168.0.2"
_RETRANSMIT = re.compile(r"<([^|>]+)\|(\d+)>\s+retransmit \d+ of request")
_PING_RTT = re.compile(r"time=([\d.]+) ms")


def _tc(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(ns_argv(ns, ["tc", *args]), capture_output=True, text=True, timeout=30)


def _netem(ns: str, s: rtt.Setting) -> None:
    args = ["qdisc", "replace", "dev", "eth0", "root", "netem", "delay", f"{s.delay_ms:g}ms"]
    if s.loss_pct:
        args += ["loss", f"{s.loss_pct:g}%"]
    r = _tc(ns, *args)
    assert r.returncode == 0, f"tc {' '.join(args)}: {r.stdout}{r.stderr}"


def _ping_rtt(ns: str, dst: str, count: int = 3) -> float | None:
    argv = ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "3", dst]
    r = subprocess.run(ns_argv(ns, argv), capture_output=True, text=True, timeout=30)
    times = [float(x) for x in _PING_RTT.findall(r.stdout)]
    return round(min(times), 1) if times else None


def _outdir(config: pytest.Config) -> Path | None:
    xml = getattr(config.option, "xmlpath", None)
    return Path(xml).parent if xml else None


def _params(outdir: Path | None) -> dict[str, Any]:
    p = {"reps": rtt.DEFAULT_REPS, "settings": None, "proposals": None}
    if outdir and (outdir / rtt.PARAMS_FILE).is_file():
        p.update(json.loads((outdir / rtt.PARAMS_FILE).read_text()))
    return p


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, tc)"
    for tool in ("tc", "ping", "nsenter"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


def test_handshake_time_vs_rtt_loss(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    outdir = _outdir(request.config)
    params = _params(outdir)
    reps = int(params["reps"])
    settings = rtt.settings_by_name(params["settings"])
    labels = list(params["proposals"] or rtt.PROPOSALS)
    props = {k: rtt.PROPOSALS[k] for k in labels}
    remove_stale()
    rows: list[dict[str, Any]] = []
    with topology() as topo:
        probe = _tc(topo.carol, "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", "0ms")
        if probe.returncode != 0:
            pytest.skip(f"no netem here ({probe.stderr.strip()}): run in UML (pqike bench rtt)")
        carol = interop.Peer(
            "pq", "carol", topo.carol, interop.pq_tree("carol", props), tmp_path / "carol", CAROL
        )
        moon = interop.Peer(
            "pq", "moon", topo.moon, interop.pq_tree("moon", props), tmp_path / "moon", MOON
        )
        moon.d.start(timeout=90)  # interpreter start over hostfs is slow in UML
        carol.d.start(timeout=90)
        seen: set[tuple[str, int]] = set()
        t_all = time.monotonic()
        try:
            for s in settings:
                for ns in topo.namespaces:
                    _netem(ns, s)
                ping_ms = _ping_rtt(topo.carol, MOON)
                print(
                    f"\n{s.name}: netem delay {s.delay_ms:g}ms loss {s.loss_pct:g}% each "
                    f"way; ping rtt {ping_ms} ms",
                    flush=True,
                )
                for rep in range(-1, reps * s.rep_factor):  # -1: warm-up, not recorded
                    for label in labels:
                        row = _handshake(carol, moon, label, seen, topo.namespaces, s)
                        if rep < 0:
                            continue
                        row.update(
                            setting=s.name,
                            rtt_ms=s.rtt_ms,
                            loss_pct=s.loss_pct,
                            ping_rtt_ms=ping_ms,
                            rep=rep,
                        )
                        rows.append(row)
        finally:
            carol.stop()
            moon.stop()
            if outdir:
                logs = outdir / "logs" / "rtt"
                logs.mkdir(parents=True, exist_ok=True)
                for peer in ("carol", "moon"):
                    for f in (tmp_path / peer).glob("*.log"):
                        shutil.copyfile(f, logs / f"{peer}-{f.name}")
        meta = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "reps": reps,
            "kernel": "none",
            "auth": "psk",
            "esp": interop.ESP,
            "fragment_size": interop.FRAGMENT_SIZE,
            "netem": "delay rtt/2 and loss on both veth ends",
            "cpus": os.cpu_count(),
            "seconds": round(time.monotonic() - t_all, 1),
            "uname": os.uname().release,
        }
        if outdir:
            (outdir / rtt.RESULT_FILE).write_text(json.dumps({"meta": meta, "rows": rows}))
    summ = rtt.summarize(rows)
    print("\n" + rtt.render(summ), flush=True)
    lan = [r for r in rows if r["setting"] == "lan"]
    assert all(r["ok"] for r in lan), [r for r in lan if not r["ok"]]


def _handshake(
    carol: interop.Peer,
    moon: interop.Peer,
    label: str,
    seen: set[tuple[str, int]],
    namespaces: list[str],
    s: rtt.Setting,
) -> dict[str, Any]:
    """One handshake over carol's control socket, then its teardown. With loss, the teardown
    runs on a loss-free link (same delay): a lost DELETE response leaves carol retransmitting
    a DELETE that moon (which already forgot the IKE_SA) ignores, for ~165 s, and a following
    ``initiate`` of the same connection would attach to that dying IKE_SA."""
    conn = interop.conn_name(label)
    ok, cmd_s, msg = carol.initiate(conn, "socket", timeout=30)
    log = carol.log()
    times = interop.handshake_times(log)
    new = sorted(k for k in times if k[0] == conn and k not in seen)
    seen.update(times)
    ms = retr = None
    if ok and new:
        key = new[-1]
        ms = round(times[key] * 1000, 3)
        retr = sum(1 for m in _RETRANSMIT.finditer(log) if (m[1], int(m[2])) == key)
    if s.loss_pct:
        for ns in namespaces:
            _netem(ns, rtt.Setting(s.name, s.rtt_ms, 0))
    carol.terminate_all(timeout=20)
    clean = interop._wait_empty([carol, moon], timeout=20)
    if s.loss_pct:
        for ns in namespaces:
            _netem(ns, s)
    return {
        "proposal": label,
        "ok": bool(ok and ms is not None),
        "ms": ms,
        "retransmits": retr,
        "cmd_ms": round(cmd_s * 1000, 3),
        "clean": clean,
        "error": "" if ok else msg[:200],
    }
