"""A COOKIE-echoing half-open flood (finding 5) while legitimate handshakes run.

The attacker owns many addresses, so it can answer moon's COOKIE requests (RFC 7296 §2.6):
from each address it sends IKE_SA_INIT requests (new SPIs, as many as block_threshold lets
through), echoes the COOKIE it gets back, receives moon's IKE_SA_INIT response and stops.
Each such request costs moon a half-open IKE_SA (a Diffie-Hellman and the SA) until
half_open_timeout.

Checked: no traceback; a request without the COOKIE, once past cookie_threshold, leaves no
state; half-open IKE_SAs per address stay within block_threshold; every legitimate
handshake under the flood succeeds without retransmission; after the timeout no attacker
IKE_SA is left (in the SA table, the half-open index, or anywhere gc can find an IkeSa) and
traced memory is back near where it was. Figures: half-open peak, traced bytes per
half-open IKE_SA, RSS before/after (reported, not asserted).
"""

from __future__ import annotations

import gc
import tracemalloc
from random import Random

from pqike.engine import Engine
from pqike.events import Datagram, Endpoint
from pqike.kernel.base import MemoryKernel
from pqike.sa.ike_sa import IkeSa
from pqike.wire.iana import NotifyType
from pqike.wire.message import Message, decode_message
from pqike.wire.payloads import Notify
from tests.exchange.peers import psk_config
from tests.hostile.watch import LogWatch, Report, half_open, rss_kib
from tests.hostile.world import (
    CAROL,
    MOON,
    Hop,
    World,
    attacker_address,
    fresh_handshake,
)

PROP = "aes256-sha256-x25519-ke1_mlkem768"


def _template(rng: Random) -> Message:
    """A real initiator's IKE_SA_INIT request, to be sent with other SPIs."""
    engine = Engine(
        psk_config("carol", PROP), MemoryKernel(), rng=Random(rng.random()).randbytes,
        source_for=lambda r: CAROL,
    )  # fmt: skip
    engine.initiate("net", None, 0.0)
    (init,) = engine.pop_outgoing()
    return decode_message(init.data)


class CookieEcho:
    """Half-open IKE_SAs at moon from addresses the attacker owns, COOKIEs echoed."""

    def __init__(self, rng: Random, report: Report, template: Message, per_address: int):
        self.rng = rng
        self.report = report
        self.template = template
        self.per_address = per_address
        self.sent = 0  # half-open IKE_SAs asked for

    def _request(self, spi: bytes, cookie: bytes | None) -> bytes:
        payloads = list(self.template.payloads)
        if cookie is not None:
            payloads.insert(0, Notify(notify_type=NotifyType.COOKIE, data=cookie))
        return Message(
            spi_i=spi,
            spi_r=bytes(8),
            exchange=self.template.exchange,
            message_id=0,
            payloads=payloads,
            initiator=True,
        ).encode()

    def one(self, moon: Engine, now: float) -> None:
        """One more half-open IKE_SA (or what moon makes of the attempt)."""
        index = self.sent // self.per_address
        self.sent += 1
        src = Endpoint(attacker_address(index), 500)
        spi = self.rng.randbytes(8)
        stateless = len(moon.sas)
        answer = self._exchange(moon, src, self._request(spi, None), now)
        cookie = _cookie(answer)
        self.report.packets["IKE_SA_INIT"] += 1
        if cookie is None:
            self.report.outcomes["answered without a COOKIE"] += 1
            return
        if len(moon.sas) != stateless:
            self.report.violate("moon kept state for a request it answered with a COOKIE")
        answer = self._exchange(moon, src, self._request(spi, cookie), now)
        self.report.packets["IKE_SA_INIT with COOKIE"] += 1
        self.report.outcomes["half-open" if answer and not _cookie(answer) else "refused"] += 1

    def _exchange(self, moon: Engine, src: Endpoint, data: bytes, now: float) -> Message | None:
        moon.receive(Datagram(data, src, Endpoint(MOON, 500)), now)
        answers = [d for d in moon.pop_outgoing() if d.dst == src]
        return decode_message(answers[0].data) if answers else None

    def on_hop(self, w: World, hop: Hop, count: int) -> None:
        if hop.receiver == "moon" and hop.sender == "carol":
            for _ in range(count):
                self.one(w.peers["moon"].engine, w.now)


