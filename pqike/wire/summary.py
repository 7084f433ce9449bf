"""charon-style one-line payload summaries for logs, e.g.
``IKE_SA_INIT request 0 [ SA KE No N(NATD_S_IP) N(NATD_D_IP) N(FRAG_SUP) ]``.

Short names as strongSwan prints them (``payload.c``, ``notify_payload.c``, ``attributes.c``,
``eap.c`` short-name tables; ``message.c get_string()``); a value without a name prints as
``(N)``, like charon's enum printf hook.
"""

from __future__ import annotations

from collections.abc import Sequence

from pqike.wire.iana import CfgAttr, CfgType, EapCode, EapType, NotifyType, PayloadType
from pqike.wire.message import Message
from pqike.wire.payloads import (
    PAYLOAD_CLASSES,
    Configuration,
    EncryptedFragment,
    ExtensibleAuthentication,
    Notify,
    Payload,
    UnknownPayload,
)

__all__ = ["Described", "describe", "notify_short_name", "payload_summary"]

PAYLOAD_SHORT: dict[int, str] = {
    PayloadType.SA: "SA",
    PayloadType.KE: "KE",
    PayloadType.IDi: "IDi",
    PayloadType.IDr: "IDr",
    PayloadType.CERT: "CERT",
    PayloadType.CERTREQ: "CERTREQ",
    PayloadType.AUTH: "AUTH",
    PayloadType.NONCE: "No",
    PayloadType.NOTIFY: "N",
    PayloadType.DELETE: "D",
    PayloadType.VENDOR_ID: "V",
    PayloadType.TSi: "TSi",
    PayloadType.TSr: "TSr",
    PayloadType.SK: "E",
    PayloadType.CP: "CP",
    PayloadType.EAP: "EAP",
    PayloadType.SKF: "EF",
}

_N = NotifyType
NOTIFY_SHORT: dict[int, str] = {
    _N.UNSUPPORTED_CRITICAL_PAYLOAD: "CRIT",
    _N.INVALID_IKE_SPI: "INVAL_IKE_SPI",
    _N.INVALID_MAJOR_VERSION: "INVAL_MAJOR",
    _N.INVALID_SYNTAX: "INVAL_SYN",
    _N.INVALID_MESSAGE_ID: "INVAL_MID",
    _N.INVALID_SPI: "INVAL_SPI",
    _N.NO_PROPOSAL_CHOSEN: "NO_PROP",
    _N.INVALID_KE_PAYLOAD: "INVAL_KE",
    _N.AUTHENTICATION_FAILED: "AUTH_FAILED",
    _N.SINGLE_PAIR_REQUIRED: "SINGLE_PAIR",
    _N.NO_ADDITIONAL_SAS: "NO_ADD_SAS",
    _N.INTERNAL_ADDRESS_FAILURE: "INT_ADDR_FAIL",
    _N.FAILED_CP_REQUIRED: "FAIL_CP_REQ",
    _N.TS_UNACCEPTABLE: "TS_UNACCEPT",
    _N.INVALID_SELECTORS: "INVAL_SEL",
    _N.UNACCEPTABLE_ADDRESSES: "UNACCEPT_ADDR",
    _N.UNEXPECTED_NAT_DETECTED: "UNEXPECT_NAT",
    _N.USE_ASSIGNED_HoA: "ASSIGNED_HoA",
    _N.TEMPORARY_FAILURE: "TEMP_FAIL",
    _N.CHILD_SA_NOT_FOUND: "NO_CHILD_SA",
    _N.STATE_NOT_FOUND: "NO_STATE",
    # strongSwan names the status range INITIAL_CONTACT..SIGNATURE_HASH_ALGORITHMS in order.
    **dict(
        zip(
            range(_N.INITIAL_CONTACT, _N.SIGNATURE_HASH_ALGORITHMS + 1),
            [
                "INIT_CONTACT",
                "SET_WINSIZE",
                "ADD_TS_POSS",
                "IPCOMP_SUP",
                "NATD_S_IP",
                "NATD_D_IP",
                "COOKIE",
                "USE_TRANSP",
                "HTTP_CERT_LOOK",
                "REKEY_SA",
                "ESP_TFC_PAD_N",
                "NON_FIRST_FRAG",
                "MOBIKE_SUP",
                "ADD_4_ADDR",
                "ADD_6_ADDR",
                "NO_ADD_ADDR",
                "UPD_SA_ADDR",
                "COOKIE2",
                "NO_NATS",
                "AUTH_LFT",
                "MULT_AUTH",
                "AUTH_FOLLOWS",
                "REDIR_SUP",
                "REDIR",
                "REDIR_FROM",
                "TKT_LT_OPAK",
                "TKT_REQ",
                "TKT_ACK",
                "TKT_NACK",
                "TKT_OPAK",
                "LINK_ID",
                "WESP_MODE",
                "ROHC_SUP",
                "EAP_ONLY",
                "CHDLESS_SUP",
                "CRASH_DET",
                "MSG_ID_SYN_SUP",
                "RPL_CTR_SYN_SUP",
                "MSG_ID_SYN",
                "RPL_CTR_SYN",
                "SEC_PASSWD",
                "PSK_PST",
                "PSK_CFM",
                "ERX_SUP",
                "IFOM_CAP",
                "SENDER_REQ_ID",
                "FRAG_SUP",
                "HASH_ALG",
            ],
            strict=True,
        )
    ),
    _N.USE_PPK: "USE_PPK",
    _N.PPK_IDENTITY: "PPK_ID",
    _N.NO_PPK_AUTH: "NO_PPK",
    _N.INTERMEDIATE_EXCHANGE_SUPPORTED: "IKE_INT_SUP",
    _N.ADDITIONAL_KEY_EXCHANGE: "ADD_KE",
}

