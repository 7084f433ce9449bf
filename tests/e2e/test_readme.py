"""README's "Using pqike" commands, run as written from the repository root: carol's daemon
from configs/carol-psk in a network namespace (moon-psk in the other), then the client
commands with no --socket, so that the daemon's default socket and the CLI's agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pqike.netns import ns_argv, topology
from tests.e2e.test_dataplane import _skip

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOCKET = Path("/run/pqike/pqike.sock")

pytestmark = pytest.mark.skipif(_skip() is not None, reason=_skip() or "")


def _pqike(*args: str, ns: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    argv = ns_argv(ns, [sys.executable, "-m", "pqike", *args])
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _start(ns: str, args: list[str], log: Path, socket: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ns_argv(ns, [sys.executable, "-m", "pqike", *args]),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while not socket.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"daemon did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_using_pqike_commands_as_written(tmp_path: Path) -> None:
    if DEFAULT_SOCKET.exists():
        pytest.skip(f"{DEFAULT_SOCKET} is in use by another daemon")
    with topology() as topo:
        moon_sock = tmp_path / "moon.sock"
        moon = _start(
            topo.moon,
            ["daemon", "--config", "configs/moon-psk", "-F", "--socket", str(moon_sock)],
            tmp_path / "moon.log",
            moon_sock,
        )
        try:
            # README: pqike daemon --config configs/carol-psk -F
            carol = _start(
                topo.carol,
                ["daemon", "--config", "configs/carol-psk", "-F"],
                tmp_path / "carol.log",
                DEFAULT_SOCKET,
            )
            try:
                _readme_sequence(tmp_path)
            finally:
                _stop(carol)
        finally:
            _stop(moon)


def _ok(*args: str) -> str:
    out = _pqike(*args)
    assert out.returncode == 0, f"pqike {' '.join(args)}: {out.stdout}{out.stderr}"
    return out.stdout


def _readme_sequence(tmp_path: Path) -> None:
    _ok("initiate", "--child", "net")
    (sa,) = json.loads(_ok("list-sas", "--json"))["ike-sas"].values()
    assert sa["name"] == "home" and sa["state"] == "ESTABLISHED"
    assert "home" in _ok("list-sas")
    _ok("rekey", "--child", "net")
    _ok("rekey", "--ike", "home")
    _ok("terminate", "--child", "net")
    _ok("terminate", "--ike", "home")
    assert json.loads(_ok("list-sas", "--json"))["ike-sas"] == {}
    assert "home" in _ok("list-conns", "--config", "configs/carol")
    assert "ML_KEM_768" in _ok("list-algs")
    _ok("list-certs", "--config", "configs/carol")
    _ok("reload")
    key = tmp_path / "key.pem"
    _ok("pki", "gen", "--type", "mldsa87", "--outfile", str(key))
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    _ok("plan", "aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3", "--auth", "mldsa87")
