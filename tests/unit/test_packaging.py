"""Deployment files checked without systemd or Docker: the README's included configs are the
shipped files, packaging/pqike.service names real CLI commands and its reload (SIGHUP)
reloads a running daemon, and the Dockerfile (never built here: no Docker engine) copies
only files that exist, builds liboqs with scripts/liboqs.sh and runs as a non-root user."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pqike.cli import cli

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging" / "pqike.service"


def test_readme_includes_the_shipped_configs_verbatim() -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- include: (\S+) -->\n```\w*\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    for path, body in blocks:
        assert (ROOT / path).read_text() == body, f"README's copy of {path} differs from the file"


def _unit() -> dict[str, str]:
    entries = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            entries[key] = value
    return entries


def test_unit_execstart_is_a_valid_daemon_command() -> None:
    argv = shlex.split(_unit()["ExecStart"])
    assert Path(argv[0]).name == "pqike" and argv[1] == "daemon"
    assert "--foreground" in argv  # stderr to the journal, no fork for Type=simple
    # the options parse as the CLI's own (an unknown or misspelt option raises)
    daemon = cli.commands["daemon"]  # type: ignore[attr-defined]
    ctx = daemon.make_context("daemon", argv[2:])
    assert ctx.params["config_dir"] == "/etc/pqike" and ctx.params["foreground"]
    out = CliRunner().invoke(cli, ["daemon", "--help"])
    assert out.exit_code == 0 and "--foreground" in out.output
    assert _unit()["Type"] == "simple"


def test_unit_reload_sends_sighup_to_the_daemon() -> None:
    argv = shlex.split(_unit()["ExecReload"])
    assert Path(argv[0]).name == "kill" and argv[1:] == ["-HUP", "$MAINPID"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _conf(port: int, sock: Path, conns: list[str]) -> str:
    text = f'[daemon]\nport = {port}\nport_nat_t = {port + 1}\nkernel = "none"\n'
    text += f'control_socket = "{sock}"\n'
    for name in conns:
        text += f'\n[connections.{name}]\nremote_addrs = ["127.0.0.9"]\n'
        text += f'[connections.{name}.local]\nauth = "psk"\nid = "{name}.local"\n'
        text += f'[connections.{name}.remote]\nauth = "psk"\nid = "{name}.remote"\n'
    return text + '\n[secrets.ike-1]\nsecret = "sighup-test-secret-0123456789"\n'


def _conns(sock: Path) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pqike", "list-conns", "--json", "--socket", str(sock)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return set(json.loads(out.stdout)["connections"])


def test_sighup_reloads_the_configuration(tmp_path: Path) -> None:
    """The daemon under the unit's ExecStart options (foreground, stderr as the journal)."""
    port, sock = _free_port(), tmp_path / "pqike.sock"
    conf = tmp_path / "pqike.toml"
    conf.write_text(_conf(port, sock, ["first"]))
    log = tmp_path / "stderr"
    with open(log, "wb") as err:
        st = os.fstat(err.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        argv = [sys.executable, "-m", "pqike", "daemon", "--config", str(tmp_path)]
        proc = subprocess.Popen(
            [*argv, "--foreground", "--listen", "127.0.0.1"],
            stdout=err,
            stderr=err,
            env=env,
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert _conns(sock) == {"first"}
        conf.write_text(_conf(port, sock, ["first", "second"]))
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "SIGHUP: " not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert _conns(sock) == {"first", "second"}
        # a bad file changes nothing, and the log says why
        conf.write_text(_conf(port, sock, ["first"]) + "\n[connections.bad]\nrekey_tme = 1\n")
        proc.send_signal(signal.SIGHUP)
        while log.read_text().count("SIGHUP: ") < 2:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert _conns(sock) == {"first", "second"}
        assert "rekey_tme" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(10)
    # journald stamps the time: no timestamp of our own at the start of a line
    lines = log.read_text().splitlines()
    assert lines and not [line for line in lines if re.match(r"\d\d:\d\d:\d\d", line)]


DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions():
        if ins[0] == "FROM":
            stages.append([])
        stages[-1].append(ins)
    return stages


def test_dockerfile_copies_only_files_of_the_repository() -> None:
    copies = [args for word, args in _instructions() if word in ("COPY", "ADD")]
    assert copies
    for args in copies:
        parts = shlex.split(args)
        if any(p.startswith("--from=") for p in parts):
            continue
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_dockerfile_builds_liboqs_with_the_setup_script_and_runs_as_non_root() -> None:
    build, final = _stages()[0], _stages()[-1]
    assert len(_stages()) == 2
    assert " AS " in build[0][1].upper()
    build_runs = " ".join(args for word, args in build if word == "RUN")
    assert "scripts/liboqs.sh" in " ".join(args for word, args in build if word == "COPY")
    assert "liboqs.sh" in build_runs and "PQIKE_LIBOQS_TARBALL" in build_runs
    stage_name = build[0][1].split()[-1]
    assert any(w == "COPY" and f"--from={stage_name}" in a for w, a in final)
    pip = " ".join(args for word, args in final if word == "RUN" and "pip install" in args)
    assert "oqs" in pip and "pqcrypto" in pip
    (user,) = [args for word, args in final if word == "USER"]
    assert user not in ("root", "0") and "useradd" in " ".join(a for _, a in final)
    # the default command (exec form) is a real subcommand
    (cmd,) = [args for word, args in final if word == "CMD"]
    out = CliRunner().invoke(cli, [*json.loads(cmd), "--help"])
    assert out.exit_code == 0, out.output


@pytest.mark.parametrize("path", ["Dockerfile", "packaging/pqike.service"])
def test_readme_documents_the_packaging(path: str) -> None:
    assert f"`{path}`" in (ROOT / "README.md").read_text()
