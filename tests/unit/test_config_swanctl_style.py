"""What a hand-ported swanctl.conf needs from pqike.toml: yes/no booleans, bare certificate
and key names found in swanctl's x509/, x509ca/, private/, and every error of a load at
once (a 47-line swanctl.conf took five rounds when errors came one by one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pqike.config import ConfigError, load_config
from pqike.pki import create_peer_pki

PSK_CONN = """
[connections.home]
remote_addrs = ["192.168.0.2"]
{extra}
[connections.home.local]
auth = "psk"
id = "carol@strongswan.org"
[connections.home.remote]
auth = "psk"
id = "moon.strongswan.org"
[connections.home.children.net]
remote_ts = ["10.1.0.0/16"]
[secrets.ike-1]
secret = "a-long-enough-psk-0123456789"
"""


def _load(tmp_path: Path, text: str):
    (tmp_path / "pqike.toml").write_text(text)
    return load_config(tmp_path)


@pytest.mark.parametrize(
    ("value", "expected"), [('"yes"', True), ('"no"', False), ('"Yes"', True), ("true", True)]
)
def test_swanctl_yes_no_booleans(tmp_path: Path, value: str, expected: bool) -> None:
    extra = f"send_certreq = {value}\nencap = {value}"
    conn = _load(tmp_path, PSK_CONN.format(extra=extra)).connections["home"]
    assert conn.send_certreq is expected and conn.encap is expected


def test_a_string_that_is_not_a_boolean_is_still_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, PSK_CONN.format(extra='encap = "maybe"'))
    assert e.value.keypath == "connections.home.encap"


def test_bare_names_are_found_in_swanctl_directories(tmp_path: Path) -> None:
    create_peer_pki({"carol": (tmp_path, "carol@strongswan.org")}, kind="ecdsa")
    config = _load(
        tmp_path,
        """
[connections.home]
remote_addrs = ["192.168.0.2"]
[connections.home.local]
certs = ["carolCert.pem"]
id = "carol@strongswan.org"
key = "carolKey.pem"
[connections.home.remote]
cacerts = ["caCert.pem"]
[connections.home.children.net]
""",
    )
    auth = config.connections["home"]
    assert auth.local.certs == (str(tmp_path / "x509" / "carolCert.pem"),)
    assert auth.local.key == str(tmp_path / "private" / "carolKey.pem")
    assert auth.remote.cacerts == (str(tmp_path / "x509ca" / "caCert.pem"),)
    assert len(config.credentials.keys) == 1


def test_every_error_of_a_load_is_reported_together(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b.toml").write_text('[pools.p]\naddrs = "10.3.0.0/24"\nnbns = 1\n')
    text = PSK_CONN.format(extra='rekey_tme = "1h"\nfragmentation = "sometimes"')
    text += '[connections.home.children.host]\nmode = "beet"\n[secrets.eap-1]\nsecret = "x"\n'
    text += '[daemon]\nport = "five hundred"\n'
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    found = {(Path(err.file).name, err.keypath) for err in e.value.errors}
    assert found == {
        ("pqike.toml", "daemon.port"),
        ("pqike.toml", "connections.home.rekey_tme"),
        ("pqike.toml", "connections.home.fragmentation"),
        ("pqike.toml", "connections.home.children.host.mode"),
        ("pqike.toml", "secrets.eap-1"),
        ("b.toml", "pools.p.nbns"),
    }
    assert len(str(e.value).splitlines()) == 6
    assert "did you mean 'rekey_time'" in str(e.value)


def test_semantic_errors_are_reported_together_too(tmp_path: Path) -> None:
    """Checks across sections (once every value decoded) are collected as well."""
    text = PSK_CONN.format(extra='pools = ["nowhere"]')
    text += "[connections.other]\nmobike = true\n[connections.other.children.c]\n"
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    assert {err.keypath for err in e.value.errors} == {
        "connections.home.pools[0]",
        "connections.other.mobike",
        "connections.other.local.certs",
    }
