"""Receive path under bursts: priority of known IKE_SAs, batches that let timers run, a
bounded queue, and a socket receive buffer sized for bursts."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import struct
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from pqike import log as pqlog
from pqike.config import load_config
from pqike.daemon import Daemon
from pqike.daemon.rxqueue import Priority, ReceiveQueue, priority
from pqike.daemon.server import _BATCH
from pqike.daemon.udp import RCVBUF, UdpEndpoints
from pqike.events import Datagram, Endpoint
from pqike.log import Subsystem
from tests.unit.test_files import restore_logging  # noqa: F401 (fixture)

KNOWN = bytes.fromhex("00000000000000aa")  # our SPI of an existing IKE_SA
PEER_SPI = bytes.fromhex("1111111111111111")
IKE_SA_INIT, IKE_AUTH, INFORMATIONAL = 34, 35, 37
I_FLAG, R_FLAG = 0x08, 0x20


def header(spi_i: bytes, spi_r: bytes, exchange: int, flags: int, mid: int = 0) -> bytes:
    """An IKE header (RFC 7296 §3.1) and nothing else: priority reads no more."""
    return spi_i + spi_r + struct.pack("!BBBBII", 0, 0x20, exchange, flags, mid, 28)


def init_request(n: int) -> bytes:
    return header(bytes([n]) * 8, bytes(8), IKE_SA_INIT, I_FLAG)


AUTH_REQUEST = header(PEER_SPI, KNOWN, IKE_AUTH, I_FLAG, 1)  # we are its responder
DPD_REQUEST = header(PEER_SPI, KNOWN, INFORMATIONAL, I_FLAG, 2)
INIT_RESPONSE = header(KNOWN, PEER_SPI, IKE_SA_INIT, R_FLAG)  # we are its initiator
UNKNOWN_AUTH = header(PEER_SPI, bytes.fromhex("00000000000000bb"), IKE_AUTH, I_FLAG, 1)


# --- classes -------------------------------------------------------------------------------


def test_priority_from_the_header() -> None:
    def known(spi: bytes) -> bool:
        return spi == KNOWN

    assert priority(DPD_REQUEST, known) is Priority.HIGH
    assert priority(AUTH_REQUEST, known) is Priority.MEDIUM
    assert priority(INIT_RESPONSE, known) is Priority.MEDIUM  # our SPI is SPIi here
    assert priority(init_request(1), known) is Priority.LOW
    assert priority(UNKNOWN_AUTH, known) is Priority.LOW
    assert priority(b"\x00" * 27, known) is Priority.LOW  # shorter than a header


def test_queue_serves_classes_in_order_and_fifo_within() -> None:
    q = ReceiveQueue(lambda spi: spi == KNOWN)
    src, dst = Endpoint("192.0.2.1", 500), Endpoint("192.0.2.2", 500)
    sent = [init_request(1), AUTH_REQUEST, init_request(2), DPD_REQUEST, INIT_RESPONSE]
    for data in sent:
        q.push(Datagram(data, src, dst))
    out = [d.data for d in iter(q.pop, None)]
    assert out == [DPD_REQUEST, AUTH_REQUEST, INIT_RESPONSE, init_request(1), init_request(2)]
    assert len(q) == 0


def test_queue_is_true_while_anything_of_any_class_is_queued() -> None:
    """Its truth and its count (what the daemon reads per wakeup, an attribute) follow
    every push, drop, pop and clear."""
    q = ReceiveQueue(lambda spi: spi == KNOWN, limit=2 * 28)
    src, dst = Endpoint("192.0.2.1", 500), Endpoint("192.0.2.2", 500)
    assert not q and q.count == 0
    for data in (DPD_REQUEST, init_request(1)):  # HIGH, LOW
        q.push(Datagram(data, src, dst))
    assert q and q.count == 2
    q.pop()
    assert q and q.count == 1  # the LOW one left
    q.push(Datagram(init_request(2), src, dst))
    assert q.push(Datagram(init_request(3), src, dst)) is None  # LOW full: dropped
    assert q.count == len(q) == 2
    q.pop()
    q.pop()
    assert not q and q.count == 0 and q.pop() is None and q.count == 0
    q.push(Datagram(AUTH_REQUEST, src, dst))
    q.clear()
    assert not q and q.count == 0


def test_queue_is_bounded_in_bytes_per_class() -> None:
    q = ReceiveQueue(lambda spi: spi == KNOWN, limit=3 * 28)
    src, dst = Endpoint("192.0.2.1", 500), Endpoint("192.0.2.2", 500)
    pushed = [q.push(Datagram(init_request(n), src, dst)) for n in range(1, 6)]
    assert pushed == [Priority.LOW] * 3 + [None, None]
    # a full LOW class does not keep out the messages of known IKE_SAs
    assert q.push(Datagram(AUTH_REQUEST, src, dst)) is Priority.MEDIUM
    assert q.dropped == 2
    assert len(q) == 4


# --- the daemon ----------------------------------------------------------------------------

CONFIG = """
[connections.rw]
[connections.rw.local]
auth = "psk"
id = "moon.example.org"
[connections.rw.remote]
auth = "psk"
[connections.rw.children.net]
local_ts = ["10.1.0.0/16"]
[secrets.ike-any]
secret = "0sv+NkxY9LLZvwj4qCC2o/gGrWDF2d21jL"
"""


class RecordingEngine:
    """Records the order of receive() and tick() calls; KNOWN is an IKE_SA of its own."""

    instances: list[RecordingEngine] = []

    def __init__(self, config, kernel, events) -> None:  # type: ignore[no-untyped-def]
        self.sas = {KNOWN: object()}
        self.calls: list[bytes | str] = []
        self.deadline: float | None = None
        self.arm_on_first = False  # the first message arms a timer due at once
        RecordingEngine.instances.append(self)

    def load_config(self, config) -> None:  # type: ignore[no-untyped-def]
        pass

    def receive(self, datagram: Datagram, now: float) -> None:
        self.calls.append(datagram.data)
        if self.arm_on_first and len(self.calls) == 1:
            self.deadline = now

    def tick(self, now: float) -> None:
        self.calls.append("tick")
        self.deadline = None

    def pop_outgoing(self) -> list[Datagram]:
        return []

    def next_deadline(self) -> float | None:
        return self.deadline

    def list_sas(self) -> list:  # type: ignore[type-arg]
        return []

    def close(self, now: float) -> None:
        pass


@asynccontextmanager
async def daemon(
    factory: type[RecordingEngine] | None = None,  # None: RecordingEngine, looked up now
) -> AsyncIterator[tuple[Daemon, RecordingEngine, socket.socket]]:
    work = Path(tempfile.mkdtemp(prefix="pqk", dir="/tmp"))
    (work / "pqike.toml").write_text(CONFIG)
    RecordingEngine.instances.clear()
    d = Daemon(
        load_config(work),
        engine_factory=factory or RecordingEngine,
        socket_path=str(work / "ctl.sock"),
        listen=["127.0.0.1"],
        ike_port=0,
        natt_port=0,
    )
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    try:
        await d.start()
        yield d, RecordingEngine.instances[-1], peer
    finally:
        await d.stop()
        peer.close()
        shutil.rmtree(work, ignore_errors=True)


async def until(cond, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2000):
        if cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"timed out waiting for {what}")


def send_all(peer: socket.socket, d: Daemon, datagrams: list[bytes]) -> None:
    """Into the daemon's socket before its loop may run: one burst, read in one wakeup."""
    for data in datagrams:
        peer.sendto(data, ("127.0.0.1", d.udp.ike_port))


