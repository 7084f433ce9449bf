"""A real ``pqike daemon`` in a network namespace, for interop tests against strongSwan.

    with PqikePeer("carol", topo.carol, config_tree, tmp_path / "pq-carol",
                   listen=topo.carol_addr) as carol:
        r = carol.initiate(child="net")          # the CLI: exit status + streamed log
        (sa,) = carol.list_sas()                 # [IkeSaInfo] over the control socket
        carol.grep(r"selected proposal: (\\S+)")

The daemon runs ``-F`` (log to stderr, captured in WORKDIR/pqike.log) with its control socket
WORKDIR/pqike.sock, started through ``nsenter`` so it binds in the namespace; the client side
(the CLI and ``pqike.daemon.control.request``) only needs the Unix socket, a host file, so it
runs without nsenter. ``stop()`` (also on any exception, at exit, or when the test process
dies: PDEATHSIG) terminates the daemon's whole process group and removes the socket.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from pqike.daemon.control import DaemonUnreachable, ProtocolError, Request, request
from pqike.events import IkeSaInfo
from tests.exchange.peers import _toml
from tests.harness.netns import ns_argv
from tests.harness.rootdaemon import RUNNING, ToolResult, spawn, stop_process, wait_started
from tests.harness.strongswan import CharonLog

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
DEFAULT_LOG_LEVELS = "ike=2,cfg=2,net=1,enc=1,knl=1"


CliResult = ToolResult  # exit status and combined output of a pqike command
_NOT_YET = (DaemonUnreachable, ProtocolError, OSError)  # the control socket is not answering yet


class PqikePeer(CharonLog):
    """One ``pqike daemon`` (foreground) in namespace ``netns``.

    config    a config tree (dict, rendered as TOML), TOML text, or an existing file/directory
    workdir   host directory: pqike.toml, pqike.sock, pqike.log (created)
    listen    local addresses to bind (``--listen``), e.g. "192.168.0.3"
    kernel    ``--kernel`` backend ("none": negotiate only, install nothing)
    log_level ``--log-level`` (charon-style subsystem levels)
    """

    def __init__(
        self,
        name: str,
        netns: str | None,
        config: dict[str, Any] | str | os.PathLike,
        workdir: str | os.PathLike,
        *,
        listen: str | list[str] | tuple[str, ...] = (),
        kernel: str = "none",
        log_level: str = DEFAULT_LOG_LEVELS,
        files: dict[str, bytes | str] | None = None,
    ) -> None:
        self.name = name
        self.netns = netns
        self.workdir = Path(workdir).resolve()
        self.config = config
        self.listen = [listen] if isinstance(listen, str) else list(listen)
        self.kernel = kernel
        self.log_level = log_level
        self.files = files or {}
        self._sockdir: str | None = None
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    # paths
    @property
    def socket_path(self) -> str:
        """WORKDIR/pqike.sock, or a short /tmp directory if that is too long for AF_UNIX."""
        path = str(self.workdir / "pqike.sock")
        if len(os.fsencode(path)) <= 100:
            return path
        if self._sockdir is None:
            self._sockdir = tempfile.mkdtemp(prefix="pqike-sock-")
        return os.path.join(self._sockdir, "pqike.sock")

    @property
    def log_path(self) -> Path:
        return self.workdir / "pqike.log"

    @property
    def config_path(self) -> Path:
        if isinstance(self.config, os.PathLike):
            return Path(self.config)
        return self.workdir / "pqike.toml"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if isinstance(self.config, dict):
            self.config_path.write_text(_toml(self.config))
        elif isinstance(self.config, str):
            self.config_path.write_text(self.config)
        for rel, content in self.files.items():
            p = self.workdir / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content.encode() if isinstance(content, str) else content)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def argv(self) -> list[str]:
        argv = [PYTHON, "-m", "pqike", "daemon", "--config", str(self.config_path), "-F"]
        argv += ["--socket", self.socket_path, "--kernel", self.kernel]
        if self.log_level:
            argv += ["--log-level", self.log_level]
        for addr in self.listen:
            argv += ["--listen", addr]
        return ns_argv(self.netns, argv)

    # lifecycle
    def start(self, timeout: float = 20) -> PqikePeer:
        if self.running:
            raise RuntimeError(f"{self.name}: pqike already running")
        self._write_config()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        self.proc = spawn(self.argv(), self.log_path, env, cwd=REPO)
        RUNNING.add(self)
        wait_started(self, self._ready, timeout, "pqike daemon", self.tail, _NOT_YET)
        return self

    def _ready(self) -> bool:
        if not os.path.exists(self.socket_path):
            return False
        request(self.socket_path, Request(cmd="list-sas"), timeout=5)
        return True

    def stop(self, timeout: float = 5) -> int | None:
        """SIGTERM, then SIGKILL to the process group. Idempotent, never raises."""
        proc, self.proc = self.proc, None
        RUNNING.discard(self)
        if proc is None:
            return self.returncode
        stop_process(proc, timeout)
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)
        if self._sockdir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._sockdir)
        self.returncode = proc.returncode
        return self.returncode

    def __enter__(self) -> PqikePeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # control
    def cli(self, *args: str, timeout: float = 45) -> CliResult:
        """``python -m pqike ARGS --socket SOCK``; exit status and combined output."""
        argv = [PYTHON, "-m", "pqike", *args, "--socket", self.socket_path]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        try:
            r = subprocess.run(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                cwd=REPO,
                env=env,
            )
            return CliResult(r.returncode, r.stdout, list(args))
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
            return CliResult(-1, (out or "") + "\n[pqike cli timed out]", list(args))

    def _named(self, cmd: str, child: str | None, ike: str | None, timeout: float) -> CliResult:
        args = [cmd, "--timeout", str(timeout)]
        if child:
            args += ["--child", child]
        if ike:
            args += ["--ike", ike]
        return self.cli(*args, timeout=timeout + 20)

    def initiate(
        self, child: str | None = None, ike: str | None = None, timeout: float = 20
    ) -> CliResult:
        return self._named("initiate", child, ike, timeout)

    def terminate(
        self, child: str | None = None, ike: str | None = None, timeout: float = 10
    ) -> CliResult:
        return self._named("terminate", child, ike, timeout)

    def rekey(
        self, child: str | None = None, ike: str | None = None, timeout: float = 15
    ) -> CliResult:
        return self._named("rekey", child, ike, timeout)

    def list_sas(self, ike: str | None = None) -> list[IkeSaInfo]:
        r = request(self.socket_path, Request(cmd="list-sas", ike=ike), timeout=10)
        if not r.ok:
            raise RuntimeError(f"{self.name}: list-sas failed: {r.message}")
        return msgspec.convert(r.data or [], list[IkeSaInfo])

    def wait_sa(
        self, ike: str | None = None, state: str = "ESTABLISHED", timeout: float = 15
    ) -> IkeSaInfo:
        deadline = time.monotonic() + timeout
        while True:
            for sa in self.list_sas(ike):
                if sa.state == state:
                    return sa
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no IKE_SA in state {state}: {self.list_sas()}")
            time.sleep(0.1)

    def wait_for(self, predicate, timeout: float = 15, what: str = "condition") -> Any:
        """Poll list_sas() until predicate(sas) returns something truthy; return it."""
        deadline = time.monotonic() + timeout
        while True:
            sas = self.list_sas()
            if found := predicate(sas):
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {what} not reached: {sas}")
            time.sleep(0.1)

    def tail(self, n: int = 40) -> str:
        return f"--- {self.log_path}\n" + "\n".join(self.log_text().splitlines()[-n:])
