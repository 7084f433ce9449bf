"""RFC 8784 PPK settings: connections.<conn>.ppk_id / ppk_required and secrets.ppk<suffix> as
swanctl.conf spells them, their checks, their rendering for charon, and the PPK_IDENTITY
parsing of pqike.tasks.ppk (what a peer may send). What the settings do in an exchange is in
tests/exchange/test_ppk.py."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest

from pqike.auth.certs import Identity
from pqike.config import ConfigError, load_config
from pqike.config.checks import ike_sa_init_size
from pqike.config.render import describe_connections, to_swanctl_conf
from pqike.tasks.base import Incoming, TaskFailed
from pqike.tasks.ppk import _received_ppk_id, ppk_identity_data, responder_ppk
from pqike.wire.iana import ExchangeType, IdType, NotifyType
from pqike.wire.payloads import Notify
from tests.unit.test_config_render import parse_swanctl

PPK_HEX = "0x" + "8a" * 32
BASE = f"""
[connections.home]
remote_addrs = "192.0.2.2"
ppk_id = "pqike-ppk-1"
ppk_required = true
[connections.home.local]
auth = "psk"
id = "carol@strongswan.org"
[connections.home.remote]
auth = "psk"
id = "moon.strongswan.org"
[secrets.ike-1]
secret = "qwerty-psk-0123456789"
[secrets.ppk-1]
id = "pqike-ppk-1"
secret = "{PPK_HEX}"
"""


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    (tmp_path / "pqike.toml").write_text(text)
    return load_config(tmp_path)


def _fail(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    return e.value


def test_loads_ppk_settings(tmp_path: Path) -> None:
    c = _load(tmp_path, BASE)
    home = c.connections["home"]
    assert (home.ppk_id, home.ppk_required) == ("pqike-ppk-1", True)
    assert c.warnings == ()
    assert c.ppk("pqike-ppk-1") == bytes.fromhex("8a" * 32)
    assert c.ppk("@pqike-ppk-1") == bytes.fromhex("8a" * 32)  # the same FQDN identity
    assert c.ppk("other") is None
    # strongSwan's defaults: no PPK, not required
    c = _load(tmp_path, BASE.replace('ppk_id = "pqike-ppk-1"\nppk_required = true\n', ""))
    assert (c.connections["home"].ppk_id, c.connections["home"].ppk_required) == (None, False)


def test_several_ids_and_encodings(tmp_path: Path) -> None:
    text = (
        BASE + '[secrets.ppk-b64]\nid-1 = "a"\nid-2 = "b"\nsecret = "0s' + "QUJD" * 11 + 'QQ=="\n'
    )
    c = _load(tmp_path, text)
    assert c.ppk("a") == c.ppk("b") == b"ABC" * 11 + b"A"


def test_ppk_secret_errors(tmp_path: Path) -> None:
    err = _fail(
        tmp_path, BASE.replace('[secrets.ppk-1]\nid = "pqike-ppk-1"\n', "[secrets.ppk-1]\n")
    )
    assert err.keypath == "secrets.ppk-1" and "needs an 'id'" in err.message
    err = _fail(tmp_path, BASE.replace(f'secret = "{PPK_HEX}"', 'secret = "0xZZ"'))
    assert err.keypath == "secrets.ppk-1.secret" and "hex" in err.message
    err = _fail(tmp_path, BASE.replace("[secrets.ppk-1]\nid =", "[secrets.ppk-1]\nppk_id ="))
    assert err.keypath == "secrets.ppk-1.ppk_id" and "unknown key" in err.message
    err = _fail(tmp_path, BASE.replace("ppk_required = true", 'ppk_required = "maybe"'))
    assert err.keypath == "connections.home.ppk_required"
    err = _fail(tmp_path, BASE.replace('ppk_id = "pqike-ppk-1"', 'ppk_idd = "x"'))
    assert "did you mean 'ppk_id'" in err.message


def test_warnings(tmp_path: Path) -> None:
    c = _load(tmp_path, BASE.replace('ppk_id = "pqike-ppk-1"', 'ppk_id = "nope"'))
    (w,) = c.warnings
    assert w.keypath == "connections.home.ppk_id"
    assert "no secrets.ppk<suffix> entry with id 'nope': the IKE_SA fails" in w.message
    c = _load(tmp_path, BASE.replace(PPK_HEX, "short-ppk"))
    (w,) = c.warnings
    assert w.keypath == "secrets.ppk-1.secret" and "at least 256 bits" in w.message


def test_use_ppk_counts_in_the_ike_sa_init_estimate(tmp_path: Path) -> None:
    c = _load(tmp_path, BASE)
    home = c.connections["home"]
    without = msgspec.structs.replace(home, ppk_id=None)
    assert ike_sa_init_size(home, c.daemon, 32) == ike_sa_init_size(without, c.daemon, 32) + 8


def test_swanctl_conf_and_list_conns(tmp_path: Path) -> None:
    c = _load(tmp_path, BASE)
    parsed = parse_swanctl(to_swanctl_conf(c))
    home = parsed["connections"]["home"]
    assert (home["ppk_id"], home["ppk_required"]) == ("pqike-ppk-1", "yes")
    assert parsed["secrets"]["ppk-1"] == {"id-1": "pqike-ppk-1", "secret": PPK_HEX}
    lines = describe_connections(c).splitlines()
    assert lines[1] == "  ppk: pqike-ppk-1, required"  # list_conns.c, after the first line
    c = _load(tmp_path, BASE.replace("ppk_required = true", "ppk_required = false"))
    assert describe_connections(c).splitlines()[1] == "  ppk: pqike-ppk-1, not required"


# --- PPK_IDENTITY on the wire ---------------------------------------------------------------


def test_ppk_identity_data_is_fixed_type_and_id() -> None:
    assert ppk_identity_data(Identity.from_string("pqike-ppk-1")) == b"\x02pqike-ppk-1"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", None),
        (b"\x02", None),  # no PPK_ID
        (b"\x01opaque", None),  # PPK_ID_OPAQUE: strongSwan knows FIXED only
        (b"\x07x", None),
        (b"\x02pqike-ppk-1", Identity(IdType.ID_FQDN, b"pqike-ppk-1")),
        (b"\x02a@b", Identity(IdType.ID_RFC822_ADDR, b"a@b")),
        (b"\x02\x00\xff\n", Identity(IdType.ID_KEY_ID, b"\x00\xff\n")),
    ],
)
def test_received_ppk_id(data: bytes, expected: Identity | None) -> None:
    assert _received_ppk_id(data) == expected


def _responder(required: bool, notify: bytes | None, caplog):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG, logger="pqike")
    conn = SimpleNamespace(ppk_id=None, ppk_required=required)
    sa = SimpleNamespace(
        conn=conn, peer_ppk=True, cfg=logging.getLogger("pqike.test").info, svc=None
    )
    payloads = [] if notify is None else [Notify(notify_type=NotifyType.PPK_IDENTITY, data=notify)]
    msg = Incoming(ExchangeType.IKE_AUTH, 1, False, payloads)
    return responder_ppk(sa, msg)  # type: ignore[arg-type]


def test_unsupported_ppk_id_type_is_ignored_and_said(caplog) -> None:  # type: ignore[no-untyped-def]
    assert _responder(False, b"\x01opaque", caplog) is None
    assert "PPK_IDENTITY ignored: PPK_ID type 1, only FIXED (2) is supported" in caplog.text
    with pytest.raises(TaskFailed) as e:
        _responder(True, b"", caplog)
    assert e.value.reason == "PPK required but no PPK_IDENTITY received"
    assert e.value.notify == NotifyType.AUTHENTICATION_FAILED
