"""Lifecycle options as strongSwan has them: start_action, close_action, dpd_action,
keyingtries, unique, reauth_time (make-before-break) and the DELETE at the hard lifetime."""

from __future__ import annotations

import itertools
import logging

import pytest

from pqike.engine import Engine
from pqike.events import Datagram, EventKind
from pqike.kernel.base import MemoryKernel
from pqike.wire.iana import ExchangeType
from pqike.wire.message import decode_header
from tests.exchange.peers import CAROL, MOON, Net, current_sas, make_pair, psk_config

PROP = "aes256-sha256-x25519"


def _pair(
    carol_conn: dict | None = None,
    moon_conn: dict | None = None,
    carol_child: dict | None = None,
    moon_child: dict | None = None,
    *,
    vips: bool = True,
) -> Net:
    return make_pair(
        psk_config("carol", PROP, conn_extra=carol_conn, child_extra=carol_child, vips=vips),
        psk_config("moon", PROP, conn_extra=moon_conn, child_extra=moon_child, vips=vips),
    )


def _up(net: Net) -> None:
    net.peers["carol"].engine.initiate("net", None, net.now)
    net.run()
    (sa,) = net.peers["carol"].engine.list_sas()
    assert sa.state == "ESTABLISHED" and sa.children


def _established(net: Net, who: str) -> list:
    return [sa for sa in net.peers[who].engine.list_sas() if sa.state == "ESTABLISHED"]


def _restart_carol(net: Net) -> Engine:
    """carol loses its state (reboot): a fresh engine with the same config."""
    old = net.peers["carol"].engine
    fresh = Engine(
        old.config,
        MemoryKernel(),
        events=net.peers["carol"].events.append,
        source_for=lambda r: CAROL,
    )
    net.peers["carol"].engine = fresh
    return fresh


def _exchanges(net: Net, src: str) -> list[ExchangeType]:
    return [decode_header(d.data).exchange for d in net.log if d.src.host == src]


# ---- start_action -----------------------------------------------------------------------


def test_start_action_start_initiates_at_start() -> None:
    net = _pair(carol_child={"start_action": "start"})
    net.peers["carol"].engine.start(net.now)
    net.run()
    (sa,) = _established(net, "carol")
    assert [c.name for c in sa.children] == ["net"]


def test_start_action_none_initiates_nothing() -> None:
    net = _pair()
    net.peers["carol"].engine.start(net.now)
    net.run()
    assert net.log == [] and net.peers["carol"].engine.list_sas() == []


# ---- close_action -----------------------------------------------------------------------


def test_close_action_start_after_peer_deletes_child() -> None:
    net = _pair(carol_child={"close_action": "start"})
    _up(net)
    (before,) = _established(net, "carol")
    net.peers["moon"].engine.terminate(None, "net", None, net.now)
    net.run()
    (after,) = _established(net, "carol")
    assert after.unique_id == before.unique_id  # same IKE_SA, a new CHILD_SA on it
    assert [c.name for c in after.children] == ["net"]
    assert after.children[0].spi_in != before.children[0].spi_in
    assert len(_established(net, "moon")[0].children) == 1


def test_close_action_start_after_peer_deletes_ike_sa() -> None:
    net = _pair(carol_child={"close_action": "start"})
    _up(net)
    (before,) = _established(net, "carol")
    net.peers["moon"].engine.terminate("rw", None, None, net.now)
    net.run()
    (after,) = _established(net, "carol")
    assert after.unique_id != before.unique_id and [c.name for c in after.children] == ["net"]
    assert len(_established(net, "moon")) == 1


def test_close_action_none_leaves_it_closed() -> None:
    net = _pair()
    _up(net)
    net.peers["moon"].engine.terminate(None, "net", None, net.now)
    net.run()
    (sa,) = _established(net, "carol")
    assert sa.children == []


def test_close_action_start_not_after_rekey() -> None:
    """The peer deleting the old CHILD_SA after its rekey is no close."""
    net = _pair(carol_child={"close_action": "start"})
    _up(net)
    net.peers["moon"].engine.rekey(None, "net", net.now)
    net.run()
    (sa,) = _established(net, "carol")
    assert len(sa.children) == 1


# ---- dpd_action -------------------------------------------------------------------------


def test_dpd_action_clear_does_not_restart() -> None:
    net = _pair(carol_conn={"dpd_delay": "30s"})
    _up(net)
    net.filter = lambda d: [] if d.dst.host == MOON else [d]
    for _ in range(30):
        net.advance(10.0)
    assert net.peers["carol"].engine.list_sas() == []
    kinds = [e.kind for e in net.peers["carol"].events]
    assert kinds.count(EventKind.IKE_DELETED) == 1
    sent_init = _exchanges(net, CAROL).count(ExchangeType.IKE_SA_INIT)
    assert sent_init == 1  # only the first one: nothing restarted


# ---- keyingtries ------------------------------------------------------------------------


