"""Half-open IKE_SAs under attack: reassembly memory an unauthenticated peer cannot
monopolise, and half-open state that stays cheap and goes away completely.

The attacker completes IKE_SA_INIT as a real initiator engine does (so it holds the
IKE_SA_INIT keys and every SKF it sends passes the ICV check) and echoes COOKIEs; it has
no PSK, so it never gets past IKE_AUTH.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import tracemalloc
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec
import pytest

from pqike.config import Config
from pqike.engine import Engine
from pqike.events import Datagram, Endpoint, Event, EventKind
from pqike.kernel.base import MemoryKernel
from pqike.sa.fragments import CHUNK_OVERHEAD, PENDING_OVERHEAD
from pqike.sa.ike_sa import IkeSa
from pqike.wire import sk as wire_sk
from pqike.wire.iana import ExchangeType, NotifyType
from pqike.wire.message import Message, decode_message
from pqike.wire.payloads import EncryptedFragment, Notify
from tests.exchange.peers import CAROL, MOON, make_pair, psk_config

PROP = "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024"


def _at(cfg: Config, addr: str) -> Config:
    """carol's config, sent from another address."""
    home = msgspec.structs.replace(cfg.connections["home"], local_addrs=(addr,))
    return msgspec.structs.replace(cfg, connections={"home": home})


@dataclass
class Lan:
    """Engines by address; ``before_moon`` runs before each datagram a legitimate peer
    sends to moon is delivered (the attack goes on while the handshakes run)."""

    engines: dict[str, Engine] = field(default_factory=dict)
    events: dict[str, list[Event]] = field(default_factory=dict)
    legit: set[str] = field(default_factory=set)
    drop_from: set[str] = field(default_factory=set)  # attackers past IKE_SA_INIT
    before_moon: Iterator[Datagram] | None = None
    per_packet: int = 0
    now: float = 0.0

    def add(self, addr: str, cfg: Config) -> Engine:
        events: list[Event] = []
        eng = Engine(cfg, MemoryKernel(), events=events.append, source_for=lambda r: addr)
        self.engines[addr], self.events[addr] = eng, events
        return eng

    def run(self) -> None:
        moon = self.engines[MOON]
        for _ in range(500):
            moved = False
            for eng in list(self.engines.values()):
                for d in eng.pop_outgoing():
                    moved = True
                    if d.src.host in self.drop_from and not _is_init(d):
                        continue
                    if d.src.host in self.legit and self.before_moon is not None:
                        for forged in itertools.islice(self.before_moon, self.per_packet):
                            moon.receive(forged, self.now)  # a partial message: no answer
                    self.engines[d.dst.host].receive(d, self.now)
            if not moved:
                return


def _is_init(d: Datagram) -> bool:
    return decode_message(d.data).exchange == ExchangeType.IKE_SA_INIT


def _half_open_attackers(lan: Lan, count: int, base: str = "10.0.") -> list[IkeSa]:
    """``count`` attacker initiators that complete IKE_SA_INIT (echoing COOKIEs), each from
    its own address, and stop there: their IKE_SAs at moon stay half-open."""
    wrong = psk_config("carol", PROP, psk="not-the-psk-0123456789")
    sas = []
    for i in range(count):
        addr = f"{base}{i // 250}.{i % 250 + 1}"
        eng = lan.add(addr, _at(wrong, addr))
        lan.drop_from.add(addr)
        eng.initiate("net", None, lan.now)
        lan.run()
        (sa,) = eng.sas.values()
        assert sa.keys is not None  # IKE_SA_INIT done: it holds the keys moon uses
        sas.append(sa)
    return sas


def _forged(sa: IkeSa, number: int, total: int, size: int) -> Datagram:
    """An authentic SKF fragment (not the first) of an IKE_INTERMEDIATE request."""
    header = Message(
        spi_i=sa.spi_i,
        spi_r=sa.spi_r,
        exchange=ExchangeType.IKE_INTERMEDIATE,
        message_id=1,
        initiator=True,
    )
    skf = EncryptedFragment(first_inner=0, number=number, total=total)
    assert sa._out_cipher is not None
    raw = wire_sk._seal(header, [], skf, os.urandom(size), sa._out_cipher)
    return Datagram(data=raw, src=sa.local, dst=sa.remote)


