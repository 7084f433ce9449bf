"""The asyncio shell around the sans-IO engine: UDP, timers, control commands, signals.

Everything that touches the engine runs on the event loop thread, one call at a time:
a received datagram, a timer expiry or a control command. The engine sends each datagram
the moment it is sealed (``set_transmit``; engines without it queue for ``pop_outgoing``,
sent after the call); after each call the daemon re-arms the one timer at
``engine.next_deadline()`` and lets waiting commands look at the events the call produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import os
import platform
import signal
import socket
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol

import msgspec

from pqike import __version__
from pqike.config import Config, ConfigError, describe_connections, load_config
from pqike.daemon.control import COMMANDS, ControlServer, EventLine, Request, Result, Send
from pqike.daemon.gctune import tune_gc
from pqike.daemon.logtap import LogRouter
from pqike.daemon.rxqueue import Priority, ReceiveQueue
from pqike.daemon.udp import EspHandler, UdpEndpoints
from pqike.events import Datagram, Event, EventKind, IkeSaInfo
from pqike.kernel.base import KernelBackend, KernelError, MemoryKernel
from pqike.log import Subsystem, batched, get_logger

__all__ = [
    "DEFAULT_TIMEOUT",
    "CommandError",
    "Daemon",
    "EngineFactory",
    "EngineLike",
    "default_engine_factory",
]

dmn = get_logger(Subsystem.DMN)
cfg = get_logger(Subsystem.CFG)
knl = get_logger(Subsystem.KNL)
net = get_logger(Subsystem.NET)

DEFAULT_TIMEOUT = 30.0
_SPIN_DELAY = 0.01  # re-arm delay when the engine reports a deadline already past after tick
# datagrams handed to the engine per loop iteration: between batches the loop reads the
# sockets (new messages of known IKE_SAs overtake queued IKE_SA_INITs) and runs timers
_BATCH = 8


class EngineLike(Protocol):
    """What the daemon needs of ``pqike.engine.Engine`` (tests pass fakes)."""

    def load_config(self, config: Config) -> None: ...

    def initiate(self, child: str | None, ike: str | None, now: float) -> int: ...

    def terminate(
        self,
        ike: str | None,
        child: str | None,
        ike_id: int | None,
        now: float,
        *,
        child_id: int | None = None,
        force: bool = False,
    ) -> None: ...

    def rekey(self, ike: str | None, child: str | None, now: float) -> None: ...

    def reauthenticate(self, ike: str | None, now: float) -> list[int]: ...

    def receive(self, datagram: Datagram, now: float) -> None: ...

    def tick(self, now: float) -> None: ...

    def pop_outgoing(self) -> list[Datagram]: ...

    def next_deadline(self) -> float | None: ...

    def list_sas(self) -> list[IkeSaInfo]: ...  # called with ``now`` if it takes one

    def close(self, now: float) -> None: ...


EngineFactory = Callable[[Config, KernelBackend, Callable[[Event], None]], EngineLike]


def default_engine_factory(
    config: Config, kernel: KernelBackend, events: Callable[[Event], None]
) -> EngineLike:
    from pqike.engine import Engine

    return Engine(config, kernel, events=events)


class CommandError(Exception):
    """A control command cannot be carried out; the message goes to the client as is."""


_user_errors: tuple[type[BaseException], ...] | None = None


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is meant for the operator (no traceback, no 'internal')."""
    global _user_errors
    if _user_errors is None:
        types: list[type[BaseException]] = [CommandError, ConfigError, KernelError]
        try:
            from pqike.engine import EngineError

            types.append(EngineError)
        except Exception:  # the engine may not be importable (yet); fakes raise CommandError
            pass
        _user_errors = tuple(types)
    return _user_errors


def _kernel_socket_setup(kernel: KernelBackend) -> Callable[[socket.socket, bool], None] | None:
    """What the backend needs done to each IKE socket (xfrm: per-socket bypass policies,
    so SAs whose selectors cover the peer do not swallow IKE itself)."""
    setup = getattr(kernel, "prepare_socket", None)
    if callable(setup):
        return setup
    if kernel.name == "xfrm":
        try:
            from pqike.kernel.xfrm import bypass_socket
        except ImportError:
            return None

        def bypass(sock: socket.socket, natt: bool) -> None:
            try:
                bypass_socket(sock)
            except OSError as e:
                knl.basic("cannot exempt IKE socket from IPsec policies: %s", e.strerror or e)

        return bypass
    return None


