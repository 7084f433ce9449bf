"""``pqike``: the daemon and a swanctl-like control tool.

    pqike daemon --config configs/carol --foreground
    pqike initiate --child net
    pqike list-sas
    pqike list-algs

Client commands talk to the daemon over its control socket (``--socket`` or
``$PQIKE_SOCKET``). Errors end as one ``pqike: ...`` line on stderr and a non-zero exit:
2 for "cannot even try" (daemon unreachable, bad configuration), 1 for "tried and failed".
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import platform
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click
import msgspec

from pqike import __version__
from pqike.config import ConfigError, describe_connections, load_config
from pqike.config import Daemon as DaemonSettings
from pqike.daemon.control import (
    DaemonUnreachable,
    EventLine,
    ProtocolError,
    Request,
    Result,
    request,
)
from pqike.events import ChildSaInfo, EventKind, IkeSaInfo, PoolInfo
from pqike.vici import JSON_VERSION, conns_document, pools_document, sas_document

__all__ = [
    "DEFAULT_SOCKET",
    "Failure",
    "algorithms",
    "cli",
    "environment",
    "format_algorithms",
    "format_sas",
    "main",
    "parse_log_levels",
]

DEFAULT_SOCKET = DaemonSettings().control_socket
DEFAULT_TIMEOUT = 30.0
_LAZY = {
    "pki": ("pqike.pki", "pki"),
    "bench": ("pqike.bench.cli", "bench"),
    "plan": ("pqike.bench.cli", "plan"),
    "demo": ("pqike.demo", "demo"),
    "probe": ("pqike.probe.cli", "probe"),
}


class Failure(click.ClickException):
    """One line for the user, no traceback; exit status 2 = could not even try."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"pqike: {self.format_message()}", err=True)


