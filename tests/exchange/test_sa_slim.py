"""What an IKE_SA keeps: a responder holds thousands of established IKE_SAs, and each object
one of them keeps is one more for the cyclic GC to traverse at every full collection."""

from __future__ import annotations

import logging

import pytest

from pqike import log as pqlog
from pqike.sa.ike_sa import IkeSa
from tests.exchange.test_ike_sa import MLKEM3, _establish, _need

X25519 = "aes256-sha256-x25519"


def _sas(net, name: str) -> list[IkeSa]:  # type: ignore[no-untyped-def]
    return list(net.peers[name].engine.sas.values())


def test_reassemblers_are_made_on_the_first_fragment() -> None:
    net = _establish(X25519)
    for name in ("carol", "moon"):
        (sa,) = _sas(net, name)
        assert sa.established
        assert sa._frag_requests is None and sa._frag_responses is None, name


def test_fragmented_handshake_reassembles_in_the_direction_it_needs() -> None:
    _need("mlkem512")
    net = _establish(MLKEM3, fragment_size=576)
    (moon,) = _sas(net, "moon")
    (carol,) = _sas(net, "carol")
    assert moon.established and carol.established
    # the responder reassembled requests and no response, the initiator the other way round
    assert moon._frag_requests is not None and moon._frag_responses is None
    assert carol._frag_responses is not None and carol._frag_requests is None
    assert moon._frag_requests.held == carol._frag_responses.held == 0
    assert moon._frag_requests.owner == moon.log.sa  # the eviction line names the IKE_SA


def test_established_responder_keeps_no_empty_list() -> None:
    net = _establish(X25519)
    (sa,) = _sas(net, "moon")
    assert sa.established and sa.children
    empty = [
        name
        for name in IkeSa.__slots__
        if isinstance(getattr(sa, name, None), list) and not getattr(sa, name)
    ]
    assert empty == []
    # and the shared () it holds instead still reads as an empty sequence
    assert not sa.queued and not sa.active and not sa.passive and not sa.after_response


def test_ike_sa_binds_its_four_loggers_without_a_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every IKE_SA (a flood's half-open ones too) binds IKE, ENC, NET and CFG to its
    context: the subsystems' loggers are looked up once, not per IKE_SA."""
    (sa,) = _sas(_establish(X25519), "moon")
    looked_up: list[object] = []
    real = pqlog._py_logger
    monkeypatch.setattr(pqlog, "_py_logger", lambda s: looked_up.append(s) or real(s))
    new = IkeSa(sa.svc, 99, sa.name, sa.conn, False, sa.local, sa.remote, bytes(8))
    monkeypatch.undo()
    assert looked_up == []
    for attr, subsystem in (("log", "IKE"), ("enc", "ENC"), ("net", "NET"), ("cfg", "CFG")):
        bound = getattr(new, attr)
        assert bound._log is logging.getLogger(f"pqike.{subsystem}"), attr
        assert bound.sa == f"{sa.name}|99"


@pytest.mark.parametrize("ike", [X25519, MLKEM3])
def test_last_response_is_left_alone_by_the_cyclic_gc(ike: str) -> None:
    """The packets of the last response, kept per IKE_SA for retransmits, are a tuple the
    collector stops tracking once it has seen it (a list would be traversed forever)."""
    import gc

    if ike == MLKEM3:
        _need("mlkem512")
    net = _establish(ike, fragment_size=576)
    (sa,) = _sas(net, "moon")
    assert sa.last_response is not None
    mid, packets = sa.last_response
    assert mid == sa.peer_mid - 1 and packets and all(isinstance(p, bytes) for p in packets)
    gc.collect()
    assert not gc.is_tracked(sa.last_response) and not gc.is_tracked(packets)
