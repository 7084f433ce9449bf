"""A TUN device for the userspace ESP data plane, plus the addresses and routes on it.

The device comes from ``/dev/net/tun`` (``TUNSETIFF`` with ``IFF_TUN | IFF_NO_PI``, so each
read/write is one bare IP packet) in the network namespace of the calling thread; it is not
persistent and disappears when the fd is closed. Addresses, routes and the one policy rule
go through pyroute2. pyroute2's synchronous API drives an asyncio loop of its own and refuses
to run inside a running one, so every netlink call is made from one worker thread
(:class:`Netlink`); the daemon's loop just waits for the short request.

Everything added is remembered and :meth:`TunDevice.close` removes exactly that.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

__all__ = ["IFF_NO_PI", "IFF_TUN", "TUNSETIFF", "Netlink", "TunDevice", "tun_available"]

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
TUN_PATH = "/dev/net/tun"
RT_TABLE_MAIN = 254

T = TypeVar("T")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def tun_available() -> str | None:
    """None when a TUN device can be created here, else why not."""
    if not os.path.exists(TUN_PATH):
        return f"{TUN_PATH} is missing (no tun module / not in the container)"
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"cannot open {TUN_PATH}: {e.strerror}"
    os.close(fd)
    if os.geteuid() != 0:
        try:
            caps = int(
                next(
                    line.split()[1]
                    for line in open("/proc/self/status")  # noqa: SIM115
                    if line.startswith("CapEff:")
                ),
                16,
            )
        except (OSError, StopIteration, ValueError):
            caps = 0
        if not caps & (1 << 12):  # CAP_NET_ADMIN
            return "creating a TUN device and routes needs root (CAP_NET_ADMIN)"
    return None


class Netlink:
    """pyroute2 ``IPRoute`` calls made from one dedicated thread."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pqike-netlink")
        self._local = threading.local()

    def _ipr(self) -> IPRoute:
        ipr = getattr(self._local, "ipr", None)
        if ipr is None:
            ipr = self._local.ipr = IPRoute()
        return ipr

    def __call__(self, fn: Callable[[IPRoute], T]) -> T:
        return self._pool.submit(lambda: fn(self._ipr())).result()

    def close(self) -> None:
        def _close() -> None:
            ipr = getattr(self._local, "ipr", None)
            if ipr is not None:
                ipr.close()
                self._local.ipr = None

        self._pool.submit(_close).result()
        self._pool.shutdown(wait=True)


def _gone(e: NetlinkError) -> bool:
    return e.code in (errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL)


