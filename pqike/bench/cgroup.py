"""A CPU quota for a benchmark's responder: a cgroup v1 ``cpu`` controller group of its own.

``pqike bench load --responder-quota 0.4`` puts each responder (pqike's daemon, or charon with
all of its threads) into a fresh group with ``cpu.cfs_quota_us`` = 0.4 x ``cpu.cfs_period_us``:
it may use 40 % of one core's time, whichever cores it runs on, so that the load generator
keeps spare CPU on a machine with few cores. Threads and processes the responder starts
later inherit the group. The group is removed when the run ends, also on error.

Only cgroup v1 (the ``cpu`` controller mounted at /sys/fs/cgroup/cpu) is supported.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

CPU_ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000
MIN_QUOTA_US = 1000  # the kernel refuses a smaller cpu.cfs_quota_us
PREFIX = "pqike-bench-"
_seq = itertools.count(1)


def problem(root: Path = CPU_ROOT) -> str | None:
    """None when quotas can be set here, else why not."""
    if not (root / "cpu.cfs_quota_us").is_file():
        return f"no cgroup v1 cpu controller at {root} (cpu.cfs_quota_us missing)"
    if not os.access(own_group(root), os.W_OK):
        return f"cannot create cgroups under {own_group(root)} (needs root)"
    return None


def check_quota(quota: float, cpus: int | None = None) -> float:
    """``quota`` in cores, refused unless the kernel can enforce it on this machine."""
    cpus = cpus or os.cpu_count() or 1
    if not MIN_QUOTA_US / PERIOD_US <= quota <= cpus:
        low = MIN_QUOTA_US / PERIOD_US
        raise ValueError(f"{quota} cores: a quota must be between {low} and {cpus} (cores here)")
    return quota


def own_group(root: Path = CPU_ROOT) -> Path:
    """This process's cpu cgroup, so that a responder's group nests in our own limits."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, rel = line.split(":", 2)
            if "cpu" in controllers.split(",") and (root / rel.lstrip("/")).is_dir():
                return root / rel.lstrip("/")
    return root


@contextlib.contextmanager
def cpu_quota(pid: int, quota: float, root: Path = CPU_ROOT) -> Iterator[Path]:
    """Every thread of process ``pid`` in a new group limited to ``quota`` cores while the
    block runs; the group is removed afterwards (what is still in it goes back first)."""
    parent = own_group(root)
    group = parent / f"{PREFIX}{os.getpid()}-{next(_seq)}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(round(quota * PERIOD_US)))
        (group / "cgroup.procs").write_text(str(pid))  # v1: the whole thread group
        yield group
    finally:
        remove(group, parent)


def remove(group: Path, parent: Path) -> None:
    """Move the threads still in ``group`` to ``parent`` and remove it. The kernel refuses
    to remove a group with tasks, and exiting ones linger for a moment: retry briefly."""
    for attempt in range(50):
        for tid in (group / "tasks").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                (parent / "tasks").write_text(tid)
        try:
            group.rmdir()
            return
        except OSError:
            if attempt == 49:
                raise
            time.sleep(0.02)


def throttling(group: Path) -> dict[str, int]:
    """``cpu.stat`` of ``group``: nr_periods, nr_throttled (periods in which the quota ran
    out), throttled_time (ns)."""
    stat = (group / "cpu.stat").read_text().split()
    return {k: int(v) for k, v in zip(stat[::2], stat[1::2], strict=True)}
