"""INFORMATIONAL exchanges: DELETE of the IKE_SA or CHILD_SAs, and liveness checks (DPD).

RFC 7296 §1.4: a DELETE for CHILD_SAs is answered with a DELETE for the inbound SAs of the
pairs; a DELETE of the IKE_SA with an empty response, after which both sides forget it. An
empty INFORMATIONAL request is a liveness check, answered empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pqike.events import EventKind
from pqike.kernel.base import KernelError
from pqike.sa.child_sa import ChildSa, ChildState
from pqike.tasks.base import Incoming, Outgoing, Status, Task
from pqike.tasks.child_create import install_pending_outbound, retire_rekeyed, uninstall_child
from pqike.wire.iana import ExchangeType, ProtocolId
from pqike.wire.payloads import Delete

if TYPE_CHECKING:
    from pqike.sa.ike_sa import IkeSa


def _remove_child(sa: IkeSa, child: ChildSa, reason: str) -> None:
    bytes_in = _bytes(sa, child.spi_in, sa.local.host)
    bytes_out = _bytes(sa, child.spi_out, sa.remote.host)
    home = sa.home()
    owners = (sa, home) if home is not sa else (sa,)
    for owner in owners:
        if child in owner.children:
            owner.children.remove(child)
        for successor in owner.children:
            if successor.replaces is child:
                # switch to the new outbound SA before the old one goes: no gap
                successor.replaces = None
                install_pending_outbound(sa, successor)
    live = (ChildState.INSTALLED, ChildState.REKEYING)
    if any(c.reqid == child.reqid and c.state in live for c in home.children):
        retire_rekeyed(sa, child)  # replaced: traffic goes on on the other CHILD_SA
    else:
        uninstall_child(sa, child)
    # charon's child_delete.c wording, with the byte counts it reports
    sa.log.basic(
        "closing CHILD_SA %s with SPIs %08x_i (%d bytes) %08x_o (%d bytes) and TS %s === %s",
        child.label,
        child.spi_in,
        bytes_in,
        child.spi_out,
        bytes_out,
        " ".join(map(str, child.local_ts)),
        " ".join(map(str, child.remote_ts)),
    )
    sa.emit(EventKind.CHILD_DELETED, reason, child)


def _close_start(sa: IkeSa, child: ChildSa) -> bool:
    """Whether the peer closing this CHILD_SA re-initiates it: close_action = start, and it
    was in use (a rekeyed one the peer deletes after a rekey has a successor)."""
    cfg = sa.child_config(child.name)
    return cfg is not None and cfg.close_action == "start" and child.state.value == "INSTALLED"


def _bytes(sa: IkeSa, spi: int, dst: str) -> int:
    """An SA's byte counter for the closing line; 0 if the backend cannot tell."""
    try:
        return sa.svc.kernel.query_sa(spi, dst).bytes
    except KernelError:
        return 0


class IkeDelete(Task):
    """We delete the IKE_SA (and with it every CHILD_SA it still has)."""

    name = "ike_delete"

    def __init__(self, sa: IkeSa, initiator: bool, rekeyed: bool = False) -> None:
        super().__init__(sa, initiator)
        self.rekeyed = rekeyed  # the old IKE_SA after a rekey: its children moved on

    def build_i(self, msg: Outgoing) -> Status:
        msg.exchange = ExchangeType.INFORMATIONAL
        msg.add(Delete(protocol=ProtocolId.IKE))
        self.sa.log(
            "deleting IKE_SA %s between %s[%s]...%s[%s]",
            self.sa.label,
            self.sa.local.host,
            self.sa.local_id,
            self.sa.remote.host,
            self.sa.remote_id,
        )
        return Status.NEED_MORE

    def process_i(self, msg: Incoming) -> Status:
        self.sa.log("IKE_SA %s deleted", self.sa.label)
        self.sa.delete_after_exchange = True
        return Status.SUCCESS


class ChildDelete(Task):
    """We delete one CHILD_SA."""

    name = "child_delete"

    def __init__(
        self, sa: IkeSa, initiator: bool, child: ChildSa, *, unwanted: bool = False
    ) -> None:
        super().__init__(sa, initiator)
        self.child = child
        # a CHILD_SA the peer installed but we could not: tell it to drop its half
        self.unwanted = unwanted

    def build_i(self, msg: Outgoing) -> Status:
        known = self.child in self.sa.children or self.child in self.sa.home().children
        if not known and not self.unwanted:
            return Status.SUCCESS
        msg.exchange = ExchangeType.INFORMATIONAL
        msg.add(Delete(protocol=ProtocolId.ESP, spis=[self.child.spi_in.to_bytes(4, "big")]))
        return Status.NEED_MORE

    def process_i(self, msg: Incoming) -> Status:
        if self.child in self.sa.children or self.child in self.sa.home().children:
            _remove_child(self.sa, self.child, "deleted by us")
        return Status.SUCCESS


class Dpd(Task):
    """A liveness check: an empty INFORMATIONAL request."""

    name = "ike_dpd"

    def build_i(self, msg: Outgoing) -> Status:
        msg.exchange = ExchangeType.INFORMATIONAL
        msg.send_empty = True
        return Status.NEED_MORE

    def process_i(self, msg: Incoming) -> Status:
        return Status.SUCCESS


class InformationalResponder(Task):
    """The peer's INFORMATIONAL request: deletes and liveness checks."""

    name = "informational"

    def __init__(self, sa: IkeSa, initiator: bool) -> None:
        super().__init__(sa, initiator)
        self.reply_spis: list[bytes] = []

    def process_r(self, msg: Incoming) -> Status:
        sa = self.sa
        for d in msg.all(Delete):
            if d.protocol == ProtocolId.IKE:
                sa.log("received DELETE for IKE_SA %s", sa.label)
                sa.delete_after_exchange = True
                # close_action = start: bring the children up again on a new IKE_SA
                sa.restart_children = [c.name for c in sa.children if _close_start(sa, c)]
                sa.restart_reason = "close_action = start"
                return Status.NEED_MORE
            if d.protocol != ProtocolId.ESP:
                continue
            for spi in d.spis:
                value = int.from_bytes(spi, "big")
                child = next(
                    (c for c in (*sa.children, *sa.home().children) if c.spi_out == value), None
                )
                if child is None:
                    sa.log("received DELETE for unknown ESP CHILD_SA with SPI %08x", value)
                    continue
                sa.log("received DELETE for ESP CHILD_SA with SPI %08x", value)
                self.reply_spis.append(child.spi_in.to_bytes(4, "big"))
                restart = _close_start(sa, child)
                _remove_child(sa, child, "deleted by peer")
                if restart:
                    self._restart(child.name)
        return Status.NEED_MORE

    def _restart(self, name: str) -> None:
        """close_action = start after the peer deleted a CHILD_SA: create it again on this
        IKE_SA, once our answer to the DELETE is out."""
        from pqike.tasks.child_sa_ke import ChildSaKe

        sa = self.sa.home()
        sa.log("CHILD_SA %s closed by peer, restarting it (close_action = start)", name)

        def again() -> None:
            sa.queue(ChildSaKe(sa, True, name))
            sa.initiate(sa.now)

        self.sa.after_response.append(again)

    def build_r(self, msg: Outgoing) -> Status:
        if self.reply_spis:
            msg.add(Delete(protocol=ProtocolId.ESP, spis=self.reply_spis))
        return Status.SUCCESS
