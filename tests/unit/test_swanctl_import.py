"""pqike import-swanctl: the swanctl.conf parser, the mapping onto pqike's model and what it
reports, credentials in swanctl's directories, and the real swanctl.conf files we have."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from pqike.cli import cli
from pqike.config import load_config, to_swanctl_conf
from pqike.config.swanctl_import import (
    Section,
    SwanctlSyntaxError,
    Value,
    import_swanctl,
    parse_swanctl,
    write_imported,
)
from pqike.pki import create_peer_pki
from tests.unit.shipped import shipped_configs

ROOT = Path(__file__).resolve().parents[2]
REAL = sorted(
    [
        *Path("/work/shared/captures").glob("*swanctl.conf"),
        *(ROOT / "tests" / "data").glob("*swanctl.conf"),
    ]
)


def _write(tmp: Path, text: str, name: str = "swanctl.conf") -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _value(section: Section, *keys: str) -> str:
    item: Value | Section = section
    for k in keys:
        assert isinstance(item, Section)
        item = item.items[k]
    assert isinstance(item, Value)
    return item.text


# --- parser ----------------------------------------------------------------------------------


def test_parser_sections_values_comments_and_quotes(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """# a comment
connections {
  home {  # trailing comment
    remote_addrs = 192.168.0.2, vpn.example.org   # comment after a value
    local { auth = psk
            id = carol@strongswan.org }
    remote { id = "C=CH, O=Cyber, CN=moon # not a comment }" }
  }
}
secrets { ike-1 { secret = "a \\"quoted\\" \\\\ secret
on two lines" } }
""",
    )
    root = parse_swanctl(path)
    assert _value(root, "connections", "home", "remote_addrs") == "192.168.0.2, vpn.example.org"
    assert _value(root, "connections", "home", "local", "id") == "carol@strongswan.org"
    assert _value(root, "connections", "home", "local", "auth") == "psk"
    assert _value(root, "connections", "home", "remote", "id") == (
        "C=CH, O=Cyber, CN=moon # not a comment }"
    )
    assert _value(root, "secrets", "ike-1", "secret") == 'a "quoted" \\ secret\non two lines'
    assert root.items["connections"].items["home"].items["local"].line == 5  # type: ignore[union-attr]


def test_parser_includes_relative_globs_and_merges_repeated_sections(tmp_path: Path) -> None:
    _write(tmp_path, "connections { b { version = 2 } }\n", "conf.d/b.conf")
    _write(tmp_path, "connections { a { version = 1 } }\n", "conf.d/a.conf")
    path = _write(tmp_path, "connections { a { proposals = default } }\ninclude conf.d/*.conf\n")
    root = parse_swanctl(path)
    conns = root.items["connections"]
    assert isinstance(conns, Section) and list(conns.items) == ["a", "b"]
    assert _value(root, "connections", "a", "proposals") == "default"
    assert _value(root, "connections", "a", "version") == "1"
    assert conns.items["b"].file == str(tmp_path / "conf.d" / "b.conf")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("connections {\n  home {\n", 3, "section 'home' is not closed"),
        ("a = 1\n}\n", 2, "'}' without a section to close"),
        ("connections {\n  home\n}\n", 3, "expected '=' or '{' after 'home'"),
        ('a = "open\n', 2, "unterminated string"),
    ],
)
def test_parser_errors_name_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SwanctlSyntaxError) as e:
        parse_swanctl(path)
    assert (e.value.file, e.value.line, e.value.message) == (str(path), line, message)


def test_include_loop_is_an_error_not_a_recursion(tmp_path: Path) -> None:
    path = _write(tmp_path, "include swanctl.conf\n")
    with pytest.raises(SwanctlSyntaxError, match="nested too deeply"):
        parse_swanctl(path)


# --- mapping ---------------------------------------------------------------------------------

UNSUPPORTED = """connections {
  home {
    remote_addrs = 192.168.0.2
    mobike = yes
    aggressive = no
    send_certreq = no
    dpd_delay = 30s
    local { auth = psk
            id = carol }
    local-2 { auth = eap-md5 }
    remote { auth = eap-tls }
    children {
      net { remote_ts = 10.1.0.0/16, 10.2.0.0/16
            updown = /usr/local/libexec/ipsec/_updown iptables
            mark_in = 42
            start_action = trap }
    }
  }
}
pools { p { addrs = 10.3.0.0/24, 10.4.0.0/24
            split_include = 10.1.0.0/16 } }
secrets { eap-x { secret = y } }
"""


def test_everything_not_carried_over_is_reported_with_file_line_and_why(tmp_path: Path) -> None:
    path = _write(tmp_path, UNSUPPORTED)
    imported = import_swanctl(path)
    reported = {(d.line, d.keypath): d.why for d in imported.dropped}
    assert all(d.file == str(path) for d in imported.dropped)
    assert reported == {
        (4, "connections.home.mobike"): "MOBIKE (RFC 4555) is not supported",
        (5, "connections.home.aggressive"): "IKEv1 only",
        (10, "connections.home.local-2"): (
            "more than one authentication round (RFC 4739) is not supported"
        ),
        (11, "connections.home.remote.auth"): "authentication 'eap-tls' is not supported",
        (14, "connections.home.children.net.updown"): "pqike runs no updown scripts",
        (15, "connections.home.children.net.mark_in"): (
            "XFRM marks, interface IDs and labels are not supported"
        ),
        (20, "pools.p.addrs"): "one range per pool: kept 10.3.0.0/24",
        (21, "pools.p.split_include"): "no such option in pqike",
        (22, "secrets.eap-x"): (
            "only ike, ppk and private secrets are supported (EAP, XAuth, tokens not)"
        ),
    }
    home = imported.tree["connections"]["home"]
    # what was carried over has the model's types: yes/no booleans, lists, durations
    assert home["send_certreq"] is False and home["mobike"] is False
    assert home["dpd_delay"] == "30s"
    assert home["children"]["net"]["remote_ts"] == ["10.1.0.0/16", "10.2.0.0/16"]
    assert home["children"]["net"]["start_action"] == "trap"
    assert home["local"] == {"auth": "psk", "id": "carol"}


def test_credentials_in_swanctl_directories_are_found_copied_and_load(tmp_path: Path) -> None:
    src = tmp_path / "swanctl"
    create_peer_pki({"carol": (src, "carol@strongswan.org")}, kind="ecdsa")
    _write(
        src,
        """connections { home { remote_addrs = 192.168.0.2
  local { certs = carolCert.pem
          id = carol@strongswan.org }
  remote { id = moon.strongswan.org }
  children { net { remote_ts = 10.1.0.0/16 } } } }
""",
    )
    out = tmp_path / "pqike"
    written = write_imported(src / "swanctl.conf", out)
    assert written.error is None and written.dropped == []
    assert sorted(written.copied) == [
        "private/carolKey.pem",
        "x509/carolCert.pem",
        "x509ca/caCert.pem",
    ]
    assert stat.S_IMODE(os.stat(out / "private" / "carolKey.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(out / "pqike.toml").st_mode) == 0o600
    config = load_config(out)
    assert config.connections["home"].local.certs == (str(out / "x509" / "carolCert.pem"),)
    assert config.trust_anchors() == (str(out / "x509ca" / "caCert.pem"),)
    assert len(config.credentials.keys) == 1
    with pytest.raises(FileExistsError):
        write_imported(src / "swanctl.conf", out)


@pytest.mark.parametrize("name", ["carol", "moon", "carol-psk", "moon-psk", "moon-ecdsa"])
def test_round_trip_through_the_renderer(tmp_path: Path, name: str) -> None:
    """pqike -> to_swanctl_conf -> import-swanctl -> pqike gives the same configuration: the
    importer and the renderer agree on every key."""
    configs = shipped_configs(tmp_path / "configs")
    config = load_config(configs / name)
    src = tmp_path / "swanctl"
    _write(src, to_swanctl_conf(config))
    for conn in config.connections.values():
        if conn.local.key:  # swanctl.conf names no key: swanctl loads private/
            (src / "private").mkdir(exist_ok=True)
            shutil.copy(conn.local.key, src / "private")
    written = write_imported(src / "swanctl.conf", tmp_path / "out")
    assert written.error is None and written.dropped == []
    again = load_config(tmp_path / "out")
    for cname, conn in config.connections.items():
        expected = msgspec.structs.replace(
            conn, local=msgspec.structs.replace(conn.local, key=None)
        )
        assert again.connections[cname] == expected
    assert again.pools == config.pools
    assert again.secrets.ike == config.secrets.ike and again.secrets.ppk == config.secrets.ppk


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_real_swanctl_conf_files_convert_completely(path: Path) -> None:
    written = write_imported(path, None)
    assert written.dropped == [] and written.error is None, written.error


def test_cli_prints_toml_and_reports_to_stderr(tmp_path: Path) -> None:
    path = _write(tmp_path, UNSUPPORTED)
    result = CliRunner().invoke(cli, ["import-swanctl", str(path)])
    assert result.exit_code == 0, result.output
    assert "[connections.home.children.net]" in result.stdout
    assert result.stdout.startswith(f"# converted from {path}")
    line = f"not carried over: {path}:14: connections.home.children.net.updown: "
    assert line in result.stderr


def test_cli_reports_a_result_that_does_not_load(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "connections { home { children { net { rekey_time = 1m\n life_time = 30s } } } }\n",
    )
    result = CliRunner().invoke(cli, ["import-swanctl", str(path)])
    assert result.exit_code == 1
    assert (
        f"{path} (converted): connections.home.children.net.life_time: life_time (30) must "
        "be greater than rekey_time (60)"
    ) in result.stderr
