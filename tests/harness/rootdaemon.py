"""A daemon from a debootstrap root (strongSwan's charon, libreswan's pluto), one per network
namespace, with its own /run.

  nsenter --net=/run/netns/NS  unshare --mount --propagation private  sh -c
      'mount proc ROOT/proc; mount --bind /dev ROOT/dev; mount --bind WORKDIR ROOT/run;
       exec chroot ROOT DAEMON ARGS'

The mounts live only in the daemon's private mount namespace, so they disappear with the
process: nothing can leak into the host's mount table. WORKDIR (a host directory) appears as
/run inside the chroot, so pid files, control sockets, configuration and logs under /run are
per instance, and the host reads them directly in WORKDIR. Control tools (swanctl, whack) run
the same way, without the network namespace (a Unix socket is a file).

Subclasses say what to write before the start (``_write_config``), what to run
(``daemon_argv``) and when it is ready (``_ready``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .netns import NETNS_DIR, ns_argv

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the (test) process that started it dies,
    so a killed pytest can't leave daemons behind. (Kept across exec; note it fires when the
    *thread* that started the daemon exits, so start daemons from a long-lived thread.)"""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _Stoppable(Protocol):
    def stop(self) -> object: ...


# every daemon a test started and has not stopped: stopped at exit whatever happened
RUNNING: set[_Stoppable] = set()


@atexit.register
def _stop_all() -> None:
    for d in list(RUNNING):
        d.stop()


def spawn(
    argv: Sequence[str], output: Path, env: dict[str, str], cwd: Path | None = None
) -> subprocess.Popen:
    """Start a daemon in its own session (stop_process kills the group), stdout and stderr
    to ``output``, killed if the test process dies (_die_with_parent)."""
    with open(output, "wb") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


class _Started(Protocol):
    name: str
    proc: subprocess.Popen | None

    def stop(self) -> object: ...


def wait_started(
    daemon: _Started,
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    tail: Callable[[], str],
    not_yet: tuple[type[Exception], ...] = (OSError,),
) -> None:
    """Poll ready() until it is true. The daemon exiting, or not being ready in time, stops
    it and raises with tail() (its last output); ``not_yet`` exceptions mean "try again"."""
    deadline = time.monotonic() + timeout
    last_err: Exception | None = None
    while time.monotonic() < deadline:
        assert daemon.proc is not None
        if daemon.proc.poll() is not None:
            code = daemon.proc.returncode
            daemon.stop()
            raise RuntimeError(
                f"{daemon.name}: {what} exited with {code} during startup:\n{tail()}"
            )
        try:
            if ready():
                return
        except not_yet as e:
            last_err = e
        time.sleep(0.05)
    daemon.stop()
    raise TimeoutError(
        f"{daemon.name}: {what} did not answer in {timeout}s ({last_err}):\n{tail()}"
    )


