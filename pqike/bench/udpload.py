"""Responder load over real UDP: pqike daemon vs charon (strongSwan 6.1) as the responder.

``pqike bench load --udp``: the reference topology (pqike.netns), the responder in moon
(192.168.0.2, port 500), the load generator (pqike.bench.loadgen: pqike engines as
initiators) in carol, sending from ``sources`` extra addresses of carol's eth0
(192.168.0.100...) and an ephemeral port per concurrent handshake.

For each proposal, responder and run: a fresh responder (that is the cleanup of the IKE_SAs
the previous run left), the generator starts and binds its sockets, then the responder's
CPU time (utime + stime of /proc/PID/stat, all threads, clock ticks) is read, the generator
runs ``handshakes`` handshakes with ``concurrency`` in flight, and the CPU time is read again.
Reported: established handshakes per second of wall time (first initiate to last
established, as the generator sees it) and responder CPU ms per handshake.

Both responders are configured alike: the same IKE and ESP proposals, PSK with any remote
identity, no COOKIEs or per-IP blocking (pqike cookie_threshold and block_threshold = 0, i.e.
off; charon cookie_threshold and block_threshold = 1000000): the generator's slots share
``sources`` addresses, so a per-IP limit of 5 half-open IKE_SAs would ignore most
IKE_SA_INITs at 50 and more in flight and measure the initiators' retransmission timeouts),
log level 0 everywhere (charon's syslog off). pqike runs ``--kernel none``. By default the
IKE_SAs are childless (RFC 6023: no CHILD_SA, so charon's
kernel-libipsec install and pqike's absent one don't enter the comparison); ``child=True``
adds the CHILD_SA in IKE_AUTH, with a virtual IP from the responder's pool for each
initiator (10.3.0.0/16), as in the interop tests.

The wall rate is bounded by the generator: it is Python (pqike's initiator costs about what
its responder does) and shares the machine's cores with the responder, so against charon it
is the generator's speed that is measured. The CPU per handshake is the comparable figure.
Each row has the generator's CPU utilisation (loadgen_cpu_pct: its CPU time over the wall
time, per core it can use) and its run-queue wait (loadgen_wait_pct: runnable, but its core
busy with something else): above GEN_BUSY together it is the bottleneck. ``responder_quota`` (cores;
pqike.bench.cgroup) caps each responder's CPU so that the generator keeps spare CPU; the
wall rate then measures the responder at that quota.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pqike.bench import cgroup
from pqike.bench.inmem import PSK
from pqike.bench.interop import ESP, MOON_ID, PROPOSALS, _peer_class
from pqike.bench.strongswan import REPO, problem

SOURCES_BASE = "192.168.0.{}"
GEN_BUSY = 0.85  # generator CPU utilisation above which it, not the responder, sets the rate
CHARON_OPTIONS: dict[str, Any] = {
    "cookie_threshold": 1000000,
    "block_threshold": 1000000,
    "syslog": {"daemon": {"default": -1}},
}


def pq_responder(proposal: str, pool: bool = False) -> dict[str, Any]:
    """pool: a virtual IP pool (for --child; charon answers an initiator that asks for no
    virtual IP with FAILED_CP_REQUIRED when its connection has pools)."""
    tree: dict[str, Any] = {
        "daemon": {"fragment_size": 1480, "cookie_threshold": 0, "block_threshold": 0},
        "connections": {
            "rw": {
                "local_addrs": ["192.168.0.2"],
                "proposals": [proposal],
                "local": {"auth": "psk", "id": MOON_ID},
                "remote": {"auth": "psk", "id": "%any"},
                "children": {"net": {"local_ts": ["10.1.0.0/24"], "esp_proposals": [ESP]}},
            }
        },
        "secrets": {"ike-any": {"secret": PSK}},
    }
    if pool:
        tree["connections"]["rw"]["pools"] = ["rw_pool"]
        tree["pools"] = {"rw_pool": {"addrs": "10.3.0.0/16"}}
    return tree


def ss_responder(proposal: str, pool: bool = False) -> str:
    pools = "pools = rw_pool" if pool else ""
    pool_def = "pools { rw_pool { addrs = 10.3.0.0/16 } }" if pool else ""
    return f"""connections {{
  rw {{
    local_addrs = 192.168.0.2
    {pools}
    version = 2
    proposals = {proposal}
    local {{ auth = psk
             id = {MOON_ID} }}
    remote {{ auth = psk
              id = %any }}
    children {{ net {{ local_ts = 10.1.0.0/24
                     esp_proposals = {ESP} }} }}
  }}
}}
{pool_def}
secrets {{ ike-any {{ secret = "{PSK}" }} }}
"""


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads, also those that exited)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def udp_counters(pid: int) -> dict[str, int]:
    """The Udp: line of /proc/PID/net/snmp: the counters of that process's network
    namespace (InErrors, RcvbufErrors: datagrams the kernel dropped, socket buffer full)."""
    with open(f"/proc/{pid}/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Udp:")]
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:], strict=True)}


def pin(pid: int, cpus: Sequence[int]) -> None:
    """Every thread of ``pid`` onto ``cpus`` (threads it starts later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), cpus)


