"""Host side: boot user-mode Linux and run tests/uml/esp (real ESP) inside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.uml import harness

pytestmark = pytest.mark.uml


def test_esp_suite_in_uml(tmp_path: Path) -> None:
    reason = harness.unavailable()
    if reason:
        pytest.skip(f"user-mode Linux unavailable: {reason}")
    res = harness.run_pytest(["tests/uml/esp", "-q", "-rs"], outdir=tmp_path / "uml")
    counts = res.counts()
    detail = f"{res.output}\n--- console ---\n{res.console[-4000:]}"
    assert res.returncode == 0, detail
    assert counts["tests"] > 0 and counts["failures"] == counts["errors"] == 0, detail
    assert counts["skipped"] == 0, f"ESP tests skipped inside UML:\n{detail}"
    print(f"UML: {counts['tests']} tests passed in {res.seconds:.1f}s")
