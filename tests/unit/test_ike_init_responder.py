"""The IKE_SA_INIT responder's work before its response: only what the response or its
refusal depends on (the rest runs once the response is out)."""

from __future__ import annotations

import logging

import msgspec
import pytest

from kem import registry
from kem.ids import KeMethod
from pqike.engine import Engine
from pqike.events import Datagram, Endpoint
from pqike.log import Subsystem
from pqike.proposal import model, parse_proposals
from pqike.sa.ike_sa import IkeSa
from pqike.tasks import common
from pqike.tasks.ike_init import configured_proposals
from pqike.wire.iana import NotifyType, ProtocolId
from tests.exchange.peers import MOON, make_pair, psk_config

PROPOSAL = "aes256-sha256-x25519-ke1_mlkem768"


def _moon_responder_sa() -> IkeSa:
    """A responder IKE_SA of moon's "rw" connection, as an IKE_SA_INIT request makes it."""
    moon = make_pair(psk_config("carol", PROPOSAL), psk_config("moon", PROPOSAL)).peers["moon"]
    return IkeSa(
        moon.engine._services(),
        1,
        "rw",
        moon.engine.config.connections["rw"],
        False,
        Endpoint(MOON, 500),
        Endpoint("192.168.0.3", 500),
        spi_i=bytes(range(8)),
    )


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


def test_a_method_found_available_is_not_looked_up_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """computable() runs for every IKE_SA_INIT; a provider once loaded stays, so only a
    method not (yet) available is asked again."""
    asked: list[int] = []
    missing = {KeMethod.ML_KEM_1024.value}

    def available(self: registry.Method) -> bool:
        asked.append(self.id)
        return self.id not in missing

    monkeypatch.setattr(common, "_AVAILABLE", set(), raising=False)  # none known yet
    monkeypatch.setattr(registry.Method, "available", property(available))
    ike_sa = _moon_responder_sa()
    ours = configured_proposals((PROPOSAL, "aes256-sha256-x25519-ke1_mlkem1024"))
    for _ in range(3):
        assert common.computable(ike_sa, ours) == [ours[0]]  # the ML-KEM-1024 one dropped
        assert common.ke_backend(KeMethod.CURVE_25519).id == KeMethod.CURVE_25519
    x25519, mlkem768, mlkem1024 = (
        KeMethod.CURVE_25519.value,
        KeMethod.ML_KEM_768.value,
        KeMethod.ML_KEM_1024.value,
    )
    assert asked.count(x25519) == asked.count(mlkem768) == 1
    assert asked.count(mlkem1024) == 3  # unavailable: asked each time


def test_a_proposals_text_is_built_once_and_handed_on_to_numbered_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ "selected proposal: ..." is logged for every selection, of a numbered() copy of the
    kept choice: the copies carry the text instead of formatting each transform again."""
    built: list[model.Transform] = []
    real = model.Transform.__str__

    def counting(t: model.Transform) -> str:
        built.append(t)
        return real(t)

    monkeypatch.setattr(model.Transform, "__str__", counting)
    (chosen,) = parse_proposals(ProtocolId.IKE, [PROPOSAL])  # not a cached one
    text = str(chosen)
    assert text == "IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519/KE1_ML_KEM_768"
    once = len(built)
    copies = [chosen.numbered(n, bytes([n]) * 8) for n in (1, 2, 3)]
    assert [str(c) for c in copies] == [text] * 3 and len(built) == once


def test_a_responder_picks_no_ke_method_of_its_own() -> None:
    """Only an initiator sends a KE of its choosing (the first configured); a responder's
    IkeInit, made for every IKE_SA_INIT request, answers the peer's and looks none up."""
    from pqike.tasks.ike_init import IkeInit

    ike_sa = _moon_responder_sa()
    assert IkeInit(ike_sa, True).ke_method == KeMethod.CURVE_25519
    assert IkeInit(ike_sa, False).ke_method == KeMethod.NONE


def _carol_and_moon() -> tuple[Engine, Engine]:
    net = make_pair(psk_config("carol", PROPOSAL), psk_config("moon", PROPOSAL))
    return net.peers["carol"].engine, net.peers["moon"].engine


def test_the_x25519_exchange_runs_after_the_response_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """KEr is our public value: the exchange only SKEYSEED needs waits until the IKE_SA_INIT
    response is out, and the keys derived then are the initiator's."""
    backend = registry.get(KeMethod.CURVE_25519).backend()
    agreed: list[int] = []
    agree = backend._agree
    monkeypatch.setattr(backend, "_agree", lambda *a: agreed.append(1) or agree(*a))
    carol, moon = _carol_and_moon()
    seen_when_sent: list[int] = []
    sent: list[Datagram] = []

    def transmit(d: Datagram) -> None:
        seen_when_sent.append(len(agreed))
        sent.append(d)

    moon.set_transmit(transmit)
    carol.initiate("net", "home", 0.0)
    (request,) = carol.pop_outgoing()
    moon.receive(request, 0.0)
    assert seen_when_sent == [0] and agreed == [1]
    (sa,) = moon.sas.values()
    (carol_sa,) = carol.sas.values()
    carol.receive(sent[0], 0.0)
    assert sa.keys is not None and sa.keys == carol_sa.keys


@pytest.mark.parametrize("u", ["00" * 32, "ec" + "ff" * 30 + "7f"])
def test_a_small_order_x25519_value_is_refused_before_any_answer(
    caplog: pytest.LogCaptureFixture, u: str
) -> None:
    """A peer's small-order point (all-zero shared secret) gets NO_PROPOSAL_CHOSEN, a log
    line naming it, and no IKE_SA: checked before the response, not by the exchange after."""
    for sub in Subsystem:
        caplog.set_level(logging.DEBUG, logger=f"pqike.{sub.value}")
    carol, moon = _carol_and_moon()
    carol.initiate("net", "home", 0.0)
    (request,) = carol.pop_outgoing()
    (carol_sa,) = carol.sas.values()
    (init,) = [t for t in carol_sa.active if getattr(t, "ke", None) is not None]
    public = init.ke.public_value
    assert request.data.count(public) == 1
    forged = Datagram(request.data.replace(public, bytes.fromhex(u)), request.src, request.dst)
    moon.receive(forged, 0.0)
    (answer,) = moon.pop_outgoing()
    assert not moon.sas
    assert "small-order point" in caplog.text and "Traceback" not in caplog.text
    from pqike.wire.message import decode_message
    from pqike.wire.payloads import Notify

    (notify,) = decode_message(answer.data).payloads
    assert isinstance(notify, Notify) and notify.notify_type == NotifyType.NO_PROPOSAL_CHOSEN


def test_ike_sas_of_one_proposal_share_their_suite() -> None:
    """The suite is a function of the selected transforms and frozen: IKE_SAs that negotiated
    the same share one (built and checked once, no object per kept IKE_SA); one that cannot
    be used is refused every time, not remembered."""
    from pqike.crypto.algorithms import UnsupportedTransform
    from pqike.tasks.ike_init import ike_suite

    (p,) = parse_proposals(ProtocolId.IKE, [PROPOSAL])
    (again,) = parse_proposals(ProtocolId.IKE, [PROPOSAL])
    assert ike_suite(p) is ike_suite(again)
    (ctr,) = parse_proposals(ProtocolId.IKE, ["aes128ctr-sha256-x25519"])  # no SK cipher
    for _ in range(2):
        with pytest.raises(UnsupportedTransform):
            ike_suite(ctr)
