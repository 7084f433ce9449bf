"""Loading pqike configs: shipped scenarios, strongSwan defaults, durations, layout, purity."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import msgspec
import pytest

from pqike.auth.keys import load_private_key, private_key_pem, spki_der
from pqike.config import (
    Child,
    Config,
    ConfigError,
    Connection,
    Daemon,
    format_duration,
    load_config,
    parse_duration,
)
from pqike.pki import create_peer_pki, generate_key
from tests.unit.shipped import shipped_configs

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHIPPED = sorted(p.name for p in CONFIGS.iterdir() if (p / "pqike.toml").is_file())


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/ plus the certificates and keys they name."""
    return shipped_configs(tmp_path_factory.mktemp("configs"))


def test_all_scenarios_are_shipped() -> None:
    assert set(SHIPPED) >= {"carol", "moon", "carol-psk", "moon-psk", "carol-ecdsa", "moon-ecdsa"}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_loads_cleanly(configs: Path, name: str) -> None:
    config = load_config(configs / name)
    assert config.warnings == ()
    assert len(config.connections) == 1
    first_line = (CONFIGS / name / "pqike.toml").read_text().splitlines()[0]
    assert first_line.startswith(f"# {name}: ")  # the one-line README


def test_carol_matches_reference_walkthrough(configs: Path) -> None:
    c = load_config(configs / "carol")
    home = c.connections["home"]
    assert home.remote_addrs == ("192.168.0.2",) and home.vips == ("0.0.0.0",)
    assert home.proposals == ("aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3",)
    assert (home.rekey_time, home.over_time, home.rand_time) == (1800, 180, 180)
    assert home.life_time == 1980
    net, host = home.children["net"], home.children["host"]
    assert net.remote_ts == ("10.1.0.0/16",) and net.local_ts == ("dynamic",)
    assert (net.rekey_time, net.life_time, net.rand_time) == (1200, 1320, 120)
    assert host.esp_proposals == ("aes256-sha256-modp3072-ke1_frodoa3-ke2_bike3",)
    assert net.pfs_groups == ("x25519", "ke1_kyber3", "ke2_bike3", "ke3_hqc3")
    assert host.pfs_groups == ("modp3072", "ke1_frodoa3", "ke2_bike3")
    # paths are relative to the config file's directory
    assert home.local.certs == (str(configs / "carol/x509/carolCert.pem"),)
    assert home.local.key == str(configs / "carol/private/carolKey.pem")
    assert c.trust_anchors("home") == (str(configs / "carol/x509ca/caCert.pem"),)
    assert (c.daemon.fragment_size, c.daemon.max_packet) == (1480, 30000)


def test_moon_pool_and_alternatives(configs: Path) -> None:
    c = load_config(configs / "moon")
    rw = c.connections["rw"]
    assert rw.pools == ("rw_pool",)
    assert str(c.pools["rw_pool"].bounds()[0]) == "10.3.0.0"
    assert rw.children["net"].local_ts == ("10.1.0.0/24",)
    # keN_none alternatives are options, not PFS groups
    assert "ke4_none" not in rw.children["net"].pfs_groups
    assert "ke4_hqc5" in rw.children["net"].pfs_groups
    assert c.trust_anchors("rw") == (str(configs / "moon/x509ca/caCert.pem"),)


def test_psk_variant_matches_capture() -> None:
    carol = load_config(CONFIGS / "carol-psk")
    moon = load_config(CONFIGS / "moon-psk")
    assert carol.psk("carol@strongswan.org", "moon.strongswan.org") == b"qwerty-psk-0123456789"
    assert moon.psk("moon.strongswan.org", "carol@strongswan.org") == b"qwerty-psk-0123456789"
    assert moon.connections["rw"].local_addrs == ("192.168.0.2",)
    assert carol.connections["home"].proposals == (
        "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512",
    )


