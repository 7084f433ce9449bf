"""Userspace ESP backend: a TUN device plus RFC 4303 ESP-in-UDP, for kernels without ESP.

Like strongSwan's kernel-libipsec: the inner traffic is routed into a TUN device
(``pqike0``), encrypted here and sent as ESP-in-UDP (RFC 3948) from the daemon's NAT-T
socket; ESP-in-UDP the daemon receives there is decrypted here and written to the TUN.

Limits, by design:

- **UDP encapsulation only.** Plain ESP (IP protocol 50) would need a raw socket and a way
  to keep the kernel from answering it; :meth:`UserspaceKernel.add_sa` refuses SAs without
  ``encap`` (set ``encap = yes`` on the connection, or use the xfrm backend). strongSwan's
  libipsec has the same requirement.
- **Tunnel mode only** (as libipsec): transport mode would need the outer header rewritten
  for packets the kernel routes to the peer's own address, i.e. into the tunnel.

Hooks the daemon provides:

- ``send_udp(data, src, dst)``: send one ESP-in-UDP payload (SPI first, no marker) from the
  NAT-T socket bound to ``src``; ``src``/``dst`` are :class:`pqike.events.Endpoint` (host,
  port). ``UdpEndpoints.send_esp`` fits. A false return counts as a send failure.
- ``esp_handler``: pass :meth:`UserspaceKernel.esp_handler` to the NAT-T socket layer
  (``UdpEndpoints(esp_handler=...)``); it takes ``(data, src, dst)`` with Endpoints or
  ``(host, port)`` tuples.
- an asyncio loop: :meth:`attach` (or the running loop when the TUN is created) reads the
  TUN fd with ``loop.add_reader``.

Routing: the remote traffic selectors of outbound policies are routed into the TUN in
routing table ``table`` (220 by default, with an ``ip rule`` of priority 220 like charon's);
when a selector covers the peer itself, a host route keeps the peer on its current path.
``table=254`` uses the main table and adds no rule. Virtual IPs go on the TUN device.
:meth:`close` removes exactly the rules, routes, addresses and the device it created.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from pqike.events import Endpoint
from pqike.kernel.base import (
    AcquireHandler,
    Direction,
    IPNetwork,
    KernelError,
    KernelPolicy,
    KernelRoute,
    KernelSa,
    Mode,
    SaCounters,
)
from pqike.kernel.esp import (
    NH_IPV4,
    NH_IPV6,
    NH_NONE,
    DropReason,
    EspError,
    EspSa,
    UnknownSpiError,
    next_header_for,
)
from pqike.kernel.tun import TunDevice, tun_available
from pqike.log import Subsystem, get_logger

__all__ = ["SendUdp", "UserspaceKernel"]

log = get_logger(Subsystem.ESP)
knl = get_logger(Subsystem.KNL)

SendUdp = Callable[[bytes, Endpoint, Endpoint], Any]
"""``send_udp(data, src, dst)``: one ESP-in-UDP payload from the NAT-T socket at ``src``."""

DEFAULT_TABLE = 220
DEFAULT_MTU = 1400
_BURST = 64  # TUN reads per wakeup before yielding to the loop


@dataclass(eq=False)
class _Sa:
    sa: KernelSa
    esp: EspSa
    src: Endpoint  # outer UDP endpoints
    dst: Endpoint


@dataclass(frozen=True)
class _Selector:
    """A policy's selectors as integers, for per-packet matching without ipaddress."""

    version: int
    src: int
    src_mask: int
    dst: int
    dst_mask: int
    reqid: int
    specificity: int
    trap: bool = False

    @classmethod
    def of(cls, policy: KernelPolicy) -> _Selector:
        s, d = policy.src_ts, policy.dst_ts
        if s.version != d.version:
            raise KernelError(f"policy {s} === {d} mixes address families")
        return cls(
            d.version,
            int(s.network_address),
            int(s.netmask),
            int(d.network_address),
            int(d.netmask),
            policy.reqid,
            d.prefixlen * 256 + s.prefixlen,
            policy.trap,
        )

    def matches(self, src: int, dst: int) -> bool:
        return (src & self.src_mask) == self.src and (dst & self.dst_mask) == self.dst


