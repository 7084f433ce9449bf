"""IKE_SA_INIT requests of a probe and what their answers say, with pqike's codec.

A request is what charon sends (RFC 7296 §1.2; payload order as strongSwan's ike_init):
[N(COOKIE)] SA KE Ni N(NAT_DETECTION_*) N(IKEV2_FRAGMENTATION_SUPPORTED)
N(SIGNATURE_HASH_ALGORITHMS) N(REDIRECT_SUPPORTED) N(USE_PPK) N(USE_PPK_INT)
N(INTERMEDIATE_EXCHANGE_SUPPORTED) [V(strongSwan)]. Every capability notify goes in every
request, so whatever a responder echoes in an answer shows.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from enum import Enum

from pqike.proposal import Proposal, ProposalError, check_selected
from pqike.proposal.sa_payload import from_wire, to_wire
from pqike.tasks.ike_init import SIGNATURE_HASHES, natd_hash
from pqike.tasks.ike_vendor import STRONGSWAN_VID
from pqike.wire.errors import DecodeError
from pqike.wire.iana import ExchangeType, NotifyType, TransformType
from pqike.wire.message import Message, decode_message
from pqike.wire.payloads import (
    KeyExchange,
    Nonce,
    Notify,
    Payload,
    SecurityAssociation,
    VendorId,
)

# draft-ietf-ipsecme-ikev2-qr-alt (libreswan 5.2): PPK in IKE_INTERMEDIATE; no IANA name here
USE_PPK_INT = 16445


@dataclass(frozen=True, slots=True)
class Request:
    """One IKE_SA_INIT request, kept so that retransmissions and the COOKIE retry resend it
    unchanged (RFC 7296 §2.1, §2.6)."""

    spi_i: bytes
    nonce: bytes
    proposals: tuple[Proposal, ...]
    ke_method: int
    ke_data: bytes
    vendor_id: bool  # send strongSwan's vendor ID

    def encode(self, local: tuple[str, int], remote: tuple[str, int], cookie: bytes = b"") -> bytes:
        zero = bytes(8)
        payloads: list[Payload] = []
        if cookie:
            payloads.append(Notify(notify_type=NotifyType.COOKIE, data=cookie))
        payloads += [
            to_wire(self.proposals),
            KeyExchange(method=self.ke_method, data=self.ke_data),
            Nonce(data=self.nonce),
            _n(NotifyType.NAT_DETECTION_SOURCE_IP, natd_hash(self.spi_i, zero, *local)),
            _n(NotifyType.NAT_DETECTION_DESTINATION_IP, natd_hash(self.spi_i, zero, *remote)),
            _n(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED),
            _n(
                NotifyType.SIGNATURE_HASH_ALGORITHMS,
                b"".join(struct.pack("!H", h) for h in SIGNATURE_HASHES),
            ),
            _n(NotifyType.REDIRECT_SUPPORTED),
            _n(NotifyType.USE_PPK),
            _n(USE_PPK_INT),
            _n(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED),
        ]
        if self.vendor_id:
            payloads.append(VendorId(data=STRONGSWAN_VID))
        msg = Message(self.spi_i, zero, ExchangeType.IKE_SA_INIT, 0, payloads, initiator=True)
        return msg.encode()


def _n(ntype: int, data: bytes = b"") -> Notify:
    return Notify(notify_type=ntype, data=data)


class Kind(Enum):
    SELECTED = "selected"  # an SA payload: the responder chose a proposal (half-open SA)
    INVALID_KE = "INVALID_KE_PAYLOAD"  # proposal acceptable, other KE method wanted
    NO_PROPOSAL = "NO_PROPOSAL_CHOSEN"
    COOKIE = "COOKIE"
    REDIRECT = "REDIRECT"
    ERROR = "error"  # any other error notify
    TIMEOUT = "timeout"  # no answer after all retransmissions
    INVALID = "invalid"  # an answer we cannot use (undecodable, bad selection)


@dataclass(slots=True)
class Answer:
    kind: Kind
    probe: int = 0  # the number of the probe this answers
    selected: Proposal | None = None
    group: int | None = None  # INVALID_KE_PAYLOAD's method
    notifies: dict[int, bytes] = field(default_factory=dict)  # first of each type
    vendor_ids: list[bytes] = field(default_factory=list)
    ke_method: int | None = None  # the responder's KE payload method
    detail: str = ""

    def has(self, ntype: int) -> bool:
        return ntype in self.notifies


def read_answer(data: bytes, request: Request) -> Answer | None:
    """What a datagram answers to ``request``; None if it is not an answer to it (another
    SPI, a request, another exchange): such datagrams are ignored, not counted as answers."""
    try:
        msg = decode_message(data)
    except DecodeError as e:
        return Answer(Kind.INVALID, detail=f"undecodable answer: {e}")
    if (
        msg.spi_i != request.spi_i
        or not msg.response
        or msg.exchange != ExchangeType.IKE_SA_INIT
        or msg.message_id != 0
    ):
        return None
    notifies: dict[int, bytes] = {}
    for p in msg.payloads:
        if isinstance(p, Notify):
            notifies.setdefault(int(p.notify_type), p.data)
    vids = [p.data for p in msg.payloads if isinstance(p, VendorId)]
    answer = Answer(Kind.ERROR, notifies=notifies, vendor_ids=vids)
    return _classify(answer, msg, request)


def _classify(answer: Answer, msg: Message, request: Request) -> Answer:
    n = answer.notifies
    if NotifyType.COOKIE in n:
        answer.kind = Kind.COOKIE
    elif NotifyType.INVALID_KE_PAYLOAD in n:
        data = n[NotifyType.INVALID_KE_PAYLOAD]
        answer.kind = Kind.INVALID_KE if len(data) >= 2 else Kind.INVALID
        answer.group = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
        answer.detail = "" if len(data) >= 2 else "INVALID_KE_PAYLOAD without a method"
    elif NotifyType.NO_PROPOSAL_CHOSEN in n:
        answer.kind = Kind.NO_PROPOSAL
    elif NotifyType.REDIRECT in n:
        answer.kind = Kind.REDIRECT
    elif any(t < 16384 for t in n):
        answer.kind = Kind.ERROR
        answer.detail = _notify_name(min(t for t in n if t < 16384))
    else:
        _selection(answer, msg, request)
    return answer


def _selection(answer: Answer, msg: Message, request: Request) -> None:
    sa = next((p for p in msg.payloads if isinstance(p, SecurityAssociation)), None)
    ke = next((p for p in msg.payloads if isinstance(p, KeyExchange)), None)
    received = from_wire(sa) if sa is not None else ()
    if len(received) != 1:
        answer.kind = Kind.INVALID
        answer.detail = f"answer with {len(received)} proposals and no error notify"
        return
    try:
        answer.selected = check_selected(request.proposals, received[0])
    except ProposalError as e:
        answer.kind = Kind.INVALID
        answer.detail = f"invalid selection {received[0]}: {e}"
        return
    answer.kind = Kind.SELECTED
    answer.ke_method = int(ke.method) if ke is not None else None
    ke_t = answer.selected.first(TransformType.KE)
    if ke is None or ke_t is None or ke.method != ke_t.id:
        answer.detail = "KE payload does not match the selected KE method"


def redirect_gateway(data: bytes) -> str:
    """The new gateway of a REDIRECT notify (RFC 5685 §10: GW Ident Type, Length, Identity,
    then the initiator's nonce)."""
    if len(data) < 2 or len(data) < 2 + data[1]:
        return f"undecodable REDIRECT data {data.hex()}"
    kind, ident = data[0], data[2 : 2 + data[1]]
    try:
        if kind == 1 and len(ident) == 4:
            return str(ipaddress.IPv4Address(ident))
        if kind == 2 and len(ident) == 16:
            return str(ipaddress.IPv6Address(ident))
        if kind == 3:
            return ident.decode("ascii")
    except UnicodeDecodeError:
        pass
    return f"gateway identity type {kind}: {ident.hex()}"


def _notify_name(ntype: int) -> str:
    try:
        return NotifyType(ntype).name
    except ValueError:
        return str(ntype)


def notify_name(ntype: int) -> str:
    return "USE_PPK_INT" if ntype == USE_PPK_INT else _notify_name(ntype)
