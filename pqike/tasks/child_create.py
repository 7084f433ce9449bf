"""child_create: a CHILD_SA negotiated in IKE_AUTH (RFC 7296 §1.2, §2.9, §2.17).

The first CHILD_SA uses the IKE_SA's keys: KEYMAT = prf+(SK_d, Ni | Nr) with the
IKE_SA_INIT nonces, and KE transforms in its proposals are ignored (strongSwan strips them
before sending and skips them when selecting). Traffic selectors are narrowed by the
responder; ``dynamic`` stands for the outer address or the virtual IP.

Installation is all-or-nothing: if the kernel refuses the second SA or a policy, what
was installed is removed before the failure is reported (no half-installed CHILD_SA).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from pqike.config import Child
from pqike.crypto.keyschedule import derive_child_keys
from pqike.events import EventKind
from pqike.kernel.base import Direction, KernelError, KernelPolicy, KernelSa, Mode
from pqike.keyexport import export_child
from pqike.log import Subsystem, get_logger
from pqike.proposal import (
    Proposal,
    ProposalError,
    parse_proposals,
    strip_ke,
)
from pqike.proposal.sa_payload import from_wire, to_wire
from pqike.sa.child_sa import ChildSa, ChildState
from pqike.sa.ts import TrafficSelector, fmt, is_subset, parse_address
from pqike.tasks.base import Incoming, Outgoing, Status, Task, TaskFailed
from pqike.tasks.common import (
    best_child_config,
    check_response,
    child_established,
    configured_ts,
    responder_select,
)
from pqike.wire.iana import EncrId, ExchangeType, IntegId, NotifyType, ProtocolId, TransformType
from pqike.wire.payloads import AddressRangeSelector, SecurityAssociation, TSi, TSr

if TYPE_CHECKING:
    from pqike.sa.ike_sa import IkeSa

# Read for every message: module constants. On Python 3.11 an Enum member read from its
# class costs ~120 ns, a global ~7 ns (EnumType has a __getattr__: never specialized).
_IKE_AUTH = ExchangeType.IKE_AUTH
_NEED_MORE, _SUCCESS = Status.NEED_MORE, Status.SUCCESS
_ENCR, _INTEG, _INTEG_NONE = TransformType.ENCR, TransformType.INTEG, IntegId.NONE
_TUNNEL, _TRANSPORT = Mode.TUNNEL, Mode.TRANSPORT
_OUT, _IN, _FWD = Direction.OUT, Direction.IN, Direction.FWD
_INSTALLED = ChildState.INSTALLED
_USE_TRANSPORT_MODE = NotifyType.USE_TRANSPORT_MODE


def _to_wire_ts(tss: list[TrafficSelector]) -> list[AddressRangeSelector]:
    return [AddressRangeSelector(t.start, t.end, t.protocol, t.start_port, t.end_port) for t in tss]


def _from_wire_ts(payload: TSi | TSr | None) -> list[TrafficSelector]:
    if payload is None:
        return []
    out = []
    for s in payload.selectors:
        if isinstance(s, AddressRangeSelector):
            try:
                out.append(
                    TrafficSelector(
                        s.start_addr, s.end_addr, s.ip_protocol, s.start_port, s.end_port
                    )
                )
            except ValueError:
                continue
    return out


def child_keys_for(sa: IkeSa, child: ChildSa, ni: bytes, nr: bytes) -> None:
    p = child.proposal
    assert p is not None and sa.keys is not None and sa.suite is not None
    encr = p.first(_ENCR)
    integ = p.first(_INTEG)
    assert encr is not None
    child.keys = derive_child_keys(
        sa.suite.prf,
        sa.keys.sk_d,
        ni,
        nr,
        encr=EncrId(encr.id),
        encr_key_bits=encr.key_length,
        integ=IntegId(integ.id) if integ else _INTEG_NONE,
    )


@functools.lru_cache(maxsize=64)
def _esp_proposals(proposals: tuple[str, ...]) -> tuple[Proposal, ...]:
    """A CHILD_SA config's ESP proposals without KE (IKE_AUTH), parsed once and shared (they
    are immutable) rather than again for each IKE_AUTH."""
    return strip_ke(parse_proposals(ProtocolId.ESP, proposals))


def install_child(
    sa: IkeSa,
    child: ChildSa,
    now: float,
    *,
    initiator: bool | None = None,
    with_outbound: bool = True,
) -> None:
    """Install both SAs and the policies; undo everything on a kernel error.

    ``initiator``: our role in the exchange that negotiated the CHILD_SA (default: our
    IKE_SA role, right for IKE_AUTH). RFC 7296 §2.17 takes the keys of the SA from the
    exchange's initiator to its responder first: in a CREATE_CHILD_SA the original IKE
    responder may be the initiator (strongSwan child_create: ``this->initiator``)."""
    p, keys = child.proposal, child.keys
    assert p is not None and keys is not None
    encr = p.first(_ENCR)
    integ = p.first(_INTEG)
    assert encr is not None
    encr_id = EncrId(encr.id)
    integ_id = IntegId(integ.id) if integ else _INTEG_NONE
    kernel = sa.svc.kernel
    mode = _TUNNEL if child.mode == "TUNNEL" else _TRANSPORT
    i_to_r = (keys.encr_i, keys.integ_i)
    r_to_i = (keys.encr_r, keys.integ_r)
    if initiator is None:
        initiator = sa.initiator
    inbound, outbound = (r_to_i, i_to_r) if initiator else (i_to_r, r_to_i)
    encap = (sa.local.port, sa.remote.port) if child.encap else None
    # each selector's blocks once: the SAs take the first, the policies all of them
    local_nets = [ts.networks() for ts in child.local_ts]
    remote_nets = [ts.networks() for ts in child.remote_ts]
    local_net = local_nets[0][0]
    remote_net = remote_nets[0][0]
    sas = [
        KernelSa(
            child.spi_in,
            sa.remote.host,
            sa.local.host,
            mode,
            encr_id,
            inbound[0],
            integ_id,
            inbound[1],
            child.reqid,
            remote_net,
            local_net,
            (sa.remote.port, sa.local.port) if encap else None,
            inbound=True,
        ),
        KernelSa(
            child.spi_out,
            sa.local.host,
            sa.remote.host,
            mode,
            encr_id,
            outbound[0],
            integ_id,
            outbound[1],
            child.reqid,
            local_net,
            remote_net,
            encap,
        ),
    ]
    tunnel_out = (sa.local.host, sa.remote.host) if mode == _TUNNEL else None
    tunnel_in = (sa.remote.host, sa.local.host) if mode == _TUNNEL else None
    policies = []
    for lts in local_nets:
        for rts in remote_nets:
            for ln in lts:
                for rn in rts:
                    policies += [
                        KernelPolicy(ln, rn, _OUT, child.reqid, tunnel_out),
                        KernelPolicy(rn, ln, _IN, child.reqid, tunnel_in),
                        KernelPolicy(rn, ln, _FWD, child.reqid, tunnel_in),
                    ]
    if not with_outbound:
        # the kernel sends with the newest SA of a policy: hold the outbound one back
        child.pending_outbound = sas.pop()
    done_sas: list[KernelSa] = []
    done_pol: list[KernelPolicy] = []
    try:
        for k in sas:
            kernel.add_sa(k)
            done_sas.append(k)
        for pol in policies:
            kernel.add_policy(pol)
            done_pol.append(pol)
    except KernelError:
        for pol in done_pol:
            kernel.del_policy(pol)
        for k in done_sas:
            kernel.del_sa(k.spi, k.dst)
        raise
    child.installed_policies = policies  # type: ignore[attr-defined]
    child.outbound_installed = with_outbound
    child.state = _INSTALLED
    child.installed_at = now
    _export_child_keys(sa, child, initiator, encr_id, integ_id)


_CHD = get_logger(Subsystem.CHD)


def _export_child_keys(
    sa: IkeSa, child: ChildSa, initiator: bool, encr: EncrId, integ: IntegId
) -> None:
    """charon's level-4 CHILD_SA key lines, and the esp_sa table when enabled."""
    keys = child.keys
    assert keys is not None
    if _CHD.enabled(4):  # a logger bound to the IKE_SA only for lines that are written
        chd = _CHD.bind(sa.log.sa)
        chd.private("encryption initiator key %s", keys.encr_i.hex())
        chd.private("encryption responder key %s", keys.encr_r.hex())
        chd.private("integrity initiator key %s", keys.integ_i.hex())
        chd.private("integrity responder key %s", keys.integ_r.hex())
    ours, theirs = (sa.local.host, child.spi_in), (sa.remote.host, child.spi_out)
    i, r = (ours, theirs) if initiator else (theirs, ours)
    export_child(sa.svc.config.daemon.save_keys, i, r, encr, integ, keys, sa.log)


