"""IKE/NAT-T UDP sockets: PKTINFO on wildcard sockets, non-ESP marker, ESP-in-UDP split.

One socket per (local address, role) where the role is the IKE port (500) or the NAT-T port
(4500); with no configured addresses that is a wildcard socket per address family. Wildcard
sockets learn the destination address of each packet from ``IP_PKTINFO`` /
``IPV6_PKTINFO`` and send from the address the engine chose with the same control message,
so a multi-homed host answers from the address the peer talked to.

Framing (RFC 3948 §2, RFC 7296 §2.23):

- received on the IKE port: the datagram is an IKE message as is;
- received on any other port (NAT-T): ``00 00 00 00`` + IKE message -> IKE, marker stripped;
  a single ``0xFF`` byte is a NAT-keepalive and ignored; anything else is ESP-in-UDP and
  goes to ``esp_handler`` (dropped when there is none);
- sent: the marker is prepended when the source port is not our IKE port, or the
  destination is the NAT-T port. The source port is what the peer's receiving port was
  mapped from (its NAT keeps 500 -> x and 4500 -> y apart), so a responder answering on
  port 500 to a NAT-mapped source port sends no marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import select
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from pqike.events import Datagram, Endpoint
from pqike.log import Subsystem, get_logger

__all__ = [
    "IP_PKTINFO",
    "NATT_KEEPALIVE",
    "NON_ESP_MARKER",
    "UDP_ENCAP",
    "UDP_ENCAP_ESPINUDP",
    "EspHandler",
    "Kind",
    "UdpEndpoints",
    "UdpStats",
    "classify",
    "frame",
    "needs_marker",
]

log = get_logger(Subsystem.NET)

NON_ESP_MARKER = b"\x00\x00\x00\x00"
NATT_KEEPALIVE = b"\xff"
# Linux values; Python's socket module lacks IP_PKTINFO and the UDP_ENCAP constants.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
UDP_ENCAP = getattr(socket, "UDP_ENCAP", 100)
UDP_ENCAP_ESPINUDP = 2
SOL_UDP = getattr(socket, "SOL_UDP", 17)

_MSG_TRUNC = int(socket.MSG_TRUNC)  # a plain int: IntFlag's & costs 0.6 us per datagram
RECV_BUFFER = 65536  # larger than any UDP payload, so MSG_TRUNC means a broken sender
_ANC_BUFFER = socket.CMSG_SPACE(20) * 2
_BURST = 64  # datagrams read per wakeup before yielding to the loop
_DST_CACHE = 64  # local addresses a wildcard socket keeps an Endpoint for (ours: a few)
# SO_RCVBUF for bursts: a few hundred initiators starting at once (a gateway restarting in
# front of its road warriors) send ~1 KB IKE_SA_INITs costing ~2-4 KB of kernel memory each,
# while the loop is busy with the crypto of a batch. The 208 KiB default overflows there and
# the kernel drops datagrams that the initiators retransmit only seconds later.
RCVBUF = 4 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # past net.core.rmem_max (root)

EspHandler = Callable[[bytes, Endpoint, Endpoint], None]
"""``esp_handler(packet, src, dst)``: one ESP-in-UDP packet (SPI first, no UDP header)."""


class Kind(Enum):
    IKE = "ike"
    ESP = "esp"
    KEEPALIVE = "keepalive"
    DROP = "drop"


def classify(data: bytes, natt: bool) -> tuple[Kind, bytes]:
    """What a datagram received on the IKE (``natt=False``) or NAT-T socket is.

    Returns the kind and the payload: the IKE message without marker, the ESP packet, or
    (for DROP) nothing.
    """
    if data == NATT_KEEPALIVE:
        return Kind.KEEPALIVE, b""
    if not natt:
        return Kind.IKE, data
    if data[:4] == NON_ESP_MARKER:
        if len(data) == 4:
            return Kind.DROP, b""
        return Kind.IKE, data[4:]
    if len(data) < 8:  # SPI + sequence number at least
        return Kind.DROP, b""
    return Kind.ESP, data


def needs_marker(src_port: int, dst_port: int, ike_port: int, natt_port: int) -> bool:
    """Whether an outgoing IKE message gets the non-ESP marker (see the module docstring)."""
    return src_port != ike_port or dst_port == natt_port


def frame(datagram: Datagram, ike_port: int, natt_port: int) -> bytes:
    """The UDP payload for an outgoing IKE datagram."""
    if needs_marker(datagram.src.port, datagram.dst.port, ike_port, natt_port):
        return NON_ESP_MARKER + datagram.data
    return datagram.data


def _unspecified(host: str) -> bool:
    if host in ("", "%any", "%any4", "%any6"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_unspecified
    except ValueError:
        return False


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# per local address, not per datagram: the hosts are ours (the addresses peers talk to)
@functools.lru_cache(maxsize=64)
def _pktinfo(family: int, host: str) -> tuple[tuple[int, int, bytes], ...]:
    """Control message that makes a wildcard socket send from ``host``."""
    if _unspecified(host):
        return ()
    if family == socket.AF_INET:
        # struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr; }
        data = struct.pack("=i4s4s", 0, socket.inet_aton(host), b"\0" * 4)
        return ((socket.IPPROTO_IP, IP_PKTINFO, data),)
    # struct in6_pktinfo { in6_addr ipi6_addr; unsigned ipi6_ifindex; }
    data = struct.pack("=16sI", socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0]), 0)
    return ((socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, data),)


@functools.lru_cache(maxsize=64)
def _pktinfo_dst(family: int, level: int, ctype: int, data: bytes) -> str | None:
    """The destination address in one PKTINFO control message (an address of ours and an
    interface index: a handful of values, so kept rather than converted per datagram)."""
    if (
        family == socket.AF_INET
        and level == socket.IPPROTO_IP
        and ctype == IP_PKTINFO
        and len(data) >= 12
    ):
        return socket.inet_ntoa(data[8:12])  # ipi_addr: header destination
    if (
        family == socket.AF_INET6
        and level == socket.IPPROTO_IPV6
        and ctype == socket.IPV6_PKTINFO
        and len(data) >= 16
    ):
        return socket.inet_ntop(socket.AF_INET6, data[:16])
    return None


def _size_receive_buffer(sock: socket.socket) -> None:
    """RCVBUF, past net.core.rmem_max when we may (CAP_NET_ADMIN), else up to it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)


