"""Render PNG plots from `pqike bench` JSON results (matplotlib, Agg; `pip install .[bench]`).

    .venv/bin/python bench/plot.py [RESULTS_DIR]        # default bench/results

sizes.json      -> sizes_<profile>.png: bytes per direction and max fragments per proposal
rtt_loss.json   -> rtt_loss.png: time to IKE_SA + CHILD_SA versus RTT, one line per loss rate
rtt.json        -> rtt_real.png: the same measured (`pqike bench rtt`: netem in UML)
handshake.json  -> cpu.png: CPU per side split into KE / auth / symmetric / protocol
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["rows"] if path.is_file() else []


def plot_sizes(results: Path) -> list[Path]:
    rows = [
        r
        for r in _rows(results / "sizes_summary.json")
        if r["phase"] == "ike_sa" and r["auth"] == "psk" and r["bytes_i2r"] is not None
    ]
    out = []
    by_profile: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_profile[r["profile"]].append(r)
    for prof, rs in by_profile.items():
        names = [r["scenario"] for r in rs]
        x = range(len(rs))
        fig, ax = plt.subplots(figsize=(max(8, len(rs) * 0.45), 5.5))
        ax.bar(
            [i - 0.2 for i in x], [r["bytes_i2r"] for r in rs], 0.4, label="initiator → responder"
        )
        ax.bar(
            [i + 0.2 for i in x], [r["bytes_r2i"] for r in rs], 0.4, label="responder → initiator"
        )
        ss = [(i, r["ss_bytes_i2r"]) for i, r in zip(x, rs, strict=True) if r.get("ss_bytes_i2r")]
        if ss:
            ax.scatter(
                [i - 0.2 for i, _ in ss],
                [v for _, v in ss],
                marker="_",
                s=200,
                c="k",
                label="strongSwan 6.1 (i → r)",
                zorder=3,
            )
        ax.set_yscale("log")
        ax.set_ylabel("IKE bytes to establish the IKE_SA (PSK)")
        ax.set_xticks(list(x), names, rotation=60, ha="right", fontsize=8)
        ax2 = ax.twinx()
        ax2.plot(
            list(x),
            [r["max_fragments"] for r in rs],
            "o",
            color="tab:red",
            label="fragments of the largest message",
        )
        ax2.set_ylabel("fragments (largest message)", color="tab:red")
        ax2.set_ylim(0, max(r["max_fragments"] for r in rs) + 2)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)
        ax.set_title(f"IKE_SA establishment: bytes and fragments (fragment profile {prof})")
        fig.tight_layout()
        path = results / f"sizes_{prof}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out


def plot_rtt(results: Path) -> list[Path]:
    rows = [r for r in _rows(results / "rtt_loss.json") if r.get("mean_s") is not None]
    if not rows:
        return []
    scens = sorted({r["scenario"] for r in rows})
    fig, axes = plt.subplots(1, len(scens), figsize=(5 * len(scens), 4.2), squeeze=False)
    for ax, scen in zip(axes[0], scens, strict=True):
        by_loss: dict[float, list[dict]] = defaultdict(list)
        for r in rows:
            if r["scenario"] == scen:
                by_loss[r["loss"]].append(r)
        for loss, rs in sorted(by_loss.items()):
            rs.sort(key=lambda r: r["rtt_ms"])
            ax.plot(
                [r["rtt_ms"] for r in rs],
                [r["mean_s"] for r in rs],
                "o-",
                label=f"loss {loss:.0%} (mean)",
            )
        ax.set_xlabel("RTT (ms)")
        ax.set_ylabel("time to IKE_SA + CHILD_SA (s)")
        ax.set_title(scen, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(
        "Handshake time vs RTT and loss (simulated: virtual clock, pqike retransmits)", fontsize=10
    )
    fig.tight_layout()
    path = results / "rtt_loss.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_rtt_real(results: Path) -> list[Path]:
    """rtt.json/rtt_runs.json (`pqike bench rtt`, netem in UML) -> rtt_real.png: medians of the
    loss-free settings against RTT per proposal, every handshake as a point (x: lossy)."""
    summ = [r for r in _rows(results / "rtt.json") if r.get("median_ms") is not None]
    runs = [r for r in _rows(results / "rtt_runs.json") if r.get("ok") and r.get("ms")]
    if not summ:
        return []
    props = list(dict.fromkeys(r["proposal"] for r in summ))
    jit = max(r["rtt_ms"] for r in summ) * 0.01 or 1.0  # spread the points of one RTT a bit
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, prop in enumerate(props):
        color = f"C{i}"
        clean = sorted(
            (r for r in summ if r["proposal"] == prop and not r["loss_pct"]),
            key=lambda r: r["rtt_ms"],
        )
        ax.plot(
            [r["rtt_ms"] for r in clean],
            [r["median_ms"] for r in clean],
            "-",
            color=color,
            label=f"{prop} (median, no loss)",
        )
        for lossy in (False, True):
            pts = [r for r in runs if r["proposal"] == prop and bool(r["loss_pct"]) == lossy]
            ax.scatter(
                [r["rtt_ms"] + ((i - 1) * 2 + lossy) * jit for r in pts],
                [r["ms"] for r in pts],
                marker="x" if lossy else "o",
                s=18,
                color=color,
                alpha=0.7,
                label=f"{prop}, loss {pts[0]['loss_pct']:g}% each way" if lossy and pts else None,
            )
    ax.set_yscale("log")
    ax.set_xlabel("RTT (ms, netem delay RTT/2 on each veth end)")
    ax.set_ylabel("initiating IKE_SA -> CHILD_SA established (ms)")
    ax.set_title("Real handshake time vs RTT and loss (pqike <-> pqike, netem in UML)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = results / "rtt_real.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_cpu(results: Path) -> list[Path]:
    rows = [r for r in _rows(results / "handshake.json") if r.get("i_total_ms") is not None]
    if not rows:
        return []
    names = [f"{r['scenario']} ({r['auth']})" for r in rows]
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.5), 5))
    parts = ("kem", "auth", "sym", "protocol")
    for side, off in (("i", -0.2), ("r", 0.2)):
        bottom = [0.0] * len(rows)
        for j, part in enumerate(parts):
            vals = [r[f"{side}_{part}_ms"] for r in rows]
            ax.bar(
                [i + off for i in range(len(rows))],
                vals,
                0.4,
                bottom=bottom,
                color=f"C{j}",
                label=part if side == "i" else None,
                hatch="" if side == "i" else "//",
            )
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xticks(range(len(rows)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("CPU ms per handshake (hatched: responder)")
    ax.legend(fontsize=8)
    ax.set_title("CPU per IKE_SA establishment, split by primitive")
    fig.tight_layout()
    path = results / "cpu.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def main(argv: list[str]) -> int:
    results = Path(argv[1]) if len(argv) > 1 else Path(__file__).parent / "results"
    made = plot_sizes(results) + plot_rtt(results) + plot_rtt_real(results) + plot_cpu(results)
    for p in made:
        print(f"wrote {p}")
    if not made:
        print(f"no results in {results}: run `pqike bench sizes|handshake` first", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