def test_strongswan_defaults() -> None:
    # strongSwan conf/options/charon.opt (strongswan.conf(5)) and
    # docs.strongswan.org/docs/latest/config/retransmission.html
    d = Daemon()
    assert (d.port, d.port_nat_t, d.fragment_size, d.max_packet) == (500, 4500, 1280, 10000)
    assert (d.retransmit_tries, d.retransmit_timeout, d.retransmit_base) == (5, 4.0, 1.8)
    assert (d.retransmit_jitter, d.retransmit_limit) == (0, 0)
    assert (d.cookie_threshold, d.block_threshold, d.half_open_timeout) == (10, 5, 30)
    assert d.log.default == 1 and d.kernel == "auto"
    assert d.rsa_pss is False  # charon.rsa_pss: PKCS#1 v1.5 unless told otherwise
    # swanctl.conf(5) / src/swanctl/swanctl.opt
    c = Connection()
    assert (c.version, c.local_addrs, c.remote_addrs) == (2, ("%any",), ("%any",))
    assert (c.local_port, c.remote_port, c.proposals) == (500, 500, ("default",))
    assert (c.rekey_time, c.over_time, c.rand_time, c.reauth_time) == (14400, 1440, 1440, 0)
    assert (c.send_certreq, c.send_cert, c.fragmentation, c.encap) == (
        True,
        "ifasked",
        "yes",
        False,
    )
    assert c.mobike is False  # strongSwan's is yes; pqike has no MOBIKE and refuses true
    assert (c.childless, c.keyingtries, c.unique, c.dpd_delay) == ("allow", 1, "no", 0)
    assert (c.local.auth, c.remote.auth) == ("pubkey", "pubkey")
    ch = Child()
    assert (ch.local_ts, ch.remote_ts, ch.esp_proposals, ch.mode) == (
        ("dynamic",),
        ("dynamic",),
        ("default",),
        "tunnel",
    )
    assert (ch.rekey_time, ch.life_time, ch.rand_time) == (3600, 3960, 360)
    assert (ch.rekey_bytes, ch.life_bytes, ch.rand_bytes) == (0, 0, 0)
    assert (ch.start_action, ch.close_action, ch.dpd_action) == ("none", "none", "clear")


def test_derived_lifetimes_follow_strongswan() -> None:
    # reauth_time set: rekey_time defaults to 0, over_time is 10 % of reauth_time
    c = Connection(reauth_time=7200)
    assert (c.rekey_time, c.over_time, c.rand_time, c.life_time) == (0, 720, 720, 7920)
    assert Child(rekey_time=1000, life_time=2000).rand_time == 1000  # life - rekey
    assert Child(rekey_bytes=1_000_000).life_bytes == 1_100_000
    assert Child(rekey_bytes=1_000_000).rand_bytes == 100_000


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20m", 1200),
        ("1h", 3600),
        ("30s", 30),
        ("3600", 3600),
        (3600, 3600),
        ("2d", 172800),
        (" 4h ", 14400),
        ("0", 0),
    ],
)
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["20x", "1.5h", "-5", -5, "h", "", True, 1.5, "20 m x"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (1200, 3600, 90, 0, 86400)] == [
        "20m",
        "1h",
        "90s",
        "0s",
        "1d",
    ]


def test_comma_string_lists_and_single_file(tmp_path: Path) -> None:
    f = tmp_path / "one.toml"
    f.write_text(
        '[connections.a]\nremote_addrs = "192.0.2.1, 192.0.2.2"\n'
        'proposals = "aes128-sha256-ecp256, aes256gcm16-prfsha384-x25519"\n'
        '[connections.a.local]\nauth = "psk"\n[connections.a.remote]\nauth = "psk"\n'
        '[connections.a.children.c]\nrekey_time = 600\nlife_time = "15m"\n'
        '[secrets.ike]\nsecret = "0x' + "ab" * 24 + '"\n'
    )
    c = load_config(f)
    a = c.connections["a"]
    assert a.remote_addrs == ("192.0.2.1", "192.0.2.2")
    assert a.proposals == ("aes128-sha256-ecp256", "aes256gcm16-prfsha384-x25519")
    assert (a.children["c"].life_time, a.children["c"].rand_time) == (900, 300)
    assert c.psk("x", "y") == b"\xab" * 24  # a secret without ids matches anyone
    assert c.files == (str(f),)