def test_known_ike_sas_before_new_ike_sa_inits() -> None:
    async def main() -> None:
        async with daemon() as (d, engine, peer):
            burst = [init_request(n) for n in range(1, 6)] + [AUTH_REQUEST, DPD_REQUEST]
            send_all(peer, d, burst)
            await until(lambda: len(engine.calls) == len(burst), "the burst")
            assert engine.calls == [DPD_REQUEST, AUTH_REQUEST, *burst[:5]]

    asyncio.run(main())


def test_timers_run_between_batches() -> None:
    async def main() -> None:
        async with daemon() as (d, engine, peer):
            burst = [init_request(n) for n in range(1, 41)]
            engine.arm_on_first = True
            send_all(peer, d, burst)
            await until(lambda: len(engine.calls) == len(burst) + 1, "burst and tick")
            assert [c for c in engine.calls if c != "tick"] == burst
            # the timer the first message armed did not wait for the whole burst
            assert engine.calls.index("tick") < len(burst)

    asyncio.run(main())


def test_idle_daemon_processes_a_burst_in_the_wakeup_that_read_it() -> None:
    """No extra loop turn (epoll_wait) between reading a datagram and the engine getting it,
    still in priority order and at most _BATCH of them before timers and other sockets."""

    async def main() -> None:
        async with daemon() as (d, engine, peer):
            (ike,) = [s for s in d.udp._socks if s.port == d.udp.ike_port]
            send_all(peer, d, [init_request(1), init_request(2), AUTH_REQUEST])
            d.udp._readable(ike)  # the loop's reader callback, run here: no turn after it
            assert engine.calls == [AUTH_REQUEST, init_request(1), init_request(2)]

            burst = [init_request(n) for n in range(3, 3 + _BATCH + 2)]
            send_all(peer, d, burst)
            d.udp._readable(ike)
            assert engine.calls[3:] == burst[:_BATCH]  # the rest in a later turn
            await until(lambda: len(engine.calls) == 3 + len(burst), "the rest of the burst")
            assert engine.calls[3:] == burst

    asyncio.run(main())


