"""Registry API, metadata and the `python -m kem` command."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kem import InvalidPeerValue, KeMethod, MethodUnavailable, UnknownMethod, registry
from kem.base import Kind, Sizes
from kem.errors import ProviderUnavailable
from kem.ids import KEYWORDS
from kem.sizes import SIZES

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

REPO = Path(__file__).resolve().parents[2]
LIBOQS_METHODS = {m for m in KeMethod if m.name.startswith(("KYBER_", "FRODO_", "BIKE_", "HQC_"))}


def test_one_entry_per_method() -> None:
    ids = [m.id for m in registry.all()]
    assert ids == sorted(m for m in KeMethod if m != KeMethod.NONE)
    for entry in registry.all():
        assert registry.get(entry.id) is entry
        assert registry.get(int(entry.id)) is entry
        for word in entry.keywords:
            assert registry.by_keyword(word) is entry
            assert registry.by_keyword(word.upper()) is entry
        assert entry.log_name == entry.id.name
        assert entry.keyword == entry.keywords[0]


def test_keywords_cover_every_entry() -> None:
    assert {registry.by_keyword(w).id for w in KEYWORDS} == {m.id for m in registry.all()}


def test_kinds_and_levels() -> None:
    for entry in registry.all():
        pq = entry.id >= KeMethod.ML_KEM_512
        assert entry.kind is (Kind.KEM if pq else Kind.DH)
        assert (entry.nist_level in (1, 3, 5)) if pq else entry.nist_level is None
    assert registry.get(KeMethod.HQC_L3).nist_level == 3
    assert registry.by_keyword("mlkem1024").nist_level == 5


@pytest.mark.parametrize("key", [0, 33, 9999, "GOST"])
def test_unknown_ids(key: object) -> None:
    with pytest.raises(UnknownMethod) as exc:
        if isinstance(key, str):
            registry.by_keyword(key)
        else:
            registry.get(key)  # type: ignore[arg-type]
    assert isinstance(exc.value, KeyError)
    assert "unknown key exchange method" in str(exc.value)


def test_unavailable_method_raises_with_reason() -> None:
    m = registry.get(KeMethod.ECP_224_BP)
    if m.available:
        pytest.skip("this cryptography has brainpoolP224r1")
    assert not m.available and "BrainpoolP224R1" in (m.unavailable_reason or "")
    assert m.provider is None and m.sizes == Sizes(56, 56, 28)  # the specification's
    for call in (m.initiator, lambda: m.respond(b"\0" * 56)):
        with pytest.raises(MethodUnavailable) as exc:
            call()
        assert exc.value.method == KeMethod.ECP_224_BP
        assert "ECP_224_BP unavailable" in str(exc.value)


def test_named_provider_not_in_list() -> None:
    with pytest.raises(MethodUnavailable, match="does not provide"):
        registry.get(KeMethod.CURVE_25519).backend("liboqs")


def test_error_messages() -> None:
    e = InvalidPeerValue(KeMethod.ML_KEM_768, 1184, 12, "wrong length")
    assert str(e) == "invalid ML_KEM_768 peer value: wrong length (expected 1184 bytes, got 12)"
    assert isinstance(e, ValueError)


def test_static_sizes() -> None:
    expect = {
        KeMethod.MODP_2048: (256, 256, 256),
        KeMethod.MODP_8192: (1024, 1024, 1024),
        KeMethod.MODP_1024_160: (128, 128, 128),
        KeMethod.ECP_256: (64, 64, 32),
        KeMethod.ECP_521: (132, 132, 66),
        KeMethod.ECP_512_BP: (128, 128, 64),
        KeMethod.CURVE_25519: (32, 32, 32),
        KeMethod.CURVE_448: (56, 56, 56),
        KeMethod.ML_KEM_768: (1184, 1088, 32),
        KeMethod.ML_KEM_1024: (1568, 1568, 32),
    }
    for method, sizes in expect.items():
        m = registry.get(method)
        if not m.available:
            continue
        s = m.sizes
        assert (s.public_value, s.responder_value, s.shared_secret) == sizes, method.name


_PAIRS = [(m.id, name) for m in registry.all() for name in m.provider_names]


@pytest.mark.parametrize(("method", "provider"), _PAIRS, ids=[f"{m.name}-{p}" for m, p in _PAIRS])
def test_size_table_is_the_providers(method: KeMethod, provider: str) -> None:
    """kem.sizes (what plans use without providers) == what each provider reports, asked
    directly (the registry itself refuses a provider that differs)."""
    module = importlib.import_module(registry._PROVIDER_MODULES[provider])
    try:
        backend = module.backend(method)
    except ProviderUnavailable as exc:
        pytest.skip(f"{method.name} via {provider} unavailable: {exc.reason}")
    assert backend.sizes == SIZES[method]


def test_table_covers_every_method() -> None:
    assert set(SIZES) == {m.id for m in registry.all()}


def test_provider_with_other_sizes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider whose sizes differ from the specification's is not used: peers (and plans)
    go by the specified sizes."""
    x25519 = registry.get(KeMethod.CURVE_25519).backend()
    fake = type(sys)("kem_test_fake_provider")
    fake.backend = lambda method: x25519  # 32-byte values claimed for HQC-1
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setitem(registry._PROVIDER_MODULES, "fake", fake.__name__)
    spec = registry._Spec(Kind.KEM, 1, ("fake",))
    entry = registry.Method(KeMethod.HQC_L1, spec)
    assert not entry.available
    assert entry.unavailable_reason == (
        f"{x25519.provider} reports sizes 32/32/32 for HQC_L1, not the specified 2241/4433/32"
    )
    assert entry.sizes == Sizes(2241, 4433, 32)


