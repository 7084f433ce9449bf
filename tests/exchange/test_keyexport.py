"""daemon.save_keys: Wireshark's ikev2_decryption_table and esp_sa written as SAs get keys."""

from __future__ import annotations

import csv
import logging
import os
import stat
from pathlib import Path

import pytest

from pqike.crypto.algorithms import IkeSuite
from pqike.keyexport import ESP_FILE, IKEV2_FILE, esp_names, ike_names
from pqike.log import Subsystem
from pqike.sa.ike_sa import IkeSa
from pqike.wire.iana import EncrId, IntegId, PrfId
from tests.exchange.peers import CAROL, MOON, Net, current_sas, make_pair, psk_config

IKE = "aes256-sha256-x25519-ke1_mlkem768"


def _pair(tmp: Path, **save_keys: object) -> Net:
    extra = {"save_keys": {"wireshark_keys": str(tmp), **save_keys}}
    net = make_pair(psk_config("carol", IKE, extra_daemon=extra), psk_config("moon", IKE))
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    return net


def _ike_rows(tmp: Path) -> list[list[str]]:
    return list(csv.reader((tmp / IKEV2_FILE).read_text().splitlines()))


def _esp_rows(tmp: Path) -> list[list[str]]:
    return list(csv.reader((tmp / ESP_FILE).read_text().splitlines()))


def _moon_sa(net: Net) -> IkeSa:
    (sa,) = net.peers["moon"].engine.sas.values()
    return sa


def test_ike_table_has_a_line_per_key_update_the_last_with_the_final_keys(tmp_path: Path) -> None:
    net = _pair(tmp_path, ike=True, esp=True)
    rows = _ike_rows(tmp_path)
    moon = _moon_sa(net)  # the peer's keys: what a capture needs, not what we wrote
    # IKE_SA_INIT, then the IKE_INTERMEDIATE of ke1 changed SK_e/SK_a; the PPK-less
    # IKE_AUTH changes nothing Wireshark uses
    assert len(rows) == 2
    assert {(r[0], r[1]) for r in rows} == {(moon.spi_i.hex(), moon.spi_r.hex())}
    k = moon.keys
    assert rows[-1] == [
        moon.spi_i.hex(),
        moon.spi_r.hex(),
        k.sk_ei.hex(),
        k.sk_er.hex(),
        "AES-CBC-256 [RFC3602]",
        k.sk_ai.hex(),
        k.sk_ar.hex(),
        "HMAC_SHA2_256_128 [RFC4868]",
    ]
    assert rows[0][2] != rows[1][2]
    for name in (IKEV2_FILE, ESP_FILE):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600


def test_esp_table_has_both_directions_with_the_peers_installed_keys(tmp_path: Path) -> None:
    net = _pair(tmp_path, esp=True)
    assert not (tmp_path / IKEV2_FILE).exists()  # ike = false
    rows = _esp_rows(tmp_path)
    moon_sas = net.peers["moon"].kernel.sas
    assert len(rows) == 2 == len(moon_sas)
    for family, src, dst, spi, encr, ekey, integ, akey in rows:
        sa = moon_sas[(int(spi, 16), dst)]
        assert (family, src, encr, integ) == ("IPv4", sa.src, "AES-CBC [RFC3602]", integ)
        assert (ekey, akey) == ("0x" + sa.encr_key.hex(), "0x" + sa.integ_key.hex())
    assert {r[1] for r in rows} == {CAROL, MOON}
    assert rows[0][6] == "HMAC-SHA-256-128 [RFC4868]"


def test_rekeys_append_the_new_keys(tmp_path: Path) -> None:
    net = _pair(tmp_path, ike=True, esp=True)
    carol = net.peers["carol"].engine
    carol.rekey(None, "net", net.now)
    net.run()
    carol.rekey("home", None, net.now)
    net.run()
    moon = _moon_sa(net)
    ike = _ike_rows(tmp_path)
    assert ike[-1][:4] == [
        moon.spi_i.hex(),
        moon.spi_r.hex(),
        moon.keys.sk_ei.hex(),
        moon.keys.sk_er.hex(),
    ]
    assert len({(r[0], r[1]) for r in ike}) == 2
    esp = _esp_rows(tmp_path)
    assert len(esp) == 4
    installed = {(int(r[3], 16), r[2]) for r in esp[2:]}
    assert installed == set(current_sas(net.peers["moon"]))  # not the kept inbound one


def test_nothing_written_unless_enabled(tmp_path: Path) -> None:
    _pair(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_symbolic_link_is_refused_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / IKEV2_FILE).symlink_to(target)
    with caplog.at_level(logging.DEBUG, logger="pqike"):
        net = _pair(tmp_path, ike=True)
    assert not target.exists()
    assert "failed to open IKE key table" in caplog.text
    assert _moon_sa(net).keys is not None  # the IKE_SA came up all the same


def test_level_4_logs_every_sk_and_the_esp_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # every subsystem logger: an earlier pqike.log.configure() may have set their levels
    for sub in Subsystem:
        caplog.set_level(1, logger=f"pqike.{sub.value}")
    net = _pair(tmp_path)
    k = _moon_sa(net).keys
    for label in ("d", "ai", "ar", "ei", "er", "pi", "pr"):
        assert f"Sk_{label} secret {getattr(k, f'sk_{label}').hex()}" in caplog.text
    (sa, _) = net.peers["moon"].kernel.sas.values()
    assert f"key {sa.encr_key.hex()}" in caplog.text
    assert "encryption initiator key" in caplog.text and "integrity responder key" in caplog.text


@pytest.mark.parametrize(
    ("encr", "bits", "integ", "expected"),
    [
        (
            EncrId.AES_GCM_16,
            256,
            IntegId.NONE,
            ("AES-GCM-256 with 16 octet ICV [RFC5282]", "NONE [RFC4306]"),
        ),
        (
            EncrId.AES_CBC,
            128,
            IntegId.HMAC_SHA2_512_256,
            ("AES-CBC-128 [RFC3602]", "HMAC_SHA2_512_256 [RFC4868]"),
        ),
        (EncrId.CHACHA20_POLY1305, None, IntegId.NONE, None),
    ],
)
def test_ike_names(encr: EncrId, bits: int | None, integ: IntegId, expected: object) -> None:
    assert ike_names(IkeSuite(encr, bits, integ, PrfId.HMAC_SHA2_256)) == expected


def test_esp_names_gcm_icv_is_skipped_by_its_length() -> None:
    assert esp_names(EncrId.AES_GCM_12, IntegId.NONE) == (
        "AES-GCM [RFC4106]",
        "ANY 96 bit authentication [no checking]",
    )
    assert esp_names(EncrId.CHACHA20_POLY1305, IntegId.NONE) is None
