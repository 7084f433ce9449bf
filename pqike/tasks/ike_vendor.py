"""Vendor ID payloads in IKE_SA_INIT (RFC 7296 §3.12), as strongSwan's ike_vendor task.

strongSwan sends its vendor ID, MD5("strongSwan"), when ``charon.send_vendor_id`` is set,
and uses private-use algorithm IDs (>= 1024: its Kyber, BIKE, HQC and FrodoKEM) only with
a peer that sent that vendor ID, unless ``charon.accept_private_algs`` is set: a private
number means nothing outside the implementation that assigned it. pqike does the same.
The vendor IDs are exchanged in IKE_SA_INIT only; a rekeyed IKE_SA inherits what the old
one learnt (strongSwan ike_sa.c inherit_pre()).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from pqike.wire.payloads import VendorId

if TYPE_CHECKING:
    from pqike.sa.ike_sa import IkeSa
    from pqike.tasks.base import Incoming, Outgoing

STRONGSWAN = "strongSwan"
STRONGSWAN_VID = hashlib.md5(b"strongSwan").digest()

# Vendor IDs we can name in the log (the IKEv2 ones strongSwan knows); only strongSwan's
# changes what we do.
KNOWN_VIDS: dict[bytes, str] = {
    STRONGSWAN_VID: STRONGSWAN,
    b"CISCO-DELETE-REASON": "Cisco Delete Reason",
    b"FLEXVPN-SUPPORTED": "Cisco FlexVPN Supported",
    b"CISCO(COPYRIGHT)&Copyright (c) 2009 Cisco Systems, Inc.": "Cisco Copyright (c) 2009",
    bytes.fromhex("4048b7d56ebce88525e7de7f00d6c2d3"): "FRAGMENTATION",
    bytes.fromhex("1e2b516905991c7d7c96fcbfb587e46100000007"): "MS NT5 ISAKMPOAKLEY v7",
    bytes.fromhex("1e2b516905991c7d7c96fcbfb587e46100000008"): "MS NT5 ISAKMPOAKLEY v8",
    bytes.fromhex("1e2b516905991c7d7c96fcbfb587e46100000009"): "MS NT5 ISAKMPOAKLEY v9",
    bytes.fromhex("fb1de3cdf341b7ea16b7e5be0855f120"): "MS-Negotiation Discovery Capable",
    bytes.fromhex("26244d38eddb61b3172a36e3d0cfb819"): "Vid-Initial-Contact",
}
_LOGGED_BYTES = 32  # an unknown vendor ID is logged by its first bytes only
_LOGGED_UNKNOWN = 4  # ... and only so many of them per message (no log flood)


def add_vendor_ids(sa: IkeSa, msg: Outgoing) -> None:
    """Our vendor IDs, last in IKE_SA_INIT as charon places them."""
    if sa.svc.config.daemon.send_vendor_id:
        sa.log.control("sending %s vendor ID", STRONGSWAN)
        msg.add(VendorId(data=STRONGSWAN_VID))


def process_vendor_ids(sa: IkeSa, msg: Incoming) -> None:
    """Note the peer's vendor IDs (before its proposals are selected or checked)."""
    unknown = 0
    for vid in msg.all(VendorId):
        name = KNOWN_VIDS.get(vid.data)
        if name is None:
            unknown += 1
            if unknown <= _LOGGED_UNKNOWN:
                sa.enc("received unknown vendor ID: %s", _hex(vid.data))
            continue
        sa.log("received %s vendor ID", name)
        if name == STRONGSWAN:
            sa.peer_strongswan = True
    if unknown > _LOGGED_UNKNOWN:
        sa.enc("received %d more unknown vendor IDs, not shown", unknown - _LOGGED_UNKNOWN)


def private_algs_ok(sa: IkeSa) -> bool:
    """May private-use algorithm IDs be proposed to / accepted from this peer?"""
    return sa.peer_strongswan or sa.svc.config.daemon.accept_private_algs


def _hex(data: bytes) -> str:
    """charon's %#B: colon-separated hex, cut short for long (hostile) payloads."""
    text = ":".join(f"{b:02x}" for b in data[:_LOGGED_BYTES])
    return text + (f"... ({len(data)} bytes)" if len(data) > _LOGGED_BYTES else "")
