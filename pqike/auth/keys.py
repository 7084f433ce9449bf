"""Private/public keys of every supported type, their names and encodings.

Everything but Falcon is a cryptography key object. Falcon (liboqs) keys use this format:

* public key: SubjectPublicKeyInfo with the OQS OID (falcon512 1.3.9999.3.1, falcon1024
  1.3.9999.3.4, as in strongSwan 6.0 betas), parameters absent, the raw liboqs public key
  as the BIT STRING; PEM label ``PUBLIC KEY``.
* private key: PKCS#8 PrivateKeyInfo, version 0, the same AlgorithmIdentifier, and as
  privateKey (an OCTET STRING) the DER of an inner OCTET STRING holding the raw liboqs
  secret key followed by the raw public key (liboqs cannot derive one from the other);
  PEM label ``PRIVATE KEY``; unencrypted. This is what pq-strongswan's oqs plugin writes
  (oqs_private_key.c get_encoding()) and reads. Keys from older pqike releases, without
  the inner OCTET STRING, still load.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, rsa

from pqike.auth import _der
from pqike.auth.errors import AuthError
from pqike.auth.oqs_support import oqs_module

__all__ = [
    "FALCON_OIDS",
    "FalconPrivateKey",
    "FalconPublicKey",
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "generate_private_key",
    "key_bits",
    "key_type",
    "load_private_key",
    "load_public_key",
    "private_key_pem",
    "public_key_from_spki",
    "public_key_of",
    "public_key_pem",
    "spki_algorithm_oid",
    "spki_der",
    "subject_key_identifier",
    "subject_public_key_bytes",
]


class KeyType(StrEnum):
    """Key types, named as strongSwan's key_type_names (ml-dsa branch, 6.0 betas)."""

    RSA = "RSA"
    ECDSA = "ECDSA"
    ED25519 = "ED25519"
    ED448 = "ED448"
    ML_DSA_44 = "ML_DSA_44"
    ML_DSA_65 = "ML_DSA_65"
    ML_DSA_87 = "ML_DSA_87"
    FALCON_512 = "FALCON_512"
    FALCON_1024 = "FALCON_1024"


FALCON_OIDS: dict[KeyType, str] = {
    KeyType.FALCON_512: "1.3.9999.3.1",
    KeyType.FALCON_1024: "1.3.9999.3.4",
}
_FALCON_BY_OID = {oid: kt for kt, oid in FALCON_OIDS.items()}
# liboqs algorithm name, public key and secret key sizes
_FALCON_PARAMS: dict[KeyType, tuple[str, int, int]] = {
    KeyType.FALCON_512: ("Falcon-512", 897, 1281),
    KeyType.FALCON_1024: ("Falcon-1024", 1793, 2305),
}


@dataclass(frozen=True, slots=True)
class FalconPublicKey:
    key_type: KeyType
    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != _FALCON_PARAMS[self.key_type][1]:
            raise AuthError(
                f"{self.key_type} public key must be "
                f"{_FALCON_PARAMS[self.key_type][1]} bytes, got {len(self.raw)}"
            )

    def public_bytes_raw(self) -> bytes:
        return self.raw

    def verify(self, signature: bytes, data: bytes) -> None:
        """Raises InvalidSignature, like cryptography's verify()."""
        with oqs_module().Signature(_FALCON_PARAMS[self.key_type][0]) as verifier:
            if not verifier.verify(data, signature, self.raw):
                raise InvalidSignature


@dataclass(frozen=True, slots=True)
class FalconPrivateKey:
    key_type: KeyType
    secret: bytes = field(repr=False)
    public: FalconPublicKey

    @classmethod
    def generate(cls, key_type: KeyType) -> FalconPrivateKey:
        with oqs_module().Signature(_FALCON_PARAMS[key_type][0]) as signer:
            pk = signer.generate_keypair()
            return cls(key_type, signer.export_secret_key(), FalconPublicKey(key_type, pk))

    def public_key(self) -> FalconPublicKey:
        return self.public

    def sign(self, data: bytes) -> bytes:
        alg = _FALCON_PARAMS[self.key_type][0]
        with oqs_module().Signature(alg, secret_key=self.secret) as signer:
            return signer.sign(data)


PrivateKey: TypeAlias = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | mldsa.MLDSA44PrivateKey
    | mldsa.MLDSA65PrivateKey
    | mldsa.MLDSA87PrivateKey
    | FalconPrivateKey
)
PublicKey: TypeAlias = (
    rsa.RSAPublicKey
    | ec.EllipticCurvePublicKey
    | ed25519.Ed25519PublicKey
    | ed448.Ed448PublicKey
    | mldsa.MLDSA44PublicKey
    | mldsa.MLDSA65PublicKey
    | mldsa.MLDSA87PublicKey
    | FalconPublicKey
)

