"""Proposals to and from the SA payload of the wire codec.

Configured proposals are unnumbered; on the wire they are numbered 1, 2, ... by position
(strongSwan sa_payload.c add_proposal_v2()). Transforms go in strongSwan's encoding order
and only ENCR carries the Key Length attribute. Unknown types and IDs survive decoding so
that selection can report them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from pqike.memo import Memo
from pqike.proposal.model import Proposal, Transform, in_wire_order
from pqike.wire import payloads as wire
from pqike.wire.iana import ProtocolId, TransformAttr


def to_wire(proposals: Sequence[Proposal], spi: bytes = b"") -> wire.SecurityAssociation:
    out: list[wire.Proposal] = []
    for i, p in enumerate(proposals):
        made = p._wire
        if made is None:
            made = _wire_transforms(p.transforms)
            object.__setattr__(p, "_wire", made)  # a pure function of the frozen transforms
        transforms = list(made)  # immutable: shared, not copied
        out.append(wire.Proposal(p.number or i + 1, p.protocol, transforms, spi or p.spi))
    return wire.SecurityAssociation(proposals=out)


@functools.lru_cache(maxsize=256)
def _wire_transforms(transforms: tuple[Transform, ...]) -> tuple[wire.Transform, ...]:
    """Our transforms as the codec's, built once per distinct proposal (ours come from the
    configuration; the responder answers with the same choice in every handshake). Each SA
    payload gets a list of its own holding them: wire transforms are immutable."""
    return tuple(
        wire.Transform(
            t.type,
            t.id,
            (wire.TransformAttribute(TransformAttr.KEY_LENGTH, t.key_length),)
            if t.key_length
            else (),
        )
        for t in in_wire_order(transforms)
    )


def from_wire(sa: wire.SecurityAssociation) -> tuple[Proposal, ...]:
    out: list[Proposal] = []
    for wp in sa.proposals:
        if not isinstance(wp.protocol, ProtocolId):
            continue  # an unknown protocol cannot be selected; RFC 7296 §3.3.1 says skip it
        values = tuple([(t.transform_type, t.transform_id, t.key_length) for t in wp.transforms])
        if wp.spi:  # a fresh SPI in each (ESP, an IKE rekey): numbered per message
            out.append(_received(wp.protocol, values).numbered(wp.number, wp.spi))
        else:  # IKE_SA_INIT's: kept numbered as it came, no copy per handshake
            out.append(_received(wp.protocol, values, wp.number))
    return tuple(out)


# A received proposal by its values and number (0: to be numbered with its SPI): a peer
# offers the same in every handshake, and building one sorts and groups its transforms. The
# key is the values the model takes from the codec, and a Proposal is immutable, so this is
# a pure function of them; a flood of distinct offers fills at most the memo's 256 entries
# (as the codec's own caches).
_Values = tuple[tuple[int, int, int | None], ...]
_RECEIVED: Memo[tuple[ProtocolId, _Values, int], Proposal] = Memo(256)


def _received(protocol: ProtocolId, values: _Values, number: int = 0) -> Proposal:
    key = (protocol, values, number)
    proposal = _RECEIVED.get(key)
    if proposal is None:
        ts = tuple(Transform(int(ttype), int(tid), bits) for ttype, tid, bits in values)
        proposal = _RECEIVED.keep(key, Proposal(protocol, ts, number))
    return proposal