def _drop_peer_chains(sa: IkeSa, child: ChildSa) -> None:
    """The peer's IKE_FOLLOWUP_KE chains that would rekey ``child``, which goes: the peer
    gives such a chain up (its CHILD_SA is gone), and while one is open here, every IKE_SA
    rekey is refused until the IKE_SA reaches its hard lifetime."""
    for owner in {sa, sa.home()}:
        for link, task in list(owner.followups.items()):
            if getattr(task, "rekey", None) is child:
                del owner.followups[link]
                task.abort()  # gives back the SPI allocated for the new CHILD_SA


def uninstall_child(sa: IkeSa, child: ChildSa, *, keep_inbound: bool = False) -> None:
    """Remove the CHILD_SA's policies and SAs; ``keep_inbound``: all but its inbound SA,
    which the caller removes later (:func:`retire_rekeyed`)."""
    kernel = sa.svc.kernel
    _drop_peer_chains(sa, child)
    for pol in getattr(child, "installed_policies", []):
        kernel.del_policy(pol)
    child.installed_policies = []  # type: ignore[attr-defined]
    if child.state in (
        ChildState.INSTALLED,
        ChildState.REKEYING,
        ChildState.REKEYED,
        ChildState.DELETING,
    ):
        if not keep_inbound:
            kernel.del_sa(child.spi_in, sa.local.host)
        remove_outbound(sa, child)
    child.pending_outbound = None
    child.state = ChildState.DELETED


