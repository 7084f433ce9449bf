"""Pre-shared key authentication (RFC 7296 §2.15, AUTH method 2).

The AUTH value itself is in pqike.crypto.keyschedule; this adds the method-level wrappers
and the config-time strength check. Like strongSwan, any non-empty PSK is accepted at run
time: a short one only produces a warning from psk_warnings().
"""

from __future__ import annotations

from pqike.crypto.keyschedule import KEY_PAD
from pqike.crypto.mac import verify_icv
from pqike.crypto.prf import prf
from pqike.memo import Memo
from pqike.wire.iana import PrfId

__all__ = ["MIN_PSK_LENGTH", "build_psk_auth", "psk_warnings", "verify_psk"]

# RFC 7296 §2.15 wants PSKs "as strong as the strongest key negotiated"; 20 characters is
# pqike's warning threshold for human-chosen secrets.
MIN_PSK_LENGTH = 20

# prf(Shared Secret, "Key Pad for IKEv2") depends on the PSK and prf alone, yet each IKE_AUTH
# needs it twice on each side (our AUTH, the peer's check): one per configured (prf, PSK).
# Bounded by the configuration's PSKs, not by peers; a secret, so never logged.
_PADDED: Memo[tuple[PrfId, bytes], bytes] = Memo(256)


def _padded(prf_id: PrfId, key: bytes) -> bytes:
    padded = _PADDED.get((prf_id, key))
    if padded is None:
        padded = _PADDED.keep((prf_id, key), prf(prf_id, key, KEY_PAD))
    return padded


def _as_bytes(psk: bytes | str) -> bytes:
    return psk.encode() if isinstance(psk, str) else bytes(psk)


def build_psk_auth(prf_id: PrfId, psk: bytes | str, signed_octets: bytes) -> bytes:
    """AUTH data = prf(prf(PSK, "Key Pad for IKEv2"), SignedOctets)."""
    key = _as_bytes(psk)
    if not key:
        raise ValueError("empty pre-shared key")
    return prf(prf_id, _padded(prf_id, key), signed_octets)


def verify_psk(prf_id: PrfId, psk: bytes | str, signed_octets: bytes, auth_data: bytes) -> bool:
    """Constant-time comparison of the received AUTH data with the expected value."""
    key = _as_bytes(psk)
    return bool(key) and verify_icv(prf(prf_id, _padded(prf_id, key), signed_octets), auth_data)


def psk_warnings(psk: bytes | str, name: str = "PSK") -> list[str]:
    """Config-check warnings (empty list: fine). Never an error: strongSwan accepts any."""
    key = _as_bytes(psk)
    if not key:
        return [f"{name} is empty"]
    out: list[str] = []
    if len(key) < MIN_PSK_LENGTH:
        out.append(
            f"{name} is only {len(key)} characters long; use at least {MIN_PSK_LENGTH} "
            "random characters (offline dictionary attacks on PSK AUTH are cheap)"
        )
    if len(set(key)) <= 2:
        out.append(f"{name} uses at most two distinct characters")
    return out
