"""The control socket: JSON lines over a Unix stream socket (what vici is to charon).

A client sends one ``Request`` per line and reads replies until a ``Result``::

    -> {"cmd": "initiate", "child": "net", "timeout": 30}
    <- {"type": "log", "line": "[IKE] initiating IKE_SA home[1] to 192.168.0.2"}
    <- ...
    <- {"type": "result", "ok": true, "message": "initiate completed successfully",
        "events": [...], "data": null}

Several requests may follow on one connection. ``ControlServer`` does the framing for the
daemon; ``request()`` is the blocking client the CLI uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from pqike.events import Event, IkeSaInfo
from pqike.log import Subsystem, get_logger

__all__ = [
    "COMMANDS",
    "ControlServer",
    "DaemonUnreachable",
    "EventLine",
    "Handler",
    "LogLine",
    "ProtocolError",
    "Reply",
    "Request",
    "Result",
    "request",
]

log = get_logger(Subsystem.DMN)

COMMANDS = (
    "initiate",
    "terminate",
    "rekey",
    "list-sas",
    "list-conns",
    "list-certs",
    "list-pools",
    "reload",
    "load-all",
    "stats",
    "install",
    "uninstall",
    "list-pols",
    "counters",
    "log",
    "monitor-sa",
)
STREAMING = ("log", "monitor-sa")
"""Commands that stream until the client goes away (swanctl --log, --monitor-sa)."""
MAX_LINE = 1 << 20  # a request line; replies may be longer (list-sas of a busy gateway)


class Request(msgspec.Struct, kw_only=True, omit_defaults=True):
    cmd: str
    ike: str | None = None
    child: str | None = None
    ike_id: int | None = None
    child_id: int | None = None
    force: bool = False  # terminate: don't wait for the peer's answer
    name: str | None = None  # list-pools: only this pool
    leases: bool = False  # list-pools: with the leases
    reset: bool = False  # counters: reset them after reading
    timeout: float | None = None  # seconds to wait for initiate/terminate/rekey
    reauth: bool = False  # rekey: reauthenticate the IKE_SA (make-before-break)


class LogLine(msgspec.Struct, tag="log", tag_field="type"):
    line: str


class EventLine(msgspec.Struct, tag="event", tag_field="type", kw_only=True):
    """monitor-sa: one event and the IKE_SA it concerns as it is now (empty once gone)."""

    event: Event
    sas: list[IkeSaInfo] = []


class Result(msgspec.Struct, tag="result", tag_field="type", kw_only=True):
    ok: bool
    message: str = ""
    events: list[Event] = []
    data: Any = None


Reply = LogLine | EventLine | Result
Send = Callable[[str | EventLine], None]
Handler = Callable[[Request, Send], Awaitable[Result]]
"""``handler(request, send) -> Result``; ``send`` streams a log line or an event."""

_encoder = msgspec.json.Encoder()
_request_decoder = msgspec.json.Decoder(Request)
_reply_decoder = msgspec.json.Decoder(Reply)


class ProtocolError(Exception):
    """The peer on the control socket sent something that is not our protocol."""


class DaemonUnreachable(Exception):
    """No daemon answers at the control socket path."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot reach the daemon at {path} ({reason})")
        self.path = path
        self.reason = reason


def _line(msg: msgspec.Struct) -> bytes:
    return _encoder.encode(msg) + b"\n"


# --- server ----------------------------------------------------------------------------------


class ControlServer:
    """Accepts control connections and hands each request to ``handler``."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.clients = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        path = Path(self.path)
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise OSError(f"{path} exists and is not a socket")
            if _alive(self.path):
                raise OSError(f"another daemon is already listening on {path}")
            path.unlink()
        old = os.umask(0o177)  # the socket is created 0600, no window with wider modes
        try:
            self._server = await asyncio.start_unix_server(
                self._client, path=self.path, limit=MAX_LINE
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.clients += 1
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self.clients -= 1
            if task is not None:
                self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                writer.write(_line(Result(ok=False, message="request too long")))
                await writer.drain()
                return
            except asyncio.IncompleteReadError:
                return
            if not raw.strip():
                continue
            try:
                req = _request_decoder.decode(raw)
            except msgspec.DecodeError as e:
                writer.write(_line(Result(ok=False, message=f"bad request: {e}")))
                await writer.drain()
                continue

            def send_log(item: str | EventLine) -> None:
                if not writer.is_closing():
                    writer.write(_line(LogLine(item) if isinstance(item, str) else item))

            try:
                if req.cmd in STREAMING:
                    result = await self._stream(req, send_log, reader)
                else:
                    result = await self.handler(req, send_log)
            except Exception as e:  # the handler reports its own errors; this is a backstop
                log.basic("control: %s failed: %s: %s", req.cmd, type(e).__name__, e)
                result = Result(ok=False, message=f"internal error: {type(e).__name__}: {e}")
            if writer.is_closing():
                return
            writer.write(_line(result))
            await writer.drain()

    async def _stream(self, req: Request, send: Send, reader: asyncio.StreamReader) -> Result:
        """Run a streaming command until it ends or the client closes its end."""
        work = asyncio.ensure_future(self.handler(req, send))
        gone = asyncio.ensure_future(_until_eof(reader))
        try:
            await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, gone):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        if work.cancelled() or not work.done():
            return Result(ok=True, message=f"{req.cmd} ended")
        return work.result()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Wait for the client to close; what it sends meanwhile is read and dropped."""
    while await reader.read(4096):
        pass


def _alive(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
        except OSError:
            return False
    return True


# --- client ----------------------------------------------------------------------------------


def request(
    path: str,
    req: Request,
    on_log: Callable[[str], None] | None = None,
    *,
    timeout: float | None = 60.0,
    on_event: Callable[[EventLine], None] | None = None,
) -> Result:
    """Send one request and return its Result, passing streamed log lines to ``on_log``
    and monitor-sa events to ``on_event`` (``timeout`` None: a stream without end).

    ``timeout`` bounds every single read (the daemon streams while it works, and enforces
    the request's own timeout itself). Raises DaemonUnreachable or ProtocolError.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise DaemonUnreachable(path, "no such socket") from None
        except ConnectionRefusedError:
            raise DaemonUnreachable(path, "connection refused") from None
        except PermissionError:
            raise DaemonUnreachable(path, "permission denied") from None
        except OSError as e:
            raise DaemonUnreachable(path, e.strerror or str(e)) from None
        try:
            sock.sendall(_line(req))
            stream = sock.makefile("rb")
            while True:
                raw = stream.readline()
                if not raw:
                    raise ProtocolError("the daemon closed the connection without a result")
                try:
                    reply = _reply_decoder.decode(raw)
                except msgspec.DecodeError as e:
                    raise ProtocolError(f"unexpected reply from the daemon: {e}") from None
                if isinstance(reply, Result):
                    return reply
                if isinstance(reply, EventLine):
                    if on_event is not None:
                        on_event(reply)
                elif on_log is not None:
                    on_log(reply.line)
        except TimeoutError:
            raise ProtocolError(f"no answer from the daemon within {timeout or 0:g}s") from None
        except OSError as e:
            raise ProtocolError(f"control socket error: {e.strerror or e}") from None
    finally:
        sock.close()
