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
