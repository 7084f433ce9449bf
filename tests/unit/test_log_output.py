"""Where the daemon's log goes without a log file: syslog in the background (charon's
sys_logger, a unix datagram socket standing in for /dev/log), journald's stream on stderr
under systemd without a second timestamp."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from logging.handlers import SysLogHandler
from pathlib import Path

import pytest

from pqike import cli
from pqike import log as pqlog
from pqike.config import ConfigError
from tests.exchange.peers import load_tree
from tests.unit.test_files import restore_logging  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def dev_log(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        yield path, sock


def test_syslog_lines_carry_facility_ident_and_sa(dev_log: tuple[str, socket.socket]) -> None:
    path, sock = dev_log
    pqlog.configure({"ike": 2}, handler=pqlog.syslog_handler("local3", path))
    pqlog.get_logger(pqlog.Subsystem.IKE, "home|1").basic("IKE_SA home[1] established")
    pqlog.get_logger(pqlog.Subsystem.IKE).control("state change")
    pqlog.get_logger(pqlog.Subsystem.IKE).raw("level 3 is off")
    # charon logs every line at LOG_INFO of its facility; syslog adds the time
    pri = SysLogHandler.LOG_LOCAL3 * 8 + SysLogHandler.LOG_INFO
    first = sock.recv(4096).decode().rstrip("\x00")
    second = sock.recv(4096).decode().rstrip("\x00")
    assert first == f"<{pri}>pqike[{os.getpid()}]: [IKE] <home|1> IKE_SA home[1] established"
    assert second == f"<{pri}>pqike[{os.getpid()}]: [IKE] state change"
    sock.settimeout(0.01)
    with pytest.raises(TimeoutError):
        sock.recv(4096)


def test_background_daemon_uses_syslog(
    dev_log: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sock = dev_log
    monkeypatch.setattr(cli, "SYSLOG_SOCKET", path)
    handler = cli._syslog("daemon")
    assert handler is not None
    assert cli._ready_note == "logging to syslog (facility daemon)"
    pqlog.configure(handler=handler)
    pqlog.get_logger(pqlog.Subsystem.DMN).basic("Starting IKE pqike daemon")
    line = sock.recv(4096).decode().rstrip("\x00")
    assert line.endswith("]: [DMN] Starting IKE pqike daemon")
    assert line.startswith(f"<{SysLogHandler.LOG_DAEMON * 8 + SysLogHandler.LOG_INFO}>")


def test_no_syslog_socket_is_said_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "SYSLOG_SOCKET", str(tmp_path / "absent"))
    assert cli._syslog("daemon") is None
    assert cli._ready_note.startswith(f"no syslog at {tmp_path / 'absent'} (")
    assert "set daemon.log.file or use --foreground" in cli._ready_note


def test_journald_stream_drops_the_timestamp(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    st = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    pqlog.configure()
    pqlog.get_logger(pqlog.Subsystem.CFG, "rw|2").basic("selected peer config 'rw'")
    assert capsys.readouterr().err == "[CFG] <rw|2> selected peer config 'rw'\n"
    monkeypatch.setenv("JOURNAL_STREAM", "0:0")  # another stream: stderr is no journal
    pqlog.configure()
    pqlog.get_logger(pqlog.Subsystem.CFG).basic("x")
    err = capsys.readouterr().err
    assert err.endswith(" [CFG] x\n") and err[2] == ":"  # 08:14:27.123 [CFG] x


def test_unknown_syslog_facility_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"daemon\.log\.syslog: unknown syslog facility .bogus."):
        load_tree({"daemon": {"log": {"syslog": "bogus"}}})
    assert load_tree({"daemon": {"log": {"syslog": "local3"}}}).daemon.log.syslog == "local3"


def test_subsystem_loggers_looked_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each IKE_SA binds four Loggers: after the first of a subsystem, none goes through
    logging.getLogger() (its module lock) again, and all log through the same logger."""
    from pqike.log import Subsystem, get_logger

    first = get_logger(Subsystem.ENC, "home|1")

    looked_up: list[str | None] = []
    real = logging.getLogger

    def counting(name: str | None = None) -> logging.Logger:
        looked_up.append(name)
        return real(name)

    monkeypatch.setattr(logging, "getLogger", counting)
    again = get_logger(Subsystem.ENC, "home|2")
    monkeypatch.undo()
    assert "pqike.ENC" not in looked_up
    assert again._log is first._log and again._log.name == "pqike.ENC"
    assert again.sa == "home|2"


def test_bound_logger_writes_the_line_of_its_subsystem_and_context() -> None:
    """bind() gives what get_logger(subsystem, context) gives, byte for byte."""
    from io import StringIO

    from pqike.log import Subsystem, batched, configure, get_logger

    out = StringIO()
    configure({"chd": 4}, stream=out)
    bound = get_logger(Subsystem.CHD).bind("home|3")
    with batched():
        bound.private("encryption initiator key %s", "00ff")
        get_logger(Subsystem.CHD, "home|3").private("encryption initiator key %s", "00ff")
    first, second = (line.split(" ", 1)[1] for line in out.getvalue().splitlines())
    assert first == second == "[CHD] <home|3> encryption initiator key 00ff"
    assert bound._log is logging.getLogger("pqike.CHD")
