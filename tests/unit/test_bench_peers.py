"""pqike.bench interop / UDP load / memory helpers: parsing, configs, arithmetic; no timing
is asserted and nothing here needs root or strongSwan."""

from __future__ import annotations

import logging
import os

from click.testing import CliRunner

from pqike.bench import cli, interop, loadgen, perf, udpload, usdaemon
from pqike.bench.inmem import _toml
from pqike.config import load_config

PQ_LOG = """\
10:00:00.100000 [IKE] <c-3mlkem|1> initiating IKE_SA c-3mlkem[1] to 192.168.0.2
10:00:00.101000 [IKE] <c-x25519mlkem768|2> initiating IKE_SA c-x25519mlkem768[2] to 192.168.0.2
10:00:00.104500 [CHD] <c-x25519mlkem768|2> CHILD_SA net{2} established with SPIs 1_i 2_o and TS
10:00:00.110250 [CHD] <c-3mlkem|1> CHILD_SA net{1} established with SPIs 3_i 4_o and TS
10:00:00.120000 [CHD] <c-3mlkem|1> CHILD_SA net{3} established with SPIs 5_i 6_o and TS
23:59:59.999 [IKE] <home|7> initiating IKE_SA home[7] to 192.168.0.2
00:00:00.004 [CHD] <home|7> CHILD_SA net{9} established with SPIs 7_i 8_o and TS
"""

CHARON_LOG = """\
10:00:00.000010 09[IKE] <c-3mlkem|4> initiating IKE_SA c-3mlkem[4] to 192.168.0.2
10:00:00.000500 09[ENC] <c-3mlkem|4> generating IKE_SA_INIT request 0 [ SA KE No N(NATD_S_IP) ]
10:00:00.006010 12[IKE] <c-3mlkem|4> CHILD_SA net{4} established with SPIs c1_i c2_o and TS
"""


def test_handshake_times_from_logs() -> None:
    t = interop.handshake_times(PQ_LOG)
    assert abs(t[("c-3mlkem", 1)] - 0.01025) < 1e-9  # the first CHILD_SA of the IKE_SA
    assert abs(t[("c-x25519mlkem768", 2)] - 0.0035) < 1e-9
    assert abs(t[("home", 7)] - 0.005) < 1e-9  # across midnight
    (only,) = interop.handshake_times(CHARON_LOG).values()
    assert abs(only - 0.006) < 1e-9


def test_quantile() -> None:
    assert interop.quantile([], 0.5) is None
    assert interop.quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert abs(interop.quantile(list(range(11)), 0.9) - 9.0) < 1e-9
    assert interop.quantile([1.0, 2.0], 0.9) == 1.9


def test_summarize_and_ratio() -> None:
    rows = []
    for pairing, base in (("ss->ss", 4.0), ("pq->ss", 6.0)):
        for i in range(3):
            rows.append(
                {
                    "pairing": pairing,
                    "proposal": "3mlkem",
                    "via": "socket",
                    "ok": True,
                    "log_ms": base + i,
                    "cmd_ms": base + i + 1,
                    "overhead_ms": 1.0,
                }
            )
    rows.append(dict(rows[-1], ok=False, log_ms=None))
    ss, pq = interop.summarize(rows)
    assert (ss["pairing"], ss["log_median_ms"], ss["vs_ss"]) == ("ss->ss", 5.0, 1.0)
    assert pq["n"] == 4 and pq["failed"] == 1 and pq["vs_ss"] == 7.0 / 5.0


def test_configs_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for i, tree in enumerate(
        (
            interop.pq_tree("carol", interop.PROPOSALS),
            interop.pq_tree("moon", interop.PROPOSALS),
            udpload.pq_responder(interop.PROPOSALS["3mlkem"]),
        )
    ):
        path = tmp_path / f"{i}.toml"
        path.write_text(_toml(tree))
        load_config(path)
    carol = interop.ss_conf("carol", interop.PROPOSALS)
    assert "c-x25519mlkem768 {" in carol and "c-3mlkem {" in carol
    assert "ke3_mlkem512" in interop.ss_conf("moon", interop.PROPOSALS)
    assert "id = %any" in udpload.ss_responder("aes256-sha256-x25519")
    assert set(cli.PROPOSAL_LABELS) == set(interop.PROPOSALS)


