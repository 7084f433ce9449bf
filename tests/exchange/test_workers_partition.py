"""daemon.workers > 1: each worker's engine allocates the IKE SPIs (also on IKE_SA rekeys)
and unique ids that the reuseport steering program sends to it, whichever side starts."""

from __future__ import annotations

import os

from pqike.engine import Engine
from pqike.events import Datagram, Endpoint, EventKind
from pqike.kernel.base import MemoryKernel
from pqike.partition import Partition
from pqike.wire.message import decode_message
from pqike.wire.payloads import Notify
from tests.exchange.peers import CAROL, MOON, Net, make_pair, psk_config

IKE = "aes256-sha256-x25519"
COUNT = 3
WORKER = {"carol": 2, "moon": 1}


def _partitioned() -> Net:
    net = make_pair(psk_config("carol", IKE), psk_config("moon", IKE))
    for name, peer in net.peers.items():
        eng = peer.engine
        peer.engine = Engine(
            eng.config,
            peer.kernel,
            events=peer.events.append,
            source_for=eng.source_for,
            partition=Partition(WORKER[name], COUNT),
        )
    return net


def _our_spi_steers_here(net: Net) -> None:
    (c,) = net.peers["carol"].engine.list_sas()
    (m,) = net.peers["moon"].engine.list_sas()
    assert (c.spi_i, c.spi_r) == (m.spi_i, m.spi_r)
    # list_sas shows the SPIs from the original initiator's view
    ours = {
        "carol": c.spi_i if c.initiator else c.spi_r,
        "moon": m.spi_i if m.initiator else m.spi_r,
    }
    for name, spi in ours.items():
        assert int(spi[:2], 16) % COUNT == WORKER[name], (name, spi)


def _ids_are_this_workers(net: Net) -> None:
    for name, peer in net.peers.items():
        for sa in peer.engine.list_sas():
            assert (sa.unique_id - 1) % COUNT == WORKER[name]
            for child in sa.children:
                assert (child.unique_id - 1) % COUNT == WORKER[name]
                assert (child.reqid - 1) % COUNT == WORKER[name]


def test_both_roles_allocate_spis_and_ids_of_their_worker() -> None:
    net = _partitioned()
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    assert any(e.kind == EventKind.CHILD_ESTABLISHED for e in net.peers["moon"].events)
    _our_spi_steers_here(net)
    _ids_are_this_workers(net)


def test_ike_sa_rekeys_keep_steering_from_either_side() -> None:
    net = _partitioned()
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    seen = set()
    for rekeying in ("carol", "moon", "carol", "moon"):
        net.now += 1.0
        net.peers[rekeying].engine.rekey("home" if rekeying == "carol" else "rw", None, net.now)
        net.run()
        assert net.peers[rekeying].events[-1].kind in (
            EventKind.IKE_REKEYED,
            EventKind.IKE_DELETED,
        )
        (sa,) = net.peers["carol"].engine.list_sas()
        assert (sa.spi_i, sa.spi_r) not in seen
        seen.add((sa.spi_i, sa.spi_r))
        _our_spi_steers_here(net)
        _ids_are_this_workers(net)


def _init_flood(extra_daemon: dict, partition: Partition) -> Engine:
    """Six IKE_SA_INITs from one address, each a new initiator SPI this worker owns."""
    moon_cfg = psk_config("moon", IKE, extra_daemon=extra_daemon)
    template = make_pair(psk_config("carol", IKE), moon_cfg).peers["carol"].engine
    template.initiate("net", None, 0.0)
    (init,) = template.pop_outgoing()
    moon = Engine(moon_cfg, MemoryKernel(), partition=partition)
    for _ in range(6):
        msg = decode_message(init.data)
        msg.spi_i = partition.ike_spi(os.urandom)
        moon.receive(Datagram(msg.encode(), Endpoint(CAROL, 500), Endpoint(MOON, 500)), 0.0)
    return moon


def test_half_open_limits_are_shared_out_between_workers() -> None:
    # block_threshold 4 over 2 workers: one worker holds 2 of one address's half-open SAs
    moon = _init_flood({"block_threshold": 4, "cookie_threshold": 0}, Partition(1, 2))
    assert len(moon.sas) == 2
    assert len(_init_flood({"block_threshold": 4, "cookie_threshold": 0}, Partition()).sas) == 4
    # cookie_threshold 5 over 2 workers: COOKIEs from the 4th half-open SA of a worker on
    moon = _init_flood({"block_threshold": 0, "cookie_threshold": 5}, Partition(0, 2))
    assert len(moon.sas) == 3
    answers = [decode_message(d.data) for d in moon.pop_outgoing()]
    assert [isinstance(m.payloads[0], Notify) for m in answers] == [False] * 3 + [True] * 3
    # init_limit_half_open 3 over 2 workers: 2 each
    limited = {"block_threshold": 0, "cookie_threshold": 0, "init_limit_half_open": 3}
    assert len(_init_flood(limited, Partition(1, 2)).sas) == 2