def _addresses(packet: bytes) -> tuple[int, int, int] | None:
    """(version, src, dst) of an IP packet as integers, None when too short / not IP."""
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 20:
        return 4, int.from_bytes(packet[12:16], "big"), int.from_bytes(packet[16:20], "big")
    if version == 6 and len(packet) >= 40:
        return 6, int.from_bytes(packet[8:24], "big"), int.from_bytes(packet[24:40], "big")
    return None


def _ip(version: int, value: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def _endpoint(ep: Any) -> Endpoint:
    if isinstance(ep, Endpoint):
        return ep
    host, port = ep[0], ep[1]
    return Endpoint(str(host), int(port))


class UserspaceKernel:
    """:class:`~pqike.kernel.base.KernelBackend` with a TUN device and userspace ESP."""

    name = "userspace"
    # ESP-in-UDP must reach esp_handler, so the NAT-T socket stays a plain UDP socket
    needs_udp_encap_socket = False
    requires_udp_encap = True  # no raw ESP socket: UDP encapsulation only, as libipsec

    def __init__(
        self,
        send_udp: SendUdp | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        ifname: str = "pqike%d",
        mtu: int = DEFAULT_MTU,
        table: int = DEFAULT_TABLE,
        rule_priority: int = DEFAULT_TABLE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.send_udp = send_udp
        self.on_acquire: AcquireHandler | None = None  # a packet hit a trap (no SA yet)
        self.loop = loop
        self.ifname = ifname
        self.mtu = mtu
        self.table = table
        self.rule_priority = rule_priority
        self.clock = clock
        self.tun: TunDevice | None = None
        self.stats: Counter[str] = Counter()
        self._sas: dict[tuple[int, str], _Sa] = {}
        self._inbound: dict[int, _Sa] = {}
        self._outbound: dict[int, list[_Sa]] = {}  # reqid -> SAs, newest last
        self._reserved: set[int] = set()
        self.policies: list[KernelPolicy] = []
        self._out_sel: list[_Selector] = []  # most specific first
        self._in_sel: dict[int, list[_Selector]] = {}  # reqid -> IN/FWD selectors
        self._routes: dict[IPNetwork, list[Any]] = {}  # net -> [refs, spec]
        self._bypass: dict[str, list[Any]] = {}  # peer -> [refs, spec or None]
        self._vips: dict[str, int] = {}
        self._reading = False

    # ---- lifecycle ------------------------------------------------------------------------

    def probe(self) -> str | None:
        return tun_available()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read the TUN device from ``loop`` (now, or once the device exists)."""
        self.loop = loop
        self._start_reading()

    def _start_reading(self) -> None:
        if self.tun is None or self._reading:
            return
        if self.loop is None:
            try:
                self.loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop yet: attach() later, or drive read_tun() by hand
        self.loop.add_reader(self.tun.fd, self.read_tun)
        self._reading = True

    def _ensure_tun(self) -> TunDevice:
        if self.tun is None:
            try:
                self.tun = TunDevice(self.ifname, self.mtu, self.table)
            except (OSError, NetlinkError) as e:
                raise KernelError(f"cannot create TUN device {self.ifname}: {e}") from e
            knl("created TUN device %s (mtu %d)", self.tun.name, self.mtu)
            self._start_reading()
        return self.tun

    def close(self) -> None:
        """Remove the rules, routes and addresses this backend added, and the TUN device."""
        tun, self.tun = self.tun, None
        loop = self.loop
        if tun is not None and self._reading and loop is not None and not loop.is_closed():
            loop.remove_reader(tun.fd)
        self._reading = False
        self._sas.clear()
        self._inbound.clear()
        self._outbound.clear()
        self._reserved.clear()
        self.policies.clear()
        self._out_sel.clear()
        self._in_sel.clear()
        self._routes.clear()
        self._bypass.clear()
        self._vips.clear()
        if tun is not None:
            tun.close()  # OSError naming what could not be removed
            knl("removed TUN device %s", tun.name)

    # ---- SAs ------------------------------------------------------------------------------

    def alloc_spi(self, src: str, dst: str) -> int:
        while True:
            spi = int.from_bytes(os.urandom(4), "big")
            if spi > 255 and spi not in self._inbound and spi not in self._reserved:
                self._reserved.add(spi)
                return spi

    def add_sa(self, sa: KernelSa) -> None:
        key = (sa.spi, sa.dst)
        if sa.encap is None:
            raise KernelError(
                "the userspace ESP backend supports UDP-encapsulated ESP only (no raw ESP "
                "socket, like strongSwan's kernel-libipsec): set encap = yes on the "
                "connection or use the xfrm backend"
            )
        if sa.mode is not Mode.TUNNEL:
            raise KernelError("the userspace ESP backend supports tunnel mode only")
        if key in self._sas or (sa.inbound and sa.spi in self._inbound):
            raise KernelError(f"SA {sa.spi:08x} to {sa.dst} exists already")
        try:
            esp = EspSa.from_kernel_sa(sa)
        except EspError as e:
            raise KernelError(f"SA {sa.spi:08x}: {e}") from e
        entry = _Sa(sa, esp, Endpoint(sa.src, sa.encap[0]), Endpoint(sa.dst, sa.encap[1]))
        self._sas[key] = entry
        if sa.inbound:
            self._inbound[sa.spi] = entry
            self._reserved.discard(sa.spi)
        else:
            self._outbound.setdefault(sa.reqid, []).append(entry)
        knl.control(
            "added %s SA %08x %s -> %s reqid %d (%s)",
            "inbound" if sa.inbound else "outbound",
            sa.spi,
            entry.src,
            entry.dst,
            sa.reqid,
            sa.encr.name,
        )

    def del_sa(self, spi: int, dst: str) -> None:
        entry = self._sas.pop((spi, dst), None)
        self._reserved.discard(spi)
        if entry is None:
            return
        if entry.sa.inbound:
            if self._inbound.get(spi) is entry:
                del self._inbound[spi]
        else:
            out = self._outbound.get(entry.sa.reqid, [])
            if entry in out:
                out.remove(entry)
            if not out:
                self._outbound.pop(entry.sa.reqid, None)
        knl.control("deleted SA %08x to %s", spi, dst)

    def query_sa(self, spi: int, dst: str) -> SaCounters:
        entry = self._sas.get((spi, dst))
        return dataclasses.replace(entry.esp.counters) if entry else SaCounters()

    def sa_list(self) -> list[tuple[KernelSa, SaCounters]]:
        """Installed SAs with a snapshot of their counters."""
        return [(e.sa, dataclasses.replace(e.esp.counters)) for e in self._sas.values()]

    # ---- policies and routes ----------------------------------------------------------------

    def add_policy(self, policy: KernelPolicy) -> None:
        sel = _Selector.of(policy)
        if policy.tunnel is None:
            raise KernelError("the userspace ESP backend supports tunnel mode only")
        if policy.direction is Direction.OUT:
            self._add_route(policy)
            self._out_sel.append(sel)
            self._out_sel.sort(key=lambda s: (-s.specificity, s.trap))
        else:
            self._in_sel.setdefault(policy.reqid, []).append(sel)
        self.policies.append(policy)

    def del_policy(self, policy: KernelPolicy) -> None:
        if policy not in self.policies:
            return
        self.policies.remove(policy)
        sel = _Selector.of(policy)
        if policy.direction is Direction.OUT:
            if sel in self._out_sel:
                self._out_sel.remove(sel)
            self._del_route(policy)
        else:
            sels = self._in_sel.get(policy.reqid, [])
            if sel in sels:
                sels.remove(sel)
            if not sels:
                self._in_sel.pop(policy.reqid, None)

    def _add_route(self, policy: KernelPolicy) -> None:
        assert policy.tunnel is not None
        self._route_in(policy.dst_ts, None, policy.src_ts, policy.tunnel[1])

    def _del_route(self, policy: KernelPolicy) -> None:
        assert policy.tunnel is not None
        self._route_out(policy.dst_ts, policy.tunnel[1])

    def add_route(self, route: KernelRoute) -> None:
        """Route ``route.dst`` into the TUN with ``route.src`` as preferred source.

        Shares the (reference-counted) route an OUT policy for the same destination made;
        an explicit source replaces a route that had none or another one.
        """
        self._route_in(route.dst, route.src, None, route.peer)

    def del_route(self, route: KernelRoute) -> None:
        self._route_out(route.dst, route.peer)

    def _route_in(
        self, net: IPNetwork, src: str | None, src_ts: IPNetwork | None, peer: str | None
    ) -> None:
        if (
            peer is not None
            and net.prefixlen == net.max_prefixlen
            and net.network_address == (ipaddress.ip_address(peer))
        ):
            # as strongSwan's kernel-libipsec: routing the IKE peer's own address into the
            # TUN would capture the IKE and ESP-in-UDP packets to it as well
            raise KernelError(
                f"the CHILD_SA's remote selector {net} is the IKE peer's own address, which "
                "the userspace data plane cannot route without capturing IKE traffic (the "
                "xfrm backend can)"
            )
        tun = self._ensure_tun()
        try:
            tun.ensure_rule(
                socket.AF_INET if net.version == 4 else socket.AF_INET6, self.rule_priority
            )
            if peer is not None and ipaddress.ip_address(peer) in net:
                ref = self._bypass.setdefault(peer, [0, None])
                if ref[0] == 0:
                    ref[1] = tun.add_bypass_route(peer)
                ref[0] += 1
            route = self._routes.get(net)
            if route is None:
                if src is None and src_ts is not None:
                    src = self._route_source(src_ts)
                self._routes[net] = route = [0, tun.add_route(net, src)]
                knl("installing route %s dev %s src %s", net, tun.name, src or "-")
            elif src is not None and route[1].get("prefsrc") != src:
                tun.del_route(route[1])
                route[1] = tun.add_route(net, src)
                knl("installing route %s dev %s src %s", net, tun.name, src)
            route[0] += 1
        except (OSError, NetlinkError) as e:
            raise KernelError(f"cannot route {net} into {tun.name}: {e}") from e

    def _route_source(self, net: IPNetwork) -> str | None:
        """Preferred source for routes to the peer's selectors: a virtual IP inside our
        selector, else a host address inside it (not for 0.0.0.0/0 or ::/0: the kernel's
        choice is as good as any)."""
        for vip in self._vips:
            if ipaddress.ip_address(vip) in net:
                return vip
        if net.prefixlen == 0 or self.tun is None:
            return None
        return self.tun.local_address_in(net)

    def _route_out(self, net: IPNetwork, peer: str | None) -> None:
        tun = self.tun
        if tun is None:
            return
        route = self._routes.get(net)
        if route is not None:
            route[0] -= 1
            if route[0] <= 0:
                del self._routes[net]
                knl("uninstalling route %s dev %s", net, tun.name)
                tun.del_route(route[1])
        ref = self._bypass.get(peer) if peer is not None else None
        if ref is not None and ipaddress.ip_address(peer) in net:  # type: ignore[arg-type]
            ref[0] -= 1
            if ref[0] <= 0:
                del self._bypass[peer]  # type: ignore[arg-type]
                if ref[1] is not None:
                    tun.del_route(ref[1])

    # ---- virtual IPs ------------------------------------------------------------------------

    def add_vip(self, address: str, peer: str | None = None) -> None:
        """Put a virtual IP on the TUN device (``peer`` is irrelevant here: always the TUN)."""
        address = str(ipaddress.ip_address(address))
        tun = self._ensure_tun()
        if self._vips.get(address, 0) == 0:
            try:
                tun.add_address(address)
            except (OSError, NetlinkError) as e:
                raise KernelError(f"cannot add {address} to {tun.name}: {e}") from e
            knl("installed virtual IP %s on %s", address, tun.name)
        self._vips[address] = self._vips.get(address, 0) + 1

    def del_vip(self, address: str) -> None:
        address = str(ipaddress.ip_address(address))
        refs = self._vips.get(address, 0)
        if refs == 0:
            return
        if refs > 1:
            self._vips[address] = refs - 1
            return
        del self._vips[address]
        if self.tun is not None:
            self.tun.del_address(address)

    # ---- data plane -------------------------------------------------------------------------

    def _drop(self, reason: DropReason | str, msg: str, *args: Any) -> None:
        self.stats[f"drop-{reason}"] += 1
        log.control(msg, *args)

    def read_tun(self) -> None:
        """Loop reader callback: encrypt and send what the kernel routed into the TUN."""
        tun = self.tun
        if tun is None:
            return
        for _ in range(_BURST):
            packet = tun.read()
            if packet is None:
                return
            self.outbound(packet)

    def outbound(self, packet: bytes) -> bool:
        """Protect one inner IP packet by the outbound policies and send it."""
        addrs = _addresses(packet)
        if addrs is None:
            self._drop(DropReason.MALFORMED, "dropping non-IP packet from TUN")
            return False
        version, src, dst = addrs
        for sel in self._out_sel:
            if sel.version == version and sel.matches(src, dst):
                break
        else:
            if version == 6 and (src >> 118 == 0x3FA or src == 0 or dst >> 120 == 0xFF):
                self.stats["ignored"] += 1  # the TUN's own link-local IPv6 chatter (RS, MLD)
                return False
            self._drop(
                DropReason.NO_SA,
                "no policy for packet %s -> %s",
                _ip(version, src),
                _ip(version, dst),
            )
            return False
        sas = self._outbound.get(sel.reqid)
        if not sas:
            if sel.trap:  # the TUN's ACQUIRE: start the CHILD_SA, drop the packet
                self.stats["acquire"] += 1
                if self.on_acquire is not None:
                    self.on_acquire(sel.reqid, str(_ip(version, src)), str(_ip(version, dst)))
                return False
            self._drop(DropReason.NO_SA, "no outbound SA for reqid %d", sel.reqid)
            return False
        entry = sas[-1]
        try:
            data = entry.esp.encapsulate(packet, NH_IPV4 if version == 4 else NH_IPV6)
        except EspError as e:
            self._drop(e.reason, "ESP encapsulation failed: %s", e)
            return False
        entry.esp.counters.last_use = self.clock()
        if self.send_udp is None or self.send_udp(data, entry.src, entry.dst) is False:
            self._drop(
                DropReason.SEND, "could not send ESP packet from %s to %s", entry.src, entry.dst
            )
            return False
        return True

    def esp_handler(self, data: bytes, src: Any, dst: Any) -> None:
        """The daemon's ESP-in-UDP callback: decrypt, check policy, write to the TUN."""
        try:
            _entry, inner = self.inbound(data)
        except EspError as e:
            self._drop(e.reason, "dropping ESP packet from %s: %s", _endpoint(src), e)
            return
        if inner is None:
            return
        tun = self.tun
        if tun is None or not tun.write(inner):
            self._drop("tun", "could not write %d bytes to TUN", len(inner))

    def inbound(self, data: bytes) -> tuple[_Sa, bytes | None]:
        """(SA, inner packet or None for a dummy packet); raises :class:`EspError`."""
        if len(data) < 8:
            raise EspError(f"{len(data)}-byte ESP packet")
        spi = int.from_bytes(data[:4], "big")
        entry = self._inbound.get(spi)
        if entry is None:
            raise UnknownSpiError(f"no inbound SA with SPI {spi:08x}")
        next_header, inner = entry.esp.decapsulate(data)
        entry.esp.counters.last_use = self.clock()
        if next_header == NH_NONE:
            self.stats["dummy"] += 1
            return entry, None
        if next_header not in (NH_IPV4, NH_IPV6) or next_header_for(inner) != next_header:
            raise EspError(f"SA {spi:08x}: next header {next_header} in tunnel mode")
        addrs = _addresses(inner)
        if addrs is None:
            raise EspError(f"SA {spi:08x}: truncated inner packet")
        version, s, d = addrs
        sels = self._in_sel.get(entry.sa.reqid)
        if sels is not None:
            ok = any(x.version == version and x.matches(s, d) for x in sels)
        else:  # no policies installed (yet): the SA's own selectors
            ok = (
                version == entry.sa.src_ts.version == entry.sa.dst_ts.version
                and _ip(version, s) in entry.sa.src_ts
                and _ip(version, d) in entry.sa.dst_ts
            )
        if not ok:
            raise EspError(
                f"SA {spi:08x}: inner {_ip(version, s)} -> {_ip(version, d)} "
                "outside the traffic selectors",
                DropReason.POLICY,
            )
        return entry, inner
