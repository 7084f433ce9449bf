"""bench/plot.py renders every plot from a tiny fixed dataset; pqike.bench.planned's counts."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from pqike import plan as planner
from pqike.bench import planned

PLOT_PY = Path(__file__).resolve().parents[2] / "bench" / "plot.py"


def _plot_module():  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install '.[bench]')")
    spec = importlib.util.spec_from_file_location("bench_plot", PLOT_PY)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(d: Path, name: str, rows: list[dict]) -> None:
    (d / f"{name}.json").write_text(json.dumps({"meta": {}, "rows": rows}))


def _sizes_row(name: str, frags: int | None, status: str = "ok") -> dict:
    b = None if frags is None else 500 * frags
    return {
        "scenario": name,
        "profile": "1480",
        "auth": "psk",
        "phase": "ike_sa",
        "status": status,
        "bytes_i2r": b,
        "bytes_r2i": b,
        "max_fragments": frags,
        "ss_bytes_i2r": None,
    }


def _fixture(d: Path) -> None:
    _write(
        d,
        "sizes_summary",
        [
            _sizes_row("x25519", 1),
            _sizes_row("x25519+hqc3", 7),
            _sizes_row("x25519+bike1", None, "unavailable: liboqs missing"),
        ],
    )
    _write(
        d,
        "rtt_loss",
        [
            {"scenario": "a", "loss": loss, "rtt_ms": rtt, "mean_s": rtt / 1000 + loss}
            for loss in (0, 0.01)
            for rtt in (0, 50)
        ],
    )
    _write(
        d,
        "rtt",
        [
            {"proposal": "x25519", "rtt_ms": rtt, "loss_pct": 0, "median_ms": rtt * 2 + 12}
            for rtt in (0, 50)
        ],
    )
    _write(
        d,
        "rtt_runs",
        [{"proposal": "x25519", "rtt_ms": 50, "loss_pct": 1, "ok": True, "ms": 113.0}],
    )
    parts = {f"{s}_{p}_ms": 1.0 for s in "ir" for p in ("kem", "auth", "sym", "protocol")}
    _write(
        d,
        "handshake",
        [
            {
                "scenario": "x25519",
                "auth": "psk",
                "status": "ok",
                "i_total_ms": 4.0,
                "r_total_ms": 4.0,
                **parts,
            }
        ],
    )
    _write(
        d,
        "kem_cpu",
        [
            {"method": "x25519", "nist_level": None, "total_ms": 0.1, "status": "ok"},
            {"method": "mlkem768", "nist_level": 3, "total_ms": 0.2, "status": "ok"},
            {
                "method": "hqc5",
                "nist_level": 5,
                "total_ms": None,
                "status": "unavailable: no liboqs",
            },
        ],
    )
    _write(d, "mtu", planned.mtu_sweep({"x": "aes256-sha256-x25519-ke1_mlkem768"}, (576, 1280)))
    _write(
        d,
        "throughput",
        [
            {"pairing": "pqike userspace -> pqike userspace", "mbit_s": 136.0, "status": "ok"},
            {
                "pairing": "charon libipsec -> charon libipsec",
                "mbit_s": None,
                "status": "not run: x",
            },
        ],
    )
    _write(d, "load_udp", LOAD_ROWS)
    # as tests/uml/bench/test_continuity.py writes it: a plain list of rows
    (d / "continuity.json").write_text(json.dumps(CONTINUITY))


def _load_row(impl: str, n: int, run: int, rate: float, done: int = 100) -> dict:
    return {
        "responder": impl,
        "proposal": "3mlkem",
        "concurrency": n,
        "run": run,
        "established": done,
        "hs_per_s": rate,
        "responder_cpu_ms_per_hs": 2.0 if impl == "pqike" else 1.0,
        "latency_median_ms": 10.0 * n,
        "latency_p90_ms": 20.0 * n,
        "responder_cpus": "0",
    }


LOAD_ROWS = [
    _load_row("pqike", 10, 0, 300.0),
    _load_row("pqike", 10, 1, 340.0),
    _load_row("pqike", 10, 2, 900.0),  # median of the three: 340
    _load_row("pqike", 500, 0, 310.0),
    _load_row("pqike", 500, 1, 0.0, done=0),  # established nothing: no point
    _load_row("strongswan", 10, 0, 400.0),
    _load_row("strongswan", 500, 0, 420.0),
]


def _continuity_row(peer: str, loss: float, extra: float, outage: int) -> dict:
    return {"peer": peer, "loss_pct": loss, "seconds": 300, "extra_loss_pp": extra,
            "longest_outage_packets": outage, "longest_outage_netem": 2}  # fmt: skip


CONTINUITY = [
    _continuity_row("pqike", 0.0, 0.0, 0),
    _continuity_row("pqike", 5.0, -0.4, 3),
    _continuity_row("charon", 0.0, 0.0, 0),
    _continuity_row("charon", 5.0, 50.9, 1965),
    _continuity_row("userspace", 5.0, 0.3, 4),
]


def test_every_plot_renders(tmp_path: Path) -> None:
    plot = _plot_module()
    _fixture(tmp_path)
    out = tmp_path / "figures"
    assert plot.main(["plot.py", str(tmp_path), str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {
        "sizes_1480.png",
        "rtt_loss.png",
        "rtt_real.png",
        "cpu.png",
        "kem_cpu_level.png",
        "mtu_sweep.png",
        "fragmentation.png",
        "throughput.png",
        "load.png",
        "continuity.png",
    }
    for p in out.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_plot_draws_the_medians_per_concurrency(tmp_path: Path) -> None:
    plot = _plot_module()
    _write(tmp_path, "load_udp", LOAD_ROWS)
    captured = []
    orig = plot._save

    def keep(fig, out, name):  # type: ignore[no-untyped-def]
        captured.append(fig)
        return orig(fig, out, name)

    plot._save = keep
    assert [p.name for p in plot.plot_load(tmp_path, tmp_path / "f")] == ["load.png"]
    rate = captured[0].axes[0]  # first row (3mlkem), hs/s panel
    lines = {ln.get_label(): ln for ln in rate.get_lines()}
    assert list(lines["pqike"].get_xdata()) == [10.0, 500.0]
    assert list(lines["pqike"].get_ydata()) == [340.0, 310.0]
    assert list(lines["charon"].get_ydata()) == [400.0, 420.0]
    assert "core(s) 0" in captured[0].texts[0].get_text()


def test_fragment_axis_has_integer_ticks_and_dropped_methods_are_noted(tmp_path: Path) -> None:
    plot = _plot_module()
    _fixture(tmp_path)
    captured = []
    orig = plot._save

    def keep(fig, out, name):  # type: ignore[no-untyped-def]
        captured.append(fig)
        ticks = [t for t in fig.axes[1].get_yticks() if 0 <= t <= 7]
        texts = [t.get_text() for t in fig.texts]
        result = orig(fig, out, name)
        captured.append((ticks, texts))
        return result

    plot._save = keep
    plot.plot_sizes(tmp_path, tmp_path / "f")
    ticks, texts = captured[1]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert any("x25519+bike1" in t for t in texts)


def test_ip_fragments_use_8_byte_offsets() -> None:
    # MTU 576: 556 bytes of IP payload per fragment are cut to 552 (a multiple of 8)
    assert planned.ip_fragments(552 - 8, 576) == 1
    assert planned.ip_fragments(552 - 8 + 1, 576) == 2
    assert planned.ip_fragments(3000, 1500) == math.ceil(3008 / 1480)


def test_mtu_sweep_rfc7383_counts_are_the_plans() -> None:
    prop = "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024"
    rows = planned.mtu_sweep({"p": prop}, (576, 1280), loss=0.01)
    for mtu in (576, 1280):
        p = planner.plan(prop, fragment_size=mtu, cpu=False)
        packets = [len(m.packets) for x in p.establishment for m in (x.request, x.response)]
        (r,) = [r for r in rows if r["mtu"] == mtu and r["method"] == "RFC 7383"]
        assert r["datagrams"] == sum(packets)
        assert r["p_all_ok"] == pytest.approx(0.99 ** sum(packets))
        (ip,) = [r for r in rows if r["mtu"] == mtu and r["method"] == "IP fragmentation"]
        # IP fragmentation pays one UDP header per message instead of per fragment
        assert ip["wire_bytes"] <= r["wire_bytes"]


def test_throughput_summary_median_and_ratio_to_charon() -> None:
    from pqike.bench import throughput

    rows = [
        {"pairing": "charon libipsec -> charon libipsec", "mbit_s": v, "status": "ok"}
        for v in (200.0, 240.0, 220.0)
    ] + [
        {"pairing": "pqike userspace -> pqike userspace", "mbit_s": 110.0, "status": "ok"},
        {"pairing": "pqike userspace -> pqike userspace", "mbit_s": None, "status": "failed: x"},
    ]
    ss, pq = throughput.summarize(rows)
    assert (ss["mbit_s"], ss["min_mbit_s"], ss["max_mbit_s"], ss["vs_charon"]) == (
        220.0,
        200.0,
        240.0,
        1.0,
    )
    assert (pq["ok"], pq["runs"], pq["mbit_s"], pq["status"]) == (1, 2, 110.0, "failed: x")
    assert pq["vs_charon"] == pytest.approx(0.5)


def test_continuity_bars_are_the_rows(tmp_path: Path) -> None:
    """One bar per (pair, netem loss) row, pairs in the plot's order, missing rows left out;
    netem's own longest outage as a tick per bar."""
    plot = _plot_module()
    _fixture(tmp_path)
    figs = []
    plot._save = lambda fig, out, name: figs.append(fig) or out / name
    plot.plot_continuity(tmp_path, tmp_path / "f")
    (fig,) = figs
    extra, outage = fig.axes
    heights = [b.get_height() for c in extra.containers for b in c]
    assert heights == [0.0, -0.4, 0.3, 0.0, 50.9]  # pqike, userspace, charon
    assert [b.get_height() for c in outage.containers for b in c] == [0, 3, 4, 0, 1965]
    ticks = [y for coll in outage.collections for _, y in coll.get_offsets()]
    assert ticks == [2] * 5
