"""Helpers for the in-UML end-to-end tests: pqike daemons on the xfrm backend, what the kernel
holds (XFRM SAs/policies by netlink, plus tests.e2e.daemons.snapshot()), ping with per-packet
statistics, netem.

Everything here runs inside the guest (or on a host whose kernel has ESP); the fixtures skip
with the precise reason elsewhere (``skip_reason()``).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from pyroute2 import netns as pnetns

from pqike.kernel.netlink_xfrm import XfrmSocket, unpack_addr
from pqike.kernel.tun import tun_available
from pqike.netns import ns_argv
from tests.e2e.daemons import Pqike, snapshot

IKE = "aes256-sha256-x25519-ke1_mlkem768"
ESP = "aes256gcm16-x25519-ke1_mlkem768"
CAROL, MOON = "192.168.0.3", "192.168.0.2"
INTRANET = "10.1.0.1"
DIRS = ("in", "out", "fwd")


# --------------------------------------------------------------------------- environment


def skip_reason() -> str | None:
    """None when real-ESP namespace tests can run here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, XFRM)"
    for tool in ("ping", "nsenter"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    from pqike.kernel.xfrm import XfrmKernel

    name = f"pqike-probe-{os.getpid()}"
    pnetns.create(name)
    try:
        k = XfrmKernel(netns=name)
        try:
            reason = k.probe()
        finally:
            k.close()
    finally:
        pnetns.remove(name)
    if reason is not None:
        return f"{reason} (run these in UML: scripts/uml-test.sh tests/uml/e2e)"
    return None


# --------------------------------------------------------------------------- kernel state


@dataclass(frozen=True)
class XSa:
    spi: str  # 8 hex digits, as list-sas shows them
    src: str
    dst: str
    reqid: int
    encap: bool
    bytes: int
    packets: int


@dataclass(frozen=True)
class XPolicy:
    src: str
    dst: str
    dir: str
    tmpl: tuple[str, str] | None  # tunnel endpoints of the template


def xfrm_state(ns: str) -> tuple[list[XSa], list[XPolicy]]:
    """Every XFRM SA and (SPD, not per-socket) policy of namespace ``ns``, over NETLINK_XFRM."""
    with XfrmSocket(netns=ns) as s:
        sas, pols = s.dump_sas(), s.dump_policies()
    out_sas = []
    for m in sas:
        fam = m["family"]
        out_sas.append(
            XSa(
                f"{m['id_spi']:08x}",
                unpack_addr(m["saddr"], fam),
                unpack_addr(m["id_daddr"], fam),
                m["reqid"],
                m.get_attr("XFRMA_ENCAP") is not None,
                m["cur_bytes"],
                m["cur_packets"],
            )
        )
    out_pols = []
    for m in pols:
        if m["dir"] >= len(DIRS):
            continue  # per-socket policies (IKE sockets' bypass), gone with their socket
        fam = m["sel_family"]
        src = f"{unpack_addr(m['sel_saddr'], fam)}/{m['sel_prefixlen_s']}"
        dst = f"{unpack_addr(m['sel_daddr'], fam)}/{m['sel_prefixlen_d']}"
        tmpl = None
        tmpls = m.get_attr("XFRMA_TMPL")
        if tmpls:
            t = tmpls["templates"][0]
            tf = t["family"]
            tmpl = (unpack_addr(t["saddr"], tf), unpack_addr(t["id_daddr"], tf))
        out_pols.append(XPolicy(src, dst, DIRS[m["dir"]], tmpl))
    return out_sas, out_pols


def leftovers(ns: str) -> dict[str, list]:
    """What pqike (or charon) could have left in ``ns``: XFRM SAs and policies, addresses
    outside the topology, routes/rules of table 220."""
    sas, pols = xfrm_state(ns)
    snap = snapshot(ns)
    return {
        "sas": [f"{s.spi} {s.src}->{s.dst}" for s in sas],
        "policies": [f"{p.src} {p.dst} {p.dir}" for p in pols],
        "routes220": [r for r in snap["routes"] if r.endswith("table 220")],
        "rules220": [r for r in snap["rules"] if r.endswith("table 220")],
    }


NOTHING = {"sas": [], "policies": [], "routes220": [], "rules220": []}


def xfrm_errors(pid: int) -> dict[str, int]:
    """The non-zero XFRM error counters (/proc/net/xfrm_stat) of the network namespace of
    process ``pid``, e.g. XfrmInNoStates: ESP packets dropped for want of an inbound SA."""
    out = {}
    with open(f"/proc/{pid}/net/xfrm_stat") as f:
        for line in f:
            name, _, value = line.partition(" ")
            if value.strip() and int(value) != 0:
                out[name.strip()] = int(value)
    return out


def sa_by_spi(ns: str) -> dict[str, XSa]:
    return {s.spi: s for s in xfrm_state(ns)[0]}


# --------------------------------------------------------------------------- pqike daemons


def ensure_tun() -> str | None:
    """None when the userspace data plane can make its TUN device here, else why not; in
    UML, tun is a module that nothing loads on its own."""
    if tun_available() is not None:
        subprocess.run(["modprobe", "tun"], capture_output=True, timeout=30)
    return tun_available()


# what pqike's userspace data plane logs (at esp=2) for each packet it drops
ESP_DROPS = {
    "in unknown SPI": re.compile(r"dropping ESP packet from \S+: no inbound SA with SPI"),
    "in other": re.compile(r"dropping ESP packet from \S+: (?!no inbound SA with SPI)"),
    "out no SA": re.compile(r"no outbound SA for reqid|no policy for packet"),
    "out other": re.compile(r"ESP encapsulation failed|could not send ESP packet"),
    "TUN write": re.compile(r"could not write \d+ bytes to TUN"),
}


def userspace_drops(logs: tuple[str, ...]) -> dict[str, int]:
    """The userspace data plane's drops, both ends, by cause (its XfrmInNoStates etc.)."""
    out: dict[str, int] = {}
    for name, rx in ESP_DROPS.items():
        n = sum(len(rx.findall(t)) for t in logs)
        if n:
            out[f"ESP {name}"] = n
    return out


@contextlib.contextmanager
def xfrm_daemon(
    peer: Pqike, listen: str, log_level: str = "1,knl=2", kernel: str = "xfrm"
) -> Iterator[Pqike]:
    """``pqike daemon -F --kernel xfrm --listen ADDR`` in ``peer.ns`` (config already written);
    ``kernel="userspace"`` for the userspace data plane on the same terms."""
    argv = [sys.executable, "-m", "pqike", "daemon", "--config", str(peer.directory), "-F"]
    argv += ["--kernel", kernel, "--listen", listen, "--log-level", log_level]
    log = open(peer.directory / "daemon.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    peer.proc = subprocess.Popen(
        ns_argv(peer.ns, argv), stdout=log, stderr=subprocess.STDOUT, env=env
    )
    try:
        deadline = time.monotonic() + 60  # python start over hostfs is slow in UML
        while not peer.socket.exists():
            if peer.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{peer.name} daemon did not start:\n{peer.log}")
            time.sleep(0.05)
        yield peer
    finally:
        if peer.proc.poll() is None:
            peer.proc.send_signal(signal.SIGTERM)
        try:
            peer.proc.wait(15)
        except subprocess.TimeoutExpired:
            peer.proc.kill()
            peer.proc.wait()
        log.close()


def cli_ok(peer: Pqike, *args: str, timeout: float = 90) -> str:
    out = peer.cli(*args, timeout=timeout)
    assert out.returncode == 0, f"{args}: {out.stdout}{out.stderr}\n--- log\n{peer.log[-6000:]}"
    return out.stdout


def kernel_errors(log: str) -> list[str]:
    """Lines of a daemon log that report kernel (XFRM/rtnetlink) failures."""
    rx = re.compile(r"KernelError|kernel.*(fail|error)|cleanup incomplete|Traceback", re.I)
    return [line for line in log.splitlines() if rx.search(line)]


# --------------------------------------------------------------------------- ping

_REPLY = re.compile(r"^\[([\d.]+)\].*icmp_seq=(\d+) ttl=\d+ time=([\d.]+) ms", re.M)
_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")


@dataclass
class PingStats:
    sent: int = 0
    received: int = 0
    rtts: list[float] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)  # icmp_seq without a reply
    interval: float = 0.1
    output: str = ""
    start: float | None = None  # wall-clock time of icmp_seq 1 (from ping -D), estimated
    sent_at: dict[int, float] = field(default_factory=dict)  # answered seq -> send time

    def missing_at(self) -> list[str]:
        """The unanswered sequence numbers with their (estimated) send time, HH:MM:SS.mmm
        local time like the daemon logs, to line them up with rekey events."""
        out = []
        for seq in self.missing:
            if self.start is None:
                out.append(f"#{seq}")
                continue
            # from the closest earlier answered packet (ping's real interval drifts)
            prev = max((p for p in self.sent_at if p < seq), default=None)
            if prev is None:
                t = self.start + (seq - 1) * self.interval
            else:
                t = self.sent_at[prev] + (seq - prev) * self.interval
            out.append(
                f"#{seq}@{time.strftime('%H:%M:%S', time.localtime(t))}.{int(t % 1 * 1000):03d}"
            )
        return out

    @property
    def loss(self) -> float:
        return 100.0 * (self.sent - self.received) / max(self.sent, 1)

    @property
    def longest_gap(self) -> int:
        """The longest run of consecutive unanswered sequence numbers."""
        best = run = 0
        prev = None
        for s in self.missing:
            run = run + 1 if prev is not None and s == prev + 1 else 1
            best = max(best, run)
            prev = s
        return best

    def trimmed(self, tail: int) -> PingStats:
        """Without the last ``tail`` pings: in flight when ping's -w deadline ended it."""
        sent = max(self.sent - tail, 0)
        missing = [s for s in self.missing if s <= sent]
        return PingStats(sent, sent - len(missing), self.rtts, missing, self.interval)

    def loss_se(self, other: PingStats) -> float:
        """Standard error, in percentage points, of ``self.loss - other.loss`` (two
        independent samples): the noise of comparing the tunnel's loss with netem's own."""
        p1, p2 = self.loss / 100, other.loss / 100
        var = p1 * (1 - p1) / max(self.sent, 1) + p2 * (1 - p2) / max(other.sent, 1)
        return 100.0 * math.sqrt(var)

    def rtt(self) -> tuple[float, float, float]:
        if not self.rtts:
            return (0.0, 0.0, 0.0)
        return min(self.rtts), sum(self.rtts) / len(self.rtts), max(self.rtts)

    def summary(self) -> str:
        lo, avg, hi = self.rtt()
        gap = self.longest_gap
        return (
            f"{self.sent} sent, {self.received} received, {self.loss:.1f}% loss, "
            f"longest outage {gap} packets ({gap * self.interval:.1f} s), "
            f"rtt min/avg/max {lo:.1f}/{avg:.1f}/{hi:.1f} ms"
            + (f"; unanswered {' '.join(self.missing_at()[:20])}" if self.missing else "")
        )