class TransmittingEngine(RecordingEngine):
    """Sends each answer the moment it seals it (set_transmit), as the real engine does."""

    def __init__(self, config, kernel, events) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, kernel, events)
        self.transmit = None
        self.pops = 0

    def set_transmit(self, transmit) -> None:  # type: ignore[no-untyped-def]
        self.transmit = transmit

    def receive(self, datagram: Datagram, now: float) -> None:
        super().receive(datagram, now)
        self.transmit(Datagram(data=b"re:" + datagram.data, src=datagram.dst, dst=datagram.src))

    def pop_outgoing(self) -> list[Datagram]:
        self.pops += 1
        return []


def test_an_engine_that_transmits_itself_is_not_polled_for_what_it_sent() -> None:
    """Its answers left while it ran: the daemon does not ask it for queued ones, neither
    per datagram (as it must an engine that only queues them) nor per batch."""

    async def main() -> None:
        async with daemon(TransmittingEngine) as (d, engine, peer):
            assert isinstance(engine, TransmittingEngine)
            (ike,) = [s for s in d.udp._socks if s.port == d.udp.ike_port]
            burst = [init_request(n) for n in range(1, 4)]
            send_all(peer, d, burst)
            pops = engine.pops
            d.udp._readable(ike)
            assert engine.calls == burst
            assert engine.pops == pops
            peer.settimeout(5)
            assert [peer.recv(2048) for _ in burst] == [b"re:" + m for m in burst]

    asyncio.run(main())


def test_full_queue_drops_with_a_line_that_says_who(caplog: pytest.LogCaptureFixture) -> None:
    for sub in Subsystem:
        caplog.set_level(logging.DEBUG, logger=f"pqike.{sub.value}")

    async def main() -> None:
        async with daemon() as (d, engine, _):
            d._rxq.limit = 2 * 28
            src, dst = Endpoint("198.51.100.9", 4242), Endpoint("127.0.0.1", 500)
            for n in range(1, 4):  # as one socket wakeup would: no loop turn in between
                d.udp.on_datagram(Datagram(init_request(n), src, dst))
            await until(lambda: len(engine.calls) == 2, "the two queued")
            assert engine.calls == [init_request(1), init_request(2)]

    asyncio.run(main())
    assert "dropping 28 bytes from 198.51.100.9[4242], receive queue full" in caplog.text