def gen_cores(gen_cpus: Sequence[int], procs: int) -> int:
    """Cores the generator can keep busy: one per process (each is single-threaded), at most
    as many as it may run on."""
    return max(1, min(procs, len(gen_cpus) or len(os.sched_getaffinity(0))))


def split_cpus(responder_cpus: int) -> tuple[list[int], list[int]]:
    """The responder gets the first ``responder_cpus`` cores we may use, the generator the
    rest (all of them when none are left), so that it has spare CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    resp = cpus[:responder_cpus]
    return resp, cpus[responder_cpus:] or cpus


def _responder(impl: str, topo: Any, proposal: str, work: Path, child: bool) -> Any:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    if impl == "pqike":
        return _peer_class()(
            "moon",
            topo.moon,
            pq_responder(proposal, pool=child),
            work,
            listen=topo.moon_addr,
            kernel="none",
            log_level="0",
        )
    from tests.harness.strongswan import Charon

    return Charon(
        "moon",
        topo.moon,
        ss_responder(proposal, pool=child),
        work,
        fragment_size=1480,
        log_levels={"default": 0},
        options=CHARON_OPTIONS,
    )


def _generator(
    topo: Any,
    proposal: str,
    handshakes: int,
    concurrency: int,
    sources: Sequence[str],
    child: bool,
    timeout: float,
    cpus: Sequence[int] = (),
    procs: int = 1,
) -> subprocess.Popen[str]:
    from tests.harness.netns import ns_argv

    argv = [sys.executable, "-m", "pqike.bench.loadgen", "--target", topo.moon_addr]
    argv += ["--proposal", proposal, "--esp", ESP, "--handshakes", str(handshakes)]
    argv += ["--concurrency", str(concurrency), "--timeout", str(timeout)]
    for s in sources:
        argv += ["--source", s]
    argv += ["--procs", str(procs)]
    if child:
        argv.append("--child")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        ns_argv(topo.carol, argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )


def one_run(
    impl: str,
    topo: Any,
    label: str,
    proposal: str,
    handshakes: int,
    concurrency: int,
    sources: Sequence[str],
    child: bool,
    timeout: float,
    work: Path,
    responder_cpus: int = 0,
    gen_procs: int = 1,
    responder_quota: float = 0.0,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "responder": impl,
        "proposal": label,
        "ike": proposal,
        "child": child,
        "concurrency": concurrency,
        "handshakes": handshakes,
    }
    resp = _responder(impl, topo, proposal, work, child)
    gen = None
    quota = contextlib.ExitStack()  # the responder's cgroup, removed after it stopped
    try:
        resp.start()
        if impl == "strongswan":
            resp.load_all()
        pid = resp.pid
        with open(f"/proc/{pid}/comm") as f:
            row["responder_comm"] = f.read().strip()
        gen_cpus: list[int] = []
        if responder_cpus:
            resp_cpus, gen_cpus = split_cpus(responder_cpus)
            pin(pid, resp_cpus)
            row["responder_cpus"] = ",".join(map(str, resp_cpus))
            row["loadgen_cpus"] = ",".join(map(str, gen_cpus))
        group = None
        if responder_quota:
            group = quota.enter_context(cgroup.cpu_quota(pid, responder_quota))
            row["responder_quota"] = responder_quota
        gen = _generator(
            topo, proposal, handshakes, concurrency, sources, child, timeout, gen_cpus, gen_procs
        )
        assert gen.stdin is not None and gen.stdout is not None
        ready = gen.stdout.readline().strip()
        if ready != "READY":
            _, err = gen.communicate(timeout=30)
            row["status"] = f"generator failed: {(ready + err).strip()[-300:]}"
            return row
        time.sleep(0.2)  # let the responder settle after its start
        idle0, t_idle = cpu_seconds(pid), time.monotonic()
        time.sleep(0.5)
        idle_rate = (cpu_seconds(pid) - idle0) / (time.monotonic() - t_idle)
        cpu0 = cpu_seconds(pid)
        udp0, gen_udp0 = udp_counters(pid), udp_counters(gen.pid)
        throttle0 = cgroup.throttling(group) if group else None
        gen.stdin.write("go\n")
        gen.stdin.flush()
        out = gen.stdout.readline()
        cpu1 = cpu_seconds(pid)
        udp1, gen_udp1 = udp_counters(pid), udp_counters(gen.pid)
        if group and throttle0:
            row["responder_throttled_pct"] = _throttled_pct(throttle0, cgroup.throttling(group))
        gen.wait(timeout=30)
        res = json.loads(out) if out.strip() else {}
        if not res:
            row["status"] = f"generator failed: {gen.stderr.read()[-300:] if gen.stderr else ''}"
            return row
        done = res["established"]
        cpu = cpu1 - cpu0
        cores = gen_cores(gen_cpus, gen_procs)
        row.update(
            {
                "established": done,
                "failed": res["failed"],
                "timed_out": res["timed_out"],
                "wall_s": res["wall_s"],
                "hs_per_s": res["hs_per_s"],
                "responder_cpu_s": cpu,
                "responder_cpu_ms_per_hs": cpu / done * 1e3 if done else None,
                "responder_idle_cpu_per_s": idle_rate,
                "hs_per_responder_cpu_s": done / cpu if cpu else None,
                "latency_median_ms": res["latency_median_ms"],
                "latency_p90_ms": res["latency_p90_ms"],
                "loadgen_cpu_ms_per_hs": res["loadgen_cpu_s"] / done * 1e3 if done else None,
                "loadgen_cpu_pct": _busy_pct(res["loadgen_cpu_s"], res["wall_s"], cores),
                "loadgen_wait_pct": _busy_pct(res.get("loadgen_wait_s"), res["wall_s"], cores),
                "responder_cpu_pct": _busy_pct(cpu, res["wall_s"], 1),
                "responder_rcvbuf_errors": udp1["RcvbufErrors"] - udp0["RcvbufErrors"],
                "loadgen_rcvbuf_errors": gen_udp1["RcvbufErrors"] - gen_udp0["RcvbufErrors"],
                "responder_datagrams_in": udp1["InDatagrams"] - udp0["InDatagrams"],
                "errors": "; ".join(f"{k} x{v}" for k, v in res["errors"].items()),
                "status": "ok" if done == handshakes else f"{handshakes - done} not established",
            }
        )
        return row
    finally:
        if gen is not None and gen.poll() is None:
            gen.kill()
            with contextlib.suppress(Exception):
                gen.wait(timeout=5)
        with quota:
            resp.stop()


def _busy_pct(cpu_s: float | None, wall_s: float, cores: int) -> float | None:
    """CPU time in percent of what ``cores`` cores give in ``wall_s``."""
    return 100 * cpu_s / (wall_s * cores) if cpu_s is not None and wall_s > 0 else None


def busy_generator(rows: Sequence[dict[str, Any]]) -> list[str]:
    """A warning per run whose generator wanted a CPU (running, or runnable but waiting for
    one) more than GEN_BUSY of the time: it, not the responder, may have set the rate."""
    out = []
    for r in rows:
        busy, wait = r.get("loadgen_cpu_pct") or 0.0, r.get("loadgen_wait_pct") or 0.0
        if busy + wait > 100 * GEN_BUSY:
            out.append(
                f"warning: load generator busy {busy:.0f} % (+{wait:.0f} % waiting for a CPU) "
                f"of its core(s) with {r['responder']} {r['proposal']} N={r['concurrency']} "
                f"run {r.get('run', 0)}: the rate may be the generator's "
                "(--responder-quota leaves it spare CPU)"
            )
    return out


def _throttled_pct(before: dict[str, int], after: dict[str, int]) -> float | None:
    """Share of the run's scheduler periods in which the responder's quota ran out."""
    periods = after["nr_periods"] - before["nr_periods"]
    return 100 * (after["nr_throttled"] - before["nr_throttled"]) / periods if periods else None


def run(
    proposals: dict[str, str] | None = None,
    responders: Sequence[str] = ("pqike", "strongswan"),
    handshakes: int = 300,
    concurrency: Sequence[int] = (20,),
    runs: int = 1,
    sources: int = 8,
    child: bool = False,
    timeout: float = 120.0,
    progress: Callable[[str], None] | None = None,
    responder_cpus: int = 0,
    gen_procs: int = 1,
    responder_quota: float = 0.0,
) -> tuple[list[dict[str, Any]], str | None]:
    why = problem() or (cgroup.problem() if responder_quota else None)
    if why:
        return [], why
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.harness import netns as nsh

    nsh.remove_stale()
    srcs = [SOURCES_BASE.format(100 + i) for i in range(sources)]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pqike-bl-") as tmp, nsh.topology() as topo:
        for s in srcs:
            nsh.add_address(topo.carol, "eth0", f"{s}/24")
        i = 0
        for run_no in range(runs):
            for label, proposal in (proposals or PROPOSALS).items():
                for n in concurrency:
                    for impl in responders:
                        i += 1
                        if progress:
                            progress(f"{impl} {label} N={n} run {run_no + 1}")
                        row = one_run(
                            impl, topo, label, proposal, handshakes, n, srcs, child, timeout,
                            Path(tmp) / str(i), responder_cpus, gen_procs, responder_quota,
                        )  # fmt: skip
                        row["run"] = run_no
                        rows.append(row)
    return rows, None


def ratios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """pqike / strongSwan per (proposal, concurrency), over the medians of the runs."""
    import statistics

    groups: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        if r.get("established"):
            g = groups.setdefault((r["proposal"], r["concurrency"]), {})
            g.setdefault(r["responder"], []).append(r)
    out = []
    for (label, n), g in groups.items():
        if "pqike" not in g or "strongswan" not in g:
            continue

        def med(rs: list[dict[str, Any]], key: str) -> float:
            return statistics.median(r[key] for r in rs if r.get(key) is not None)

        pq_cpu = med(g["pqike"], "responder_cpu_ms_per_hs")
        ss_cpu = med(g["strongswan"], "responder_cpu_ms_per_hs")
        pq_rate, ss_rate = med(g["pqike"], "hs_per_s"), med(g["strongswan"], "hs_per_s")
        out.append(
            {
                "proposal": label,
                "concurrency": n,
                "pqike_cpu_ms_per_hs": pq_cpu,
                "strongswan_cpu_ms_per_hs": ss_cpu,
                "cpu_ratio": pq_cpu / ss_cpu if ss_cpu else None,
                "pqike_hs_per_s": pq_rate,
                "strongswan_hs_per_s": ss_rate,
                "wall_rate_ratio": ss_rate / pq_rate if pq_rate else None,
            }
        )
    return out
