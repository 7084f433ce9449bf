"""``pqike bench rtt``: real handshake time versus RTT and loss, netem inside user-mode Linux.

This host's kernel has no ``sch_netem``; Debian's UML kernel has. The host side boots UML
through tests/uml/harness.run_pytest for tests/uml/bench (the in-guest module), which:

- builds pqike.netns.topology (carol 192.168.0.3 ==veth== moon 192.168.0.2),
- starts two pqike daemons with ``--kernel none`` (negotiation only: no SA install, so the
  figure is the protocol, not XFRM) through pqike.bench.usdaemon (microsecond log stamps),
  carol with one connection per proposal, moon one ``rw`` accepting all of them (PSK,
  virtual IP from a pool, fragment_size 1480: the configurations of ``pqike bench interop``),
- per netem setting (``tc qdisc replace dev eth0 root netem delay RTT/2 loss L`` on *both*
  veth ends, so the delay is per direction and the loss per packet, in each direction) pings
  once to record the RTT actually in effect, then runs one unmeasured warm-up and REPS
  handshakes per proposal (4 x REPS for the lossy setting: at 1 % per packet only about one
  handshake in ten loses a packet; proposals interleaved), each started over carol's control
  socket (``initiate``), then terminated, waiting until neither side has an IKE_SA (with
  loss, the teardown runs with the loss switched off, same delay: a lost DELETE response
  leaves the initiator retransmitting its DELETE for ~165 s to a responder that has already
  forgotten the IKE_SA, and the next ``initiate`` of that connection attaches to the dying
  IKE_SA);
- measures each handshake from carol's log, "initiating IKE_SA" to "CHILD_SA ... established"
  of that IKE_SA (pqike.bench.interop.handshake_times), and counts carol's "retransmit" lines
  of that IKE_SA;
- writes OUTDIR/rtt.json ({"meta", "rows"}), one row per handshake.

The host reads that file, summarizes per setting and proposal, prints the table and writes
bench/results/rtt.csv|json (summary) and rtt_runs.csv|json (every handshake).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pqike.bench import report

REPO = Path(__file__).resolve().parents[2]
GUEST_MODULE = "tests/uml/bench"
RESULT_FILE = "rtt.json"
PARAMS_FILE = "rtt_params.json"

PROPOSALS = {
    "x25519": "aes256-sha256-x25519",
    "x25519+mlkem768": "aes256-sha256-x25519-ke1_mlkem768",
    "x25519+mlkem768+mlkem1024+mlkem512": (
        "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512"
    ),
}
# IKE round trips to IKE_SA + CHILD_SA without loss: IKE_SA_INIT, one IKE_INTERMEDIATE per
# additional key exchange, IKE_AUTH
ROUND_TRIPS = {"x25519": 2, "x25519+mlkem768": 3, "x25519+mlkem768+mlkem1024+mlkem512": 5}


@dataclass(frozen=True)
class Setting:
    name: str
    rtt_ms: float  # nominal: netem delay rtt_ms/2 on each veth end
    loss_pct: float  # netem loss on each veth end (per packet, each direction)
    rep_factor: int = 1  # handshakes = reps x this (loss needs more samples to show)

    @property
    def delay_ms(self) -> float:
        return self.rtt_ms / 2


SETTINGS = (
    Setting("lan", 0, 0),
    Setting("rtt50", 50, 0),
    Setting("rtt50-loss1", 50, 1, rep_factor=4),
    Setting("sat600", 600, 0),
)
DEFAULT_REPS = 5

RUN_COLUMNS = [
    ("setting", "setting"),
    ("proposal", "proposal"),
    ("rep", "rep"),
    ("ok", "ok"),
    ("ms", "ms"),
    ("retransmits", "retr"),
    ("cmd_ms", "cmd ms"),
]
SUMMARY_COLUMNS = [
    ("setting", "setting"),
    ("rtt_ms", "RTT ms"),
    ("loss_pct", "loss %"),
    ("ping_rtt_ms", "ping ms"),
    ("proposal", "proposal"),
    ("round_trips", "RTs"),
    ("n", "n"),
    ("failed", "failed"),
    ("median_ms", "median ms"),
    ("mean_ms", "mean ms"),
    ("min_ms", "min ms"),
    ("max_ms", "max ms"),
    ("retransmits", "retr"),
    ("over_rts_ms", "median-RTs*RTT"),
]


def _r(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (setting, proposal), in first-seen order: n, failed, median/mean/min/max of the
    established handshakes' ms, retransmits summed, and median - RTs x nominal RTT (what the
    handshake costs beyond its round trips: CPU, scheduling, retransmission waits)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["setting"], r["proposal"]), []).append(r)
    out = []
    for (setting, proposal), rs in groups.items():
        ms = [r["ms"] for r in rs if r.get("ok") and r.get("ms") is not None]
        first = rs[0]
        rts = ROUND_TRIPS.get(proposal)
        med = statistics.median(ms) if ms else None
        over = None
        if med is not None and rts is not None:
            over = med - rts * float(first.get("rtt_ms") or 0)
        out.append(
            {
                "setting": setting,
                "rtt_ms": first.get("rtt_ms"),
                "loss_pct": first.get("loss_pct"),
                "ping_rtt_ms": first.get("ping_rtt_ms"),
                "proposal": proposal,
                "round_trips": rts,
                "n": len(rs),
                "failed": len(rs) - len(ms),
                "median_ms": _r(med),
                "mean_ms": _r(statistics.fmean(ms)) if ms else None,
                "min_ms": _r(min(ms)) if ms else None,
                "max_ms": _r(max(ms)) if ms else None,
                "retransmits": sum(int(r.get("retransmits") or 0) for r in rs),
                "over_rts_ms": _r(over),
            }
        )
    return out


def render(summary: Sequence[dict[str, Any]]) -> str:
    return report.table(summary, SUMMARY_COLUMNS)


def markdown(summary: Sequence[dict[str, Any]]) -> str:
    """The summary as a Markdown table (for bench/README.md)."""
    heads = [h for _, h in SUMMARY_COLUMNS]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in summary:
        cells = []
        for k, _ in SUMMARY_COLUMNS:
            v = r.get(k)
            cells.append("-" if v is None else (f"{v:g}" if isinstance(v, float) else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(out_dir: str | Path | None, rows: Sequence[dict[str, Any]], meta: dict[str, Any]):  # type: ignore[no-untyped-def]
    """rtt.csv/json (summary) and rtt_runs.csv/json (every handshake) in out_dir."""
    summ = summarize(rows)
    paths = report.write(out_dir, "rtt", summ, meta)
    paths += report.write(out_dir, "rtt_runs", rows, meta)
    return summ, paths


# --- host side: boot UML ------------------------------------------------------------------


def unavailable() -> str | None:
    """Why the UML run cannot happen here, or None."""
    if not (REPO / "tests" / "uml" / "harness.py").is_file() or not (REPO / GUEST_MODULE).is_dir():
        return "tests/uml (the user-mode-Linux harness) is not in this tree"
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.uml import harness

    return harness.unavailable()


def run(
    reps: int = DEFAULT_REPS,
    settings: Sequence[str] | None = None,
    proposals: Sequence[str] | None = None,
    timeout: float = 420,
    mem: str = "512M",
    outdir: Path | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any], str | None]:
    """Boot UML, run the guest module; (rows, meta, why not) -- why not is None on success."""
    why = unavailable()
    if why:
        return [], {}, f"user-mode Linux unavailable: {why}"
    from tests.uml import harness

    out = Path(outdir) if outdir else Path(tempfile.mkdtemp(prefix="pqike-uml-rtt-"))
    out.mkdir(parents=True, exist_ok=True)
    params = {
        "reps": reps,
        "settings": list(settings) if settings else [s.name for s in SETTINGS],
        "proposals": list(proposals) if proposals else list(PROPOSALS),
    }
    (out / PARAMS_FILE).write_text(json.dumps(params))
    (out / RESULT_FILE).unlink(missing_ok=True)
    t0 = time.monotonic()
    args = [GUEST_MODULE, "-s", "-q", "-rs"]
    res = harness.run_pytest(args, timeout=timeout, mem=mem, outdir=out)
    data_file = out / RESULT_FILE
    if not data_file.is_file():
        tail = (res.output or res.console)[-3000:]
        return [], {}, f"UML run gave no {RESULT_FILE} (exit {res.returncode}, in {out}):\n{tail}"
    data = json.loads(data_file.read_text())
    meta = {
        **data.get("meta", {}),
        "uml_seconds": round(time.monotonic() - t0, 1),
        "uml_exit": res.returncode,
        "uml_outdir": str(out),
    }
    if res.returncode != 0:
        meta["uml_output_tail"] = res.output[-2000:]
    return data.get("rows", []), meta, None


def settings_by_name(names: Sequence[str] | None) -> list[Setting]:
    by = {s.name: s for s in SETTINGS}
    return [by[n] for n in names] if names else list(SETTINGS)


def setting_dict(s: Setting) -> dict[str, Any]:
    return asdict(s)
