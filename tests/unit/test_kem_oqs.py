"""liboqs provider: real algorithm paths (marked oqs; skipped with the reason without liboqs)
and the loader's guards (always run: they fake the environment in a subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kem import KeMethod, registry
from kem.providers import oqs_loader

REPO = Path(__file__).resolve().parents[2]


def _oqs_or_skip():
    status = oqs_loader.load()
    if status.module is None:
        pytest.skip(f"liboqs unavailable: {status.reason}")
    return status


# liboqs 0.16.0 (ikev2-facts §6): (public key, ciphertext, shared secret, algorithm)
SIZES_0_16 = {
    KeMethod.ML_KEM_512: (800, 768, 32, "ML-KEM-512"),
    KeMethod.KYBER_L1: (800, 768, 32, "Kyber512"),
    KeMethod.KYBER_L3: (1184, 1088, 32, "Kyber768"),
    KeMethod.KYBER_L5: (1568, 1568, 32, "Kyber1024"),
    KeMethod.BIKE_L1: (1541, 1573, 32, "BIKE-L1"),
    KeMethod.BIKE_L3: (3083, 3115, 32, "BIKE-L3"),
    KeMethod.BIKE_L5: (5122, 5154, 32, "BIKE-L5"),
    KeMethod.HQC_L1: (2241, 4433, 32, "HQC-1"),
    KeMethod.HQC_L3: (4514, 8978, 32, "HQC-3"),
    KeMethod.HQC_L5: (7237, 14421, 32, "HQC-5"),
    # eFrodoKEM: the unsalted sizes of strongSwan 6.0beta's frodo plugin
    KeMethod.FRODO_AES_L1: (9616, 9720, 16, "eFrodoKEM-640-AES"),
    KeMethod.FRODO_AES_L3: (15632, 15744, 24, "eFrodoKEM-976-AES"),
    KeMethod.FRODO_AES_L5: (21520, 21632, 32, "eFrodoKEM-1344-AES"),
    KeMethod.FRODO_SHAKE_L1: (9616, 9720, 16, "eFrodoKEM-640-SHAKE"),
    KeMethod.FRODO_SHAKE_L3: (15632, 15744, 24, "eFrodoKEM-976-SHAKE"),
    KeMethod.FRODO_SHAKE_L5: (21520, 21632, 32, "eFrodoKEM-1344-SHAKE"),
}


@pytest.mark.oqs
@pytest.mark.parametrize("method", list(SIZES_0_16), ids=lambda m: m.name)
def test_liboqs_sizes_and_levels(method: KeMethod) -> None:
    status = _oqs_or_skip()
    backend = registry.get(method).backend("liboqs")
    assert backend.provider.name == "liboqs"
    assert backend.provider.version == status.version
    assert backend.nist_level == registry.get(method).nist_level
    if not status.version.startswith("0.16."):
        pytest.skip(f"size table is for liboqs 0.16, have {status.version}")
    pk, ct, ss, alg = SIZES_0_16[method]
    assert backend.algorithm == alg
    s = backend.sizes
    assert (s.public_value, s.responder_value, s.shared_secret) == (pk, ct, ss)


@pytest.mark.oqs
def test_liboqs_provider_info() -> None:
    status = _oqs_or_skip()
    info = registry.get(KeMethod.HQC_L1).provider
    assert info is not None and info.name == "liboqs" and info.version == status.version
    assert "HQC-1" in info.detail and status.python_version in info.detail
    assert status.notes == ()  # no version-mismatch or other warnings captured


@pytest.mark.oqs
def test_liboqs_mlkem_seed_matches_cryptography() -> None:
    """Same FIPS 203 seed -> same encapsulation key in liboqs and cryptography."""
    _oqs_or_skip()
    entry = registry.get(KeMethod.ML_KEM_768)
    if entry.provider_status()["cryptography"] != "ok":
        pytest.skip("cryptography has no ML-KEM-768 here")
    seed = bytes(range(64))
    a = entry.backend("liboqs").initiator_from_seed(seed)
    b = entry.backend("cryptography").initiator_from_seed(seed)
    assert a.public_value == b.public_value


# --- loader guards, in subprocesses with a faked install dir ------------------------------

_PROBE = (
    "import json; from kem.providers import oqs_loader as L; s = L.load();"
    "print(json.dumps({'ok': s.module is not None, 'reason': s.reason, 'version': s.version}))"
)


def _probe(install: Path) -> tuple[dict, str]:
    env = {**os.environ, "OQS_INSTALL_PATH": str(install)}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout  # nothing else on stdout (no liboqs-python log line)
    return json.loads(lines[0]), proc.stderr


def test_loader_empty_dir(tmp_path: Path) -> None:
    result, _ = _probe(tmp_path)
    assert not result["ok"]
    assert result["reason"].startswith(f"liboqs not found in {tmp_path} (OQS_INSTALL_PATH)")


def test_loader_versioned_file_without_symlink(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "liboqs.so.9").write_bytes(b"")
    result, _ = _probe(tmp_path)
    assert not result["ok"]
    assert "liboqs.so.9 but no liboqs.so" in result["reason"]


def test_loader_broken_library(tmp_path: Path) -> None:
    (tmp_path / "lib64").mkdir()
    (tmp_path / "lib64" / "liboqs.so").write_bytes(b"not an ELF file")
    result, _ = _probe(tmp_path)
    assert not result["ok"]
    assert result["reason"].startswith("cannot load")


def test_loader_version_mismatch(tmp_path: Path) -> None:
    """A liboqs whose major.minor differs from liboqs-python's is refused, before import."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a fake liboqs")
    (tmp_path / "lib").mkdir()
    src = tmp_path / "fake.c"
    src.write_text('const char *OQS_version(void) { return "0.1.0"; }\n')
    subprocess.run(
        [cc, "-shared", "-fPIC", "-o", str(tmp_path / "lib" / "liboqs.so"), str(src)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    result, _ = _probe(tmp_path)
    assert not result["ok"]
    try:
        import importlib.metadata

        importlib.metadata.version("liboqs-python")
    except importlib.metadata.PackageNotFoundError:
        assert "liboqs-python not installed" in result["reason"]
    else:
        assert "liboqs 0.1.0" in result["reason"] and "does not match" in result["reason"]


# --- where liboqs is looked for: OQS_INSTALL_PATH, the scripts/liboqs.sh cache, ~/_oqs --------


def _as_user(monkeypatch: pytest.MonkeyPatch, home: Path, xdg: Path | None = None) -> None:
    """Make oqs_loader see a non-root user with this home (and XDG cache) directory."""
    monkeypatch.delenv("OQS_INSTALL_PATH", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", str(home))
    if xdg is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))


def test_search_path_without_liboqs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _as_user(monkeypatch, tmp_path)
    monkeypatch.setattr(oqs_loader, "SYSTEM_CACHE", tmp_path / "system")
    user_cache = tmp_path / ".cache" / "pqike" / "liboqs-0.16.0"
    assert oqs_loader.cache_prefix() == user_cache
    assert [p for p, _ in oqs_loader.search_path()] == [
        user_cache,
        tmp_path / "system" / "liboqs-0.16.0",
        tmp_path / "_oqs",
    ]
    path, reason = oqs_loader.find_library()
    assert path is None
    assert reason.startswith(f"liboqs not found in {user_cache} or ")
    assert "scripts/liboqs.sh" in reason and "OQS_INSTALL_PATH" in reason
    assert oqs_loader.install_dir() == (user_cache, "cache")  # where the script would build


def test_search_path_prefers_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _as_user(monkeypatch, tmp_path, xdg=tmp_path / "xdg")
    monkeypatch.setattr(oqs_loader, "SYSTEM_CACHE", tmp_path / "system")
    for root in (tmp_path / "system" / "liboqs-0.16.0", tmp_path / "_oqs"):
        (root / "lib").mkdir(parents=True)
        (root / "lib" / "liboqs.so").write_bytes(b"")
    assert oqs_loader.install_dir() == (tmp_path / "system" / "liboqs-0.16.0", "cache")
    user = tmp_path / "xdg" / "pqike" / "liboqs-0.16.0"
    (user / "lib64").mkdir(parents=True)
    (user / "lib64" / "liboqs.so").write_bytes(b"")
    assert oqs_loader.find_library() == (user / "lib64" / "liboqs.so", "")
    monkeypatch.setenv("OQS_INSTALL_PATH", str(tmp_path / "_oqs"))  # explicit: only there
    assert oqs_loader.search_path() == [(tmp_path / "_oqs", "OQS_INSTALL_PATH")]


def _script_prefix(env: dict[str, str], user: str | None = None) -> str:
    cmd = ["bash", str(REPO / "scripts" / "liboqs.sh"), "--prefix"]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=True)
    return proc.stdout.strip()


