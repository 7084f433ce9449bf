"""Fixtures for interop tests against strongSwan 6.x peers in network namespaces.

Every test below tests/interop/ gets the ``interop`` marker; the fixtures skip (with the
precise reason) when this machine can't run them: not root, no strongSwan root, no TUN device,
missing tools.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.harness import netns as nsh
from tests.harness.strongswan import Charon, charon_pids, leaked_mounts, root_dir, root_problem

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.interop)


def interop_skip_reason() -> str | None:
    """Why interop tests can't run here, or None."""
    if os.geteuid() != 0:
        return "not root: interop tests need network namespaces, mounts and chroot"
    problem = root_problem()
    if problem:
        return problem
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun: kernel-libipsec needs a TUN device"
    for tool in ("nsenter", "unshare", "mount", "chroot"):
        if not shutil.which(tool):
            return f"{tool} missing (util-linux/coreutils)"
    return None


@pytest.fixture(scope="session")
def interop_env() -> Path:
    """The strongSwan root, or skip with the reason."""
    reason = interop_skip_reason()
    if reason:
        pytest.skip(reason)
    nsh.remove_stale()  # namespaces (and charons) of earlier, killed runs
    return root_dir()


@pytest.fixture
def topo(interop_env):
    """carol 192.168.0.3 <-> moon 192.168.0.2 (+ intranet 10.1.0.1/24), fresh per test."""
    with nsh.topology() as t:
        yield t
        leftovers = {ns: nsh.ns_pids(ns) for ns in t.namespaces}
    # the namespaces are gone now; nothing may have been left running in them
    assert not any(leftovers.values()), f"processes left in namespaces: {leftovers}"


@pytest.fixture
def charon(interop_env, topo, tmp_path):
    """Factory: charon(name, netns, swanctl_conf, **Charon options) -> started Charon.

    Each instance lives in tmp_path/<name>; all are stopped at teardown (before ``topo`` is
    torn down, which this fixture depends on), after which no mount below the root and none of
    their processes may remain."""
    started: list[Charon] = []

    def make(name: str, netns: str, swanctl_conf: str, **kw) -> Charon:
        c = Charon(name, netns, swanctl_conf, tmp_path / name, root=interop_env, **kw)
        started.append(c)
        return c.start()

    yield make
    pids = [c.pid for c in started]
    for c in started:
        c.stop()
    assert not leaked_mounts(interop_env), f"mounts leaked: {leaked_mounts(interop_env)}"
    alive = set(pids) & set(charon_pids())
    assert not alive, f"charon processes left: {alive}"


@pytest.fixture
def capture_dir(tmp_path_factory) -> Path:
    """Where tests keep their pcaps (PQIKE_PCAP_DIR if set, else a pytest temp dir)."""
    d = os.environ.get("PQIKE_PCAP_DIR")
    if d:
        Path(d).mkdir(parents=True, exist_ok=True)
        return Path(d)
    return tmp_path_factory.mktemp("pcaps")
