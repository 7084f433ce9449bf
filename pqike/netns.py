"""Network-namespace topologies (pyroute2/netlink) and packet captures, for the demo,
the benchmarks and the tests.

    with topology() as topo:                      # namespaces topo.carol / topo.moon
        with capture(topo.carol, "eth0", tmp_path / "run.pcap") as pcap:
            ns_run(topo.carol, ["ping", "-c1", topo.moon_addr])
        # pcap (a Path) is complete here

Namespaces, links and addresses are made through netlink (pyroute2); only processes are
started inside a namespace, with ``nsenter --net=/run/netns/NAME``. Namespace names carry a
random token, so parallel runs don't collide, and teardown (also on exceptions) kills whatever
still runs in them and removes them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

NETNS_DIR = Path("/run/netns")


def ns_argv(ns: str | None, argv: Sequence[str | os.PathLike]) -> list[str]:
    """argv prefixed so that it runs in network namespace ``ns`` (None: the current one)."""
    argv = [os.fspath(a) for a in argv]
    if ns is None:
        return argv
    return ["nsenter", f"--net={NETNS_DIR / ns}", *argv]


def ns_run(
    ns: str | None,
    argv: Sequence[str | os.PathLike],
    timeout: float = 30,
    check: bool = False,
    **kw,
) -> subprocess.CompletedProcess[str]:
    """Run argv in namespace ns; stdout and stderr are captured as text."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    return subprocess.run(ns_argv(ns, argv), timeout=timeout, check=check, text=True, **kw)


def ns_popen(ns: str | None, argv: Sequence[str | os.PathLike], **kw) -> subprocess.Popen:
    return subprocess.Popen(ns_argv(ns, argv), **kw)


def ns_pids(ns: str) -> list[int]:
    """PIDs of all processes whose network namespace is ``ns``."""
    try:
        target = os.stat(NETNS_DIR / ns).st_ino
        target_dev = os.stat(NETNS_DIR / ns).st_dev
    except FileNotFoundError:
        return []
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{d}/ns/net")
        except OSError:
            continue
        if st.st_ino == target and st.st_dev == target_dev:
            pids.append(int(d))
    return pids


def kill_ns_processes(ns: str, grace: float = 3.0) -> list[int]:
    """SIGTERM, then SIGKILL, everything still running in namespace ns. Returns the PIDs."""
    pids = ns_pids(ns)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and ns_pids(ns):
            time.sleep(0.05)
        if not ns_pids(ns):
            break
    return pids


def unique_prefix(prefix: str = "pqike") -> str:
    """A namespace name prefix unique to this process and call: PREFIX-PID-XXXX."""
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(2)}"


def remove_stale(prefix: str = "pqike") -> list[str]:
    """Remove namespaces PREFIX-PID-XXXX-* left by processes that no longer exist (a test
    run that was SIGKILLed), killing whatever still runs in them. Returns their names."""
    rx = re.compile(rf"^{re.escape(prefix)}-(\d+)-[0-9a-f]{{4}}-")
    removed = []
    for name in netns.listnetns():
        m = rx.match(name)
        if not m or Path(f"/proc/{m[1]}").exists():
            continue
        kill_ns_processes(name)
        with contextlib.suppress(OSError):
            netns.remove(name)
        removed.append(name)
    return removed


@contextlib.contextmanager
def namespace(name: str) -> Iterator[str]:
    """Create network namespace ``name`` with loopback up; kill its processes and remove it."""
    netns.create(name)
    try:
        with IPRoute(netns=name) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        yield name
    finally:
        kill_ns_processes(name)
        with contextlib.suppress(OSError):
            netns.remove(name)


def _ifindex(ipr: IPRoute, ifname: str) -> int:
    idx = ipr.link_lookup(ifname=ifname)
    if not idx:
        raise LookupError(f"no interface {ifname!r}")
    return idx[0]


