"""Lines logged inside batched() reach the stream in one write at the end of the batch, in
the order logged, reading as they would have when logged (the daemon sends its responses
before the batch ends, so this work is off the peer's wait)."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import pytest

from pqike import log as pqlog
from pqike.daemon import Request, request
from pqike.daemon.logtap import LogRouter
from pqike.events import Datagram, Endpoint
from pqike.log import Subsystem
from tests.unit.test_daemon_rxqueue import daemon, init_request, until
from tests.unit.test_files import restore_logging  # noqa: F401 (fixture)


class CountingStream(io.StringIO):
    """stderr as the daemon has it under -F: every write(2) counted."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def _configured() -> tuple[CountingStream, pqlog.Logger]:
    """pqike.log.configure() onto a counting stream, and the NET logger."""
    stream = CountingStream()
    pqlog.configure(stream=stream)
    return stream, pqlog.get_logger(Subsystem.NET)


def _messages(text: str) -> list[str]:
    return [line.split("] ", 1)[1] for line in text.splitlines()]


@pytest.mark.usefixtures("restore_logging")
def test_a_batch_is_one_write_at_its_end_in_order_as_logged() -> None:
    stream = CountingStream()
    pqlog.configure(stream=stream)
    net, ike = pqlog.get_logger(Subsystem.NET), pqlog.get_logger(Subsystem.IKE, "home|1")
    shown = ["TSi"]  # a mutable argument: the line must show it as it was when logged
    with pqlog.batched():
        net("received packet: from %s (%d bytes)", Endpoint("192.0.2.1", 500), 272)
        ike("payloads %s", shown)
        shown.append("TSr")
        ike.basic("IKE_SA %s[%d] established", "home", 1)
        assert stream.writes == []  # nothing written while the batch runs
    assert len(stream.writes) == 1
    assert _messages(stream.getvalue()) == [
        "received packet: from 192.0.2.1[500] (272 bytes)",
        "<home|1> payloads ['TSi']",
        "<home|1> IKE_SA home[1] established",
    ]
    net("after the batch")  # outside a batch: written as it comes
    assert len(stream.writes) == 2


@pytest.mark.usefixtures("restore_logging")
def test_a_line_formatted_at_the_end_keeps_the_time_it_was_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream, net = _configured()
    clock = iter([3600 * 7 + 1.25, 3600 * 7 + 9.5])
    monkeypatch.setattr(pqlog.time, "time", lambda: next(clock))
    with pqlog.batched():
        net("first %d", 1)
        net("second %d", 2)
    stamps = [line.split(" ", 1)[0][-6:] for line in stream.getvalue().splitlines()]
    assert stamps == ["01.250", "09.500"]


@pytest.mark.usefixtures("restore_logging")
def test_with_a_control_client_tapping_lines_keep_their_order_and_text() -> None:
    """A tap makes every line take the LogRecord path; both outputs still get the lines
    in order, the tap's as swanctl shows them."""
    stream = CountingStream()
    pqlog.configure(stream=stream)
    router = LogRouter()
    tapped: list[str] = []
    cfg, enc = pqlog.get_logger(Subsystem.CFG, "rw|3"), pqlog.get_logger(Subsystem.ENC, "rw|3")
    shown = {"a": 1}
    with router.tap(tapped.append) as tap:
        tap.resolve(None)
        with router.engine_call(), pqlog.batched():
            cfg("selected proposal: %s", "IKE:AES_CBC_256")
            enc("state %s", shown)
            shown["b"] = 2
            cfg("done %d", 7)
            assert stream.writes == [] and tapped == []
    assert len(stream.writes) == 1
    expected = ["selected proposal: IKE:AES_CBC_256", "state {'a': 1}", "done 7"]
    assert _messages(stream.getvalue()) == [f"<rw|3> {m}" for m in expected]
    assert tapped == [f"[{s}] {m}" for s, m in zip(("CFG", "ENC", "CFG"), expected, strict=True)]


@pytest.mark.usefixtures("restore_logging")
def test_a_bad_format_string_in_a_batch_costs_that_line_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream, net = _configured()
    raise_exc, logging.raiseExceptions = logging.raiseExceptions, True
    try:
        with pqlog.batched():
            net("one %d", 1)
            net("broken %d %d", 2)
            net("three %d", 3)
    finally:
        logging.raiseExceptions = raise_exc
    assert _messages(stream.getvalue()) == ["one 1", "three 3"]
    assert "Logging error" in capsys.readouterr().err


@pytest.mark.usefixtures("restore_logging")
def test_deferred_lines_wait_for_flush_pending_and_keep_their_order() -> None:
    stream, net = _configured()
    pqlog.defer_flushes(60.0)
    try:
        with pqlog.batched():
            net("first %d", 1)
        with pqlog.batched():
            net("second %d", 2)
        assert stream.writes == []  # the batches ended, the lines wait
        net("outside a batch")  # comes out now, after the lines that waited
        assert _messages(stream.getvalue()) == ["first 1", "second 2", "outside a batch"]
        with pqlog.batched():
            net("third %d", 3)
        pqlog.flush_pending()  # what the daemon does once idle
        assert _messages(stream.getvalue())[-1] == "third 3"
    finally:
        pqlog.defer_flushes(None)


@pytest.mark.usefixtures("restore_logging")
def test_deferred_lines_are_written_once_the_oldest_waited_the_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream, net = _configured()
    now = [100.0]
    monkeypatch.setattr(pqlog.time, "monotonic", lambda: now[0])
    pqlog.defer_flushes(0.05)
    try:
        with pqlog.batched():
            net("first %d", 1)
        now[0] += 0.01
        with pqlog.batched():
            net("second %d", 2)
        assert stream.writes == []
        now[0] += 0.05  # a daemon that is never idle: the first line waited long enough
        with pqlog.batched():
            net("third %d", 3)
        assert len(stream.writes) == 1
        assert _messages(stream.getvalue()) == ["first 1", "second 2", "third 3"]
    finally:
        pqlog.defer_flushes(None)


@pytest.mark.usefixtures("restore_logging")
def test_a_control_command_answers_after_the_waiting_lines_are_written(tmp_path: Path) -> None:
    """Lines of a batch wait for the daemon to be idle, but whoever waited for a command
    (swanctl --initiate, a test polling list-sas) finds them in the log file."""
    path = tmp_path / "charon.log"
    pqlog.configure(filename=str(path))
    net = pqlog.get_logger(Subsystem.NET)

    async def main() -> None:
        async with daemon() as (d, engine, _):
            d._idle_clock = lambda: d._busy_at  # never idle: nothing flushes on its own
            real = engine.receive

            def receive(datagram: Datagram, now: float) -> None:
                net("processing a datagram")
                real(datagram, now)

            engine.receive = receive  # type: ignore[method-assign]
            src, dst = Endpoint("198.51.100.9", 4242), Endpoint("127.0.0.1", 500)
            d.udp.on_datagram(Datagram(init_request(1), src, dst))
            await until(lambda: len(engine.calls) == 1, "the datagram")
            assert "processing a datagram" not in path.read_text()
            result = await asyncio.to_thread(request, d.socket_path, Request(cmd="stats"))
            assert result.ok and "processing a datagram" in path.read_text()

    asyncio.run(main())
