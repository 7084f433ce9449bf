"""Proposal selection (RFC 7296 §2.7, RFC 9370 §2.2.1), diagnosis and the initiator check.

The pair and list tables are libstrongswan's (tests/suites/test_proposal.c select_data and
select_proposal_data); the reference cases come from shared/reference and shared/captures.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pqike.proposal import (
    KEYWORDS,
    MismatchKind,
    NoProposalChosen,
    PrivateUseRefused,
    Proposal,
    ProposalError,
    Transform,
    check_selected,
    diagnose,
    is_ke_type,
    parse_proposal,
    parse_proposals,
    select_proposal,
    strip_ke,
)
from pqike.wire.iana import ADDKE_TYPES, KeMethod, ProtocolId, TransformType

IKE, ESP = ProtocolId.IKE, ProtocolId.ESP
T = TransformType


def numbered(ps: Sequence[Proposal], spi: bytes = b"") -> list[Proposal]:
    """As received from the wire: numbered 1.. in order."""
    return [Proposal(p.protocol, p.transforms, number=i + 1, spi=spi) for i, p in enumerate(ps)]


def pair(proto: ProtocolId, self_: str, other: str, **kw: bool) -> Proposal | None:
    """proposal.c self->select(other): self is the preferred side (our configured one)."""
    try:
        return select_proposal([parse_proposal(proto, other)], [parse_proposal(proto, self_)], **kw)
    except NoProposalChosen:
        return None


SKIP_KE = {"strip_ke": True}
SELECT_DATA: list[tuple[ProtocolId, str, str, str | None, dict[str, bool]]] = [
    (ESP, "aes128", "aes128", "aes128", {}),
    (ESP, "aes128", "aes256", None, {}),
    (ESP, "aes128-aes256", "aes256-aes128", "aes128", {}),
    (ESP, "aes256-aes128", "aes128-aes256", "aes256", {}),
    (ESP, "aes128-aes256-sha1-sha256", "aes256-aes128-sha256-sha1", "aes128-sha1", {}),
    (ESP, "aes256-aes128-sha256-sha1", "aes128-aes256-sha1-sha256", "aes256-sha256", {}),
    (ESP, "aes128-sha256-modp3072", "aes128-sha256", None, {}),
    (ESP, "aes128-sha256-modp3072", "aes128-sha256", "aes128-sha256", SKIP_KE),
    (ESP, "aes128-sha256", "aes128-sha256-modp3072", None, {}),
    (ESP, "aes128-sha256", "aes128-sha256-modp3072", "aes128-sha256", SKIP_KE),
    (ESP, "aes128-sha256-modp3072", "aes128-sha256-modp3072", "aes128-sha256", SKIP_KE),
    (ESP, "aes128-sha256-modp3072", "aes128-sha256-ecp256", "aes128-sha256", SKIP_KE),
    (ESP, "aes128-sha256-modp3072", "aes128-sha256-none", None, {}),
    (ESP, "aes128-sha256-none", "aes128-sha256-modp3072", None, {}),
    (ESP, "aes128-sha256-modp3072-none", "aes128-sha256", "aes128-sha256", {}),
    (ESP, "aes128-sha256", "aes128-sha256-modp3072-none", "aes128-sha256", {}),
    (
        ESP,
        "aes128-sha256-modp3072-none",
        "aes128-sha256-none-modp3072",
        "aes128-sha256-modp3072",
        {},
    ),
    (ESP, "aes128-sha256-none-modp3072", "aes128-sha256-modp3072-none", "aes128-sha256", {}),
    (ESP, "aes128-sha256-esn", "aes128-sha256-esn", "aes128-sha256-esn", {}),
    (ESP, "aes128-sha256-noesn", "aes128-sha256-esn", None, {}),
    (ESP, "aes128-sha256-noesn-esn", "aes128-sha256-esn", "aes128-sha256-esn", {}),
    (ESP, "aes128-sha256-noesn-esn", "aes128-sha256", "aes128-sha256", {}),
    (ESP, "aes128-sha256-esn-noesn", "aes128-sha256-noesn-esn", "aes128-sha256-esn", {}),
    (IKE, "aes128-sha256-modp3072", "aes128-sha256-modp3072", "aes128-sha256-modp3072", {}),
    (IKE, "aes128-sha256-modp3072", "aes128-sha256-modp3072-none", "aes128-sha256-modp3072", {}),
    (IKE, "aes128-sha256-modp3072-none", "aes128-sha256-modp3072", "aes128-sha256-modp3072", {}),
    (IKE, "aes128-sha256-modp3072-ke1_modp3072", "aes128-sha256-modp3072-ke1_modp3072", None, {}),
    (
        IKE,
        "aes128-sha256-modp3072-ecp256-ecp384-ke1_modp3072-ke1_ecp256-ke1_ecp384-"
        "ke2_modp3072-ke2_ecp256-ke2_ecp384",
        "aes128-sha256-modp3072-ecp256-ecp384-ke1_modp3072-ke1_ecp256-ke1_ecp384-"
        "ke2_modp3072-ke2_ecp256-ke2_ecp384",
        "aes128-sha256-modp3072-ke1_ecp256-ke2_ecp384",
        {},
    ),
    (
        IKE,
        "aes128-sha256-modp3072-ke1_modp3072-ke1_none",
        "aes128-sha256-modp3072-ke1_modp3072-ke1_none",
        "aes128-sha256-modp3072",
        {},
    ),
    (
        IKE,
        "aes128-sha256-modp3072-ke1_modp3072-ke1_none-ke2_modp3072-ke2_none",
        "aes128-sha256-modp3072-ke1_modp3072-ke1_none-ke2_modp3072-ke2_none",
        "aes128-sha256-modp3072",
        {},
    ),
    (
        IKE,
        "aes128-sha256-modp3072-ke1_modp3072-ke1_ecp256",
        "aes128-sha256-modp3072-ke1_modp3072-ke1_ecp256",
        "aes128-sha256-modp3072-ke1_ecp256",
        {},
    ),
    (
        IKE,
        "aes128-sha256-modp3072-ke1_modp3072-ke1_ecp256",
        "aes128-sha256-modp3072-ke1_ecp256",
        "aes128-sha256-modp3072-ke1_ecp256",
        {},
    ),
    (
        IKE,
        "aes128-sha256-modp3072-ke1_ecp256",
        "aes128-sha256-modp3072-ke1_modp3072-ke1_ecp256",
        "aes128-sha256-modp3072-ke1_ecp256",
        {},
    ),
    (
        IKE,
        "aes128-sha256-ecp256-ke1_modp3072",
        "aes128-sha256-modp3072-ecp256-ke1_ecp256-ke2_ecp384",
        None,
        {},
    ),
]


@pytest.mark.parametrize(("proto", "self_", "other", "expected", "flags"), SELECT_DATA)
def test_strongswan_select_data(
    proto: ProtocolId, self_: str, other: str, expected: str | None, flags: dict[str, bool]
) -> None:
    got = pair(proto, self_, other, **flags)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert got.transforms == parse_proposal(proto, expected).transforms
    # test_matches: success does not depend on which side is preferred
    for a, b, prefer in itertools.product((self_, other), (self_, other), (True, False)):
        if {a, b} == {self_, other} and a != b:
            assert (pair(proto, a, b, prefer_configured=prefer, **flags) is None) == (
                expected is None
            )


SELECT_PROPOSAL_DATA: list[tuple[list[str], list[str], str | None, dict[str, bool]]] = [
    ([], [], None, {}),
    (["aes128"], [], None, {}),
    ([], ["aes128"], None, {}),
    (["aes128"], ["aes256"], None, {}),
    (["aes128"], ["aes128"], "aes128", {}),
    (["aes128", "aes256"], ["aes256", "aes128"], "aes128", {}),
    (["aes128", "aes256"], ["aes256", "aes128"], "aes256", {"prefer_configured": False}),
    (["aes128-modp1024", "aes256-modp1024"], ["aes256-modp2048", "aes128-modp2048"], None, {}),
    (
        ["aes128-modp1024", "aes256-modp1024"],
        ["aes256-modp2048", "aes128-modp2048"],
        "aes128",
        SKIP_KE,
    ),
    (
        ["aes128-modp1024", "aes256-modp1024"],
        ["aes256-modp2048", "aes128-modp2048"],
        "aes256",
        {"prefer_configured": False, "strip_ke": True},
    ),
]


@pytest.mark.parametrize(("configured", "received", "expected", "flags"), SELECT_PROPOSAL_DATA)
def test_strongswan_select_proposal_data(
    configured: list[str], received: list[str], expected: str | None, flags: dict[str, bool]
) -> None:
    cfg = [parse_proposal(ESP, c) for c in configured]
    rx = numbered([parse_proposal(ESP, r) for r in received], spi=b"\x12\x34\x56\x78")
    if expected is None:
        with pytest.raises(NoProposalChosen):
            select_proposal(rx, cfg, **flags)
        return
    got = select_proposal(rx, cfg, **flags)
    assert got.transforms == parse_proposal(ESP, expected).transforms
    # number and SPI always come from the received proposal it matched
    src = next(r for r in rx if r.number == got.number)
    assert got.spi == src.spi
    assert set(got.transforms) <= set(src.transforms)


def test_unknown_transform_types() -> None:
    base = parse_proposal(IKE, "aes128-sha256-ecp256")
    extra = Proposal(IKE, (*base.transforms, Transform(242, 42, 128)))
    both = Proposal(IKE, (*base.transforms, Transform(242, 42, 128), Transform(242, 1)))
    with pytest.raises(NoProposalChosen):
        select_proposal([extra], [base])
    other_id = Proposal(IKE, (*base.transforms, Transform(242, 8)))
    with pytest.raises(NoProposalChosen):
        select_proposal([extra], [other_id])
    got = select_proposal([both], [extra])
    assert str(got) == (
        "IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/ECP_256/UNKNOWN_242_42_128"
    )


# --- reference cases ---------------------------------------------------------------------

MOON_IKE = (
    "aes256-sha256-x25519-modp3072-ke1_kyber3-ke1_frodoa3-ke2_bike3-ke2_hqc3-ke3_hqc3-ke3_none-"
    "ke4_hqc5-ke4_none"
)
CAROL_IKE = "aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3"


@pytest.mark.parametrize("prefer", [True, False])
def test_reference_walkthrough_ike(prefer: bool) -> None:
    got = select_proposal(
        numbered(parse_proposals(IKE, CAROL_IKE)),
        parse_proposals(IKE, MOON_IKE),
        prefer_configured=prefer,
    )
    assert str(got) == (
        "IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519/KE1_KYBER_L3/"
        "KE2_BIKE_L3/KE3_HQC_L3"
    )
    assert [t.id for t in got.key_exchanges] == [
        KeMethod.CURVE_25519,
        KeMethod.KYBER_L3,
        KeMethod.BIKE_L3,
        KeMethod.HQC_L3,
    ]
    # carol, as initiator, accepts moon's answer
    assert check_selected(numbered(parse_proposals(IKE, CAROL_IKE)), got) == got


def test_reference_walkthrough_esp() -> None:
    moon_net = "aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3-ke3_none-ke4_hqc5-ke4_none"
    carol_net = "aes256-sha256-x25519-ke1_kyber3-ke2_bike3-ke3_hqc3"
    got = select_proposal(
        numbered(parse_proposals(ESP, carol_net)),
        parse_proposals(ESP, moon_net),
        prefer_configured=False,
    )
    assert str(got) == (
        "ESP:AES_CBC_256/HMAC_SHA2_256_128/CURVE_25519/NO_EXT_SEQ/KE1_KYBER_L3/KE2_BIKE_L3/"
        "KE3_HQC_L3"
    )
    host = "aes256-sha256-modp3072-ke1_frodoa3-ke2_bike3"
    got = select_proposal(numbered(parse_proposals(ESP, host)), parse_proposals(ESP, host))
    assert str(got) == (
        "ESP:AES_CBC_256/HMAC_SHA2_256_128/MODP_3072/NO_EXT_SEQ/KE1_FRODO_AES_L3/KE2_BIKE_L3"
    )
    # in IKE_AUTH the same CHILD_SA is created without any key exchange (reference log 567)
    offered = strip_ke(parse_proposals(ESP, host))
    got = select_proposal(numbered(offered), parse_proposals(ESP, host), strip_ke=True)
    assert str(got) == "ESP:AES_CBC_256/HMAC_SHA2_256_128/NO_EXT_SEQ"


def test_capture_ike_auth_child() -> None:
    # strongSwan 6.1 capture: carol sends stripped proposals in IKE_AUTH, moon selects
    configured = parse_proposals(ESP, "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem1024")
    sent = strip_ke(configured)
    assert [str(p) for p in sent] == ["ESP:AES_CBC_256/HMAC_SHA2_256_128/NO_EXT_SEQ"]
    got = select_proposal(numbered(sent), configured, strip_ke=True)
    assert str(got) == "ESP:AES_CBC_256/HMAC_SHA2_256_128/NO_EXT_SEQ"
    # a peer that leaves KE in its IKE_AUTH proposal: KE is ignored, as strongSwan does
    got = select_proposal(numbered(configured), configured, strip_ke=True)
    assert str(got) == "ESP:AES_CBC_256/HMAC_SHA2_256_128/NO_EXT_SEQ"


def test_strip_ke_dedups() -> None:
    ps = parse_proposals(ESP, "aes256-sha256-modp3072, aes256-sha256-ecp256, aes128-sha256")
    assert [str(p) for p in strip_ke(ps)] == [
        "ESP:AES_CBC_256/HMAC_SHA2_256_128/NO_EXT_SEQ",
        "ESP:AES_CBC_128/HMAC_SHA2_256_128/NO_EXT_SEQ",
    ]


# --- PFS mismatch and other diagnoses ------------------------------------------------------


def test_pfs_mismatch_we_require_ke() -> None:
    rx = numbered(parse_proposals(ESP, "aes256-sha256"))
    cfg = parse_proposals(ESP, "aes256-sha256-modp3072")
    with pytest.raises(NoProposalChosen) as info:
        select_proposal(rx, cfg)
    d = info.value.diagnosis
    assert d.pfs_mismatch
    lines = d.log_lines()
    assert lines[0] == "received proposals: ESP:AES_CBC_256/HMAC_SHA2_256_128/NO_EXT_SEQ"
    assert lines[1] == (
        "configured proposals: ESP:AES_CBC_256/HMAC_SHA2_256_128/MODP_3072/NO_EXT_SEQ"
    )
    assert lines[2] == (
        "no acceptable proposal found: KE (PFS group) mismatch: peer offered no KE transform, "
        "we require MODP_3072"
    )
    assert d.hint is not None and "rekey" in d.hint
    assert d.pairs[0].first.kind is MismatchKind.ABSENT
    # the same pair passes in IKE_AUTH, which is why the CHILD_SA came up in the first place
    assert diagnose(rx, cfg, strip_ke=True) is None


def test_pfs_mismatch_reference_001_peer_requires_ke() -> None:
    # the SRX rekeys with MODP_1024, strongSwan has no PFS configured
    rx = numbered(parse_proposals(ESP, "aes128-sha1-modp1024"))
    cfg = parse_proposals(
        ESP, "aes128-sha1, 3des-sha1, aes128-aes192-aes256-3des-blowfish256-sha1-aesxcbc-md5"
    )
    d = diagnose(rx, cfg)
    assert d is not None and d.pfs_mismatch
    assert d.reason == (
        "KE (PFS group) mismatch: peer requires MODP_1024, we have no KE configured (no PFS) "
        "and it did not offer NONE"
    )
    assert (
        d.log_lines()[0] == "received proposals: ESP:AES_CBC_128/HMAC_SHA1_96/MODP_1024/NO_EXT_SEQ"
    )
    assert [p.configured_index for p in d.pairs] == [0, 1, 2]
    assert "ENCR: received AES_CBC_128, configured 3DES_CBC" in str(d.pairs[1])


def test_pfs_group_differs() -> None:
    d = diagnose(
        numbered(parse_proposals(ESP, "aes256-sha256-modp2048")),
        parse_proposals(ESP, "aes256-sha256-x25519"),
    )
    assert d is not None and d.pfs_mismatch
    assert d.reason == ("KE (PFS group) mismatch: peer offered MODP_2048, we require CURVE_25519")


def test_ike_ke_mismatch_is_not_pfs() -> None:
    d = diagnose(
        numbered(parse_proposals(IKE, "aes256-sha256-modp2048")),
        parse_proposals(IKE, "aes256-sha256-x25519"),
    )
    assert d is not None and not d.pfs_mismatch and d.hint is None
    assert d.reason == "KE: received MODP_2048, configured CURVE_25519"


def test_addke_absent_without_none() -> None:
    d = diagnose(
        numbered(parse_proposals(IKE, "aes256-sha256-x25519")),
        parse_proposals(IKE, "aes256-sha256-x25519-ke1_mlkem768"),
    )
    assert d is not None
    assert d.reason == "ADDKE1: received none, configured ML_KEM_768 (no NONE offered)"


def test_addke_only_repeated_methods() -> None:
    d = diagnose(
        numbered(parse_proposals(IKE, "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem768")),
        parse_proposals(IKE, "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem768"),
    )
    assert d is not None
    assert d.pairs[0].first.type == T.ADDKE2
    assert d.pairs[0].first.kind is MismatchKind.REPEATED
    assert "RFC 9370" in d.reason


def test_diagnosis_lists_every_pair_and_picks_closest() -> None:
    rx = numbered(parse_proposals(IKE, "aes128-sha1-modp2048, aes256-sha256-ecp256"))
    cfg = parse_proposals(IKE, "aes256-sha256-x25519, 3des-md5-modp1024")
    d = diagnose(rx, cfg)
    assert d is not None
    assert len(d.pairs) == 4
    assert d.closest is not None
    assert (d.closest.received_index, d.closest.configured_index) == (1, 0)
    assert d.reason == "KE: received ECP_256, configured CURVE_25519"
    assert str(d).count("\n  received #") == 4


def test_protocol_mismatch_and_empty() -> None:
    d = diagnose(
        numbered(parse_proposals(ESP, "aes128-sha1")), [parse_proposal(ProtocolId.AH, "sha1")]
    )
    assert d is not None and d.pairs[0].first.kind is MismatchKind.PROTOCOL
    assert d.reason == "protocol: received ESP, configured AH"
    e = diagnose([], parse_proposals(ESP, "aes128"))
    assert e is not None and e.reason == "peer sent no proposals"


def test_skip_private() -> None:
    cfg = parse_proposals(IKE, "aes256-sha256-x25519-ke1_kyber3-ke1_mlkem768")
    rx = numbered(parse_proposals(IKE, "aes256-sha256-x25519-ke1_kyber3-ke1_mlkem768"))
    assert select_proposal(rx, cfg).first(T.ADDKE1) == Transform(T.ADDKE1, KeMethod.KYBER_L3)
    got = select_proposal(rx, cfg, skip_private=True)
    assert got.first(T.ADDKE1) == Transform(T.ADDKE1, KeMethod.ML_KEM_768)
    only_private = numbered(parse_proposals(IKE, "aes256-sha256-x25519-ke1_kyber3"))
    d = diagnose(only_private, cfg, skip_private=True)
    assert d is not None and d.pairs[0].first.kind is MismatchKind.PRIVATE
    assert "peer sent no strongSwan vendor ID" in d.reason


def test_private_skipped_callback_names_what_would_have_matched() -> None:
    # strongSwan logs PRIVATE_SKIPPED_LOG where select_algo() skips a match; here the
    # caller is told which transform, on success (a public fallback) and on failure
    cfg = parse_proposals(IKE, "aes256-sha256-x25519-ke1_kyber3-ke1_mlkem768-ke2_bike3-ke2_none")
    rx = numbered(cfg)
    seen: list[Transform] = []
    got = select_proposal(rx, cfg, skip_private=True, on_private_skipped=seen.append)
    assert [str(t) for t in got.key_exchanges] == ["CURVE_25519", "KE1_ML_KEM_768"]
    assert [str(t) for t in seen] == ["KE1_KYBER_L3", "KE2_BIKE_L3"]
    seen.clear()
    assert select_proposal(rx, cfg, on_private_skipped=seen.append).first(T.ADDKE2) is not None
    assert seen == []  # not skipping: not called
    with pytest.raises(NoProposalChosen):
        select_proposal(
            numbered(parse_proposals(ESP, "aes256-sha256-frodoa3")),
            parse_proposals(ESP, "aes256-sha256-frodoa3"),
            skip_private=True,
            on_private_skipped=seen.append,
        )
    assert [str(t) for t in seen] == ["FRODO_AES_L3"]


def test_check_selected_refuses_private_choice_when_asked() -> None:
    offered = parse_proposals(IKE, "aes256-sha256-x25519-ke1_kyber3-ke1_mlkem768")
    kyber = parse_proposal(IKE, "aes256-sha256-x25519-ke1_kyber3")
    chosen = Proposal(IKE, kyber.transforms, number=1)
    assert check_selected(offered, chosen).first(T.ADDKE1) == Transform(T.ADDKE1, KeMethod.KYBER_L3)
    with pytest.raises(PrivateUseRefused) as e:
        check_selected(offered, chosen, skip_private=True)
    assert e.value.token == "KE1_KYBER_L3" and "strongSwan vendor ID" in e.value.reason
    public = Proposal(
        IKE, parse_proposal(IKE, "aes256-sha256-x25519-ke1_mlkem768").transforms, number=1
    )
    assert check_selected(offered, public, skip_private=True).first(T.ADDKE1) == Transform(
        T.ADDKE1, KeMethod.ML_KEM_768
    )


# --- every keN_x / keN_none combination (peer-pitfalls: strongSwan #2048, libreswan #2446) --

SIDES = {
    "absent": [],
    "x": ["mlkem768"],
    "none": ["none"],
    "x-none": ["mlkem768", "none"],
    "none-x": ["none", "mlkem768"],
    "y": ["mlkem1024"],
    "y-x": ["mlkem1024", "mlkem768"],
}


def _oracle(pref: list[str], other: list[str]) -> str | bool:
    """RFC 9370 §2.2.1 read plainly: an absent ADDKE type means NONE only; the choice is
    the first of the preferred side's entries the other side also has. Returns the chosen
    keyword, or False for no match."""
    pref = pref or ["none"]
    other = other or ["none"]
    return next((a for a in pref if a in other), False)


@pytest.mark.parametrize(
    ("proto", "prefix"), [(IKE, "ke1_"), (IKE, "ke3_"), (ESP, "ke2_"), (ESP, "")]
)
@pytest.mark.parametrize(("ours", "theirs"), list(itertools.product(SIDES, SIDES)))
@pytest.mark.parametrize("prefer", [True, False])
def test_ke_none_matrix(
    proto: ProtocolId, prefix: str, ours: str, theirs: str, prefer: bool
) -> None:
    # prefix "" is the ESP KE transform itself (optional PFS); IKE keeps its KE fixed
    base = "aes256-sha256-x25519" if proto == IKE else "aes256-sha256"
    ttype = {"ke1_": T.ADDKE1, "ke2_": T.ADDKE2, "ke3_": T.ADDKE3, "": T.KE}[prefix]

    def build(words: list[str]) -> Proposal:
        return parse_proposal(proto, "-".join([base, *(prefix + w for w in words)]))

    cfg, rx = build(SIDES[ours]), numbered([build(SIDES[theirs])])[0]
    pref, other = (SIDES[ours], SIDES[theirs]) if prefer else (SIDES[theirs], SIDES[ours])
    expected = _oracle(pref, other)
    d = diagnose([rx], [cfg], prefer_configured=prefer)
    if expected is False:
        assert d is not None
        assert d.pairs[0].first.type == ttype
        return
    assert d is None
    got = select_proposal([rx], [cfg], prefer_configured=prefer)
    chosen = got.of_type(ttype)
    if expected == "none":
        assert chosen == ()  # a negotiated NONE leaves the round out: no exchange for it
    else:
        assert [t.id for t in chosen] == [KEYWORDS[str(expected)].id]
    # the initiator accepts the answer to what it sent
    assert check_selected([rx], got) == got


# --- initiator-side check ----------------------------------------------------------------


def test_check_selected_rejections() -> None:
    offered = numbered(
        parse_proposals(
            IKE, "aes256-sha256-x25519-ecp256-ke1_mlkem768-ke1_none, aes128gcm16-prfsha256-ecp256"
        )
    )

    def sel(text: str, number: int = 1) -> Proposal:
        p = parse_proposal(IKE, text)
        return Proposal(IKE, p.transforms, number=number, spi=b"\x01" * 8)

    ok = check_selected(offered, sel("aes256-sha256-x25519-ke1_mlkem768"))
    assert ok.spi == b"\x01" * 8
    assert check_selected(offered, sel("aes256-sha256-ecp256"))  # ke1 NONE was offered
    assert check_selected(offered, sel("aes128gcm16-prfsha256-ecp256", 2))  # AEAD: no INTEG
    # explicit NONE is accepted where offered and dropped from the result
    explicit = check_selected(offered, sel("aes256-sha256-x25519-ke1_none"))
    assert explicit.of_type(T.ADDKE1) == ()

    bad = {
        "two KE": (sel("aes256-sha256-x25519-ecp256"), "more than one"),
        "not offered": (sel("aes256-sha256-modp2048"), "not offered"),
        "wrong number": (sel("aes256-sha256-x25519", 3), "number"),
        "missing PRF": (
            Proposal(IKE, sel("aes256-sha256-x25519").without_ke().transforms[:2], number=1),
            "missing",
        ),
        "missing KE": (
            Proposal(IKE, sel("aes256-sha256-x25519").without_ke().transforms, number=1),
            "missing",
        ),
        "repeat": (sel("aes256-sha256-ecp256-ke1_ecp256"), "not offered"),
    }
    for name, (proposal, why) in bad.items():
        with pytest.raises(ProposalError) as info:
            check_selected(offered, proposal)
        assert why in str(info.value), name


def test_check_selected_rejects_repeated_method() -> None:
    offered = numbered(parse_proposals(IKE, "aes256-sha256-x25519-ke1_mlkem768-ke2_mlkem768"))
    answer = Proposal(IKE, offered[0].transforms, number=1)
    with pytest.raises(ProposalError, match="RFC 9370"):
        check_selected(offered, answer)


def test_check_selected_esp_without_pfs_when_offered_none() -> None:
    offered = numbered(parse_proposals(ESP, "aes256-sha256-modp3072-none"))
    answer = Proposal(ESP, parse_proposal(ESP, "aes256-sha256").transforms, number=1, spi=b"abcd")
    assert check_selected(offered, answer).spi == b"abcd"
    strict = numbered(parse_proposals(ESP, "aes256-sha256-modp3072"))
    with pytest.raises(ProposalError, match="KE"):
        check_selected(strict, answer)


# --- properties ----------------------------------------------------------------------------

_ENCR = ["aes128", "aes256", "aes256gcm16"]
_INTEG = ["sha256", "sha384"]
_KE = ["x25519", "ecp256", "mlkem768", "mlkem1024"]
_ADDKE = [*_KE, "none"]


@st.composite
def proposals(draw: st.DrawFn, proto: ProtocolId) -> Proposal:
    words = draw(st.lists(st.sampled_from(_ENCR), min_size=1, max_size=2, unique=True))
    if not any("gcm" in w for w in words) or proto == ESP:
        words = [w for w in words if "gcm" not in w] or ["aes128"]
        words += draw(st.lists(st.sampled_from(_INTEG), min_size=1, max_size=2, unique=True))
    else:
        words = [w for w in words if "gcm" in w] + ["prfsha256"]
    ke_min = 1 if proto == IKE else 0
    words += draw(st.lists(st.sampled_from(_KE if proto == IKE else _ADDKE), min_size=ke_min,
                           max_size=2, unique=True))  # fmt: skip
    for n in range(1, draw(st.integers(0, 3)) + 1):
        words += [f"ke{n}_{w}" for w in draw(st.lists(st.sampled_from(_ADDKE), min_size=1,
                                                       max_size=3, unique=True))]  # fmt: skip
    return parse_proposal(proto, "-".join(words))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([IKE, ESP]).flatmap(
        lambda p: st.tuples(
            st.lists(proposals(p), min_size=1, max_size=3),
            st.lists(proposals(p), min_size=1, max_size=3),
        )
    ),
    st.booleans(),
    st.booleans(),
)
def test_selection_properties(
    lists: tuple[list[Proposal], list[Proposal]], prefer: bool, strip: bool
) -> None:
    received, configured = numbered(lists[0], spi=b"\xaa\xbb\xcc\xdd"), lists[1]
    d = diagnose(received, configured, prefer_configured=prefer, strip_ke=strip)
    if d is not None:
        assert len(d.pairs) == len(received) * len(configured)
        assert all(p.mismatches for p in d.pairs)
        assert d.log_lines()[2].startswith("no acceptable proposal found: ")
        return
    got = select_proposal(received, configured, prefer_configured=prefer, strip_ke=strip)
    src = next(r for r in received if r.number == got.number)
    assert got.spi == src.spi
    # selected ⊆ the received one and ⊆ some configured one, one transform per type
    assert set(got.transforms) <= set(src.transforms)
    assert any(set(got.transforms) <= set(c.transforms) for c in configured)
    assert len(got.types) == len(got.transforms)
    # never NONE, never a repeated key exchange method (RFC 9370)
    kes = [t.id for t in got.transforms if is_ke_type(t.type)]
    assert KeMethod.NONE not in kes and len(kes) == len(set(kes))
    if strip:
        assert not kes
    # the initiator accepts it (it offered `received`, stripped in IKE_AUTH)
    offered = [r.without_ke() for r in received] if strip else received
    offered = [Proposal(r.protocol, r.transforms, number=r.number) for r in offered]
    assert check_selected(offered, got) == got


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([IKE, ESP]).flatmap(lambda p: st.tuples(proposals(p), proposals(p))))
def test_symmetric_when_one_choice_per_type(pair_: tuple[Proposal, Proposal]) -> None:
    """With a single algorithm per type there is nothing to prefer: both directions and both
    preference settings agree on success and on the result."""
    a, b = (Proposal(p.protocol, tuple(p.first(t) for t in p.types)) for p in pair_)  # type: ignore[misc]
    results = {
        (x is a, prefer): diagnose([x], [y], prefer_configured=prefer) is None
        for x, y in ((a, b), (b, a))
        for prefer in (True, False)
    }
    assert len(set(results.values())) == 1
    if all(results.values()):
        r1 = select_proposal([a], [b])
        r2 = select_proposal([b], [a], prefer_configured=False)
        assert r1.transforms == r2.transforms


def test_addke_types_cover_all_seven() -> None:
    p = parse_proposal(
        IKE, "aes256-sha256-x25519-" + "-".join(f"ke{n}_mlkem768" for n in range(1, 8))
    )
    assert [t.type for t in p.transforms if t.type in ADDKE_TYPES] == list(ADDKE_TYPES)


def test_key_exchanges_worked_out_once_per_proposal() -> None:
    """A handshake asks a selected proposal for its key exchanges three times: the answer is
    kept and handed on to renumbered copies, and a proposal with other transforms (replace)
    works out its own."""
    from dataclasses import replace

    p = parse_proposal(IKE, "aes256-sha256-x25519-ke1_mlkem768")
    kes = p.key_exchanges
    assert [t.id for t in kes] == [KeMethod.CURVE_25519, KeMethod.ML_KEM_768]
    assert p.has_additional_ke
    copy = p.numbered(3, b"\x01" * 8)
    assert (
        copy.key_exchanges is kes
        and copy.has_additional_ke
        and copy == replace(p, number=3, spi=b"\x01" * 8)
    )
    fewer = replace(p, transforms=tuple(t for t in p.transforms if t.type not in ADDKE_TYPES))
    assert [t.id for t in fewer.key_exchanges] == [KeMethod.CURVE_25519]
    assert not fewer.has_additional_ke


def test_computable_drops_only_unavailable_ke_transforms(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our proposals as a responder may select them: an unavailable ADDKE1 alternative goes,
    the proposal stays with the other; all available: the very same proposals."""
    from pqike.tasks import common

    p = parse_proposal(IKE, "aes256-sha256-x25519-ke1_mlkem768-ke1_mlkem1024")
    esp = parse_proposal(ESP, "aes256-sha256")
    assert all(a is b for a, b in zip(common.computable(None, [p, esp]), [p, esp], strict=True))  # type: ignore[arg-type]
    monkeypatch.setattr(common, "_computable_id", lambda m: m != KeMethod.ML_KEM_768)
    monkeypatch.setattr(common, "_AVAILABLE", set())  # none found computable before
    (kept, kept_esp) = common.computable(None, [p, esp])  # type: ignore[arg-type]
    assert kept_esp is esp
    assert kept.ids(TransformType.ADDKE1) == (KeMethod.ML_KEM_1024,)
    assert kept.transforms == tuple(t for t in p.transforms if t.id != KeMethod.ML_KEM_768)