def test_conf_d_merge_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "pqike.toml").write_text('[daemon]\nkernel = "none"\n')
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-gw.toml").write_text(
        '[connections.gw]\nremote_addrs = "gw.example.net"\n'
        '[connections.gw.local]\ncerts = "me.pem"\nkey = "/abs/key.pem"\n'
        '[connections.gw.remote]\nid = "gw.example.net"\n'
    )
    (tmp_path / "conf.d" / "20-pools.toml").write_text('[pools.p]\naddrs = "10.9.0.1-10.9.0.9"\n')
    c = load_config(tmp_path, require_files=False)  # paths only: me.pem is not there
    assert c.daemon.kernel == "none"
    assert c.connections["gw"].local.certs == (str(tmp_path / "conf.d" / "me.pem"),)
    assert c.connections["gw"].local.key == "/abs/key.pem"
    assert str(c.pools["p"].bounds()[1]) == "10.9.0.9"
    assert [Path(f).name for f in c.files] == ["pqike.toml", "10-gw.toml", "20-pools.toml"]


def _carol(tmp_path: Path, pki: bool = True) -> Path:
    (tmp_path / "pqike.toml").write_text((CONFIGS / "carol" / "pqike.toml").read_text())
    if pki:
        create_peer_pki({"carol": (tmp_path, "carol@strongswan.org")}, kind="ed25519")
    return tmp_path


