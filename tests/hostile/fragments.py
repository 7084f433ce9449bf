"""Fragment floods (RFC 7383) against a responder while legitimate fragmented handshakes run.

Two attackers:
- without keys: SKF fragments with the SPIs and message ID of moon's IKE_SAs (half-open and
  established, legitimate or not) and random bodies. Each SKF carries its own ICV, so they
  must be dropped before reassembly: no IKE_SA changes (checked per packet), nothing is
  held.
- with keys: half-open attackers that completed IKE_SA_INIT (``start_attackers``) send
  authentic fragments of messages that never complete, in every shape reassembly has to
  survive: partial messages (hoarding), many tiny fragments, totals growing (a restart) and
  shrinking (dropped), numbers and totals out of range, a first payload type on a later
  fragment, duplicates with other contents, other message IDs, and garbage that does
  complete.

Checked: no traceback, legitimate IKE_SAs never change under the flood, the reassembly
memory stays within its limit, every legitimate handshake (fragmented IKE_INTERMEDIATE)
succeeds, and once the attackers' IKE_SAs time out nothing is held any more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from random import Random

from pqike.config import Config
from pqike.events import Datagram
from pqike.sa.ike_sa import IkeSa
from pqike.wire import sk as wire_sk
from pqike.wire.iana import ExchangeType
from pqike.wire.message import Message
from pqike.wire.payloads import EncryptedFragment
from tests.exchange.peers import psk_config
from tests.hostile.watch import LogWatch, Report, sa_fingerprint
from tests.hostile.world import (
    CAROL,
    CAROL_ID,
    MOON,
    Hop,
    World,
    fresh_handshake,
    start_attackers,
)

PROP = "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024"  # ML-KEM-1024 request: 2 fragments
SHAPES = ("hoard", "many", "grow", "shrink", "range", "first", "duplicate", "mid", "complete")
_EXCHANGES = (ExchangeType.IKE_INTERMEDIATE, ExchangeType.IKE_AUTH)
_OUT_OF_RANGE = ((0, 5), (6, 5), (1, 0), (2, 256), (300, 1000), (2, 65535), (65535, 65535))
_FIRST = (0, 33, 34, 41, 255)  # first payload type of a completed garbage message


def configs(memory: int) -> tuple[Config, Config]:
    carol = psk_config("carol", PROP)
    moon = psk_config("moon", PROP, extra_daemon={"reassembly_memory": memory})
    return carol, moon


def _header(sa: IkeSa, exchange: ExchangeType, mid: int) -> Message:
    return Message(
        spi_i=sa.spi_i, spi_r=sa.spi_r, exchange=exchange, message_id=mid, initiator=True
    )


@dataclass
class FragmentFlood:
    """Authentic fragments from attacker IKE_SAs (the attacker's side holds the keys)."""

    rng: Random
    sas: list[IkeSa]
    shapes: tuple[str, ...] = SHAPES
    totals: dict[int, int] = field(default_factory=dict)  # by id(sa): the total last sent
    next_number: dict[int, int] = field(default_factory=dict)

    def seal(self, sa: IkeSa, number: int, total: int, body: bytes, **kw: int) -> Datagram:
        skf = EncryptedFragment(first_inner=kw.get("first", 0), number=number, total=total)
        header = _header(sa, kw.get("exchange", ExchangeType.IKE_INTERMEDIATE), kw.get("mid", 1))
        assert sa._out_cipher is not None
        raw = wire_sk._seal(header, [], skf, body, sa._out_cipher)
        return Datagram(data=raw, src=sa.local, dst=sa.remote)

    def hoarding(self, sa: IkeSa, size: int = 1300) -> Datagram:
        """The next fragment of a message that never completes (fragment 1 never comes)."""
        total = self.totals.setdefault(id(sa), 40)
        number = self.next_number.get(id(sa), 2)
        self.next_number[id(sa)] = number + 1 if number < total else 2
        return self.seal(sa, number, total, self.rng.randbytes(size))

    def packet(self) -> tuple[str, list[Datagram]]:
        shape = self.rng.choice(self.shapes)
        sa = self.rng.choice(self.sas)
        return shape, getattr(self, "_" + shape)(
            sa, self.rng.randbytes(self.rng.choice((1, 8, 100, 1300)))
        )

    def _hoard(self, sa: IkeSa, body: bytes) -> list[Datagram]:
        return [self.hoarding(sa)]

    def _many(self, sa: IkeSa, body: bytes) -> list[Datagram]:
        self.totals[id(sa)] = 255
        return [self.seal(sa, self.rng.randrange(2, 256), 255, self.rng.randbytes(8))]

    def _grow(self, sa: IkeSa, body: bytes) -> list[Datagram]:
        total = min(self.totals.get(id(sa), 40) + self.rng.randrange(1, 20), 255)
        self.totals[id(sa)] = total  # RFC 7383 §2.6: a larger total restarts reassembly
        return [self.seal(sa, self.rng.randrange(2, total + 1), total, body)]

    def _shrink(self, sa: IkeSa, body: bytes) -> list[Datagram]:
        smaller = max(2, self.totals.get(id(sa), 40) - self.rng.randrange(1, 20))
        return [self.seal(sa, self.rng.randrange(2, smaller + 1), smaller, body)]

    def _range(self, sa: IkeSa, body: bytes) -> list[Datagram]:
        number, total = self.rng.choice(_OUT_OF_RANGE)
        return [self.seal(sa, number, total, body)]

    def _first(self, sa: IkeSa, body: bytes) -> list[Datagram]:
        first = self.rng.choice((33, 41, 46, 255))
        return [self.seal(sa, self.rng.randrange(2, 41), 40, body, first=first)]

    def _duplicate(self, sa: IkeSa, body: bytes) -> list[Datagram]:
        total = self.totals.get(id(sa), 40)
        other = self.rng.randbytes(len(body))
        return [self.seal(sa, 2, total, body), self.seal(sa, 2, total, other)]

    def _mid(self, sa: IkeSa, body: bytes) -> list[Datagram]:
        mid = self.rng.choice((0, 2, 3, 0x7FFFFFFF, 0xFFFFFFFF))
        return [self.seal(sa, self.rng.randrange(1, 3), 2, body, mid=mid)]

    def _complete(self, sa: IkeSa, body: bytes) -> list[Datagram]:
        """Garbage that completes: decoded as the inner payloads of a real request."""
        rng = self.rng
        n, exchange, first = rng.randrange(1, 4), rng.choice(_EXCHANGES), rng.choice(_FIRST)
        return [
            self.seal(
                sa,
                i,
                n,
                rng.randbytes(rng.choice((4, 60, 500))),
                first=first if i == 1 else 0,
                exchange=exchange,
            )
            for i in range(1, n + 1)
        ]


def keyless_fragment(rng: Random, sa: IkeSa) -> Datagram:
    """A forged SKF for one of moon's IKE_SAs, as if from its peer: right SPIs and message
    ID, random body, so only the ICV can tell."""
    exchange = rng.choice((*_EXCHANGES, ExchangeType.INFORMATIONAL, ExchangeType.CREATE_CHILD_SA))
    number, total = rng.choice(((1, 2), (2, 2), (1, 1), (3, 40), (255, 255), (1, 65535)))
    skf = EncryptedFragment(
        first_inner=rng.choice((0, 41)) if number == 1 else 0,
        number=number,
        total=total,
        body=rng.randbytes(rng.choice((16, 64, 1400))),
    )
    header = _header(sa, exchange, sa.peer_mid)
    header.initiator = not sa.initiator
    return Datagram(data=header.with_payloads([skf]).encode(), src=sa.remote, dst=sa.local)


@dataclass
class Flooder:
    """The ``on_hop`` hook: before each legitimate packet reaches moon, ``per_hop`` flood
    packets (a share of them without keys) do."""

    rng: Random
    report: Report
    flood: FragmentFlood
    per_hop: int
    keyless_share: float = 0.3

    def on_hop(self, w: World, hop: Hop) -> None:
        if hop.receiver == "moon" and hop.sender == "carol":
            self.burst(w)

    def _legit(self, w: World) -> dict[bytes, tuple]:
        moon = w.peers["moon"].engine
        return {k: sa_fingerprint(sa) for k, sa in moon.sas.items() if sa.remote.host == CAROL}

    def burst(self, w: World) -> None:
        moon, rng, report = w.peers["moon"].engine, self.rng, self.report
        before = self._legit(w)
        for _ in range(self.per_hop):
            if rng.random() < self.keyless_share and moon.sas:
                sa = rng.choice(list(moon.sas.values()))
                d = keyless_fragment(rng, sa)
                fp = sa_fingerprint(sa)
                moon.receive(d, w.now)
                report.packets["keyless"] += 1
                if sa_fingerprint(sa) != fp:
                    report.violate(f"a keyless fragment changed {sa.label}: {d.data.hex()}")
                continue
            shape, datagrams = self.flood.packet()
            report.packets[f"keyed {shape}"] += len(datagrams)
            for d in datagrams:
                moon.receive(d, w.now)
        w.provoked("moon")
        if self._legit(w) != before:
            report.violate(f"the flood changed a legitimate IKE_SA at moon (step {w.step})")
        budget = moon._budget
        held = max(int(report.figures.get("max reassembly bytes", 0)), budget.used)
        report.figures["max reassembly bytes"] = held
        if budget.used > budget.limit:
            report.violate(f"reassembly memory {budget.used} over its limit {budget.limit}")


def hoard(w: World, flood: FragmentFlood, sas: list[IkeSa], amount: int) -> int:
    """Fill moon's reassembly memory with partial messages of ``sas``, one attacker after
    the other, up to just below ``amount`` bytes without ever being refused (a refused
    fragment would reset the attacker's own message); returns the bytes held."""
    budget = w.peers["moon"].engine._budget
    moon = w.peers["moon"].engine
    pending = list(sas)
    for _ in range(4 * amount // 1300 + 100):
        room = amount - budget.used
        if room < 1500 or not pending:
            break
        before = budget.used
        moon.receive(flood.hoarding(pending[0], size=min(1300, room - 1000)), w.now)
        if budget.used <= before:
            pending.pop(0)  # its message is as large as it gets (or it was refused)
    w.provoked("moon")
    return budget.used


def fragment_campaign(
    seed: int,
    *,
    attackers: int = 6,
    per_hop: int = 40,
    legit: int = 3,
    memory: int = 1 << 20,
    hoarders: int = 0,
    hoard_fill: float = 0.0,
    shapes: tuple[str, ...] = SHAPES,
) -> Report:
    """Flood while ``legit`` fresh initiators each bring up an IKE_SA and a CHILD_SA with
    moon. With ``hoarders``, that many attackers first fill ``hoard_fill`` of the reassembly
    memory with partial messages and the others flood (finding 4: with ``shapes`` "hoard"
    they keep starting fresh partial messages, so the memory stays full)."""
    report = Report("fragments")
    rng = Random(seed)
    with LogWatch() as watch:
        w = World()
        carol, moon_cfg = configs(memory)
        w.add_peer("moon", MOON, moon_cfg, seed)
        w.add_peer("carol", CAROL, carol, seed + 1)
        _legit(w, report, seed + 2)  # an established IKE_SA the keyless forgeries aim at too
        sas = start_attackers(w, attackers, PROP)
        report.figures["attackers past IKE_SA_INIT"] = len(sas)
        flood = FragmentFlood(rng, sas[hoarders:], shapes)
        if hoarders:
            held = hoard(w, flood, sas[:hoarders], int(memory * hoard_fill))
            report.figures["hoarded bytes"] = held
        w.on_hop = Flooder(rng, report, flood, per_hop).on_hop
        for k in range(legit):
            _legit(w, report, seed + 3 + k)
        w.on_hop = None
        _afterwards(w, report)
    report.absorb(watch)
    return report


def _legit(w: World, report: Report, seed: int) -> None:
    report.legit_attempts += 1
    problem = fresh_handshake(w, seed, patience=0.0)  # as long as the attack goes on
    if problem is None:
        report.legit_ok += 1
    else:
        report.outcomes[f"legitimate handshake failed: {problem}"] += 1


def _afterwards(w: World, report: Report) -> None:
    """Once the attackers' half-open IKE_SAs time out, moon holds nothing for them."""
    moon = w.peers["moon"].engine
    budget = moon._budget
    report.figures["evictions"] = getattr(budget, "evictions", "n/a")
    w.advance(moon.config.daemon.half_open_timeout + 1)
    left = [sa.label for sa in moon.sas.values() if sa.remote_id != CAROL_ID]
    if left:
        report.violate(f"moon keeps {left} after the half-open timeout")
    if budget.used:
        report.violate(f"moon holds {budget.used} reassembly bytes after the flood")