@dataclass
class UdpStats:
    received: int = 0
    sent: int = 0
    esp_received: int = 0
    esp_sent: int = 0
    keepalives: int = 0
    dropped: int = 0
    send_errors: int = 0


@dataclass
class _Sock:
    sock: socket.socket
    family: int
    address: str  # bound address ("0.0.0.0" / "::" for wildcard)
    port: int
    natt: bool
    wildcard: bool = field(init=False)
    local: Endpoint = field(init=False)  # the destination of what this socket reads
    # poll(0): whether another datagram waits (0.5 us; a failing recvmsg costs 1.5 us and
    # an exception)
    pending: Callable[[int], list[tuple[int, int]]] = field(init=False)
    # a wildcard socket's destinations by their PKTINFO message: built once, not per datagram
    dst: dict[tuple[int, int, bytes], Endpoint] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.wildcard = _unspecified(self.address)
        self.local = Endpoint(self.address, self.port)
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        self.pending = poller.poll

    def __str__(self) -> str:
        return f"{self.address}[{self.port}]"


class UdpEndpoints:
    """The daemon's UDP sockets, driven by an asyncio loop's reader callbacks.

    ``ike_port``/``natt_port`` 0 bind ephemeral ports (tests); every address then uses the
    same port numbers, available afterwards as ``.ike_port`` / ``.natt_port``.
    """

    def __init__(
        self,
        on_datagram: Callable[[Datagram], None],
        *,
        ike_port: int = 500,
        natt_port: int = 4500,
        addresses: Sequence[str] = (),
        esp_handler: EspHandler | None = None,
        udp_encap: bool = False,
        socket_setup: Callable[[socket.socket, bool], None] | None = None,
        on_burst_end: Callable[[], None] | None = None,
    ) -> None:
        self.on_datagram = on_datagram
        # after a socket's burst is read: the daemon drains its queue there, in this loop turn
        self.on_burst_end = on_burst_end
        self.reading = False  # inside _readable: on_burst_end follows
        self.esp_handler = esp_handler
        self.udp_encap = udp_encap
        self.socket_setup = socket_setup  # (sock, natt): e.g. per-socket IPsec bypass policies
        self.ike_port = ike_port
        self.natt_port = natt_port
        self.addresses = tuple(addresses)
        self.stats = UdpStats()
        self._socks: list[_Sock] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- setup ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create and bind every socket (OSError with a clear message on failure)."""
        wanted = self.addresses or ("0.0.0.0", "::")
        try:
            for natt in (False, True):
                port = self._bind_role(wanted, natt, self.natt_port if natt else self.ike_port)
                if natt:
                    self.natt_port = port
                else:
                    self.ike_port = port
        except BaseException:
            self.close()
            raise
        if not self._socks:
            raise OSError(errno.EADDRNOTAVAIL, "no UDP socket could be bound")

    def _bind_role(self, addresses: Sequence[str], natt: bool, port: int) -> int:
        attempts = 8 if port == 0 else 1
        for attempt in range(attempts):
            chosen = port
            bound: list[_Sock] = []
            try:
                for addr in addresses:
                    s = self._bind_one(addr, chosen, natt, optional=not self.addresses)
                    if s is None:
                        continue
                    bound.append(s)
                    chosen = s.port
                self._socks += bound
                return chosen
            except OSError as e:
                for s in bound:
                    s.sock.close()
                if port == 0 and e.errno == errno.EADDRINUSE and attempt < attempts - 1:
                    continue  # the ephemeral port is taken in another family; pick again
                role = "NAT-T" if natt else "IKE"
                raise OSError(e.errno, f"cannot bind {role} port {chosen}: {e.strerror}") from e
        raise AssertionError("unreachable")

    def _bind_one(self, addr: str, port: int, natt: bool, optional: bool) -> _Sock | None:
        family = _family(addr)
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as e:
            if optional and e.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
                log.control(
                    "no %s support, not listening on it",
                    "IPv6" if family == socket.AF_INET6 else "IPv4",
                )
                return None
            raise
        # only a wildcard socket needs to learn each datagram's destination: a bound one
        # reads without the control message (0.4 us less per datagram)
        pktinfo = _unspecified(addr)
        try:
            sock.setblocking(False)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if pktinfo:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            elif pktinfo:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            _size_receive_buffer(sock)
            if natt and self.udp_encap:
                try:
                    sock.setsockopt(SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP)
                except OSError as e:
                    log.basic("enabling UDP_ENCAP on %s[%d] failed: %s", addr, port, e.strerror)
            if self.socket_setup is not None:
                self.socket_setup(sock, natt)
            try:
                sock.bind((addr, port))
            except OSError as e:
                if optional and e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    log.control("cannot listen on %s[%d]: %s", addr, port, e.strerror)
                    sock.close()
                    return None
                raise
            return _Sock(sock, family, addr, sock.getsockname()[1], natt)
        except BaseException:
            sock.close()
            raise

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for s in self._socks:
            loop.add_reader(s.sock.fileno(), self._readable, s)

    def close(self) -> None:
        for s in self._socks:
            if self._loop is not None:
                with contextlib.suppress(ValueError, OSError, RuntimeError):
                    self._loop.remove_reader(s.sock.fileno())
            s.sock.close()
        self._socks = []
        self._loop = None

    @property
    def listening(self) -> list[str]:
        return [str(s) for s in self._socks]

    def socket_for(self, port: int, family: int) -> socket.socket | None:
        """The (first) socket bound to ``port`` in ``family``; for tests and diagnostics."""
        for s in self._socks:
            if s.port == port and s.family == family:
                return s.sock
        return None

    # ---- receive -------------------------------------------------------------------------

    def _readable(self, s: _Sock) -> None:
        self.reading = True
        try:
            self._read_burst(s)
        finally:
            self.reading = False
        if self.on_burst_end is not None:
            self.on_burst_end()

    def _read_burst(self, s: _Sock) -> None:
        recvmsg, ancbufsize = s.sock.recvmsg, _ANC_BUFFER if s.wildcard else 0
        for n in range(_BURST):
            try:
                data, ancdata, flags, addr = recvmsg(RECV_BUFFER, ancbufsize)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # e.g. ECONNREFUSED from an ICMP port unreachable for something we sent
                log.control("receiving on %s failed: %s", s, e.strerror or e)
                return
            try:
                self._dispatch(s, data, ancdata, flags, addr)
            except Exception as e:  # the loop must survive whatever a handler does
                self.stats.dropped += 1
                log.basic(
                    "error handling packet from %s[%s]: %s: %s",
                    addr[0],
                    addr[1],
                    type(e).__name__,
                    e,
                )
            # the usual wakeup at low load brings one datagram: poll once to learn that
            # none follows; in a burst, read on until recvmsg fails (a poll per datagram
            # would cost more than the one failing read)
            if n == 0 and not s.pending(0):
                return

    def _destination(self, s: _Sock, ancdata: list[tuple[int, int, bytes]]) -> Endpoint:
        """Where a datagram was sent to: a wildcard socket learns it from PKTINFO."""
        if not s.wildcard:
            return s.local
        for message in ancdata:
            dst = s.dst.get(message)
            if dst is not None:
                return dst
            host = _pktinfo_dst(s.family, *message)
            if host is not None:
                if len(s.dst) >= _DST_CACHE:
                    s.dst.clear()
                dst = s.dst[message] = Endpoint(host, s.port)
                return dst
        return s.local

    def _dispatch(self, s: _Sock, data: bytes, ancdata: list, flags: int, addr: tuple) -> None:
        src = Endpoint(addr[0], addr[1])  # recvmsg's address: (host str, port int, ...)
        if flags & _MSG_TRUNC:
            self.stats.dropped += 1
            log("received oversized packet from %s on %s, dropped", src, s)
            return
        dst = self._destination(s, ancdata)
        # IKE messages, as classify() says, without its call and tuple: the usual datagram
        if s.natt:
            if data[:4] == NON_ESP_MARKER and len(data) > 4:
                self.stats.received += 1
                self.on_datagram(Datagram(data[4:], src, dst))
                return
        elif data != NATT_KEEPALIVE:
            self.stats.received += 1
            self.on_datagram(Datagram(data, src, dst))
            return
        kind, payload = classify(data, s.natt)
        if kind is Kind.KEEPALIVE:
            self.stats.keepalives += 1
            log.raw("received NAT-keepalive from %s", src)
        elif kind is Kind.DROP:
            self.stats.dropped += 1
            log.control("received invalid %d byte packet from %s on %s, dropped", len(data), src, s)
        elif kind is Kind.ESP:
            self.stats.esp_received += 1
            if self.esp_handler is None:
                self.stats.dropped += 1
                log.raw("received ESP-in-UDP packet from %s without data plane, dropped", src)
            else:
                self.esp_handler(payload, src, dst)
        else:
            self.stats.received += 1
            self.on_datagram(Datagram(payload, src, dst))

    # ---- send ----------------------------------------------------------------------------

    def _pick(self, src: Endpoint, dst: Endpoint) -> _Sock | None:
        family = _family(dst.host)
        fallback = None
        for s in self._socks:
            if s.family != family or s.port != src.port:
                continue
            if not s.wildcard and s.address == src.host:
                return s
            if s.wildcard and fallback is None:
                fallback = s
        return fallback

    def _sendmsg(self, s: _Sock, payload: bytes, src: Endpoint, dst: Endpoint) -> bool:
        anc = _pktinfo(s.family, src.host) if s.wildcard else ()
        try:
            s.sock.sendmsg([payload], anc, 0, (dst.host, dst.port))
        except OSError as e:
            self.stats.send_errors += 1
            log.basic(
                "error writing to socket: %s (from %s to %s, %d bytes)",
                e.strerror or e,
                src,
                dst,
                len(payload),
            )
            return False
        return True

    def send(self, datagram: Datagram) -> bool:
        """Send one IKE message (marker added as needed); False if it could not be sent."""
        s = self._pick(datagram.src, datagram.dst)
        if s is None:
            self.stats.send_errors += 1
            log.basic("no socket to send from %s to %s, dropped", datagram.src, datagram.dst)
            return False
        payload = frame(datagram, self.ike_port, self.natt_port)
        if self._sendmsg(s, payload, datagram.src, datagram.dst):
            self.stats.sent += 1
            return True
        return False

    def send_esp(self, packet: bytes, src: Endpoint, dst: Endpoint) -> bool:
        """Send one ESP-in-UDP packet (no marker) from a NAT-T socket (userspace data plane)."""
        s = self._pick(src, dst)
        if s is None or not s.natt:
            self.stats.send_errors += 1
            log.control("no NAT-T socket to send ESP from %s to %s", src, dst)
            return False
        if self._sendmsg(s, packet, src, dst):
            self.stats.esp_sent += 1
            return True
        return False

    def send_keepalive(self, src: Endpoint, dst: Endpoint) -> bool:
        s = self._pick(src, dst)
        return s is not None and self._sendmsg(s, NATT_KEEPALIVE, src, dst)