def test_computable_asks_no_method_found_available_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each responder selection asks: methods once found computable are not looked at again,
    per transform; one never found is (and NONE needs no provider)."""
    from pqike.tasks import common

    p = parse_proposal(IKE, "aes256-sha256-x25519-ke1_mlkem768-ke2_none")
    assert p.ke_ids == {KeMethod.CURVE_25519, KeMethod.ML_KEM_768}
    common.computable(None, [p])  # type: ignore[arg-type]
    monkeypatch.setattr(common, "_computable_id", lambda m: pytest.fail(f"{m} asked again"))
    assert common.computable(None, [p])[0] is p  # type: ignore[arg-type]
    monkeypatch.setattr(common, "_AVAILABLE", {KeMethod.CURVE_25519})
    with pytest.raises(BaseException, match="asked again"):
        common.computable(None, [p])  # type: ignore[arg-type]


@given(st.sampled_from(["aes256-sha256-x25519", "aes128gcm16-prfsha384-mlkem768-ke1_x25519"]))
@settings(max_examples=10, deadline=None)
def test_kept_hashes_follow_equality(text: str) -> None:
    """Transforms and proposals keep their hash (memo keys ask it in each selection): equal
    ones hash alike, a numbered() copy as a proposal built with that number and SPI."""
    p = parse_proposal(IKE, text)
    built = Proposal(IKE, p.transforms, number=3, spi=b"\x07" * 8)
    copy = p.numbered(3, b"\x07" * 8)
    assert hash(p) == hash(p) and copy == built and hash(copy) == hash(built)
    assert hash(p.numbered(4, b"")) == hash(Proposal(IKE, p.transforms, number=4))
    for t in p.transforms:
        same = Transform(int(t.type), t.id, t.key_length)
        assert same == t and hash(same) == hash(t)
        assert {t: 1}[same] == 1


def test_check_selected_remembers_valid_answers_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A responder answers the same offer alike in every handshake: the second check of an
    answer is a lookup (under the answer's own SPI); a refusal is checked again each time."""
    from pqike.proposal import select

    offered = tuple(parse_proposals(IKE, "aes256-sha256-x25519-ke1_mlkem768-ke1_kyber3"))
    answer = parse_proposal(IKE, "aes256-sha256-x25519-ke1_mlkem768").transforms
    first = check_selected(offered, Proposal(IKE, answer, number=1, spi=b"\x01" * 8))
    kyber = Proposal(IKE, parse_proposal(IKE, "aes256-sha256-x25519-ke1_kyber3").transforms, 1)
    with pytest.raises(PrivateUseRefused):
        check_selected(offered, kyber, skip_private=True)
    monkeypatch.setattr(select, "is_ke_type", lambda t: pytest.fail("checked again"))
    again = check_selected(offered, Proposal(IKE, answer, number=1, spi=b"\x02" * 8))
    assert again == Proposal(IKE, first.transforms, number=1, spi=b"\x02" * 8)
    assert first.spi == b"\x01" * 8 and again.first(T.ADDKE1) == Transform(
        T.ADDKE1, KeMethod.ML_KEM_768
    )
    with pytest.raises(BaseException, match="checked again"):
        check_selected(offered, kyber, skip_private=True)
