"""charon-style payload summaries (strongSwan message.c get_string())."""

from __future__ import annotations

from pqike.wire.iana import (
    CfgAttr,
    CfgType,
    ExchangeType,
    NotifyType,
    PayloadType,
)
from pqike.wire.message import Message
from pqike.wire.payloads import (
    Authentication,
    Certificate,
    CertificateRequest,
    ConfigAttribute,
    Configuration,
    Delete,
    Encrypted,
    EncryptedFragment,
    ExtensibleAuthentication,
    IDi,
    IDr,
    KeyExchange,
    Nonce,
    Notify,
    SecurityAssociation,
    TSi,
    TSr,
    UnknownPayload,
    VendorId,
)
from pqike.wire.summary import describe, notify_short_name, payload_summary


def test_ike_auth_request_like_charon() -> None:
    payloads = [
        IDi(),
        Certificate(),
        Notify(notify_type=NotifyType.INITIAL_CONTACT),
        CertificateRequest(),
        IDr(),
        Authentication(),
        Configuration(
            cfg_type=CfgType.CFG_REQUEST,
            attributes=[
                ConfigAttribute(CfgAttr.INTERNAL_IP4_ADDRESS),
                ConfigAttribute(CfgAttr.INTERNAL_IP4_DNS),
            ],
        ),
        SecurityAssociation(),
        TSi(),
        TSr(),
    ]
    assert (
        payload_summary(payloads)
        == "[ IDi CERT N(INIT_CONTACT) CERTREQ IDr AUTH CPRQ(ADDR DNS) SA TSi TSr ]"
    )


def test_ike_sa_init_like_charon() -> None:
    payloads = [
        SecurityAssociation(),
        KeyExchange(),
        Nonce(data=bytes(32)),
        Notify(notify_type=NotifyType.NAT_DETECTION_SOURCE_IP),
        Notify(notify_type=NotifyType.NAT_DETECTION_DESTINATION_IP),
        Notify(notify_type=NotifyType.IKEV2_FRAGMENTATION_SUPPORTED),
        Notify(notify_type=NotifyType.SIGNATURE_HASH_ALGORITHMS),
        Notify(notify_type=NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED),
        VendorId(),
    ]
    assert (
        payload_summary(payloads)
        == "[ SA KE No N(NATD_S_IP) N(NATD_D_IP) N(FRAG_SUP) N(HASH_ALG) N(IKE_INT_SUP) V ]"
    )


def test_fragments_encrypted_and_others() -> None:
    assert payload_summary([EncryptedFragment(number=2, total=3)]) == "[ EF(2/3) ]"
    assert payload_summary([Encrypted()]) == "[ E ]"
    assert payload_summary([]) == "[ ]"
    assert payload_summary([Delete(), UnknownPayload(payload_type=200)]) == "[ D (200) ]"
    reply = Configuration(cfg_type=CfgType.CFG_REPLY, attributes=[ConfigAttribute(8)])
    assert payload_summary([reply, Configuration(cfg_type=CfgType.CFG_SET)]) == "[ CPRP(ADDR6) CP ]"


def test_notify_names() -> None:
    assert notify_short_name(NotifyType.ADDITIONAL_KEY_EXCHANGE) == "ADD_KE"
    assert notify_short_name(NotifyType.STATE_NOT_FOUND) == "NO_STATE"
    assert notify_short_name(NotifyType.NO_PROPOSAL_CHOSEN) == "NO_PROP"
    assert notify_short_name(NotifyType.CHILDLESS_IKEV2_SUPPORTED) == "CHDLESS_SUP"
    assert notify_short_name(NotifyType.IKEV2_MESSAGE_ID_SYNC_SUPPORTED) == "MSG_ID_SYN_SUP"
    # unnamed values print as charon's enum hook does
    assert payload_summary([Notify(notify_type=NotifyType.CLONE_IKE_SA)]) == "[ N((16433)) ]"


def test_eap() -> None:
    request = ExtensibleAuthentication(message=bytes.fromhex("01010005") + b"\x01")
    success = ExtensibleAuthentication(message=bytes.fromhex("03010004"))
    assert payload_summary([request, success]) == "[ EAP/REQ/ID EAP/SUCC ]"


def test_describe_with_inner_payloads() -> None:
    message = Message(
        bytes(8),
        bytes(8),
        ExchangeType.IKE_INTERMEDIATE,
        2,
        [Encrypted(first_inner=PayloadType.KE)],
        response=True,
    )
    assert describe(message) == "IKE_INTERMEDIATE response 2 [ E ]"
    assert describe(message, [KeyExchange()]) == "IKE_INTERMEDIATE response 2 [ KE ]"
    assert describe(Message(bytes(8), bytes(8), 99, 0)) == "(99) request 0 [ ]"


def test_fixed_summaries_are_looked_up_not_built(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A payload whose summary is its type alone, and a known notify, print from a table
    (a log line has a dozen of them); the text is charon's, as before, and a payload of a
    subclass or an unknown notify type still goes the long way."""
    import pqike.wire.summary as summary

    classes = [SecurityAssociation, KeyExchange, IDi, IDr, Certificate, CertificateRequest]
    classes += [Authentication, Nonce, Delete, VendorId, TSi, TSr, Encrypted]
    expected = {cls: summary.PAYLOAD_SHORT[cls.TYPE] for cls in classes}
    notifies = {t: f"N({summary.NOTIFY_SHORT[t]})" for t in summary.NOTIFY_SHORT}

    def built(*args: object) -> str:
        raise AssertionError("summary built for a fixed payload")

    monkeypatch.setattr(summary, "_named", built)
    monkeypatch.setattr(summary, "notify_short_name", built)
    for cls, text in expected.items():
        assert payload_summary([cls()]) == f"[ {text} ]"
    for ntype, text in notifies.items():
        assert payload_summary([Notify(notify_type=ntype)]) == f"[ {text} ]"
    monkeypatch.undo()

    class Marked(Notify):
        pass

    assert payload_summary([Marked(notify_type=NotifyType.COOKIE)]) == "[ N(COOKIE) ]"
    assert payload_summary([Notify(notify_type=40000)]) == "[ N((40000)) ]"
    assert payload_summary([]) == "[ ]"
