"""pqike bench load --responder-quota: option parsing, the generator's CPU utilisation in the
table and JSON, and the responder's cgroup (set up, enforced settings, removed afterwards,
also on error). The cgroup tests use the real cgroup v1 cpu controller and skip without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pqike.bench import cgroup, cli, loadgen, udpload

NO_CGROUP = cgroup.problem()
needs_cgroup = pytest.mark.skipif(NO_CGROUP is not None, reason=str(NO_CGROUP))

# a process with two threads that sleeps until killed
TWO_THREADS = "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); time.sleep(60)"  # noqa: E501


def _ours() -> list[Path]:
    """Groups this process made that still exist."""
    mine = f"{cgroup.PREFIX}{os.getpid()}-"
    return [p for p in cgroup.own_group().iterdir() if p.name.startswith(mine)]


def _cpu_group_of(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, rel = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return rel
    raise AssertionError(f"no cpu cgroup for {pid}")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", TWO_THREADS])
    # both threads exist before the test moves the process
    while len(os.listdir(f"/proc/{proc.pid}/task")) < 2:
        pass
    yield proc
    proc.kill()
    proc.wait()


# --------------------------------------------------------------------------- option parsing


def test_quota_bounds() -> None:
    assert cgroup.check_quota(0.4, cpus=2) == 0.4
    assert cgroup.check_quota(2.0, cpus=2) == 2.0
    for bad in (0.001, -1.0, 2.5):
        with pytest.raises(ValueError, match=r"between 0\.01 and 2"):
            cgroup.check_quota(bad, cpus=2)


def _load(tmp_path: Path, *quota: str) -> Any:
    args = ["load", "--only", "x25519", "--no-inmem", "--sas", "0", "--concurrency", "10"]
    args += ["--handshakes", "5", "--out", str(tmp_path), "--no-progress", *quota]
    return CliRunner().invoke(cli.bench, args)


@pytest.mark.parametrize("value", ["5000", "-0.5", "0.001", "lots"])
def test_cli_refuses_a_quota_the_machine_cannot_enforce(tmp_path: Path, value: str) -> None:
    r = _load(tmp_path, "--responder-quota", value)
    assert r.exit_code == 2 and "--responder-quota" in r.output, r.output


def test_cli_refuses_a_quota_without_cgroups(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(cgroup, "problem", lambda root=None: "no cgroup v1 cpu controller at X")
    r = _load(tmp_path, "--responder-quota", "0.4")
    assert r.exit_code == 2 and "no cgroup v1 cpu controller at X" in r.output, r.output


def _row(responder: str, gen_pct: float, quota: float | None) -> dict[str, Any]:
    row = {"responder": responder, "proposal": "x25519", "concurrency": 10, "run": 0,
           "established": 5, "hs_per_s": 100.0, "responder_cpu_ms_per_hs": 1.0,
           "loadgen_cpu_pct": gen_pct, "responder_cpu_pct": 40.0, "status": "ok"}  # fmt: skip
    if quota:
        row["responder_quota"] = quota
    return row


def test_cli_passes_the_quota_and_states_it(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(cgroup, "problem", lambda root=None: None)
    seen: dict[str, Any] = {}

    def fake_run(props, **kw):  # type: ignore[no-untyped-def]
        seen.update(kw)
        q = kw["responder_quota"]
        return [_row("pqike", 97.0, q), _row("strongswan", 50.0, q)], None

    monkeypatch.setattr(udpload, "run", fake_run)
    r = _load(tmp_path, "--responder-quota", "0.4")
    assert r.exit_code == 0, r.output
    assert seen["responder_quota"] == 0.4
    assert "responder CPU quota: 0.4 core" in r.output
    header = next(line for line in r.output.splitlines() if line.startswith("proposal  responder"))
    assert "gen CPU %" in header and "resp quota" in header
    # the busy generator is named, the one with spare CPU is not
    warnings = [line for line in r.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "busy 97 %" in warnings[0] and "pqike" in warnings[0]
    data = json.loads((tmp_path / "load_udp.json").read_text())
    assert data["meta"]["responder_quota"] == 0.4
    assert [row["responder_quota"] for row in data["rows"]] == [0.4, 0.4]

    r = _load(tmp_path, "--responder-cpus", "1")
    assert r.exit_code == 0 and seen["responder_quota"] == 0.0
    assert "responder CPU quota: none" in r.output


def test_generator_runqueue_wait() -> None:
    wait = loadgen.runqueue_wait_s()
    assert wait is None or wait >= 0.0
    assert loadgen._sum_known([0.25, 0.25]) == 0.5  # the processes' waits add up
    assert loadgen._sum_known([0.25, None]) is None


def test_generator_utilisation() -> None:
    # one process on one core, or two processes on two cores: CPU over wall per core
    assert udpload._busy_pct(0.9, 1.0, 1) == pytest.approx(90.0)
    assert udpload._busy_pct(0.9, 1.0, 2) == pytest.approx(45.0)
    assert udpload.gen_cores([1], 4) == 1  # pinned to one core: 4 processes share it
    assert udpload.gen_cores([0, 1], 1) == 1  # a single process uses one core at most
    assert udpload.busy_generator([_row("pqike", 85.0, None)]) == []
    (warning,) = udpload.busy_generator([_row("strongswan", 86.0, None)])
    assert "strongswan x25519 N=10" in warning
    # runnable but waiting for its core counts as wanted CPU: starved, not idle
    starved = {**_row("pqike", 60.0, None), "loadgen_wait_pct": 30.0}
    (warning,) = udpload.busy_generator([starved])
    assert "busy 60 % (+30 % waiting for a CPU)" in warning
    assert udpload._busy_pct(None, 1.0, 1) is None  # no schedstat: no figure, no warning
    before = {"nr_periods": 10, "nr_throttled": 1}
    assert udpload._throttled_pct(before, {"nr_periods": 30, "nr_throttled": 6}) == 25.0
    assert udpload._throttled_pct(before, before) is None


# --------------------------------------------------------------------------- the cgroup


@needs_cgroup
def test_quota_group_holds_every_thread_and_goes_away(sleeper) -> None:  # type: ignore[no-untyped-def]
    mine = _cpu_group_of(os.getpid())
    with cgroup.cpu_quota(sleeper.pid, 0.25) as group:
        assert _ours() == [group]
        assert (group / "cpu.cfs_period_us").read_text().strip() == str(cgroup.PERIOD_US)
        assert (group / "cpu.cfs_quota_us").read_text().strip() == "25000"
        threads = set(os.listdir(f"/proc/{sleeper.pid}/task"))
        assert len(threads) == 2 and set((group / "tasks").read_text().split()) == threads
        assert _cpu_group_of(sleeper.pid).endswith("/" + group.name)
        assert {"nr_periods", "nr_throttled"} <= set(cgroup.throttling(group))
    # the responder outlived the block (a stop that failed): it is moved back, the group goes
    assert _ours() == []
    assert sleeper.poll() is None and _cpu_group_of(sleeper.pid) == mine


@needs_cgroup
def test_quota_group_removed_after_the_responder_exited(sleeper) -> None:  # type: ignore[no-untyped-def]
    with cgroup.cpu_quota(sleeper.pid, 0.5):
        sleeper.kill()
        sleeper.wait()
    assert _ours() == []


@needs_cgroup
def test_quota_group_removed_on_error(sleeper) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError, match="run failed"), cgroup.cpu_quota(sleeper.pid, 0.5):
        raise RuntimeError("run failed")
    assert _ours() == []
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with pytest.raises(OSError), cgroup.cpu_quota(gone.pid, 0.5):
        pass  # set-up fails: no such process to move
    assert _ours() == []


class _FakeResponder:
    """Stands in for the pqike/charon responder of udpload.one_run: a sleeping process."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped = False

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", TWO_THREADS])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        assert self.proc is not None
        assert _ours(), "the responder is stopped inside its group"
        self.proc.kill()
        self.proc.wait()
        self.stopped = True


