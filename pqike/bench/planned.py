"""Figures computed from pqike.plan and the KE registry alone (no network, no peer).

- ``mtu_sweep``: for each proposal and path MTU, what IKE_SA establishment sends with RFC 7383
  fragmentation (fragment_size = MTU) against one unfragmented IKE message per exchange left
  to IP fragmentation: datagrams, bytes on the wire, and the chance that the largest message
  and the whole establishment get through without a retransmission at a given loss rate.
- ``kem_cpu``: process CPU of key generation + encapsulation + decapsulation per available
  method of the registry, with its NIST level (None for classic DH).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from kem import registry
from pqike import plan as planner
from pqike.wire.sk import IPV4_HEADER_LEN, NON_ESP_MARKER_LEN, UDP_HEADER_LEN

MTUS = (576, 1000, 1280, 1400, 1500, 9000)
PROPOSALS = {
    "x25519": "aes256-sha256-x25519",
    "x25519+mlkem768": "aes256-sha256-x25519-ke1_mlkem768",
    "3 ML-KEM": "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512",
    "walkthrough (Kyber+BIKE+HQC L3)": "aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3",
}


def ip_fragments(udp_payload: int, mtu: int) -> int:
    """IPv4 fragments of one UDP datagram: every fragment but the last carries a multiple of
    8 bytes of the IP payload (RFC 791 fragment offsets), at most MTU - 20 of it."""
    per_fragment = (mtu - IPV4_HEADER_LEN) // 8 * 8
    return math.ceil((udp_payload + UDP_HEADER_LEN) / per_fragment)


def _marker(exchange: str) -> int:
    # plan's default NAT-T: port 4500 and the non-ESP marker after IKE_SA_INIT
    return 0 if exchange == "IKE_SA_INIT" else NON_ESP_MARKER_LEN


def _message_rows(m: planner.MessagePlan, mtu: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((datagrams, wire bytes) with RFC 7383, (datagrams, wire bytes) with IP fragmentation)."""
    marker = _marker(m.exchange)
    ip_n = ip_fragments(m.length + marker, mtu)
    ip_bytes = m.length + marker + UDP_HEADER_LEN + ip_n * IPV4_HEADER_LEN
    if m.exchange == "IKE_SA_INIT":  # never SKF-fragmented (RFC 7383 §2.5.3)
        return (ip_n, ip_bytes), (ip_n, ip_bytes)
    ike_n = 0
    ike_bytes = 0
    for p in m.packets:  # each RFC 7383 fragment fits the MTU by construction
        ike_n += 1
        ike_bytes += p + marker + UDP_HEADER_LEN + IPV4_HEADER_LEN
    return (ike_n, ike_bytes), (ip_n, ip_bytes)


def mtu_sweep(
    proposals: dict[str, str] | None = None,
    mtus: Sequence[int] = MTUS,
    loss: float = 0.01,
) -> list[dict[str, Any]]:
    """One row per (proposal, MTU, method) with method "RFC 7383" or "IP fragmentation".

    Loss survival assumes independent loss of each datagram with probability ``loss``: a
    message of n datagrams arrives whole with (1 - loss)^n. Both ways lose the whole message
    with any datagram (IKE retransmits the whole message, all its fragments), so the counts
    decide; IP fragments additionally need the receiver's reassembly and a path that passes
    fragments at all (many NATs and firewalls drop them), which no formula shows."""
    rows: list[dict[str, Any]] = []
    for label, proposal in (proposals or PROPOSALS).items():
        for mtu in mtus:
            p = planner.plan(proposal, fragment_size=mtu, cpu=False)
            msgs = [m for x in p.establishment for m in (x.request, x.response)]
            per = [_message_rows(m, mtu) for m in msgs]
            for i, method in enumerate(("RFC 7383", "IP fragmentation")):
                counts = [r[i][0] for r in per]
                rows.append(
                    {
                        "proposal": label,
                        "mtu": mtu,
                        "method": method,
                        "messages": len(msgs),
                        "datagrams": sum(counts),
                        "max_datagrams": max(counts),
                        "wire_bytes": sum(r[i][1] for r in per),
                        "loss": loss,
                        "p_largest_ok": (1 - loss) ** max(counts),
                        "p_all_ok": (1 - loss) ** sum(counts),
                    }
                )
    return rows


def _warm_up(m: registry.Method) -> None:
    # the first use of a method loads its provider and parameters (tens of ms for MODP)
    ke = m.initiator()
    reply, _ = m.respond(ke.public_value)
    ke.finish(reply)


def kem_cpu(repeat: int = 5) -> list[dict[str, Any]]:
    """keygen + encaps + decaps (DH: two key pairs and two shared secrets) per method of the
    registry, ms of process CPU (median of ``repeat``); unavailable methods with the reason."""
    rows: list[dict[str, Any]] = []
    for m in registry.all():
        row: dict[str, Any] = {
            "method": m.keyword,
            "kind": str(m.kind.name),
            "nist_level": m.nist_level,
            "public_bytes": m.sizes.public_value,
            "provider": str(m.backend().provider) if m.available else None,
        }
        if not m.available:
            rows.append({**row, "total_ms": None, "status": f"unavailable: {m.unavailable_reason}"})
            continue
        _warm_up(m)
        gen, resp, fin = planner.ke_costs(m.keyword, repeat)
        rows.append(
            {
                **row,
                "keygen_ms": gen * 1e3,
                "encaps_ms": resp * 1e3,
                "decaps_ms": fin * 1e3,
                "total_ms": (gen + resp + fin) * 1e3,
                "status": "ok",
            }
        )
    return rows
