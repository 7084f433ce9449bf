"""Host side: boot user-mode Linux and run tests/uml/e2e (pqike <-> pqike and pqike <->
strongSwan charon, both with real kernel XFRM/ESP) inside it.

The in-guest tests print their figures (setup time, ping loss and longest outage during
rekeying, netem rtt/loss); they are repeated here (``pytest -s`` shows them) and stay in
``tmp_path/uml/output.log``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.harness.strongswan import root_problem
from tests.uml import harness

pytestmark = pytest.mark.uml

_FIGURES = re.compile(r"(loss|lost|charon .* up|kernel SAs)")


def test_e2e_suite_in_uml(tmp_path: Path) -> None:
    reason = harness.unavailable()
    if reason:
        pytest.skip(f"user-mode Linux unavailable: {reason}")
    res = harness.run_pytest(
        ["tests/uml/e2e", "-v", "-s", "-rs"], timeout=900, mem="512M", outdir=tmp_path / "uml"
    )
    counts = res.counts()
    detail = f"{res.output}\n--- console ---\n{res.console[-4000:]}"
    assert res.returncode == 0, detail
    assert counts["tests"] > 0 and counts["failures"] == counts["errors"] == 0, detail
    # only the charon tests (plain and traps) may skip, and only without a strongSwan root
    allowed = 2 if root_problem() else 0
    assert counts["skipped"] <= allowed, f"end-to-end tests skipped inside UML:\n{detail}"
    figures = [line.strip() for line in res.output.splitlines() if _FIGURES.search(line)]
    print("\n" + "\n".join(figures))
    print(f"UML e2e: {counts} in {res.seconds:.1f}s ({res.outdir})")