def ping(
    ns: str, dst: str, src: str, count: int = 3, interval: float = 0.2, deadline: float = 0
) -> PingStats:
    """ping from ``src`` in ``ns``; replies are parsed per sequence number."""
    deadline = deadline or count * interval + 3
    argv = ["ping", "-n", "-D", "-c", str(count), "-i", str(interval), "-W", "2"]
    argv += ["-w", str(int(deadline + 0.999)), "-I", src, dst]
    out = subprocess.run(
        ns_argv(ns, argv), capture_output=True, text=True, timeout=deadline + 30
    ).stdout
    st = PingStats(interval=interval, output=out)
    seen: dict[int, float] = {}
    st.sent_at = {}
    for m in _REPLY.finditer(out):
        seq, rtt = int(m[2]), float(m[3])
        st.sent_at.setdefault(seq, float(m[1]) - rtt / 1000)
        if st.start is None:
            st.start = st.sent_at[seq] - (seq - 1) * interval
        seen.setdefault(seq, rtt)  # duplicates (DUP!) count once
    st.rtts = list(seen.values())
    if m := _SUMMARY.search(out):
        st.sent, st.received = int(m[1]), int(m[2])
    else:
        st.sent, st.received = count, len(seen)
    st.missing = [s for s in range(1, st.sent + 1) if s not in seen]
    return st


class BackgroundPing:
    """ping running in a thread while the test does other things; ``.join()`` -> PingStats."""

    def __init__(self, ns: str, dst: str, src: str, seconds: float, interval: float = 0.1):
        self.result: PingStats | None = None
        count = int(seconds / interval)

        def run() -> None:
            self.result = ping(ns, dst, src, count=count, interval=interval, deadline=seconds + 3)

        self.thread = threading.Thread(target=run, daemon=True)
        self.seconds = seconds

    def __enter__(self) -> BackgroundPing:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(self.seconds + 60)

    def join(self) -> PingStats:
        self.thread.join(self.seconds + 60)
        assert self.result is not None, "ping did not finish"
        return self.result


# --------------------------------------------------------------------------- netem


def netem(ns: str, dev: str, delay_ms: int, loss_pct: float) -> None:
    argv = ["tc", "qdisc", "replace", "dev", dev, "root", "netem"]
    argv += ["delay", f"{delay_ms}ms", "loss", f"{loss_pct}%"]
    r = subprocess.run(ns_argv(ns, argv), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"{' '.join(argv)}: {r.stdout}{r.stderr}"
