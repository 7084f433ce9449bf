"""Which requests an IKE_SA accepts, by state and role: the one place that decides what a
peer may make us do before it has authenticated.

RFC 7296 §1.2/§2.2: until IKE_AUTH has completed, the only exchanges are IKE_SA_INIT,
IKE_INTERMEDIATE (RFC 9242) and IKE_AUTH, all started by the original initiator. Before
that, the SK keys prove nothing about who the peer is (anyone can run IKE_SA_INIT), so a
CREATE_CHILD_SA, IKE_SA rekey or INFORMATIONAL protected with them must be dropped, not
processed (strongSwan: "received CREATE_CHILD_SA request for unestablished IKE_SA,
rejected"). An IKE_SA that was rekeyed or that we are deleting only finishes what it must:
its DELETE, and a TEMPORARY_FAILURE for new work (RFC 7296 §2.25).

The verdict is taken from the (integrity-protected) header before anything is decrypted, so
a refused request costs no cryptography and changes no state.
"""

from __future__ import annotations

from enum import Enum

from pqike.wire.iana import ExchangeType


class Verdict(Enum):
    PROCESS = "process"
    TEMPORARY_FAILURE = "answer TEMPORARY_FAILURE"  # authentic, but new work goes elsewhere
    DROP = "drop"


class Phase(Enum):
    """What an IKE_SA is doing, as far as the peer's requests are concerned."""

    # hashed for every request (the ACCEPT key): members are singletons equal only to
    # themselves, so object's C hash serves; Enum's own is hash(self._name_) in Python
    __hash__ = object.__hash__

    SETUP = "not authenticated"  # IKE_SA_INIT done, IKE_AUTH not yet completed
    ESTABLISHED = "established"
    REKEYED = "rekeyed"  # replaced by a new IKE_SA, awaiting its DELETE
    DELETING = "being deleted"  # our DELETE of it is queued or under way
    GONE = "not usable"  # CREATED (we never sent IKE_SA_INIT) or DESTROYED


P, T = Verdict.PROCESS, Verdict.TEMPORARY_FAILURE
X = ExchangeType
_IKE_SA_INIT, _DROP = X.IKE_SA_INIT, Verdict.DROP  # read per request: globals, not Enum attributes
_WORK = {X.CREATE_CHILD_SA: P, X.IKE_FOLLOWUP_KE: P, X.INFORMATIONAL: P}
_WIND_DOWN = {X.CREATE_CHILD_SA: T, X.IKE_FOLLOWUP_KE: T, X.INFORMATIONAL: P}

# (phase, we are the original responder) -> {exchange: verdict}; anything absent is DROP.
# IKE_SA_INIT is only ever the first request (message ID 0): the engine hands a half-open
# IKE_SA its retransmits, which the message layer answers from its cache.
ACCEPT: dict[tuple[Phase, bool], dict[ExchangeType, Verdict]] = {
    (Phase.SETUP, True): {X.IKE_SA_INIT: P, X.IKE_INTERMEDIATE: P, X.IKE_AUTH: P},
    (Phase.SETUP, False): {},  # the original initiator gets no request before IKE_AUTH ends
    (Phase.ESTABLISHED, True): _WORK,
    (Phase.ESTABLISHED, False): _WORK,
    (Phase.REKEYED, True): _WIND_DOWN,
    (Phase.REKEYED, False): _WIND_DOWN,
    (Phase.DELETING, True): _WIND_DOWN,
    (Phase.DELETING, False): _WIND_DOWN,
    (Phase.GONE, True): {},
    (Phase.GONE, False): {},
}


def request_verdict(
    phase: Phase, responder: bool, exchange: ExchangeType | int, message_id: int
) -> Verdict:
    """What to do with a peer's request (before decrypting it)."""
    if exchange == _IKE_SA_INIT and message_id != 0:
        return _DROP
    verdict = ACCEPT[phase, responder].get(exchange)  # type: ignore[call-overload]
    return verdict if verdict is not None else _DROP