def remove_outbound(sa: IkeSa, child: ChildSa) -> None:
    """Stop sending with this CHILD_SA (the kernel falls back to the next newest SA of the
    reqid); its inbound SA stays."""
    child.pending_outbound = None
    if child.outbound_installed:
        child.outbound_installed = False
        sa.svc.kernel.del_sa(child.spi_out, sa.remote.host)


def retire_rekeyed(sa: IkeSa, child: ChildSa, keeper: IkeSa | None = None) -> None:
    """Delete a CHILD_SA that another one of the same reqid replaced (rekey, collision,
    reauthentication) but keep its inbound SA for ``delete_rekeyed_delay`` (strongSwan's
    name and default): ESP the peer sent on it before it switched may still be in flight,
    or the peer keeps sending until our DELETE reaches it. 0 keeps it until the CHILD_SA's
    hard lifetime. ``keeper``: the IKE_SA that removes it then (default: ``sa``'s home)."""
    delay = sa.svc.config.daemon.delete_rekeyed_delay
    until = sa.now + delay if delay else child.expire_at
    keep = until is not None and until > sa.now
    uninstall_child(sa, child, keep_inbound=keep)
    if keep:
        assert until is not None
        home = keeper or sa.home()
        home.rekeyed_inbound = [*home.rekeyed_inbound, (until, child.spi_in, sa.local.host)]
        sa.log("delay closing of inbound CHILD_SA %s for %ds", child.label, round(until - sa.now))


_LIVE = (ChildState.INSTALLED, ChildState.REKEYING)


def reauth_outbound(sa: IkeSa, child: ChildSa, initiator: bool) -> bool:
    """A new CHILD_SA (not a rekey) about to be installed: if it replaces a live one with the
    same name and selectors on another IKE_SA with this peer (make-before-break
    reauthentication), take that one's reqid, as strongSwan shares a reqid between such
    CHILD_SAs: ESP still arriving on the old SA then passes the inbound policy, which names
    the reqid. Returns whether to install the outbound SA now: the responder of the exchange
    holds it back until the old IKE_SA goes (:func:`hand_over`), when the initiator has
    installed its inbound SA for sure."""
    for other in sa.svc.siblings(sa):
        if other.deleting:  # (unique = replace) nothing to wait for, it goes anyway
            continue
        for old in other.children:
            if (
                old.name == child.name
                and old.state in _LIVE
                and old.local_ts == child.local_ts
                and old.remote_ts == child.remote_ts
            ):
                child.reqid = old.reqid
                return initiator
    return True