class _Group(click.Group):
    """Lazy subcommands (pki, demo) and no traceback for anything a command raises."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx)) | set(_LAZY)
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        if name in _LAZY:
            module, attr = _LAZY[name]
            try:
                return getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError):
                return None
        return None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ConfigError as e:
            raise Failure(str(e), 2) from None
        except DaemonUnreachable as e:
            raise _unreachable(e) from None
        except BrokenPipeError:
            # the reader went away (`pqike list-algs | head`): stop quietly, as cat does;
            # stdout now points at nothing so the interpreter's final flush cannot fail
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(141) from None  # 128 + SIGPIPE, what a shell reports
        except Exception as e:
            if os.environ.get("PQIKE_DEBUG"):
                raise
            raise Failure(
                f"internal error: {type(e).__name__}: {e} (PQIKE_DEBUG=1 shows the traceback)", 1
            ) from None


def _unreachable(e: DaemonUnreachable) -> Failure:
    if e.reason == "permission denied":
        return Failure(f"cannot reach the daemon at {e.path}: permission denied (run as root?)", 2)
    return Failure(f"cannot reach the daemon at {e.path} (is `pqike daemon` running?)", 2)


def _socket_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--socket",
        "socket_path",
        envvar="PQIKE_SOCKET",
        default=DEFAULT_SOCKET,
        show_default=True,
        metavar="PATH",
        help="control socket of the daemon ($PQIKE_SOCKET)",
    )(f)


def _json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="machine-readable output")(f)


def _timeout_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_TIMEOUT,
        show_default=True,
        metavar="S",
        help="seconds to wait for the outcome",
    )(f)


def _call(socket_path: str, req: Request, *, stream: bool = False, timeout: float = 60.0) -> Result:
    on_log = (lambda line: click.echo(line)) if stream else None
    try:
        return request(socket_path, req, on_log, timeout=timeout)
    except DaemonUnreachable as e:
        raise _unreachable(e) from None
    except ProtocolError as e:
        raise Failure(str(e), 1) from None


def _checked(result: Result) -> Result:
    if not result.ok:
        raise Failure(result.message, 1)
    return result


def _finish(result: Result) -> NoReturn:
    if result.ok:
        click.echo(result.message)
        sys.exit(0)
    click.echo(result.message, err=True)
    sys.exit(1)


def _echo_json(data: Any) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(data), indent=2).decode())


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(format_environment(environment()), nl=False)
        ctx.exit()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show pqike's version and those of cryptography, liboqs and pqcrypto, and exit.",
)
def cli() -> None:
    """pqike: post-quantum hybrid IKEv2 (RFC 7296, 9242, 9370, 7383) daemon and control tool."""
    from kem.registry import providers_env_problem

    problem = providers_env_problem()
    if problem:
        raise Failure(problem, 2)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="pqike")


# --- daemon ----------------------------------------------------------------------------------


def parse_log_levels(text: str) -> tuple[dict[str, int], int | None]:
    """``"enc=2,ike=1"`` -> ({"ENC": 2, "IKE": 1}, None); ``"2"``/``"default=2"``: default."""
    from pqike.log import Subsystem

    levels: dict[str, int] = {}
    default = None
    names = {s.value for s in Subsystem}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            key, value = "default", key
        key = key.strip().upper()
        try:
            level = int(value)
        except ValueError:
            raise click.BadParameter(f"'{item}': level must be a number -1..4") from None
        if not -1 <= level <= 4:
            raise click.BadParameter(f"'{item}': level must be -1..4")
        if key == "DEFAULT":
            default = level
        elif key in names:
            levels[key] = level
        else:
            raise click.BadParameter(
                f"unknown subsystem '{key.lower()}' (known: "
                f"{', '.join(sorted(n.lower() for n in names))})"
            )
    return levels, default


@cli.command()
@click.option(
    "--config",
    "config_dir",
    required=True,
    envvar="PQIKE_CONFIG",
    metavar="DIR",
    type=click.Path(),
    help="configuration directory (pqike.toml) or file",
)
@click.option("--foreground", "-F", is_flag=True, help="stay in the foreground, log to stderr")
@click.option(
    "--log-level",
    "log_level",
    metavar="LEVELS",
    help="per-subsystem levels like enc=2,ike=1 (a bare number sets the default)",
)
@click.option(
    "--kernel",
    type=click.Choice(["auto", "xfrm", "userspace", "none"]),
    help="kernel backend (default: daemon.kernel of the config)",
)
@click.option(
    "--socket",
    "socket_path",
    envvar="PQIKE_SOCKET",
    metavar="PATH",
    help="control socket ($PQIKE_SOCKET; default: daemon.control_socket of the config)",
)
@click.option(
    "--listen",
    multiple=True,
    metavar="ADDR",
    help="local address to bind (repeatable; default: all IPv4 and IPv6)",
)
def daemon(
    config_dir: str,
    foreground: bool,
    log_level: str | None,
    kernel: str | None,
    socket_path: str | None,
    listen: tuple[str, ...],
) -> None:
    """Run the IKE daemon."""
    from pqike import log as pqlog
    from pqike.config.workers import WORKER_KERNELS
    from pqike.daemon.server import Daemon
    from pqike.daemon.workers import LogSpec, Supervisor, resolve_workers
    from pqike.kernel import select_backend
    from pqike.kernel.base import KernelError

    config_dir = os.path.abspath(config_dir)  # the daemon chdirs to / in the background
    config = load_config(config_dir)
    settings = config.daemon.log
    levels = settings.levels()
    default = settings.default
    if log_level:
        extra, new_default = parse_log_levels(log_level)
        levels.update(extra)
        if new_default is not None:
            default = new_default
    if not foreground:
        _daemonize(settings.file)
    try:
        handler = None if foreground or settings.file else _syslog(settings.syslog)
        pqlog.configure(levels, default, stream=sys.stderr, filename=settings.file, handler=handler)
    except OSError as e:  # created 0600, never through a symbolic link (pqike.files)
        _startup_failed(f"daemon.log.file {e.filename or settings.file}: {e.strerror}", foreground)
    workers = resolve_workers(config.daemon.workers)
    server: Daemon | Supervisor
    if workers > 1 and kernel not in (None, *WORKER_KERNELS):  # the config's is checked at load
        _startup_failed(f"--kernel {kernel} is not supported with {workers} workers", foreground)
    if workers > 1:  # each worker selects its own kernel backend
        spec = LogSpec(levels, default, settings.file, settings.syslog if handler else None)
        server = Supervisor(
            config,
            config_path=config_dir,
            count=workers,
            kernel=kernel or config.daemon.kernel,
            socket_path=socket_path,
            listen=listen,
            log=spec,
        )
    else:
        try:
            backend = select_backend(kernel or config.daemon.kernel)
        except KernelError as e:
            _startup_failed(str(e), foreground)
        server = Daemon(
            config, config_path=config_dir, kernel=backend, socket_path=socket_path, listen=listen
        )
    try:
        asyncio.run(server.run(ready=None if foreground else _report_ready))
    except OSError as e:
        message = e.strerror or str(e)
        if e.filename:
            message = f"{e.filename}: {message}"
        _startup_failed(message, foreground)
    except KeyboardInterrupt:
        pass
    if not foreground:
        os._exit(0)


_ready_fd: int | None = None
_ready_note = ""  # where the background daemon logs, for the parent's message
SYSLOG_SOCKET = "/dev/log"


def _syslog(facility: str) -> logging.Handler | None:
    """The background daemon without daemon.log.file logs to syslog (charon does too);
    without a syslog socket it says so and logs nowhere."""
    from pqike import log as pqlog

    global _ready_note
    try:
        handler = pqlog.syslog_handler(facility, SYSLOG_SOCKET)
    except OSError as e:
        _ready_note = (
            f"no syslog at {SYSLOG_SOCKET} ({e.strerror or e}): set daemon.log.file "
            "or use --foreground to see the log"
        )
        return None
    _ready_note = f"logging to syslog (facility {facility})"
    return handler


def _daemonize(log_file: str | None) -> None:
    """Fork into the background; the parent exits when the daemon is up (or failed)."""
    global _ready_fd, _ready_note
    if log_file:
        _ready_note = f"logging to {log_file}"
    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            status = pipe.read().decode(errors="replace").strip()
        if status.startswith("ok "):
            pid, _, where = status[3:].partition(" ")
            click.echo(f"pqike: daemon started (pid {pid}), {where}")
            sys.exit(0)
        raise Failure(status or "the daemon exited during startup", 2)
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    _ready_fd = write_fd


def _report_ready() -> None:
    global _ready_fd
    if _ready_fd is not None:
        note = _ready_note or "logging to daemon.log.file"
        os.write(_ready_fd, f"ok {os.getpid()} {note}\n".encode())
        os.close(_ready_fd)
        _ready_fd = None


def _startup_failed(message: str, foreground: bool) -> NoReturn:
    global _ready_fd
    if not foreground and _ready_fd is not None:
        os.write(_ready_fd, message.encode())
        os.close(_ready_fd)
        os._exit(2)
    raise Failure(message, 2)


# --- SA commands -----------------------------------------------------------------------------


@cli.command()
@click.option("--child", help="CHILD_SA configuration to establish")
@click.option("--ike", help="IKE_SA configuration (needed if the child name is ambiguous)")
@_timeout_option
@_socket_option
def initiate(child: str | None, ike: str | None, timeout: float, socket_path: str) -> None:
    """Establish an IKE_SA and CHILD_SA, streaming the daemon's log (exit 0 when up)."""
    if child is None and ike is None:
        raise click.UsageError("initiate needs --child or --ike")
    req = Request(cmd="initiate", child=child, ike=ike, timeout=timeout)
    _finish(_call(socket_path, req, stream=True, timeout=timeout + 15))


