"""``pqike bench handshake`` and ``pqike bench load``: CPU, wall time, simulated RTT/loss,
responder throughput and memory per IKE_SA, all with pqike engines in one process.

- CPU per side is process CPU (time.process_time) of the calls into that side's engine, split
  by pqike.bench.inmem.CpuMeter into kem / auth / sym (SK, PRF+, key schedule) / protocol.
- Wall time "in memory" is the whole handshake with both engines in this process and no
  network: it is the sum of both sides' CPU plus the harness, i.e. loopback minus the sockets.
- RTT/loss: virtual time. Datagrams are delayed by RTT/2 and dropped with the given
  probability (seeded); the engines' own retransmission timers (charon's 4 s * 1.8^n) run on
  the virtual clock. This is a simulation of the protocol's timing, not netem.
- Load: one responder engine and N initiator engines (distinct identities) keep N handshakes
  in flight; handshakes per second = established IKE_SAs / responder process CPU, i.e. what
  one core sustains for the responder (the initiators' CPU is not counted).
- Memory per IKE_SA (``memory_rss``, what ``pqike bench load --sas N`` reports): a fresh
  Python process builds N established responder IKE_SAs (each with its CHILD_SA in the
  in-memory kernel) by in-memory handshakes and reads its own VmRSS from /proc before
  (after a warm-up of ``WARMUP`` SAs, so imports and caches are in the baseline) and after;
  (after - before) / N. No tracemalloc, so 10k SAs take about a minute. It counts
  everything the process holds, C allocations (OpenSSL/liboqs) included, plus the slack of
  Python's allocator: the initiator engines are built and dropped 50 at a time in the same
  process, their freed blocks stay in the heap and are reused, so the slack is about one
  batch, not N.
- ``memory_sample``: tracemalloc (Python allocations only) around ``sample`` SAs after the
  same warm-up, bytes per SA extrapolated to N; a cross-check of the RSS figure.
- ``memory_per_sa``: the older, slow method (tracemalloc over all N SAs).
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from pqike.bench.inmem import Pair, Setup, configs
from pqike.bench.scenarios import Profile, Scenario, auth_label
from pqike.bench.sizes import run_pqike
from pqike.engine import Engine
from pqike.events import Datagram, Event, EventKind
from pqike.kernel.base import MemoryKernel


def handshake_cpu(
    scens: list[Scenario],
    prof: Profile,
    auths: list[str],
    repeat: int = 5,
    progress: Callable[[str], None] | None = None,
    ppks: tuple[str, ...] = ("no",),
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for scen in scens:
        for auth, ppk in [(a, k) for a in ([scen.auth] if scen.auth else auths) for k in ppks]:
            if progress:
                progress(f"{scen.name} {auth_label(auth, ppk)}")
            runs = []
            status = "ok"
            for _ in range(repeat):
                o = run_pqike(scen, prof, auth, cpu=True, create_child=False, ppk=ppk)
                if o.status.get("ike_sa") != "ok":
                    status = o.status.get("ike_sa", "?")
                    break
                runs.append(o)
            row: dict[str, Any] = {
                "scenario": scen.name,
                "ike": scen.ike,
                "auth": auth_label(auth, ppk),
                "ppk": ppk,
                "profile": prof.name,
                "runs": len(runs),
                "status": status,
            }
            if runs:
                row["wall_ms"] = statistics.median(o.wall for o in runs) * 1e3
                for side in ("initiator", "responder"):
                    for part in ("total", "kem", "auth", "sym", "protocol"):
                        row[f"{side[0]}_{part}_ms"] = (
                            statistics.median(o.cpu[side][part] for o in runs) * 1e3
                        )
            rows.append(row)
    return rows


def rtt_loss(
    scens: list[Scenario],
    prof: Profile,
    rtts_ms: list[float],
    losses: list[float],
    seeds: int = 10,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Virtual time until the initiator has the IKE_SA and its CHILD_SA."""
    rows: list[dict[str, Any]] = []
    for scen in scens:
        if scen.unavailable():
            rows.append({"scenario": scen.name, "status": f"unavailable: {scen.unavailable()}"})
            continue
        setup = Setup(scen.ike, scen.esp, None, scen.auth or "psk", prof.fragment_size, prof.ipv6)
        for rtt in rtts_ms:
            for loss in losses:
                if progress:
                    progress(f"{scen.name} rtt {rtt:g} ms loss {loss:.0%}")
                times, failed = [], 0
                for seed in range(seeds if loss else 1):
                    import random

                    pair = Pair.create(setup, delay=rtt / 2e3, loss=loss, rng=random.Random(seed))
                    done: list[float] = []

                    def up(pair: Pair = pair, done: list[float] = done) -> bool:
                        if not done and any(
                            e.kind == EventKind.CHILD_ESTABLISHED for e in pair.events["carol"]
                        ):
                            done.append(pair.now)
                        return bool(done)

                    pair.initiate("net", "home")
                    pair.run(until=up, limit=600)
                    if done:
                        times.append(done[0])
                    else:
                        failed += 1
                rows.append(
                    {
                        "scenario": scen.name,
                        "ike": scen.ike,
                        "rtt_ms": rtt,
                        "loss": loss,
                        "runs": len(times) + failed,
                        "failed": failed,
                        "mean_s": statistics.mean(times) if times else None,
                        "median_s": statistics.median(times) if times else None,
                        "max_s": max(times) if times else None,
                        "status": "simulated",
                    }
                )
    return rows