@needs_cgroup
@pytest.mark.parametrize("failure", ["generator not ready", "generator raises"])
def test_one_run_removes_the_group_when_the_run_fails(tmp_path, monkeypatch, failure) -> None:  # type: ignore[no-untyped-def]
    resp = _FakeResponder()
    monkeypatch.setattr(udpload, "_responder", lambda *a: resp)

    def generator(*a, **kw):  # type: ignore[no-untyped-def]
        if failure == "generator raises":
            raise OSError("cannot start the generator")
        script = "print('no sources'); import sys; sys.stderr.write('bind failed')"
        pipe = subprocess.PIPE
        argv = [sys.executable, "-c", script]
        return subprocess.Popen(argv, stdin=pipe, stdout=pipe, stderr=pipe, text=True)

    monkeypatch.setattr(udpload, "_generator", generator)
    args = ("pqike", None, "x", "p", 5, 10, [], False, 5.0, tmp_path)
    if failure == "generator raises":
        with pytest.raises(OSError, match="cannot start"):
            udpload.one_run(*args, responder_quota=0.5)
    else:
        row = udpload.one_run(*args, responder_quota=0.5)
        assert row["status"].startswith("generator failed") and row["responder_quota"] == 0.5
    assert resp.stopped and _ours() == []


def test_generator_processes_without_waiting_for_go() -> None:
    # --no-wait (as tests/e2e/test_workers_netns.py runs it) with helper processes: the
    # helpers still wait for their parent's go; nothing answers at 127.0.0.1, so both
    # handshakes time out and the merged report says so
    argv = [sys.executable, "-m", "pqike.bench.loadgen", "--target", "127.0.0.1"]
    argv += ["--proposal", "aes256-sha256-x25519", "--handshakes", "2", "--concurrency", "2"]
    argv += ["--procs", "2", "--no-wait", "--timeout", "0.3"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["procs"] == 2 and report["started"] == report["timed_out"] == 2, report
