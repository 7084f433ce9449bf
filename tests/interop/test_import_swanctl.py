"""Real swanctl.conf files, converted by ``pqike import-swanctl``, bring tunnels up against
strongSwan 6.1 running the other end's original file: the reference captures' carol and
moon (/work/shared/captures), the PPK capture's (tests/data) and the strongSwan baseline's
(tests/interop/test_strongswan_baseline.py), pqike in either role, with a ping through
pqike's userspace ESP and strongSwan's kernel-libipsec."""

from __future__ import annotations

from pathlib import Path

import pytest

from pqike.config.swanctl_import import import_swanctl
from tests.harness.strongswan import ping
from tests.interop import test_strongswan_baseline as baseline
from tests.interop.test_pqike_strongswan import (  # noqa: F401 - fixtures used by name
    Pair,
    pair,
    pqike,
    wait_agreement,
)

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = Path("/work/shared/captures")


def _sources() -> dict[str, tuple[str, str]]:
    """name -> (carol's swanctl.conf, moon's swanctl.conf) as text."""
    out = {"baseline": (baseline.carol_conf(), baseline.moon_conf())}
    for name, base in (
        ("capture-3mlkem", CAPTURES / "strongswan61-x25519-3mlkem-psk"),
        ("capture-ppk", ROOT / "tests" / "data" / "strongswan61-ppk-x25519-mlkem768-psk"),
    ):
        carol, moon = (Path(f"{base}.{peer}-swanctl.conf") for peer in ("carol", "moon"))
        if carol.exists() and moon.exists():
            out[name] = (carol.read_text(), moon.read_text())
    return out


SOURCES = _sources()


@pytest.mark.parametrize("role", ["initiator", "responder"])
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_converted_swanctl_conf_against_strongswan(pair, tmp_path, source, role):  # noqa: F811
    p: Pair = pair(role)
    carol_conf, moon_conf = SOURCES[source]
    ours, theirs = (carol_conf, moon_conf) if p.pq_initiator else (moon_conf, carol_conf)
    src = tmp_path / "swanctl" / "swanctl.conf"
    src.parent.mkdir()
    src.write_text(ours)
    imported = import_swanctl(src, relative=False)
    assert imported.dropped == [], imported.dropped
    tree = {"daemon": {"fragment_size": 1480}, **imported.tree}

    p.start_ss(theirs, fragment_size=1480)
    p.start_pq(tree, kernel="userspace")
    p.establish()
    r = ping(p.topo.carol, p.topo.moon_intranet, src="10.3.0.1", count=3)
    assert p.pq is not None
    assert r.returncode == 0 and " 0% packet loss" in r.stdout, f"{r.stdout}\n{p.pq.tail()}"
    (sa,) = p.pq.list_sas()
    (child,) = sa.children
    assert (child.packets_in, child.packets_out) == (3, 3), child
    if "ppk" in source:
        assert sa.ppk, sa  # "using PPK for PPK_ID"; list-sas shows /PPK