class TunDevice:
    """A non-persistent TUN interface (``pqike%d`` by default), up, with ``mtu``."""

    def __init__(self, name: str = "pqike%d", mtu: int = 1400, table: int = RT_TABLE_MAIN):
        if len(name.encode()) > 15:
            raise ValueError(f"interface name {name!r} is longer than 15 bytes")
        self.mtu = mtu
        self.table = table
        self.nl = Netlink()
        self.fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            ifr = struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
            res = fcntl.ioctl(self.fd, TUNSETIFF, ifr)
            self.name = res[:16].rstrip(b"\0").decode()
            self.index = self.nl(lambda ipr: ipr.link_lookup(ifname=self.name)[0])
            self.nl(lambda ipr: ipr.link("set", index=self.index, mtu=mtu, state="up"))
        except BaseException:
            os.close(self.fd)
            self.nl.close()
            raise
        self.addresses: list[tuple[str, int]] = []
        self.routes: list[dict[str, Any]] = []
        self.rules: list[dict[str, Any]] = []
        self.closed = False

    def __repr__(self) -> str:
        return f"TunDevice({self.name!r}, index={self.index}, mtu={self.mtu})"

    # ---- packets -----------------------------------------------------------------------

    def read(self) -> bytes | None:
        try:
            return os.read(self.fd, 65535)
        except (BlockingIOError, InterruptedError):
            return None

    def write(self, packet: bytes) -> bool:
        try:
            os.write(self.fd, packet)
        except (BlockingIOError, InterruptedError):
            return False
        return True

    # ---- addresses, routes, rules --------------------------------------------------------

    def add_address(self, address: str) -> None:
        """Add a host address (/32 or /128) to the device."""
        ip = ipaddress.ip_address(address)
        plen = ip.max_prefixlen
        try:
            self.nl(lambda ipr: ipr.addr("add", index=self.index, address=str(ip), prefixlen=plen))
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
            return  # present already: not ours to remove
        self.addresses.append((str(ip), plen))

    def del_address(self, address: str) -> None:
        ip = str(ipaddress.ip_address(address))
        for entry in [a for a in self.addresses if a[0] == ip]:
            self.addresses.remove(entry)
            try:
                self.nl(
                    lambda ipr, e=entry: ipr.addr(
                        "del", index=self.index, address=e[0], prefixlen=e[1]
                    )
                )
            except NetlinkError as err:
                if not _gone(err):
                    raise

    def add_route(self, net: IPNetwork, src: str | None = None) -> dict[str, Any]:
        """Route ``net`` into the device (in ``table``); returns the spec to delete it."""
        spec: dict[str, Any] = {
            "dst": str(net.network_address),
            "dst_len": net.prefixlen,
            "oif": self.index,
            "table": self.table,
        }
        if src:
            spec["prefsrc"] = src
        self.nl(lambda ipr: ipr.route("add", **spec))
        self.routes.append(spec)
        return spec

    def add_bypass_route(self, host: str) -> dict[str, Any] | None:
        """Keep ``host`` (the peer) on its current path when a tunneled route covers it.

        Copies the kernel's present choice (gateway, interface) for ``host`` into a host
        route in our table, so ESP-in-UDP to the peer is not routed into the tunnel.
        """
        ip = ipaddress.ip_address(host)

        def _do(ipr: IPRoute) -> dict[str, Any] | None:
            found = ipr.route("get", dst=str(ip))
            if not found:
                return None
            r = found[0]
            oif, gw = r.get("RTA_OIF"), r.get("RTA_GATEWAY")
            if oif is None or oif == self.index:
                return None
            spec: dict[str, Any] = {
                "dst": str(ip),
                "dst_len": ip.max_prefixlen,
                "oif": oif,
                "table": self.table,
            }
            if gw:
                spec["gateway"] = gw
            try:
                ipr.route("add", **spec)
            except NetlinkError as e:
                if e.code == errno.EEXIST:
                    return None
                raise
            return spec

        spec = self.nl(_do)
        if spec is not None:
            self.routes.append(spec)
        return spec

    def del_route(self, spec: dict[str, Any]) -> None:
        if spec in self.routes:
            self.routes.remove(spec)
        try:
            self.nl(lambda ipr: ipr.route("del", **spec))
        except NetlinkError as e:
            if not _gone(e):
                raise

    def ensure_rule(self, family: int, priority: int) -> None:
        """``ip rule add priority P lookup <table>`` once per family (when not main)."""
        if self.table == RT_TABLE_MAIN or any(r["family"] == family for r in self.rules):
            return
        spec = {"family": family, "priority": priority, "table": self.table}

        def _do(ipr: IPRoute) -> bool:
            for r in ipr.get_rules(family=family):
                if r.get("FRA_PRIORITY") == priority and r.get("FRA_TABLE") == self.table:
                    return False  # someone else's identical rule: leave it alone
            ipr.rule("add", **spec)
            return True

        if self.nl(_do):
            self.rules.append(spec)

    def local_address_in(self, net: IPNetwork) -> str | None:
        """An address configured on this host inside ``net`` (a route's preferred source)."""
        family = 4 if net.version == 4 else 6

        def _do(ipr: IPRoute) -> str | None:
            for a in ipr.get_addr(family=2 if family == 4 else 10):
                addr = a.get("IFA_LOCAL") or a.get("IFA_ADDRESS")
                ip = ipaddress.ip_address(addr) if addr else None
                if ip is not None and ip in net and not (ip.is_loopback or ip.is_link_local):
                    return str(ip)
            return None

        return self.nl(_do)

    def close(self) -> None:
        """Remove our rules, routes and addresses, then the device itself."""
        if self.closed:
            return
        self.closed = True
        errors: list[str] = []
        for spec in reversed(self.rules):
            try:
                self.nl(lambda ipr, s=spec: ipr.rule("del", **s))
            except NetlinkError as e:
                if not _gone(e):
                    errors.append(f"rule {spec}: {e}")
        for spec in reversed(list(self.routes)):
            try:
                self.del_route(spec)
            except NetlinkError as e:
                errors.append(f"route {spec}: {e}")
        for address, _ in list(self.addresses):
            try:
                self.del_address(address)
            except NetlinkError as e:
                errors.append(f"address {address}: {e}")
        self.rules.clear()
        os.close(self.fd)  # a non-persistent TUN device goes away with its last fd
        self.nl.close()
        if errors:
            raise OSError("cleanup incomplete: " + "; ".join(errors))