@cli.command()
@click.option("--ike", help="IKE_SA configuration name")
@click.option("--child", help="CHILD_SA name (only this CHILD_SA)")
@click.option("--ike-id", type=int, help="IKE_SA unique id (#n in list-sas)")
@click.option("--child-id", type=int, help="CHILD_SA unique id (#n of a CHILD_SA in list-sas)")
@click.option(
    "--force",
    is_flag=True,
    help="send the DELETE and remove the IKE_SA without waiting for the peer's answer",
)
@_timeout_option
@_socket_option
def terminate(
    ike: str | None,
    child: str | None,
    ike_id: int | None,
    child_id: int | None,
    force: bool,
    timeout: float,
    socket_path: str,
) -> None:
    """Delete IKE_SAs or CHILD_SAs, streaming the daemon's log (like swanctl --terminate)."""
    if ike is None and child is None and ike_id is None and child_id is None:
        raise click.UsageError("terminate needs --ike, --child, --ike-id or --child-id")
    if force and (child is not None or child_id is not None):
        raise click.UsageError("--force applies to IKE_SAs (--ike, --ike-id), not to CHILD_SAs")
    req = Request(
        cmd="terminate",
        ike=ike,
        child=child,
        ike_id=ike_id,
        child_id=child_id,
        force=force,
        timeout=timeout,
    )
    _finish(_call(socket_path, req, stream=True, timeout=timeout + 15))


@cli.command()
@click.option("--ike", help="IKE_SA configuration name")
@click.option("--child", help="CHILD_SA name")
@click.option(
    "--reauth", is_flag=True, help="reauthenticate the IKE_SA (make-before-break) instead"
)
@_timeout_option
@_socket_option
def rekey(
    ike: str | None, child: str | None, reauth: bool, timeout: float, socket_path: str
) -> None:
    """Rekey an IKE_SA or CHILD_SA, streaming the daemon's log."""
    if ike is None and child is None:
        raise click.UsageError("rekey needs --ike or --child")
    if reauth and (ike is None or child is not None):
        raise click.UsageError("rekey --reauth needs --ike (and no --child)")
    req = Request(cmd="rekey", ike=ike, child=child, timeout=timeout, reauth=reauth)
    _finish(_call(socket_path, req, stream=True, timeout=timeout + 15))


@cli.command()
@click.option("--child", required=True, help="CHILD_SA configuration to trap traffic for")
@click.option("--ike", help="IKE_SA configuration (needed if the child name is ambiguous)")
@_socket_option
def install(child: str, ike: str | None, socket_path: str) -> None:
    """Install a trap policy: the first packet it catches starts the CHILD_SA
    (swanctl --install)."""
    _finish(_call(socket_path, Request(cmd="install", child=child, ike=ike)))