def hand_over(sa: IkeSa, child: ChildSa) -> IkeSa | None:
    """``sa`` goes while another IKE_SA with this peer has a live CHILD_SA of ``child``'s
    reqid (its reauthentication): switch the outbound to that one and keep ``child``'s
    inbound SA there for delete_rekeyed_delay, the peer may send on it until our DELETE
    reaches it. The IKE_SA that took it, or None (nothing done)."""
    for keeper in sa.svc.siblings(sa):
        for successor in keeper.children:
            if successor.reqid == child.reqid and successor.state in _LIVE:
                install_pending_outbound(keeper, successor)
                retire_rekeyed(sa, child, keeper)
                sa.svc.touch(keeper)
                return keeper
    return None


def remove_rekeyed_inbound(sa: IkeSa, now: float | None = None) -> None:
    """Remove the kept inbound SAs whose delay is over (all of them with ``now`` None)."""
    keep = []
    for entry in sa.rekeyed_inbound:
        until, spi, dst = entry
        if now is not None and now < until:
            keep.append(entry)
            continue
        try:
            sa.svc.kernel.del_sa(spi, dst)
        except KernelError as e:
            sa.log("unable to delete inbound SA %08x of a rekeyed CHILD_SA: %s", spi, e)
    sa.rekeyed_inbound = keep


def release_spi(sa: IkeSa, child: ChildSa | None) -> None:
    """Give back the inbound SPI of a CHILD_SA that was never installed (the kernel keeps
    an SPI reserved with ALLOCSPI as a larval SA until its own timeout otherwise)."""
    if child is None or not child.spi_in:
        return
    if child.state in (ChildState.CREATED, ChildState.INSTALLING, ChildState.FAILED):
        sa.svc.kernel.del_sa(child.spi_in, sa.local.host)
        child.state = ChildState.DELETED


def install_pending_outbound(sa: IkeSa, child: ChildSa) -> None:
    """Switch traffic to a CHILD_SA we answered a rekey for: its initiator has installed
    its inbound SA by now (it deleted the old CHILD_SA, or never will)."""
    pending, child.pending_outbound = child.pending_outbound, None
    if pending is None or child.state == ChildState.DELETED:
        return
    try:
        sa.svc.kernel.add_sa(pending)
    except KernelError as e:
        sa.log("unable to install outbound SA %08x of CHILD_SA %s: %s", pending.spi, child.label, e)
        return
    child.outbound_installed = True
    sa.log.control("installed outbound SA %08x of CHILD_SA %s", pending.spi, child.label)


