"""Nothing happens before authentication: which requests an IKE_SA accepts in each state.

The attacker holds no credentials but can always complete IKE_SA_INIT (and the
IKE_INTERMEDIATE rounds), so it has valid SK keys for a half-open IKE_SA. Everything it
then protects with them, other than IKE_INTERMEDIATE and IKE_AUTH, must be dropped
(RFC 7296 §1.2/§2.2; strongSwan rejects it too). The expectations here are written from
the RFC, not read from pqike.sa.rules, so the test checks the table rather than itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from pqike.events import Datagram
from pqike.sa.ike_sa import REKEYED_IKE_GRACE, IkeSa, IkeState
from pqike.tasks.base import Outgoing
from pqike.tasks.informational import IkeDelete
from pqike.wire import sk as wire_sk
from pqike.wire.iana import ExchangeType, NotifyType
from pqike.wire.message import decode_message
from pqike.wire.payloads import Notify
from tests.exchange.peers import Net, make_pair, psk_config

PROP = "aes256-sha256-x25519-ke1_mlkem768"
X = ExchangeType


def _drop(*exchanges: ExchangeType) -> Callable[[Datagram], list[Datagram]]:
    def flt(d: Datagram) -> list[Datagram]:
        return [] if decode_message(d.data).exchange in exchanges else [d]

    return flt


def _pair(moon_psk: str | None = None) -> Net:
    kw = {"psk": moon_psk} if moon_psk else {}
    return make_pair(psk_config("carol", PROP), psk_config("moon", PROP, **kw))


def _only_sa(net: Net, name: str) -> IkeSa:
    (sa,) = net.peers[name].engine.sas.values()
    return sa


def _forge(sender: IkeSa, target: IkeSa, exchange: int) -> bytes:
    """A request sealed with the sender's real keys, as the target expects it next."""
    out = Outgoing(exchange, target.peer_mid, is_response=False)  # type: ignore[arg-type]
    return sender._encode(out)[0]


def _deliver(net: Net, target_name: str, target: IkeSa, raw: bytes) -> None:
    engine = net.peers[target_name].engine
    msg = decode_message(raw)
    src, dst = target.remote, target.local
    if msg.exchange == X.IKE_SA_INIT and msg.initiator:
        # the engine hands IKE_SA_INIT requests to the half-open table, not to an SA:
        # put this one straight in front of the IKE_SA under test
        target.receive(msg, raw, src, dst, net.now)
    else:
        engine.receive(Datagram(data=raw, src=src, dst=dst), net.now)


# ---- the bypass of issue 8, as an attacker without credentials runs it ------------------


def _attacker_after_init() -> tuple[Net, IkeSa, IkeSa]:
    """carol has the wrong PSK; her IKE_AUTH never leaves; she pretends it succeeded."""
    net = _pair(moon_psk="the-real-psk-carol-does-not-have")
    net.filter = _drop(X.IKE_AUTH)
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    carol, moon = _only_sa(net, "carol"), _only_sa(net, "moon")
    assert moon.state == IkeState.CONNECTING and carol.request is not None
    carol.my_mid = carol.request.message_id  # the ID moon expects next
    carol.request, carol.active, carol.queued = None, [], []
    carol.state = IkeState.ESTABLISHED
    net.filter = None
    return net, carol, moon


