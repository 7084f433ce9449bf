"""Which tasks handle a peer's request, by exchange type (strongSwan task_manager_v2
process_request())."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pqike.tasks.base import Incoming, Outgoing, Status, Task, TaskFailed
from pqike.tasks.child_create import ChildCreate
from pqike.tasks.child_sa_ke import ChildSaKe
from pqike.tasks.ike_auth import IkeAuth
from pqike.tasks.ike_config import IkeConfig
from pqike.tasks.ike_init import IkeInit
from pqike.tasks.ike_rekey import IkeRekey
from pqike.tasks.informational import InformationalResponder
from pqike.wire.iana import ExchangeType, NotifyType, ProtocolId
from pqike.wire.payloads import SecurityAssociation

if TYPE_CHECKING:
    from pqike.sa.ike_sa import IkeSa


class _NotSupported(Task):
    """Refuse an exchange we do not implement, with the notify the RFC suggests."""

    name = "refuse"

    def __init__(self, sa: IkeSa, notify: NotifyType, reason: str) -> None:
        super().__init__(sa, False)
        self.notify = notify
        self.reason = reason

    def process_r(self, msg: Incoming) -> Status:
        raise TaskFailed(self.reason, self.notify)

    def build_r(self, msg: Outgoing) -> Status:
        return Status.SUCCESS


def establishment_tasks(sa: IkeSa, child: str | None) -> list[Task]:
    """What the initiator queues to bring up an IKE_SA (and its first CHILD_SA)."""
    return [
        IkeInit(sa, True),
        IkeAuth(sa, True),
        IkeConfig(sa, True),
        ChildCreate(sa, True, child),
    ]


def responder_tasks(sa: IkeSa, msg: Incoming) -> list[Task]:
    ex = msg.exchange
    if ex == ExchangeType.IKE_SA_INIT:
        return [
            IkeInit(sa, False),
            IkeAuth(sa, False),
            IkeConfig(sa, False),
            ChildCreate(sa, False),
        ]
    if ex == ExchangeType.INFORMATIONAL:
        return [InformationalResponder(sa, False)]
    if ex == ExchangeType.CREATE_CHILD_SA:
        sa_p = msg.first(SecurityAssociation)
        if sa_p is not None and sa_p.proposals and sa_p.proposals[0].protocol == ProtocolId.IKE:
            return [IkeRekey(sa, False)]
        return [ChildSaKe(sa, False)]
    return [_NotSupported(sa, NotifyType.INVALID_SYNTAX, f"unexpected {ex.name} request")]