_TYPES: tuple[tuple[tuple[type, ...], KeyType], ...] = (
    ((rsa.RSAPrivateKey, rsa.RSAPublicKey), KeyType.RSA),
    ((ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey), KeyType.ECDSA),
    ((ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey), KeyType.ED25519),
    ((ed448.Ed448PrivateKey, ed448.Ed448PublicKey), KeyType.ED448),
    ((mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey), KeyType.ML_DSA_44),
    ((mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey), KeyType.ML_DSA_65),
    ((mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey), KeyType.ML_DSA_87),
)


def key_type(key: PrivateKey | PublicKey) -> KeyType:
    if isinstance(key, FalconPrivateKey | FalconPublicKey):
        return key.key_type
    for classes, kt in _TYPES:
        if isinstance(key, classes):
            return kt
    raise AuthError(f"unsupported key type {type(key).__name__}")


def public_key_of(key: PrivateKey | PublicKey) -> PublicKey:
    return key.public_key() if hasattr(key, "public_key") else key  # type: ignore[return-value]


def key_bits(key: PrivateKey | PublicKey) -> int:
    """Key size as strongSwan's get_keysize(): modulus/curve bits; 8 x public key bytes for
    ML-DSA (ml_dsa_public_key.c) and, by analogy, Falcon; 256/456 for Ed25519/Ed448."""
    pub = public_key_of(key)
    kt = key_type(pub)
    if isinstance(pub, rsa.RSAPublicKey):
        return pub.key_size
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return pub.curve.key_size
    if kt is KeyType.ED25519:
        return 256
    if kt is KeyType.ED448:
        return 456
    return 8 * len(pub.public_bytes_raw())  # type: ignore[union-attr]


def spki_der(key: PrivateKey | PublicKey) -> bytes:
    """DER SubjectPublicKeyInfo."""
    pub = public_key_of(key)
    if isinstance(pub, FalconPublicKey):
        return _der.tlv(
            _der.SEQUENCE,
            _der.algorithm_identifier(FALCON_OIDS[pub.key_type]) + _der.bit_string(pub.raw),
        )
    return pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def subject_public_key_bytes(spki: bytes) -> bytes:
    """The subjectPublicKey BIT STRING contents of a DER SPKI (what strongSwan's 'subjkey'
    and RFC 5280 §4.2.1.2 method 1 hash)."""
    parts = _der.read_all(_der.read_single(spki, _der.SEQUENCE).value)
    if len(parts) != 2 or parts[1].tag != _der.BIT_STRING or parts[1].value[:1] != b"\x00":
        raise _der.DerError("malformed SubjectPublicKeyInfo")
    return parts[1].value[1:]


def subject_key_identifier(spki: bytes) -> bytes:
    """SHA-1 of the subjectPublicKey bits (RFC 5280 §4.2.1.2 method 1): the
    subjectKeyIdentifier pki writes and strongSwan's 'subjkey'."""
    return hashlib.sha1(subject_public_key_bytes(spki), usedforsecurity=False).digest()


def _falcon_public_from_spki(spki: bytes) -> FalconPublicKey | None:
    kt = _FALCON_BY_OID.get(spki_algorithm_oid(spki))
    if kt is None:
        return None
    return FalconPublicKey(kt, subject_public_key_bytes(spki))


def public_key_from_spki(spki: bytes) -> PublicKey:
    """A public key from DER SPKI, Falcon included."""
    try:
        return serialization.load_der_public_key(spki)  # type: ignore[return-value]
    except UnsupportedAlgorithm:
        falcon = _falcon_public_from_spki(spki)
        if falcon is None:
            raise AuthError(
                f"unsupported public key algorithm {spki_algorithm_oid(spki)}"
            ) from None
        return falcon


def spki_algorithm_oid(spki: bytes) -> str:
    alg = _der.read_all(_der.read_single(spki, _der.SEQUENCE).value)[0].encoded
    return _der.parse_algorithm_identifier(alg)[0]


_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.+?)-----END \1-----", re.S)


def _pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    return [
        (m[1].decode(), base64.b64decode(b"".join(m[2].split()))) for m in _PEM_RE.finditer(data)
    ]