def _partial_messages(sas: list[IkeSa], amount: int | None = None) -> Iterator[Datagram]:
    """Fragments 2..40 of 40, 1300 bytes each: messages that never complete (fragment 1
    never comes); ``amount`` bytes in all (the last fragment smaller) if given."""
    for sa in sas:
        for number in range(2, 41):
            size = 1300 if amount is None else min(1300, amount)
            if size == 0:
                return
            yield _forged(sa, number, 40, size)
            amount = None if amount is None else amount - size


@pytest.mark.parametrize("fragment_size", [576, 1480])
def test_half_open_sas_cannot_starve_fragmented_handshakes(fragment_size: int) -> None:
    """Finding 4: half-open IKE_SAs fill the reassembly memory to 4 bytes below its limit
    with messages that never complete, and fresh ones keep coming while three legitimate
    fragmented handshakes run; all three succeed (before: 0 of 3)."""
    memory = 1 << 20
    lan = Lan()
    moon = lan.add(
        MOON,
        psk_config(
            "moon",
            PROP,
            fragment_size=fragment_size,
            extra_daemon={"reassembly_memory": memory},
        ),
    )
    attackers = _half_open_attackers(lan, 30)
    for d in _partial_messages(attackers[:22], memory - 4):  # what the budget counted
        moon.receive(d, lan.now)
    lan.before_moon, lan.per_packet = _partial_messages(attackers[22:]), 4

    carol = psk_config("carol", PROP, fragment_size=fragment_size)
    legit = [f"192.168.0.{3 + i}" for i in range(3)]
    for addr in legit:
        lan.add(addr, _at(carol, addr))
        lan.legit.add(addr)
        lan.engines[addr].initiate("net", None, lan.now)
    lan.run()

    established = [
        a for a in legit if any(e.kind == EventKind.IKE_ESTABLISHED for e in lan.events[a])
    ]
    assert established == legit
    # the attack was on all along: the unauthenticated share stayed full
    budget = moon._budget
    assert budget.evictions > 0 and budget.preauth_used > 0.9 * budget.preauth_limit


def test_block_threshold_bounds_reassembly_memory_per_address() -> None:
    """One address holds at most block_threshold half-open IKE_SAs, each at most one
    message of max_packet bytes (plus what Python spends on its fragments)."""
    lan = Lan()
    moon = lan.add(
        MOON, psk_config("moon", PROP, extra_daemon={"block_threshold": 3, "max_packet": 20000})
    )
    wrong = _at(psk_config("carol", PROP, psk="not-the-psk-0123456789"), "10.9.9.9")
    sas = []
    for _ in range(6):  # one address, separate initiators: only 3 get an IKE_SA at moon
        eng = Engine(wrong, MemoryKernel(), source_for=lambda r: "10.9.9.9")
        lan.engines["10.9.9.9"] = eng
        lan.drop_from.add("10.9.9.9")
        eng.initiate("net", None, lan.now)
        lan.run()
        sas += [sa for sa in eng.sas.values() if sa.keys is not None]
    assert len(sas) == 3
    for sa in sas:  # as many fragments as a message may have, and beyond max_packet
        for number in range(2, 256):
            moon.receive(_forged(sa, number, 255, 78), lan.now)
        for d in _partial_messages([sa]):
            moon.receive(d, lan.now)
    reassemblers = [r for sa in moon.sas.values() for r in (sa._frag_requests, sa._frag_responses)]
    held = sum(r.held for r in reassemblers if r is not None)
    max_fragments = moon.config.daemon.max_fragments
    per_sa = PENDING_OVERHEAD + 20000 + CHUNK_OVERHEAD * max_fragments
    assert 0 < held <= 3 * per_sa


# ---- finding 5: what half-open IKE_SAs cost, and that it all goes away -------------------


def _init_request() -> bytes:
    template = Engine(psk_config("carol", PROP), MemoryKernel(), source_for=lambda r: CAROL)
    template.initiate("net", None, 0.0)
    (init,) = template.pop_outgoing()
    return init.data


