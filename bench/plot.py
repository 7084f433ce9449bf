"""Render PNG plots from `pqike bench` JSON results (matplotlib, Agg; `pip install .[bench]`).

    .venv/bin/python bench/plot.py [RESULTS_DIR [FIGURES_DIR]]
                                  # default bench/results -> bench/figures (shown in the README)

sizes.json      -> sizes_<profile>.png: bytes per direction and max fragments per proposal
rtt_loss.json   -> rtt_loss.png: time to IKE_SA + CHILD_SA versus RTT, one line per loss rate
rtt.json        -> rtt_real.png: the same measured (`pqike bench rtt`: netem in UML)
handshake.json  -> cpu.png: CPU per side split into KE / auth / symmetric / protocol
kem_cpu.json    -> kem_cpu_level.png: keygen+encaps+decaps per KE method against NIST level
mtu.json        -> mtu_sweep.png, fragmentation.png: RFC 7383 vs IP fragmentation per MTU
throughput.json -> throughput.png: ESP Mbit/s per data plane pairing (`pqike bench throughput`)
load_udp.json   -> load.png: responder hs/s, CPU ms/hs and latency against concurrency,
                   pqike vs charon (`pqike bench load --udp`)
continuity.json -> continuity.png: extra loss and longest outage through rekeys per pair and
                   netem loss (tests/uml/bench/test_continuity.py, in UML)

Methods a run could not measure (no provider here) are listed under the plot, not dropped
silently.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

DPI = 110


def _save(fig: plt.Figure, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.savefig(path, dpi=DPI, bbox_inches="tight")  # nothing (title, legend) is cut off
    plt.close(fig)
    return path


def _dropped_note(fig: plt.Figure, rows: list[dict], key: str = "scenario") -> None:
    """List under the figure what the run could not measure, and why (first reason)."""
    dropped: dict[str, str] = {}
    for r in rows:
        status = str(r.get("status") or "")
        if status.startswith(("unavailable", "not run")):
            dropped.setdefault(str(r[key]), status)
    if not dropped:
        return
    names = ", ".join(dropped)
    why = next(iter(dropped.values()))
    fig.text(
        0.01,
        -0.02,
        f"not shown (no provider here): {names}\n({why})",
        fontsize=7,
        va="top",
        ha="left",
        wrap=True,
    )


def _labels(ax: plt.Axes, bars: object, fmt: str = "{:.0f}", size: int = 6) -> None:
    ax.bar_label(
        bars,
        labels=[fmt.format(b.get_height()) for b in bars],
        fontsize=size,
        rotation=90,
        padding=2,
    )


def _rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["rows"] if path.is_file() else []


def plot_sizes(results: Path, out: Path) -> list[Path]:
    every = [r for r in _rows(results / "sizes_summary.json") if r["phase"] == "ike_sa"]
    rows = [r for r in every if r["auth"] == "psk" and r["bytes_i2r"] is not None]
    made = []
    by_profile: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_profile[r["profile"]].append(r)
    for prof, rs in by_profile.items():
        names = [r["scenario"] for r in rs]
        x = list(range(len(rs)))
        fig, (ax, axf) = plt.subplots(
            2,
            1,
            figsize=(max(8, len(rs) * 0.45), 7.5),
            sharex=True,
            gridspec_kw={"height_ratios": [3, 1.2]},
        )
        for off, key, label in (
            (-0.2, "bytes_i2r", "initiator → responder"),
            (0.2, "bytes_r2i", "responder → initiator"),
        ):
            bars = ax.bar([i + off for i in x], [r[key] for r in rs], 0.4, label=label)
            _labels(ax, bars)
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
        ax.set_ylim(top=max(r["bytes_r2i"] for r in rs) * 4)  # room for the value labels
        ax.set_ylabel("IKE bytes to establish the IKE_SA\n(PSK, log scale)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
        ax.grid(axis="y", alpha=0.3)
        # fragments in their own panel: no twin axis whose markers hide behind the bars
        frag = axf.bar(x, [r["max_fragments"] for r in rs], 0.6, color="tab:red")
        axf.bar_label(frag, fontsize=7, padding=1)
        axf.yaxis.set_major_locator(MaxNLocator(integer=True))
        axf.set_ylim(0, max(r["max_fragments"] for r in rs) * 1.3 + 1)
        axf.set_ylabel("fragments,\nlargest message")
        axf.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
        ax.set_title(f"IKE_SA establishment: bytes and fragments\n(fragment_size {prof})")
        _dropped_note(fig, [r for r in every if r["profile"] == prof])
        fig.tight_layout()
        made.append(_save(fig, out, f"sizes_{prof}.png"))
    return made


def plot_rtt(results: Path, out: Path) -> list[Path]:
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
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
    fig.suptitle(
        "Handshake time vs RTT and loss (simulated: virtual clock, pqike retransmits)", fontsize=10
    )
    fig.tight_layout()
    return [_save(fig, out, "rtt_loss.png")]


def plot_rtt_real(results: Path, out: Path) -> list[Path]:
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
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return [_save(fig, out, "rtt_real.png")]


def plot_cpu(results: Path, out: Path) -> list[Path]:
    every = _rows(results / "handshake.json")
    rows = [r for r in every if r.get("i_total_ms") is not None]
    if not rows:
        return []
    names = [f"{r['scenario']} ({r['auth']})" for r in rows]
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.5), 5))
    parts = ("kem", "auth", "sym", "protocol")
    for side, off in (("i", -0.2), ("r", 0.2)):
        bottom = [0.0] * len(rows)
        for j, part in enumerate(parts):
            vals = [r[f"{side}_{part}_ms"] for r in rows]
            bars = ax.bar(
                [i + off for i in range(len(rows))],
                vals,
                0.4,
                bottom=bottom,
                color=f"C{j}",
                label=part if side == "i" else None,
                hatch="" if side == "i" else "//",
            )
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        # the total on top of each stack
        ax.bar_label(bars, labels=[f"{b:.1f}" for b in bottom], fontsize=6, rotation=90, padding=2)
    ax.set_ylim(top=max(max(r["i_total_ms"], r["r_total_ms"]) for r in rows) * 1.2)
    ax.set_xticks(range(len(rows)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("CPU ms per handshake\n(left: initiator, hatched: responder)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("CPU per IKE_SA establishment, split by primitive (in memory)")
    _dropped_note(fig, every)
    fig.tight_layout()
    return [_save(fig, out, "cpu.png")]


def _family(method: str) -> str:
    for prefix, fam in (
        ("mlkem", "ML-KEM"),
        ("kyber", "Kyber"),
        ("bike", "BIKE"),
        ("hqc", "HQC"),
        ("frodoa", "FrodoKEM-AES"),
        ("frodos", "FrodoKEM-SHAKE"),
        ("modp", "MODP"),
        ("ecp", "ECP"),
        ("x", "Curve25519/448"),
    ):
        if method.startswith(prefix):
            return fam
    return method


CLASSIC_SHOWN = ("x25519", "x448", "ecp256", "ecp384", "ecp521", "modp2048", "modp3072", "modp4096")
CLASSIC_X = 0  # classic DH has no NIST PQC level: its own column left of level 1


def plot_kem_cpu(results: Path, out: Path) -> list[Path]:
    """kem_cpu.json -> kem_cpu_level.png: ms of keygen+encaps+decaps (log) per NIST level."""
    every = _rows(results / "kem_cpu.json")
    # classic groups beyond these crowd one column; they stay in kem_cpu.csv
    rows = [
        r for r in every if r.get("total_ms") and (r["nist_level"] or r["method"] in CLASSIC_SHOWN)
    ]
    if not rows:
        return []
    fams = list(dict.fromkeys(_family(r["method"]) for r in rows))
    fig, ax = plt.subplots(figsize=(9, 5.5))
    width = 0.8 / len(fams)
    for k, fam in enumerate(fams):
        rs = [r for r in rows if _family(r["method"]) == fam]
        xs = [(r["nist_level"] or CLASSIC_X) + (k - (len(fams) - 1) / 2) * width for r in rs]
        ax.scatter(
            xs,
            [r["total_ms"] for r in rs],
            s=28,
            color=f"C{k % 10}",
            label=fam,
            marker="o" if rs[0]["nist_level"] else "s",
            zorder=3,
        )
        for n, (xv, r) in enumerate(zip(xs, rs, strict=True)):
            # classic columns are crowded: alternate the labels left and right of the points
            left = not r["nist_level"] and n % 2
            ax.annotate(
                r["method"],
                (xv, r["total_ms"]),
                fontsize=6,
                xytext=(-3 if left else 3, 1),
                textcoords="offset points",
                ha="right" if left else "left",
                va="center",
            )
    ax.set_yscale("log")
    ax.set_xticks(
        [CLASSIC_X, 1, 3, 5], ["classic DH\n(no PQ level;\ncommon groups)", "1", "3", "5"]
    )
    ax.set_xlim(-1.2, 5.8)
    ax.set_xlabel("NIST PQC security level")
    ax.set_ylabel("keygen + encaps + decaps, ms of CPU (log)")
    ax.grid(alpha=0.3, which="both", axis="y")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title("CPU per key exchange method against NIST level (one side's three steps)")
    _dropped_note(fig, every, key="method")
    fig.tight_layout()
    return [_save(fig, out, "kem_cpu_level.png")]


def plot_mtu(results: Path, out: Path) -> list[Path]:
    """mtu.json -> mtu_sweep.png (datagrams per establishment vs MTU, RFC 7383 solid, IP
    fragmentation dashed) and fragmentation.png (bytes and loss survival at one MTU each)."""
    rows = _rows(results / "mtu.json")
    if not rows:
        return []
    props = list(dict.fromkeys(r["proposal"] for r in rows))
    all_mtus = sorted({r["mtu"] for r in rows})
    pos = {m: i for i, m in enumerate(all_mtus)}  # evenly spaced: 1280/1400/1500 stay apart
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(12, 4.8))
    for i, prop in enumerate(props):
        for method, style in (("RFC 7383", "o-"), ("IP fragmentation", "x--")):
            rs = sorted(
                (r for r in rows if r["proposal"] == prop and r["method"] == method),
                key=lambda r: r["mtu"],
            )
            mtus = [pos[r["mtu"]] for r in rs]
            ax.plot(
                mtus, [r["datagrams"] for r in rs], style, color=f"C{i}", label=f"{prop}, {method}"
            )
            axp.plot(mtus, [100 * r["p_all_ok"] for r in rs], style, color=f"C{i}")
    loss = rows[0]["loss"]
    for a in (ax, axp):
        a.set_xticks(range(len(all_mtus)), [str(m) for m in all_mtus])
        a.set_xlabel("path MTU = fragment_size (bytes, IPv4)")
        a.grid(alpha=0.3)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("datagrams to establish the IKE_SA")
    ax.set_title("Datagrams per establishment")
    axp.set_ylabel(f"% of establishments without a retransmission\n({loss:.0%} loss per datagram)")
    axp.set_title("Establishments that lose nothing")
    fig.legend(
        *ax.get_legend_handles_labels(),
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=2,
    )
    fig.suptitle(
        "MTU sweep: RFC 7383 fragments (solid) vs one IKE message left to IP "
        "fragmentation (dashed)",
        fontsize=11,
    )
    fig.tight_layout()
    made = [_save(fig, out, "mtu_sweep.png")]

    # fragmentation.png: the two choices side by side at each proposal's MTU 1280 and 576
    pick = [m for m in (576, 1280, 1500) if any(r["mtu"] == m for r in rows)]
    fig, axes = plt.subplots(1, len(pick), figsize=(5 * len(pick), 4.8), squeeze=False)
    for a, mtu in zip(axes[0], pick, strict=True):
        x = list(range(len(props)))
        for off, method in ((-0.2, "RFC 7383"), (0.2, "IP fragmentation")):
            rs = {r["proposal"]: r for r in rows if r["mtu"] == mtu and r["method"] == method}
            bars = a.bar(
                [i + off for i in x],
                [rs[p]["wire_bytes"] for p in props],
                0.4,
                label=method,
                color="C0" if method == "RFC 7383" else "C1",
            )
            a.bar_label(
                bars,
                labels=[f"{rs[p]['datagrams']} dg\n{rs[p]['wire_bytes']} B" for p in props],
                fontsize=6,
                padding=1,
            )
        a.set_xticks(x, props, rotation=30, ha="right", fontsize=8)
        a.set_ylim(top=max(r["wire_bytes"] for r in rows if r["mtu"] == mtu) * 1.25)
        a.set_title(f"MTU {mtu}", fontsize=10)
        a.set_ylabel("wire bytes, both ways\n(IP + UDP + IKE)")
        a.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.suptitle("Fragmentation choice per establishment: bytes and datagrams (dg)", fontsize=11)
    fig.tight_layout()
    made.append(_save(fig, out, "fragmentation.png"))
    return made


def plot_throughput(results: Path, out: Path) -> list[Path]:
    """throughput.json -> throughput.png: Mbit/s per pairing (initiator data plane ->
    responder data plane): the median over the rounds, value on the bar."""
    every = _rows(results / "throughput.json")
    rows = [r for r in every if r.get("mbit_s")]
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 1.4), 4.5))
    bars = ax.bar(
        range(len(rows)),
        [r["mbit_s"] for r in rows],
        0.6,
        color=[f"C{i}" for i in range(len(rows))],
        # the range over the rounds, where there were several
        yerr=[
            [r["mbit_s"] - r.get("min_mbit_s", r["mbit_s"]) for r in rows],
            [r.get("max_mbit_s", r["mbit_s"]) - r["mbit_s"] for r in rows],
        ],
        capsize=4,
    )
    ax.bar_label(
        bars, labels=[f"{r['mbit_s']:.0f}" for r in rows], fontsize=8, padding=2,
        label_type="center", color="white", fontweight="bold",
    )  # fmt: skip
    ax.set_ylim(top=max(r.get("max_mbit_s", r["mbit_s"]) for r in rows) * 1.15)
    ax.set_xticks(
        range(len(rows)), [r["pairing"] for r in rows], rotation=20, ha="right", fontsize=8
    )
    ax.set_ylabel("Mbit/s, one TCP stream\n(median; bar: min-max of the rounds)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("ESP throughput through the tunnel, per data plane pairing")
    _dropped_note(fig, every, key="pairing")
    fig.tight_layout()
    return [_save(fig, out, "throughput.png")]


_LOAD_PANELS = (
    ("hs_per_s", "handshakes/s (wall)", False),
    ("responder_cpu_ms_per_hs", "responder CPU ms/handshake", False),
    ("latency_median_ms", "latency ms (median; dashed: p90)", True),
)
_RESPONDER_NAMES = {"pqike": "pqike", "strongswan": "charon"}


def load_series(rows: list[dict]) -> dict[tuple[str, str], dict[str, list[float]]]:
    """(proposal, responder) -> concurrency and the median over the runs of each figure;
    runs that established nothing have no figures and are left out."""
    import statistics

    groups: dict[tuple[str, str], dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("established"):
            groups[(r["proposal"], r["responder"])][r["concurrency"]].append(r)
    out: dict[tuple[str, str], dict[str, list[float]]] = {}
    keys = [k for k, _, _ in _LOAD_PANELS] + ["latency_p90_ms"]
    for key, by_n in groups.items():
        ns = sorted(by_n)
        series: dict[str, list[float]] = {"concurrency": [float(n) for n in ns]}
        for k in keys:
            series[k] = [statistics.median(r[k] for r in by_n[n]) for n in ns]
        out[key] = series
    return out


def plot_load(results: Path, out: Path) -> list[Path]:
    """load_udp.json -> load.png: one row per proposal, hs/s | CPU ms/hs | latency against
    handshakes in flight, pqike and charon from the same run (their cores in the title)."""
    every = _rows(results / "load_udp.json")
    series = load_series(every)
    if not series:
        return []
    proposals = sorted({p for p, _ in series})
    fig, axes = plt.subplots(
        len(proposals), len(_LOAD_PANELS), figsize=(13, 3.6 * len(proposals)), squeeze=False
    )
    for row, proposal in zip(axes, proposals, strict=True):
        for ax, (key, label, log_y) in zip(row, _LOAD_PANELS, strict=True):
            for i, (impl, name) in enumerate(_RESPONDER_NAMES.items()):
                s = series.get((proposal, impl))
                if s is None:
                    continue
                ax.plot(s["concurrency"], s[key], "o-", color=f"C{i}", label=name)
                if key == "latency_median_ms":
                    ax.plot(s["concurrency"], s["latency_p90_ms"], "--", color=f"C{i}")
            ax.set_xscale("log")
            if log_y:
                ax.set_yscale("log")
            else:
                ax.set_ylim(bottom=0)  # a drop reads as what it is
            ax.set_xlabel("handshakes in flight")
            ax.set_ylabel(label, fontsize=8)
            ax.grid(alpha=0.3)
            ax.set_title(proposal, fontsize=9)
        row[0].legend(fontsize=8)
    cores = sorted({str(r["responder_cpus"]) for r in every if r.get("responder_cpus")})
    pinned = f"responder on core(s) {', '.join(cores)}" if cores else "responders not pinned"
    fig.suptitle(f"Responder under load over UDP, childless IKE_SAs, PSK ({pinned})")
    fig.tight_layout()
    return [_save(fig, out, "load.png")]


# tests/uml/bench/test_continuity.py's pairs (carol <-> moon), in this order
CONTINUITY_PAIRS = {
    "pqike": "pqike <-> pqike, xfrm",
    "userspace": "pqike <-> pqike, userspace ESP",
    "pqike-charon": "pqike <-> charon, xfrm",
    "charon": "charon <-> charon, xfrm",
}


def _continuity_rows(path: Path) -> list[dict]:
    """The benchmark writes a plain list of rows; {"meta", "rows"} is read too."""
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    return data["rows"] if isinstance(data, dict) else data


def plot_continuity(results: Path, out: Path) -> list[Path]:
    """continuity.json -> continuity.png: per netem loss (groups) and pair (bars), the
    extra loss (tunnel loss minus netem's own on the same link) and the longest outage in
    pings, with netem's own longest outage as a black tick."""
    rows = _continuity_rows(results / "continuity.json")
    if not rows:
        return []
    pairs = [p for p in CONTINUITY_PAIRS if any(r["peer"] == p for r in rows)]
    pairs += sorted({r["peer"] for r in rows} - set(pairs))
    losses = sorted({r["loss_pct"] for r in rows})
    by = {(r["peer"], r["loss_pct"]): r for r in rows}
    width = 0.8 / len(pairs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    panels = (
        ("extra_loss_pp", "extra loss, percentage points\n(tunnel loss - netem's own)", "{:+.2f}"),
        ("longest_outage_packets", "longest outage, pings in a row", "{:.0f}"),
    )
    for ax, (key, label, fmt) in zip(axes, panels, strict=True):
        for i, peer in enumerate(pairs):
            xs = [j + (i - (len(pairs) - 1) / 2) * width for j in range(len(losses))]
            got = [(x, by[(peer, loss)]) for x, loss in zip(xs, losses, strict=True)
                   if (peer, loss) in by]  # fmt: skip
            bars = ax.bar([x for x, _ in got], [r[key] for _, r in got], width, color=f"C{i}",
                          label=CONTINUITY_PAIRS.get(peer, peer))  # fmt: skip
            ax.bar_label(bars, labels=[fmt.format(r[key]) for _, r in got], fontsize=6,
                         rotation=90, padding=2)  # fmt: skip
            if key == "longest_outage_packets":
                ax.scatter([x for x, _ in got], [r["longest_outage_netem"] for _, r in got],
                           marker="_", s=120, color="black", zorder=3,
                           label="netem alone, same link" if i == 0 else None)  # fmt: skip
        # symlog: noise around 0 stays readable next to an outage of thousands of pings
        ax.set_yscale("symlog", linthresh=1.0)
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * 4 if hi > 1 else hi + 1)  # room for the value labels
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_xticks(range(len(losses)), [f"{loss:g} %" for loss in losses])
        ax.set_xlabel("netem loss each way (50 ms delay each way)")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    seconds = sorted({r["seconds"] for r in rows})
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(
        "Data plane through CHILD_SA rekeys every 3-4 s and IKE_SA rekeys every ~20 s "
        f"({'/'.join(map(str, seconds))} s of ping at a 10 ms interval per row; no bar: no row)",
        fontsize=10,
    )
    fig.tight_layout()
    return [_save(fig, out, "continuity.png")]


PLOTS = (
    plot_sizes,
    plot_rtt,
    plot_rtt_real,
    plot_cpu,
    plot_kem_cpu,
    plot_mtu,
    plot_throughput,
    plot_load,
    plot_continuity,
)


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    results = Path(argv[1]) if len(argv) > 1 else here / "results"
    out = Path(argv[2]) if len(argv) > 2 else here / "figures"
    made = [p for plot in PLOTS for p in plot(results, out)]
    for p in made:
        print(f"wrote {p}")
    if not made:
        print(f"no results in {results}: run `pqike bench sizes|handshake` first", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
