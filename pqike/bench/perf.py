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
- Memory: tracemalloc of the responder's state with N established IKE_SAs (each with its
  CHILD_SA in the in-memory kernel), divided by N, after the initiators are gone.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import msgspec

from pqike.bench.inmem import Pair, Setup, configs
from pqike.bench.scenarios import Profile, Scenario
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
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for scen in scens:
        for auth in [scen.auth] if scen.auth else auths:
            if progress:
                progress(f"{scen.name} {auth}")
            runs = []
            status = "ok"
            for _ in range(repeat):
                o = run_pqike(scen, prof, auth, cpu=True, create_child=False)
                if o.status.get("ike_sa") != "ok":
                    status = o.status.get("ike_sa", "?")
                    break
                runs.append(o)
            row: dict[str, Any] = {
                "scenario": scen.name,
                "ike": scen.ike,
                "auth": auth,
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

    def __init__(self, setup: Setup) -> None:
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
        self.moon = Engine(
            self.moon_cfg,
            MemoryKernel(),
            events=self.events.append,
            source_for=lambda r: "192.168.0.2",
        )
        self.cpu = 0.0
        self.now = 0.0
        self._n = 0

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
        before = sum(1 for e in self.events if e.kind == EventKind.IKE_ESTABLISHED)
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
        return sum(1 for e in self.events if e.kind == EventKind.IKE_ESTABLISHED) - before


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
            events=fleet.events.append,
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