def _cookie_echoing_flood(moon: Engine, init: bytes, count: int, now: float, first: int) -> None:
    """IKE_SA_INIT requests from ``count`` addresses of the attacker's, each echoing the
    COOKIE it is sent (the COOKIE only proves the address)."""
    for i in range(first, first + count):
        msg = decode_message(init)
        msg.spi_i = i.to_bytes(8, "big")
        src = Endpoint(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 500)
        for _ in range(2):
            moon.receive(Datagram(data=msg.encode(), src=src, dst=Endpoint(MOON, 500)), now)
            cookie = next(
                (
                    p
                    for d in moon.pop_outgoing()
                    for p in decode_message(d.data).payloads
                    if isinstance(p, Notify) and p.notify_type == NotifyType.COOKIE
                ),
                None,
            )
            if cookie is None:
                break
            msg.payloads = [cookie, *decode_message(init).payloads]


@pytest.fixture
def quiet() -> Iterator[None]:
    """No log records: whatever a handler keeps would count as memory left behind."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def test_half_open_flood_memory_returns(quiet: None) -> None:
    """Finding 5: a COOKIE-echoing flood's half-open IKE_SAs are small, and once they timed
    out no IkeSa survives and the traced memory is back at the baseline (before: 8.3 KB
    each, and the engine's tables kept their peak size)."""
    moon = Engine(psk_config("moon", PROP), MemoryKernel())
    init = _init_request()
    timeout = moon.config.daemon.half_open_timeout
    _cookie_echoing_flood(moon, init, 100, 0.0, 1 << 20)  # warm-up: caches, allocator pools
    moon.tick(timeout + 1.0)
    gc.collect()
    count = 1000
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        _cookie_echoing_flood(moon, init, count, 100.0, 1)
        assert len(moon._half_open) == count
        refs = [weakref.ref(sa) for sa in moon.sas.values()]
        gc.collect()
        per_sa = (tracemalloc.get_traced_memory()[0] - baseline) / count
        moon.tick(100.0 + timeout + 1.0)
        alive = [r for r in refs if r() is not None]
        del refs  # the weak references are traced too
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert not moon.sas and not moon._half_open and not moon._timers
    assert alive == []
    assert per_sa < 6500
    assert left < 16 * 1024, f"{left} bytes of {count} half-open IKE_SAs left"


def test_destroyed_ike_sas_are_freed_before_their_deadline(quiet: None) -> None:
    """Stale timer entries do not keep destroyed IKE_SAs (their keys, their tasks) alive
    until the deadline they were armed for."""
    moon = Engine(psk_config("moon", PROP), MemoryKernel())
    _cookie_echoing_flood(moon, _init_request(), 200, 0.0, 1)
    refs = [weakref.ref(sa) for sa in moon.sas.values()]
    moon.terminate("rw", None, None, 1.0)  # all of them, 29 s before their timeout
    gc.collect()
    assert not moon.sas and [r for r in refs if r() is not None] == []


def test_ike_sa_deleted_by_the_peer_is_freed() -> None:
    """The graveyard answers a retransmitted DELETE from the response alone: it keeps no
    IkeSa (keys, tasks) for its 60 s."""
    net = make_pair(psk_config("carol", PROP), psk_config("moon", PROP))
    carol, moon = net.peers["carol"].engine, net.peers["moon"].engine
    carol.initiate("net", None, 0.0)
    net.run()
    (sa,) = moon.sas.values()
    ref = weakref.ref(sa)
    del sa
    deletes: list[Datagram] = []
    net.filter = lambda d: deletes.append(d) or [d] if d.dst.host == MOON else [d]
    carol.terminate("home", None, None, net.now)
    net.run()
    assert not moon.sas
    gc.collect()
    assert ref() is None
    moon.receive(deletes[-1], net.now + 1.0)  # our answer got lost: the peer retransmits
    assert len(moon.pop_outgoing()) == 1


def test_init_limit_half_open_caps_half_open_sas(quiet: None) -> None:
    """charon.init_limit_half_open: past the limit, IKE_SA_INIT requests (COOKIE verified)
    are ignored, so an attacker echoing COOKIEs from many addresses meets a bound."""
    moon = Engine(
        psk_config("moon", PROP, extra_daemon={"init_limit_half_open": 25}), MemoryKernel()
    )
    init = _init_request()
    _cookie_echoing_flood(moon, init, 40, 0.0, 1)
    assert len(moon._half_open) == 25
    _cookie_echoing_flood(moon, init, 1, 0.0, 1000)
    assert moon.pop_outgoing() == [] and len(moon.sas) == 25  # no answer, no state
    moon.tick(moon.config.daemon.half_open_timeout + 1.0)
    _cookie_echoing_flood(moon, init, 1, 40.0, 2000)
    assert len(moon._half_open) == 1
