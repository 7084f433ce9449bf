"""Tasks: one unit of IKE work per job and role, as strongSwan's libcharon organises them.

A task contributes payloads to outgoing messages (``build_i`` as exchange initiator,
``build_r`` as responder) and consumes incoming ones (``process_i`` / ``process_r``). It
answers NEED_MORE when it has work in a later exchange of the same job, which is how the
IKE_INTERMEDIATE rounds of RFC 9242/9370 and the IKE_FOLLOWUP_KE chain slot into the
tasks that need them; other tasks simply skip exchanges that are not theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, TypeVar

from pqike.wire.iana import ExchangeType, NotifyType
from pqike.wire.payloads import Notify, Payload

if TYPE_CHECKING:
    from pqike.sa.ike_sa import IkeSa

P = TypeVar("P", bound=Payload)


class Status(Enum):
    SUCCESS = "success"  # done, remove the task
    NEED_MORE = "need-more"  # keep it for the next exchange
    FAILED = "failed"  # the job failed (the reason is on the task)


class TaskFailed(Exception):
    """A task could not go on. ``notify`` is what a responder answers with, if anything."""

    def __init__(self, reason: str, notify: NotifyType | None = None, data: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.notify = notify
        self.data = data


@dataclass
class Outgoing:
    """A message being built: its exchange type and its (inner) payloads."""

    exchange: ExchangeType
    message_id: int
    is_response: bool
    payloads: list[Payload] = field(default_factory=list)
    send_empty: bool = False  # a request without payloads is meant (a liveness check)

    def add(self, payload: Payload) -> None:
        self.payloads.append(payload)

    def notify(self, ntype: NotifyType, data: bytes = b"", *, first: bool = False) -> None:
        n = Notify(notify_type=ntype, data=data)
        if first:
            self.payloads.insert(0, n)
        else:
            self.payloads.append(n)


@dataclass
class Incoming:
    """A decoded (and decrypted, reassembled) message handed to the tasks."""

    exchange: ExchangeType
    message_id: int
    is_response: bool
    payloads: list[Payload]
    raw: bytes = b""  # whole message as received (IKE_SA_INIT: RealMessage for AUTH)
    # the first Notify of each type, made at the first notify(): the tasks ask up to a
    # dozen per message (IKE_SA_INIT), each a walk over every payload otherwise
    _notifies: dict[int, Notify] | None = field(default=None, init=False, repr=False, compare=False)

    # plain loops, not next(genexpr): the tasks ask a dozen of these per message
    def first(self, cls: type[P]) -> P | None:
        for p in self.payloads:
            if isinstance(p, cls):
                return p
        return None

    def all(self, cls: type[P]) -> list[P]:
        return [p for p in self.payloads if isinstance(p, cls)]

    def notify(self, ntype: NotifyType) -> Notify | None:
        index = self._notifies
        if index is None:
            index = {}
            keep = index.setdefault  # the first of each type
            for p in self.payloads:
                if isinstance(p, Notify):
                    keep(p.notify_type, p)
            self._notifies = index
        return index.get(ntype)

    def all_notifies(self, ntype: NotifyType) -> list[Notify]:
        return [p for p in self.payloads if isinstance(p, Notify) and p.notify_type == ntype]

    def error_notify(self) -> Notify | None:
        """The first error notify (type < 16384), which ends the exchange for a requester."""
        return next(
            (p for p in self.payloads if isinstance(p, Notify) and int(p.notify_type) < 16384),
            None,
        )


class Task:
    """Base class; subclasses override what their role needs."""

    name = "task"

    def __init__(self, sa: IkeSa, initiator: bool) -> None:
        self.sa = sa
        self.initiator = initiator  # initiator of the exchange(s) this task drives
        self.reason = ""

    def build_i(self, msg: Outgoing) -> Status:
        return Status.SUCCESS

    def process_i(self, msg: Incoming) -> Status:
        return Status.SUCCESS

    def process_r(self, msg: Incoming) -> Status:
        return Status.SUCCESS

    def build_r(self, msg: Outgoing) -> Status:
        return Status.SUCCESS

    def fail(self, reason: str) -> Status:
        self.reason = reason
        return Status.FAILED

    def abort(self) -> None:
        """The IKE_SA goes away with this task unfinished: release what it holds in the
        kernel (a reserved SPI, say)."""

    def __repr__(self) -> str:
        return f"<{self.name} {'i' if self.initiator else 'r'}>"
