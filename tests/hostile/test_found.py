"""Bugs the fuzzers of this suite found, pinned as plain tests.

IKE_SA_INIT is the one exchange without protection, so whatever reaches the tasks as
IKE_SA_INIT is unauthenticated. The stateless campaign found three ways to get such a
message to an IKE_SA past IKE_SA_INIT, by rewriting header fields of captured messages (no
keys, only the SPIs and message ID an on-path observer sees). Two were requests (an
IKE_SA_INIT without the I flag to an initiator's IKE_SA, one with message ID 1 to a
half-open one), which the state rule table (pqike/sa/rules.py) now drops and
tests/exchange/test_preauth.py covers; the third, a response, is pinned here. A fourth:
the engine gave an IKE_SA_INIT request with message ID 1 a half-open IKE_SA (which then
dropped it).
"""

from __future__ import annotations

import pytest

from pqike.events import Datagram, Endpoint, EventKind
from pqike.wire.iana import ExchangeType, NotifyType
from pqike.wire.message import Message, decode_message
from pqike.wire.payloads import Notify, SecurityAssociation
from tests.hostile.watch import LogWatch, sa_fingerprint
from tests.hostile.world import CERT, PSK, World, attacker_address, run_step


def _established() -> World:
    w = PSK.world(seed=5)
    for step in PSK.steps[:2]:  # stray half-open (COOKIEs), establish
        assert run_step(w, step) is None
    return w


def _forged_init(sa, mid: int, *, initiator: bool, response: bool) -> bytes:  # type: ignore[no-untyped-def]
    return Message(
        spi_i=sa.spi_i,
        spi_r=sa.spi_r,
        exchange=ExchangeType.IKE_SA_INIT,
        message_id=mid,
        payloads=[Notify(notify_type=NotifyType.NO_PROPOSAL_CHOSEN)],
        initiator=initiator,
        response=response,
    ).encode()


def test_forged_ike_sa_init_response_to_a_create_child_sa_request_is_ignored() -> None:
    """Before the fix, an unprotected "IKE_SA_INIT response" carrying NO_PROPOSAL_CHOSEN
    with the message ID of carol's outstanding CREATE_CHILD_SA request made it fail."""
    w = _established()
    carol = w.peers["carol"].engine
    (sa,) = w.established("carol")
    carol.initiate("host", "home", w.now)
    (request,) = carol.pop_outgoing()
    fp = sa_fingerprint(sa)
    forged = _forged_init(sa, sa.my_mid, initiator=False, response=True)
    with LogWatch() as watch:
        carol.receive(Datagram(forged, request.dst, request.src), w.now)
    assert sa_fingerprint(sa) == fp
    assert EventKind.CHILD_FAILED not in [e.kind for e in w.peers["carol"].events]
    expected = f"received IKE_SA_INIT response {sa.my_mid}, but expected CREATE_CHILD_SA"
    assert any(expected in line for line in watch.tail)
    w.peers["moon"].engine.receive(request, w.now)  # the real answer still completes it
    w.settle()
    (sa,) = w.established("carol")
    assert {c.name for c in sa.children} == {"net", "host"}


def test_ike_sa_init_request_with_message_id_1_gets_no_half_open_sa() -> None:
    """Before the fix, an IKE_SA_INIT request with message ID 1 got a half-open IKE_SA that
    then dropped it unanswered (the rule table refuses IKE_SA_INIT past message 0): ten of
    them from two addresses filled cookie_threshold, so legitimate initiators were asked
    for COOKIEs, for nothing but a rewritten header field."""
    w = CERT.world(seed=7)
    carol, moon = w.peers["carol"].engine, w.peers["moon"].engine
    carol.initiate("net", None, w.now)
    (init,) = carol.pop_outgoing()
    for i in range(12):
        forged = bytearray(init.data)
        forged[0:8] = bytes([i + 1]) * 8
        forged[20:24] = (1).to_bytes(4, "big")
        src = Endpoint(attacker_address(i // 5), 500)
        moon.receive(Datagram(bytes(forged), src, init.dst), w.now)
    assert moon.sas == {} and moon.pop_outgoing() == []
    moon.receive(init, w.now)  # carol's own request is answered without a COOKIE round
    (answer,) = moon.pop_outgoing()
    assert isinstance(decode_message(answer.data).payloads[0], SecurityAssociation)


@pytest.mark.parametrize("command", ["new-child", "rekey-child", "delete-child", "rekey-ike"])
def test_a_lost_request_of_a_command_is_retransmitted(command: str) -> None:
    """Found while chasing the above: initiate (of a further CHILD_SA), rekey and terminate
    --child sent their request without arming its retransmission (the engine's timer heap
    was not told), so if that one packet was lost, nothing happened until some unrelated
    deadline of the IKE_SA (a rekey, an hour later)."""
    w = _established()
    carol = w.peers["carol"].engine
    run = {
        "new-child": lambda: carol.initiate("host", "home", w.now),
        "rekey-child": lambda: carol.rekey(None, "net", w.now),
        "delete-child": lambda: carol.terminate(None, "net", None, w.now),
        "rekey-ike": lambda: carol.rekey("home", None, w.now),
    }
    run[command]()
    (lost,) = carol.pop_outgoing()
    timeout = carol.config.daemon.retransmit_timeout
    assert carol.next_deadline() == w.now + timeout
    carol.tick(w.now + timeout)
    (again,) = carol.pop_outgoing()
    assert again.data == lost.data