class ChildCreate(Task):
    """The CHILD_SA of IKE_AUTH. CREATE_CHILD_SA (with IKE_FOLLOWUP_KE) builds on this."""

    name = "child_create"

    def __init__(self, sa: IkeSa, initiator: bool, child_name: str | None = None) -> None:
        super().__init__(sa, initiator)
        self.child_name = child_name
        self.child_cfg: Child | None = sa.child_config(child_name) if child_name else None
        self.child: ChildSa | None = None
        self.offered: tuple[Proposal, ...] = ()
        self.my_ts: list[TrafficSelector] = []
        self.peer_ts: list[TrafficSelector] = []
        self.failed_notify: NotifyType | None = None

    # ---- helpers ------------------------------------------------------------------------

    def _proposals(self, cfg: Child) -> tuple[Proposal, ...]:
        return _esp_proposals(tuple(cfg.esp_proposals))

    def _new_child(self, name: str, cfg: Child) -> ChildSa:
        svc = self.sa.svc
        reqid = svc.next_reqid(self.sa.name, name)  # a trapped config's: the trap's
        child = ChildSa(name=name, unique_id=svc.next_child_id(), reqid=reqid)
        child.mode = "TUNNEL" if cfg.mode == "tunnel" else "TRANSPORT"
        child.spi_in = svc.kernel.alloc_spi(self.sa.remote.host, self.sa.local.host)
        child.encap = self.sa.nat_local or self.sa.nat_remote or self.sa.force_encap
        return child

    def _child_failed(self, reason: str) -> None:
        self.sa.log("%s", reason)
        self.sa.emit(EventKind.CHILD_FAILED, reason, self.child)
        if self.child is not None:
            self.child.state = ChildState.FAILED
        release_spi(self.sa, self.child)

    def abort(self) -> None:
        release_spi(self.sa, self.child)

    def _established(self) -> bool:
        child = self.child
        assert child is not None and child.proposal is not None
        sa = self.sa
        sa.cfg("selected proposal: %s", child.proposal)
        try:
            outbound = reauth_outbound(sa, child, self.initiator)
            install_child(sa, child, sa.now, with_outbound=outbound)
        except KernelError as e:
            self._child_failed(f"unable to install CHILD_SA {child.label}: {e}")
            return False
        sa.children.append(child)
        sa.schedule_child(child)
        child_established(sa, child)
        return True

    # ---- initiator ----------------------------------------------------------------------

    def build_i(self, msg: Outgoing) -> Status:
        if msg.exchange != ExchangeType.IKE_AUTH:
            return Status.NEED_MORE
        cfg, name = self.child_cfg, self.child_name
        if cfg is None or name is None:
            return Status.SUCCESS  # childless initiation
        sa = self.sa
        self.child = self._new_child(name, cfg)
        sa.log("establishing CHILD_SA %s", self.child.label)
        self.offered = self._proposals(cfg)
        spi = self.child.spi_in.to_bytes(4, "big")
        # with a virtual IP request, "dynamic" is 0.0.0.0/0 until the address is known
        if sa.conn.vips:
            local_dyn = [TrafficSelector.any(parse_address(v).version) for v in sa.conn.vips]
            self.my_ts = [t for t in cfg.selectors("local") if t is not None] + local_dyn
            if any(t is not None for t in cfg.selectors("local")):
                self.my_ts = [t for t in cfg.selectors("local") if t is not None]
        else:
            self.my_ts = configured_ts(cfg.selectors("local"), [sa.local.host])
        self.peer_ts = configured_ts(cfg.selectors("remote"), [sa.remote.host])
        if cfg.mode == "transport":  # RFC 7296 §1.3.1, as child_sa_ke does in CREATE_CHILD_SA
            msg.notify(NotifyType.USE_TRANSPORT_MODE)
        msg.add(to_wire(self.offered, spi))
        msg.add(TSi(selectors=_to_wire_ts(self.my_ts)))
        msg.add(TSr(selectors=_to_wire_ts(self.peer_ts)))
        return Status.NEED_MORE

    def process_i(self, msg: Incoming) -> Status:
        if msg.exchange != ExchangeType.IKE_AUTH:
            return Status.NEED_MORE
        if self.child is None:
            return Status.SUCCESS
        err = msg.error_notify()
        if err is not None:
            if err.notify_type in (
                NotifyType.NO_PROPOSAL_CHOSEN,
                NotifyType.TS_UNACCEPTABLE,
                NotifyType.SINGLE_PAIR_REQUIRED,
                NotifyType.INTERNAL_ADDRESS_FAILURE,
            ):
                self._child_failed(
                    f"received {NotifyType(err.notify_type).name} notify, no CHILD_SA built"
                )
            return Status.SUCCESS
        sa_p = msg.first(SecurityAssociation)
        tsi, tsr = _from_wire_ts(msg.first(TSi)), _from_wire_ts(msg.first(TSr))
        if sa_p is None or not tsi or not tsr:
            self._child_failed("IKE_AUTH response lacks SA/TSi/TSr, no CHILD_SA built")
            return Status.SUCCESS
        received = from_wire(sa_p)
        try:
            if len(received) != 1:
                raise ProposalError(f"{len(received)} proposals", "exactly one expected")
            selected = check_response(self.sa, self.offered, received[0])
        except ProposalError as e:
            self._child_failed(f"peer selected an invalid ESP proposal: {e}")
            return Status.SUCCESS
        if len(selected.spi) != 4:
            self._child_failed(f"peer's ESP SPI has {len(selected.spi)} bytes")
            return Status.SUCCESS
        my_ts = self.my_ts
        if self.sa.local_vips:  # the narrowed TS must cover our new address
            my_ts = [TrafficSelector.host(v) for v in self.sa.local_vips] + my_ts
        if not is_subset(tsi, my_ts + self.my_ts) or not is_subset(tsr, self.peer_ts):
            self._child_failed(
                f"peer's traffic selectors {fmt(tsi)} === {fmt(tsr)} are not a subset of ours"
            )
            return Status.SUCCESS
        child = self.child
        child.proposal = selected
        child.spi_out = int.from_bytes(selected.spi, "big")
        child.local_ts, child.remote_ts = tsi, tsr
        child_keys_for(self.sa, child, self.sa.ni, self.sa.nr)
        self._established()
        return Status.SUCCESS

    # ---- responder ----------------------------------------------------------------------

    def _match_config(
        self, tsi: list[TrafficSelector], tsr: list[TrafficSelector], peer_dyn: list[str]
    ) -> tuple[str, Child, list[TrafficSelector], list[TrafficSelector]] | None:
        """The best-fitting child config, its selectors narrowed (tasks.common)."""
        sa = self.sa
        return best_child_config(sa, tsi, tsr, list(sa.local_vips) or [sa.local.host], peer_dyn)

    def process_r(self, msg: Incoming) -> Status:
        if msg.exchange != _IKE_AUTH:
            return _NEED_MORE
        sa = self.sa
        sa_p = msg.first(SecurityAssociation)
        if sa_p is None:
            if sa.conn.childless == "never":  # charon: we did not announce RFC 6023 support
                raise TaskFailed(
                    "peer tried to initiate a childless IKE_SA (childless = never)",
                    NotifyType.NO_PROPOSAL_CHOSEN,
                )
            return _SUCCESS  # childless IKE_SA (RFC 6023)
        tsi, tsr = _from_wire_ts(msg.first(TSi)), _from_wire_ts(msg.first(TSr))
        received = from_wire(sa_p)
        peer_dyn = list(sa.remote_vips) or [sa.remote.host]
        match = self._match_config(tsi, tsr, peer_dyn)
        if match is None:
            sa.log("no matching CHILD_SA config found for %s === %s", fmt(tsi), fmt(tsr))
            self.failed_notify = NotifyType.TS_UNACCEPTABLE
            return _NEED_MORE
        name, cfg, n_tsr, n_tsi = match
        try:
            selected = responder_select(
                sa, received, self._proposals(cfg), f"CHILD_SA {name}", strip_ke=True
            )
        except TaskFailed:
            self.failed_notify = NotifyType.NO_PROPOSAL_CHOSEN  # the IKE_SA itself is fine
            return _NEED_MORE
        if len(selected.spi) != 4:
            self.failed_notify = NotifyType.NO_PROPOSAL_CHOSEN
            return _NEED_MORE
        self.child = self._new_child(name, cfg)
        self.child.proposal = selected
        self.child.spi_out = int.from_bytes(selected.spi, "big")
        self.child.local_ts, self.child.remote_ts = n_tsr, n_tsi
        return _NEED_MORE

    def build_r(self, msg: Outgoing) -> Status:
        if msg.exchange != _IKE_AUTH:
            return _NEED_MORE
        if self.failed_notify is not None:
            msg.notify(self.failed_notify)
            return _SUCCESS
        child = self.child
        if child is None or child.proposal is None:
            return _SUCCESS
        sa = self.sa
        child_keys_for(sa, child, sa.ni, sa.nr)
        if not self._established():
            msg.notify(NotifyType.NO_PROPOSAL_CHOSEN)
            return _SUCCESS
        # the chosen proposal under its number with our SPI: its transforms are sorted and
        # grouped already, and to_wire() makes the SA payload
        msg.add(to_wire([child.proposal], child.spi_in.to_bytes(4, "big")))
        msg.add(TSi(selectors=_to_wire_ts(child.remote_ts)))
        msg.add(TSr(selectors=_to_wire_ts(child.local_ts)))
        if child.mode == "TRANSPORT":
            msg.notify(_USE_TRANSPORT_MODE)
        return _SUCCESS
