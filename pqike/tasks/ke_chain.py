"""The key exchanges of one CREATE_CHILD_SA: the KE payload (SK(0)) and then one
IKE_FOLLOWUP_KE exchange per negotiated additional key exchange (RFC 9370 §2.2.4).

Exchanges are linked by an opaque ADDITIONAL_KEY_EXCHANGE notification that the responder
chooses; it is present in every response after which another exchange follows, and the
initiator echoes it in the next IKE_FOLLOWUP_KE request. Keys are derived once, at the end,
from all shared secrets in exchange order (strongSwan key_exchange_concat_secrets()).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kem.base import Initiator
from kem.errors import KemError
from pqike.proposal import Proposal, Transform
from pqike.tasks.base import Incoming, Outgoing, TaskFailed
from pqike.tasks.common import ke_backend
from pqike.wire.iana import KeMethod, NotifyType, TransformType
from pqike.wire.payloads import KeyExchange, Notify

# strongSwan sends a 1-byte link (0x42); with one exchange at a time per IKE_SA (window
# size 1) a byte distinguishes chains, and it keeps our packets the size of strongSwan's.
LINK_SIZE = 1


def method_name(method: int) -> str:
    return KeMethod(method).name if method in KeMethod._value2member_map_ else str(method)


@dataclass
class KeChain:
    """One side's view of the chain: what is left to run and the secrets so far."""

    pending: list[Transform] = field(default_factory=list)  # ADDKE rounds still to run
    secrets: list[bytes] = field(default_factory=list)  # SK(0), SK(1), ...
    link: bytes = b""  # the current ADDITIONAL_KEY_EXCHANGE data
    _ke: Initiator | None = None
    _response: bytes = b""

    @classmethod
    def for_selected(cls, selected: Proposal) -> KeChain:
        return cls(pending=[t for t in selected.key_exchanges if t.type != TransformType.KE])

    @property
    def ke_secret(self) -> bytes:
        return self.secrets[0] if self.secrets else b""

    @property
    def add_secrets(self) -> list[bytes]:
        return self.secrets[1:]

    # ---- initiator ----------------------------------------------------------------------

    def start(self, msg: Outgoing, method: int) -> None:
        """Add our KE payload for ``method`` (a DH public value or KEM encapsulation key)."""
        self._ke = ke_backend(method).initiator()
        msg.add(KeyExchange(method=method, data=self._ke.public_value))

    def start_followup(self, msg: Outgoing) -> None:
        self.start(msg, self.pending[0].id)
        msg.notify(NotifyType.ADDITIONAL_KEY_EXCHANGE, self.link)

    def finish(self, msg: Incoming, method: int) -> None:
        """Consume the responder's KE payload for ``method``."""
        ke = msg.first(KeyExchange)
        if ke is None or ke.method != method:
            got = "no KE payload" if ke is None else f"KE {method_name(int(ke.method))}"
            raise TaskFailed(f"response has {got}, expected {method_name(method)}")
        assert self._ke is not None
        try:
            self.secrets.append(self._ke.finish(ke.data))
        except KemError as e:
            raise TaskFailed(f"invalid KE payload for {method_name(method)}: {e}") from e
        self._ke = None

    def finish_followup(self, msg: Incoming) -> None:
        t = self.pending.pop(0)
        self.finish(msg, t.id)
        self.read_link(msg)

    def read_link(self, msg: Incoming) -> None:
        n = msg.notify(NotifyType.ADDITIONAL_KEY_EXCHANGE)
        if self.pending and n is None:
            raise TaskFailed("peer did not send ADDITIONAL_KEY_EXCHANGE, but key exchanges remain")
        if not self.pending and n is not None:
            raise TaskFailed("peer sent ADDITIONAL_KEY_EXCHANGE after the last key exchange")
        self.link = n.data if n is not None else b""

    # ---- responder ----------------------------------------------------------------------

    def respond(self, msg: Incoming, method: int) -> None:
        ke = msg.first(KeyExchange)
        if ke is None or ke.method != method:
            got = "no KE payload" if ke is None else f"KE {method_name(int(ke.method))}"
            raise TaskFailed(
                f"request has {got}, expected {method_name(method)}",
                NotifyType.INVALID_KE_PAYLOAD,
                int(method).to_bytes(2, "big"),
            )
        try:
            self._response, secret = ke_backend(method).respond(ke.data)
        except KemError as e:
            raise TaskFailed(
                f"invalid KE payload for {method_name(method)}: {e}", NotifyType.INVALID_SYNTAX
            ) from e
        self.secrets.append(secret)

    def respond_followup(self, msg: Incoming) -> None:
        self.respond(msg, self.pending[0].id)

    def add_response(self, msg: Outgoing, method: int, rng: Callable[[int], bytes]) -> None:
        msg.add(KeyExchange(method=method, data=self._response))
        self.add_link(msg, rng)

    def add_link(self, msg: Outgoing, rng: Callable[[int], bytes]) -> None:
        if self.pending:
            self.link = rng(LINK_SIZE)
            msg.add(Notify(notify_type=NotifyType.ADDITIONAL_KEY_EXCHANGE, data=self.link))
        else:
            self.link = b""