@cli.command()
@click.option("--child", required=True, help="CHILD_SA configuration whose trap to remove")
@click.option("--ike", help="IKE_SA configuration (needed if the child name is ambiguous)")
@_socket_option
def uninstall(child: str, ike: str | None, socket_path: str) -> None:
    """Remove a trap policy (swanctl --uninstall)."""
    _finish(_call(socket_path, Request(cmd="uninstall", child=child, ike=ike)))


def format_pols(pols: list[dict[str, Any]]) -> str:
    """Like swanctl --list-pols: name, mode and reqid, then the selectors."""
    lines = []
    for p in pols:
        lines.append(f"{p['ike']}/{p['name']}, {p['mode']}, reqid {p['reqid']}")
        lines.append(f"  local:  {' '.join(p['local_ts'])}")
        lines.append(f"  remote: {' '.join(p['remote_ts'])}")
    return "".join(line + "\n" for line in lines)


@cli.command("list-pols")
@click.option("--child", help="only the trap of this CHILD_SA configuration")
@_json_option
@_socket_option
def list_pols(child: str | None, as_json: bool, socket_path: str) -> None:
    """List the installed trap policies (like swanctl --list-pols)."""
    result = _checked(_call(socket_path, Request(cmd="list-pols", child=child)))
    pols = [p for p in result.data or [] if child is None or p["name"] == child]
    if as_json:
        _echo_json(pols)
    else:
        click.echo(format_pols(pols), nl=False)


# --- list-sas --------------------------------------------------------------------------------


def _secs(value: float) -> str:
    return f"{int(value)}s"


def _display_proposal(proposal: str) -> str:
    """``IKE:AES_CBC_256/HMAC_SHA2_256_128/...`` as swanctl shows it: ``AES_CBC-256/...``."""
    _, _, algs = proposal.rpartition(":")
    parts = [p for p in algs.split("/") if p and p != "NO_EXT_SEQ"]
    parts = ["ESN" if p == "EXT_SEQ" else p for p in parts]
    if parts:
        head, sep, bits = parts[0].rpartition("_")
        if (
            sep
            and bits in ("128", "192", "256")
            and not head.startswith(("HMAC_", "PRF_", "AES_XCBC", "AES_CMAC"))
        ):
            parts[0] = f"{head}-{bits}"
    return "/".join(parts)


def _host_port(text: str) -> str:
    return text if text.endswith("]") else f"{text}[?]"


def _format_child(c: ChildSaInfo) -> list[str]:
    mode = c.mode.upper() + ("-in-UDP" if c.encap else "")
    algs = _display_proposal(c.proposal)
    lines = [f"  {c.name}: #{c.unique_id}, reqid {c.reqid}, {c.state}, {mode}, {c.protocol}:{algs}"]
    line = f"    installed {_secs(c.installed)} ago"
    if c.rekey_in is not None:
        line += f", rekeying in {_secs(c.rekey_in)}"
    if c.expires_in is not None:
        line += f", expires in {_secs(c.expires_in)}"
    lines.append(line)
    lines.append(f"    in  {c.spi_in}, {c.bytes_in:6d} bytes, {c.packets_in:5d} packets")
    lines.append(f"    out {c.spi_out}, {c.bytes_out:6d} bytes, {c.packets_out:5d} packets")
    lines.append(f"    local  {' '.join(c.local_ts)}")
    lines.append(f"    remote {' '.join(c.remote_ts)}")
    if c.last_error:
        lines.append(f"    last rekey failed: {c.last_error}")
    return lines


def format_sas(sas: list[IkeSaInfo]) -> str:
    """IKE_SAs as ``swanctl --list-sas`` prints them (strongSwan list_sas.c)."""
    lines: list[str] = []
    for sa in sas:
        mark_i, mark_r = ("*", "") if sa.initiator else ("", "*")
        lines.append(
            f"{sa.name}: #{sa.unique_id}, {sa.state}, IKEv{sa.version}, "
            f"{sa.spi_i}_i{mark_i} {sa.spi_r}_r{mark_r}"
        )
        line = f"  local  '{sa.local_id}' @ {_host_port(sa.local)}"
        if sa.local_vips:
            line += f" [{' '.join(sa.local_vips)}]"
        lines.append(line)
        line = f"  remote '{sa.remote_id}' @ {_host_port(sa.remote)}"
        if sa.remote_vips:
            line += f" [{' '.join(sa.remote_vips)}]"
        lines.append(line)
        if sa.proposal:
            # list_sas.c appends "/PPK" when a PPK was used
            lines.append(f"  {_display_proposal(sa.proposal)}{'/PPK' if sa.ppk else ''}")
        if sa.state in ("ESTABLISHED", "REKEYING", "REKEYED"):
            line = f"  established {_secs(sa.established)} ago"
            if sa.rekey_in is not None:
                line += f", rekeying in {_secs(sa.rekey_in)}"
            lines.append(line)
        for child in sa.children:
            lines += _format_child(child)
    return "\n".join(lines) + ("\n" if lines else "")


