"""RFC 7427 signature schemes (AUTH method 14) and the classic RSA/ECDSA methods (1, 9-11).

Names follow strongSwan's signature_scheme_names. AlgorithmIdentifiers are encoded as
strongSwan's signature_params_build() does: ECDSA/EdDSA/ML-DSA/Falcon with absent parameters,
RSA PKCS#1 with NULL, RSASSA-PSS with explicit hash/MGF1 (hash AlgorithmIdentifiers with
NULL) and salt length, trailerField omitted (RFC 4055 §3.1, RFC 7427 App. A.4.3).
PQ schemes sign the octets unhashed: pure ML-DSA with an empty context (PQA draft), Falcon
as liboqs does it; their IKEv2 hash is Identity (5, RFC 8420).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from pqike.auth import _der
from pqike.auth.errors import KeyMismatch, NoCommonScheme, UnknownAlgorithmIdentifier
from pqike.auth.keys import FALCON_OIDS, KeyType, PrivateKey, PublicKey, key_bits, key_type
from pqike.wire.iana import AuthMethod, HashAlgorithm

__all__ = [
    "SCHEMES",
    "SignatureScheme",
    "classic_method_for_key",
    "classic_sign",
    "classic_verify",
    "default_scheme",
    "scheme_by_name",
    "scheme_from_algorithm_identifier",
    "schemes_for_key",
    "select_scheme",
]


class _Family(Enum):
    PURE = "pure"  # ML-DSA, EdDSA, Falcon: key.sign(octets)
    ECDSA = "ecdsa"
    RSA_PKCS1 = "rsa-pkcs1"
    RSA_PSS = "rsa-pss"


_HASHES: dict[HashAlgorithm, tuple[type[hashes.HashAlgorithm], str, str]] = {
    # IKEv2 hash -> (cryptography hash, OID, strongSwan short name)
    HashAlgorithm.SHA1: (hashes.SHA1, "1.3.14.3.2.26", "SHA1"),
    HashAlgorithm.SHA2_256: (hashes.SHA256, "2.16.840.1.101.3.4.2.1", "SHA2_256"),
    HashAlgorithm.SHA2_384: (hashes.SHA384, "2.16.840.1.101.3.4.2.2", "SHA2_384"),
    HashAlgorithm.SHA2_512: (hashes.SHA512, "2.16.840.1.101.3.4.2.3", "SHA2_512"),
}
_HASH_BY_OID = {oid: h for h, (_c, oid, _n) in _HASHES.items()}
_OID_RSASSA_PSS = "1.2.840.113549.1.1.10"
_OID_MGF1 = "1.2.840.113549.1.1.8"
_NULL = _der.tlv(_der.NULL, b"")


@dataclass(frozen=True, slots=True)
class SignatureScheme:
    """One RFC 7427 signature scheme: what goes on the wire and how to sign/verify."""

    name: str
    key_type: KeyType
    oid: str
    algorithm_identifier: bytes  # DER, as sent in AUTH data
    hash_algorithm: HashAlgorithm  # what it needs in SIGNATURE_HASH_ALGORITHMS
    family: _Family = field(repr=False)
    max_key_bits: int = field(default=0, repr=False)  # strongSwan scheme_map; 0 = any
    mgf1_hash: HashAlgorithm | None = field(default=None, repr=False)
    salt_length: int | None = field(default=None, repr=False)

    @property
    def log_name(self) -> str:
        """As strongSwan logs it ("RSA_EMSA_PSS_SHA2_256_SALT_32" for PSS)."""
        if self.family is _Family.RSA_PSS:
            return f"RSA_EMSA_PSS_{_HASHES[self.hash_algorithm][2]}_SALT_{self.salt_length}"
        return self.name

    def _check_key(self, key: PrivateKey | PublicKey) -> None:
        kt = key_type(key)
        if kt is not self.key_type:
            raise KeyMismatch(f"signature scheme {self.name} needs a {self.key_type} key, got {kt}")

    def _hash(self) -> hashes.HashAlgorithm:
        return _HASHES[self.hash_algorithm][0]()

    def _pss(self) -> padding.PSS:
        assert self.mgf1_hash is not None and self.salt_length is not None
        return padding.PSS(padding.MGF1(_HASHES[self.mgf1_hash][0]()), self.salt_length)

    def sign(self, private_key: PrivateKey, octets: bytes) -> bytes:
        self._check_key(private_key)
        match self.family:
            case _Family.PURE:
                return private_key.sign(octets)  # type: ignore[call-arg,union-attr]
            case _Family.ECDSA:
                return private_key.sign(octets, ec.ECDSA(self._hash()))  # type: ignore[call-arg,union-attr,arg-type]
            case _Family.RSA_PKCS1:
                return private_key.sign(octets, padding.PKCS1v15(), self._hash())  # type: ignore[call-arg,union-attr]
            case _Family.RSA_PSS:
                return private_key.sign(octets, self._pss(), self._hash())  # type: ignore[call-arg,union-attr]
        raise AssertionError(self.family)  # pragma: no cover

    def verify(self, public_key: PublicKey, octets: bytes, signature: bytes) -> bool:
        """True if ``signature`` over ``octets`` is valid; KeyMismatch for a wrong key type."""
        self._check_key(public_key)
        try:
            match self.family:
                case _Family.PURE:
                    public_key.verify(signature, octets)  # type: ignore[call-arg,union-attr]
                case _Family.ECDSA:
                    public_key.verify(signature, octets, ec.ECDSA(self._hash()))  # type: ignore[call-arg,union-attr,arg-type]
                case _Family.RSA_PKCS1:
                    public_key.verify(signature, octets, padding.PKCS1v15(), self._hash())  # type: ignore[call-arg,union-attr]
                case _Family.RSA_PSS:
                    public_key.verify(signature, octets, self._pss(), self._hash())  # type: ignore[call-arg,union-attr]
        except (InvalidSignature, ValueError):
            return False
        return True


def _pure(name: str, kt: KeyType, oid: str) -> SignatureScheme:
    return SignatureScheme(
        name, kt, oid, _der.algorithm_identifier(oid), HashAlgorithm.IDENTITY, _Family.PURE
    )


def _ecdsa(h: HashAlgorithm, oid: str, max_bits: int) -> SignatureScheme:
    bits = _HASHES[h][2].removeprefix("SHA2_")
    return SignatureScheme(
        f"ECDSA_WITH_SHA{bits}_DER",
        KeyType.ECDSA,
        oid,
        _der.algorithm_identifier(oid),
        h,
        _Family.ECDSA,
        max_bits,
    )


def _pkcs1(h: HashAlgorithm, oid: str, max_bits: int) -> SignatureScheme:
    return SignatureScheme(
        f"RSA_EMSA_PKCS1_{_HASHES[h][2]}",
        KeyType.RSA,
        oid,
        _der.algorithm_identifier(oid, _NULL),
        h,
        _Family.RSA_PKCS1,
        max_bits,
    )


def _pss_params(h: HashAlgorithm, mgf1: HashAlgorithm, salt: int) -> bytes:
    # RFC 4055 RSASSA-PSS-params; DEFAULT values (SHA-1, MGF1-SHA1, 20) must be omitted.
    body = b""
    if h is not HashAlgorithm.SHA1:
        body += _der.tlv(0xA0, _der.algorithm_identifier(_HASHES[h][1], _NULL))
    if mgf1 is not HashAlgorithm.SHA1:
        mgf_hash = _der.algorithm_identifier(_HASHES[mgf1][1], _NULL)
        body += _der.tlv(0xA1, _der.algorithm_identifier(_OID_MGF1, mgf_hash))
    if salt != 20:
        body += _der.tlv(0xA2, _der.encode_uint(salt))
    return _der.tlv(_der.SEQUENCE, body)


def _pss(
    h: HashAlgorithm, mgf1: HashAlgorithm, salt: int, max_bits: int = 0, name: str | None = None
) -> SignatureScheme:
    return SignatureScheme(
        name or f"RSA_EMSA_PSS_{_HASHES[h][2]}_SALT_{salt}",
        KeyType.RSA,
        _OID_RSASSA_PSS,
        _der.algorithm_identifier(_OID_RSASSA_PSS, _pss_params(h, mgf1, salt)),
        h,
        _Family.RSA_PSS,
        max_bits,
        mgf1,
        salt,
    )


_H = HashAlgorithm
_ALL: tuple[SignatureScheme, ...] = (
    _pure("ML_DSA_44", KeyType.ML_DSA_44, "2.16.840.1.101.3.4.3.17"),
    _pure("ML_DSA_65", KeyType.ML_DSA_65, "2.16.840.1.101.3.4.3.18"),
    _pure("ML_DSA_87", KeyType.ML_DSA_87, "2.16.840.1.101.3.4.3.19"),
    _pure("FALCON_512", KeyType.FALCON_512, FALCON_OIDS[KeyType.FALCON_512]),
    _pure("FALCON_1024", KeyType.FALCON_1024, FALCON_OIDS[KeyType.FALCON_1024]),
    _pure("ED25519", KeyType.ED25519, "1.3.101.112"),
    _pure("ED448", KeyType.ED448, "1.3.101.113"),
    # strongSwan scheme_map order and max key sizes (public_key.c)
    _pss(_H.SHA2_256, _H.SHA2_256, 32, 3072, "RSA_EMSA_PSS_SHA2_256"),
    _pss(_H.SHA2_384, _H.SHA2_384, 48, 7680, "RSA_EMSA_PSS_SHA2_384"),
    _pss(_H.SHA2_512, _H.SHA2_512, 64, 0, "RSA_EMSA_PSS_SHA2_512"),
    _pkcs1(_H.SHA2_256, "1.2.840.113549.1.1.11", 3072),
    _pkcs1(_H.SHA2_384, "1.2.840.113549.1.1.12", 7680),
    _pkcs1(_H.SHA2_512, "1.2.840.113549.1.1.13", 0),
    _ecdsa(_H.SHA2_256, "1.2.840.10045.4.3.2", 256),
    _ecdsa(_H.SHA2_384, "1.2.840.10045.4.3.3", 384),
    _ecdsa(_H.SHA2_512, "1.2.840.10045.4.3.4", 0),
)

SCHEMES: dict[str, SignatureScheme] = {s.name: s for s in _ALL}
_BY_DER = {s.algorithm_identifier: s for s in _ALL}
_BY_OID = {s.oid: s for s in _ALL if s.family is not _Family.RSA_PSS}


def scheme_by_name(name: str) -> SignatureScheme:
    """By strongSwan name; ECDSA also without the _DER suffix."""
    key = name.upper()
    try:
        return SCHEMES[key] if key in SCHEMES else SCHEMES[f"{key}_DER"]
    except KeyError:
        raise KeyError(f"unknown signature scheme {name!r}") from None


def _parse_pss(params: bytes | None) -> SignatureScheme:
    h, mgf1, salt = _H.SHA1, _H.SHA1, 20
    if params is None:
        raise _der.DerError("RSASSA-PSS without parameters")
    for item in _der.read_all(_der.read_single(params, _der.SEQUENCE).value):
        inner = _der.read_single(item.value)
        if item.tag == 0xA0:
            oid, _p = _der.parse_algorithm_identifier(inner.encoded)
            h = _HASH_BY_OID[oid]
        elif item.tag == 0xA1:
            oid, mgf_params = _der.parse_algorithm_identifier(inner.encoded)
            if oid != _OID_MGF1 or mgf_params is None:
                raise _der.DerError(f"unsupported PSS mask generation function {oid}")
            mgf1 = _HASH_BY_OID[_der.parse_algorithm_identifier(mgf_params)[0]]
        elif item.tag == 0xA2 and inner.tag == _der.INTEGER:
            salt = _der.decode_uint(inner.value)
        elif item.tag == 0xA3 and inner.tag == _der.INTEGER:
            if _der.decode_uint(inner.value) != 1:
                raise _der.DerError("PSS trailerField must be 1")
        else:
            raise _der.DerError(f"unexpected field 0x{item.tag:02x} in RSASSA-PSS-params")
    for known in _ALL:
        if (
            known.family is _Family.RSA_PSS
            and known.hash_algorithm is h
            and known.mgf1_hash is mgf1
            and known.salt_length == salt
        ):
            return known
    return _pss(h, mgf1, salt)


def scheme_from_algorithm_identifier(der: bytes) -> SignatureScheme:
    """The scheme for one DER AlgorithmIdentifier. Like strongSwan, a NULL is tolerated in
    place of absent parameters; anything else unexpected is UnknownAlgorithmIdentifier."""
    if (known := _BY_DER.get(bytes(der))) is not None:
        return known
    try:
        oid, params = _der.parse_algorithm_identifier(der)
        if oid == _OID_RSASSA_PSS:
            return _parse_pss(params)
    except (_der.DerError, KeyError) as exc:
        raise UnknownAlgorithmIdentifier(
            f"malformed or unsupported AlgorithmIdentifier {bytes(der).hex()}: {exc}"
        ) from None
    scheme = _BY_OID.get(oid)
    if scheme is None:
        raise UnknownAlgorithmIdentifier(f"unknown signature algorithm OID {oid}")
    if params not in (None, _NULL):
        raise UnknownAlgorithmIdentifier(f"unexpected parameters for {scheme.name}")
    return scheme


def schemes_for_key(key: PrivateKey | PublicKey, *, rsa_pss: bool = False) -> list[SignatureScheme]:
    """Candidate schemes in strongSwan's preference order (pubkey_authenticator.c
    select_signature_schemes() without configured schemes): size-filtered scheme_map,
    RSA-PSS only with ``rsa_pss`` (charon.rsa_pss, default no), and for RSA the PKCS#1
    SHA-384/SHA-256 fallbacks."""
    kt = key_type(key)
    bits = key_bits(key)
    out = [
        s
        for s in _ALL
        if s.key_type is kt
        and (s.family is not _Family.RSA_PSS or rsa_pss)
        and (s.max_key_bits == 0 or bits <= s.max_key_bits)
    ]
    if kt is KeyType.RSA:
        out += [
            s
            for s in (SCHEMES["RSA_EMSA_PKCS1_SHA2_384"], SCHEMES["RSA_EMSA_PKCS1_SHA2_256"])
            if s not in out
        ]
    return out


def default_scheme(key: PrivateKey | PublicKey, *, rsa_pss: bool = False) -> SignatureScheme:
    """ML-DSA-N -> ML_DSA_N, P-256 -> ECDSA SHA-256, RSA <= 3072 -> PKCS#1 SHA-256, ..."""
    return schemes_for_key(key, rsa_pss=rsa_pss)[0]