# strongSwan names CP attributes INTERNAL_IP4_ADDRESS..HOME_AGENT_ADDRESS in order.
CFG_ATTR_SHORT: dict[int, str] = dict(
    zip(
        range(CfgAttr.INTERNAL_IP4_ADDRESS, CfgAttr.HOME_AGENT_ADDRESS + 1),
        [
            "ADDR",
            "MASK",
            "DNS",
            "NBNS",
            "EXP",
            "DHCP",
            "VER",
            "ADDR6",
            "MASK6",
            "DNS6",
            "NBNS6",
            "DHCP6",
            "SUBNET",
            "SUP",
            "SUBNET6",
            "MIP6HPFX",
            "LINK6",
            "PFX6",
            "HOA",
        ],
        strict=True,
    )
)

_CP_PREFIX = {
    CfgType.CFG_REQUEST: "RQ(",
    CfgType.CFG_REPLY: "RP(",
    CfgType.CFG_SET: "S(",
    CfgType.CFG_ACK: "A(",
}
_EAP_CODE = {
    EapCode.REQUEST: "REQ",
    EapCode.RESPONSE: "RES",
    EapCode.SUCCESS: "SUCC",
    EapCode.FAILURE: "FAIL",
}
_EAP_TYPE = {
    EapType.IDENTITY: "ID",
    EapType.NOTIFICATION: "NTF",
    EapType.NAK: "NAK",
    EapType.MD5: "MD5",
    EapType.OTP: "OTP",
    EapType.GTC: "GTC",
    EapType.TLS: "TLS",
    EapType.SIM: "SIM",
    EapType.TTLS: "TTLS",
    EapType.AKA: "AKA",
    EapType.PEAP: "PEAP",
    EapType.MSCHAPV2: "MSCHAPV2",
    EapType.EXPANDED: "EXP",
    EapType.EXPERIMENTAL: "XP",
}


def _named(table: dict[int, str], value: int) -> str:
    return table.get(value, f"({int(value)})")


def notify_short_name(notify_type: int) -> str:
    return _named(NOTIFY_SHORT, notify_type)


# the summary of a payload whose text is its type alone, and of each known notify: a log
# line prints a dozen of them, a lookup each instead of building the same strings again;
# _DETAILED are the payloads whose summary shows their contents (_one)
_DETAILED = (Notify, ExtensibleAuthentication, Configuration, EncryptedFragment)
_FIXED: dict[type, str] = {
    cls: PAYLOAD_SHORT[cls.TYPE] for cls in PAYLOAD_CLASSES if cls not in _DETAILED
}
_NOTIFIES = {int(t): f"N({name})" for t, name in NOTIFY_SHORT.items()}


def _one(p: Payload) -> str:
    text = _FIXED.get(type(p))
    if text is not None:
        return text
    if isinstance(p, UnknownPayload):
        return f"({p.type})"
    if type(p) is Notify:
        return _NOTIFIES.get(p.notify_type) or f"N({notify_short_name(p.notify_type)})"
    text = _named(PAYLOAD_SHORT, p.type)
    if isinstance(p, Notify):
        text += f"({notify_short_name(p.notify_type)})"
    elif isinstance(p, ExtensibleAuthentication) and p.message:
        text += "/" + _named(_EAP_CODE, p.code)
        if p.eap_type is not None:
            text += "/" + _named(_EAP_TYPE, p.eap_type)
    elif isinstance(p, Configuration) and p.attributes:
        names = " ".join(_named(CFG_ATTR_SHORT, a.attr_type) for a in p.attributes)
        text += _CP_PREFIX.get(p.cfg_type, "(") + names + ")"
    elif isinstance(p, EncryptedFragment):
        text += f"({p.number}/{p.total})"
    return text


def payload_summary(payloads: Sequence[Payload]) -> str:
    """``[ SA KE No N(NATD_S_IP) ]``; an empty list gives ``[ ]``."""
    return f"[ {' '.join(map(_one, payloads))} ]" if payloads else "[ ]"


def describe(message: Message, inner: Sequence[Payload] | None = None) -> str:
    """``IKE_AUTH request 4 [ IDi AUTH ... ]``; with ``inner``, those replace the SK payload
    (what charon prints once a message is decrypted), or follow the unprotected payloads of
    a message not yet encrypted (what it prints before encrypting)."""
    payloads = list(message.payloads)
    if inner is not None:
        payloads = (payloads[:-1] if message.sealed is not None else payloads) + list(inner)
    exchange = getattr(message.exchange, "name", f"({message.exchange})")
    kind = "request" if message.is_request else "response"
    return f"{exchange} {kind} {message.message_id} {payload_summary(payloads)}"


class Described:
    """``describe`` deferred to ``str()``: as a log argument it costs nothing at a level that
    is not logged (the summary walks every payload)."""

    __slots__ = ("_inner", "_message")
    _frozen_for_log = True  # a sent or parsed message: pqike.log may format it later

    def __init__(self, message: Message, inner: Sequence[Payload] | None = None) -> None:
        self._message = message
        self._inner = inner

    def __str__(self) -> str:
        return describe(self._message, self._inner)
