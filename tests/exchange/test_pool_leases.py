"""Virtual IP leases go offline when the IKE_SA that holds them goes (swanctl --list-pools
--leases), so a pool hands them to new identities instead of running dry."""

from __future__ import annotations

import logging

import pytest

from tests.exchange.peers import make_pair, psk_config

PROP = "aes256-sha256-x25519"


def _leases(net, who: str = "moon") -> list[tuple[str, str, str]]:
    (pool,) = net.peers[who].engine.list_pools()
    return [(lease.address, lease.identity, lease.status) for lease in pool.leases]


def _pair():
    return make_pair(psk_config("carol", PROP), psk_config("moon", PROP))


def _up(net) -> None:
    net.peers["carol"].engine.initiate("net", None, net.now)
    net.run()
    (sa,) = net.peers["moon"].engine.list_sas()
    assert sa.state == "ESTABLISHED" and sa.remote_vips == ["10.3.0.1"]


@pytest.mark.parametrize("who", ["carol", "moon"])
def test_lease_goes_offline_when_the_ike_sa_is_deleted(
    who: str, caplog: pytest.LogCaptureFixture
) -> None:
    net = _pair()
    _up(net)
    assert _leases(net) == [("10.3.0.1", "carol@strongswan.org", "online")]
    caplog.set_level(logging.INFO, logger="pqike")
    for sub in ("CFG", "IKE"):
        caplog.set_level(logging.INFO, logger=f"pqike.{sub}")
    ike = "home" if who == "carol" else "rw"
    net.peers[who].engine.terminate(ike, None, None, net.now)
    net.run()
    assert net.peers["moon"].engine.list_sas() == []
    assert _leases(net) == [("10.3.0.1", "carol@strongswan.org", "offline")]
    assert "lease 10.3.0.1 by 'carol@strongswan.org' went offline" in caplog.text
    _up(net)  # the reconnect gets its address back
    assert _leases(net) == [("10.3.0.1", "carol@strongswan.org", "online")]


def test_lease_stays_online_through_an_ike_sa_rekey() -> None:
    net = _pair()
    _up(net)
    net.peers["carol"].engine.rekey(None, None, net.now)
    net.run()
    net.advance(60)  # past delete_rekeyed_delay and every timer of the old IKE_SA
    (sa,) = net.peers["moon"].engine.list_sas()
    assert sa.remote_vips == ["10.3.0.1"]
    assert _leases(net) == [("10.3.0.1", "carol@strongswan.org", "online")]


def test_lease_survives_the_old_ike_sa_of_a_reauthentication() -> None:
    """Make-before-break: the new IKE_SA leases the address before the old one goes; the
    old one's going must not take the identity offline under the new one."""
    net = _pair()
    _up(net)
    net.peers["carol"].engine.reauthenticate(None, net.now)
    net.run()
    net.advance(60)
    (sa,) = net.peers["moon"].engine.list_sas()
    assert sa.state == "ESTABLISHED" and sa.remote_vips == ["10.3.0.1"]
    assert _leases(net) == [("10.3.0.1", "carol@strongswan.org", "online")]
    net.peers["moon"].engine.terminate("rw", None, None, net.now)
    net.run()
    assert _leases(net) == [("10.3.0.1", "carol@strongswan.org", "offline")]
