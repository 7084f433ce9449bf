"""daemon.workers > 1: worker processes behind one control socket.

The supervisor (the process `pqike daemon` started) runs no engine. It starts the workers
one after the other, each a full ``Daemon`` with its own engine, so that each joins the
SO_REUSEPORT groups of ports 500 and 4500 at its own index (pqike.daemon.steering: the
kernel steers each datagram to the worker owning the IKE_SA, a new IKE_SA_INIT to the
worker owning the peer's address). Worker 0 attaches the steering program; IKE_SAs we
initiate (start_action = start, ``initiate``) are started by the worker owning the peer's
address, so that they meet the peer's own IKE_SAs (unique, INITIAL_CONTACT).

The supervisor's control socket is the daemon's: each request goes to the worker(s) it
concerns over their private control sockets (``<control_socket>.worker<i>``):
list-sas, stats, counters, log and monitor-sa merge all workers; terminate and rekey go to
the workers holding a matching IKE_SA; initiate to the worker owning the peer's address
(one in turn for a connection without one); reload to all.
If a worker dies, its sockets leave the reuseport groups and the steering no longer holds:
the supervisor then stops them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

import pqike
from pqike import __version__
from pqike.config import Config, ConfigError, load_config
from pqike.config.workers import WORKER_KERNELS
from pqike.daemon.control import (
    ControlServer,
    LogLine,
    Request,
    Result,
    Send,
    _line,
    _reply_decoder,
)
from pqike.daemon.server import Daemon, _sa_matches
from pqike.daemon.steering import attach_steering
from pqike.engine import EngineError, find_conn, initiation_remote
from pqike.events import IkeSaInfo
from pqike.log import Subsystem, get_logger
from pqike.partition import Partition, address_owner

__all__ = ["LogSpec", "Supervisor", "WorkerSpec", "merged_pools", "resolve_workers", "worker_main"]

dmn = get_logger(Subsystem.DMN)

START_TIMEOUT = 60.0  # seconds for one worker to bind its sockets and report ready
STOP_TIMEOUT = 15.0  # seconds a worker may take to delete its SAs on shutdown
_REPLY_LIMIT = 1 << 26  # a worker's list-sas of a busy gateway is one long line


def resolve_workers(configured: int) -> int:
    """daemon.workers: 0 means one per CPU."""
    return configured or os.cpu_count() or 1


class LogSpec(msgspec.Struct, frozen=True):
    """How `pqike daemon` set up logging, repeated in every worker."""

    levels: dict[str, int] = {}
    default: int = 1
    file: str | None = None
    syslog: str | None = None  # facility, when the background daemon logs to syslog


class WorkerSpec(msgspec.Struct, frozen=True):
    index: int
    count: int
    config_path: str
    kernel: str
    socket_path: str
    listen: tuple[str, ...]
    ike_port: int | None
    natt_port: int | None
    log: LogSpec
    ready_fd: int


def worker_socket(path: str, index: int) -> str:
    return f"{path}.worker{index}"


# --- the worker process ------------------------------------------------------------------


def _steering_setup(
    inner: Callable[[socket.socket, bool], None] | None, partition: Partition
) -> Callable[[socket.socket, bool], None]:
    """The backend's socket setup plus SO_REUSEPORT; worker 0 attaches the program."""

    def setup(sock: socket.socket, natt: bool) -> None:
        if inner is not None:
            inner(sock, natt)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if partition.index == 0:
            attach_steering(sock, partition.count, natt)

    return setup


def _configure_logging(spec: LogSpec) -> None:
    from pqike import log as pqlog

    handler = None
    if spec.syslog is not None:
        from pqike.cli import _syslog

        handler = _syslog(spec.syslog)
    pqlog.configure(
        spec.levels, spec.default, stream=sys.stderr, filename=spec.file, handler=handler
    )


