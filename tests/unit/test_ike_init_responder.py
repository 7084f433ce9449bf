"""The IKE_SA_INIT responder's work before its response: only what the response or its
refusal depends on (the rest runs once the response is out)."""

from __future__ import annotations

import logging

import msgspec
import pytest

from pqike.events import Datagram
from pqike.log import Subsystem
from tests.exchange.peers import make_pair, psk_config

PROPOSAL = "aes256-sha256-x25519-ke1_mlkem768"


def test_nat_detection_of_the_request_is_checked_after_the_response_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for sub in Subsystem:
        caplog.set_level(logging.DEBUG, logger=f"pqike.{sub.value}")
    carol = psk_config("carol", PROPOSAL)
    home = msgspec.structs.replace(carol.connections["home"], encap=True)  # fakes a NAT
    net = make_pair(
        msgspec.structs.replace(carol, connections={"home": home}), psk_config("moon", PROPOSAL)
    )
    carol_engine, moon = net.peers["carol"].engine, net.peers["moon"].engine
    seen_when_sent: list[bool] = []

    def transmit(d: Datagram) -> None:
        seen_when_sent.extend(sa.nat_remote for sa in moon.sas.values())

    moon.set_transmit(transmit)
    carol_engine.initiate("net", "home", 0.0)
    (request,) = carol_engine.pop_outgoing()
    moon.receive(request, 0.0)
    (sa,) = moon.sas.values()
    assert seen_when_sent == [False]  # the response did not wait for the NAT-D hashes
    assert sa.nat_remote and not sa.nat_local  # checked once it was out
    assert "remote host is behind NAT" in caplog.text
