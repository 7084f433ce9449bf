"""Options pqike does not implement are refused at load, with the file, the key and how to
fix the configuration, rather than accepted and ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from pqike.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CAROL_PSK = (CONFIGS / "carol-psk" / "pqike.toml").read_text()


def _with(tmp_path: Path, section: str, line: str) -> Path:
    assert section in CAROL_PSK, section
    f = tmp_path / "pqike.toml"
    f.write_text(CAROL_PSK.replace(section, f"{section}\n{line}", 1))
    return f


def test_mobike_true_is_refused(tmp_path: Path) -> None:
    """strongSwan's default is mobike = yes, so a converted swanctl.conf often says so;
    pqike would neither send MOBIKE_SUPPORTED nor follow an address change."""
    f = _with(tmp_path, "[connections.home]", "mobike = true")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert (e.value.file, e.value.keypath) == (str(f), "connections.home.mobike")
    assert e.value.message.startswith("not supported: ")
    assert "RFC 4555" in e.value.message and "set mobike = false" in e.value.message


def test_mobike_false_and_absent_load(tmp_path: Path) -> None:
    _with(tmp_path, "[connections.home]", "mobike = false")
    assert load_config(tmp_path).connections["home"].mobike is False
    (tmp_path / "pqike.toml").write_text(CAROL_PSK)
    assert load_config(tmp_path).connections["home"].mobike is False


@pytest.mark.parametrize("value", [True, False])
def test_rsa_pss_loads(tmp_path: Path, value: bool) -> None:
    """daemon.rsa_pss is charon.rsa_pss (its effect: tests/exchange/test_rsa_pss.py)."""
    _with(tmp_path, "[daemon]", f"rsa_pss = {str(value).lower()}")
    assert load_config(tmp_path).daemon.rsa_pss is value