def test_script_prefix_is_the_loaders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/liboqs.sh --prefix (what pq-strongswan and the Makefile use) == cache_prefix()."""
    env = {k: v for k, v in os.environ.items() if k not in ("OQS_INSTALL_PATH", "XDG_CACHE_HOME")}
    monkeypatch.delenv("OQS_INSTALL_PATH", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert _script_prefix(env) == str(oqs_loader.cache_prefix())
    assert _script_prefix({**env, "OQS_INSTALL_PATH": f"{tmp_path}/"}) == str(tmp_path)
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return  # the non-root rule needs a switch of user
    for xdg in (None, tmp_path / "xdg"):
        user_env = {**env, "HOME": str(tmp_path)}
        if xdg is not None:
            user_env["XDG_CACHE_HOME"] = str(xdg)
        _as_user(monkeypatch, tmp_path, xdg)
        assert _script_prefix(user_env, user="65534") == str(oqs_loader.cache_prefix())


@pytest.mark.oqs
def test_loader_hands_the_cache_to_liboqs_python(tmp_path: Path) -> None:
    """A liboqs found in the cache (no OQS_INSTALL_PATH) is what liboqs-python loads, and the
    environment is left as it was."""
    real, _ = oqs_loader.find_library()
    if real is None:
        pytest.skip("liboqs unavailable")
    cache = tmp_path / "xdg" / "pqike" / "liboqs-0.16.0" / "lib"
    cache.mkdir(parents=True)
    (cache / "liboqs.so").symlink_to(real.resolve())
    code = (
        "import json, os; os.geteuid = lambda: 1000\n"
        "from kem.providers import oqs_loader as L; s = L.load()\n"
        "print(json.dumps({'ok': s.module is not None, 'reason': s.reason, 'lib': s.library,"
        " 'notes': s.notes, 'env': os.environ.get('OQS_INSTALL_PATH')}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OQS_INSTALL_PATH"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(proc.stdout)
    assert result == {
        "ok": True,
        "reason": None,
        "lib": str(cache / "liboqs.so"),
        "notes": [],
        "env": None,
    }
