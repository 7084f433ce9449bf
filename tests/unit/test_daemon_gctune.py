"""The daemon process's GC: frozen after start-up, young collections made rarer."""

from __future__ import annotations

import asyncio
import gc
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pqike.config import load_config
from pqike.daemon import Daemon
from pqike.daemon.gctune import GC_GEN0_THRESHOLD
from tests.unit.test_daemon_control import CONFIG, FakeEngine


@pytest.fixture
def gc_restored() -> Iterator[None]:
    """The test process keeps its own GC settings whatever the daemon did to them."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def _daemon(workdir: Path) -> Daemon:
    (workdir / "pqike.toml").write_text(CONFIG)
    return Daemon(
        load_config(workdir),
        config_path=str(workdir),
        engine_factory=FakeEngine,
        socket_path=str(workdir / "ctl.sock"),
        listen=["127.0.0.1"],
        ike_port=0,
        natt_port=0,
    )


def _run(daemon: Daemon, *, signals: bool) -> tuple[tuple[int, int, int], int]:
    """Run the daemon until it is ready; the GC settings it served with."""
    seen: list[tuple[tuple[int, int, int], int]] = []

    def ready() -> None:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        daemon.request_stop()

    asyncio.run(daemon.run(signals=signals, ready=ready))
    return seen[0]


def test_daemon_owning_its_process_freezes_and_raises_gen0(gc_restored: None) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="pqk", dir="/tmp"))
    try:
        gc.set_threshold(700, 10, 10)
        (gen0, gen1, gen2), frozen = _run(_daemon(workdir), signals=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert gen0 == GC_GEN0_THRESHOLD > 700
    assert (gen1, gen2) == (10, 10)
    assert frozen > 0  # start-up's objects are in the permanent generation


def test_daemon_in_a_test_process_leaves_gc_alone(gc_restored: None) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="pqk", dir="/tmp"))
    try:
        gc.set_threshold(700, 10, 10)
        threshold, frozen = _run(_daemon(workdir), signals=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert threshold == (700, 10, 10)
    assert frozen == 0
