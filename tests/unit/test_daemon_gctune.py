"""The daemon process's GC: frozen after start-up, young collections made rarer."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from pqike.daemon import Daemon
from pqike.daemon.gctune import GC_GEN0_THRESHOLD
from tests.unit.test_daemon_control import fake_daemon, workdir  # noqa: F401 (fixture)


@pytest.fixture
def gc_restored() -> Iterator[None]:
    """The test process keeps its own GC settings whatever the daemon did to them."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def _run(daemon: Daemon, *, signals: bool) -> tuple[tuple[int, int, int], int]:
    """Run the daemon until it is ready; the GC settings it served with."""
    seen: list[tuple[tuple[int, int, int], int]] = []

    def ready() -> None:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        daemon.request_stop()

    asyncio.run(daemon.run(signals=signals, ready=ready))
    return seen[0]


def test_daemon_owning_its_process_freezes_and_raises_gen0(
    gc_restored: None,
    workdir: Path,  # noqa: F811 (the fixture)
) -> None:
    gc.set_threshold(700, 10, 10)
    (gen0, gen1, gen2), frozen = _run(fake_daemon(workdir), signals=True)
    assert gen0 == GC_GEN0_THRESHOLD > 700
    assert (gen1, gen2) == (10, 10)
    assert frozen > 0  # start-up's objects are in the permanent generation


def test_daemon_in_a_test_process_leaves_gc_alone(
    gc_restored: None,
    workdir: Path,  # noqa: F811 (the fixture)
) -> None:
    gc.set_threshold(700, 10, 10)
    threshold, frozen = _run(fake_daemon(workdir), signals=False)
    assert threshold == (700, 10, 10)
    assert frozen == 0