def select_scheme(
    key: PrivateKey | PublicKey, peer_hashes: Iterable[int], *, rsa_pss: bool = False
) -> SignatureScheme:
    """The first candidate whose hash the peer announced in SIGNATURE_HASH_ALGORITHMS."""
    allowed = set(peer_hashes)
    for scheme in schemes_for_key(key, rsa_pss=rsa_pss):
        if scheme.hash_algorithm in allowed:
            return scheme
    raise NoCommonScheme(
        f"no common hash algorithm found to create signature with {key_type(key)} key "
        f"(peer supports {sorted(allowed)})"
    )


# --- classic (pre-RFC 7427) methods -------------------------------------------------------

_CLASSIC_ECDSA: dict[AuthMethod, tuple[str, type[hashes.HashAlgorithm], int]] = {
    # RFC 4754: curve, hash, and r|s each zero-padded to the field size
    AuthMethod.ECDSA_SHA256_P256: ("secp256r1", hashes.SHA256, 32),
    AuthMethod.ECDSA_SHA384_P384: ("secp384r1", hashes.SHA384, 48),
    AuthMethod.ECDSA_SHA512_P521: ("secp521r1", hashes.SHA512, 66),
}


def classic_method_for_key(key: PrivateKey | PublicKey) -> AuthMethod:
    """RSA -> RSA_SIG (1), P-256/384/521 -> ECDSA 9/10/11; others have no classic method."""
    kt = key_type(key)
    if kt is KeyType.RSA:
        return AuthMethod.RSA_SIG
    if kt is KeyType.ECDSA:
        curve = key.curve.name  # type: ignore[union-attr]
        for method, (name, _h, _n) in _CLASSIC_ECDSA.items():
            if name == curve:
                return method
        raise KeyMismatch(f"no classic ECDSA auth method for curve {curve}")
    raise KeyMismatch(f"{kt} keys need the RFC 7427 Digital Signature method (14)")


