"""A COOKIE-echoing IKE_SA_INIT flood against one responder engine, in memory.

What one half-open IKE_SA costs (RSS and tracemalloc), what stays after they time out
(with the engine's own table compaction and malloc_trim, then an explicit malloc_trim), and
the process CPU of a legitimate handshake (ke1_mlkem768-ke2_mlkem1024, PSK, both engines)
idle and while the half-open IKE_SAs exist. Every flood request comes from its own address
and echoes the COOKIE it was sent, as an attacker owning that many addresses can.

    .venv/bin/python -m pqike.bench.halfopen [--sas 20000] [--traced 2000] [--legit 20]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import logging
import statistics
import time
import tracemalloc
from collections.abc import Iterator

import msgspec

from pqike.bench.inmem import Setup, configs
from pqike.config import Config
from pqike.engine import Engine
from pqike.events import Datagram, Endpoint
from pqike.kernel.base import MemoryKernel
from pqike.wire.iana import NotifyType
from pqike.wire.message import decode_message
from pqike.wire.payloads import Notify

PROP = "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024"


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _setup() -> tuple[Config, Config, bytes]:
    carol, moon = configs(Setup(PROP))
    # charon's DoS defaults (the in-memory bench turns COOKIEs off: here they are the point)
    daemon = msgspec.structs.replace(moon.daemon, cookie_threshold=10, block_threshold=5)
    moon = msgspec.structs.replace(moon, daemon=daemon)
    template = Engine(carol, MemoryKernel(), source_for=lambda r: "192.168.0.3")
    template.initiate("net", None, 0.0)
    (init,) = template.pop_outgoing()
    return carol, moon, init.data


def _addresses(base: int) -> Iterator[str]:
    for i in range(base, base + (1 << 24)):
        yield f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255 or 1}"


def flood(moon: Engine, init: bytes, count: int, now: float, base: int = 0) -> None:
    """``count`` IKE_SA_INIT requests, each from its own address, echoing the COOKIE."""
    for n, host in zip(range(count), _addresses(base), strict=False):
        msg = decode_message(init)
        msg.spi_i = (base + n + 1).to_bytes(8, "big")
        src, dst = Endpoint(host, 500), Endpoint("192.168.0.2", 500)
        moon.receive(Datagram(data=msg.encode(), src=src, dst=dst), now)
        for reply in moon.pop_outgoing():
            first = decode_message(reply.data).payloads[0]
            if isinstance(first, Notify) and first.notify_type == NotifyType.COOKIE:
                msg.payloads = [Notify(notify_type=NotifyType.COOKIE, data=first.data)]
                msg.payloads += decode_message(init).payloads
                moon.receive(Datagram(data=msg.encode(), src=src, dst=dst), now)
                moon.pop_outgoing()


def legit_cpu(moon: Engine, carol: Config, rounds: int, now: float) -> list[float]:
    """Process CPU (ms) of each of ``rounds`` legitimate handshakes, both engines."""
    out = []
    for _ in range(rounds):
        c = Engine(carol, MemoryKernel(), source_for=lambda r: "192.168.0.3")
        t = time.process_time()
        c.initiate("net", None, now)
        for _ in range(50):
            moved = False
            for src, dst in ((c, moon), (moon, c)):
                for d in src.pop_outgoing():
                    moved = True
                    dst.receive(d, now)
            if not moved:
                break
        out.append((time.process_time() - t) * 1000)
        assert any(sa.state.value == "ESTABLISHED" for sa in c.sas.values()), "legit failed"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sas", type=int, default=20000, help="half-open IKE_SAs (RSS, CPU)")
    ap.add_argument("--traced", type=int, default=2000, help="half-open IKE_SAs (tracemalloc)")
    ap.add_argument("--legit", type=int, default=20, help="legitimate handshakes per phase")
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)  # a daemon under attack logs; that is not measured here
    carol, moon_cfg, init = _setup()
    timeout = moon_cfg.daemon.half_open_timeout

    # RSS, and a legitimate handshake idle / with the flood's state in place
    moon = Engine(moon_cfg, MemoryKernel())
    flood(moon, init, 200, 0.0, base=1 << 23)  # warm-up: caches, allocator pools
    moon.tick(timeout + 1.0)
    gc.collect()
    idle = legit_cpu(moon, carol, args.legit, 100.0)
    gc.collect()
    rss0 = _rss()
    t = time.process_time()
    flood(moon, init, args.sas, 200.0)
    flood_cpu = (time.process_time() - t) / args.sas * 1000
    gc.collect()
    rss1 = _rss()
    half_open = sum(1 for sa in moon.sas.values() if sa.state.value == "CONNECTING")
    loaded = legit_cpu(moon, carol, args.legit, 200.0)
    t = time.process_time()
    moon.tick(200.0 + timeout + 1.0)
    expire_cpu = (time.process_time() - t) * 1000
    rss2 = _rss()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
    rss3 = _rss()

    # Python allocations per half-open IKE_SA, and what is left of them after the timeout
    moon = Engine(moon_cfg, MemoryKernel())
    flood(moon, init, 200, 0.0, base=1 << 23)
    moon.tick(timeout + 1.0)
    gc.collect()
    tracemalloc.start()
    b0 = tracemalloc.get_traced_memory()[0]
    flood(moon, init, args.traced, 200.0)
    gc.collect()
    b1 = tracemalloc.get_traced_memory()[0]
    moon.tick(200.0 + timeout + 1.0)
    gc.collect()
    b2 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()

    mb = 1 << 20
    print(f"half-open IKE_SAs: {half_open} (COOKIE echoed), {flood_cpu:.2f} ms CPU each")
    print(
        f"RSS: {rss0 / mb:.1f} MB before, {rss1 / mb:.1f} MB with them "
        f"({(rss1 - rss0) / args.sas / 1024:.2f} KB each)"
    )
    print(
        f"RSS after they timed out: {rss2 / mb:.1f} MB (+{(rss2 - rss0) / mb:.1f} MB; "
        f"expiry took {expire_cpu:.0f} ms CPU), after gc + malloc_trim(0): "
        f"{rss3 / mb:.1f} MB (+{(rss3 - rss0) / mb:.1f} MB)"
    )
    print(
        f"tracemalloc: {(b1 - b0) / args.traced:.0f} B per half-open IKE_SA, "
        f"{b2 - b0:+d} B left after the timeout ({args.traced} SAs)"
    )
    print(
        f"legit handshake CPU (both engines), median/max of {args.legit}: idle "
        f"{statistics.median(idle):.1f}/{max(idle):.1f} ms, with {half_open} half-open "
        f"{statistics.median(loaded):.1f}/{max(loaded):.1f} ms"
    )


if __name__ == "__main__":
    main()