def test_engine_error_on_a_datagram_is_logged_with_its_sender_and_the_next_one_processed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for sub in Subsystem:
        caplog.set_level(logging.DEBUG, logger=f"pqike.{sub.value}")

    async def main() -> None:
        async with daemon() as (d, engine, _):
            real = engine.receive

            def receive(datagram: Datagram, now: float) -> None:
                if datagram.data == init_request(1):
                    raise ValueError("bad apple")
                real(datagram, now)

            engine.receive = receive  # type: ignore[method-assign]
            src, dst = Endpoint("198.51.100.9", 4242), Endpoint("127.0.0.1", 500)
            for n in (1, 2):
                d.udp.on_datagram(Datagram(init_request(n), src, dst))
            await until(lambda: len(engine.calls) == 1, "the second datagram")
            assert engine.calls == [init_request(2)]

    asyncio.run(main())
    assert "error processing a packet from 198.51.100.9[4242]: ValueError: bad apple" in caplog.text


@pytest.mark.usefixtures("restore_logging")
def test_log_file_flushed_once_per_batch_of_datagrams(tmp_path: Path) -> None:
    """Lines logged while a batch of datagrams is processed reach the file together, after
    the batch: one write(2), not one per line."""
    path = tmp_path / "charon.log"
    pqlog.configure(filename=str(path))
    net = pqlog.get_logger(Subsystem.NET)
    on_disk: list[int] = []

    async def main() -> None:
        async with daemon() as (d, engine, _):
            real = engine.receive

            def receive(datagram: Datagram, now: float) -> None:
                on_disk.append(len(path.read_text().splitlines()))
                net("processing datagram %d", len(on_disk))
                real(datagram, now)

            engine.receive = receive  # type: ignore[method-assign]
            src, dst = Endpoint("198.51.100.9", 4242), Endpoint("127.0.0.1", 500)
            before = len(path.read_text().splitlines())  # the daemon's own start-up lines
            for n in range(1, 4):  # as one socket wakeup would: no loop turn in between
                d.udp.on_datagram(Datagram(init_request(n), src, dst))
            await until(lambda: len(engine.calls) == 3, "the three queued")
            assert on_disk == [before] * 3
            lines = path.read_text().splitlines()
            assert [line.split("] ", 1)[1] for line in lines[before:]] == [
                f"processing datagram {n}" for n in (1, 2, 3)
            ]

    asyncio.run(main())


def test_sockets_get_a_receive_buffer_for_bursts() -> None:
    udp = UdpEndpoints(lambda d: None, ike_port=0, natt_port=0, addresses=["127.0.0.1"])
    udp.open()
    try:
        with open("/proc/sys/net/core/rmem_max") as f:
            rmem_max = int(f.read())
        # root may exceed rmem_max (SO_RCVBUFFORCE); Linux reports twice what was set
        want = RCVBUF if os.geteuid() == 0 else min(RCVBUF, rmem_max)
        for port in (udp.ike_port, udp.natt_port):
            sock = udp.socket_for(port, socket.AF_INET)
            assert sock is not None
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 2 * want
    finally:
        udp.close()


def test_truncated_datagram_is_dropped_with_a_line_that_says_who(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for sub in Subsystem:
        caplog.set_level(logging.DEBUG, logger=f"pqike.{sub.value}")
    got: list[Datagram] = []
    udp = UdpEndpoints(got.append, ike_port=0, natt_port=0, addresses=["127.0.0.1"])
    udp.open()
    try:
        (ike,) = [s for s in udp._socks if s.port == udp.ike_port]
        addr = ("198.51.100.9", 4242)
        udp._dispatch(ike, init_request(1), [], socket.MSG_TRUNC | socket.MSG_DONTWAIT, addr)
        udp._dispatch(ike, init_request(2), [], socket.MSG_DONTWAIT, addr)
    finally:
        udp.close()
    assert [d.data for d in got] == [init_request(2)]
    assert udp.stats.dropped == 1
    assert "received oversized packet from 198.51.100.9[4242]" in caplog.text