def test_loadgen_identities() -> None:
    gen = loadgen.LoadGen("127.0.0.1", "aes256-sha256-x25519", ["127.0.0.1"], 2, 0)
    try:
        a, b = (gen._config(s, n) for n, s in enumerate(gen.slots, 1))
        assert a.connections["home"].local.id == "c1@bench.example"
        assert b.connections["home"].local.id == "c2@bench.example"
        assert a.connections["home"].local_addrs == ("127.0.0.1",)
        assert gen.slots[0].port != gen.slots[1].port
        res = gen.run(timeout=1)
        assert res["established"] == res["started"] == 0
    finally:
        gen.close()


def test_both_responders_have_their_half_open_limits_off() -> None:
    # the generator's slots share 8 source addresses: a per-IP limit (charon's and pqike's
    # default block_threshold is 5) would measure ignored IKE_SA_INITs, not the responder
    daemon = udpload.pq_responder("aes256-sha256-x25519")["daemon"]
    assert daemon["cookie_threshold"] == daemon["block_threshold"] == 0
    assert udpload.CHARON_OPTIONS["cookie_threshold"] >= 1000000
    assert udpload.CHARON_OPTIONS["block_threshold"] >= 1000000


def test_loadgen_processes_share_and_merge() -> None:
    assert [loadgen.share(500, 3, i) for i in range(3)] == [167, 167, 166]
    assert [loadgen.share(2, 3, i) for i in range(3)] == [1, 1, 0]
    part = {"started": 2, "failed": 0, "timed_out": 0, "loadgen_cpu_s": 0.5}
    merged = loadgen.merge(
        [
            {**part, "established": 2, "wall_s": 1.0, "latencies_s": [0.01, 0.03],
             "errors": {"x": 1}},
            {**part, "established": 2, "wall_s": 2.0, "latencies_s": [0.02, 0.04],
             "errors": {"x": 2, "y": 1}},
        ]
    )  # fmt: skip
    assert merged["established"] == 4 and merged["started"] == 4
    assert merged["hs_per_s"] == 4 / 2.0  # over the longest process's wall time
    assert merged["latencies_s"] == [0.01, 0.02, 0.03, 0.04]
    assert merged["latency_median_ms"] == 30.0
    assert merged["errors"] == {"x": 3, "y": 1}
    assert merged["loadgen_cpu_s"] == 1.0


def test_responder_cores_and_udp_counters() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    resp, gen = udpload.split_cpus(1)
    assert resp == cpus[:1]
    assert gen == (cpus[1:] or cpus)
    counters = udpload.udp_counters(os.getpid())
    assert {"InDatagrams", "RcvbufErrors"} <= set(counters)


def test_microsecond_log_format() -> None:
    rec = logging.LogRecord("pqike.IKE", 25, __file__, 1, "initiating %s", ("x",), None)
    rec.sa = "home|1"
    base = usdaemon._log._Formatter().format(rec)
    micro = usdaemon._MicroFormatter().format(rec)
    assert micro[8] == "." and micro[15] == " " and micro[:12] == base[:12]
    assert micro[15:] == base[12:] == " [IKE] <home|1> initiating x"


def test_cpu_seconds_and_ratios() -> None:
    assert udpload.cpu_seconds(os.getpid()) > 0
    rows = [
        {"proposal": "p", "concurrency": 10, "responder": r, "established": 100, **v}
        for r, v in (
            ("pqike", {"responder_cpu_ms_per_hs": 3.0, "hs_per_s": 100.0}),
            ("strongswan", {"responder_cpu_ms_per_hs": 1.5, "hs_per_s": 150.0}),
        )
    ]
    (r,) = udpload.ratios(rows)
    assert r["cpu_ratio"] == 2.0 and r["wall_rate_ratio"] == 1.5


def test_memory_rss_worker_tiny() -> None:
    x = interop.PROPOSALS["x25519+mlkem768"]
    rss = perf._rss_worker(x, "aes256-sha256", 3, "rss")
    assert rss["established"] == 3 and rss["rss_bytes"] > 0
    tm = perf._rss_worker(x, "aes256-sha256", 3, "tracemalloc")
    assert tm["established"] == 3 and tm["bytes_per_sa"] > 0


def test_cli_load_memory_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    args = ["load", "--only", "x25519", "--no-inmem", "--no-udp", "--sas", "2", "--sample", "2"]
    r = CliRunner().invoke(cli.bench, [*args, "--out", str(tmp_path), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "rss" in r.output and "tracemalloc 2" in r.output
    assert (tmp_path / "memory.csv").is_file()