@pytest.mark.parametrize("attack", ["create_child", "rekey_ike", "informational"])
def test_unauthenticated_peer_gets_nothing(attack: str, caplog: pytest.LogCaptureFixture) -> None:
    net, _, moon_sa = _attacker_after_init()
    attacker = net.peers["carol"].engine
    moon = net.peers["moon"]
    caplog.set_level(logging.INFO, logger="pqike")
    if attack == "create_child":
        attacker.initiate("net", None, net.now)
    elif attack == "rekey_ike":
        attacker.rekey("home", None, net.now)
    else:
        attacker.terminate("home", None, None, net.now)
    sent = attacker.pop_outgoing()
    assert sent, "the attacker's engine produced its request"
    for d in sent:
        moon.engine.receive(d, net.now)
    assert moon.engine.pop_outgoing() == []  # no answer at all
    assert moon.kernel.sas == {} and moon.kernel.policies == []
    assert moon_sa.state == IkeState.CONNECTING and moon_sa.remote_id == ""
    assert [sa.state for sa in moon.engine.sas.values()] == [IkeState.CONNECTING]
    assert "for not authenticated IKE_SA" in caplog.text
    # and the half-open IKE_SA goes at half_open_timeout, as if nothing had come
    net.advance(31.0)
    assert moon.engine.sas == {}
    assert not [e for e in moon.events if e.kind.value.endswith("established")]


# ---- the matrix: every exchange type against every state, both roles ------------------


def _setup_phase(responder: bool) -> tuple[Net, str, IkeSa, IkeSa]:
    """Right after IKE_SA_INIT: nothing else gets through."""
    net = _pair()
    net.filter = _drop(X.IKE_INTERMEDIATE, X.IKE_AUTH)
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    net.filter = None
    carol, moon = _only_sa(net, "carol"), _only_sa(net, "moon")
    assert carol.state == moon.state == IkeState.CONNECTING
    return (net, "moon", moon, carol) if responder else (net, "carol", carol, moon)


def _established(responder: bool) -> tuple[Net, str, IkeSa, IkeSa]:
    net = _pair()
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    carol, moon = _only_sa(net, "carol"), _only_sa(net, "moon")
    assert carol.state == moon.state == IkeState.ESTABLISHED
    return (net, "moon", moon, carol) if responder else (net, "carol", carol, moon)


def _rekeyed(responder: bool) -> tuple[Net, str, IkeSa, IkeSa]:
    """The old IKE_SAs after an IKE_SA rekey whose DELETE is lost."""
    net, *_ = _established(responder)
    old = {n: _only_sa(net, n) for n in ("carol", "moon")}
    net.filter = lambda d: [] if decode_message(d.data).exchange == X.INFORMATIONAL else [d]
    net.peers["carol"].engine.rekey("home", None, net.now)
    net.run()
    net.filter = None
    assert old["carol"].state == old["moon"].state == IkeState.REKEYED
    target = "moon" if responder else "carol"
    return net, target, old[target], old["carol" if responder else "moon"]


def _deleting(responder: bool) -> tuple[Net, str, IkeSa, IkeSa]:
    """Established, with our DELETE of it queued behind other work."""
    net, name, target, sender = _established(responder)
    target.queue(IkeDelete(target, True))
    assert target.deleting
    return net, name, target, sender


PROCESS, DROP, TEMP = "answered", "dropped", "TEMPORARY_FAILURE"
ALL = [*ExchangeType, 99]
# RFC 7296 §1.2, §2.2, §2.25 and RFC 9242/9370, per (state, original responder?)
EXPECTED: dict[tuple[str, bool], dict[int, str]] = {
    ("setup", True): {X.IKE_INTERMEDIATE: PROCESS, X.IKE_AUTH: PROCESS},
    ("setup", False): {},
    **{
        ("established", r): {
            X.CREATE_CHILD_SA: PROCESS,
            X.INFORMATIONAL: PROCESS,
            X.IKE_FOLLOWUP_KE: PROCESS,
        }
        for r in (True, False)
    },
    **{
        (phase, r): {X.CREATE_CHILD_SA: TEMP, X.IKE_FOLLOWUP_KE: TEMP, X.INFORMATIONAL: PROCESS}
        for phase in ("rekeyed", "deleting")
        for r in (True, False)
    },
}
PHASES = {
    "setup": _setup_phase,
    "established": _established,
    "rekeyed": _rekeyed,
    "deleting": _deleting,
}


def _name(ex: int) -> str:
    return ExchangeType(ex).name if ex in ExchangeType._value2member_map_ else str(ex)


