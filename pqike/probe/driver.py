"""Running a probe Session: over a UDP socket, or over anything with the same three calls."""

from __future__ import annotations

import contextlib
import select
import socket
import time
from typing import Protocol

from pqike.probe.report import Report
from pqike.probe.session import Options, Session


class Transport(Protocol):
    def now(self) -> float: ...

    def send(self, data: bytes) -> None: ...

    def receive(self, until: float | None) -> list[bytes]:
        """Datagrams that arrived, waiting at most until ``until`` (None: don't wait)."""
        ...


def drive(session: Session, transport: Transport) -> Report:
    while not session.done:
        for data in session.poll(transport.now()):
            transport.send(data)
        if session.done:
            break
        for data in transport.receive(session.next_deadline()):
            session.receive(data, transport.now())
    return session.report


class UdpTransport:
    """One connected UDP socket (so only the gateway's answers reach it)."""

    def __init__(self, host: str, port: int, source: str | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.sock.setblocking(False)

    @property
    def local(self) -> tuple[str, int]:
        addr = self.sock.getsockname()
        return addr[0], addr[1]

    def now(self) -> float:
        return time.monotonic()

    def send(self, data: bytes) -> None:
        # an ICMP unreachable from an earlier datagram: the retransmission timer decides
        with contextlib.suppress(OSError):
            self.sock.send(data)

    def receive(self, until: float | None) -> list[bytes]:
        wait = 0.0 if until is None else max(0.0, until - self.now())
        ready, _, _ = select.select([self.sock], [], [], wait)
        out: list[bytes] = []
        while ready:
            try:
                out.append(self.sock.recv(65535))
            except (BlockingIOError, ConnectionRefusedError, OSError):
                break
        return out

    def close(self) -> None:
        self.sock.close()


def probe_udp(
    host: str, port: int = 500, options: Options | None = None, source: str | None = None
) -> Report:
    """Probe a gateway over UDP; blocks until the plan is done."""
    opts = options or Options(natt=port == 4500)
    transport = UdpTransport(host, port, source)
    try:
        return drive(Session(host, port, transport.local, opts), transport)
    finally:
        transport.close()
