"""Lines logged inside batched() reach the stream in one write at the end of the batch, in
the order logged, reading as they would have when logged (the daemon sends its responses
before the batch ends, so this work is off the peer's wait)."""

from __future__ import annotations

import io
import logging

import pytest

from pqike import log as pqlog
from pqike.daemon.logtap import LogRouter
from pqike.events import Endpoint
from pqike.log import Subsystem
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
def test_a_batch_is_one_reusable_object_nested_and_flushed_on_an_exception() -> None:
    """The daemon enters a batch and an engine call on every wakeup: each is one object
    made once (no generator per use), nests, lets exceptions through and still writes the
    lines, and taps see their call end once, at the outermost exit."""
    stream, net = _configured()
    router = LogRouter()
    assert pqlog.batched() is pqlog.batched()
    assert router.engine_call() is router.engine_call()
    tapped: list[str] = []
    with router.tap(tapped.append) as tap:
        tap.resolve(None)
        with pytest.raises(ValueError), router.engine_call(), pqlog.batched():
            with router.engine_call(), pqlog.batched():
                net("inner %d", 1)
            assert stream.writes == [] and tapped == []  # an inner exit writes nothing
            net("outer %d", 2)
            raise ValueError("engine bug")
        assert len(stream.writes) == 1
        assert _messages(stream.getvalue()) == ["inner 1", "outer 2"]
        assert tapped == ["[NET] inner 1", "[NET] outer 2"]
    net("after %d", 3)  # the depth went back to 0: written as it comes
    assert len(stream.writes) == 2
