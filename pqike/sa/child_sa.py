"""CHILD_SA state: negotiated parameters, keys and what was installed in the data plane."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from pqike.crypto.keyschedule import ChildKeys
from pqike.kernel.base import KernelSa
from pqike.proposal import Proposal
from pqike.sa.ts import TrafficSelector


class ChildState(Enum):
    CREATED = "CREATED"
    INSTALLING = "INSTALLING"
    INSTALLED = "INSTALLED"
    REKEYING = "REKEYING"
    REKEYED = "REKEYED"
    DELETING = "DELETING"
    DELETED = "DELETED"
    FAILED = "FAILED"


@dataclass
class ChildSa:
    name: str  # child config name
    unique_id: int
    reqid: int
    spi_in: int = 0  # ours: the peer sends to it
    spi_out: int = 0  # the peer's
    state: ChildState = ChildState.CREATED
    proposal: Proposal | None = None
    mode: str = "TUNNEL"
    local_ts: list[TrafficSelector] = field(default_factory=list)
    remote_ts: list[TrafficSelector] = field(default_factory=list)
    keys: ChildKeys | None = field(default=None, repr=False)
    encap: bool = False
    installed_at: float = 0.0
    rekey_at: float | None = None
    expire_at: float | None = None
    last_error: str = ""  # why its last rekey failed; list-sas shows it until one succeeds
    # rekey responder: our outbound SA waits until the old CHILD_SA is gone (strongSwan
    # does the same), else we send with keys the initiator has not installed yet
    pending_outbound: KernelSa | None = field(default=None, repr=False)
    outbound_installed: bool = False  # the kernel sends with its outbound SA
    replaces: ChildSa | None = field(default=None, repr=False)
    # RFC 7296 §2.8.1: nonces and new CHILD_SA of the peer's rekey that crossed ours
    collision: tuple[bytes, bytes, ChildSa] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.name}{{{self.unique_id}}}"