def _build_worker(spec: WorkerSpec) -> Daemon:
    from pqike.engine import Engine
    from pqike.kernel import select_backend

    config = load_config(spec.config_path)
    if spec.kernel not in WORKER_KERNELS:  # pqike.config.workers says why
        raise OSError(f"kernel {spec.kernel} is not supported with {spec.count} workers")
    kernel = select_backend(spec.kernel)
    partition = Partition(spec.index, spec.count)
    daemon = Daemon(
        config,
        config_path=spec.config_path,
        kernel=kernel,
        engine_factory=lambda c, k, e: Engine(c, k, events=e, partition=partition),
        socket_path=spec.socket_path,
        listen=spec.listen,
        ike_port=spec.ike_port,
        natt_port=spec.natt_port,
        autostart=True,  # the engine starts the connections of its peers' addresses
    )
    daemon.udp.socket_setup = _steering_setup(daemon.udp.socket_setup, partition)
    return daemon


def worker_main(encoded: str) -> int:
    """Entry point of one worker process (``python -m pqike.daemon.workers SPEC``)."""
    spec = msgspec.json.decode(encoded, type=WorkerSpec)
    _configure_logging(spec.log)

    def ready() -> None:
        ports = {"ike_port": daemon.udp.ike_port, "natt_port": daemon.udp.natt_port}
        os.write(spec.ready_fd, msgspec.json.encode(ports))
        os.close(spec.ready_fd)

    try:
        daemon = _build_worker(spec)
        asyncio.run(daemon.run(ready=ready))
    except Exception as e:  # reported to the supervisor by the closed ready pipe
        dmn.basic("worker %d failed: %s", spec.index, getattr(e, "strerror", None) or e)
        return 1
    return 0


# --- the supervisor ----------------------------------------------------------------------


class _Worker:
    def __init__(self, index: int, proc: asyncio.subprocess.Process, socket_path: str) -> None:
        self.index = index
        self.proc = proc
        self.socket_path = socket_path


def _read_ready(fd: int, timeout: float) -> bytes:
    """The worker's ready message; b"" if it exited (closed the pipe) or timed out."""
    with contextlib.closing(os.fdopen(fd, "rb", buffering=0)) as pipe:
        ready, _, _ = select.select([pipe], [], [], timeout)
        return (pipe.read(4096) or b"") if ready else b""


async def _forward(path: str, req: Request, send: Send) -> Result:
    """One request to one worker; its log lines and events go on to ``send``."""
    try:
        reader, writer = await asyncio.open_unix_connection(path, limit=_REPLY_LIMIT)
    except OSError as e:
        return Result(ok=False, message=f"worker at {path} unreachable: {e.strerror or e}")
    try:
        writer.write(_line(req))
        await writer.drain()
        while True:
            raw = await reader.readline()
            if not raw:
                return Result(ok=False, message=f"worker at {path} closed the connection")
            try:
                reply = _reply_decoder.decode(raw)
            except msgspec.DecodeError as e:
                return Result(ok=False, message=f"worker at {path} answered garbage: {e}")
            if isinstance(reply, Result):
                return reply
            send(reply.line if isinstance(reply, LogLine) else reply)
    finally:
        writer.close()


def _merged(results: Sequence[Result], success: str) -> Result:
    failed = [r for r in results if not r.ok]
    return Result(
        ok=not failed,
        message=failed[0].message if failed else success,
        events=[e for r in results for e in r.events],
    )


def _sum_into(total: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, int) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, dict):
            _sum_into(total.setdefault(key, {}), value)


