"""A UDP IKEv2 load generator: pqike engines as initiators over real sockets.

    python -m pqike.bench.loadgen --target 192.168.0.2 --proposal aes256-sha256-x25519 \\
        --handshakes 300 --concurrency 20 --source 192.168.0.100 --source 192.168.0.101

``--concurrency`` slots each own a UDP socket (source addresses round-robin over
``--source``, an ephemeral port each) and run one handshake at a time: a fresh initiator
engine with its own identity ``c<n>@bench.example`` (so a responder's uniqueness policy and
INITIAL_CONTACT never tear down the others), PSK, and either no CHILD_SA (RFC 6023 childless
IKE_SA, the default) or the CHILD_SA "net" in IKE_AUTH (``--child``; then with a virtual IP
from the responder's pool, as carol in the interop tests: a CHILD_SA to the initiator's own
address makes charon's kernel-libipsec refuse the route, "conflicts with IKE traffic").

A slot whose handshake finished (IKE_SA, and CHILD_SA if asked for, established) starts the
next one until ``--handshakes`` were started; the engines' own retransmission timers run on
the monotonic clock. The engines think they use ports 500/4500; each slot's socket stands in
for both, like a NAT, so the responder sees a NAT in IKE_SA_INIT and both move to port 4500
for IKE_AUTH (what a charon responder with kernel-libipsec asks for anyway). Finished
engines are dropped without a DELETE: the responder keeps their IKE_SAs (the driver
restarts the responder between runs).

Protocol on stdio (for pqike.bench.load_udp, which runs this inside the carol namespace):
after setup it prints ``READY``, waits for a line on stdin, runs, and prints one JSON object:
established, failed, wall_s (first initiate -> last established), latency quantiles, its own
process CPU and the time it was runnable but waited for a CPU (the scheduler's run-queue
wait, /proc/self/schedstat; null where the kernel keeps no schedstat).
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from pqike.bench.inmem import PSK, _toml
from pqike.config import Config, load_config
from pqike.daemon.udp import Kind as UdpKind
from pqike.daemon.udp import classify, frame
from pqike.engine import Engine
from pqike.events import Datagram, Endpoint, Event, EventKind
from pqike.kernel.base import MemoryKernel

RESPONDER_ID = "moon.strongswan.org"


def runqueue_wait_s() -> float | None:
    """Seconds this process has waited on a run queue: runnable, but a CPU was busy with
    something else (the responder, or any other process on a shared machine)."""
    try:
        with open("/proc/self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def base_config(
    target: str, proposal: str, esp: str = "aes256-sha256", vip: bool = False
) -> Config:
    tree: dict[str, Any] = {
        "daemon": {"fragment_size": 1480, "cookie_threshold": 0, "control_socket": "/nonexistent"},
        "connections": {
            "home": {
                "remote_addrs": [target],
                "proposals": [proposal],
                "local": {"auth": "psk", "id": "c0@bench.example"},
                "remote": {"auth": "psk", "id": RESPONDER_ID},
                "children": {"net": {"remote_ts": ["10.1.0.0/24"], "esp_proposals": [esp]}},
            }
        },
        "secrets": {"ike-any": {"secret": PSK}},
    }
    if vip:
        tree["connections"]["home"]["vips"] = ["0.0.0.0"]
    with tempfile.TemporaryDirectory(prefix="pqike-loadgen-") as d:
        path = Path(d) / "pqike.toml"
        path.write_text(_toml(tree))
        return load_config(path)


@dataclass
class Slot:
    sock: socket.socket
    addr: str
    port: int
    engine: Engine | None = None
    events: list[Event] = field(default_factory=list)
    started: float = 0.0


class LoadGen:
    def __init__(
        self,
        target: str,
        proposal: str,
        sources: list[str],
        concurrency: int,
        total: int,
        child: bool = False,
        esp: str = "aes256-sha256",
        id_base: int = 0,
    ) -> None:
        self.id_base = id_base  # identities of several generator processes stay unique
        self.base = base_config(target, proposal, esp, vip=child)
        self.child = child
        self.total = total
        self.started = self.established = self.failed = 0
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.sel = selectors.DefaultSelector()
        self.slots: list[Slot] = []
        for i in range(concurrency):
            addr = sources[i % len(sources)] if sources else ""
            family = socket.AF_INET6 if ":" in target else socket.AF_INET
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.bind((addr, 0))
            s.setblocking(False)
            host, port = s.getsockname()[:2]
            slot = Slot(s, host if addr else self._source(target), port)
            self.slots.append(slot)
            self.sel.register(s, selectors.EVENT_READ, slot)

    @staticmethod
    def _source(target: str) -> str:
        from pqike.engine import default_source

        return default_source(target)

    def _config(self, slot: Slot, n: int) -> Config:
        home = self.base.connections["home"]
        home = msgspec.structs.replace(
            home,
            local_addrs=(slot.addr,),
            local=msgspec.structs.replace(home.local, id=f"c{self.id_base + n}@bench.example"),
        )
        return msgspec.structs.replace(self.base, connections={"home": home})

    def _start(self, slot: Slot, now: float) -> None:
        self.started += 1
        slot.events = []
        slot.engine = Engine(
            self._config(slot, self.started),
            MemoryKernel(),
            events=slot.events.append,
            source_for=lambda r, a=slot.addr: a,
        )
        slot.started = now
        slot.engine.initiate("net" if self.child else None, "home", now)
        self._flush(slot)

    def _flush(self, slot: Slot) -> None:
        assert slot.engine is not None
        for d in slot.engine.pop_outgoing():
            # the engine believes it is on ports 500/4500; the slot's socket maps both onto
            # its one ephemeral port, like a NAT would
            data = frame(d, 500, 4500)
            try:
                slot.sock.sendto(data, (d.dst.host, d.dst.port))
            except BlockingIOError:
                self.errors["send: socket buffer full"] = (
                    self.errors.get("send: socket buffer full", 0) + 1
                )

    def _settle(self, slot: Slot, now: float) -> None:
        """Account a finished handshake and start the next one."""
        want = EventKind.CHILD_ESTABLISHED if self.child else EventKind.IKE_ESTABLISHED
        done = any(e.kind == want for e in slot.events)
        bad = next(
            (e for e in slot.events if e.kind in (EventKind.IKE_FAILED, EventKind.CHILD_FAILED)),
            None,
        )
        if not done and bad is None:
            return
        if done:
            self.established += 1
            self.latencies.append(now - slot.started)
        else:
            assert bad is not None
            self.failed += 1
            key = bad.message[:120]
            self.errors[key] = self.errors.get(key, 0) + 1
        slot.engine = None
        self.last = now
        if self.started < self.total:
            self._start(slot, now)

    def run(self, timeout: float) -> dict[str, Any]:
        cpu0, wait0 = time.process_time(), runqueue_wait_s()
        t0 = time.monotonic()
        self.last = t0
        for slot in self.slots:
            if self.started < self.total:
                self._start(slot, t0)
        deadline = t0 + timeout
        while self.established + self.failed < self.total:
            now = time.monotonic()
            if now > deadline:
                break
            nxt = min(
                (d for s in self.slots if s.engine and (d := s.engine.next_deadline())),
                default=now + 0.05,
            )
            for key, _ in self.sel.select(max(0.0, min(nxt - now, 0.05, deadline - now))):
                slot: Slot = key.data
                while True:
                    try:
                        data, (host, port, *_) = slot.sock.recvfrom(65536)
                    except BlockingIOError:
                        break
                    if slot.engine is None:
                        continue  # a late retransmission for a finished handshake
                    kind, msg = classify(data, natt=port != 500)
                    if kind is not UdpKind.IKE:
                        continue
                    now = time.monotonic()
                    local = Endpoint(slot.addr, 500 if port == 500 else 4500)
                    slot.engine.receive(Datagram(msg, Endpoint(host, port), local), now)
                    self._flush(slot)
                    self._settle(slot, now)
            now = time.monotonic()
            for slot in self.slots:
                if slot.engine is not None:
                    d = slot.engine.next_deadline()
                    if d is not None and d <= now:
                        slot.engine.tick(now)
                        self._flush(slot)
                        self._settle(slot, now)
        lat = sorted(self.latencies)
        wait1 = runqueue_wait_s()

        def q(p: float) -> float | None:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3 if lat else None

        return {
            "started": self.started,
            "established": self.established,
            "failed": self.failed,
            "timed_out": self.total - self.established - self.failed,
            "wall_s": self.last - t0,
            "hs_per_s": self.established / (self.last - t0) if self.last > t0 else None,
            "latency_median_ms": q(0.5),
            "latency_p90_ms": q(0.9),
            "loadgen_cpu_s": time.process_time() - cpu0,
            "loadgen_wait_s": wait1 - wait0 if wait0 is not None and wait1 is not None else None,
            "errors": self.errors,
            "latencies_s": lat,
        }

    def close(self) -> None:
        for s in self.slots:
            self.sel.unregister(s.sock)
            s.sock.close()


def share(total: int, procs: int, i: int) -> int:
    """Process ``i``'s part of ``total`` (handshakes or slots) split over ``procs``."""
    return total // procs + (1 if i < total % procs else 0)


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from those of processes that started together: counts add up, the wall
    time is the longest, latencies are pooled."""
    lat = sorted(x for r in results for x in r["latencies_s"])

    def q(p: float) -> float | None:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3 if lat else None

    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    established = sum(r["established"] for r in results)
    wall = max(r["wall_s"] for r in results)
    return {
        "started": sum(r["started"] for r in results),
        "established": established,
        "failed": sum(r["failed"] for r in results),
        "timed_out": sum(r["timed_out"] for r in results),
        "wall_s": wall,
        "hs_per_s": established / wall if wall > 0 else None,
        "latency_median_ms": q(0.5),
        "latency_p90_ms": q(0.9),
        "loadgen_cpu_s": sum(r["loadgen_cpu_s"] for r in results),
        "loadgen_wait_s": _sum_known(r.get("loadgen_wait_s") for r in results),
        "errors": errors,
        "latencies_s": lat,
        "procs": len(results),
    }


def _sum_known(values: Iterable[float | None]) -> float | None:
    """The sum, or None when any part is unknown."""
    got = list(values)
    return None if any(v is None for v in got) else sum(v for v in got if v is not None)


def _helpers(argv: list[str], a: argparse.Namespace) -> list[subprocess.Popen[str]]:
    """Processes 1..procs-1 of the generator: the same arguments with their share. They
    always wait for this process's go (also with --no-wait), so that all start together."""
    own = [arg for arg in argv if arg != "--no-wait"]
    out = []
    for i in range(1, a.procs):
        args = [*own, "--procs", "1", "--handshakes", str(share(a.handshakes, a.procs, i))]
        args += ["--concurrency", str(share(a.concurrency, a.procs, i))]
        args += ["--id-base", str(a.id_base + i * a.handshakes)]
        out.append(
            subprocess.Popen(
                [sys.executable, "-m", "pqike.bench.loadgen", *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m pqike.bench.loadgen", description=__doc__)
    p.add_argument("--target", required=True)
    p.add_argument("--proposal", required=True)
    p.add_argument("--esp", default="aes256-sha256")
    p.add_argument("--handshakes", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--source", action="append", default=[])
    p.add_argument("--child", action="store_true", help="CHILD_SA in IKE_AUTH (default: none)")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--no-wait", action="store_true", help="don't wait for a line on stdin")
    p.add_argument("--procs", type=int, default=1, help="generator processes (slots split)")
    p.add_argument("--id-base", type=int, default=0, help=argparse.SUPPRESS)
    raw = sys.argv[1:] if argv is None else argv
    a = p.parse_args(raw)
    helpers = _helpers(raw, a) if a.procs > 1 else []
    gen = LoadGen(
        a.target,
        a.proposal,
        a.source,
        share(a.concurrency, a.procs, 0),
        share(a.handshakes, a.procs, 0),
        child=a.child,
        esp=a.esp,
        id_base=a.id_base,
    )
    try:
        for h in helpers:
            assert h.stdout is not None
            h.stdout.readline()  # READY
        if not a.no_wait:
            print("READY", flush=True)
            sys.stdin.readline()
        for h in helpers:
            assert h.stdin is not None
            h.stdin.write("go\n")
            h.stdin.flush()
        results = [gen.run(a.timeout)]
        results += [json.loads(h.communicate()[0]) for h in helpers]
    finally:
        gen.close()
        for h in helpers:
            if h.poll() is None:
                h.kill()
    print(json.dumps(merge(results) if helpers else results[0]), flush=True)


if __name__ == "__main__":
    main()