def add_veth(ns_a: str, if_a: str, ns_b: str, if_b: str, mtu: int | None = None) -> None:
    """A veth pair with end if_a in ns_a and if_b in ns_b, both up."""
    with IPRoute(netns=ns_a) as ipr:
        # the peer is created directly in ns_b, so if_a == if_b is fine
        ipr.link("add", ifname=if_a, kind="veth", peer={"ifname": if_b, "net_ns_fd": ns_b})
        ipr.link("set", index=_ifindex(ipr, if_a), state="up", **({"mtu": mtu} if mtu else {}))
    with IPRoute(netns=ns_b) as ipr:
        ipr.link("set", index=_ifindex(ipr, if_b), state="up", **({"mtu": mtu} if mtu else {}))


def add_dummy(ns: str, ifname: str) -> None:
    """A dummy interface, or (kernel without the dummy driver) a veth whose peer stays in ns."""
    with IPRoute(netns=ns) as ipr:
        try:
            ipr.link("add", ifname=ifname, kind="dummy")
        except NetlinkError as e:
            if e.code != errno.EOPNOTSUPP:
                raise
            peer = f"{ifname[:10]}-peer"
            ipr.link("add", ifname=ifname, kind="veth", peer={"ifname": peer})
            ipr.link("set", index=_ifindex(ipr, peer), state="up")
        ipr.link("set", index=_ifindex(ipr, ifname), state="up")


def add_address(ns: str, ifname: str, cidr: str) -> None:
    """Add an address ("192.168.0.3/24" or an IPv6 one) to ifname in ns."""
    addr, _, plen = cidr.partition("/")
    with IPRoute(netns=ns) as ipr:
        ipr.addr("add", index=_ifindex(ipr, ifname), address=addr, prefixlen=int(plen or 32))


def add_route(ns: str, dst: str, gateway: str | None = None, ifname: str | None = None) -> None:
    """Add a route (dst "10.1.0.0/24" or "default") via gateway and/or out of ifname."""
    kw: dict = {"dst": dst}
    if gateway:
        kw["gateway"] = gateway
    with IPRoute(netns=ns) as ipr:
        if ifname:
            kw["oif"] = _ifindex(ipr, ifname)
        ipr.route("add", **kw)


def addresses(ns: str) -> dict[str, list[str]]:
    """{ifname: ["addr/plen", ...]} of namespace ns."""
    out: dict[str, list[str]] = {}
    with IPRoute(netns=ns) as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for a in ipr.get_addr():
            out.setdefault(names.get(a["index"], str(a["index"])), []).append(
                f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            )
    return out


@dataclass
class Topology:
    """carol (192.168.0.3) --eth0--veth--eth0-- moon (192.168.0.2) [intranet 10.1.0.1/24]."""

    prefix: str
    carol: str
    moon: str
    ifname: str = "eth0"
    carol_addr: str = "192.168.0.3"
    moon_addr: str = "192.168.0.2"
    moon_intranet: str | None = "10.1.0.1"
    namespaces: list[str] = field(default_factory=list)


@contextlib.contextmanager
def topology(
    prefix: str | None = None,
    intranet: bool = True,
    mtu: int | None = None,
    carol_cidr: str = "192.168.0.3/24",
    moon_cidr: str = "192.168.0.2/24",
    intranet_cidr: str = "10.1.0.1/24",
) -> Iterator[Topology]:
    """The reference two-host topology; everything is removed on exit, also on failure."""
    prefix = prefix or unique_prefix()
    with contextlib.ExitStack() as stack:
        carol = stack.enter_context(namespace(f"{prefix}-carol"))
        moon = stack.enter_context(namespace(f"{prefix}-moon"))
        add_veth(carol, "eth0", moon, "eth0", mtu=mtu)
        add_address(carol, "eth0", carol_cidr)
        add_address(moon, "eth0", moon_cidr)
        if intranet:
            add_dummy(moon, "intranet")
            add_address(moon, "intranet", intranet_cidr)
        yield Topology(
            prefix=prefix,
            carol=carol,
            moon=moon,
            carol_addr=carol_cidr.split("/")[0],
            moon_addr=moon_cidr.split("/")[0],
            moon_intranet=intranet_cidr.split("/")[0] if intranet else None,
            namespaces=[carol, moon],
        )


