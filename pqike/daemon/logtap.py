"""Streaming a command's log lines to its control client, filtered to the command's SAs.

charon's vici streams the log of the IKE_SA a command works on. pqike's loggers carry the
SA as ``record.sa = "home|1"``; lines without that context (``received packet: ...``,
decode errors) are attributed by the engine call they happened in: the daemon wraps every
engine call (receive, tick, command) in ``LogRouter.engine_call()``, and a tap passes an
SA-less line only if the same call also logged something for one of its SAs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from pqike.log import immutable_args
from pqike.text import one_line

__all__ = ["LogRouter", "LogTap", "format_record", "sa_id"]

_ROOT = "pqike"


def sa_id(sa: str) -> int | None:
    """The IKE_SA unique id of a log context ``name|id``; None without one."""
    _, sep, tail = sa.rpartition("|")
    if not sep:
        return None
    try:
        return int(tail)
    except ValueError:
        return None


def format_record(record: logging.LogRecord) -> str:
    """A line as ``swanctl --initiate`` shows it: ``[IKE] initiating IKE_SA home[1] ...``."""
    subsystem = record.name.rsplit(".", 1)[-1]
    try:
        msg = record.getMessage()
    except Exception:  # a bad format string must not kill the stream
        msg = str(record.msg)
    return f"[{subsystem}] {one_line(msg)}"


class LogTap:
    """The lines one command streams. ``ike_ids`` None: not known yet (initiate) or all."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.ike_ids: set[int] | None = None
        self.resolved = False
        self._current: list[tuple[int | None, str | logging.LogRecord]] = []
        self._pending: list[list[tuple[int | None, str]]] = []

    def add(self, record: logging.LogRecord) -> None:
        # formatted when the engine call ends (after its responses left) if it can wait
        line = record if immutable_args(record.args) else format_record(record)
        self._current.append((sa_id(getattr(record, "sa", "") or ""), line))

    def end_call(self) -> None:
        if self._current:
            self._pending.append(
                [(i, x if isinstance(x, str) else format_record(x)) for i, x in self._current]
            )
            self._current = []
        if self.resolved:
            self._flush()

    def resolve(self, ike_ids: set[int] | None) -> None:
        """From now on pass lines of these IKE_SAs (None: every line)."""
        self.ike_ids = None if ike_ids is None else set(ike_ids)
        self.resolved = True
        self.end_call()

    def add_ids(self, ike_ids: set[int]) -> None:
        if self.ike_ids is not None:
            self.ike_ids |= ike_ids

    def finish(self) -> None:
        if not self.resolved:
            self.resolve(None)
        else:
            self.end_call()

    def _flush(self) -> None:
        groups, self._pending = self._pending, []
        ids = self.ike_ids
        for group in groups:
            if ids is None:
                lines = [line for _, line in group]
            elif any(i in ids for i, _ in group):
                lines = [line for i, line in group if i is None or i in ids]
            else:
                continue
            for line in lines:
                try:
                    self.write(line)
                except Exception:  # a vanished client is not the daemon's problem
                    return


class _Handler(logging.Handler):
    def __init__(self, router: LogRouter) -> None:
        super().__init__(level=1)
        self.router = router

    def emit(self, record: logging.LogRecord) -> None:
        for tap in list(self.router.taps):
            tap.add(record)


class LogRouter:
    """Owns the logging handler that feeds the active taps (attached only while needed)."""

    def __init__(self, logger: str = _ROOT) -> None:
        self.logger = logging.getLogger(logger)
        self.taps: list[LogTap] = []
        self._handler = _Handler(self)
        self._depth = 0
        self._engine_call = _EngineCall(self)

    def open(self, tap: LogTap) -> None:
        if not self.taps:
            self.logger.addHandler(self._handler)
        self.taps.append(tap)

    def close(self, tap: LogTap) -> None:
        tap.finish()
        if tap in self.taps:
            self.taps.remove(tap)
        if not self.taps:
            self.logger.removeHandler(self._handler)

    @contextlib.contextmanager
    def tap(self, write: Callable[[str], None]) -> Iterator[LogTap]:
        tap = LogTap(write)
        self.open(tap)
        try:
            yield tap
        finally:
            self.close(tap)

    def engine_call(self) -> _EngineCall:
        """Group the lines logged during one engine call (see the module docstring)."""
        return self._engine_call


class _EngineCall:
    """``with router.engine_call():``, one reusable object per router: the daemon enters it
    on every wakeup, where a @contextmanager would cost a generator and ~1 us."""

    __slots__ = ("_router",)

    def __init__(self, router: LogRouter) -> None:
        self._router = router

    def __enter__(self) -> None:
        self._router._depth += 1

    def __exit__(self, *exc: object) -> None:
        router = self._router
        router._depth -= 1
        if router._depth == 0 and router.taps:
            for tap in list(router.taps):
                tap.end_call()