def merged_pools(parts: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """list-pools of all workers as one: each worker leases its share of every pool."""
    pools: dict[str, dict[str, Any]] = {}
    for part in parts:
        for pool in part:
            have = pools.setdefault(pool["name"], {**pool, "online": 0, "offline": 0, "leases": []})
            have["online"] += pool["online"]
            have["offline"] += pool["offline"]
            have["leases"] = have["leases"] + pool.get("leases", [])
    return list(pools.values())


class Supervisor:
    """Starts ``count`` worker daemons and serves the control socket for all of them."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str,
        count: int,
        kernel: str = "auto",
        socket_path: str | None = None,
        listen: Sequence[str] = (),
        ike_port: int | None = None,
        natt_port: int | None = None,
        log: LogSpec | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.count = count
        self.kernel = kernel
        self.socket_path = socket_path or config.daemon.control_socket
        self.listen = tuple(listen)
        self.ports = (ike_port, natt_port)
        self.log = log or LogSpec()
        self.workers: list[_Worker] = []
        self.control = ControlServer(self.socket_path, self.handle)
        self.started_at = time.time()
        self.failed = False  # a worker died on its own
        self._stop: asyncio.Event | None = None
        self._turn = 0  # the worker the next initiate goes to
        self._routes: dict[str, Callable[[Request, Send], Awaitable[Result]]] = {
            "initiate": self._initiate,
            "terminate": self._by_owner,
            "rekey": self._by_owner,
            "list-sas": self._list_sas,
            "reload": self._everywhere,
            "load-all": self._everywhere,
            "stats": self._stats,
            "counters": self._counters,
            "list-pools": self._list_pools,
            "log": self._everywhere,
            "monitor-sa": self._everywhere,
        }  # the rest (list-conns, list-certs, traps) is the same in every worker

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(self, *, signals: bool = True, ready: Callable[[], None] | None = None) -> None:
        self._stop = asyncio.Event()
        dmn.basic("Starting IKE pqike daemon (pqike %s, %d workers)", __version__, self.count)
        try:
            await self._start_workers()
            await self.control.start()
        except BaseException:
            await self._stop_workers()
            raise
        loop = asyncio.get_running_loop()
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
            loop.add_signal_handler(signal.SIGHUP, self._signal_workers, signal.SIGHUP)
        watchers = [asyncio.ensure_future(self._watch(w)) for w in self.workers]
        dmn("control socket %s, workers %s", self.socket_path, self._pids())
        if ready is not None:
            ready()
        try:
            await self._stop.wait()
        finally:
            if signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
            await self.control.close()
            await self._stop_workers()
            for task in watchers:
                task.cancel()
        if self.failed:
            raise OSError("a worker process exited, all workers stopped")

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def _pids(self) -> str:
        return ", ".join(f"{w.index}:{w.proc.pid}" for w in self.workers)

    async def _start_workers(self) -> None:
        """One after the other: the order of binding is the index in the reuseport group."""
        ports = self.ports
        for index in range(self.count):
            ports = await self._start_worker(index, ports)

    async def _start_worker(
        self, index: int, ports: tuple[int | None, int | None]
    ) -> tuple[int | None, int | None]:
        rfd, wfd = os.pipe()
        spec = WorkerSpec(
            index=index,
            count=self.count,
            config_path=self.config_path,
            kernel=self.kernel,
            socket_path=worker_socket(self.socket_path, index),
            listen=self.listen,
            ike_port=ports[0],
            natt_port=ports[1],
            log=self.log,
            ready_fd=wfd,
        )
        # the worker imports this same pqike, wherever the supervisor runs from
        env = dict(os.environ, PYTHONPATH=str(Path(pqike.__file__).resolve().parents[1]))
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pqike.daemon.workers",
                msgspec.json.encode(spec).decode(),
                pass_fds=(wfd,),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a terminal's ^C is the supervisor's to act on
                env=env,
            )
        finally:
            os.close(wfd)
        self.workers.append(_Worker(index, proc, spec.socket_path))
        raw = await asyncio.to_thread(_read_ready, rfd, START_TIMEOUT)
        if not raw:
            raise OSError(f"worker {index} did not start (see its log lines above)")
        bound = msgspec.json.decode(raw)
        dmn("worker %d (pid %d) listening on ports %d/%d", index, proc.pid, *bound.values())
        return bound["ike_port"], bound["natt_port"]

    async def _watch(self, worker: _Worker) -> None:
        code = await worker.proc.wait()
        assert self._stop is not None
        if not self._stop.is_set():
            dmn.basic(
                "worker %d (pid %d) exited with %d: stopping all workers",
                worker.index,
                worker.proc.pid,
                code,
            )
            self.failed = True
            self._stop.set()

    def _signal_workers(self, sig: int) -> None:
        for w in self.workers:
            if w.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(sig)

    async def _stop_workers(self) -> None:
        self._signal_workers(signal.SIGTERM)
        for w in self.workers:
            try:
                await asyncio.wait_for(w.proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                dmn.basic("worker %d (pid %d) did not stop, killed", w.index, w.proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
                await w.proc.wait()

    # ---- control requests ----------------------------------------------------------------

    async def handle(self, req: Request, send: Send) -> Result:
        route = self._routes.get(req.cmd)
        if route is None:
            return await _forward(self.workers[0].socket_path, req, send)
        return await route(req, send)

    async def _all(self, req: Request, send: Send) -> list[Result]:
        return list(
            await asyncio.gather(*(_forward(w.socket_path, req, send) for w in self.workers))
        )

    async def _everywhere(self, req: Request, send: Send) -> Result:
        results = await self._all(req, send)
        first = results[0]
        return _merged(results, first.message) if first.ok else first

    async def _initiate(self, req: Request, send: Send) -> Result:
        return await _forward(self._initiator(req).socket_path, req, send)

    def _initiator(self, req: Request) -> _Worker:
        """The worker owning the peer's address (the configuration as loaded now: a reload
        may have changed it), else one in turn, which also says what is wrong."""
        try:
            config = load_config(self.config_path, require_files=False)
            remote = initiation_remote(find_conn(config.connections, req.child, req.ike)[1])
        except (ConfigError, EngineError, OSError):
            remote = None
        if remote is not None:
            return self.workers[address_owner(remote, len(self.workers))]
        self._turn += 1
        return self.workers[(self._turn - 1) % len(self.workers)]

    async def _sas(self, worker: _Worker) -> list[IkeSaInfo]:
        result = await _forward(worker.socket_path, Request(cmd="list-sas"), lambda item: None)
        return msgspec.convert(result.data or [], list[IkeSaInfo]) if result.ok else []

    async def _by_owner(self, req: Request, send: Send) -> Result:
        """terminate/rekey: to every worker with a matching IKE_SA (none: worker 0 says so)."""
        child = None if req.reauth else req.child
        found = await asyncio.gather(*(self._sas(w) for w in self.workers))
        owners = [
            w
            for w, sas in zip(self.workers, found, strict=True)
            if any(_sa_matches(sa, req.ike, req.ike_id, child, req.child_id) for sa in sas)
        ] or self.workers[:1]
        results = await asyncio.gather(*(_forward(w.socket_path, req, send) for w in owners))
        return _merged(results, results[0].message) if results[0].ok else results[0]

    async def _list_sas(self, req: Request, send: Send) -> Result:
        results = await self._all(req, send)
        sas = [sa for r in results if r.ok for sa in r.data or []]
        return Result(ok=True, data=sorted(sas, key=lambda sa: sa["unique_id"]))

    async def _list_pools(self, req: Request, send: Send) -> Result:
        results = await self._all(req, send)
        failed = next((r for r in results if not r.ok), None)
        return failed or Result(ok=True, data=merged_pools([r.data or [] for r in results]))

    async def _counters(self, req: Request, send: Send) -> Result:
        results = await self._all(req, send)
        total: dict[str, Any] = {}
        for r in results:
            if not r.ok:
                return r
            _sum_into(total, r.data or {})
        return Result(ok=True, message=results[0].message, data=total)

    async def _stats(self, req: Request, send: Send) -> Result:
        results = await self._all(req, send)
        if not all(r.ok for r in results):
            return next(r for r in results if not r.ok)
        data = dict(results[0].data)
        for key in ("ike_sas", "child_sas", "ike_sa_states", "packets", "control_clients"):
            data.pop(key, None)
        totals: dict[str, Any] = {}
        for r in results:
            _sum_into(
                totals, {k: r.data[k] for k in ("ike_sas", "child_sas", "ike_sa_states", "packets")}
            )
        data.update(totals)
        data.update(
            pid=os.getpid(),
            uptime=int(time.time() - self.started_at),
            since=int(self.started_at),
            control_socket=self.socket_path,
            control_clients=self.control.clients,
            workers=[
                {"index": w.index, "pid": w.proc.pid, "ike_sas": r.data["ike_sas"]}
                for w, r in zip(self.workers, results, strict=True)
            ],
        )
        return Result(ok=True, data=data)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1]))