# --- load and memory --------------------------------------------------------------------------


class _Fleet:
    """One responder, many initiator engines with distinct identities and addresses."""

    def __init__(self, setup: Setup, keep_events: bool = False) -> None:
        carol_cfg, moon_cfg = configs(setup)
        rw = moon_cfg.connections["rw"]
        rw = msgspec.structs.replace(rw, remote=msgspec.structs.replace(rw.remote, id="%any"))
        secret = next(iter(moon_cfg.secrets.ike.values()))
        anyone = msgspec.structs.replace(secret, ids=())
        self.moon_cfg = msgspec.structs.replace(
            moon_cfg,
            connections={"rw": rw},
            secrets=msgspec.structs.replace(moon_cfg.secrets, ike={"any": anyone}),
        )
        self.carol_base = msgspec.structs.replace(
            carol_cfg, secrets=msgspec.structs.replace(carol_cfg.secrets, ike={"any": anyone})
        )
        self.events: list[Event] = []
        self.keep_events = keep_events
        self.established = 0
        self.moon = Engine(
            self.moon_cfg,
            MemoryKernel(),
            events=self.on_event,
            source_for=lambda r: "192.168.0.2",
        )
        self.cpu = 0.0
        self.now = 0.0
        self._n = 0

    def on_event(self, e: Event) -> None:
        if e.kind == EventKind.IKE_ESTABLISHED:
            self.established += 1
        if self.keep_events:
            self.events.append(e)

    def initiator(self) -> tuple[Engine, str]:
        self._n += 1
        n = self._n
        ip = f"10.{200 + (n >> 16)}.{(n >> 8) & 255}.{n & 255}"
        home = self.carol_base.connections["home"]
        home = msgspec.structs.replace(
            home,
            local_addrs=(ip,),
            local=msgspec.structs.replace(home.local, id=f"c{n}@bench.example"),
        )
        cfg = msgspec.structs.replace(self.carol_base, connections={"home": home})
        return Engine(cfg, MemoryKernel(), source_for=lambda r: ip), ip

    def handshake_batch(self, count: int) -> int:
        """``count`` handshakes in flight at once; returns how many got established."""
        carols = {}
        for _ in range(count):
            eng, ip = self.initiator()
            eng.initiate("net", "home", self.now)
            carols[ip] = eng
        before = self.established
        pending: list[Datagram] = [d for e in carols.values() for d in e.pop_outgoing()]
        while pending:
            nxt: list[Datagram] = []
            for d in pending:
                if d.dst.host == "192.168.0.2":
                    t = time.process_time()
                    self.moon.receive(d, self.now)
                    self.cpu += time.process_time() - t
                else:
                    carols[d.dst.host].receive(d, self.now)
            for e in carols.values():
                nxt += e.pop_outgoing()
            nxt += self.moon.pop_outgoing()
            pending = nxt
        return self.established - before


def load(
    scen: Scenario, concurrency: int, total: int, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "scenario": scen.name,
        "ike": scen.ike,
        "concurrency": concurrency,
        "handshakes": total,
    }
    if scen.unavailable():
        row["status"] = f"unavailable: {scen.unavailable()}"
        return row
    fleet = _Fleet(Setup(scen.ike, scen.esp))
    done = 0
    t = time.perf_counter()
    while done < total:
        done += fleet.handshake_batch(min(concurrency, total - done))
        if progress:
            progress(done, total)
        fleet.moon = _fresh(fleet)  # keep the responder's table small: load, not memory
    wall = time.perf_counter() - t
    row.update(
        {
            "status": "ok",
            "established": done,
            "responder_cpu_s": fleet.cpu,
            "responder_hs_per_s": done / fleet.cpu if fleet.cpu else None,
            "system_wall_s": wall,
            "system_hs_per_s": done / wall,
            "strongswan": "not run: needs a UDP load generator against charon (pqike's "
            "initiators speak only in memory here)",
        }
    )
    return row