def _check_classic(method: AuthMethod, key: PrivateKey | PublicKey) -> None:
    if classic_method_for_key(key) != method:
        raise KeyMismatch(
            f"auth method {AuthMethod(method).name} does not fit a "
            f"{key_type(key)} {key_bits(key)} bit key"
        )


def classic_sign(method: AuthMethod, private_key: PrivateKey, octets: bytes) -> bytes:
    """RSA_SIG: PKCS#1 v1.5 with SHA-1 (as strongSwan's AUTH_RSA); ECDSA: raw r|s."""
    _check_classic(method, private_key)
    if method == AuthMethod.RSA_SIG:
        assert isinstance(private_key, rsa.RSAPrivateKey)
        return private_key.sign(octets, padding.PKCS1v15(), hashes.SHA1())
    assert isinstance(private_key, ec.EllipticCurvePrivateKey)
    _curve, hash_cls, size = _CLASSIC_ECDSA[method]
    r, s = utils.decode_dss_signature(private_key.sign(octets, ec.ECDSA(hash_cls())))
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def classic_verify(
    method: AuthMethod, public_key: PublicKey, octets: bytes, signature: bytes
) -> bool:
    _check_classic(method, public_key)
    try:
        if method == AuthMethod.RSA_SIG:
            assert isinstance(public_key, rsa.RSAPublicKey)
            public_key.verify(signature, octets, padding.PKCS1v15(), hashes.SHA1())
            return True
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        _curve, hash_cls, size = _CLASSIC_ECDSA[method]
        if len(signature) != 2 * size:
            return False
        der = utils.encode_dss_signature(
            int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        )
        public_key.verify(der, octets, ec.ECDSA(hash_cls()))
        return True
    except InvalidSignature:
        return False