@pytest.mark.parametrize("exchange", ALL, ids=_name)
@pytest.mark.parametrize("responder", [True, False], ids=["responder", "initiator"])
@pytest.mark.parametrize("phase", list(PHASES))
def test_exchange_matrix(
    phase: str, responder: bool, exchange: int, caplog: pytest.LogCaptureFixture
) -> None:
    net, name, target, sender = PHASES[phase](responder)
    peer = net.peers[name]
    expected = EXPECTED[phase, responder].get(exchange, DROP)
    before = (target.state, target.peer_mid, dict(peer.kernel.sas), len(peer.engine.sas))
    caplog.set_level(logging.INFO, logger="pqike")
    _deliver(net, name, target, _forge(sender, target, exchange))
    answers = peer.engine.pop_outgoing()
    log = caplog.text
    assert "internal error" not in log and "Traceback" not in log
    if expected == DROP:
        assert answers == [], log
        assert (target.state, target.peer_mid, dict(peer.kernel.sas), len(peer.engine.sas)) == (
            before
        )
        assert "dropped" in log
        return
    assert len(answers) == 1, log
    _, inner = wire_sk.unprotect(answers[0].data, sender._in_cipher)  # type: ignore[arg-type]
    notifies = {p.notify_type for p in inner if isinstance(p, Notify)}
    if expected == TEMP:
        assert notifies == {NotifyType.TEMPORARY_FAILURE}
        assert target.state == before[0] and dict(peer.kernel.sas) == before[2]
    else:
        assert NotifyType.TEMPORARY_FAILURE not in notifies


def test_matrix_covers_every_exchange_type() -> None:
    """A new exchange type in the IANA enum shows up in the matrix above."""
    assert set(ALL) >= set(ExchangeType)


# ---- a rekeyed IKE_SA does not outlive its DELETE ------------------------------------


def test_rekeyed_ike_sa_is_deleted_if_the_peer_never_does() -> None:
    """The rekey initiator's DELETE of the old IKE_SA is lost for good: the responder
    deletes the old IKE_SA itself after a grace time, as strongSwan does."""
    net, _, moon_old, carol_old = _rekeyed(responder=True)
    carol_old.destroy(net.now)  # carol forgot it (e.g. gave up on her DELETE)
    moon = net.peers["moon"].engine
    assert moon.next_deadline() is not None
    net.advance(REKEYED_IKE_GRACE - 1)
    assert moon_old.state == IkeState.REKEYED
    net.advance(2.0)
    assert moon_old.deleting or moon_old.state == IkeState.DESTROYED
    for _ in range(12):  # carol no longer answers for it: retransmits, then it is gone
        net.advance(60.0)
    assert moon_old.state == IkeState.DESTROYED
    assert [sa.state for sa in moon.sas.values()] == [IkeState.ESTABLISHED]
    assert len(_established_children(net)) == 1


def _established_children(net: Net) -> list[object]:
    return [c for sa in net.peers["moon"].engine.sas.values() for c in sa.children]


# ---- a failed IKE_AUTH gives back the SPI it reserved --------------------------------


def test_failed_ike_auth_releases_reserved_spi() -> None:
    net = _pair(moon_psk="another-psk-than-carols")
    carol = net.peers["carol"]
    carol.engine.initiate("net", None, 0.0)
    net.run()
    assert carol.engine.sas == {}  # AUTHENTICATION_FAILED
    assert carol.kernel._spis == set(), "the CHILD_SA's SPI stays reserved"


def test_abandoned_ike_sa_releases_reserved_spi() -> None:
    """IKE_AUTH never answered: after the retransmits the SPI is given back too."""
    net = _pair()
    net.filter = _drop(X.IKE_AUTH)
    carol = net.peers["carol"]
    carol.engine.initiate("net", None, 0.0)
    net.run()
    assert carol.kernel._spis
    for _ in range(20):
        net.advance(30.0)
    assert carol.engine.sas == {} and carol.kernel._spis == set()