def test_backend_found_once_is_kept_per_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """backend() keeps the preferred backend it found (each KE payload asks), and asks again
    when the providers' table is another one, as a test hiding a provider makes it."""
    entry = registry.get(KeMethod.CURVE_25519)
    found = entry.backend()
    assert registry.get(int(KeMethod.CURVE_25519)) is entry  # by int, as a KE payload has it
    monkeypatch.setattr(entry, "_load", lambda name: pytest.fail("providers walked again"))
    assert entry.backend() is found
    monkeypatch.undo()
    monkeypatch.setattr(entry, "_backends", dict.fromkeys(entry.provider_names, "hidden"))
    assert not entry.available
    assert entry.unavailable_reason == "hidden"
    monkeypatch.undo()
    assert entry.backend() is found


def _run_kem(*args: str, env_extra: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, **env_extra}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "kem", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc, time.monotonic() - start


def test_cli_without_liboqs_is_fast_and_offline(tmp_path: Path) -> None:
    """OQS_INSTALL_PATH -> empty dir: no download attempt, liboqs methods unavailable."""
    empty = tmp_path / "no-oqs"
    empty.mkdir()
    # A `git` that records being called: liboqs-python's fallback would git-clone liboqs.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    marker = tmp_path / "git-called"
    (fake_bin / "git").write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    (fake_bin / "git").chmod(0o755)
    env = {"OQS_INSTALL_PATH": str(empty), "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    proc, elapsed = _run_kem("--json", env_extra=env)
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 20  # liboqs-python's own fallback alone sleeps 5 s before cloning
    assert not marker.exists()
    assert not list(empty.iterdir())
    rows = {r["id"]: r for r in json.loads(proc.stdout)}  # stdout is pure JSON
    for method in LIBOQS_METHODS:
        row = rows[int(method)]
        assert row["available"] is False
        assert str(empty) in row["unavailable_reason"]
        assert "OQS_INSTALL_PATH" in row["unavailable_reason"]
        assert "BIKE/HQC/FrodoKEM/Kyber need it" in row["unavailable_reason"]
    assert rows[int(KeMethod.CURVE_25519)]["available"] is True
    assert rows[int(KeMethod.ML_KEM_768)]["provider"] == "cryptography"
    assert "liboqs" not in proc.stderr.lower() or "not found" in proc.stderr


def test_cli_table_lists_everything() -> None:
    proc, _ = _run_kem(env_extra={})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "keyword", "strongSwan"]
    assert len(lines) == 1 + len(registry.all())
    assert any(line.startswith("36 ") and "mlkem768" in line and "1184" in line for line in lines)
    assert "faulthandler" not in proc.stdout  # liboqs-python's import-time log line


