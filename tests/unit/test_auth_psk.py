"""PSK AUTH (RFC 7296 §2.15) wrappers and the config strength check."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from pqike.auth.psk import MIN_PSK_LENGTH, build_psk_auth, psk_warnings, verify_psk
from pqike.wire.iana import PrfId

OCTETS = b"RealMessage1" + bytes(range(64))


def test_psk_auth_matches_rfc_formula() -> None:
    psk = "this is a long enough secret"
    inner = hmac.new(psk.encode(), b"Key Pad for IKEv2", hashlib.sha384).digest()
    expected = hmac.new(inner, OCTETS, hashlib.sha384).digest()
    assert build_psk_auth(PrfId.HMAC_SHA2_384, psk, OCTETS) == expected
    assert verify_psk(PrfId.HMAC_SHA2_384, psk.encode(), OCTETS, expected)
    assert not verify_psk(PrfId.HMAC_SHA2_384, psk, OCTETS, expected[:-1] + b"\x00")
    assert not verify_psk(PrfId.HMAC_SHA2_384, psk + "x", OCTETS, expected)
    assert not verify_psk(PrfId.HMAC_SHA2_384, "", OCTETS, expected)
    with pytest.raises(ValueError, match="empty"):
        build_psk_auth(PrfId.HMAC_SHA2_256, b"", OCTETS)


def test_short_psk_is_accepted_but_warned() -> None:
    short = "secret"
    auth = build_psk_auth(PrfId.HMAC_SHA2_256, short, OCTETS)  # strongSwan accepts any
    assert verify_psk(PrfId.HMAC_SHA2_256, short, OCTETS, auth)
    (warning,) = psk_warnings(short, "secrets.ike-moon")
    assert f"at least {MIN_PSK_LENGTH}" in warning and "secrets.ike-moon" in warning
    assert psk_warnings("x" * 30) == ["PSK uses at most two distinct characters"]
    assert psk_warnings("K8v!q2Lr#9zT@w4mYp6sXe") == []
    assert psk_warnings(b"") == ["PSK is empty"]


def test_key_pad_computed_once_per_prf_and_psk(monkeypatch: pytest.MonkeyPatch) -> None:
    """prf(PSK, "Key Pad for IKEv2") is the same for every IKE_AUTH with that PSK and prf:
    computed once each, while the AUTH values stay those of the RFC formula."""
    import pqike.auth.psk as psk_mod

    monkeypatch.setattr(psk_mod, "_PADDED", psk_mod.Memo(4))
    padded: list[tuple[PrfId, bytes]] = []
    real = psk_mod.prf

    def counted(prf_id: PrfId, key: bytes, data: bytes) -> bytes:
        if data == b"Key Pad for IKEv2":
            padded.append((prf_id, key))
        return real(prf_id, key, data)

    monkeypatch.setattr(psk_mod, "prf", counted)
    for _ in range(3):
        for prf_id, digest in ((PrfId.HMAC_SHA2_256, "sha256"), (PrfId.HMAC_SHA2_384, "sha384")):
            for psk in (b"first secret", b"second secret"):
                inner = hmac.new(psk, b"Key Pad for IKEv2", digest).digest()
                expected = hmac.new(inner, OCTETS, digest).digest()
                assert build_psk_auth(prf_id, psk, OCTETS) == expected
                assert verify_psk(prf_id, psk, OCTETS, expected)
    assert sorted(padded) == sorted(
        (p, k)
        for p in (PrfId.HMAC_SHA2_256, PrfId.HMAC_SHA2_384)
        for k in (b"first secret", b"second secret")
    )
    assert len(psk_mod._PADDED) <= 4
