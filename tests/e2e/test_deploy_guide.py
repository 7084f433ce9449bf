"""README "Deploying on two hosts", followed literally: each command block marked
``<!-- guide: NAME -->`` is run line by line on the host its prompt names (``site-a# ...``),
each host being a network namespace, from a copy of the shipped configs/. ``pqike daemon``
lines start the daemon in the background; every other line must succeed, ping included.

The only thing added is the control socket: the namespaces share /run, so each host's
daemon and CLI get their own through $PQIKE_SOCKET (which both read)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pqike.netns import add_address, add_dummy, ns_argv, topology
from tests.e2e.test_dataplane import _skip
from tests.unit.shipped import guide_block

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(_skip() is not None, reason=_skip() or "")


def _argv(command: str) -> list[str]:
    argv = shlex.split(command)
    if argv[0] == "pqike":  # the checkout's pqike, whatever is installed
        return [sys.executable, "-m", "pqike", *argv[1:]]
    return argv


def _follow(
    block: str, hosts: dict[str, str | None], workdir: Path
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the block; the last output of each command (by its first word and host)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    daemons: list[subprocess.Popen[bytes]] = []
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    try:
        for host, command in guide_block(block):
            host_env = {**env, "PQIKE_SOCKET": str(workdir / f"{host}.sock")}
            argv = ns_argv(hosts[host], _argv(command))
            if command.startswith("pqike daemon"):
                daemons.append(_start_daemon(argv, host_env, workdir, host))
                continue
            out = subprocess.run(
                argv, cwd=workdir, env=host_env, capture_output=True, text=True, timeout=60
            )
            assert out.returncode == 0, f"{host}# {command}:\n{out.stdout}{out.stderr}"
            outputs[f"{host}# {command.split()[0]} {command.split()[1]}"] = out
    finally:
        for proc in daemons:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return outputs


def _start_daemon(
    argv: list[str], env: dict[str, str], workdir: Path, host: str
) -> subprocess.Popen[bytes]:
    log = workdir / f"{host}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    socket = Path(env["PQIKE_SOCKET"])
    deadline = time.monotonic() + 20
    while not socket.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{host}'s daemon did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc


def _workdir(tmp_path: Path, *configs: str) -> Path:
    for name in configs:
        shutil.copytree(ROOT / "configs" / name, tmp_path / "configs" / name)
    return tmp_path


def test_site_to_site(tmp_path: Path) -> None:
    workdir = _workdir(tmp_path, "site-a", "site-b")
    with topology() as topo:  # site-b is moon (192.168.0.2, LAN 10.1.0.1/24)
        add_dummy(topo.carol, "lan")  # site-a is carol (192.168.0.3)
        add_address(topo.carol, "lan", "10.2.0.1/24")
        hosts = {"ca": None, "site-a": topo.carol, "site-b": topo.moon}
        out = _follow("site-to-site", hosts, workdir)
    assert " 0% packet loss" in out["site-a# ping -c"].stdout
    assert "ESTABLISHED" in out["site-a# pqike list-sas"].stdout
    assert (workdir / "ca" / "caKey.pem").stat().st_mode & 0o077 == 0


def test_road_warrior(tmp_path: Path) -> None:
    workdir = _workdir(tmp_path, "gw", "roadwarrior")
    with topology() as topo:  # gw is moon, the road warrior carol
        hosts = {"ca": None, "gw": topo.moon, "roadwarrior": topo.carol}
        out = _follow("road-warrior", hosts, workdir)
    assert " 0% packet loss" in out["roadwarrior# ping -c"].stdout
    sas = out["roadwarrior# pqike list-sas"].stdout
    assert "ESTABLISHED" in sas and "10.3.0.1" in sas