@cli.command("list-sas")
@click.option("--ike", help="only IKE_SAs of this configuration")
@click.option("--ike-id", type=int, help="only the IKE_SA with this unique id")
@_json_option
@_socket_option
def list_sas(ike: str | None, ike_id: int | None, as_json: bool, socket_path: str) -> None:
    """List the IKE_SAs and CHILD_SAs (like swanctl --list-sas)."""
    result = _checked(_call(socket_path, Request(cmd="list-sas", ike=ike, ike_id=ike_id)))
    sas = msgspec.convert(result.data or [], list[IkeSaInfo])
    if as_json:
        _echo_json(sas_document(sas))
    else:
        click.echo(format_sas(sas), nl=False)


# --- list-pools / counters ------------------------------------------------------------------


def format_pools(pools: list[PoolInfo]) -> str:
    """As ``swanctl --list-pools [--leases]`` prints them (swanctl list_pools.c)."""
    lines = []
    for p in pools:
        lines.append(f"{p.name:<20} {p.base:<30} {f'{p.online} / {p.offline} / {p.size}':>16}")
        for lease in p.leases:
            lines.append(f"  {lease.address:<30} {lease.status:<8} '{lease.identity}'")
    return "\n".join(lines) + ("\n" if lines else "")


@cli.command("list-pools")
@click.option("--leases", is_flag=True, help="list the leases of each pool")
@click.option("--name", help="only this pool")
@_json_option
@_socket_option
def list_pools(leases: bool, name: str | None, as_json: bool, socket_path: str) -> None:
    """List the virtual IP pools: base, online / offline leases / size (swanctl --list-pools)."""
    req = Request(cmd="list-pools", name=name, leases=leases)
    pools = msgspec.convert(_checked(_call(socket_path, req)).data or [], list[PoolInfo])
    if as_json:
        _echo_json(pools_document(pools, leases))
    else:
        click.echo(format_pools(pools), nl=False)


@cli.command()
@click.option("--reset", is_flag=True, help="reset the counters (after showing them)")
@_json_option
@_socket_option
def counters(reset: bool, as_json: bool, socket_path: str) -> None:
    """IKE message counters per exchange type, in and out (swanctl --counters)."""
    result = _checked(_call(socket_path, Request(cmd="counters", reset=reset)))
    values: dict[str, int] = result.data or {}
    if as_json:
        _echo_json({"version": JSON_VERSION, "counters": {"global": values}})
        return
    click.echo("global:")
    for key, value in values.items():
        click.echo(f"  {key:<22}: {value}")
    if result.message:
        click.echo(result.message)


# --- log / monitor-sa ------------------------------------------------------------------------


def _stream_forever(socket_path: str, req: Request, **handlers: Any) -> None:
    """Print what the daemon streams until Ctrl-C or the daemon stops."""
    try:
        result = request(socket_path, req, timeout=None, **handlers)
    except KeyboardInterrupt:
        sys.exit(0)
    except DaemonUnreachable as e:
        raise _unreachable(e) from None
    except ProtocolError as e:
        raise Failure(str(e), 1) from None
    click.echo(result.message, err=True)


@cli.command("log")
@_socket_option
def log_stream(socket_path: str) -> None:
    """Follow the daemon's log as it is written (swanctl --log); Ctrl-C ends it."""
    _stream_forever(socket_path, Request(cmd="log"), on_log=click.echo)


_EVENT_NAMES = {
    EventKind.IKE_ESTABLISHED: ("ike-updown", True),
    EventKind.IKE_FAILED: ("ike-updown", False),
    EventKind.IKE_DELETED: ("ike-updown", False),
    EventKind.IKE_REKEYED: ("ike-rekey", None),
    EventKind.CHILD_ESTABLISHED: ("child-updown", True),
    EventKind.CHILD_FAILED: ("child-updown", False),
    EventKind.CHILD_DELETED: ("child-updown", False),
    EventKind.CHILD_REKEYED: ("child-rekey", None),
    EventKind.REKEY_FAILED: ("rekey-failed", None),  # pqike: vici has no such event
}


