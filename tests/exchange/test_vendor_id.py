"""strongSwan's vendor ID and the private-use algorithm IDs (>= 1024: Kyber, BIKE, HQC,
FrodoKEM) between two pqike engines: sent with send_vendor_id, noted from the peer, and
private-use methods selected (responder) or accepted (initiator) only with a peer that sent
it, unless accept_private_algs; a rekeyed IKE_SA keeps what the old one learnt
(strongSwan ike_vendor.c, ike_init.c/child_create.c PROPOSAL_SKIP_PRIVATE, proposal.c)."""

from __future__ import annotations

import hashlib
import logging

import pytest

from kem import registry
from pqike.events import Datagram
from pqike.wire.iana import ExchangeType
from pqike.wire.message import decode_message
from pqike.wire.payloads import Notify, SecurityAssociation, VendorId
from tests.exchange.peers import CAROL, MOON, Net, make_pair, psk_config

STRONGSWAN_VID = hashlib.md5(b"strongSwan").digest()
SKIPPED = "an algorithm from private space would match, but peer implementation is unknown, skipped"
KYBER = "aes256-sha256-x25519-ke1_kyber3"
VID = {"send_vendor_id": True}
ACCEPT = {"accept_private_algs": True}


def _need(*keywords: str) -> None:
    for k in keywords:
        m = registry.by_keyword(k)
        if not m.available:
            pytest.skip(f"{m.log_name} unavailable: {m.unavailable_reason}")


def _pair(
    ike: str,
    carol: dict | None = None,
    moon: dict | None = None,
    **kw: str,
) -> Net:
    return make_pair(
        psk_config("carol", ike, extra_daemon=carol, **kw),
        psk_config("moon", ike, extra_daemon=moon, **kw),
    )


def _connect(net: Net) -> Net:
    net.peers["carol"].engine.initiate("net", None, net.now)
    net.run()
    return net


def _init(net: Net, sender: str) -> list:  # type: ignore[type-arg]
    host = CAROL if sender == "carol" else MOON
    (d,) = [
        d
        for d in net.log
        if d.src.host == host and decode_message(d.data).exchange == ExchangeType.IKE_SA_INIT
    ]
    return decode_message(d.data).payloads


def _established(net: Net, who: str) -> list:  # type: ignore[type-arg]
    return [s for s in net.peers[who].engine.list_sas() if s.state == "ESTABLISHED"]


def _sa(net: Net, who: str):  # type: ignore[no-untyped-def]
    (sa,) = net.peers[who].engine.sas.values()
    return sa


def test_vendor_id_sent_last_in_ike_sa_init_and_noted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pqike")
    net = _connect(_pair("aes256-sha256-x25519", VID, VID))
    for who in ("carol", "moon"):
        payloads = _init(net, who)
        # charon's order: the vendor ID after every notify
        assert isinstance(payloads[-1], VendorId) and payloads[-1].data == STRONGSWAN_VID
        assert isinstance(payloads[-2], Notify)
        assert _sa(net, who).peer_strongswan
    assert caplog.text.count("received strongSwan vendor ID") == 2


def test_no_vendor_id_unless_configured() -> None:
    net = _connect(_pair("aes256-sha256-x25519", None, VID))
    assert not any(isinstance(p, VendorId) for p in _init(net, "carol"))
    assert not _sa(net, "moon").peer_strongswan and _sa(net, "carol").peer_strongswan
    assert _established(net, "carol") and _established(net, "moon")


def test_responder_refuses_private_only_proposal_of_unknown_peer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pqike")
    net = _connect(_pair(KYBER))
    assert net.peers["moon"].engine.list_sas() == [] == net.peers["carol"].engine.list_sas()
    assert f"{SKIPPED} (KE1_KYBER_L3)" in caplog.text
    assert "peer sent no strongSwan vendor ID" in caplog.text
    assert "received NO_PROPOSAL_CHOSEN notify error" in caplog.text