def test_import_is_lazy() -> None:
    code = (
        "import sys\nfrom kem import registry\n"
        "m = registry.get(36); registry.by_keyword('hqc1'); registry.all()\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in ('oqs', 'pqcrypto', 'cryptography')]\n"
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.strip() == "[]"


_MLKEM = (KeMethod.ML_KEM_512, KeMethod.ML_KEM_768, KeMethod.ML_KEM_1024)


def test_mlkem_prefers_the_fastest_provider() -> None:
    """liboqs before cryptography before pqcrypto (bench/README.md, "KE providers")."""
    for method in _MLKEM:
        assert registry.get(method).provider_names == ("liboqs", "cryptography", "pqcrypto")
    if registry.get(KeMethod.ML_KEM_768).provider_status()["liboqs"] == "ok":
        assert all(registry.get(m).backend().provider.name == "liboqs" for m in _MLKEM)


def test_providers_env_puts_a_provider_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.PROVIDERS_ENV, " pqcrypto, nonesuch,cryptography ")
    assert registry._preferred(("liboqs", "cryptography", "pqcrypto")) == (
        "pqcrypto",
        "cryptography",
        "liboqs",
    )
    assert registry._preferred(("cryptography-xdh",)) == ("cryptography-xdh",)
    monkeypatch.delenv(registry.PROVIDERS_ENV)
    assert registry._preferred(("liboqs", "cryptography")) == ("liboqs", "cryptography")


def test_providers_env_with_an_unknown_name_is_refused_not_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A typo in $PQIKE_KE_PROVIDERS must not leave the default order in place silently."""
    monkeypatch.setenv(registry.PROVIDERS_ENV, "cryptography, libqos")
    problem = registry.providers_env_problem()
    assert problem is not None
    assert registry.PROVIDERS_ENV in problem and "'libqos'" in problem
    assert "'cryptography'" not in problem  # only the wrong name is blamed
    assert all(name in problem for name in ("liboqs", "pqcrypto", "cryptography-xdh"))
    monkeypatch.setenv(registry.PROVIDERS_ENV, " pqcrypto,cryptography ")
    assert registry.providers_env_problem() is None
    monkeypatch.delenv(registry.PROVIDERS_ENV)
    assert registry.providers_env_problem() is None


def test_entry_points_refuse_an_unknown_provider_name() -> None:
    from click.testing import CliRunner

    from pqike.cli import cli

    proc, _ = _run_kem("--json", env_extra={registry.PROVIDERS_ENV: "nonesuch"})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "unknown provider 'nonesuch'" in proc.stderr and "Traceback" not in proc.stderr
    result = CliRunner().invoke(
        cli,
        ["list-sas", "--socket", "/nonexistent/pqike.sock"],
        env={registry.PROVIDERS_ENV: "nonesuch"},
    )
    assert result.exit_code == 2
    assert "unknown provider 'nonesuch'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_cli_names_the_provider_chosen_by_env() -> None:
    proc, _ = _run_kem("--json", env_extra={registry.PROVIDERS_ENV: "cryptography"})
    assert proc.returncode == 0, proc.stderr
    rows = {r["id"]: r for r in json.loads(proc.stdout)}
    assert rows[int(KeMethod.ML_KEM_768)]["provider"] == "cryptography"
    assert next(iter(rows[int(KeMethod.ML_KEM_768)]["providers"])) == "cryptography"


def test_loaded_backend_read_without_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a provider is loaded (or refused) its result never changes: each respond() of a
    handshake reads it without taking the method's lock."""
    m = registry.get(KeMethod.CURVE_25519)
    first = m.backend()

    class NoLock:
        def __enter__(self) -> None:
            raise AssertionError("lock taken for a loaded backend")

        def __exit__(self, *exc: object) -> None:  # pragma: no cover
            pass

    monkeypatch.setattr(m, "_lock", NoLock())
    assert m.backend() is first
    assert m.available
