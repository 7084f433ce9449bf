"""Files holding secrets (pqike.files): the daemon log and key files are 0600 whatever
existed before, and never written through a symbolic link."""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pqike import log as pqlog
from pqike.files import open_private, write_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger("pqike")
    handlers, level, propagate = list(root.handlers), root.level, root.propagate
    levels = {s: logging.getLogger(f"pqike.{s.value}").level for s in pqlog.Subsystem}
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    root.propagate = propagate
    for s, lvl in levels.items():
        logging.getLogger(f"pqike.{s.value}").setLevel(lvl)


def test_log_file_is_created_0600(tmp_path: Path, restore_logging: None) -> None:
    path = tmp_path / "charon.log"
    old = os.umask(0o022)  # the usual umask: a plain open() gives 0644
    try:
        pqlog.configure({"ike": 4}, filename=str(path))
    finally:
        os.umask(old)
    pqlog.get_logger(pqlog.Subsystem.IKE).private("SK_ei secret %s", "0011")
    assert _mode(path) == 0o600
    assert "SK_ei secret 0011" in path.read_text()


def test_existing_world_readable_log_file_becomes_0600_and_is_appended(
    tmp_path: Path, restore_logging: None
) -> None:
    path = tmp_path / "charon.log"
    path.write_text("yesterday\n")
    path.chmod(0o644)
    pqlog.configure(filename=str(path))
    pqlog.get_logger(pqlog.Subsystem.DMN).basic("today")
    assert _mode(path) == 0o600
    lines = path.read_text().splitlines()
    assert lines[0] == "yesterday" and lines[1].endswith("[DMN] today")


def test_log_file_symlink_is_refused(tmp_path: Path, restore_logging: None) -> None:
    target = tmp_path / "elsewhere.log"
    link = tmp_path / "charon.log"
    link.symlink_to(target)  # dangling: following it would create the attacker's file
    with pytest.raises(OSError) as e:
        pqlog.configure(filename=str(link))
    assert e.value.errno == errno.ELOOP and e.value.filename == str(link)
    assert e.value.strerror == "is a symbolic link, refusing to write through it"
    assert not target.exists()


def test_open_private_truncates_and_forces_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"old old old")
    path.chmod(0o666)
    fd = open_private(path)
    try:
        os.write(fd, b"new")
    finally:
        os.close(fd)
    assert path.read_bytes() == b"new" and _mode(path) == 0o600


def test_write_atomic_leaves_nothing_behind_when_it_fails(tmp_path: Path) -> None:
    (tmp_path / "key.pem").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path / "key.pem", b"secret")
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "key.pem", b"secret")
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]


def test_log_file_flushed_once_per_batch(tmp_path: Path, restore_logging: None) -> None:
    """Inside batched() lines wait in the buffer until the batch ends (nested batches end
    with the outermost); outside, each line is in the file as soon as it is logged."""
    path = tmp_path / "charon.log"
    pqlog.configure(filename=str(path))
    ike = pqlog.get_logger(pqlog.Subsystem.IKE, "rw|1")
    with pqlog.batched():
        ike("line %d", 1)
        with pqlog.batched():
            ike("line %d", 2)
        assert path.read_text() == ""  # not yet written out
    assert [line.split("> ", 1)[1] for line in path.read_text().splitlines()] == [
        "line 1",
        "line 2",
    ]
    ike("line %d", 3)
    assert path.read_text().endswith("<rw|1> line 3\n")


@pytest.mark.parametrize("output", ["file", "stream", "journal"])
def test_log_lines_written_without_records(
    tmp_path: Path, restore_logging: None, monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    """With the log file (or stderr, or journald's stream) as the only handler a line goes
    out without a LogRecord (most of a line's cost), and reads exactly as the standard
    path, which a second handler (a control client's log tap) brings back, writes it."""
    path = tmp_path / "charon.log"
    if output == "file":
        pqlog.configure(filename=str(path))
    else:
        monkeypatch.setattr(pqlog, "journald_stderr", lambda: output == "journal")
        stream = path.open("a", encoding="utf-8")
        monkeypatch.setattr(sys, "stderr", stream)  # configure()'s default stream
        pqlog.configure()
    made: list[object] = []
    real_init = logging.LogRecord.__init__

    def counted(self: logging.LogRecord, *args: Any, **kw: Any) -> None:
        made.append(args[0])
        real_init(self, *args, **kw)

    monkeypatch.setattr(logging.LogRecord, "__init__", counted)
    lines: list[tuple[pqlog.Subsystem, str, str, tuple[Any, ...]]] = [
        (pqlog.Subsystem.IKE, "rw|3", "IKE_SA %s[%d] established", ("rw", 3)),
        (pqlog.Subsystem.NET, "", "received packet: from %s (%d bytes)", ("10.0.0.1[500]", 272)),
        (pqlog.Subsystem.ENC, "rw|3", "peer's text %(text)s", ({"text": "two\nlines"},)),
        (pqlog.Subsystem.CFG, "rw|3", "100% as given", ()),
    ]

    def log_all() -> None:
        for sub, sa, msg, args in lines:
            pqlog.get_logger(sub, sa)(msg, *args)

    log_all()
    assert made == []
    direct = path.read_text().splitlines()
    root = logging.getLogger("pqike")
    tap = logging.NullHandler()
    root.addHandler(tap)
    try:
        log_all()
    finally:
        root.removeHandler(tap)
    assert len(made) == len(lines)
    standard = path.read_text().splitlines()[len(direct) :]
    if output == "journal":  # journald stamps the time itself
        direct, standard = (["hh:mm:ss.mmm " + line for line in ls] for ls in (direct, standard))
    assert all(re.fullmatch(r"\S{12} \[\w+\] .+", line) for line in direct)
    assert [line[13:] for line in direct] == [line[13:] for line in standard]
    assert [line[13:] for line in direct] == [
        "[IKE] <rw|3> IKE_SA rw[3] established",
        "[NET] received packet: from 10.0.0.1[500] (272 bytes)",
        "[ENC] <rw|3> peer's text two\\x0alines",
        "[CFG] <rw|3> 100% as given",
    ]
    if output != "file":
        stream.close()


class _FullDisk(io.StringIO):
    def flush(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("batch", [False, True])
def test_failing_log_writes_are_said_not_raised(
    restore_logging: None, capsys: pytest.CaptureFixture[str], batch: bool
) -> None:
    """A log that cannot be written to is reported on stderr, as logging reports it; the
    code that logged (the engine, the receive loop) carries on."""
    pqlog.configure(stream=_FullDisk())
    ike = pqlog.get_logger(pqlog.Subsystem.IKE, "rw|1")
    if batch:
        with pqlog.batched():
            ike("line %d", 1)
    else:
        ike("line %d", 1)
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "No space left on device" in err