def _silent_moon(net: Net, seconds: float, starts: list[float] | None = None) -> int:
    """Moon never answers; the number of IKE_SAs carol started (``starts``: when each
    one's first IKE_SA_INIT went out)."""
    seen: set[bytes] = set()

    def drop(d: Datagram) -> list[Datagram]:
        spi = decode_header(d.data).spi_i
        if d.src.host == CAROL and spi not in seen:
            seen.add(spi)
            if starts is not None:
                starts.append(net.now)
        return [] if d.dst.host == MOON else [d]

    net.filter = drop
    net.peers["carol"].engine.initiate("net", None, net.now)
    net.run()
    for _ in range(int(seconds // 5)):
        net.advance(5.0)
    return len(seen)


@pytest.mark.parametrize(("tries", "attempts"), [(1, 1), (3, 3)])
def test_keyingtries_n_attempts(tries: int, attempts: int) -> None:
    net = _pair(carol_conn={"keyingtries": tries})
    assert _silent_moon(net, 2000) == attempts
    assert net.peers["carol"].engine.list_sas() == []


def test_keyingtries_zero_tries_forever_with_back_off() -> None:
    net = _pair(carol_conn={"keyingtries": 0})
    starts: list[float] = []
    # one retransmission sequence (5 retransmits, base 1.8) lasts about 165 s
    assert _silent_moon(net, 3000, starts) >= 10
    assert net.peers["carol"].engine.list_sas()  # still trying
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps == sorted(gaps) and gaps[-1] - gaps[0] > 60  # growing pauses, capped


def test_keyingtries_zero_connects_when_peer_comes_back() -> None:
    net = _pair(carol_conn={"keyingtries": 0})
    _silent_moon(net, 400)
    net.filter = None
    for _ in range(30):
        net.advance(10.0)
    (sa,) = _established(net, "carol")
    assert sa.children


# ---- unique -----------------------------------------------------------------------------


def _second_ike_sa(net: Net, *, initial_contact: bool) -> None:
    fresh = _restart_carol(net)
    if not initial_contact:  # as a peer with another IKE_SA up to moon would
        fresh._svc.has_contact = lambda sa: True
    fresh.initiate("net", None, net.now)
    net.run()


@pytest.mark.parametrize("unique", ["no", "never", "keep", "replace"])
def test_unique_without_initial_contact(unique: str) -> None:
    net = _pair(moon_conn={"unique": unique})
    _up(net)
    (first,) = _established(net, "moon")
    _second_ike_sa(net, initial_contact=False)
    ids = [sa.unique_id for sa in _established(net, "moon")]
    carol = _established(net, "carol")
    if unique in ("no", "never"):
        assert len(ids) == 2 and len(carol) == 1
    elif unique == "keep":  # the new one is refused with AUTHENTICATION_FAILED
        assert ids == [first.unique_id] and carol == []
        assert "AUTHENTICATION_FAILED" in net.peers["carol"].events[-1].message
    else:  # replace: the old one is deleted, with a DELETE (unanswered: carol forgot it)
        assert ExchangeType.INFORMATIONAL in _exchanges(net, MOON) and len(carol) == 1
        for _ in range(20):
            net.advance(10.0)
        ids = [sa.unique_id for sa in _established(net, "moon")]
        assert len(ids) == 1 and ids[0] != first.unique_id


@pytest.mark.parametrize("unique", ["no", "keep", "replace", "never"])
def test_unique_with_initial_contact(unique: str) -> None:
    net = _pair(moon_conn={"unique": unique})
    _up(net)
    (first,) = _established(net, "moon")
    _second_ike_sa(net, initial_contact=True)
    ids = [sa.unique_id for sa in _established(net, "moon")]
    if unique == "never":  # INITIAL_CONTACT is ignored too
        assert len(ids) == 2
    else:  # the stale IKE_SA is destroyed silently, the new one kept
        assert len(ids) == 1 and ids[0] != first.unique_id
        assert ExchangeType.INFORMATIONAL not in _exchanges(net, MOON)


# ---- hard lifetime and reauthentication -------------------------------------------------


def _drop_new_ike(net: Net) -> None:
    """carol's new IKE_SA_INITs get lost: reauthentication cannot happen."""

    def drop(d: Datagram) -> list[Datagram]:
        h = decode_header(d.data)
        return [] if h.exchange == ExchangeType.IKE_SA_INIT and d.src.host == CAROL else [d]

    net.filter = drop


def test_hard_lifetime_sends_delete() -> None:
    net = _pair(carol_conn={"reauth_time": "20s", "rand_time": 0})
    _up(net)
    _drop_new_ike(net)
    for _ in range(30):
        net.advance(1.0)
    assert _established(net, "carol") == []  # (its reauthentication attempt is lost)
    # moon got the DELETE and removed its IKE_SA and CHILD_SA: no dead tunnel left behind
    assert net.peers["moon"].engine.list_sas() == [] and net.peers["moon"].kernel.sas == {}
    assert ExchangeType.INFORMATIONAL in _exchanges(net, CAROL)


def _outbound_up(net: Net, who: str, peer: str) -> bool:
    return any(dst == peer for (_, dst) in net.peers[who].kernel.sas)


@pytest.mark.parametrize("side", ["carol", "moon"])
def test_reauthentication_make_before_break(side: str) -> None:
    extra = {"reauth_time": "20s", "rand_time": 0}
    net = _pair(
        carol_conn=extra if side == "carol" else None,
        moon_conn=extra if side == "moon" else None,
        vips=side == "carol",  # a responder that assigned a VIP cannot reauthenticate
    )
    _up(net)
    (old,) = _established(net, "carol")
    gaps = 0
    for _ in range(40):  # step by step: an outbound CHILD_SA on both ends at every moment
        net.advance(1.0)
        gaps += not (_outbound_up(net, "carol", MOON) and _outbound_up(net, "moon", CAROL))
    assert gaps == 0
    (new,) = _established(net, "carol")
    assert new.unique_id != old.unique_id and [c.name for c in new.children] == ["net"]
    (moon_sa,) = _established(net, "moon")
    assert len(moon_sa.children) == 1
    # (plus, on the reauthenticating end, the old inbound SA kept for delete_rekeyed_delay)
    assert all(len(current_sas(p)) == 2 for p in net.peers.values())
    if side == "carol":  # the virtual IP stayed installed through the switch
        assert net.peers["carol"].kernel.vips == ["10.3.0.1"]
        assert new.local_vips == ["10.3.0.1"]


def test_responder_with_virtual_ips_does_not_reauthenticate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pqike")
    net = _pair(moon_conn={"reauth_time": "20s", "rand_time": 0})
    _up(net)
    for _ in range(30):
        net.advance(1.0)
    assert "initiator did not reauthenticate as requested" in caplog.text
    assert net.peers["moon"].engine.list_sas() == []  # hard lifetime, with a DELETE
    assert net.peers["carol"].engine.list_sas() == []


def test_reauth_initial_contact_not_sent() -> None:
    net = _pair(carol_conn={"reauth_time": "20s", "rand_time": 0}, moon_conn={"unique": "no"})
    _up(net)
    seen: list[bool] = []
    moon = net.peers["moon"].engine
    original = moon._replace_duplicates

    def spy(sa, initial_contact):  # type: ignore[no-untyped-def]
        seen.append(initial_contact)
        return original(sa, initial_contact)

    moon._svc.replace_duplicates = spy
    for _ in range(25):
        net.advance(1.0)
    assert seen == [False]  # the reauthenticating IKE_AUTH carries no INITIAL_CONTACT


def test_failed_reauthentication_is_not_retried_as_a_new_connection() -> None:
    net = _pair(carol_conn={"reauth_time": "20s", "rand_time": 0, "keyingtries": 0})
    _up(net)
    _drop_new_ike(net)
    for _ in range(25):
        net.advance(1.0)
    net.filter = lambda d: [] if d.dst.host == MOON else [d]  # moon gone for good
    for _ in range(30):
        net.advance(10.0)
    # one reauthentication attempt, no endless new IKE_SAs next to the old one
    spis = {decode_header(d.data).spi_i for d in net.log if d.src.host == CAROL}
    assert len(spis) == 2


def test_reauthentication_while_the_old_ike_sa_is_rekeyed() -> None:
    """An IKE rekey of the old IKE_SA during reauthentication: its successor is what the
    reauthentication deletes, so one IKE_SA is left, not two."""
    net = _pair(carol_conn={"reauth_time": "20s", "rekey_time": "20s", "rand_time": 0})
    _up(net)
    for _ in range(25):
        net.advance(1.0)
    assert len(_established(net, "carol")) == 1 and len(_established(net, "moon")) == 1


def test_initiate_during_keyingtries_back_off_starts_it_now() -> None:
    net = _pair(carol_conn={"keyingtries": 0})
    _silent_moon(net, 200)  # the first attempt gave up (165 s), the second one runs
    for _ in range(300):  # to the pause after the second attempt
        net.advance(1.0)
        (waiting,) = net.peers["carol"].engine.list_sas()
        if waiting.state == "CREATED":
            break
    assert waiting.state == "CREATED"
    net.filter = None
    assert net.peers["carol"].engine.initiate("net", None, net.now) == waiting.unique_id
    net.run()
    (sa,) = _established(net, "carol")
    assert sa.unique_id == waiting.unique_id and sa.children


def test_close_action_start_on_the_responder_that_assigned_a_virtual_ip() -> None:
    """moon re-creates the CHILD_SA carol deleted: its remote "dynamic" is carol's virtual
    IP, not carol's address (else carol answers TS_UNACCEPTABLE)."""
    net = _pair(moon_child={"close_action": "start"})
    _up(net)
    net.peers["carol"].engine.terminate(None, "net", None, net.now)
    net.run()
    (sa,) = _established(net, "carol")
    assert [c.name for c in sa.children] == ["net"]
    assert sa.children[0].local_ts == ["10.3.0.1/32"]