def monitor_document(line: EventLine) -> dict[str, Any]:
    """One monitor-sa event as JSON: vici's event name and ``up``, what happened, and the
    IKE_SA as list-sas shows it (absent once it is gone)."""
    e = line.event
    name, up = _EVENT_NAMES.get(e.kind, (str(e.kind), None))
    doc: dict[str, Any] = {"version": JSON_VERSION, "event": name}
    if up is not None:
        doc["up"] = up
    doc["ike"] = e.ike
    doc["ike-id"] = e.ike_id
    if e.child is not None:
        doc["child"] = e.child
        doc["child-id"] = e.child_id
    if e.message:
        doc["message"] = e.message
    doc["ike-sas"] = sas_document(line.sas)["ike-sas"]
    return doc


def format_monitor(line: EventLine) -> str:
    doc = monitor_document(line)
    what = line.event.ike + f"[{line.event.ike_id}]"
    if line.event.child is not None:
        what = f"{line.event.child}{{{line.event.child_id}}} of {what}"
    head = f"{doc['event']} event: {what}"
    if "up" in doc:
        head += " up" if doc["up"] else " down"
    if line.event.message:
        head += f" ({line.event.message})"
    return head + "\n" + format_sas(line.sas)


@cli.command("monitor-sa")
@_json_option
@_socket_option
def monitor_sa(as_json: bool, socket_path: str) -> None:
    """Show IKE_SA and CHILD_SA events as they happen (swanctl --monitor-sa); one JSON
    object a line with --json; Ctrl-C ends it."""

    def show(line: EventLine) -> None:
        if as_json:
            click.echo(msgspec.json.encode(monitor_document(line)).decode())
        else:
            click.echo(format_monitor(line), nl=False)

    _stream_forever(socket_path, Request(cmd="monitor-sa"), on_event=show)


# --- list-conns / list-certs -----------------------------------------------------------------


@cli.command("list-conns")
@click.option(
    "--config",
    "config_dir",
    type=click.Path(),
    metavar="DIR",
    help="read this configuration instead of asking the daemon",
)
@click.option("--ike", help="only this connection")
@_json_option
@_socket_option
def list_conns(config_dir: str | None, ike: str | None, as_json: bool, socket_path: str) -> None:
    """List the loaded connections (like swanctl --list-conns)."""
    if config_dir is not None:
        config = load_config(config_dir, require_files=False)  # settings only, pki may not have run
        conns = config.connections
        if ike is not None:
            if ike not in conns:
                raise Failure(f"no connection named '{ike}' in {config_dir}", 1)
            conns = {ike: conns[ike]}
        data = {
            "text": describe_connections(msgspec.structs.replace(config, connections=conns)),
            "connections": msgspec.to_builtins(conns),
        }
    else:
        data = _checked(_call(socket_path, Request(cmd="list-conns", ike=ike))).data or {}
    if as_json:
        _echo_json(conns_document(data.get("connections", {})))
    else:
        click.echo(data.get("text", ""), nl=False)


@cli.command("list-certs")
@click.option(
    "--config",
    "config_dir",
    type=click.Path(),
    metavar="DIR",
    help="read this configuration's certificates instead of asking the daemon",
)
@_json_option
@_socket_option
def list_certs(config_dir: str | None, as_json: bool, socket_path: str) -> None:
    """List the certificates of the configuration (like swanctl --list-certs)."""
    if config_dir is not None:
        from pqike.daemon.certs import list_certificates

        # unusable files are listed as problems, not refused
        data = msgspec.to_builtins(list_certificates(load_config(config_dir, require_files=False)))
    else:
        data = _checked(_call(socket_path, Request(cmd="list-certs"))).data or {}
    if as_json:
        _echo_json({"certs": data.get("certs", []), "problems": data.get("problems", [])})
        return
    click.echo(data.get("text", ""), nl=False)
    for problem in data.get("problems", []):
        click.echo(f"warning: {problem}", err=True)


# --- list-algs -------------------------------------------------------------------------------


def liboqs_info() -> dict[str, Any]:
    """The liboqs pqike uses (version, library, liboqs-python's version), or why there is none."""
    from kem.providers import oqs_loader

    status = oqs_loader.load()
    return {
        "available": status.module is not None,
        "version": status.version or None,
        "library": status.library or None,
        "python_version": status.python_version or None,
        "unavailable_reason": status.reason,
        "notes": list(status.notes),
    }


def _liboqs_text(info: dict[str, Any]) -> str:
    if not info["available"]:
        return f"liboqs unavailable: {info['unavailable_reason']}"
    text = f"liboqs {info['version']} at {info['library']} (liboqs-python {info['python_version']})"
    return "; ".join([text, *info["notes"]])