def _cookie(answer: Message | None) -> bytes | None:
    if answer is None or not answer.payloads:
        return None
    first = answer.payloads[0]
    if isinstance(first, Notify) and first.notify_type == NotifyType.COOKIE:
        return first.data
    return None


def _attacker_ike_sas() -> int:
    """IkeSa objects for attacker addresses that Python still holds anywhere."""
    gc.collect()  # an IkeSa sits in reference cycles (its tasks, its services)
    return sum(
        1
        for o in gc.get_objects()
        if isinstance(o, IkeSa) and not o.initiator and o.remote.host != CAROL
    )


def cookie_flood(
    seed: int,
    *,
    half_open_sas: int = 2000,
    per_hop: int = 50,
    legit: int = 5,
    trace: bool = True,
) -> Report:
    """About ``half_open_sas`` COOKIE-echoed half-open IKE_SAs, ``per_hop`` of them before
    every packet of ``legit`` fresh legitimate handshakes reaches moon (and the rest
    between handshakes)."""
    report = Report("cookie flood")
    rng = Random(seed)
    with LogWatch() as watch:
        w = World()
        carol, moon_cfg = psk_config("carol", PROP), psk_config("moon", PROP)
        moon = w.add_peer("moon", MOON, moon_cfg, seed).engine
        w.add_peer("carol", CAROL, carol, seed + 1)
        attacker = CookieEcho(rng, report, _template(rng), moon_cfg.daemon.block_threshold)
        _legit(w, report, seed + 2)  # warm-up: caches, imports, first allocations
        rss_before = rss_kib()
        if trace:
            gc.collect()
            tracemalloc.start()
        w.on_hop = lambda w_, hop: attacker.on_hop(w_, hop, per_hop)
        for k in range(legit):
            _legit(w, report, seed + 3 + k)
            while attacker.sent < half_open_sas * (k + 1) // legit:
                attacker.one(moon, w.now)
        w.on_hop = None
        peak = len(half_open(moon))
        _bounds(moon, report)
        flood = _traced(trace)
        w.advance(moon_cfg.daemon.half_open_timeout + 1)
        w.peers["moon"].events.clear()  # the test's event log, not the daemon's memory
        after = _traced(trace)
        if trace:
            tracemalloc.stop()
        _afterwards(moon, report)
        report.figures.update(
            {
                "half-open peak": peak,
                "traced bytes per half-open IKE_SA": round(flood / max(1, peak)),
                "traced KiB flood/after": f"{flood >> 10}/{after >> 10}",
                "RSS KiB before/after": f"{rss_before}/{rss_kib()}",
            }
        )
        if trace and after > max(256 << 10, flood // 20):
            report.violate(f"traced memory: {flood} bytes during the flood, {after} after")
    report.absorb(watch)
    return report


def _legit(w: World, report: Report, seed: int) -> None:
    report.legit_attempts += 1
    problem = fresh_handshake(w, seed, patience=0.0)
    if problem is None:
        report.legit_ok += 1
    else:
        report.outcomes[f"legitimate handshake failed: {problem}"] += 1


def _bounds(moon: Engine, report: Report) -> None:
    block = moon.config.daemon.block_threshold
    per_ip: dict[str, int] = {}
    for sa in half_open(moon):
        per_ip[sa.remote.host] = per_ip.get(sa.remote.host, 0) + 1
    worst = max(per_ip.values(), default=0)
    if block and worst > block:
        report.violate(f"{worst} half-open IKE_SAs from one address (block_threshold {block})")


def _traced(trace: bool) -> int:
    """Bytes allocated since tracing started and still held (after a full collection)."""
    if not trace:
        return 0
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _afterwards(moon: Engine, report: Report) -> None:
    left = [sa.label for sa in moon.sas.values() if sa.remote.host != CAROL]
    if left or half_open(moon) or moon._half_open or moon._half_open_by_ip:
        report.violate(f"attacker state left after the half-open timeout: {left[:5]}")
    alive = _attacker_ike_sas()
    report.figures["attacker IkeSa objects after"] = alive
    if alive:
        report.violate(f"{alive} IkeSa objects for attackers still alive after the timeout")
