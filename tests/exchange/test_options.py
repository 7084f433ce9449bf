"""Options whose effect shows in the exchange: fragmentation, childless, retransmission
timing, unavailable key exchange methods, and the initiator's NO_PROPOSAL_CHOSEN hint."""

from __future__ import annotations

import logging

import pytest

from kem import registry
from pqike.events import EventKind
from pqike.sa.ike_sa import IkeSa
from pqike.tasks import common
from pqike.wire.iana import ExchangeType
from pqike.wire.message import decode_header, decode_message
from pqike.wire.payloads import EncryptedFragment
from tests.exchange.peers import CAROL, MOON, Net, make_pair, psk_config

BIG = "aes256-sha256-x25519-ke1_mlkem1024"
MID = "aes256-sha256-x25519-ke1_mlkem768"  # unfragmented at 1480


def _frag_pair(carol_frag: str) -> Net:
    return make_pair(
        psk_config("carol", BIG, fragment_size=576, conn_extra={"fragmentation": carol_frag}),
        psk_config("moon", BIG, fragment_size=576),
    )


def _fragments_from(net: Net, host: str) -> int:
    return sum(
        isinstance(decode_message(d.data).sealed, EncryptedFragment)
        for d in net.log
        if d.src.host == host and decode_header(d.data).exchange != ExchangeType.IKE_SA_INIT
    )


@pytest.mark.parametrize("frag", ["yes", "accept", "no"])
def test_fragmentation_values(frag: str) -> None:
    net = _frag_pair(frag)
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    (sa,) = net.peers["carol"].engine.list_sas()
    assert sa.state == "ESTABLISHED"
    ours, theirs = _fragments_from(net, CAROL), _fragments_from(net, MOON)
    if frag == "yes":  # both fragment their large messages
        assert ours > 0 and theirs > 0
    elif frag == "accept":  # we announce support: the peer fragments, we send whole
        assert ours == 0 and theirs > 0
    else:  # not announced: nobody fragments
        assert ours == 0 and theirs == 0


