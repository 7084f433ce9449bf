"""AUTH payload data for RFC 7427 Digital Signature (method 14) and the
SIGNATURE_HASH_ALGORITHMS notify data.

Method 14 AUTH data (RFC 7427 §3, strongSwan build_signature_auth_data()):
    1 byte AlgorithmIdentifier length | DER AlgorithmIdentifier | signature
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pqike.auth.errors import (
    AuthDataError,
    SchemeNotAllowed,
    TruncatedAuthData,
    UnknownAlgorithmIdentifier,
)
from pqike.auth.keys import PrivateKey, PublicKey
from pqike.auth.schemes import SignatureScheme, scheme_from_algorithm_identifier
from pqike.wire.iana import HashAlgorithm

__all__ = [
    "DEFAULT_SIGNATURE_HASH_ALGORITHMS",
    "SignatureAuthData",
    "build_signature_auth_data",
    "decode_signature_hash_algorithms",
    "encode_signature_hash_algorithms",
    "parse_signature_auth_data",
    "sign_auth_data",
    "verify_auth_data",
]

# What strongSwan announces with default plugins (hasher_algorithm_for_ikev2(), ascending).
DEFAULT_SIGNATURE_HASH_ALGORITHMS: tuple[HashAlgorithm, ...] = (
    HashAlgorithm.SHA2_256,
    HashAlgorithm.SHA2_384,
    HashAlgorithm.SHA2_512,
    HashAlgorithm.IDENTITY,
)


@dataclass(frozen=True, slots=True)
class SignatureAuthData:
    scheme: SignatureScheme
    signature: bytes

    def encode(self) -> bytes:
        return build_signature_auth_data(self.scheme, self.signature)


def build_signature_auth_data(scheme: SignatureScheme, signature: bytes) -> bytes:
    alg = scheme.algorithm_identifier
    if len(alg) > 255:  # pragma: no cover - every registered one is < 70 bytes
        raise AuthDataError(f"AlgorithmIdentifier of {scheme.name} exceeds 255 bytes")
    return bytes([len(alg)]) + alg + signature


def _check_allowed(scheme: SignatureScheme, allowed_hashes: Iterable[int] | None) -> None:
    if allowed_hashes is None:
        return
    allowed = set(allowed_hashes)
    if scheme.hash_algorithm not in allowed:
        names = ", ".join(_hash_name(h) for h in sorted(allowed)) or "none"
        raise SchemeNotAllowed(
            f"signature scheme {scheme.log_name} needs hash {scheme.hash_algorithm.name}, "
            f"not in SIGNATURE_HASH_ALGORITHMS ({names})"
        )


def parse_signature_auth_data(
    data: bytes, allowed_hashes: Iterable[int] | None = None
) -> SignatureAuthData:
    """Split method-14 AUTH data. ``allowed_hashes``: the SIGNATURE_HASH_ALGORITHMS we
    announced; a scheme whose hash is not in it raises SchemeNotAllowed (None: no check)."""
    if not data:
        raise TruncatedAuthData("empty AUTH data")
    alg_len = data[0]
    if alg_len == 0:
        raise UnknownAlgorithmIdentifier("AUTH data has a zero-length AlgorithmIdentifier")
    if len(data) < 1 + alg_len:
        raise TruncatedAuthData(
            f"AUTH data truncated: AlgorithmIdentifier of {alg_len} bytes announced, "
            f"{len(data) - 1} present"
        )
    scheme = scheme_from_algorithm_identifier(bytes(data[1 : 1 + alg_len]))
    signature = bytes(data[1 + alg_len :])
    if not signature:
        raise TruncatedAuthData(
            f"AUTH data has no signature after the {scheme.name} AlgorithmIdentifier"
        )
    _check_allowed(scheme, allowed_hashes)
    return SignatureAuthData(scheme, signature)


def sign_auth_data(private_key: PrivateKey, octets: bytes, scheme: SignatureScheme) -> bytes:
    """Sign the AUTH octets and return complete method-14 AUTH data."""
    return build_signature_auth_data(scheme, scheme.sign(private_key, octets))


def verify_auth_data(
    public_key: PublicKey, octets: bytes, data: bytes, allowed_hashes: Iterable[int] | None = None
) -> SignatureAuthData | None:
    """The parsed AUTH data if its signature over ``octets`` verifies, else None. Malformed
    data, a disallowed scheme or a scheme for another key type raise AuthError subclasses."""
    parsed = parse_signature_auth_data(data, allowed_hashes)
    return parsed if parsed.scheme.verify(public_key, octets, parsed.signature) else None


def _hash_name(h: int) -> str:
    try:
        return HashAlgorithm(h).name
    except ValueError:
        return str(h)


def encode_signature_hash_algorithms(algorithms: Iterable[int]) -> bytes:
    """Notify data: 2-byte hash algorithm IDs (RFC 7427 §4)."""
    return b"".join(int(a).to_bytes(2, "big") for a in algorithms)


def decode_signature_hash_algorithms(data: bytes) -> tuple[HashAlgorithm | int, ...]:
    """IDs in order; unknown ones are kept as plain ints (RFC 7427: ignore what you don't
    know, but keep it for logging)."""
    if len(data) % 2:
        raise AuthDataError(f"SIGNATURE_HASH_ALGORITHMS data of odd length {len(data)}")
    out: list[HashAlgorithm | int] = []
    for i in range(0, len(data), 2):
        value = int.from_bytes(data[i : i + 2], "big")
        try:
            out.append(HashAlgorithm(value))
        except ValueError:
            out.append(value)
    return tuple(out)