def algorithms() -> dict[str, Any]:
    """Every KE method, ENCR/INTEG/PRF transform and signature scheme pqike knows, and the
    liboqs in use."""
    from kem import registry
    from pqike.crypto.algorithms import UnsupportedTransform, encr_spec, integ_spec, prf_spec
    from pqike.proposal.model import algorithm_name
    from pqike.wire.iana import EncrId, IntegId, PrfId, TransformType

    out: dict[str, Any] = {"liboqs": liboqs_info(), "ke": [m.describe() for m in registry.all()]}
    encr = []
    for e in EncrId:
        try:
            spec = encr_spec(e)
        except UnsupportedTransform:
            continue
        encr.append(
            {
                "id": int(e),
                "name": algorithm_name(TransformType.ENCR, e),
                "key_bits": list(spec.key_bits),
                "aead": spec.is_aead,
                "icv_len": spec.icv_len,
                "ike": spec.sk_capable,
                "esp": True,
            }
        )
    integ = []
    for i in IntegId:
        try:
            ispec = integ_spec(i)
        except UnsupportedTransform:
            continue
        integ.append(
            {
                "id": int(i),
                "name": algorithm_name(TransformType.INTEG, i),
                "key_len": ispec.key_len,
                "icv_len": ispec.icv_len,
            }
        )
    prf = []
    for p in PrfId:
        try:
            pspec = prf_spec(p)
        except UnsupportedTransform:
            continue
        prf.append(
            {
                "id": int(p),
                "name": algorithm_name(TransformType.PRF, p),
                "key_len": pspec.key_len,
                "out_len": pspec.out_len,
            }
        )
    out.update(encryption=encr, integrity=integ, prf=prf, signature=_signature_schemes())
    return out


def _signature_schemes() -> list[dict[str, Any]]:
    try:
        from pqike.auth.keys import FALCON_OIDS
        from pqike.auth.oqs_support import liboqs_unavailable_reason
        from pqike.auth.schemes import SCHEMES
    except ImportError:
        return []
    falcon_reason: str | None = None
    falcon_checked = False
    rows = []
    for scheme in SCHEMES.values():
        reason = None
        if scheme.key_type in FALCON_OIDS:
            if not falcon_checked:
                falcon_reason = liboqs_unavailable_reason()
                falcon_checked = True
            reason = f"Falcon needs liboqs: {falcon_reason}" if falcon_reason else None
        rows.append(
            {
                "name": scheme.log_name,
                "key_type": str(scheme.key_type),
                "hash": scheme.hash_algorithm.name,
                "available": reason is None,
                "unavailable_reason": reason,
            }
        )
    return rows


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    lines = []
    for row in (head, *rows):
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)]
        lines.append((indent + "  ".join([*cells, row[-1]])).rstrip())
    return lines


def format_algorithms(algs: dict[str, Any]) -> str:
    lines = [_liboqs_text(algs["liboqs"])] if "liboqs" in algs else []
    lines.append("key exchange methods:")
    rows = []
    for r in algs["ke"]:
        provider = f"{r['provider']} {r['provider_version']}" if r["provider"] else "-"
        status = "available" if r["available"] else f"unavailable: {r['unavailable_reason']}"
        sizes = [
            str(r[k]) if r[k] is not None else "-"
            for k in ("public_value", "responder_value", "shared_secret")
        ]
        rows.append(
            (
                str(r["id"]),
                r["keyword"],
                r["name"],
                r["kind"],
                str(r["nist_level"]) if r["nist_level"] else "-",
                *sizes,
                provider,
                status,
            )
        )
    lines += _table(
        (
            "ID",
            "keyword",
            "strongSwan name",
            "kind",
            "NIST",
            "KEi",
            "KEr",
            "secret",
            "provider",
            "status",
        ),
        rows,
    )
    lines.append("encryption:")
    lines += _table(
        ("ID", "name", "key bits", "kind", "use"),
        [
            (
                str(e["id"]),
                e["name"],
                "/".join(map(str, e["key_bits"])) or "-",
                f"AEAD, ICV {e['icv_len']}" if e["aead"] else "-",
                "IKE, ESP" if e["ike"] else "ESP",
            )
            for e in algs["encryption"]
        ],
    )
    lines.append("integrity:")
    lines += _table(
        ("ID", "name", "key", "ICV"),
        [
            (str(i["id"]), i["name"], str(i["key_len"]), str(i["icv_len"]))
            for i in algs["integrity"]
        ],
    )
    lines.append("prf:")
    lines += _table(
        ("ID", "name", "key", "output"),
        [(str(p["id"]), p["name"], str(p["key_len"]), str(p["out_len"])) for p in algs["prf"]],
    )
    if algs.get("signature"):
        lines.append("signature schemes:")
        lines += _table(
            ("name", "key type", "hash", "status"),
            [
                (
                    s["name"],
                    s["key_type"],
                    s["hash"],
                    "available" if s["available"] else f"unavailable: {s['unavailable_reason']}",
                )
                for s in algs["signature"]
            ],
        )
    return "\n".join(lines) + "\n"