def test_childless_never_refuses_childless_ike_auth(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pqike")
    net = make_pair(
        psk_config("carol", "aes256-sha256-x25519"),
        psk_config("moon", "aes256-sha256-x25519", conn_extra={"childless": "never"}),
    )
    net.peers["carol"].engine.initiate(None, "home", 0.0)  # no child: childless initiation
    net.run()
    assert net.peers["moon"].engine.list_sas() == []
    assert "peer tried to initiate a childless IKE_SA" in caplog.text
    assert any(e.kind == EventKind.IKE_FAILED for e in net.peers["carol"].events)


def test_childless_allow_accepts_childless_ike_auth() -> None:
    net = make_pair(
        psk_config("carol", "aes256-sha256-x25519"), psk_config("moon", "aes256-sha256-x25519")
    )
    net.peers["carol"].engine.initiate(None, "home", 0.0)
    net.run()
    (sa,) = net.peers["moon"].engine.list_sas()
    assert sa.state == "ESTABLISHED" and sa.children == []


def _timeouts(extra: dict) -> list[float]:
    net = make_pair(
        psk_config("carol", "aes256-sha256-x25519", extra_daemon=extra),
        psk_config("moon", "aes256-sha256-x25519"),
    )
    carol = net.peers["carol"].engine
    carol.initiate("net", None, 0.0)
    sa: IkeSa = next(iter(carol.sas.values()))
    return [sa._retransmit_timeout(n) for n in range(6)]


def test_retransmit_limit_caps_each_timeout() -> None:
    plain = _timeouts({})
    capped = _timeouts({"retransmit_limit": 20})
    assert plain[-1] > 20 and max(capped) == 20
    assert capped[:2] == plain[:2]


def test_retransmit_jitter_shortens_timeouts() -> None:
    plain = _timeouts({})
    jittered = _timeouts({"retransmit_jitter": 50})
    assert all(p * 0.5 <= j <= p for p, j in zip(plain, jittered, strict=True))
    assert jittered != plain


def test_responder_never_selects_an_unavailable_method(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """liboqs gone after the config was loaded: moon must not select ML-KEM and fail half-way
    (it answers NO_PROPOSAL_CHOSEN in IKE_SA_INIT, where no state is left behind)."""
    caplog.set_level(logging.INFO, logger="pqike")
    prop = "aes256-sha256-x25519-ke1_mlkem768"
    net = make_pair(psk_config("carol", prop), psk_config("moon", prop))
    gone = registry.by_keyword("mlkem768")
    real = type(gone).unavailable_reason
    monkeypatch.setattr(
        type(gone),
        "unavailable_reason",
        property(lambda m: "test: provider removed" if m.id == gone.id else real.fget(m)),
    )
    monkeypatch.setattr(common, "_AVAILABLE", set())  # forget it was available before
    # carol offers it anyway (its IKE_SA_INIT needs only x25519); moon must not pick it
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    assert net.peers["moon"].engine.list_sas() == []
    assert "a key exchange method is unavailable here" in caplog.text
    exchanges = [decode_header(d.data).exchange for d in net.log]
    assert ExchangeType.IKE_INTERMEDIATE not in exchanges


def test_no_proposal_chosen_hint_as_initiator(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pqike")
    net = make_pair(
        psk_config("carol", "aes256-sha256-x25519-ke1_mlkem768"),
        psk_config("moon", "aes128-sha256-ecp256"),
    )
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    assert "we offered ENCR: AES_CBC_256" in caplog.text
    assert "we offered KE: CURVE_25519" in caplog.text
    assert "we offered ADDKE1: ML_KEM_768" in caplog.text
    failed = next(e for e in net.peers["carol"].events if e.kind == EventKind.IKE_FAILED)
    assert "compare each transform type" in failed.message


def test_fragment_size_v4_overrides_fragment_size() -> None:
    net = make_pair(
        psk_config("carol", MID, fragment_size=1480, extra_daemon={"fragment_size_v4": 576}),
        psk_config("moon", MID, fragment_size=1480),
    )
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    assert _fragments_from(net, CAROL) > 0 and _fragments_from(net, MOON) == 0
    assert max(len(d.data) for d in net.log if d.src.host == CAROL) < 576


def test_fragment_size_v6_leaves_ipv4_alone() -> None:
    net = make_pair(
        psk_config("carol", MID, fragment_size=1480, extra_daemon={"fragment_size_v6": 1280}),
        psk_config("moon", MID, fragment_size=1480),
    )
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    assert _fragments_from(net, CAROL) == 0
    assert net.peers["carol"].engine.config.daemon.fragment_size_for(6) == 1280


def test_remote_port_is_where_we_initiate_to() -> None:
    net = make_pair(
        psk_config("carol", "aes256-sha256-x25519", conn_extra={"remote_port": 4501}),
        psk_config("moon", "aes256-sha256-x25519"),
    )
    net.peers["carol"].engine.initiate("net", None, 0.0)
    assert net.peers["carol"].engine.pop_outgoing()[0].dst.port == 4501


@pytest.mark.parametrize("encap", [False, True])
def test_encap_forces_udp_encapsulation(encap: bool) -> None:
    net = make_pair(
        psk_config("carol", "aes256-sha256-x25519", conn_extra={"encap": encap}),
        psk_config("moon", "aes256-sha256-x25519"),
    )
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    (sa,) = net.peers["carol"].engine.list_sas()
    assert sa.children[0].encap is encap
    assert (sa.local.endswith("[4500]") or sa.local.endswith(":4500")) is encap


@pytest.mark.parametrize("mode", ["tunnel", "transport"])
def test_child_mode_is_negotiated_and_installed(mode: str) -> None:
    net = make_pair(
        psk_config("carol", "aes256-sha256-x25519", vips=False, child_extra={"mode": mode}),
        psk_config("moon", "aes256-sha256-x25519", vips=False, child_extra={"mode": mode}),
    )
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    for who in ("carol", "moon"):
        (sa,) = net.peers[who].engine.list_sas()
        assert sa.children[0].mode == mode.upper()
        modes = {k.mode.name for k in net.peers[who].kernel.sas.values()}
        assert modes == {mode.upper()}


def test_pool_dns_is_sent_with_the_virtual_ip() -> None:
    import msgspec

    from pqike.wire.iana import CfgAttr
    from pqike.wire.payloads import Configuration

    moon = psk_config("moon", "aes256-sha256-x25519")
    net = make_pair(psk_config("carol", "aes256-sha256-x25519"), moon)
    pools = {"rw_pool": msgspec.structs.replace(moon.pools["rw_pool"], dns=("10.1.0.53",))}
    net.peers["moon"].engine.load_config(msgspec.structs.replace(moon, pools=pools))
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    sa = next(iter(net.peers["carol"].engine.sas.values()))
    assert sa.local_vips == ["10.3.0.1"]
    reply = [
        p
        for d in net.log
        if d.src.host == MOON and decode_header(d.data).exchange == ExchangeType.IKE_AUTH
        for p in _inner(sa, d.data)
        if isinstance(p, Configuration)
    ]
    (cp,) = reply
    dns = [a.value for a in cp.attributes if a.attr_type == CfgAttr.INTERNAL_IP4_DNS]
    assert dns == [bytes([10, 1, 0, 53])]


def _inner(sa: IkeSa, data: bytes) -> list:
    from pqike.wire import sk as wire_sk

    return wire_sk.unprotect(data, sa._in_cipher)[1]


def test_rand_time_spreads_ike_and_child_rekeys() -> None:
    net = make_pair(
        psk_config(
            "carol",
            "aes256-sha256-x25519",
            conn_extra={"rekey_time": "100s", "rand_time": "50s"},
            child_extra={"rekey_time": "100s", "rand_time": "50s"},
        ),
        psk_config("moon", "aes256-sha256-x25519"),
    )
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    sa = next(iter(net.peers["carol"].engine.sas.values()))
    assert sa.rekey_at is not None and 50 <= sa.rekey_at <= 100
    assert sa.rekey_at != 100  # random, not the maximum (rng is os.urandom)
    child = sa.children[0]
    assert child.rekey_at is not None and 50 <= child.rekey_at <= 100
    assert child.expire_at == 110  # life_time = rekey_time + 10 %


def test_over_time_sets_the_hard_ike_lifetime() -> None:
    net = make_pair(
        psk_config(
            "carol", "aes256-sha256-x25519", conn_extra={"rekey_time": "100s", "over_time": "30s"}
        ),
        psk_config("moon", "aes256-sha256-x25519"),
    )
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    sa = next(iter(net.peers["carol"].engine.sas.values()))
    assert sa.expire_at == 130


def test_child_life_time_is_the_hard_limit() -> None:
    net = make_pair(
        psk_config(
            "carol", "aes256-sha256-x25519", child_extra={"rekey_time": "100s", "life_time": "150s"}
        ),
        psk_config("moon", "aes256-sha256-x25519"),
    )
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    sa = next(iter(net.peers["carol"].engine.sas.values()))
    assert sa.children[0].expire_at == 150


def _cert_pair(tmp_path, carol: dict, moon: dict) -> Net:  # type: ignore[no-untyped-def]
    import msgspec

    from tests.exchange.peers import cert_configs

    cfgs = cert_configs(tmp_path, "aes256-sha256-x25519", kind="ecdsa")
    out = []
    for cfg, extra in zip(cfgs, (carol, moon), strict=True):
        conns = {n: msgspec.structs.replace(c, **extra) for n, c in cfg.connections.items()}
        out.append(msgspec.structs.replace(cfg, connections=conns))
    return make_pair(*out)


def _certs_sent(net: Net, host: str) -> int:
    from pqike.wire.payloads import Certificate

    sa = next(iter(net.peers["moon" if host == CAROL else "carol"].engine.sas.values()), None)
    if sa is None:
        return -1
    return sum(
        type(p) is Certificate  # not its subclass CertificateRequest
        for d in net.log
        if d.src.host == host and decode_header(d.data).exchange == ExchangeType.IKE_AUTH
        for p in _inner(sa, d.data)
    )


@pytest.mark.parametrize(
    ("send_cert", "certreq", "works"),
    [
        ("ifasked", True, True),
        ("ifasked", False, False),  # not asked: no CERT, moon cannot verify carol
        ("always", False, True),
        ("never", True, False),
    ],
)
def test_send_cert_and_send_certreq(tmp_path, send_cert: str, certreq: bool, works: bool) -> None:  # type: ignore[no-untyped-def]
    net = _cert_pair(tmp_path, {"send_cert": send_cert}, {"send_certreq": certreq})
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    up = [sa for sa in net.peers["moon"].engine.list_sas() if sa.state == "ESTABLISHED"]
    assert bool(up) is works
    if works:
        assert _certs_sent(net, CAROL) == 1


@pytest.mark.parametrize("where", ["remote", "local", "nowhere"])
def test_cacerts_are_trust_anchors(tmp_path, where: str) -> None:  # type: ignore[no-untyped-def]
    import msgspec

    from tests.exchange.peers import cert_configs

    carol, moon = cert_configs(tmp_path, "aes256-sha256-x25519", kind="ecdsa")
    conn = moon.connections["rw"]
    (ca,) = conn.remote.cacerts
    conn = msgspec.structs.replace(
        conn,
        remote=msgspec.structs.replace(conn.remote, cacerts=(ca,) if where == "remote" else ()),
        local=msgspec.structs.replace(conn.local, cacerts=(ca,) if where == "local" else ()),
    )
    net = make_pair(carol, msgspec.structs.replace(moon, connections={"rw": conn}))
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    up = [sa for sa in net.peers["moon"].engine.list_sas() if sa.state == "ESTABLISHED"]
    assert bool(up) is (where != "nowhere")


@pytest.mark.parametrize("prefer", [True, False])
def test_prefer_configured_proposals(prefer: bool) -> None:
    import msgspec

    carol = psk_config("carol", "aes128-sha256-x25519")
    conn = msgspec.structs.replace(
        carol.connections["home"], proposals=("aes128-sha256-x25519", "aes256-sha256-x25519")
    )
    carol = msgspec.structs.replace(carol, connections={"home": conn})
    moon = psk_config(
        "moon", "aes256-sha256-x25519", extra_daemon={"prefer_configured_proposals": prefer}
    )
    conn = msgspec.structs.replace(
        moon.connections["rw"], proposals=("aes256-sha256-x25519", "aes128-sha256-x25519")
    )
    net = make_pair(carol, msgspec.structs.replace(moon, connections={"rw": conn}))
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    (sa,) = net.peers["moon"].engine.list_sas()
    assert sa.proposal.startswith("IKE:AES_CBC_256" if prefer else "IKE:AES_CBC_128")


def test_no_proposal_chosen_for_the_child_lists_what_we_offered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pqike")
    net = make_pair(
        psk_config("carol", "aes256-sha256-x25519", esp="aes256gcm16"),
        psk_config("moon", "aes256-sha256-x25519", esp="aes128-sha256"),
    )
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    assert "we offered ENCR: AES_GCM_16_256" in caplog.text
