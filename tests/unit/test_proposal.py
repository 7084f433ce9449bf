"""Proposal strings and display form, against strongSwan's own expectations.

Expected display strings come from strongSwan logs (reference 004 walkthrough, reference 001,
the strongSwan 6.1 capture in shared/captures) and from libstrongswan's unit tests
(src/libstrongswan/tests/suites/test_proposal.c create_data).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pqike.proposal import (
    KEYWORDS,
    Proposal,
    ProposalError,
    Transform,
    default_proposals,
    format_proposals,
    keyword_string,
    parse_proposal,
    parse_proposals,
)
from pqike.wire.iana import (
    EncrId,
    EsnId,
    IntegId,
    KeMethod,
    PrfId,
    ProtocolId,
    TransformType,
)

IKE, ESP, AH = ProtocolId.IKE, ProtocolId.ESP, ProtocolId.AH

DISPLAY = [
    # reference 004 (pq-strongswan walkthrough), moon and carol
    (
        IKE,
        "aes256-sha256-x25519-modp3072-ke1_kyber3-ke1_frodoa3-ke2_bike3-ke2_hqc3-ke3_hqc3-"
        "ke3_none-ke4_hqc5-ke4_none",
        "IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519/MODP_3072/"
        "KE1_KYBER_L3/KE1_FRODO_AES_L3/KE2_BIKE_L3/KE2_HQC_L3/KE3_HQC_L3/KE3_KE_NONE/"
        "KE4_HQC_L5/KE4_KE_NONE",
    ),
    (
        IKE,
        "aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3",
        "IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519/KE1_KYBER_L3/"
        "KE2_BIKE_L3/KE3_HQC_L3",
    ),
    (
        ESP,
        "aes256-sha256-modp3072-ke1_frodoa3-ke2_bike3",
        "ESP:AES_CBC_256/HMAC_SHA2_256_128/MODP_3072/NO_EXT_SEQ/KE1_FRODO_AES_L3/KE2_BIKE_L3",
    ),
    # strongSwan 6.1 capture (carol's level-4 log)
    (
        IKE,
        "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke3_mlkem512",
        "IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519/KE1_ML_KEM_768/"
        "KE2_ML_KEM_1024/KE3_ML_KEM_512",
    ),
    (
        ESP,
        "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024",
        "ESP:AES_CBC_256/HMAC_SHA2_256_128/CURVE_25519/NO_EXT_SEQ/KE1_ML_KEM_768/KE2_ML_KEM_1024",
    ),
    # strongSwan testing/tests/*/rw-mlkem
    (
        IKE,
        "aes128-sha256-ecp384-ke1_mlkem768",
        "IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/ECP_384/KE1_ML_KEM_768",
    ),
    (
        IKE,
        "aes128-sha256-ecp384-ecp521-ke1_mlkem768-ke1_mlkem1024-ke1_mlkem512-ke1_none",
        "IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/ECP_384/ECP_521/KE1_ML_KEM_768/"
        "KE1_ML_KEM_1024/KE1_ML_KEM_512/KE1_KE_NONE",
    ),
    (
        IKE,
        "aes256gcm16-prfsha384-ecp384-ke1_mlkem1024",
        "IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384/KE1_ML_KEM_1024",
    ),
    # libstrongswan test_proposal.c create_data
    (IKE, "null-sha256-modp3072", "IKE:NULL/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_3072"),
    (
        IKE,
        "aes128-sha256-modp3072",
        "IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_3072",
    ),
    (
        IKE,
        "aes128-sha256-prfsha384-modp3072",
        "IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_384/MODP_3072",
    ),
    (IKE, "aes128gcm16-prfsha256-modp3072", "IKE:AES_GCM_16_128/PRF_HMAC_SHA2_256/MODP_3072"),
    (IKE, "aes128gcm16-sha256-modp3072", "IKE:AES_GCM_16_128/PRF_HMAC_SHA2_256/MODP_3072"),
    (IKE, "chacha20poly1305-prfsha256-ecp256", "IKE:CHACHA20_POLY1305/PRF_HMAC_SHA2_256/ECP_256"),
    (ESP, "aes128-sha256", "ESP:AES_CBC_128/HMAC_SHA2_256_128/NO_EXT_SEQ"),
    (ESP, "aes128-sha256-esn", "ESP:AES_CBC_128/HMAC_SHA2_256_128/EXT_SEQ"),
    (ESP, "aes128-sha256-noesn", "ESP:AES_CBC_128/HMAC_SHA2_256_128/NO_EXT_SEQ"),
    (ESP, "aes128-sha256-esn-noesn", "ESP:AES_CBC_128/HMAC_SHA2_256_128/EXT_SEQ/NO_EXT_SEQ"),
    (
        ESP,
        "aes128-sha256-prfsha256-modp3072",
        "ESP:AES_CBC_128/HMAC_SHA2_256_128/MODP_3072/NO_EXT_SEQ",
    ),
    (ESP, "aes128gmac", "ESP:NULL_AES_GMAC_128/NO_EXT_SEQ"),
    (AH, "aes128-sha256", "AH:HMAC_SHA2_256_128/NO_EXT_SEQ"),
    (AH, "sha256-sha1", "AH:HMAC_SHA2_256_128/HMAC_SHA1_96/NO_EXT_SEQ"),
    (AH, "aes128gmac-sha256", "AH:AES_128_GMAC/HMAC_SHA2_256_128/NO_EXT_SEQ"),
    (AH, "aes128gmac-sha256-prfsha256", "AH:AES_128_GMAC/HMAC_SHA2_256_128/NO_EXT_SEQ"),
    (
        AH,
        "aes128gmac-aes256gmac-aes128-sha256",
        "AH:AES_128_GMAC/AES_256_GMAC/HMAC_SHA2_256_128/NO_EXT_SEQ",
    ),
    (AH, "sha256-esn", "AH:HMAC_SHA2_256_128/EXT_SEQ"),
    (AH, "sha256-esn-noesn", "AH:HMAC_SHA2_256_128/EXT_SEQ/NO_EXT_SEQ"),
    # more keywords
    (
        ESP,
        "aes256gcm-aes128gcm64-aes192ccm96",
        "ESP:AES_GCM_16_256/AES_GCM_8_128/AES_CCM_12_192/NO_EXT_SEQ",
    ),
    (ESP, "aes128gcm16-sha256", "ESP:AES_GCM_16_128/NO_EXT_SEQ"),
    (
        ESP,
        "aes128ctr-camellia256-3des-sha1-sha256_96-aesxcbc-aescmac-md5",
        "ESP:AES_CTR_128/CAMELLIA_CBC_256/3DES_CBC/HMAC_SHA1_96/HMAC_SHA2_256_96/AES_XCBC_96/"
        "AES_CMAC_96/HMAC_MD5_96/NO_EXT_SEQ",
    ),
    (
        IKE,
        "aes256-sha512-sha384-aesxcbc-ecp256",
        "IKE:AES_CBC_256/HMAC_SHA2_512_256/HMAC_SHA2_384_192/AES_XCBC_96/PRF_HMAC_SHA2_512/"
        "PRF_HMAC_SHA2_384/PRF_AES128_XCBC/ECP_256",
    ),
    (
        IKE,
        "aes256-sha256-prfaescmac-prfmd5-prfsha1-ecp256-KE1_x448",
        None,
    ),
    (
        ESP,
        "aes256-sha256-modp2048-none",
        "ESP:AES_CBC_256/HMAC_SHA2_256_128/MODP_2048/KE_NONE/NO_EXT_SEQ",
    ),
]


@pytest.mark.parametrize(("proto", "text", "expected"), [d for d in DISPLAY if d[2]])
def test_display_form(proto: ProtocolId, text: str, expected: str) -> None:
    assert str(parse_proposal(proto, text)) == expected


@pytest.mark.parametrize(("proto", "text", "_expected"), DISPLAY)
def test_keyword_round_trip(proto: ProtocolId, text: str, _expected: str | None) -> None:
    p = parse_proposal(proto, text)
    assert parse_proposal(proto, keyword_string(p)) == p


def test_reference_esp_multiple_and_list_format() -> None:
    ps = parse_proposals(
        ESP,
        "aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3-ke3_none-ke4_hqc5-ke4_none, "
        "aes256-sha256-modp3072-ke1_frodoa3-ke2_bike3",
    )
    assert len(ps) == 2
    assert format_proposals(ps) == (
        "ESP:AES_CBC_256/HMAC_SHA2_256_128/CURVE_25519/NO_EXT_SEQ/KE1_KYBER_L3/KE2_BIKE_L3/"
        "KE3_HQC_L3/KE3_KE_NONE/KE4_HQC_L5/KE4_KE_NONE, "
        "ESP:AES_CBC_256/HMAC_SHA2_256_128/MODP_3072/NO_EXT_SEQ/KE1_FRODO_AES_L3/KE2_BIKE_L3"
    )


def test_reference_001_configured_line() -> None:
    # the configured proposals a strongSwan logged in reference 001 (PFS mismatch on rekey)
    ps = parse_proposals(
        ESP, ["aes128-sha1", "3des-sha1", "aes128-aes192-aes256-3des-blowfish256-sha1-aesxcbc-md5"]
    )
    assert format_proposals(ps) == (
        "ESP:AES_CBC_128/HMAC_SHA1_96/NO_EXT_SEQ, ESP:3DES_CBC/HMAC_SHA1_96/NO_EXT_SEQ, "
        "ESP:AES_CBC_128/AES_CBC_192/AES_CBC_256/3DES_CBC/BLOWFISH_CBC_256/HMAC_SHA1_96/"
        "AES_XCBC_96/HMAC_MD5_96/NO_EXT_SEQ"
    )


def test_model_values() -> None:
    p = parse_proposal(IKE, "aes256gcm-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024-ke2_none")
    assert p.first(TransformType.ENCR) == Transform(TransformType.ENCR, EncrId.AES_GCM_16, 256)
    assert p.ids(TransformType.PRF) == (PrfId.HMAC_SHA2_384,)
    assert p.ids(TransformType.ADDKE2) == (KeMethod.ML_KEM_1024, KeMethod.NONE)
    assert p.has_additional_ke
    assert not parse_proposal(IKE, "aes256-sha256-x25519-ke1_none").has_additional_ke
    assert p.number == 0 and p.spi == b""
    chacha = parse_proposal(IKE, "chacha20poly1305-prfsha256-ecp256").first(TransformType.ENCR)
    assert chacha is not None and chacha.key_length is None
    compat = parse_proposal(ESP, "chacha20poly1305compat").first(TransformType.ENCR)
    assert compat is not None and compat.key_length == 256
    esp = parse_proposal(ESP, "aes128-sha256")
    assert esp.ids(TransformType.ESN) == (EsnId.NO_EXT_SEQ,)
    assert esp.ids(TransformType.INTEG) == (IntegId.HMAC_SHA2_256_128,)


def test_spaces_and_ke_prefix_case() -> None:
    # enumerator_create_token(algs, "-", " ") trims spaces; ke<n>_ is matched case-insensitively
    a = parse_proposal(IKE, " aes256 - sha256 -x25519-KE1_mlkem768 ")
    assert str(a) == (
        "IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519/KE1_ML_KEM_768"
    )


def test_unknown_ids_and_types_print_like_strongswan() -> None:
    # test_proposal.c test_unknown_transform_types_print, and enum printf hook "(%d)"
    p = Proposal(
        IKE,
        (
            Transform(TransformType.ENCR, EncrId.AES_CBC, 128),
            Transform(TransformType.KE, 4242),
            Transform(242, 42, 128),
            Transform(243, 1),
        ),
    )
    assert str(p) == "IKE:AES_CBC_128/(4242)/UNKNOWN_242_42_128/UNKNOWN_243_1"


def test_wire_order() -> None:
    p = parse_proposal(ESP, "aes256-sha256-esn-modp3072-ke1_mlkem768")
    assert [t.type for t in p.in_wire_order()] == [
        TransformType.ENCR,
        TransformType.INTEG,
        TransformType.KE,
        TransformType.ADDKE1,
        TransformType.ESN,
    ]


ERRORS = [
    # (protocol, string, offending token, words expected in the reason)
    (IKE, "", "", "empty"),
    (IKE, "aes257-sha256-ecp256", "aes257", "not recognized"),
    (IKE, "aes256--sha256-ecp256", "", "stray"),
    (IKE, "AES256-sha256-ecp256", "AES256", "case-sensitive"),
    (IKE, "aes256-sha256-ecp256-ke8_mlkem768", "ke8_mlkem768", "ke1_ .. ke7_"),
    (IKE, "aes256-sha256-ecp256-ke0_mlkem768", "ke0_mlkem768", "ke1_ .. ke7_"),
    (IKE, "aes256-sha256-ecp256-ke1_aes128", "ke1_aes128", "not a key exchange"),
    (IKE, "aes256-sha256-ecp256-ke1_ke1_mlkem768", "ke1_ke1_mlkem768", "not a key exchange"),
    (IKE, "aes256-sha256-ecp256-mlkem999", "mlkem999", "not recognized"),
    (IKE, "serpent-sha256-ecp256", "serpent", "without an ID"),
    # check_proposal() refusals name the whole proposal
    (IKE, "sha256", "sha256", "key exchange method"),  # PRF derived from sha256 first
    (IKE, "aes256-sha256-ke1_mlkem768", "aes256-sha256-ke1_mlkem768", "key exchange method"),
    (IKE, "sha256-modp3072", "sha256-modp3072", "encryption"),
    (IKE, "aes128", "aes128", "PRF"),
    (IKE, "aes128-sha256", "aes128-sha256", "key exchange method"),
    (IKE, "aes128-sha256-none", "aes128-sha256-none", "key exchange method"),
    (IKE, "aes128-prfsha256", "aes128-prfsha256", "key exchange method"),
    (IKE, "aes128-prfsha256-modp2048", "aes128-prfsha256-modp2048", "integrity"),
    (IKE, "aes128gcm16-modp3072", "aes128gcm16-modp3072", "PRF"),
    (IKE, "aes128gcm16-aes128-modp3072", "aes128gcm16-aes128-modp3072", "PRF"),
    (IKE, "aes128gcm16-aes128-sha256-modp3072", "aes128gcm16-aes128-sha256-modp3072", "AEAD"),
    (ESP, "", "", "empty"),
    (ESP, "sha256", "sha256", "encryption"),
    (ESP, "aes128gcm16-aes128-sha256-modp3072", "aes128gcm16-aes128-sha256-modp3072", "AEAD"),
    (AH, "aes128", "aes128", "integrity"),
]


@pytest.mark.parametrize(("proto", "text", "token", "why"), ERRORS)
def test_errors_name_token(proto: ProtocolId, text: str, token: str, why: str) -> None:
    with pytest.raises(ProposalError) as info:
        parse_proposal(proto, text)
    assert info.value.token == token
    assert why in info.value.reason
    assert repr(token) in str(info.value)


def test_aead_mixing_error_names_both() -> None:
    with pytest.raises(ProposalError) as info:
        parse_proposal(ESP, "aes256-aes256gcm16-sha256")
    assert "AES_CBC_256" in info.value.reason and "AES_GCM_16_256" in info.value.reason


def test_default_expansion() -> None:
    ike = parse_proposals(IKE, "default")
    assert len(ike) == 2  # classic first, then AEAD (vici_config.c add_default_proposals)
    assert not any(t.id in (EncrId.AES_GCM_16,) for t in ike[0].of_type(TransformType.ENCR))
    assert ike[1].first(TransformType.ENCR) == Transform(TransformType.ENCR, EncrId.AES_GCM_16, 128)
    assert not ike[1].of_type(TransformType.INTEG)
    esp = parse_proposals(ESP, "aes256-sha256, default")
    assert str(esp[1]).startswith("ESP:AES_GCM_16_128/AES_GCM_16_192/AES_GCM_16_256/")
    assert esp[1].ids(TransformType.KE)[-1] == KeMethod.NONE  # PFS optional
    assert str(esp[2]).startswith("ESP:AES_CBC_128/AES_CBC_192/AES_CBC_256/HMAC_SHA2_256_128")
    assert len(parse_proposals(AH, "DEFAULT")) == 1


def test_default_filtered_by_support() -> None:
    allowed = {EncrId.AES_CBC, EncrId.AES_GCM_16}

    def supported(t: Transform) -> bool:
        return t.type != TransformType.ENCR or t.id in allowed

    ike = default_proposals(IKE, supported=supported)
    encrs = {t.id for p in ike for t in p.of_type(TransformType.ENCR)}
    assert encrs == allowed
    # nothing left for the AEAD proposal: it is dropped, not emitted empty
    only_cbc = default_proposals(
        IKE,
        supported=lambda t: (
            t.id != EncrId.AES_GCM_16 and (t.type != TransformType.ENCR or t.id == EncrId.AES_CBC)
        ),
    )
    assert len(only_cbc) == 1


_WORDS = sorted(KEYWORDS)


@given(st.lists(st.sampled_from(_WORDS), min_size=1, max_size=8), st.sampled_from([IKE, ESP, AH]))
def test_parse_is_total(words: list[str], proto: ProtocolId) -> None:
    """Any keyword sequence either parses to a proposal that round-trips, or is refused with
    a ProposalError; nothing else escapes."""
    text = "-".join(words)
    try:
        p = parse_proposal(proto, text)
    except ProposalError:
        return
    assert parse_proposal(proto, keyword_string(p)) == p
    assert str(p).startswith(proto.name + ":")
