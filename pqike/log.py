"""charon-style logging: subsystems, levels -1..4, and per-IKE_SA context.

A line reads like charon's with ``ike_name = yes``::

    08:14:27.123 [ENC] <home|1> generating IKE_INTERMEDIATE request 2 [ KE ]

Levels follow charon: -1 silent, 0 basic, 1 audit (default), 2 control, 3 raw data,
4 private (keys). Each subsystem has its own level, so ``enc=2`` shows payload details
without drowning the log in key material.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Mapping
from enum import Enum, StrEnum
from typing import Any

from pqike.files import open_private
from pqike.text import one_line

__all__ = [
    "SYSLOG_FACILITIES",
    "Logger",
    "Subsystem",
    "batched",
    "configure",
    "get_logger",
    "immutable_args",
    "journald_stderr",
    "syslog_handler",
]


class Subsystem(StrEnum):
    DMN = "DMN"  # daemon
    MGR = "MGR"  # SA manager
    IKE = "IKE"  # IKE_SA state and tasks
    CHD = "CHD"  # CHILD_SA
    JOB = "JOB"  # timers
    CFG = "CFG"  # configuration, proposals
    KNL = "KNL"  # kernel backend
    NET = "NET"  # sockets, packets
    ASN = "ASN"  # certificates
    ENC = "ENC"  # message encoding, fragments
    LIB = "LIB"  # crypto providers
    ESP = "ESP"  # userspace ESP data plane


DEFAULT_LEVEL = 1
_ROOT = "pqike"


def _py_level(charon_level: int) -> int:
    # charon 0..4 onto Python levels: 0 -> 25 ... 4 -> 5; -1 silences the subsystem.
    if charon_level < 0:
        return logging.CRITICAL + 10
    return 25 - 5 * min(charon_level, 4)


_BASIC, _AUDIT, _CONTROL, _RAW, _PRIVATE = (_py_level(n) for n in range(5))


class _Formatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._hms = ""

    def _clock(self, created: float) -> str:
        # strftime once a second, not once a line: a handshake logs dozens of lines
        second = int(created)
        if second != self._second:
            self._second, self._hms = second, time.strftime("%H:%M:%S", self.converter(second))
        return self._hms

    def format(self, record: logging.LogRecord) -> str:
        sa = getattr(record, "sa", "")
        return self.line(record.created, record.msecs, record.name, record.getMessage(), sa)

    def line(self, created: float, msecs: float, name: str, message: str, sa: str) -> str:
        tag = _TAGS.get(name) or _tag(name)
        # one record, one line: whatever text slipped in unescaped cannot forge another
        # line (multi-line output such as tracebacks is logged line by line)
        if sa:
            return f"{self._clock(created)}.{int(msecs):03d} {tag} <{sa}> {one_line(message)}"
        return f"{self._clock(created)}.{int(msecs):03d} {tag} {one_line(message)}"


_TAGS: dict[str, str] = {}  # logger name -> "[NET]": a dozen names, each line has one


def _tag(name: str) -> str:
    tag = _TAGS[name] = f"[{name.rsplit('.', 1)[-1]}]"
    return tag


@functools.cache
def _py_logger(subsystem: Subsystem) -> logging.Logger:
    # every IKE_SA binds four Loggers: logging.getLogger() takes the module lock each time
    return logging.getLogger(f"{_ROOT}.{subsystem.value}")


_new_logger = object.__new__


class Logger:
    """A subsystem logger, optionally bound to an IKE_SA (``home|1``)."""

    __slots__ = ("_log", "sa")

    def __init__(self, subsystem: Subsystem, sa: str = "") -> None:
        self._log = _py_logger(subsystem)
        self.sa = sa

    def bind(self, sa: str) -> Logger:
        """This subsystem's logger for an IKE_SA's context (``home|1``). Every IKE_SA binds
        four, a flood's half-open ones too: no lookup of the subsystem, no __init__."""
        bound = _new_logger(Logger)
        bound._log, bound.sa = self._log, sa
        return bound

    def enabled(self, level: int) -> bool:
        return self._log.isEnabledFor(_py_level(level))

    def _emit(self, py: int, msg: str, args: tuple[Any, ...]) -> None:
        # straight to the handlers: Logger.log() would first walk the stack for the
        # caller's file and line, which no charon-style line prints (a third of its cost)
        log = self._log
        handler = _sole_direct_handler(log, py)
        if handler is not None and handler.write_line(log.name, py, msg, args, self.sa):
            return
        extra = {"sa": self.sa}
        log.handle(log.makeRecord(log.name, py, "", 0, msg, args, None, extra=extra))

    # A handshake makes dozens of calls below, most at levels not logged: each is one
    # isEnabledFor (cached by logging) and nothing else.
    def log(self, level: int, msg: str, *args: Any) -> None:
        py = _py_level(level)
        if self._log.isEnabledFor(py):
            self._emit(py, msg, args)

    def __call__(self, msg: str, *args: Any) -> None:
        """Level 1 (audit), the default charon level."""
        if self._log.isEnabledFor(_AUDIT):
            self._emit(_AUDIT, msg, args)

    def basic(self, msg: str, *args: Any) -> None:
        if self._log.isEnabledFor(_BASIC):
            self._emit(_BASIC, msg, args)

    def control(self, msg: str, *args: Any) -> None:
        if self._log.isEnabledFor(_CONTROL):
            self._emit(_CONTROL, msg, args)

    def raw(self, msg: str, *args: Any) -> None:
        if self._log.isEnabledFor(_RAW):
            self._emit(_RAW, msg, args)

    def private(self, msg: str, *args: Any) -> None:
        if self._log.isEnabledFor(_PRIVATE):
            self._emit(_PRIVATE, msg, args)


