"""CREATE_CHILD_SA for a new CHILD_SA or a CHILD_SA rekey, with the IKE_FOLLOWUP_KE chain
of RFC 9370 §2.2.4 (strongSwan child_create.c / child_rekey.c).

Unlike the CHILD_SA of IKE_AUTH these carry fresh nonces and, when the ESP proposal has a
KE transform (PFS), their own key exchanges: KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1) |
... | SK(n)). A rekey names the old SA with N(REKEY_SA) (our inbound SPI); whoever
initiated the rekey deletes the old CHILD_SA once the new one is installed.

A peer refusing our proposal (NO_PROPOSAL_CHOSEN) is the PFS mismatch of reference 001:
the log says what we proposed and names the KE methods, and an event reports it so it is
not discovered when the CHILD_SA silently expires.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from pqike.config import Child
from pqike.crypto.keyschedule import derive_child_keys
from pqike.events import EventKind
from pqike.kernel.base import KernelError
from pqike.proposal import (
    Proposal,
    ProposalError,
    format_proposals,
    parse_proposals,
)
from pqike.proposal.sa_payload import from_wire, to_wire
from pqike.sa.child_sa import ChildSa, ChildState
from pqike.sa.ts import TrafficSelector, fmt, is_subset, narrow
from pqike.tasks.base import Incoming, Outgoing, Status, Task, TaskFailed
from pqike.tasks.child_create import (
    _from_wire_ts,
    _to_wire_ts,
    install_child,
    reauth_outbound,
    release_spi,
    remove_outbound,
)
from pqike.tasks.common import (
    best_child_config,
    check_response,
    child_established,
    configured_ts,
    responder_select,
)
from pqike.tasks.ke_chain import KeChain, method_name
from pqike.wire.iana import (
    EncrId,
    ExchangeType,
    IntegId,
    NotifyType,
    ProtocolId,
    TransformType,
)
from pqike.wire.payloads import Nonce, Notify, SecurityAssociation, TSi, TSr

if TYPE_CHECKING:
    from pqike.sa.ike_sa import IkeSa

NONCE_SIZE = 32
REKEYED_GRACE = 60.0  # seconds an old CHILD_SA lives on after its rekey, awaiting DELETE


def _notify_name(ntype: int) -> str:
    return NotifyType(ntype).name if ntype in NotifyType._value2member_map_ else str(ntype)


def _ike_rekey_running(sa: IkeSa) -> bool:
    """An IKE_SA rekey of ours or of the peer is under way on this IKE_SA."""
    from pqike.tasks.ike_rekey import IkeRekey

    return sa.state.value == "REKEYED" or any(
        isinstance(t, IkeRekey) for t in (*sa.active, *sa.followups.values())
    )


def _ke_methods(proposals: tuple[Proposal, ...]) -> str:
    names = []
    for p in proposals:
        for t in p.key_exchanges:
            label = str(t)
            if label not in names:
                names.append(label)
    return ", ".join(names) or "none (no PFS)"


class ChildSaKe(Task):
    """A CHILD_SA created or rekeyed with CREATE_CHILD_SA (both roles)."""

    name = "child_create"

    def __init__(
        self,
        sa: IkeSa,
        initiator: bool,
        child_name: str | None = None,
        rekey: ChildSa | None = None,
    ) -> None:
        super().__init__(sa, initiator)
        self.rekey = rekey
        self.child_name = child_name or (rekey.name if rekey else None)
        self.cfg: Child | None = sa.child_config(self.child_name) if self.child_name else None
        self.child: ChildSa | None = None
        self.offered: tuple[Proposal, ...] = ()
        self.ke_method = 0
        self.chain = KeChain()
        self.ni = b""
        self.nr = b""
        self.my_ts: list[TrafficSelector] = []
        self.peer_ts: list[TrafficSelector] = []
        self.stage = "create"
        self.retries = 0
        if rekey is not None:
            self.name = "child_rekey"

    # ---- shared -------------------------------------------------------------------------

    def _what(self) -> str:
        if self.rekey is not None:
            return f"rekeying CHILD_SA {self.rekey.label}"
        return f"creating CHILD_SA {self.child_name}"

    def _new_child(self) -> ChildSa:
        assert self.cfg is not None and self.child_name is not None
        svc, sa = self.sa.svc, self.sa
        reqid = self.rekey.reqid if self.rekey else svc.next_reqid(self.sa.name, self.child_name)
        child = ChildSa(name=self.child_name, unique_id=svc.next_child_id(), reqid=reqid)
        child.mode = "TUNNEL" if self.cfg.mode == "tunnel" else "TRANSPORT"
        child.spi_in = svc.kernel.alloc_spi(sa.remote.host, sa.local.host)
        child.encap = sa.nat_local or sa.nat_remote or sa.force_encap
        return child

    def _failed(self, reason: str) -> Status:
        sa = self.sa
        sa.log("%s failed: %s", self._what(), reason)
        kind = EventKind.REKEY_FAILED if self.rekey else EventKind.CHILD_FAILED
        sa.emit(kind, reason, self.rekey or self.child)
        if self.rekey is not None:
            self.rekey.last_error = reason
        if self.rekey is not None and self.rekey.state == ChildState.REKEYING:
            self.rekey.state = ChildState.INSTALLED
            self.sa.home().schedule_retry(self.rekey)
        release_spi(sa, self.child)
        return Status.SUCCESS  # the IKE_SA itself is fine

    def abort(self) -> None:
        release_spi(self.sa, self.child)

    def _finish(self) -> bool:
        """Derive KEYMAT from every shared secret and install; False if the kernel refused."""
        child, sa = self.child, self.sa
        assert child is not None and child.proposal is not None
        assert sa.keys is not None and sa.suite is not None
        p = child.proposal
        encr = p.first(TransformType.ENCR)
        integ = p.first(TransformType.INTEG)
        assert encr is not None
        child.keys = derive_child_keys(
            sa.suite.prf,
            sa.keys.sk_d,
            self.ni,
            self.nr,
            encr=EncrId(encr.id),
            encr_key_bits=encr.key_length,
            integ=IntegId(integ.id) if integ else IntegId.NONE,
            ke_secret=self.chain.ke_secret,
            add_secrets=self.chain.add_secrets,
        )
        sa.cfg("selected proposal: %s", p)
        try:
            # keys by our role in this CREATE_CHILD_SA, not in the IKE_SA
            # as the responder of a rekey, send with the new SA only once the old is gone
            defer = self.rekey is not None and not self.initiator
            if self.rekey is None:  # a reauthentication's may replace another IKE_SA's
                defer = not reauth_outbound(sa, child, self.initiator)
            install_child(sa, child, sa.now, initiator=self.initiator, with_outbound=not defer)
            if defer:
                child.replaces = self.rekey
        except KernelError as e:
            sa.log("unable to install CHILD_SA %s: %s", child.label, e)
            return False
        home = sa.home()  # the IKE_SA may have been rekeyed while this exchange ran
        home.children.append(child)
        home.schedule_child(child)
        if self.rekey is not None:
            self.rekey.state = ChildState.REKEYED
            # the rekey initiator deletes the old SA; should its DELETE never come, we do
            # (strongSwan's child_rekey waits a retransmit cycle, too)
            grace = sa.now + REKEYED_GRACE
            if self.rekey.expire_at is None or self.rekey.expire_at > grace:
                self.rekey.expire_at = grace
            self.rekey.rekey_at = None
            sa.log("CHILD_SA %s rekeyed: %s", self.rekey.label, child.label)
        child_established(sa, child, self.rekey)
        return True

    # ---- initiator ----------------------------------------------------------------------

    def build_i(self, msg: Outgoing) -> Status:
        if self.cfg is None:
            return self._failed(f"no CHILD_SA config named '{self.child_name}'")
        if self.rekey is not None and self.rekey not in self.sa.children:
            return Status.SUCCESS  # deleted meanwhile: nothing to rekey
        if (
            self.rekey is not None
            and self.child is None
            and self.rekey.state != ChildState.INSTALLED
        ):
            # the peer rekeyed it while this waited in the queue (its DELETE is on the way):
            # rekeying and deleting it here would switch to the peer's new SA too early
            self.sa.log(
                "CHILD_SA %s is %s, not rekeying it", self.rekey.label, self.rekey.state.value
            )
            return Status.SUCCESS
        if self.stage == "followup":
            msg.exchange = ExchangeType.IKE_FOLLOWUP_KE
            self.chain.start_followup(msg)
            return Status.NEED_MORE
        sa = self.sa
        if self.child is None and _ike_rekey_running(sa):
            return Status.NEED_MORE  # wait: the IKE_SA is being replaced right now
        msg.exchange = ExchangeType.CREATE_CHILD_SA
        if self.child is None:
            self.child = self._new_child()
            self.offered = parse_proposals(ProtocolId.ESP, self.cfg.esp_proposals)
            first_ke = next(
                (
                    p.first(TransformType.KE)
                    for p in self.offered
                    if p.first(TransformType.KE) is not None
                ),
                None,
            )
            self.ke_method = first_ke.id if first_ke and not first_ke.is_none else 0
            self.ni = sa.svc.rng(NONCE_SIZE)
            if self.rekey is not None:
                self.rekey.state = ChildState.REKEYING
                self.my_ts, self.peer_ts = self.rekey.local_ts, self.rekey.remote_ts
            else:
                dyn_local = list(sa.local_vips) or [sa.local.host]
                self.my_ts = configured_ts(self.cfg.selectors("local"), dyn_local)
                # the peer's "dynamic" is its virtual IP when we assigned one (charon too)
                dyn_peer = list(sa.remote_vips) or [sa.remote.host]
                self.peer_ts = configured_ts(self.cfg.selectors("remote"), dyn_peer)
        sa.log("%s", self._what().replace("creating", "establishing"))
        if self.rekey is not None:
            msg.add(
                Notify(
                    notify_type=NotifyType.REKEY_SA,
                    protocol=ProtocolId.ESP,
                    spi=self.rekey.spi_in.to_bytes(4, "big"),
                )
            )
        if self.cfg.mode == "transport":
            msg.notify(NotifyType.USE_TRANSPORT_MODE)
        msg.add(to_wire(self.offered, self.child.spi_in.to_bytes(4, "big")))
        msg.add(Nonce(data=self.ni))
        if self.ke_method:
            self.chain.start(msg, self.ke_method)
        msg.add(TSi(selectors=_to_wire_ts(self.my_ts)))
        msg.add(TSr(selectors=_to_wire_ts(self.peer_ts)))
        return Status.NEED_MORE

    def process_i(self, msg: Incoming) -> Status:
        try:
            if self.stage == "followup":
                return self._followup_response(msg)
            return self._create_response(msg)
        except TaskFailed as e:
            return self._failed(e.reason)

    def _create_response(self, msg: Incoming) -> Status:
        err = msg.error_notify()
        if err is not None:
            return self._error_response(err)
        sa_p = msg.first(SecurityAssociation)
        nonce = msg.first(Nonce)
        tsi, tsr = _from_wire_ts(msg.first(TSi)), _from_wire_ts(msg.first(TSr))
        if sa_p is None or nonce is None or not tsi or not tsr:
            raise TaskFailed("CREATE_CHILD_SA response lacks SA, Nonce or TS payloads")
        received = from_wire(sa_p)
        try:
            if len(received) != 1:
                raise ProposalError(f"{len(received)} proposals", "exactly one expected")
            selected = check_response(self.sa, self.offered, received[0])
        except ProposalError as e:
            raise TaskFailed(f"peer selected an invalid ESP proposal: {e}") from e
        if len(selected.spi) != 4:
            raise TaskFailed(f"peer's ESP SPI has {len(selected.spi)} bytes")
        ke_t = selected.first(TransformType.KE)
        if (ke_t.id if ke_t else 0) != self.ke_method:
            raise TaskFailed(
                f"peer selected KE {ke_t or 'none'} but we sent {method_name(self.ke_method)}"
            )
        if not is_subset(tsi, self.my_ts) or not is_subset(tsr, self.peer_ts):
            raise TaskFailed(
                f"peer's traffic selectors {fmt(tsi)} === {fmt(tsr)} are not a subset of ours"
            )
        self.nr = nonce.data
        if self.ke_method:
            self.chain.finish(msg, self.ke_method)
        self.chain.pending = [t for t in selected.key_exchanges if t.type != TransformType.KE]
        self.chain.read_link(msg)
        child = self.child
        assert child is not None
        child.proposal = selected
        child.spi_out = int.from_bytes(selected.spi, "big")
        child.local_ts, child.remote_ts = tsi, tsr
        if self.chain.pending:
            self.stage = "followup"
            return Status.NEED_MORE
        return self._complete()

    def _followup_response(self, msg: Incoming) -> Status:
        err = msg.error_notify()
        if err is not None:
            raise TaskFailed(f"peer answered IKE_FOLLOWUP_KE with {_notify_name(err.notify_type)}")
        self.chain.finish_followup(msg)
        if self.chain.pending:
            return Status.NEED_MORE
        return self._complete()

    def _complete(self) -> Status:
        if not self._finish():
            # the peer has installed its half: delete it, nothing may stay half-installed
            from pqike.tasks.informational import ChildDelete

            assert self.child is not None
            self.sa.queue(ChildDelete(self.sa, True, self.child, unwanted=True))
            return self._failed("kernel refused the new CHILD_SA")
        if self.rekey is not None:
            from pqike.tasks.informational import ChildDelete

            old, sa = self.rekey, self.sa
            redundant = old
            if old.collision is not None:
                # RFC 7296 §2.8.1: the exchange holding the lowest of the four nonces made
                # the redundant SA; its initiator deletes that, the other one the old SA.
                peer_ni, peer_nr, peer_child = old.collision
                lowest = min(self.ni, self.nr, peer_ni, peer_nr)
                if lowest in (self.ni, self.nr):
                    redundant = self.child  # type: ignore[assignment]
                    sa.log(
                        "CHILD_SA rekey collision lost, deleting redundant CHILD_SA %s",
                        redundant.label,
                    )  # type: ignore[union-attr]
                    # send with the old SA until the peer's replacement takes over: the
                    # peer drops the redundant one's inbound SA when our DELETE arrives
                    remove_outbound(sa, redundant)
                    redundant.state, redundant.rekey_at = ChildState.DELETING, None
                else:
                    sa.log(
                        "CHILD_SA rekey collision won, %s of the peer is redundant",
                        peer_child.label,
                    )
                    # never send with (or rekey) the SA the peer is about to delete; should
                    # its DELETE not come, it expires like a rekeyed one
                    peer_child.replaces = None
                    remove_outbound(sa, peer_child)
                    peer_child.state, peer_child.rekey_at = ChildState.REKEYED, None
                    grace = sa.now + REKEYED_GRACE
                    if peer_child.expire_at is None or peer_child.expire_at > grace:
                        peer_child.expire_at = grace
                old.collision = None
            if redundant is not None:
                home = sa.home()
                home.queue(ChildDelete(home, True, redundant))
                if home is not sa:
                    home.initiate(sa.now)
        return Status.SUCCESS

    def _error_response(self, err: Notify) -> Status:
        sa = self.sa
        name = _notify_name(err.notify_type)
        if err.notify_type == NotifyType.INVALID_KE_PAYLOAD and len(err.data) >= 2:
            wanted = int.from_bytes(err.data[:2], "big")
            ours = {t.id for p in self.offered for t in p.of_type(TransformType.KE)}
            if wanted in ours and wanted != self.ke_method and self.retries < 3:
                sa.log("peer requested key exchange method %s, retrying", method_name(wanted))
                self.ke_method = wanted
                self.retries += 1
                self.chain = KeChain()
                return Status.NEED_MORE
        if err.notify_type == NotifyType.TEMPORARY_FAILURE and self.rekey is not None:
            sa.log("peer answered TEMPORARY_FAILURE, retrying %s later", self._what())
            release_spi(sa, self.child)  # the retry allocates its own
            if self.rekey.state == ChildState.REKEYING:
                self.rekey.state = ChildState.INSTALLED
            sa.home().schedule_retry(self.rekey)
            return Status.SUCCESS
        if err.notify_type == NotifyType.NO_PROPOSAL_CHOSEN:
            # reference 001: a PFS (KE) mismatch makes rekeying fail; say so clearly
            sa.log("peer refused our ESP proposals with NO_PROPOSAL_CHOSEN")
            sa.log("configured proposals: %s", format_proposals(self.offered))
            sa.log(
                "key exchange methods we require for this CHILD_SA: %s", _ke_methods(self.offered)
            )
            reason = (
                f"NO_PROPOSAL_CHOSEN: peer accepts none of {format_proposals(self.offered)}"
                f" (KE/PFS methods: {_ke_methods(self.offered)}; a PFS mismatch if the "
                "peer's esp_proposals differ only in KE)"
            )
            return self._failed(reason)
        return self._failed(f"peer answered {name}")

    # ---- responder ----------------------------------------------------------------------

    def process_r(self, msg: Incoming) -> Status:
        if msg.exchange == ExchangeType.IKE_FOLLOWUP_KE:
            self.chain.respond_followup(msg)
            return Status.NEED_MORE
        sa = self.sa
        if _ike_rekey_running(sa):
            # its result would land on an IKE_SA about to go (RFC 7296 §2.25)
            raise TaskFailed("IKE_SA is being rekeyed", NotifyType.TEMPORARY_FAILURE)
        rekey_n = msg.notify(NotifyType.REKEY_SA)
        if rekey_n is not None:
            spi = int.from_bytes(rekey_n.spi, "big") if rekey_n.spi else -1
            old = next((c for c in sa.home().children if c.spi_out == spi), None)
            if old is None:
                raise TaskFailed(
                    f"CHILD_SA with SPI {spi:08x} to rekey not found", NotifyType.CHILD_SA_NOT_FOUND
                )
            if old.state in (ChildState.REKEYED, ChildState.DELETING):
                raise TaskFailed(
                    f"CHILD_SA {old.label} is already {old.state.value.lower()}",
                    NotifyType.TEMPORARY_FAILURE,
                )
            self.rekey = old
            self.name = "child_rekey"
        sa_p, nonce = msg.first(SecurityAssociation), msg.first(Nonce)
        tsi, tsr = _from_wire_ts(msg.first(TSi)), _from_wire_ts(msg.first(TSr))
        if sa_p is None or nonce is None or not tsi or not tsr:
            raise TaskFailed(
                "CREATE_CHILD_SA request lacks SA, Nonce or TS", NotifyType.INVALID_SYNTAX
            )
        received = from_wire(sa_p)
        match = self._match(tsi, tsr)
        if match is None:
            raise TaskFailed(
                f"no CHILD_SA config matches {fmt(tsi)} === {fmt(tsr)}", NotifyType.TS_UNACCEPTABLE
            )
        self.child_name, self.cfg, n_tsr, n_tsi = match
        configured = parse_proposals(ProtocolId.ESP, self.cfg.esp_proposals)
        selected = responder_select(sa, received, configured, self._what())
        if len(selected.spi) != 4:
            raise TaskFailed("ESP SPI must be 4 bytes", NotifyType.INVALID_SYNTAX)
        self.ni = nonce.data
        self.nr = sa.svc.rng(NONCE_SIZE)
        ke_t = selected.first(TransformType.KE)
        self.ke_method = ke_t.id if ke_t else 0
        if self.ke_method:
            self.chain.respond(msg, self.ke_method)
        self.chain.pending = [t for t in selected.key_exchanges if t.type != TransformType.KE]
        self.child = self._new_child()
        self.child.proposal = selected
        self.child.spi_out = int.from_bytes(selected.spi, "big")
        self.child.local_ts, self.child.remote_ts = n_tsr, n_tsi
        if self.rekey is not None:
            self.colliding = self.rekey.state == ChildState.REKEYING  # we rekey it too
            self.rekey.state = ChildState.REKEYING
        return Status.NEED_MORE

    def _match(
        self, tsi: list[TrafficSelector], tsr: list[TrafficSelector]
    ) -> tuple[str, Child, list[TrafficSelector], list[TrafficSelector]] | None:
        sa = self.sa
        peer_dyn = list(sa.remote_vips) or [sa.remote.host]
        my_dyn = list(sa.local_vips) or [sa.local.host]
        old = self.rekey
        if old is not None:
            # a rekey keeps the selectors the old CHILD_SA was narrowed to
            cfg = sa.conn.children.get(old.name)
            n_tsr, n_tsi = narrow(tsr, old.local_ts), narrow(tsi, old.remote_ts)
            if cfg is not None and n_tsr and n_tsi:
                return old.name, cfg, n_tsr, n_tsi
            return None
        return best_child_config(sa, tsi, tsr, my_dyn, peer_dyn)

    def build_r(self, msg: Outgoing) -> Status:
        sa, child = self.sa, self.child
        assert child is not None and child.proposal is not None
        if msg.exchange == ExchangeType.IKE_FOLLOWUP_KE:
            t = self.chain.pending.pop(0)
            self.chain.add_response(msg, t.id, sa.svc.rng)
        else:
            reply = Proposal(
                child.proposal.protocol,
                child.proposal.transforms,
                number=child.proposal.number,
                spi=child.spi_in.to_bytes(4, "big"),
            )
            msg.add(SecurityAssociation(proposals=to_wire([reply]).proposals))
            msg.add(Nonce(data=self.nr))
            if self.ke_method:
                self.chain.add_response(msg, self.ke_method, sa.svc.rng)
            else:
                self.chain.add_link(msg, sa.svc.rng)
            msg.add(TSi(selectors=_to_wire_ts(child.remote_ts)))
            msg.add(TSr(selectors=_to_wire_ts(child.local_ts)))
            if self.cfg is not None and self.cfg.mode == "transport":
                msg.notify(NotifyType.USE_TRANSPORT_MODE)
        if self.chain.pending:
            sa.followups[self.chain.link] = self
            return Status.NEED_MORE
        if not self._finish():
            msg.payloads = []
            msg.notify(NotifyType.NO_PROPOSAL_CHOSEN)
        elif self.rekey is not None and getattr(self, "colliding", False):
            self.rekey.state = ChildState.REKEYING  # our own rekey of it is still running
            self.rekey.collision = (self.ni, self.nr, child)
        return Status.SUCCESS


_ = ipaddress