@cli.command("list-algs")
@_json_option
def list_algs(as_json: bool) -> None:
    """List the key exchange methods, transforms and signature schemes (no daemon needed)."""
    algs = algorithms()
    if as_json:
        _echo_json(algs)
    else:
        click.echo(format_algorithms(algs), nl=False)


# --- reload / stats / version ----------------------------------------------------------------


def _reload(socket_path: str) -> None:
    result = _checked(_call(socket_path, Request(cmd="reload")))
    click.echo(result.message)


@cli.command()
@_socket_option
def reload(socket_path: str) -> None:
    """Reload the daemon's configuration (a bad file changes nothing)."""
    _reload(socket_path)


@cli.command("load-all")
@_socket_option
def load_all(socket_path: str) -> None:
    """Same as reload (swanctl --load-all)."""
    _reload(socket_path)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size} {unit}s"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


@cli.command()
@_json_option
@_socket_option
def stats(as_json: bool, socket_path: str) -> None:
    """Daemon statistics (like swanctl --stats)."""
    data = _checked(_call(socket_path, Request(cmd="stats"))).data or {}
    if as_json:
        _echo_json(data)
        return
    states = ", ".join(f"{n} {s}" for s, n in sorted(data.get("ike_sa_states", {}).items()))
    packets = data.get("packets", {})
    click.echo(
        f"uptime: {_duration(data.get('uptime', 0))}, pid {data.get('pid')}, "
        f"pqike {data.get('version')}"
    )
    click.echo(f"config: {data.get('config')}, {data.get('connections')} connections")
    click.echo(f"kernel backend: {data.get('kernel')}")
    click.echo(f"listening: {', '.join(data.get('listening', []))}")
    click.echo(
        f"IKE_SAs: {data.get('ike_sas')} total"
        + (f" ({states})" if states else "")
        + f", {data.get('child_sas')} CHILD_SAs"
    )
    click.echo("packets: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in packets.items()))


def environment() -> dict[str, Any]:
    """pqike's version and those of what it runs on (Python, cryptography, liboqs, pqcrypto)."""
    from kem.providers import pyca

    crypto = pyca.provider_info()
    try:
        pqcrypto: str | None = importlib.metadata.version("pqcrypto")
    except importlib.metadata.PackageNotFoundError:
        pqcrypto = None
    uname = platform.uname()
    return {
        "pqike": __version__,
        "python": platform.python_version(),
        "system": f"{uname.system} {uname.release} {uname.machine}",
        "cryptography": crypto.version,
        "openssl": crypto.detail or None,
        "liboqs": liboqs_info(),
        "pqcrypto": pqcrypto,
    }


def format_environment(env: dict[str, Any]) -> str:
    openssl = f" ({env['openssl']})" if env["openssl"] else ""
    pqcrypto = f"pqcrypto {env['pqcrypto']}" if env["pqcrypto"] else "pqcrypto not installed"
    return (
        f"pqike {env['pqike']}\n"
        f"Python {env['python']}, cryptography {env['cryptography']}{openssl}, {env['system']}\n"
        f"{_liboqs_text(env['liboqs'])}\n"
        f"{pqcrypto}\n"
    )


@cli.command()
@_json_option
def version(as_json: bool) -> None:
    """Show the pqike version and its environment (cryptography, liboqs, pqcrypto)."""
    env = environment()
    if as_json:
        _echo_json(env)
    else:
        click.echo(format_environment(env), nl=False)


@cli.command("import-swanctl")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="write pqike.toml there and copy the x509/, x509ca/ and private/ files it uses "
    "(default: print the TOML with absolute paths)",
)
@click.option("--force", is_flag=True, help="overwrite an existing pqike.toml in --out")
def import_swanctl(file: str, out_dir: str | None, force: bool) -> None:
    """Convert a swanctl.conf (and its credential directories) into pqike's configuration.

    Every option that could not be carried over is reported with its file, line, key and
    why; the result is then loaded as the daemon would, and its errors reported."""
    from pqike.config.swanctl_import import SwanctlSyntaxError, write_imported

    try:
        result = write_imported(file, out_dir, force=force)
    except (SwanctlSyntaxError, FileExistsError) as e:
        raise click.ClickException(str(e)) from None
    if out_dir is None:
        click.echo(result.toml, nl=False)
    for d in result.dropped:
        click.echo(f"not carried over: {d}", err=True)
    if result.error is not None:
        raise click.ClickException(f"the converted configuration does not load:\n{result.error}")
    if out_dir is not None:
        click.echo(f"wrote {out_dir}/pqike.toml ({len(result.copied)} files copied)", err=True)