def _fresh(fleet: _Fleet) -> Engine:
    return (
        fleet.moon
        if len(fleet.moon.sas) < 2000
        else Engine(
            fleet.moon_cfg,
            MemoryKernel(),
            events=fleet.on_event,
            source_for=lambda r: "192.168.0.2",
        )
    )


def memory_per_sa(
    scen: Scenario, count: int, batch: int = 50, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = {"scenario": scen.name, "ike": scen.ike, "sas": count}
    if scen.unavailable():
        row["status"] = f"unavailable: {scen.unavailable()}"
        return row
    setup = Setup(scen.ike, scen.esp)
    gc.collect()
    tracemalloc.start()
    try:
        fleet = _Fleet(setup)
        gc.collect()  # loading the config leaves cycles: freed now, not counted against SAs
        base = tracemalloc.get_traced_memory()[0]
        t = time.perf_counter()
        done = 0
        while done < count:
            done += fleet.handshake_batch(min(batch, count - done))
            if progress:
                progress(done, count)
        gc.collect()
        current = tracemalloc.get_traced_memory()[0]
        established = sum(1 for sa in fleet.moon.sas.values() if sa.established)
        wall = time.perf_counter() - t
    finally:
        tracemalloc.stop()
    row.update(
        {
            "status": "ok",
            "established": established,
            "bytes_total": current - base,
            "bytes_per_sa": (current - base) / max(1, established),
            "wall_s": wall,
        }
    )
    return row


# --- memory without tracemalloc -------------------------------------------------------------

WARMUP = 100


def _vm(field: str) -> int:
    """VmRSS / VmHWM of this process, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


def _build(fleet: _Fleet, count: int, batch: int = 50) -> int:
    done = 0
    while done < count:
        got = fleet.handshake_batch(min(batch, count - done))
        if not got:
            break
        done += got
    return done


def _rss_worker(ike: str, esp: str, count: int, mode: str) -> dict[str, Any]:
    """In a fresh process: build WARMUP + count responder SAs, measure (see module doc)."""
    fleet = _Fleet(Setup(ike, esp))
    _build(fleet, WARMUP)
    gc.collect()
    t = time.perf_counter()
    if mode == "tracemalloc":
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        done = _build(fleet, count)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
    else:
        base = _vm("VmRSS")
        done = _build(fleet, count)
        gc.collect()
        used = _vm("VmRSS") - base
    established = sum(1 for sa in fleet.moon.sas.values() if sa.established) - WARMUP
    return {
        "established": established,
        "built": done,
        "bytes_total": used,
        "bytes_per_sa": used / max(1, established),
        "rss_bytes": _vm("VmRSS"),
        "peak_rss_bytes": _vm("VmHWM"),
        "wall_s": time.perf_counter() - t,
    }


def _in_subprocess(scen: Scenario, count: int, mode: str, timeout: float) -> dict[str, Any]:
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "pqike.bench.perf", "memory", scen.ike, scen.esp]
    r = subprocess.run(
        [*argv, str(count), mode], capture_output=True, text=True, timeout=timeout, env=env
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip()[-500:] or f"exit {r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def memory_rss(scen: Scenario, count: int, timeout: float = 1800) -> dict[str, Any]:
    """Bytes per established responder IKE_SA from the RSS of a fresh process with N SAs."""
    row: dict[str, Any] = {"scenario": scen.name, "ike": scen.ike, "sas": count, "method": "rss"}
    if scen.unavailable():
        row["status"] = f"unavailable: {scen.unavailable()}"
        return row
    try:
        row.update(_in_subprocess(scen, count, "rss", timeout))
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        row["status"] = f"failed: {e}"
        return row
    row["status"] = "ok"
    return row


def memory_sample(
    scen: Scenario, sample: int, extrapolate_to: int, timeout: float = 600
) -> dict[str, Any]:
    """tracemalloc around ``sample`` SAs, bytes per SA, extrapolated to ``extrapolate_to``."""
    row: dict[str, Any] = {
        "scenario": scen.name,
        "ike": scen.ike,
        "sas": extrapolate_to,
        "method": f"tracemalloc {sample} x{extrapolate_to / sample:g}",
    }
    if scen.unavailable():
        row["status"] = f"unavailable: {scen.unavailable()}"
        return row
    try:
        res = _in_subprocess(scen, sample, "tracemalloc", timeout)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        row["status"] = f"failed: {e}"
        return row
    row.update(
        {
            "established": res["established"],
            "bytes_per_sa": res["bytes_per_sa"],
            "bytes_total": round(res["bytes_per_sa"] * extrapolate_to),
            "wall_s": res["wall_s"],
            "status": "ok (extrapolated)",
        }
    )
    return row


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[1] != "memory":
        sys.exit("usage: python -m pqike.bench.perf memory IKE ESP COUNT rss|tracemalloc")
    print(json.dumps(_rss_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])))