def stop_process(proc: subprocess.Popen, timeout: float = 5) -> int | None:
    """SIGTERM, then SIGKILL to its process group (anything it spawned too). Never raises."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    return proc.returncode


@dataclass
class ToolResult:
    """Exit status and combined output of a control tool (swanctl, whack, ...)."""

    returncode: int
    output: str
    argv: list[str]

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class LogReader:
    """Reading a daemon's log file: ``name`` and ``log_path`` come from the class using it."""

    name: str

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def grep(self, pattern: str | re.Pattern[str]) -> list[re.Match[str]]:
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        return [m for line in self.log_text().splitlines() if (m := rx.search(line))]

    def wait_log(self, pattern: str, timeout: float = 15) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            if found := self.grep(pattern):
                return found[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {pattern!r} not in {self.log_path}")
            time.sleep(0.1)


class RootDaemon(LogReader):
    """One daemon chrooted into ``root`` in namespace ``netns``, WORKDIR as its /run."""

    run_dir = "/run"  # where WORKDIR appears to the daemon
    label = "daemon"  # for messages and WORKDIR/<label>.out (its stdout/stderr)

    def __init__(
        self, name: str, netns: str | None, workdir: str | os.PathLike, root: Path
    ) -> None:
        self.name = name
        self.netns = netns
        self.root = root
        self.workdir = Path(workdir).resolve()
        self.proc: subprocess.Popen | None = None

    # what subclasses provide
    def _write_config(self) -> None:
        raise NotImplementedError

    def daemon_argv(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        """True once the daemon answers; an OSError means "not yet" (it is reported if the
        start times out)."""
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

    @property
    def output_path(self) -> Path:
        """The daemon's own stdout/stderr."""
        return self.workdir / f"{self.label}.out"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _chroot_argv(self, argv: Sequence[str], proc_dev: bool) -> list[str]:
        """unshare a private mount namespace, mount what's needed and chroot into the root."""
        mounts = 'mount --bind "$W" "$R/run" || exit 97'
        if proc_dev:
            mounts = (
                'mount -t proc proc "$R/proc" || exit 97; '
                'mount --bind /dev "$R/dev" || exit 97; ' + mounts
            )
        script = f'{mounts}; exec chroot "$R" "$@"'
        return unshare_argv(script, {"R": str(self.root), "W": str(self.workdir)}, argv)

    def run_tool(
        self, argv: Sequence[str], timeout: float = 30, proc_dev: bool = False
    ) -> ToolResult:
        """Run a program of the root against this instance (its /run), outside the netns."""
        try:
            r = subprocess.run(
                self._chroot_argv(argv, proc_dev=proc_dev),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=self._env(),
                timeout=timeout,
            )
            return ToolResult(r.returncode, r.stdout, list(argv))
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
            return ToolResult(-1, (out or "") + f"\n[{argv[0]} timed out]", list(argv))

    # lifecycle
    def start(self, timeout: float = 30) -> RootDaemon:
        if self.running:
            raise RuntimeError(f"{self.name}: {self.label} already running")
        if self.netns is not None and not (NETNS_DIR / self.netns).exists():
            raise RuntimeError(f"{self.name}: no network namespace {self.netns!r}")
        self._write_config()
        argv = ns_argv(self.netns, self._chroot_argv(self.daemon_argv(), proc_dev=True))
        self.proc = spawn(argv, self.output_path, self._env())
        RUNNING.add(self)
        wait_started(self, self._ready, timeout, self.label, self._tail)
        return self

    def _tail(self, n: int = 30) -> str:
        parts = []
        for p in (self.output_path, self.log_path):
            with contextlib.suppress(OSError):
                lines = p.read_text(errors="replace").splitlines()[-n:]
                parts.append(f"--- {p.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def stop(self, timeout: float = 5) -> int | None:
        """Stop the daemon (stop_process). Idempotent, never raises.

        The mounts vanish with the daemon's private mount namespace."""
        proc, self.proc = self.proc, None
        RUNNING.discard(self)
        return None if proc is None else stop_process(proc, timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def unshare_argv(script: str, env: dict[str, str], argv: Sequence[str]) -> list[str]:
    """``sh -c SCRIPT sh ARGV...`` with ENV in a private mount namespace: mounts the script
    makes vanish with the process it execs."""
    sets = [f"{k}={v}" for k, v in env.items()]
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "env",
        *sets,
        "sh",
        "-c",
        script,
        "sh",
        *argv,
    ]


def leaked_mounts(root: Path) -> list[str]:
    """Host mount points below a root (should always be empty)."""
    root = root.resolve()
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            mp = line.split()[1]
            if mp == str(root) or mp.startswith(f"{root}/"):
                out.append(mp)
    return out


def pids_of(exe_suffix: str) -> list[int]:
    """PIDs of processes (any namespace) whose executable ends with ``exe_suffix``."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{d}/exe").endswith(exe_suffix):
                    pids.append(int(d))
    return pids
