"""The seed corpus: every message kind of real sessions.

- the strongSwan 6.1 capture in tests/data (x25519 + three ML-KEMs, PSK: IKE_SA_INIT,
  IKE_INTERMEDIATE whole and fragmented, IKE_AUTH);
- the ``psk`` and ``cert`` scenarios of world.py run by pqike in memory (COOKIE and
  INVALID_KE rounds, IKE_INTERMEDIATE fragmented, IKE_AUTH with PSK and with certificates
  fragmented, CREATE_CHILD_SA for a new CHILD_SA, CHILD_SA and IKE_SA rekeys,
  IKE_FOLLOWUP_KE, INFORMATIONAL DPD and deletes, in both directions).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from pqike.events import Datagram, Endpoint
from pqike.wire.errors import DecodeError
from pqike.wire.message import decode_message
from pqike.wire.payloads import EncryptedFragment, Notify
from tests.harness.pcap import ike_packets
from tests.hostile.world import SCENARIOS, run_step

PCAP = Path(__file__).resolve().parents[1] / "data" / "strongswan61-x25519-3mlkem-psk.pcap"


@dataclass(frozen=True)
class Seed:
    data: bytes
    src: Endpoint
    dst: Endpoint
    origin: str  # "pcap" or a scenario name
    step: str  # the scenario step that sent it ("" for the capture)
    kind: str  # e.g. "IKE_AUTH request SKF", "IKE_SA_INIT response N(COOKIE)"

    @property
    def datagram(self) -> Datagram:
        return Datagram(self.data, self.src, self.dst)


def kind_of(data: bytes) -> str:
    """Exchange, direction and shape of a message, as the coverage test names them."""
    try:
        msg = decode_message(data)
    except DecodeError:
        return "undecodable"
    ex = getattr(msg.exchange, "name", str(msg.exchange))
    role = "response" if msg.response else "request"
    sealed = msg.sealed
    if sealed is not None:
        return f"{ex} {role} {'SKF' if isinstance(sealed, EncryptedFragment) else 'SK'}"
    first = msg.payloads[0] if msg.payloads else None
    if isinstance(first, Notify):
        return f"{ex} {role} N({getattr(first.notify_type, 'name', first.notify_type)})"
    return f"{ex} {role}"


def pcap_seeds() -> list[Seed]:
    return [
        Seed(
            p.data,
            Endpoint(p.src, p.sport),
            Endpoint(p.dst, p.dport),
            "pcap",
            "",
            kind_of(p.data),
        )
        for p in ike_packets(PCAP)
    ]


@functools.cache
def scenario_seeds(name: str) -> tuple[Seed, ...]:
    """A clean run of one scenario, every datagram labelled with its step."""
    scenario = next(s for s in SCENARIOS if s.name == name)
    world = scenario.world(seed=0)
    for step in scenario.steps:
        problem = run_step(world, step)
        if problem:
            raise AssertionError(f"clean {name} session failed at {step.name}: {problem}")
    return tuple(Seed(d.data, d.src, d.dst, name, step, kind_of(d.data)) for step, d in world.log)


@functools.cache
def corpus() -> tuple[Seed, ...]:
    seeds = list(pcap_seeds())
    for scenario in SCENARIOS:
        seeds += scenario_seeds(scenario.name)
    return tuple(seeds)