def get_logger(subsystem: Subsystem, sa: str = "") -> Logger:
    return Logger(subsystem, sa)


class _SyslogFormatter(_Formatter):
    """syslog and journald stamp the time themselves: ``[IKE] <home|1> message``."""

    def line(self, created: float, msecs: float, name: str, message: str, sa: str) -> str:
        return super().line(created, msecs, name, message, sa).split(" ", 1)[1]


class _SyslogHandler(logging.handlers.SysLogHandler):
    """charon's sys_logger: every line at LOG_INFO of the configured facility, tagged
    with the daemon's name and pid."""

    def mapPriority(self, levelName: str) -> str:
        return "info"


SYSLOG_FACILITIES = tuple(logging.handlers.SysLogHandler.facility_names)


def syslog_handler(facility: str = "daemon", address: str = "/dev/log") -> logging.Handler:
    """A handler writing to the local syslog socket (journald reads /dev/log too).
    OSError if nothing listens there."""
    handler = _SyslogHandler(address=address, facility=facility)
    if handler.socket.fileno() < 0:  # SysLogHandler, as openlog(), keeps quiet about it
        handler.close()
        handler._connect_unixsocket(address)  # raises the OSError that says why
    handler.ident = f"pqike[{os.getpid()}]: "
    return handler


def journald_stderr() -> bool:
    """stderr is systemd's journal stream (JOURNAL_STREAM names its device and inode):
    journald stamps the time, a second timestamp is noise."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return bool(expected) and expected == f"{st.st_dev}:{st.st_ino}"


def configure(
    levels: Mapping[str, int] | None = None,
    default: int = DEFAULT_LEVEL,
    stream: Any = None,
    filename: str | None = None,
    *,
    handler: logging.Handler | None = None,
) -> logging.Handler:
    """Install one handler on the pqike logger tree and set per-subsystem levels: ``handler``
    if given (syslog), else a file, else ``stream`` (stderr)."""
    root = logging.getLogger(_ROOT)
    for h in list(root.handlers):
        root.removeHandler(h)
    if handler is not None:
        handler.setFormatter(_SyslogFormatter())
    elif filename:
        handler = _PrivateFileHandler(filename)
        handler.setFormatter(_Formatter())
    else:
        handler = _StreamHandler(stream or sys.stderr)
        journal = stream in (None, sys.stderr) and journald_stderr()
        handler.setFormatter(_SyslogFormatter() if journal else _Formatter())
    root.addHandler(handler)
    root.propagate = False
    # charon-style lines name no thread or process: LogRecord need not look them up
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root.setLevel(1)
    levels = {k.upper(): v for k, v in (levels or {}).items()}
    for sub in Subsystem:
        level = _py_level(levels.get(sub.value, default))
        logging.getLogger(f"{_ROOT}.{sub.value}").setLevel(level)
    return handler


def _sole_direct_handler(log: logging.Logger, py: int) -> _DirectLines | None:
    """The log file's (or stderr's) handler when it is all a line at level ``py`` goes
    through (what configure() sets up): no other handler (a control client's log tap), no
    filter, no logger in between; the line can then be written without a LogRecord."""
    root = log.parent
    if log.handlers or log.filters or log.disabled or not log.propagate or root is None:
        return None
    if len(root.handlers) != 1 or root.filters or root.disabled or root.propagate:
        return None
    handler = root.handlers[0]
    if type(handler) not in _DIRECT or handler.filters or handler.level > py:
        return None
    return handler  # type: ignore[return-value]


_batch_depth = 0
_unflushed: set[logging.Handler] = set()


class _Batch:
    """Lines logged inside are written on the way out, by one write(2): a handshake's
    datagram logs a dozen lines, and the daemon sends its answer before the batch ends, so
    formatting and writing them is off the peer's wait. Outside a batch every line is
    written and flushed as it comes. A plain class, not a @contextmanager: the daemon
    enters a batch on every wakeup, and a generator-based one costs an object and ~1 us."""

    __slots__ = ()

    def __enter__(self) -> None:
        global _batch_depth
        _batch_depth += 1

    def __exit__(self, *exc: object) -> None:
        global _batch_depth
        _batch_depth -= 1
        if not _batch_depth:
            while _unflushed:
                handler = _unflushed.pop()
                try:
                    handler.flush()
                except Exception:  # a full disk must not stop the daemon's receive loop
                    handler.handleError(logging.makeLogRecord({"msg": "flushing the log"}))


_BATCH = _Batch()


def batched() -> _Batch:
    """``with batched():`` groups the lines logged inside (see ``_Batch``); reentrant."""
    return _BATCH


_IMMUTABLE: dict[type, bool] = {}


def _immutable_type(t: type) -> bool:
    if issubclass(t, str | int | float | bytes | Enum | ipaddress._BaseAddress | type(None)):
        return True
    params = getattr(t, "__dataclass_params__", None)  # frozen dataclasses
    if params is not None:
        return bool(params.frozen)
    config = getattr(t, "__struct_config__", None)  # frozen msgspec structs
    if config is not None:
        return bool(config.frozen)
    return bool(getattr(t, "_frozen_for_log", False))  # says so itself (wire.summary)


def immutable_args(args: Any) -> bool:
    """A line with these arguments reads the same when formatted later in the batch."""
    if not isinstance(args, tuple):
        return False  # a mapping (``%(key)s``)
    for a in args:
        t = type(a)
        ok = _IMMUTABLE.get(t)
        if ok is None:
            ok = _IMMUTABLE[t] = _immutable_type(t)
        if not ok:
            return False
    return True


# a line kept for the end of the batch: its text, a record, or (time, name, level, msg,
# args, sa) of a direct line, the last two formatted then (immutable arguments only)
_Pending = str | logging.LogRecord | tuple[float, str, int, str, tuple[Any, ...], str]


class _DirectLines(logging.StreamHandler):  # type: ignore[type-arg]
    """configure()'s handlers (a file, stderr): lines written without a LogRecord when
    nothing else wants one, and, inside batched(), kept in order until the batch ends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[_Pending] = []

    def _keep(self, entry: _Pending) -> None:
        self._pending.append(entry)
        _unflushed.add(self)

    def write_line(self, name: str, py: int, msg: str, args: tuple[Any, ...], sa: str) -> bool:
        """The line format(record) would give, written without making the record (the
        costliest part of a line); False, having written nothing, if the standard path must
        take it: a formatter of somebody else's, a bad format string."""
        fmt = self.formatter
        if type(fmt) not in (_Formatter, _SyslogFormatter) or self.stream is None:
            return False
        if len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
            args = args[0]  # type: ignore[assignment]  # as LogRecord does, for "%(key)s"
        now = time.time()
        if _batch_depth and immutable_args(args):
            self._keep((now, name, py, msg, args, sa))
            return True
        try:
            line = self._line(now, name, msg, args, sa)
        except Exception:
            return False
        if _batch_depth:
            self._keep(line + self.terminator)
            return True
        with self.lock:  # type: ignore[union-attr]
            try:
                self.stream.write(line + self.terminator)
                self.flush()
            except Exception:  # as Handler.emit: said on stderr, the daemon carries on
                self.handleError(logging.LogRecord(name, py, "", 0, msg, args, None))
        return True

    def _line(self, now: float, name: str, msg: str, args: Any, sa: str) -> str:
        message = str(msg) % args if args else str(msg)
        return self.formatter.line(now, (now - int(now)) * 1000, name, message, sa)  # type: ignore[union-attr]

    def emit(self, record: logging.LogRecord) -> None:
        if not _batch_depth:
            super().emit(record)
            return
        if immutable_args(record.args):
            self._keep(record)
            return
        try:
            self._keep(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)

    def _text(self, entry: _Pending) -> str | None:
        if type(entry) is tuple:  # the common case: a direct line kept for the batch's end
            now, name, py, msg, args, sa = entry
            try:
                return self._line(now, name, msg, args, sa) + self.terminator
            except Exception:  # what the standard path would have said of a bad format string
                self.handleError(logging.LogRecord(name, py, "", 0, msg, args, None))
                return None
        if isinstance(entry, str):
            return entry
        try:
            return self.format(entry) + self.terminator  # type: ignore[arg-type]
        except Exception:
            self.handleError(entry)  # type: ignore[arg-type]
            return None

    def flush(self) -> None:
        if _batch_depth:  # batched(): written when the batch ends
            _unflushed.add(self)
            return
        if self._pending:
            entries, self._pending = self._pending, []
            text = "".join(t for e in entries if (t := self._text(e)) is not None)
            with self.lock:  # type: ignore[union-attr]
                if self.stream is None and isinstance(self, logging.FileHandler):
                    self.stream = self._open()
                self.stream.write(text)
        super().flush()


class _StreamHandler(_DirectLines):
    """stderr (the journal's stream under systemd), or the stream configure() was given."""


class _PrivateFileHandler(_DirectLines, logging.FileHandler):
    """A log file created 0600 (level 4 writes keys), its mode forced to 0600 if it existed
    with another, never opened through a symbolic link; appended to, as charon's filelog."""

    def __init__(self, filename: str) -> None:
        super().__init__(filename, mode="a", encoding="utf-8")

    def _open(self) -> Any:
        fd = open_private(self.baseFilename, append=True)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


_DIRECT = (_StreamHandler, _PrivateFileHandler)