# --- waiting for events ----------------------------------------------------------------------

Decision = tuple[bool, str] | None


class _Waiter:
    """Collects engine events for one command until ``decide`` returns (ok, message)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.events: list[Event] = []
        self.future: asyncio.Future[tuple[bool, str]] = loop.create_future()
        self.decide: Callable[[list[Event]], Decision] | None = None
        self.relevant: Callable[[Event], bool] = lambda e: True

    def offer(self, event: Event) -> None:
        self.events.append(event)

    def selected(self) -> list[Event]:
        return [e for e in self.events if self.relevant(e)]

    def check(self) -> None:
        if self.decide is None or self.future.done():
            return
        decision = self.decide(self.selected())
        if decision is not None:
            self.future.set_result(decision)


def _initiate_decider(child: str | None) -> Callable[[list[Event]], Decision]:
    def decide(events: list[Event]) -> Decision:
        ike_up = False
        child_failure = None
        for e in events:
            if e.kind in (EventKind.IKE_FAILED, EventKind.IKE_DELETED):
                return False, e.message or "establishing IKE_SA failed"
            if e.kind == EventKind.IKE_ESTABLISHED:
                ike_up = True
            if e.kind == EventKind.CHILD_ESTABLISHED and child is not None and e.child == child:
                return True, ""
            if e.kind == EventKind.CHILD_FAILED and (child is None or e.child in (child, None)):
                child_failure = e.message or f"establishing CHILD_SA '{e.child or child}' failed"
        if child_failure is not None:
            return False, child_failure
        if ike_up and child is None:
            return True, ""
        return None

    return decide


def _terminate_decider(
    ids: set[int], child: str | None, child_id: int | None = None
) -> Callable[[list[Event]], Decision]:
    by_child = child is not None or child_id is not None

    def decide(events: list[Event]) -> Decision:
        done = set()
        for e in events:
            if e.kind in (EventKind.IKE_DELETED, EventKind.IKE_FAILED) or (
                by_child
                and e.kind == EventKind.CHILD_DELETED
                and (child is None or e.child == child)
                and (child_id is None or e.child_id == child_id)
            ):
                done.add(e.ike_id)
        return (True, "") if ids <= done else None

    return decide


def _rekey_decider(ids: set[int], child: str | None) -> Callable[[list[Event]], Decision]:
    want = EventKind.CHILD_REKEYED if child is not None else EventKind.IKE_REKEYED

    def decide(events: list[Event]) -> Decision:
        done = set()
        for e in events:
            if e.kind == EventKind.REKEY_FAILED:
                return False, e.message or "rekeying failed"
            if e.kind == want and (child is None or e.child == child):
                done.add(e.ike_id)
            if e.kind in (EventKind.IKE_DELETED, EventKind.IKE_FAILED) and e.ike_id in ids:
                return False, e.message or f"IKE_SA {e.ike}[{e.ike_id}] went down"
        return (True, "") if done else None

    return decide


def _reauth_decider(old: set[int]) -> Callable[[list[Event]], Decision]:
    """Done when every old IKE_SA is deleted and a new one is up; failed if a new one fails."""

    def decide(events: list[Event]) -> Decision:
        gone = {e.ike_id for e in events if e.kind == EventKind.IKE_DELETED} & old
        up = [e for e in events if e.kind == EventKind.IKE_ESTABLISHED and e.ike_id not in old]
        for e in events:
            if e.kind == EventKind.IKE_FAILED and e.ike_id not in old:
                return False, e.message or "reauthentication failed"
        return (True, "") if gone == old and up else None

    return decide


def _sa_matches(
    sa: IkeSaInfo,
    ike: str | None,
    ike_id: int | None,
    child: str | None,
    child_id: int | None = None,
) -> bool:
    if ike is not None and sa.name != ike:
        return False
    if ike_id is not None and sa.unique_id != ike_id:
        return False
    return (child is None or any(c.name == child for c in sa.children)) and (
        child_id is None or any(c.unique_id == child_id for c in sa.children)
    )


# --- the daemon ------------------------------------------------------------------------------


class Daemon:
    """UDP sockets + timer + control socket around one engine.

    ``ike_port``/``natt_port`` override the config (0: ephemeral, for tests); ``listen``
    restricts the sockets to these local addresses (default: wildcard IPv4 and IPv6).
    """

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None = None,
        kernel: KernelBackend | None = None,
        engine_factory: EngineFactory | None = None,
        socket_path: str | None = None,
        listen: Sequence[str] = (),
        ike_port: int | None = None,
        natt_port: int | None = None,
        esp_handler: EspHandler | None = None,
        clock: Callable[[], float] = time.monotonic,
        autostart: bool = True,
    ) -> None:
        self.config = config
        self.autostart = autostart  # start_action = start here (one worker of several does)
        self._loaded = config  # as read from disk (self.config may carry the bound ports)
        self.config_path = config_path or config.source or None
        self.kernel: KernelBackend = kernel if kernel is not None else MemoryKernel()
        self.clock = clock
        self.engine = (engine_factory or default_engine_factory)(
            config, self.kernel, self._on_event
        )
        self._list_sas_takes_now = _takes_argument(self.engine.list_sas)
        self.socket_path = socket_path or config.daemon.control_socket
        self.udp = UdpEndpoints(
            self._on_datagram,
            ike_port=config.daemon.port if ike_port is None else ike_port,
            natt_port=config.daemon.port_nat_t if natt_port is None else natt_port,
            addresses=listen,
            esp_handler=esp_handler or getattr(self.kernel, "esp_handler", None),
            udp_encap=bool(
                getattr(self.kernel, "needs_udp_encap_socket", False)
                or getattr(self.kernel, "udp_encap", False)
            ),
            socket_setup=_kernel_socket_setup(self.kernel),
            on_burst_end=self._on_burst_end,
        )
        if hasattr(self.kernel, "send_udp") and getattr(self.kernel, "send_udp", None) is None:
            self.kernel.send_udp = self.udp.send_esp  # type: ignore[attr-defined]
        self.control = ControlServer(self.socket_path, self.handle)
        self.router = LogRouter()
        self.started_at = time.time()
        self._waiters: list[_Waiter] = []
        self._monitors: list[Callable[[Event], None]] = []  # monitor-sa clients
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._rxq = ReceiveQueue(self._known_spi)
        self._draining = False
        self._prefilling = False  # a _prefill_keys chain is scheduled
        prefill = getattr(self.engine, "prefill_keys", None)  # test fakes may lack it
        self._prefill: Callable[[], bool] | None = prefill if callable(prefill) else None
        self._direct = False  # the engine transmits as it seals (set_transmit)
        self._spin_logged = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._background: set[asyncio.Future[None]] = set()
        self._commands: dict[str, Callable[[Request, Callable[[str], None]], Awaitable[Result]]]
        self._commands = {
            "initiate": self._cmd_initiate,
            "terminate": self._cmd_terminate,
            "rekey": self._cmd_rekey,
            "list-sas": self._cmd_list_sas,
            "list-conns": self._cmd_list_conns,
            "list-certs": self._cmd_list_certs,
            "list-pools": self._cmd_list_pools,
            "reload": self._cmd_reload,
            "load-all": self._cmd_reload,
            "stats": self._cmd_stats,
            "install": self._cmd_install,
            "uninstall": self._cmd_uninstall,
            "list-pols": self._cmd_list_pols,
            "counters": self._cmd_counters,
            "log": self._cmd_log,
            "monitor-sa": self._cmd_monitor_sa,
        }
        assert set(self._commands) == set(COMMANDS)

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the UDP and control sockets; OSError with a clear message if that fails."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        uname = platform.uname()
        dmn.basic(
            "Starting IKE pqike daemon (pqike %s, %s %s, %s)",
            __version__,
            uname.system,
            uname.release,
            uname.machine,
        )
        self.udp.open()
        self.udp.attach(self._loop)
        set_transmit = getattr(self.engine, "set_transmit", None)  # test fakes may lack it
        if callable(set_transmit):
            set_transmit(self._transmit)  # a response leaves as soon as it is sealed
            self._direct = True
        if hasattr(self.kernel, "on_acquire"):
            self.kernel.on_acquire = self._on_acquire  # type: ignore[attr-defined]
        attach = getattr(self.kernel, "attach", None)
        if callable(attach):
            attach(self._loop)  # userspace ESP: its TUN device; xfrm: ACQUIREs
        effective = self._effective(self.config)
        if effective is not self.config:  # ephemeral ports: the engine must know the real ones
            self.config = effective
            self._guard("loading the configuration", self.engine.load_config, effective)
        try:
            await self.control.start()
        except BaseException:
            self.udp.close()
            raise
        n = len(self.config.connections)
        cfg(
            "loaded %d connection%s%s",
            n,
            "" if n == 1 else "s",
            f": {', '.join(self.config.connections)}" if n else "",
        )
        for w in self.config.warnings:
            cfg("warning: %s", w)
        dmn(
            "kernel backend: %s%s",
            self.kernel.name,
            ", UDP_ENCAP on NAT-T sockets" if self.udp.udp_encap else "",
        )
        dmn("listening on %s", ", ".join(self.udp.listening))
        dmn("control socket %s", self.socket_path)
        install_traps = getattr(self.engine, "install_traps", None)
        if callable(install_traps):  # start_action = trap
            with self.router.engine_call():
                self._guard("installing trap policies", install_traps)
        start = getattr(self.engine, "start", None)  # start_action = start (test fakes lack it)
        if callable(start) and self.autostart:
            with self.router.engine_call():
                self._guard("starting connections", start, self.clock())
        self._after_engine()

    def _effective(self, config: Config) -> Config:
        """``config`` with the ports the sockets are actually bound to."""
        d = config.daemon
        if (d.port, d.port_nat_t) == (self.udp.ike_port, self.udp.natt_port) or not (
            self.udp.ike_port and self.udp.natt_port
        ):
            return config
        daemon = msgspec.structs.replace(d, port=self.udp.ike_port, port_nat_t=self.udp.natt_port)
        return msgspec.structs.replace(config, daemon=daemon)

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def stop(self) -> None:
        """Delete SAs (best effort), close sockets, remove what the kernel backend installed."""
        dmn.basic("shutting down")
        self._rxq.clear()  # what was read but not processed is for nobody now
        now = self.clock()
        with self.router.engine_call():
            self._guard("closing the engine", self.engine.close, now)
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for w in self._waiters:
            if not w.future.done():
                w.future.set_result((False, "the daemon is shutting down"))
        await self.control.close()
        self.udp.close()
        self._guard("cleaning up the kernel backend", self.kernel.close)

    async def run(self, *, signals: bool = True, ready: Callable[[], None] | None = None) -> None:
        """start(), serve until SIGTERM/SIGINT (SIGHUP reloads), stop()."""
        await self.start()
        loop = asyncio.get_running_loop()
        installed = []
        if signals:  # the daemon owns this process (tests pass signals=False)
            tune_gc()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
                installed.append(sig)
            loop.add_signal_handler(signal.SIGHUP, self._sighup)
            installed.append(signal.SIGHUP)
        if ready is not None:
            ready()
        try:
            assert self._stop is not None
            await self._stop.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.stop()

    def _sighup(self) -> None:
        async def reload() -> None:
            result = await self._cmd_reload(Request(cmd="reload"), lambda line: None)
            (cfg if result.ok else cfg.basic)("SIGHUP: %s", result.message)

        task = asyncio.ensure_future(reload())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- engine plumbing -----------------------------------------------------------------

    def _guard(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call into the engine/kernel; log (never raise) unexpected exceptions."""
        try:
            return fn(*args)
        except Exception as e:
            self._log_exception(what, e)
            return None

    def _log_exception(self, what: str, exc: BaseException) -> None:
        dmn.basic("error %s: %s: %s", what, type(exc).__name__, exc)
        if dmn.enabled(2):
            for line in traceback.format_exception(exc):
                for part in line.rstrip("\n").splitlines():
                    dmn.control("%s", part)

    def _transmit(self, datagram: Datagram) -> None:
        """The engine's send while the daemon runs: called mid-processing, so never raises."""
        try:
            self.udp.send(datagram)
        except Exception as e:  # udp.send logs socket errors itself; this is a bug's net
            self._log_exception(f"sending a packet to {datagram.dst}", e)

    def _flush(self) -> None:
        out = self._guard("collecting outgoing packets", self.engine.pop_outgoing) or []
        for datagram in out:
            self.udp.send(datagram)

    def _after_engine(self, ticked_at: float | None = None) -> None:
        if not self._direct:  # else the engine sent each datagram as it sealed it
            self._flush()
        if self._waiters:  # a command waiting for events; none on a responder's wakeups
            for w in list(self._waiters):
                w.check()
        self._reschedule(ticked_at)
        if not self._prefilling and not self._rxq.count and self._loop is not None:
            # answered and nothing queued: the peer now works on our response (>= 300 us),
            # time enough to make the keys the next handshake takes off its critical path.
            # The first one now: the loop would run it before reading a datagram anyway, and
            # with all made (the usual case) no loop turn is spent on asking
            self._prefilling = True
            self._prefill_keys()

    def _prefill_keys(self) -> None:
        """Make the next handshakes' ephemeral keys ahead, one per loop turn, so a datagram
        that arrives waits for one keygen at most; stop as soon as one is queued (under load
        the queue never empties and nothing is made ahead: each INIT makes its own)."""
        assert self._loop is not None
        prefill = self._prefill
        if self._rxq.count or prefill is None or not self._guard("making keys ahead", prefill):
            self._prefilling = False  # the next engine call with an empty queue starts again
            return
        self._loop.call_soon(self._prefill_keys)

    def _reschedule(self, ticked_at: float | None = None) -> None:
        if self._loop is None:
            return
        deadline = self._guard("reading the next deadline", self.engine.next_deadline)
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._timer_at = None
            return
        if self._timer is not None and self._timer_at == deadline and ticked_at is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = deadline - self.clock()
        if ticked_at is not None and deadline <= ticked_at:
            # tick() did not move a past deadline: don't spin the loop at 100 % CPU
            if not self._spin_logged:
                dmn.control("engine deadline %.3f is not advancing after tick", deadline)
                self._spin_logged = True
            delay = max(delay, _SPIN_DELAY)
        self._timer_at = deadline
        self._timer = self._loop.call_later(max(0.0, delay), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.clock()
        with self.router.engine_call(), batched():
            self._guard("handling timers", self.engine.tick, now)
        self._after_engine(ticked_at=now)

    def _known_spi(self, spi: bytes) -> bool:
        sas = getattr(self.engine, "sas", None)  # test fakes may have none: all equal then
        return isinstance(sas, dict) and spi in sas

    def _on_datagram(self, datagram: Datagram) -> None:
        """Queue what the sockets read; the engine gets it in ``_drain``, by priority."""
        if self._rxq.push(datagram) is None:
            net.basic(
                "dropping %d bytes from %s, receive queue full (%d queued, %d for no known IKE_SA)",
                len(datagram.data),
                datagram.src,
                len(self._rxq),
                self._rxq.queued(Priority.LOW),
            )
            return
        if self._loop is None:  # not started (tests): nothing would run a drain later
            self._drain()
        elif not self._draining and not self.udp.reading:  # else _on_burst_end drains
            self._draining = True
            self._loop.call_soon(self._drain)

    def _on_burst_end(self) -> None:
        """A socket's burst is queued: drain now, not one loop turn (epoll_wait) later, unless
        a drain is already scheduled; _drain's batch limit still lets timers run."""
        if self._rxq.count and not self._draining and self._loop is not None:
            self._draining = True
            self._drain()

    def _drain(self) -> None:
        if not self._rxq.count:  # emptied by stop()
            self._draining = False
            return
        pop, receive, clock = self._rxq.pop, self.engine.receive, self.clock
        with self.router.engine_call(), batched():
            for _ in range(_BATCH):
                datagram = pop()
                if datagram is None:
                    break
                try:  # as _guard, but the description is built only on an exception
                    receive(datagram, clock())
                except Exception as e:
                    self._log_exception(f"processing a packet from {datagram.src}", e)
                if not self._direct:  # else the engine sent it already
                    self._flush()  # answer now, not after the batch
        self._after_engine()
        if self._rxq.count and self._loop is not None:
            self._loop.call_soon(self._drain)
        else:
            self._draining = False

    def _on_acquire(self, reqid: int, src: str | None, dst: str | None) -> None:
        """The data plane caught a packet in a trap (XFRM ACQUIRE, TUN read), on the loop."""
        acquire = getattr(self.engine, "acquire", None)
        if not callable(acquire):
            return
        with self.router.engine_call():
            self._guard("handling an ACQUIRE", acquire, reqid, src, dst, self.clock())
        self._after_engine()

    def _on_event(self, event: Event) -> None:
        for w in self._waiters:
            w.offer(event)
        for monitor in self._monitors:
            monitor(event)

    def _list_sas(self) -> list[IkeSaInfo]:
        if self._list_sas_takes_now:
            return list(self.engine.list_sas(self.clock()))  # type: ignore[call-arg]
        return list(self.engine.list_sas())

    @contextlib.contextmanager
    def _waiter(self) -> Iterator[_Waiter]:
        assert self._loop is not None
        w = _Waiter(self._loop)
        self._waiters.append(w)
        try:
            yield w
        finally:
            self._waiters.remove(w)

    def _command_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one engine command (exceptions propagate) and do the after-call work."""
        try:
            with self.router.engine_call():
                return fn(*args)
        finally:
            self._after_engine()

    async def _wait(self, w: _Waiter, timeout: float, what: str, pending: str) -> Result:
        try:
            ok, message = await asyncio.wait_for(asyncio.shield(w.future), timeout)
        except TimeoutError:
            return Result(
                ok=False,
                message=f"{what} failed: timeout after {timeout:g}s, {pending}",
                events=w.selected(),
            )
        if ok:
            return Result(ok=True, message=f"{what} completed successfully", events=w.selected())
        return Result(ok=False, message=f"{what} failed: {message}", events=w.selected())

    # ---- control commands ----------------------------------------------------------------

    async def handle(self, req: Request, send_log: Callable[[str], None]) -> Result:
        command = self._commands.get(req.cmd)
        if command is None:
            return Result(
                ok=False, message=f"unknown command '{req.cmd}' (known: {', '.join(COMMANDS)})"
            )
        try:
            return await command(req, send_log)
        except _user_error_types() as e:
            return Result(ok=False, message=f"{req.cmd} failed: {e}")
        except Exception as e:
            self._log_exception(f"in control command '{req.cmd}'", e)
            return Result(
                ok=False,
                message=f"{req.cmd} failed: internal error "
                f"({type(e).__name__}: {e}), see the daemon log",
            )

    @staticmethod
    def _timeout(req: Request) -> float:
        if req.timeout is None:
            return DEFAULT_TIMEOUT
        if req.timeout <= 0:
            raise CommandError("timeout must be positive")
        return req.timeout

    async def _cmd_initiate(self, req: Request, send_log: Callable[[str], None]) -> Result:
        if req.child is None and req.ike is None:
            raise CommandError("initiate needs a CHILD_SA (--child) or IKE_SA (--ike) name")
        timeout = self._timeout(req)
        with self.router.tap(send_log) as tap, self._waiter() as w:
            what = f"CHILD_SA '{req.child}'" if req.child else f"IKE_SA '{req.ike}'"

            def start(now: float) -> int:
                cfg("control: initiate %s", what)
                return self.engine.initiate(req.child, req.ike, now)

            try:
                ike_id = self._command_call(start, self.clock())
            except BaseException:
                tap.resolve(None)  # failed before an IKE_SA existed: show why
                raise
            tap.resolve({ike_id})
            w.relevant = lambda e: e.ike_id == ike_id
            w.decide = _initiate_decider(req.child)
            w.check()
            return await self._wait(
                w, timeout, "initiate", f"IKE_SA #{ike_id} is still being established"
            )

    async def _cmd_terminate(self, req: Request, send_log: Callable[[str], None]) -> Result:
        if req.ike is None and req.child is None and req.ike_id is None and req.child_id is None:
            raise CommandError("terminate needs --ike, --child, --ike-id or --child-id")
        timeout = self._timeout(req)
        ids = {
            sa.unique_id
            for sa in self._list_sas()
            if _sa_matches(sa, req.ike, req.ike_id, req.child, req.child_id)
        }
        options: dict[str, Any] = {}
        if req.child_id is not None or req.force:  # engines without these keep working
            options = {"child_id": req.child_id, "force": req.force}
        with self.router.tap(send_log) as tap, self._waiter() as w:
            tap.resolve(ids)
            w.relevant = lambda e: e.ike_id in ids
            w.decide = _terminate_decider(ids, req.child, req.child_id)
            self._command_call(
                functools.partial(self.engine.terminate, **options),
                req.ike,
                req.child,
                req.ike_id,
                self.clock(),
            )
            if not ids:
                return Result(ok=True, message="terminate completed successfully")
            w.check()
            return await self._wait(w, timeout, "terminate", "the peer did not confirm yet")

    async def _cmd_rekey(self, req: Request, send_log: Callable[[str], None]) -> Result:
        if req.reauth:
            return await self._cmd_reauth(req, send_log)
        if req.ike is None and req.child is None:
            raise CommandError("rekey needs --ike or --child")
        timeout = self._timeout(req)
        ids = {
            sa.unique_id
            for sa in self._list_sas()
            if _sa_matches(sa, req.ike, req.ike_id, req.child)
        }
        with self.router.tap(send_log) as tap, self._waiter() as w:
            tap.resolve(ids)

            def relevant(e: Event) -> bool:
                if e.ike_id in ids:
                    return True
                if req.ike is not None and e.ike == req.ike:
                    tap.add_ids({e.ike_id})  # the IKE_SA replacing the rekeyed one
                    return True
                return False

            w.relevant = relevant
            w.decide = _rekey_decider(ids, req.child)
            self._command_call(self.engine.rekey, req.ike, req.child, self.clock())
            if not ids:
                return Result(ok=True, message="rekey queued")
            w.check()
            return await self._wait(w, timeout, "rekey", "rekeying is still in progress")

    async def _cmd_reauth(self, req: Request, send_log: Callable[[str], None]) -> Result:
        """rekey --reauth: a new IKE_SA with the CHILD_SAs, then the old one deleted."""
        if req.ike is None:
            raise CommandError("rekey --reauth needs --ike")
        timeout = self._timeout(req)
        with self.router.tap(send_log) as tap, self._waiter() as w:

            def relevant(e: Event) -> bool:
                if e.ike != req.ike:
                    return False
                tap.add_ids({e.ike_id})  # the new IKE_SA's log too
                return True

            w.relevant = relevant
            old = self._command_call(self.engine.reauthenticate, req.ike, self.clock())
            tap.resolve(set(old))
            w.decide = _reauth_decider(set(old))
            w.check()
            return await self._wait(w, timeout, "reauthentication", "still reauthenticating")

    async def _cmd_list_sas(self, req: Request, send_log: Callable[[str], None]) -> Result:
        sas = [sa for sa in self._list_sas() if _sa_matches(sa, req.ike, req.ike_id, None)]
        return Result(ok=True, data=sas)

    async def _cmd_list_conns(self, req: Request, send_log: Callable[[str], None]) -> Result:
        conns = self.config.connections
        if req.ike is not None:
            if req.ike not in conns:
                raise CommandError(f"no connection named '{req.ike}'")
            conns = {req.ike: conns[req.ike]}
        shown = msgspec.structs.replace(self.config, connections=conns)
        return Result(
            ok=True,
            data={
                "text": describe_connections(shown),
                "connections": msgspec.to_builtins(conns),
            },
        )

    async def _cmd_list_certs(self, req: Request, send_log: Callable[[str], None]) -> Result:
        from pqike.daemon.certs import list_certificates

        return Result(ok=True, data=list_certificates(self.config))

    async def _cmd_list_pools(self, req: Request, send_log: Callable[[str], None]) -> Result:
        list_pools = getattr(self.engine, "list_pools", None)
        pools = list_pools() if callable(list_pools) else []
        if req.name is not None:
            pools = [p for p in pools if p.name == req.name]
        if not req.leases:
            pools = [msgspec.structs.replace(p, leases=[]) for p in pools]
        return Result(ok=True, data=pools)

    async def _cmd_counters(self, req: Request, send_log: Callable[[str], None]) -> Result:
        counters = getattr(self.engine, "counters", None)
        if counters is None:
            raise CommandError("this engine keeps no counters")
        values = dict(counters.values)
        if req.reset:
            counters.reset()
        return Result(ok=True, message="reset-counters completed" if req.reset else "", data=values)

    async def _cmd_log(self, req: Request, send_log: Send) -> Result:
        """Every line the daemon logs, until the client goes (swanctl --log)."""
        assert self._stop is not None
        with self.router.tap(send_log) as tap:
            tap.resolve(None)
            await self._stop.wait()
        return Result(ok=True, message="the daemon is shutting down")

    async def _cmd_monitor_sa(self, req: Request, send_log: Send) -> Result:
        """IKE_SA and CHILD_SA events with the SA as it is then (swanctl --monitor-sa)."""
        assert self._stop is not None
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._monitors.append(queue.put_nowait)
        try:
            while not self._stop.is_set():
                event = await queue.get()
                sas = [sa for sa in self._list_sas() if sa.unique_id == event.ike_id]
                send_log(EventLine(event=event, sas=sas))
        finally:
            self._monitors.remove(queue.put_nowait)
        return Result(ok=True, message="the daemon is shutting down")

    async def _cmd_reload(self, req: Request, send_log: Callable[[str], None]) -> Result:
        if not self.config_path:
            raise CommandError("the daemon was started without a configuration path")
        try:
            loaded = load_config(self.config_path)
        except ConfigError as e:
            cfg.basic("reloading %s failed, keeping the running configuration", self.config_path)
            for problem in e.errors:  # one line each: a log line never spans lines
                cfg.basic("  %s", problem)
            return Result(ok=False, message=str(e))
        changed = _restart_needed(self._loaded, loaded)
        new = self._effective(loaded)
        with self.router.engine_call():
            self.engine.load_config(new)
        self._loaded = loaded  # only once the engine took it
        old, self.config = self.config, new
        # swanctl --load-conns: a new or changed connection's start_action = start acts now
        fresh = {n for n, c in new.connections.items() if old.connections.get(n) != c}
        start = getattr(self.engine, "start", None)
        if fresh and callable(start) and self.autostart:
            with self.router.engine_call():
                self._guard("starting connections", start, self.clock(), fresh)
        lines = [_loaded_message(old, new)]
        lines += [f"warning: {w}" for w in new.warnings]
        if changed:
            lines.append(f"changed daemon settings need a restart: {', '.join(changed)}")
        for line in lines:
            cfg("%s", line)
        self._after_engine()
        return Result(ok=True, message="\n".join(lines))

    def _trap_command(self, name: str) -> Callable[..., Any]:
        fn = getattr(self.engine, name, None)
        if not callable(fn):
            raise CommandError(f"this engine has no trap policies ({name})")
        return fn

    async def _cmd_install(self, req: Request, send_log: Callable[[str], None]) -> Result:
        if req.child is None:
            raise CommandError("install needs a CHILD_SA name (--child)")
        self._command_call(self._trap_command("install"), req.child, req.ike)
        return Result(ok=True, message=f"install policy '{req.child}' completed successfully")

    async def _cmd_uninstall(self, req: Request, send_log: Callable[[str], None]) -> Result:
        if req.child is None:
            raise CommandError("uninstall needs a CHILD_SA name (--child)")
        self._command_call(self._trap_command("uninstall"), req.child, req.ike)
        return Result(ok=True, message=f"uninstall policy '{req.child}' completed successfully")

    async def _cmd_list_pols(self, req: Request, send_log: Callable[[str], None]) -> Result:
        return Result(ok=True, data=self._trap_command("list_pols")())

    async def _cmd_stats(self, req: Request, send_log: Callable[[str], None]) -> Result:
        sas = self._list_sas()
        states: dict[str, int] = {}
        for sa in sas:
            states[sa.state] = states.get(sa.state, 0) + 1
        stats = self.udp.stats
        return Result(
            ok=True,
            data={
                "version": __version__,
                "pid": os.getpid(),
                "uptime": int(time.time() - self.started_at),  # whole seconds, as vici
                "since": int(self.started_at),
                "config": self.config_path,
                "connections": len(self.config.connections),
                "kernel": self.kernel.name,
                "listening": self.udp.listening,
                "control_socket": self.socket_path,
                "control_clients": self.control.clients,
                "ike_sas": len(sas),
                "ike_sa_states": states,
                "child_sas": sum(len(sa.children) for sa in sas),
                "packets": dataclasses.asdict(stats),
            },
        )


def _takes_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params
    )


def _loaded_message(old: Config, new: Config) -> str:
    names = list(new.connections)
    removed = [n for n in old.connections if n not in new.connections]
    text = f"loaded {len(names)} connection{'' if len(names) == 1 else 's'}"
    if names:
        text += f" ({', '.join(names)})"
    if removed:
        text += f", unloaded {', '.join(removed)}"
    return text


def _restart_needed(old: Config, new: Config) -> list[str]:
    keys = ("port", "port_nat_t", "control_socket", "kernel", "log")
    return [k for k in keys if getattr(old.daemon, k) != getattr(new.daemon, k)]