@contextlib.contextmanager
def capture(
    ns: str | None,
    ifname: str,
    path: str | os.PathLike,
    bpf: str | None = None,
    start_timeout: float = 15.0,
) -> Iterator[Path]:
    """Capture on ifname in ns into a pcap file (libpcap format) with dumpcap.

    Yields the path; the file is complete (dumpcap stopped and flushed) once the block exits.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    argv = ["dumpcap", "-q", "-P", "-i", ifname, "-w", str(path)]
    if bpf:
        argv += ["-f", bpf]
    errlog = path.with_suffix(path.suffix + ".dumpcap.log")
    with open(errlog, "w+b") as err:
        proc = ns_popen(ns, argv, stdout=subprocess.DEVNULL, stderr=err)
        try:
            # dumpcap creates the file once it captures (pcap global header = 24 bytes)
            deadline = time.monotonic() + start_timeout
            while not (path.exists() and path.stat().st_size >= 24):
                if proc.poll() is not None:
                    err.seek(0)
                    raise RuntimeError(f"dumpcap exited ({proc.returncode}): {err.read().decode()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"dumpcap did not start capturing on {ns}:{ifname}")
                time.sleep(0.05)
            yield path
        finally:
            time.sleep(0.2)  # let the last packets reach the ring buffer
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Datagram:
    """One UDP datagram of a capture (IPv4/IPv6 over Ethernet or Linux cooked capture)."""

    time: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def pcap_udp(path: str | os.PathLike) -> list[Datagram]:
    """The UDP datagrams of a libpcap file (as written by capture()); other packets skipped.

    IP fragments are skipped too (only first fragments carry the UDP header; the IKE layer
    does its own fragmentation, so with sane fragment_size there are none)."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise ValueError(f"{path}: not a libpcap file (pcapng? use capture(), it writes pcap)")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    (linktype,) = struct.unpack_from(e + "I", data, 20)
    out: list[Datagram] = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from(e + "IIII", data, off)
        pkt = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        if linktype == 1:  # Ethernet
            ethertype, l3 = struct.unpack_from("!H", pkt, 12)[0], 14
            while ethertype in (0x8100, 0x88A8):
                ethertype, l3 = struct.unpack_from("!H", pkt, l3 + 2)[0], l3 + 4
        elif linktype == 113:  # Linux cooked (SLL)
            ethertype, l3 = struct.unpack_from("!H", pkt, 14)[0], 16
        elif linktype in (101, 12):  # raw IP
            ethertype, l3 = (0x0800 if pkt[:1] and pkt[0] >> 4 == 4 else 0x86DD), 0
        else:
            raise ValueError(f"{path}: unsupported link type {linktype}")
        if ethertype == 0x0800:
            ihl = (pkt[l3] & 0x0F) * 4
            proto, frag = pkt[l3 + 9], struct.unpack_from("!H", pkt, l3 + 6)[0]
            if proto != 17 or frag & 0x1FFF:
                continue
            src = socket.inet_ntop(socket.AF_INET, pkt[l3 + 12 : l3 + 16])
            dst = socket.inet_ntop(socket.AF_INET, pkt[l3 + 16 : l3 + 20])
            l4 = l3 + ihl
        elif ethertype == 0x86DD:
            if pkt[l3 + 6] != 17:  # no extension headers handled
                continue
            src = socket.inet_ntop(socket.AF_INET6, pkt[l3 + 8 : l3 + 24])
            dst = socket.inet_ntop(socket.AF_INET6, pkt[l3 + 24 : l3 + 40])
            l4 = l3 + 40
        else:
            continue
        sport, dport, ulen = struct.unpack_from("!HHH", pkt, l4)
        ts = sec + frac / (1e9 if nano else 1e6)
        out.append(Datagram(ts, src, sport, dst, dport, pkt[l4 + 8 : l4 + ulen]))
    return out


def ike_messages(path: str | os.PathLike) -> list[tuple[Datagram, bytes]]:
    """(datagram, IKE message) for IKE packets: port 500, and port 4500 with the 4-byte
    non-ESP marker stripped (ESP-in-UDP and NAT keepalives are left out)."""
    out = []
    for d in pcap_udp(path):
        if 500 in (d.sport, d.dport) and len(d.payload) >= 28:
            out.append((d, d.payload))
        elif 4500 in (d.sport, d.dport) and len(d.payload) >= 32 and d.payload[:4] == b"\0" * 4:
            out.append((d, d.payload[4:]))
    return out
