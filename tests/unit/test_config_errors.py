"""Every ConfigError names the file, the key path and the problem; warnings don't stop loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from pqike.config import Config, ConfigError, load_config
from pqike.config import checks as checks_mod
from pqike.pki import create_peer_pki

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

CAROL = (CONFIGS / "carol" / "pqike.toml").read_text()
MOON = (CONFIGS / "moon" / "pqike.toml").read_text()
PSK = (CONFIGS / "carol-psk" / "pqike.toml").read_text()


def _fail(tmp_path: Path, text: str) -> ConfigError:
    f = tmp_path / "pqike.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    err = e.value
    assert err.file == str(f)
    where = f"{f}: {err.keypath}" if err.keypath else str(f)
    assert str(err) == f"{where}: {err.message}"
    return err


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    err = _fail(tmp_path, _edit(CAROL, 'rekey_time = "20m"', 'rekey_tme = "20m"'))
    assert err.keypath == "connections.home.children.net.rekey_tme"
    assert err.message == "unknown key 'rekey_tme' (did you mean 'rekey_time'?)"


def test_unknown_top_level_and_daemon_keys(tmp_path: Path) -> None:
    err = _fail(tmp_path, "[conections.x]\n")
    assert (err.keypath, err.message) == (
        "conections",
        "unknown key 'conections' (did you mean 'connections'?)",
    )
    err = _fail(tmp_path, "[daemon]\nfragment_sise = 1400\n")
    assert err.keypath == "daemon.fragment_sise" and "'fragment_size'" in err.message
    err = _fail(tmp_path, "[daemon.log]\nikee = 2\n")
    assert err.keypath == "daemon.log.ikee" and "'ike'" in err.message


def test_max_reassemblies_is_gone(tmp_path: Path) -> None:
    """Per-IKE_SA shares of reassembly_memory replaced it (pqike.sa.fragments): a config
    still naming it is refused rather than silently ignored."""
    err = _fail(tmp_path, "[daemon]\nmax_reassemblies = 64\n")
    assert err.keypath == "daemon.max_reassemblies" and "unknown key" in err.message


def test_reassembly_memory_must_hold_a_message_before_ike_auth(tmp_path: Path) -> None:
    """Unauthenticated IKE_SAs get a share of reassembly_memory; a fragmented IKE_AUTH of
    max_packet bytes must fit it, or every fragmented handshake would fail."""
    err = _fail(tmp_path, "[daemon]\nreassembly_memory = 65536\nmax_packet = 65535\n")
    assert err.keypath == "daemon.reassembly_memory"
    assert "less than one message of max_packet (65535)" in err.message


def test_invalid_duration(tmp_path: Path) -> None:
    err = _fail(tmp_path, _edit(CAROL, 'rekey_time = "30m"', 'rekey_time = "20x"'))
    assert err.keypath == "connections.home.rekey_time"
    assert err.message.startswith("invalid duration '20x'")


def test_unknown_proposal_token(tmp_path: Path) -> None:
    err = _fail(
        tmp_path,
        _edit(
            CAROL,
            '["aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3"]\nrekey_time = "20m"',
            '["aes257-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3"]\nrekey_time = "20m"',
        ),
    )
    assert err.keypath == "connections.home.children.net.esp_proposals[0]"
    assert err.message == "proposal token 'aes257' unknown"


def test_ike_proposal_needs_key_exchange(tmp_path: Path) -> None:
    err = _fail(
        tmp_path,
        _edit(
            PSK,
            'proposals = ["aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512"]',
            'proposals = "aes128-sha256-ecp256, aes256-sha256"',
        ),
    )
    assert err.keypath == "connections.home.proposals[1]"
    assert "key exchange" in err.message


def test_bad_traffic_selector(tmp_path: Path) -> None:
    err = _fail(tmp_path, _edit(CAROL, '"10.1.0.0/16"', '"10.1.0.0/16", "10.1.0.0/33"'))
    assert err.keypath == "connections.home.children.net.remote_ts[1]"
    assert err.message == "ts '10.1.0.0/33' is not a valid subnet"
    err = _fail(tmp_path, _edit(CAROL, '"10.1.0.0/16"', '"10.1.0.0/16[tcp/99999]"'))
    assert "invalid port" in err.message


def test_pool_overlap_and_missing_pool(tmp_path: Path) -> None:
    err = _fail(tmp_path, MOON + '\n[pools.more]\naddrs = "10.3.0.100-10.3.1.5"\n')
    assert err.keypath == "pools.more.addrs"
    assert err.message == "pool addrs overlap with pool 'rw_pool' (10.3.0.0/24)"
    err = _fail(tmp_path, _edit(MOON, 'pools = ["rw_pool"]', 'pools = ["rw_pool", "rw_pol"]'))
    assert err.keypath == "connections.rw.pools[1]"
    assert err.message == "pool 'rw_pol' is not defined in pools"
    err = _fail(tmp_path, _edit(MOON, 'addrs = "10.3.0.0/24"', 'addrs = "10.3.0.0/33"'))
    assert err.keypath == "pools.rw_pool.addrs" and "not a valid subnet" in err.message


def test_lifetimes_must_exceed_rekey_times(tmp_path: Path) -> None:
    err = _fail(
        tmp_path, _edit(CAROL, 'rekey_time = "20m"', 'rekey_time = "20m"\nlife_time = "10m"')
    )
    assert err.keypath == "connections.home.children.net.life_time"
    assert err.message == "life_time (600) must be greater than rekey_time (1200)"
    err = _fail(
        tmp_path, _edit(CAROL, 'rekey_time = "30m"', 'rekey_time = "30m"\nrand_time = "1h"')
    )
    assert err.keypath == "connections.home.rand_time"
    assert "must be less than rekey_time (1800)" in err.message


def test_only_ikev2(tmp_path: Path) -> None:
    err = _fail(tmp_path, _edit(CAROL, "version = 2", "version = 1"))
    assert err.keypath == "connections.home.version"
    assert err.message == "invalid value 1 (expected one of 2; only IKEv2 is supported)"


def test_type_and_enum_errors(tmp_path: Path) -> None:
    err = _fail(tmp_path, _edit(CAROL, 'auth = "pubkey"', 'auth = "eap"'))
    assert err.keypath == "connections.home.local.auth"
    assert err.message == "invalid value 'eap' (expected one of 'pubkey', 'psk')"
    err = _fail(tmp_path, '[daemon]\nmax_packet = "big"\n')
    assert (err.keypath, err.message) == ("daemon.max_packet", "Expected `int`, got `str`")
    err = _fail(tmp_path, "[daemon.log]\nenc = 5\n")
    assert err.keypath == "daemon.log.enc" and "<= 4" in err.message
    err = _fail(tmp_path, '[daemon]\nkernel = "netlink"\n')
    assert "'auto', 'xfrm', 'userspace', 'none'" in err.message


def test_addresses_and_vips(tmp_path: Path) -> None:
    err = _fail(tmp_path, _edit(CAROL, '"192.168.0.2"', '"192.168.0.300"'))
    assert err.keypath == "connections.home.remote_addrs[0]" and "not a valid" in err.message
    err = _fail(tmp_path, _edit(CAROL, '"0.0.0.0"', '"any"'))
    assert err.keypath == "connections.home.vips[0]"


def test_auth_consistency(tmp_path: Path) -> None:
    err = _fail(tmp_path, _edit(CAROL, 'key = "private/carolKey.pem"\n', ""))
    assert err.keypath == "connections.home.local.key"
    err = _fail(
        tmp_path,
        _edit(PSK, 'auth = "psk"\nid = "carol', 'auth = "psk"\ncerts = "a.pem"\nid = "carol'),
    )
    assert err.keypath == "connections.home.local.certs"
    assert "only applies to pubkey" in err.message


def test_secrets_errors(tmp_path: Path) -> None:
    err = _fail(tmp_path, _edit(PSK, "secret = ", "secrte = "))
    assert err.keypath == "secrets.ike-1.secrte" and "did you mean 'secret'" in err.message
    err = _fail(tmp_path, PSK + '\n[secrets.eap-x]\nsecret = "x"\n')
    assert err.keypath == "secrets.eap-x" and "unknown secret type" in err.message
    err = _fail(tmp_path, _edit(PSK, '"qwerty-psk-0123456789"', '"0xZZ"'))
    assert err.keypath == "secrets.ike-1.secret" and "hex" in err.message


def test_toml_syntax_error_names_file(tmp_path: Path) -> None:
    err = _fail(tmp_path, "[connections.home\n")
    assert err.keypath == "" and err.message.startswith("TOML syntax:")


def test_missing_directory_or_main_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no pqike\.toml"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")


def test_conf_d_duplicates_and_daemon(tmp_path: Path) -> None:
    (tmp_path / "pqike.toml").write_text(MOON)
    (tmp_path / "conf.d").mkdir()
    extra = tmp_path / "conf.d" / "x.toml"
    extra.write_text('[pools.rw_pool]\naddrs = "10.4.0.0/24"\n')
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert e.value.file == str(extra) and e.value.keypath == "pools.rw_pool"
    assert "already defined in" in e.value.message
    extra.write_text("[daemon]\nport = 5000\n")
    with pytest.raises(ConfigError, match=r"daemon settings belong in pqike\.toml"):
        load_config(tmp_path)


def test_semantic_error_names_the_defining_file(tmp_path: Path) -> None:
    (tmp_path / "pqike.toml").write_text(MOON)
    (tmp_path / "conf.d").mkdir()
    extra = tmp_path / "conf.d" / "x.toml"
    extra.write_text('[pools.other]\naddrs = "10.3.0.128/25"\n')
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert (e.value.file, e.value.keypath) == (str(extra), "pools.other.addrs")


# --- warnings -------------------------------------------------------------------------


def _load(tmp_path: Path, text: str) -> Config:
    (tmp_path / "pqike.toml").write_text(text)
    return load_config(tmp_path)


def test_short_psk_warns(tmp_path: Path) -> None:
    config = _load(tmp_path, _edit(PSK, '"qwerty-psk-0123456789"', '"qwerty"'))
    [w] = config.warnings
    assert (w.keypath, w.file) == ("secrets.ike-1.secret", str(tmp_path / "pqike.toml"))
    assert "only 6 characters" in w.message


def test_private_use_methods_without_vendor_id_warn(tmp_path: Path) -> None:
    # Kyber/BIKE (IDs >= 1024) are used only with a peer that sent strongSwan's vendor ID
    text = _edit(PSK, "ke2_mlkem1024-ke3_mlkem512", "ke2_bike3-ke3_mlkem512")
    text = _edit(text, '"aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024"]', '"aes256-kyber1"]')
    config = _load(tmp_path, text)
    assert [(w.keypath, w.message.split(":")[0]) for w in config.warnings] == [
        ("connections.home.proposals[0]", "bike3"),
        ("connections.home.children.net.esp_proposals[0]", "kyber1"),
    ]
    assert "set daemon.send_vendor_id = true" in config.warnings[0].message
    text = _edit(text, "fragment_size = 1480", "fragment_size = 1480\nsend_vendor_id = true")
    assert _load(tmp_path, text).warnings == ()


def test_psk_without_matching_secret_warns(tmp_path: Path) -> None:
    text = _edit(PSK, 'id-2 = "carol@strongswan.org"', 'id-2 = "dave@x"')
    assert _load(tmp_path, text).warnings == ()  # one matching id is enough, as in charon
    config = _load(tmp_path, _edit(text, 'id-1 = "moon.strongswan.org"', 'id-1 = "sun@x"'))
    assert [w.keypath for w in config.warnings] == ["connections.home.local.auth"]


def test_ike_sa_init_estimate_matches_what_pqike_sends(tmp_path: Path) -> None:
    # reference 004: charon's first IKE_SA_INIT request is 292 bytes; pqike does not send
    # REDIRECT_SUPPORTED (8): 284 with the vendor ID of send_vendor_id = true, what the
    # engine sends (see tests/exchange/test_ike_sa.py, same proposal shape)
    create_peer_pki({"carol": (tmp_path, "carol@strongswan.org")}, kind="ed25519")
    config = _load(tmp_path, CAROL)
    conn = config.connections["home"]
    estimate = checks_mod.ike_sa_init_size(conn, config.daemon, 32)
    assert config.daemon.send_vendor_id and estimate == 292 - 8
    from pqike.engine import Engine
    from pqike.kernel.base import MemoryKernel

    engine = Engine(config, MemoryKernel(), source_for=lambda r: "192.168.0.3")
    engine.initiate("net", "home", 0.0)  # IKE_SA_INIT needs only x25519, no liboqs
    (init,) = engine.pop_outgoing()
    assert len(init.data) == estimate


def test_large_first_ke_warns_with_injected_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        checks_mod, "_ke_sizes", lambda kw: (15632, 15744) if kw == "frodoa3" else (32, 32)
    )
    text = _edit(
        CAROL, 'proposals = ["aes256-sha256-x25519-', 'proposals = ["aes256-sha256-frodoa3-'
    )
    text = _edit(text, "max_packet = 30000", "max_packet = 60000")
    create_peer_pki({"carol": (tmp_path, "carol@strongswan.org")}, kind="ed25519")
    config = _load(tmp_path, text)
    [w] = config.warnings
    assert w.keypath == "connections.home.proposals[0]"
    assert "'frodoa3'" in w.message and "fragment_size 1480" in w.message
    assert "RFC 7383" in w.message
    # beyond max_packet the peer would drop it: that is an error, not a warning
    err = _fail(tmp_path, _edit(text, "max_packet = 60000", "max_packet = 15000"))
    assert err.keypath == "connections.home.proposals[0]" and "max_packet" in err.message


def test_large_first_ke_warns_with_kem_registry(tmp_path: Path) -> None:
    pytest.importorskip("kem.registry")  # sizes are the specifications': no provider needed
    text = _edit(
        CAROL,
        'proposals = ["aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3"]',
        'proposals = ["aes256-sha256-hqc3-ke1_kyber3"]',
    )
    create_peer_pki({"carol": (tmp_path, "carol@strongswan.org")}, kind="ed25519")
    [w] = _load(tmp_path, text).warnings
    assert "'hqc3'" in w.message
    # ML-KEM-768 first still overflows the 1280-byte default fragment_size, x25519 doesn't
    text = _edit(PSK, "fragment_size = 1480\n", "")
    text = _edit(text, "sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3", "sha256-mlkem768-ke3")
    [w] = _load(tmp_path, text).warnings
    assert "'mlkem768'" in w.message and "fragment_size 1280" in w.message


def test_start_action_needs_a_peer_address(tmp_path: Path) -> None:
    text = _edit(
        MOON, 'local_ts = ["10.1.0.0/24"]', 'local_ts = ["10.1.0.0/24"]\nstart_action = "start"'
    )
    err = _fail(tmp_path, text)
    assert err.keypath == "connections.rw.children.net.start_action"


def test_start_action_trap_needs_a_peer_address(tmp_path: Path) -> None:
    """pqike's traps name the peer (strongSwan's wildcard traps are not supported)."""
    text = _edit(
        MOON, 'local_ts = ["10.1.0.0/24"]', 'local_ts = ["10.1.0.0/24"]\nstart_action = "trap"'
    )
    err = _fail(tmp_path, text)
    assert err.keypath == "connections.rw.children.net.start_action"
    assert "start_action = trap needs a specific remote_addrs entry" in str(err)