def test_responder_skips_private_for_public_alternative(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pqike")
    net = _connect(_pair("aes256-sha256-x25519-ke1_kyber3-ke1_mlkem768"))
    (c,) = _established(net, "carol")
    assert c.proposal.endswith("/CURVE_25519/KE1_ML_KEM_768")
    assert f"{SKIPPED} (KE1_KYBER_L3)" in caplog.text


def test_initiator_refuses_private_choice_of_unknown_peer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """moon accepts private IDs from anybody (accept_private_algs) and picks Kyber; carol
    never heard moon's vendor ID, so it does not take that answer (strongSwan: "peer's
    proposal selection invalid")."""
    caplog.set_level(logging.INFO, logger="pqike")
    net = _connect(_pair(KYBER, None, ACCEPT))
    assert net.peers["carol"].engine.list_sas() == []
    assert f"{SKIPPED} (KE1_KYBER_L3)" in caplog.text
    assert "peer selected an invalid proposal: 'KE1_KYBER_L3': private-use algorithm" in caplog.text
    # nothing past IKE_SA_INIT was sent
    assert {decode_message(d.data).exchange for d in net.log} == {ExchangeType.IKE_SA_INIT}


def test_create_child_sa_with_private_pfs_refused_without_vendor_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pqike")
    net = _connect(_pair("aes256-sha256-x25519", host_esp=KYBER))
    net.peers["carol"].engine.initiate("host", "home", net.now)
    net.run()
    (c,) = _established(net, "carol")
    assert [ch.name for ch in c.children] == ["net"]  # the IKE_SA itself stays
    assert f"{SKIPPED} (KE1_KYBER_L3)" in caplog.text


def test_unknown_vendor_ids_are_logged_short(caplog: pytest.LogCaptureFixture) -> None:
    """A long unknown vendor ID is named by its first bytes only, many of them by a count;
    IKE_SA_INIT is answered as usual. (Added on the way, they make IKE_AUTH fail: they
    change the signed message.)"""
    caplog.set_level(logging.INFO, logger="pqike")
    net = _pair("aes256-sha256-x25519")

    def add_vids(d: Datagram) -> list[Datagram]:
        msg = decode_message(d.data)
        if msg.exchange != ExchangeType.IKE_SA_INIT or msg.response:
            return [d]
        vids = [VendorId(data=b"x" * 1000), VendorId(data=b"FLEXVPN-SUPPORTED")]
        vids += [VendorId(data=bytes([i])) for i in range(10)]  # a flood is cut short
        return [Datagram(msg.with_payloads([*msg.payloads, *vids]).encode(), d.src, d.dst)]

    net.filter = add_vids
    _connect(net)
    assert any(isinstance(p, SecurityAssociation) for p in _init(net, "moon"))
    assert "received unknown vendor ID: " + ":".join(["78"] * 32) + "... (1000 bytes)" in (
        caplog.text
    )
    assert "received Cisco FlexVPN Supported vendor ID" in caplog.text
    assert caplog.text.count("received unknown vendor ID: ") == 4
    assert "received 7 more unknown vendor IDs, not shown" in caplog.text
    assert "parsed IKE_AUTH request 1" in caplog.text


def test_accept_private_algs_without_vendor_ids() -> None:
    _need("kyber3")
    net = _connect(_pair(KYBER, ACCEPT, ACCEPT))
    (c,) = _established(net, "carol")
    assert c.proposal.endswith("/CURVE_25519/KE1_KYBER_L3")


def test_private_methods_everywhere_with_vendor_ids_and_after_ike_rekey() -> None:
    """The walkthrough's case: both send the vendor ID; Kyber in IKE_SA_INIT/INTERMEDIATE,
    BIKE as PFS for a new CHILD_SA; after an IKE_SA rekey (no vendor IDs are exchanged
    there) the new IKE_SA still uses private-use methods with the peer."""
    _need("kyber1", "bike1")
    bike = "aes256-sha256-x25519-ke1_bike1"
    net = _connect(_pair("aes256-sha256-x25519-ke1_kyber1", VID, VID, host_esp=bike))
    net.peers["carol"].engine.initiate("host", "home", net.now)
    net.run()
    (c,) = _established(net, "carol")
    assert sorted(ch.name for ch in c.children) == ["host", "net"]
    old = (c.spi_i, c.spi_r)
    net.peers["moon"].engine.rekey("rw", None, net.now)
    net.run()
    (c,) = _established(net, "carol")
    assert (c.spi_i, c.spi_r) != old and c.proposal.endswith("/KE1_KYBER_L1")
    new_sa = next(s for s in net.peers["moon"].engine.sas.values() if s.established)
    assert new_sa.peer_strongswan
    host = next(ch for ch in c.children if ch.name == "host")
    net.peers["carol"].engine.rekey(None, "host", net.now)
    net.run()
    (c,) = _established(net, "carol")
    rekeyed = next(ch for ch in c.children if ch.name == "host")
    assert rekeyed.spi_in != host.spi_in and rekeyed.proposal.endswith("/KE1_BIKE_L1")
