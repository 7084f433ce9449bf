"""``daemon.workers = 2`` with ``kernel = xfrm`` on a real kernel (inside UML): the namespace
scenario of tests/e2e/test_workers_netns.py, whose handshakes here carry CHILD_SAs that both
worker processes install in one kernel (SAs and policies, none clashing, none left after the
daemon stops). The host's kernel has no ESP, so this variant runs only here.

Run: ``scripts/uml-test.sh tests/uml/e2e/test_workers_xfrm.py -v`` (or tests/uml/test_uml_e2e.py).
"""

from __future__ import annotations

from pathlib import Path

from pqike.netns import Topology
from tests.e2e.test_workers_netns import two_workers


def test_two_xfrm_workers_behind_one_control_socket(topo: Topology, tmp_path: Path) -> None:
    two_workers(topo, tmp_path, "xfrm")