def _pem(label: str, der: bytes) -> bytes:
    b64 = base64.b64encode(der)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return b"".join(
        [
            f"-----BEGIN {label}-----\n".encode(),
            *(line + b"\n" for line in lines),
            f"-----END {label}-----\n".encode(),
        ]
    )


def _falcon_private_from_pkcs8(der: bytes) -> FalconPrivateKey | None:
    parts = _der.read_all(_der.read_single(der, _der.SEQUENCE).value)
    if len(parts) < 3 or parts[0].tag != _der.INTEGER or parts[2].tag != _der.OCTET_STRING:
        raise _der.DerError("malformed PKCS#8 PrivateKeyInfo")
    oid, _ = _der.parse_algorithm_identifier(parts[1].encoded)
    kt = _FALCON_BY_OID.get(oid)
    if kt is None:
        return None
    _alg, pk_len, sk_len = _FALCON_PARAMS[kt]
    blob = parts[2].value
    if len(blob) != sk_len + pk_len:  # not pqike's old flat form: strongSwan's nested one
        blob = _der.read_single(blob, _der.OCTET_STRING).value
    if len(blob) != sk_len + pk_len:
        raise AuthError(f"{kt} private key must hold {sk_len}+{pk_len} bytes, got {len(blob)}")
    return FalconPrivateKey(kt, blob[:sk_len], FalconPublicKey(kt, blob[sk_len:]))


def load_private_key(data: bytes, password: bytes | None = None) -> PrivateKey:
    """PEM or DER private key (PKCS#8, or the PKCS#1/SEC1 forms cryptography reads)."""
    is_pem = b"-----BEGIN" in data
    loader = serialization.load_pem_private_key if is_pem else serialization.load_der_private_key
    try:
        return loader(data, password)  # type: ignore[return-value]
    except (UnsupportedAlgorithm, ValueError) as exc:
        ders = (
            [der for label, der in _pem_blocks(data) if label == "PRIVATE KEY"]
            if is_pem
            else [data]
        )
        for der in ders:
            try:
                falcon = _falcon_private_from_pkcs8(der)
            except _der.DerError:
                continue
            if falcon is not None:
                return falcon
        raise AuthError(f"cannot load private key: {exc}") from exc


def load_public_key(data: bytes) -> PublicKey:
    """PEM or DER SubjectPublicKeyInfo."""
    if b"-----BEGIN" in data:
        blocks = [der for label, der in _pem_blocks(data) if label == "PUBLIC KEY"]
        if not blocks:
            raise AuthError("no PUBLIC KEY PEM block found")
        data = blocks[0]
    try:
        return public_key_from_spki(data)
    except (ValueError, AuthError) as exc:
        raise AuthError(f"cannot load public key: {exc}") from exc


def private_key_pem(key: PrivateKey, password: bytes | None = None) -> bytes:
    if isinstance(key, FalconPrivateKey):
        if password:
            raise AuthError("encrypted Falcon private keys are not supported")
        der = _der.tlv(
            _der.SEQUENCE,
            _der.encode_uint(0)
            + _der.algorithm_identifier(FALCON_OIDS[key.key_type])
            + _der.tlv(_der.OCTET_STRING, _der.tlv(_der.OCTET_STRING, key.secret + key.public.raw)),
        )
        return _pem("PRIVATE KEY", der)
    enc = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def public_key_pem(key: PrivateKey | PublicKey) -> bytes:
    return _pem("PUBLIC KEY", spki_der(key))


def generate_private_key(
    kt: KeyType, *, bits: int | None = None, curve: ec.EllipticCurve | None = None
) -> PrivateKey:
    """A fresh key; ``bits`` for RSA (default 3072), ``curve`` for ECDSA (default P-256)."""
    match kt:
        case KeyType.RSA:
            return rsa.generate_private_key(65537, bits or 3072)
        case KeyType.ECDSA:
            return ec.generate_private_key(curve or ec.SECP256R1())
        case KeyType.ED25519:
            return ed25519.Ed25519PrivateKey.generate()
        case KeyType.ED448:
            return ed448.Ed448PrivateKey.generate()
        case KeyType.ML_DSA_44:
            return mldsa.MLDSA44PrivateKey.generate()
        case KeyType.ML_DSA_65:
            return mldsa.MLDSA65PrivateKey.generate()
        case KeyType.ML_DSA_87:
            return mldsa.MLDSA87PrivateKey.generate()
        case KeyType.FALCON_512 | KeyType.FALCON_1024:
            return FalconPrivateKey.generate(kt)
    raise AuthError(f"cannot generate {kt} keys")  # pragma: no cover
