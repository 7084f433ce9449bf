"""Renderings: `swanctl --list-conns` (reference walkthrough) and swanctl.conf round trips."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pqike.config import (
    Connection,
    describe_connections,
    load_config,
    to_strongswan_conf,
    to_swanctl_conf,
)
from pqike.config.decode import Context, decode_named
from pqike.pki import create_peer_pki
from tests.unit.shipped import IDS, shipped_configs

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/ plus the certificates and keys they name."""
    return shipped_configs(tmp_path_factory.mktemp("configs"))


# `swanctl --list-conns` output from reference 004 (pq-strongswan walkthrough)
CAROL_LIST_CONNS = """\
home: IKEv2, no reauthentication, rekeying every 1800s
  local:  %any
  remote: 192.168.0.2
  local public key authentication:
    id: carol@strongswan.org
    certs: C=CH, O=Cyber, CN=carol@strongswan.org
  remote public key authentication:
    id: moon.strongswan.org
  net: TUNNEL, rekeying every 1200s
    local:  dynamic
    remote: 10.1.0.0/16
  host: TUNNEL, rekeying every 1200s
    local:  dynamic
    remote: dynamic
"""
MOON_LIST_CONNS = """\
rw: IKEv2, no reauthentication, rekeying every 14400s
  local:  %any
  remote: %any
  local public key authentication:
    id: moon.strongswan.org
    certs: C=CH, O=Cyber, CN=moon.strongswan.org
  remote public key authentication:
    cacerts: C=CH, O=Cyber, CN=Cyber Root CA
  net: TUNNEL, rekeying every 3600s
    local:  10.1.0.0/24
    remote: dynamic
  host: TUNNEL, rekeying every 3600s
    local:  dynamic
    remote: dynamic
"""


@pytest.mark.parametrize(
    ("name", "expected"), [("carol", CAROL_LIST_CONNS), ("moon", MOON_LIST_CONNS)]
)
def test_list_conns_matches_reference(tmp_path: Path, name: str, expected: str) -> None:
    shutil.copy(CONFIGS / name / "pqike.toml", tmp_path / "pqike.toml")
    # the walkthrough's subjects: C=CH, O=Cyber, CN=<id>, CA "Cyber Root CA" (Ed25519 stands
    # in for ML-DSA, the listing shows subjects only)
    create_peer_pki({name: (tmp_path, IDS[name])}, kind="ed25519")
    assert describe_connections(load_config(tmp_path)) == expected


def test_list_conns_without_cert_files_shows_paths_and_psk() -> None:
    out = describe_connections(load_config(CONFIGS / "carol-psk"))
    assert "  local pre-shared key authentication:\n    id: carol@strongswan.org\n" in out
    # list-conns --config before `pqike pki` ran: the paths stand in for the subjects
    out = describe_connections(load_config(CONFIGS / "carol", require_files=False))
    assert f"    certs: {CONFIGS / 'carol/x509/carolCert.pem'}\n" in out


# --- a minimal reader of strongswan.conf syntax, to check what we emit --------------------

_TOKEN = re.compile(
    r'\s*(?:(#[^\n]*)|([{}])|([^\s={}#]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\n]*)'
    r"|([^\s={}#]+)\s*(?=\{))"
)


def parse_swanctl(text: str) -> dict[str, Any]:
    root: dict[str, Any] = {}
    stack = [root]
    pos = 0
    pending: str | None = None
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        assert m, f"unparsable at {text[pos : pos + 40]!r}"
        pos = m.end()
        comment, brace, key, value, section = m.groups()
        if comment:
            continue
        if section:
            pending = section
        elif brace == "{":
            assert pending is not None
            new: dict[str, Any] = {}
            assert pending not in stack[-1], f"duplicate section {pending}"
            stack[-1][pending] = new
            stack.append(new)
            pending = None
        elif brace == "}":
            stack.pop()
        else:
            value = value.strip()
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            stack[-1][key] = value
    assert len(stack) == 1, "unbalanced braces"
    return root


def _typed(section: dict[str, Any]) -> dict[str, Any]:
    """swanctl scalars back to TOML types: yes/no -> bool, digits -> int."""
    out: dict[str, Any] = {}
    for k, v in section.items():
        if isinstance(v, dict):
            out[k] = _typed(v)
        elif v in ("yes", "no") and k != "fragmentation":
            out[k] = v == "yes"
        elif v.isdigit():
            out[k] = int(v)
        else:
            out[k] = v
    return out


@pytest.mark.parametrize("name", ["carol", "moon", "carol-psk", "moon-psk", "moon-ecdsa"])
def test_swanctl_conf_round_trips(configs: Path, name: str) -> None:
    config = load_config(configs / name)
    text = to_swanctl_conf(config)
    parsed = parse_swanctl(text)
    ctx = Context("<swanctl.conf>", Path("/"))
    again = decode_named(_typed(parsed["connections"]), Connection, "connections", ctx)
    for cname, conn in config.connections.items():
        # swanctl.conf has no private key setting: it becomes a comment
        expected = msgspec.structs.replace(
            conn, local=msgspec.structs.replace(conn.local, key=None)
        )
        assert again[cname] == expected
        if conn.local.key:
            assert f"# private key: {conn.local.key}" in text
    assert set(parsed.get("pools", {})) == set(config.pools)
    for pname, pool in config.pools.items():
        assert parsed["pools"][pname]["addrs"] == pool.addrs


def test_swanctl_conf_key_settings_for_carol_psk() -> None:
    parsed = parse_swanctl(to_swanctl_conf(load_config(CONFIGS / "carol-psk")))
    home = parsed["connections"]["home"]
    assert home["version"] == "2"
    assert home["remote_addrs"] == "192.168.0.2"
    assert home["proposals"] == "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512"
    assert home["local"] == {"auth": "psk", "id": "carol@strongswan.org"}
    net = home["children"]["net"]
    assert (net["remote_ts"], net["rekey_time"], net["mode"]) == ("10.1.0.0/24", "3600", "tunnel")
    assert parsed["secrets"]["ike-1"] == {
        "id-1": "moon.strongswan.org",
        "id-2": "carol@strongswan.org",
        "secret": "qwerty-psk-0123456789",
    }


def test_swanctl_conf_quotes_what_needs_quoting(tmp_path: Path) -> None:
    (tmp_path / "pqike.toml").write_text(
        '[connections.c]\nremote_addrs = "192.0.2.1"\n'
        '[connections.c.local]\nauth = "psk"\nid = "C=CH, O=Cyber, CN=x y"\n'
        '[connections.c.remote]\nauth = "psk"\n'
        '[secrets.ike-a]\nsecret = "a \\"quoted\\" # secret, 0123456789"\n'
    )
    config = load_config(tmp_path)
    parsed = parse_swanctl(to_swanctl_conf(config))
    assert parsed["connections"]["c"]["local"]["id"] == "C=CH, O=Cyber, CN=x y"
    assert parsed["secrets"]["ike-a"]["secret"] == 'a "quoted" # secret, 0123456789'
    with pytest.raises(KeyError):
        to_swanctl_conf(config, ["nope"])


def test_strongswan_conf_carries_daemon_settings(configs: Path) -> None:
    parsed = parse_swanctl(to_strongswan_conf(load_config(configs / "carol")))
    charon = parsed["charon"]
    assert (charon["fragment_size"], charon["max_packet"]) == ("1480", "30000")
    assert (charon["send_vendor_id"], charon["prefer_configured_proposals"]) == ("yes", "no")
    assert charon["retransmit_tries"] == "5" and charon["retransmit_base"] == "1.8"
    assert charon["filelog"]["stderr"]["default"] == "1"
