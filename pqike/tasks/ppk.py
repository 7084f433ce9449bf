"""Postquantum Preshared Keys in IKE_AUTH (RFC 8784 §3): which PPK an IKE_SA uses, if any.

USE_PPK in IKE_SA_INIT says a peer supports PPKs (ike_init sets ``IkeSa.peer_ppk``); in the
first IKE_AUTH request the initiator names its PPK in N(PPK_IDENTITY) and, unless it requires
the PPK, adds N(NO_PPK_AUTH) with the AUTH value computed without it. The responder answers
with an empty N(PPK_IDENTITY) when it used the PPK. Each side's decision follows strongSwan's
ike_auth.c get_ppk_i()/get_ppk_r(), log lines included, so an operator reading both logs sees
the same words. The key schedule step itself is pqike.crypto.keyschedule.ppk_ike_keys().
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pqike.auth.certs import Identity
from pqike.tasks.base import Incoming, TaskFailed
from pqike.wire.iana import IdType, NotifyType

if TYPE_CHECKING:
    from pqike.sa.ike_sa import IkeSa

__all__ = [
    "PPK_ID_FIXED",
    "PPK_ID_OPAQUE",
    "Ppk",
    "initiator_ppk",
    "ppk_identity_data",
    "responder_ppk",
]

# RFC 8784 §3 PPK_ID types; strongSwan sends and accepts PPK_ID_FIXED only
PPK_ID_OPAQUE = 1
PPK_ID_FIXED = 2


@dataclass(frozen=True)
class Ppk:
    """The PPK an IKE_AUTH uses: its PPK_ID (as an identity) and the secret."""

    ppk_id: Identity
    secret: bytes = field(repr=False)
    required: bool = False  # no NO_PPK_AUTH: the peer must use it

    def __str__(self) -> str:
        return str(self.ppk_id)


def ppk_identity_data(ppk_id: Identity) -> bytes:
    """N(PPK_IDENTITY) data: PPK_ID type FIXED, then the PPK_ID (ike_auth.c add_ppk_identity())."""
    return bytes([PPK_ID_FIXED]) + ppk_id.data


def _received_ppk_id(data: bytes) -> Identity | None:
    """The PPK_ID of a received N(PPK_IDENTITY), None unless FIXED with a non-empty ID.

    Printable IDs are parsed as configured IDs are (identification_create_from_data()), so
    ``pqike-ppk-1`` on the wire matches ``ppk_id = pqike-ppk-1`` and ``@pqike-ppk-1``.
    """
    if len(data) < 2 or data[0] != PPK_ID_FIXED:
        return None
    raw = data[1:]
    text = raw.decode("ascii", "replace")
    if raw.isascii() and text.isprintable():
        try:
            return Identity.from_string(text)
        except ValueError:
            pass
    return Identity(IdType.ID_KEY_ID, raw)


def _found(sa: IkeSa, ppk_id: Identity, required: bool) -> Ppk | None:
    """get_ppk(): the PPK for ppk_id; without one, fail if required, else go on without."""
    secret = sa.svc.config.ppk(str(ppk_id))
    if secret is None:
        if required:
            raise TaskFailed(
                f"PPK required but no PPK found for '{ppk_id}'", NotifyType.AUTHENTICATION_FAILED
            )
        sa.cfg("no PPK for '%s' found, ignored because PPK is not required", ppk_id)
        return None
    return Ppk(ppk_id, secret, required)


def initiator_ppk(sa: IkeSa) -> Ppk | None:
    """get_ppk_i(): the PPK to use in our IKE_AUTH request, None to authenticate without."""
    conn = sa.conn
    if conn.ppk_required and conn.ppk_id is None:
        raise TaskFailed("PPK required but no PPK_ID configured", NotifyType.AUTHENTICATION_FAILED)
    if not sa.peer_ppk:
        if conn.ppk_required:
            raise TaskFailed(
                "PPK required but peer does not support PPK", NotifyType.AUTHENTICATION_FAILED
            )
        if conn.ppk_id is not None:  # charon is silent here; an operator wants to know
            sa.cfg("peer does not support PPK, PPK_ID '%s' not used (not required)", conn.ppk_id)
        return None
    if conn.ppk_id is None:
        return None
    return _found(sa, Identity.from_string(conn.ppk_id), conn.ppk_required)


def responder_ppk(sa: IkeSa, msg: Incoming) -> Ppk | None:
    """get_ppk_r(): the PPK the initiator named, if we have it and may use it."""
    conn = sa.conn
    if not sa.peer_ppk:
        if conn.ppk_required:
            raise TaskFailed(
                "PPK required but peer does not support PPK", NotifyType.AUTHENTICATION_FAILED
            )
        return None
    notify = msg.notify(NotifyType.PPK_IDENTITY)
    ppk_id = _received_ppk_id(notify.data) if notify is not None else None
    if ppk_id is None:
        if notify is not None:
            kind = notify.data[0] if notify.data else "none"
            sa.cfg("PPK_IDENTITY ignored: PPK_ID type %s, only FIXED (2) is supported", kind)
        if conn.ppk_required:
            raise TaskFailed(
                "PPK required but no PPK_IDENTITY received", NotifyType.AUTHENTICATION_FAILED
            )
        return None
    if conn.ppk_id is not None and ppk_id != Identity.from_string(conn.ppk_id):
        raise TaskFailed(
            f"received PPK_ID '{ppk_id}', but require '{conn.ppk_id}'",
            NotifyType.AUTHENTICATION_FAILED,
        )
    ppk = _found(sa, ppk_id, conn.ppk_required)
    if ppk is None and msg.notify(NotifyType.NO_PPK_AUTH) is None:
        # the AUTH payload was computed with a PPK we lack: no point checking it
        raise TaskFailed(
            f"no PPK for PPK_ID '{ppk_id}' and no NO_PPK_AUTH from the initiator "
            "(it requires its PPK)",
            NotifyType.AUTHENTICATION_FAILED,
        )
    return ppk
