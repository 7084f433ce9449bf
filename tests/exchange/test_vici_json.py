"""list-sas and list-conns JSON with vici's field names (vici_query.c), a version, whole
seconds, and both documents objects keyed like vici's events."""

from __future__ import annotations

import json

import msgspec
from click.testing import CliRunner

from pqike.cli import cli
from pqike.config.toml_writer import dumps as toml
from pqike.vici import JSON_VERSION, conns_document, sas_document
from tests.exchange.peers import make_pair, psk_config

HYBRID = "aes256-sha256-x25519-ke1_mlkem768"


def _floats(value: object) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    if isinstance(value, list):
        return [f for v in value for f in _floats(v)]
    return []


def test_list_sas_document_uses_vici_names() -> None:
    net = make_pair(psk_config("carol", HYBRID), psk_config("moon", HYBRID))
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    (info,) = net.peers["carol"].engine.list_sas(7.6)
    doc = json.loads(msgspec.json.encode(sas_document([info])))
    assert doc["version"] == JSON_VERSION
    (key,) = doc["ike-sas"]
    assert key == "home-1"
    ike = doc["ike-sas"][key]
    assert ike["uniqueid"] == 1 and ike["state"] == "ESTABLISHED" and ike["initiator"] is True
    assert (ike["local-host"], ike["local-port"]) == ("192.168.0.3", 500)
    assert (ike["remote-host"], ike["remote-id"]) == ("192.168.0.2", "moon.strongswan.org")
    assert (ike["initiator-spi"], ike["responder-spi"]) == (info.spi_i, info.spi_r)
    assert (ike["encr-alg"], ike["encr-keysize"]) == ("AES_CBC", 256)
    assert (ike["integ-alg"], ike["prf-alg"]) == ("HMAC_SHA2_256_128", "PRF_HMAC_SHA2_256")
    assert (ike["dh-group"], ike["ake1"]) == ("CURVE_25519", "ML_KEM_768")
    assert ike["established"] == 7  # whole seconds, as vici counts
    assert ike["local-vips"] == ["10.3.0.1"]
    (child,) = ike["child-sas"].values()
    assert list(ike["child-sas"]) == [f"net-{child['uniqueid']}"]
    assert child["spi-in"] == info.children[0].spi_in
    assert child["mode"] == "TUNNEL" and child["protocol"] == "ESP"
    assert (child["bytes-in"], child["packets-out"], child["install-time"]) == (0, 0, 7)
    assert (child["local-ts"], child["remote-ts"]) == (["10.3.0.1/32"], ["10.1.0.0/24"])
    assert _floats(doc) == []


def test_list_conns_document_keyed_by_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tree = {
        "connections": {
            "home": {
                "remote_addrs": ["192.0.2.2"],
                "proposals": [HYBRID],
                "local": {"auth": "psk", "id": "carol"},
                "remote": {"auth": "psk", "id": "moon"},
                "children": {"net": {"remote_ts": ["10.1.0.0/16"]}},
            }
        },
        "secrets": {"ike-1": {"id-1": "carol", "id-2": "moon", "secret": "x" * 20}},
    }
    (tmp_path / "pqike.toml").write_text(toml(tree))
    result = CliRunner().invoke(cli, ["list-conns", "--json", "--config", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["version"] == JSON_VERSION and list(doc["connections"]) == ["home"]
    home = doc["connections"]["home"]
    assert home["version"] == "IKEv2" and home["remote_addrs"] == ["192.0.2.2"]
    assert home["unique"] == "UNIQUE_NO" and home["rekey_time"] == 14400
    assert home["local-1"] == {"class": "pre-shared key", "id": "carol"}
    assert home["remote-1"] == {"class": "pre-shared key", "id": "moon"}
    net = home["children"]["net"]
    assert net["mode"] == "TUNNEL" and net["remote-ts"] == ["10.1.0.0/16"]
    assert net["local-ts"] == ["dynamic"]
    assert conns_document({}) == {"version": JSON_VERSION, "connections": {}}
