"""IKE_SA rekeying with CREATE_CHILD_SA (RFC 7296 §1.3.2) and IKE_FOLLOWUP_KE (RFC 9370).

The new IKE_SA takes the SPIs from the two SA payloads (the rekey initiator's becomes
SPIi), its keys come from SKEYSEED = prf(SK_d(old), SK(0) | Ni | Nr | SK(1) | ... | SK(n))
expanded with the NEW SPIs (libreswan PR #2959 fixed exactly that), and every CHILD_SA
moves over to it. The initiator of the rekey then deletes the old IKE_SA.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pqike.crypto.algorithms import UnsupportedTransform
from pqike.crypto.keyschedule import rekey_ike_keys
from pqike.events import EventKind
from pqike.proposal import (
    Proposal,
    ProposalError,
    format_proposals,
    parse_proposals,
)
from pqike.proposal.sa_payload import from_wire, to_wire
from pqike.tasks.base import Incoming, Outgoing, Status, Task, TaskFailed
from pqike.tasks.common import check_response, responder_select
from pqike.tasks.ike_init import ike_suite
from pqike.tasks.ke_chain import KeChain, method_name
from pqike.wire.iana import ExchangeType, NotifyType, ProtocolId, TransformType
from pqike.wire.payloads import Nonce, SecurityAssociation

if TYPE_CHECKING:
    from pqike.sa.ike_sa import IkeSa

NONCE_SIZE = 32


def _busy(sa: IkeSa, ignore: Task | None = None) -> str:
    """Why the IKE_SA cannot be rekeyed right now ('' if it can): a CHILD_SA half-way
    through a rekey or delete, or an exchange of ours in progress."""
    from pqike.sa.child_sa import ChildState

    for c in sa.children:
        if c.state == ChildState.REKEYING:
            return f"CHILD_SA {c.label} is {c.state.value}"
    if sa.followups:
        return "an IKE_FOLLOWUP_KE chain of the peer is in progress"
    for t in sa.active:
        if t is not ignore and not isinstance(t, IkeRekey):
            return f"our {t.name} exchange is in progress"
    return ""


class IkeRekey(Task):
    name = "ike_rekey"

    def __init__(self, sa: IkeSa, initiator: bool) -> None:
        super().__init__(sa, initiator)
        self.offered: tuple[Proposal, ...] = ()
        self.selected: Proposal | None = None
        self.ke_method = 0
        self.chain = KeChain()
        self.ni = b""
        self.nr = b""
        self.my_spi = b""
        self.peer_spi = b""
        self.stage = "create"
        self.retries = 0

    def _new_sa(self) -> IkeSa:
        """Derive the new IKE_SA and hand it everything the old one had."""
        old = self.sa
        assert old.keys is not None and old.suite is not None and self.selected is not None
        try:
            suite = ike_suite(self.selected)
        except UnsupportedTransform as e:
            raise TaskFailed(str(e)) from e
        spi_i, spi_r = (
            (self.my_spi, self.peer_spi) if self.initiator else (self.peer_spi, self.my_spi)
        )
        keys = rekey_ike_keys(
            old.suite.prf,
            old.keys.sk_d,
            self.chain.ke_secret,
            self.ni,
            self.nr,
            spi_i,
            spi_r,
            suite.key_lengths,
            self.chain.add_secrets,
        )
        new = old.successor(
            self.initiator, spi_i, spi_r, self.selected, suite, keys, self.ni, self.nr
        )
        old.log(
            "IKE_SA %s rekeyed between %s[%s]...%s[%s]: new %s with SPIs %s_i %s_r",
            old.label,
            old.local.host,
            old.local_id,
            old.remote.host,
            old.remote_id,
            new.label,
            spi_i.hex(),
            spi_r.hex(),
        )
        new.cfg("selected proposal: %s", self.selected)
        old.emit(EventKind.IKE_REKEYED, f"{old.label} -> {new.label}")
        return new

    # ---- initiator ----------------------------------------------------------------------

    def build_i(self, msg: Outgoing) -> Status:
        sa = self.sa
        busy = _busy(sa, ignore=self)
        if self.stage == "create" and not self.offered and busy:
            sa.log("postponing IKE_SA rekeying while %s", busy)
            sa.schedule_ike_retry()
            return Status.SUCCESS
        if self.stage == "followup":
            msg.exchange = ExchangeType.IKE_FOLLOWUP_KE
            self.chain.start_followup(msg)
            return Status.NEED_MORE
        msg.exchange = ExchangeType.CREATE_CHILD_SA
        if not self.offered:
            self.offered = parse_proposals(ProtocolId.IKE, sa.conn.proposals)
            assert sa.proposal is not None
            # start with the KE method we use now, as strongSwan does
            current = sa.proposal.first(TransformType.KE)
            self.ke_method = current.id if current else self.offered[0].first(TransformType.KE).id  # type: ignore[union-attr]
            self.my_spi = sa.svc.new_ike_spi()
            self.ni = sa.svc.rng(NONCE_SIZE)
            sa.log("rekeying IKE_SA %s", sa.label)
        msg.add(to_wire(self.offered, self.my_spi))
        msg.add(Nonce(data=self.ni))
        self.chain.start(msg, self.ke_method)
        return Status.NEED_MORE

    def process_i(self, msg: Incoming) -> Status:
        try:
            if self.stage == "followup":
                self.chain.finish_followup(msg)
                return Status.NEED_MORE if self.chain.pending else self._complete_i()
            return self._create_response(msg)
        except TaskFailed as e:
            return self._failed(e.reason)

    def _failed(self, reason: str) -> Status:
        if getattr(self, "lost_collision", False):
            self.sa.log("our rekeying of IKE_SA %s gave way to the peer's", self.sa.label)
            return Status.SUCCESS
        self.sa.log("rekeying IKE_SA %s failed: %s", self.sa.label, reason)
        self.sa.emit(EventKind.REKEY_FAILED, f"IKE_SA rekey: {reason}")
        self.sa.schedule_ike_retry()
        return Status.SUCCESS

    def _create_response(self, msg: Incoming) -> Status:
        err = msg.error_notify()
        if err is not None:
            if err.notify_type == NotifyType.INVALID_KE_PAYLOAD and len(err.data) >= 2:
                wanted = int.from_bytes(err.data[:2], "big")
                ours = {t.id for p in self.offered for t in p.of_type(TransformType.KE)}
                if wanted in ours and wanted != self.ke_method and self.retries < 3:
                    self.ke_method, self.retries, self.chain = wanted, self.retries + 1, KeChain()
                    return Status.NEED_MORE
            name = (
                NotifyType(err.notify_type).name
                if err.notify_type in NotifyType._value2member_map_
                else str(err.notify_type)
            )
            if err.notify_type == NotifyType.NO_PROPOSAL_CHOSEN:
                self.sa.log("configured proposals: %s", format_proposals(self.offered))
            raise TaskFailed(f"peer answered {name}")
        sa_p, nonce = msg.first(SecurityAssociation), msg.first(Nonce)
        if sa_p is None or nonce is None:
            raise TaskFailed("CREATE_CHILD_SA response lacks SA or Nonce")
        received = from_wire(sa_p)
        try:
            if len(received) != 1:
                raise ProposalError(f"{len(received)} proposals", "exactly one expected")
            selected = check_response(self.sa, self.offered, received[0])
        except ProposalError as e:
            raise TaskFailed(f"peer selected an invalid IKE proposal: {e}") from e
        ke_t = selected.first(TransformType.KE)
        if ke_t is None or ke_t.id != self.ke_method:
            raise TaskFailed(f"peer selected KE {ke_t} but we sent {method_name(self.ke_method)}")
        if len(selected.spi) != 8:
            raise TaskFailed(f"peer's new IKE SPI has {len(selected.spi)} bytes")
        self.selected = selected
        self.peer_spi = selected.spi
        self.nr = nonce.data
        self.chain.finish(msg, self.ke_method)
        self.chain.pending = [t for t in selected.key_exchanges if t.type != TransformType.KE]
        self.chain.read_link(msg)
        if self.chain.pending:
            self.stage = "followup"
            return Status.NEED_MORE
        return self._complete_i()

    def _complete_i(self) -> Status:
        new = self._new_sa()
        from pqike.tasks.informational import IkeDelete

        self.sa.queue(IkeDelete(self.sa, True, rekeyed=True))
        new.initiate(self.sa.now)
        return Status.SUCCESS

    # ---- responder ----------------------------------------------------------------------

    def process_r(self, msg: Incoming) -> Status:
        if msg.exchange == ExchangeType.IKE_FOLLOWUP_KE:
            self.chain.respond_followup(msg)
            return Status.NEED_MORE
        sa = self.sa
        mine = next((t for t in sa.active if isinstance(t, IkeRekey) and t.initiator), None)
        peer_nonce = msg.first(Nonce)
        if mine is not None and mine.ni and peer_nonce is not None:
            # Both ends rekey at once. Rather than keep two new IKE_SAs and delete one
            # (RFC 7296 §2.8.2), only the rekey with the higher initiator nonce goes ahead:
            # its initiator answers the other one TEMPORARY_FAILURE (§2.25), and the other
            # end, seeing the same two nonces, accepts it. One new IKE_SA, no retry loop.
            if mine.ni > peer_nonce.data:
                raise TaskFailed(
                    "IKE_SA rekey collision won (our nonce is higher), refusing the peer's",
                    NotifyType.TEMPORARY_FAILURE,
                )
            sa.log("IKE_SA rekey collision lost (the peer's nonce is higher), accepting its")
            mine.lost_collision = True
        busy = _busy(sa)
        if busy:
            # strongSwan ike_rekey.c does the same: an exchange of ours still running on
            # this IKE_SA would die with it once the peer deletes it after the rekey
            raise TaskFailed(f"IKE_SA rekey refused while {busy}", NotifyType.TEMPORARY_FAILURE)
        sa_p, nonce = msg.first(SecurityAssociation), msg.first(Nonce)
        if sa_p is None or nonce is None:
            raise TaskFailed("IKE rekey request lacks SA or Nonce", NotifyType.INVALID_SYNTAX)
        received = from_wire(sa_p)
        configured = parse_proposals(ProtocolId.IKE, sa.conn.proposals)
        selected = responder_select(sa, received, configured, "IKE_SA rekey")
        if len(selected.spi) != 8:
            raise TaskFailed("new IKE SPI must be 8 bytes", NotifyType.INVALID_SYNTAX)
        ke_t = selected.first(TransformType.KE)
        assert ke_t is not None
        self.ke_method = ke_t.id
        self.chain.respond(msg, self.ke_method)
        self.chain.pending = [t for t in selected.key_exchanges if t.type != TransformType.KE]
        self.ni, self.nr = nonce.data, sa.svc.rng(NONCE_SIZE)
        self.peer_spi, self.my_spi = selected.spi, sa.svc.new_ike_spi()
        self.selected = selected
        return Status.NEED_MORE

    def build_r(self, msg: Outgoing) -> Status:
        sa = self.sa
        assert self.selected is not None
        if msg.exchange == ExchangeType.IKE_FOLLOWUP_KE:
            t = self.chain.pending.pop(0)
            self.chain.add_response(msg, t.id, sa.svc.rng)
        else:
            reply = Proposal(
                self.selected.protocol,
                self.selected.transforms,
                number=self.selected.number,
                spi=self.my_spi,
            )
            msg.add(SecurityAssociation(proposals=to_wire([reply]).proposals))
            msg.add(Nonce(data=self.nr))
            self.chain.add_response(msg, self.ke_method, sa.svc.rng)
        if self.chain.pending:
            sa.followups[self.chain.link] = self
            return Status.NEED_MORE
        sa.after_response.append(self._new_sa)
        return Status.SUCCESS
