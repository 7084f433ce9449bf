"""IDi payloads an unauthenticated initiator chooses: an address of the wrong length is
refused with AUTHENTICATION_FAILED (no traceback), and no identity can forge a log line."""

from __future__ import annotations

import re

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from pqike.text import printable
from pqike.wire.iana import AuthMethod, ExchangeType, IdType, NotifyType
from pqike.wire.payloads import Authentication, IDi
from tests.exchange.crafted import captured_log, dropping, notify_types, open_answer, send_sealed
from tests.exchange.peers import CAROL, MOON, load_tree, make_pair

FORGED = "carol\n12:00:00.000 [IKE] <rw|9> IKE_SA rw[9] established"
LINE = re.compile(r"\d\d:\d\d:\d\d\.\d{3} \[[A-Za-z]+\] ")


def _ike_auth(id_type: IdType, data: bytes):  # type: ignore[no-untyped-def]
    """An IKE_AUTH request with this IDi and a PSK AUTH that cannot verify; moon's answer
    (decrypted), its log and the net."""
    net = dropping(ExchangeType.IKE_AUTH)
    inner = [IDi(id_type=id_type, data=data), Authentication(method=AuthMethod.PSK, data=bytes(32))]
    with captured_log() as log:
        answers = send_sealed(net, ExchangeType.IKE_AUTH, inner)
    assert len(answers) == 1
    return open_answer(net, answers[0]), log, net


@pytest.mark.parametrize(
    ("id_type", "data", "expected"),
    [
        (IdType.ID_IPV4_ADDR, bytes(range(16)), "ID_IPV4_ADDR identity (16 bytes, expected 4)"),
        (IdType.ID_IPV4_ADDR, b"", "ID_IPV4_ADDR identity (0 bytes, expected 4)"),
        (IdType.ID_IPV6_ADDR, bytes([10, 0, 0, 1]), "ID_IPV6_ADDR identity (4 bytes, expected 16)"),
    ],
)
def test_address_identity_of_the_wrong_length_is_refused(
    id_type: IdType, data: bytes, expected: str
) -> None:
    (msg, inner), log, net = _ike_auth(id_type, data)
    assert msg.response and msg.exchange == ExchangeType.IKE_AUTH
    assert notify_types(inner) == [NotifyType.AUTHENTICATION_FAILED]
    assert f"received invalid {expected}" in log.text
    assert "internal error" not in log.text and "Traceback" not in log.text
    assert net.peers["moon"].engine.list_sas() == []


def _dn(common_name: str) -> bytes:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]).public_bytes()


@pytest.mark.parametrize(
    ("id_type", "data", "shown"),
    [
        (IdType.ID_FQDN, FORGED.encode(), printable(FORGED)),
        (
            IdType.ID_RFC822_ADDR,
            b"carol@x\r\n\x00\x1b[2J\x7f\xff",
            "carol@x\\x0d\\x0a\\x00\\x1b[2J\\x7f\\xff",
        ),
        (IdType.ID_DER_ASN1_DN, _dn(FORGED), "CN=" + printable(FORGED)),
    ],
)
def test_identity_cannot_forge_log_lines(id_type: IdType, data: bytes, shown: str) -> None:
    (_, inner), log, _ = _ike_auth(id_type, data)
    assert notify_types(inner) == [NotifyType.AUTHENTICATION_FAILED]
    lines = log.text.splitlines()
    assert len(lines) == len(log.messages)  # one line per record, none forged
    assert all(LINE.match(line) for line in lines)
    assert all(m.isprintable() for m in log.messages)  # escaped where it was printed
    assert f"authentication of '{shown}' with pre-shared key failed" in log.text


def test_identity_whose_printed_form_does_not_parse_back() -> None:
    """An FQDN "a=b" prints like a DN that does not parse: the responder answers with the
    identity it verified, not with its printed form read back."""
    secrets = {"ike-1": {"id-1": "moon.strongswan.org", "id-2": "a=b", "secret": "x" * 20}}
    carol = {
        "daemon": {"control_socket": "/tmp/x"},
        "connections": {
            "home": {
                "remote_addrs": [MOON],
                "local_addrs": [CAROL],
                "proposals": ["aes256-sha256-x25519"],
                "local": {"auth": "psk", "id": "@a=b"},
                "remote": {"auth": "psk", "id": "moon.strongswan.org"},
                "children": {"net": {"remote_ts": ["10.1.0.0/16"]}},
            }
        },
        "secrets": secrets,
    }
    moon = {
        "daemon": {"control_socket": "/tmp/x"},
        "connections": {
            "rw": {
                "local_addrs": [MOON],
                "proposals": ["aes256-sha256-x25519"],
                "local": {"auth": "psk", "id": "moon.strongswan.org"},
                "remote": {"auth": "psk", "id": "%any"},
                "children": {"net": {"local_ts": ["10.1.0.0/24"]}},
            }
        },
        "secrets": secrets,
    }
    net = make_pair(load_tree(carol), load_tree(moon))
    with captured_log() as log:
        net.peers["carol"].engine.initiate("net", None, net.now)
        net.run()
    assert "internal error" not in log.text, log.text
    (info,) = net.peers["moon"].engine.list_sas()
    assert info.state == "ESTABLISHED" and info.remote_id == "a=b"
