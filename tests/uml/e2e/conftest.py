"""Fixtures of the in-UML end-to-end tests (every test here gets the ``uml`` marker)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pqike.netns import Topology, remove_stale, topology
from tests.e2e.daemons import Pqike
from tests.uml.e2e.common import skip_reason

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.uml)


@pytest.fixture(autouse=True)
def keep_logs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """In the UML guest, copy each test's logs (daemon.log, charon.log, ...) next to the JUnit
    XML: the run's output directory is the only host path the guest can write, and tmp_path
    lives in the guest's tmpfs. Host: OUTDIR/logs/TEST/..."""
    yield
    xml = getattr(request.config.option, "xmlpath", None)
    if not (os.environ.get("PQIKE_UML_GUEST") and xml):
        return
    dest = Path(xml).parent / "logs" / request.node.name
    for f in tmp_path.rglob("*"):
        if f.is_file() and not f.is_symlink() and f.suffix in (".log", ".out", ".toml", ".conf"):
            target = dest / f.relative_to(tmp_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)


@pytest.fixture(scope="session")
def real_esp() -> None:
    """Skip unless this kernel does ESP (inside UML it does) and we are root."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    remove_stale()


@pytest.fixture
def topo(real_esp: None) -> Iterator[Topology]:
    with topology() as t:
        yield t


@pytest.fixture
def peers(topo: Topology, tmp_path: Path) -> tuple[Pqike, Pqike]:
    """(carol, moon) pqike peers (not started) in the topology's namespaces."""
    carol = Pqike("carol", topo.carol, tmp_path / "carol")
    return carol, Pqike("moon", topo.moon, tmp_path / "moon")