def _problems(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as e:
        load_config(path)
    main = str(path / "pqike.toml")
    assert all(p.file == main for p in e.value.errors)
    assert str(e.value) == "\n".join(f"{main}: {p.keypath}: {p.message}" for p in e.value.errors)
    return [(p.keypath, p.message) for p in e.value.errors]


def test_missing_files_are_refused_all_of_them(tmp_path: Path) -> None:
    _carol(tmp_path, pki=False)
    missing = "cannot read: No such file or directory"
    assert _problems(tmp_path) == [
        ("connections.home.local.certs[0]", f"x509/carolCert.pem: {missing}"),
        ("authorities.strongswan.cacert", f"x509ca/caCert.pem: {missing}"),
        ("connections.home.local.key", f"private/carolKey.pem: {missing}"),
    ]
    # inspecting a config before `pqike pki` ran (list-conns/list-certs --config)
    config = load_config(tmp_path, require_files=False)
    assert config.connections["home"] and not config.credentials.certs


def test_unreadable_and_invalid_files_are_refused(tmp_path: Path) -> None:
    _carol(tmp_path)
    assert load_config(tmp_path).credentials.certs  # as `pqike pki` made them: fine
    cert, ca, key = "x509/carolCert.pem", "x509ca/caCert.pem", "private/carolKey.pem"
    (tmp_path / cert).unlink()
    (tmp_path / cert).mkdir()  # chmod 000 would not stop root: a directory cannot be read
    pem = b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"
    (tmp_path / ca).write_bytes(pem)
    (tmp_path / key).write_bytes(b"\x30\x03\x02\x01\x00")
    assert _problems(tmp_path) == [
        ("connections.home.local.certs[0]", f"{cert}: not a regular file"),
        ("authorities.strongswan.cacert", f"{ca}: not a PEM or DER X.509 certificate"),
        ("connections.home.local.key", f"{key}: not a PEM or DER private key"),
    ]


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    _carol(tmp_path)
    (tmp_path / "x509ca/caCert.pem").unlink()
    os.mkfifo(tmp_path / "x509ca/caCert.pem")  # nobody writes: a blocking read would hang
    assert _problems(tmp_path) == [
        ("authorities.strongswan.cacert", "x509ca/caCert.pem: not a regular file")
    ]


def test_private_key_must_belong_to_the_certificate(tmp_path: Path) -> None:
    _carol(tmp_path)
    other = generate_key("ed25519")
    (tmp_path / "private/carolKey.pem").write_bytes(private_key_pem(other))
    assert _problems(tmp_path) == [
        (
            "connections.home.local.key",
            "private/carolKey.pem: not the private key of certificate x509/carolCert.pem",
        )
    ]


def test_secrets_private_key_with_passphrase(tmp_path: Path) -> None:
    _carol(tmp_path)
    key = load_private_key((tmp_path / "private/carolKey.pem").read_bytes())
    (tmp_path / "private/carolKey.pem").write_bytes(private_key_pem(key, b"pass phrase"))
    text = (tmp_path / "pqike.toml").read_text().replace('key = "private/carolKey.pem"\n', "")
    text += '[secrets.private-carol]\nfile = "private/carolKey.pem"\n'
    (tmp_path / "pqike.toml").write_text(text)
    assert _problems(tmp_path) == [
        (
            "secrets.private-carol.file",
            "private/carolKey.pem: encrypted private key, and no secrets.private<suffix> "
            "entry gives its passphrase",
        ),
    ]
    (tmp_path / "pqike.toml").write_text(text + 'secret = "wrong"\n')
    assert _problems(tmp_path) == [
        ("secrets.private-carol.file", "private/carolKey.pem: wrong passphrase in secrets.private")
    ]
    (tmp_path / "pqike.toml").write_text(text + 'secret = "pass phrase"\n')
    creds = load_config(tmp_path).credentials
    cert = creds.certs[str(tmp_path / "x509/carolCert.pem")]
    assert spki_der(creds.key_for(cert)) == spki_der(key)  # found by its public key, as charon


def test_credentials_are_read_at_load_not_later(tmp_path: Path) -> None:
    _carol(tmp_path)
    config = load_config(tmp_path)
    path = str(tmp_path / "x509/carolCert.pem")
    der = config.credentials.certs[path].tbs_certificate_bytes
    (tmp_path / "x509/carolCert.pem").write_bytes(b"garbage")
    assert config.credentials.certs[path].tbs_certificate_bytes == der
    assert repr(config.credentials) == "Credentials(2 certificates, 1 private keys)"
    assert "PrivateKey" not in repr(config)


def test_structs_are_frozen_and_failed_load_changes_nothing(configs: Path, tmp_path: Path) -> None:
    good = load_config(configs / "carol")
    before = msgspec.to_builtins(good, enc_hook=repr)  # Credentials: certificate objects
    with pytest.raises(AttributeError):
        good.connections["home"].rekey_time = 5  # type: ignore[misc]
    bad = tmp_path / "pqike.toml"
    bad.write_text((CONFIGS / "carol" / "pqike.toml").read_text().replace('"30m"', '"30x"'))
    with pytest.raises(ConfigError):
        load_config(tmp_path)
    assert msgspec.to_builtins(good, enc_hook=repr) == before
    assert isinstance(good, Config)


def test_psk_lookup_prefers_the_most_specific_secret(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text(
        '[secrets.ike-any]\nsecret = "any-any-any-any-any-any"\n'
        '[secrets.ike-local]\nid = "me"\nsecret = "local-local-local-local"\n'
        '[secrets.ike-both]\nid-a = "me"\nid-b = "peer"\nsecret = "both-both-both-both-both"\n'
    )
    c = load_config(f)
    assert c.psk("me", "peer") == b"both-both-both-both-both"
    assert c.psk("me", "other") == b"local-local-local-local"
    assert c.psk("x", "y") == b"any-any-any-any-any-any"


@pytest.mark.parametrize("parser", ["pqike.proposal", "lexical"])
def test_proposal_validation_with_and_without_the_parser(
    parser: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pqike.config.proposals import validate_proposal

    if parser == "lexical":
        monkeypatch.setitem(sys.modules, "pqike.proposal", None)  # import fails
    validate_proposal("aes256-sha256-x25519-ke1_mlkem768-ke3_none", "ike")
    validate_proposal("aes256gcm16-modp3072-esn", "esp")
    validate_proposal("default", "esp")
    with pytest.raises(ValueError, match=r"^proposal token 'aes257' unknown$"):
        validate_proposal("aes257-sha256-x25519", "ike")
    with pytest.raises(ValueError, match="ke9_mlkem768"):
        validate_proposal("aes256-sha256-x25519-ke9_mlkem768", "ike")
    with pytest.raises(ValueError, match="key exchange"):
        validate_proposal("aes256-sha256", "ike")
