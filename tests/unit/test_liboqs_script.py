"""scripts/liboqs.sh, the liboqs build of `make test`/`make demo`: its refusals leave nothing
behind, and a cached build is a no-op. (The build itself runs in `make test`, before pytest.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "liboqs.sh"
# connection refused at once: no test ever reaches the network or builds
NO_UPSTREAM = "http://127.0.0.1:9/liboqs"


def _run(prefix: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PQIKE_LIBOQS_")}
    base.update(OQS_INSTALL_PATH=str(prefix), PQIKE_LIBOQS_UPSTREAM=NO_UPSTREAM, **env)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=base, capture_output=True, text=True, timeout=60
    )


def _left_behind(prefix: Path) -> list[str]:
    """What a refused build left in the prefix's directory (its lock file is expected)."""
    return sorted(p.name for p in prefix.parent.iterdir() if not p.name.endswith(".lock"))


def test_no_source_is_a_clear_error(tmp_path: Path) -> None:
    prefix = tmp_path / "cache" / "liboqs-0.16.0"
    r = _run(prefix)
    assert r.returncode == 1 and r.stdout == ""
    assert f"{NO_UPSTREAM} not reachable" in r.stderr
    assert "PQIKE_LIBOQS_TARBALL not set" in r.stderr
    assert _left_behind(prefix) == []


def test_wrong_tarball_is_refused(tmp_path: Path) -> None:
    prefix = tmp_path / "cache" / "liboqs-0.16.0"
    tarball = tmp_path / "liboqs-0.16.0.tar.gz"
    tarball.write_bytes(b"not the release")
    r = _run(prefix, PQIKE_LIBOQS_TARBALL=str(tarball))
    assert r.returncode == 1
    assert f"{tarball} has sha256 " in r.stderr and "expected 1b82e61e" in r.stderr
    assert _left_behind(prefix) == []


def test_foreign_install_is_left_alone(tmp_path: Path) -> None:
    """OQS_INSTALL_PATH may name a liboqs someone installed by hand: never replaced."""
    prefix = tmp_path / "oqs"
    (prefix / "lib").mkdir(parents=True)
    (prefix / "lib" / "liboqs.so").write_bytes(b"theirs")
    r = _run(prefix)
    assert r.returncode == 1 and "was not built by" in r.stderr
    assert (prefix / "lib" / "liboqs.so").read_bytes() == b"theirs"


def test_cached_build_is_a_no_op() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OQS_INSTALL_PATH"}
    prefix = subprocess.run(
        ["bash", str(SCRIPT), "--prefix"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    stamp = Path(prefix) / ".pqike-liboqs"
    if not stamp.is_file():
        pytest.skip(f"no liboqs built by scripts/liboqs.sh at {prefix}")
    before = stamp.stat().st_mtime_ns
    r = _run(Path(prefix))
    assert r.returncode == 0, r.stderr
    assert (r.stdout, r.stderr) == (f"{prefix}\n", "")
    assert stamp.stat().st_mtime_ns == before
    check = _run(Path(prefix), "--check")
    assert (
        check.returncode == 0 and "verified: liboqs 0.16.0: 18 KEMs, 5 signatures" in check.stderr
    )
