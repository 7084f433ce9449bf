"""Method-14 AUTH data and SIGNATURE_HASH_ALGORITHMS notify data."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, padding, rsa

from pqike.auth import _der
from pqike.auth.errors import (
    AuthDataError,
    KeyMismatch,
    SchemeNotAllowed,
    TruncatedAuthData,
    UnknownAlgorithmIdentifier,
)
from pqike.auth.payload import (
    DEFAULT_SIGNATURE_HASH_ALGORITHMS,
    build_signature_auth_data,
    decode_signature_hash_algorithms,
    encode_signature_hash_algorithms,
    parse_signature_auth_data,
    sign_auth_data,
    verify_auth_data,
)
from pqike.auth.schemes import SCHEMES, scheme_from_algorithm_identifier
from pqike.wire.iana import HashAlgorithm

OCTETS = b"signed octets" * 20


@pytest.fixture(scope="module")
def mldsa87() -> mldsa.MLDSA87PrivateKey:
    return mldsa.MLDSA87PrivateKey.generate()


def test_ml_dsa_87_auth_data_layout(mldsa87: mldsa.MLDSA87PrivateKey) -> None:
    data = sign_auth_data(mldsa87, OCTETS, SCHEMES["ML_DSA_87"])
    assert data[0] == 13
    assert data[1:14].hex() == "300b0609608648016503040313"
    assert len(data) == 1 + 13 + 4627
    parsed = verify_auth_data(mldsa87.public_key(), OCTETS, data, [HashAlgorithm.IDENTITY])
    assert parsed is not None and parsed.scheme.name == "ML_DSA_87"
    assert parsed.encode() == data
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    assert verify_auth_data(mldsa87.public_key(), OCTETS, tampered) is None
    assert verify_auth_data(mldsa87.public_key(), OCTETS + b"x", data) is None


def test_scheme_must_fit_the_peer_key(mldsa87: mldsa.MLDSA87PrivateKey) -> None:
    data = sign_auth_data(mldsa87, OCTETS, SCHEMES["ML_DSA_87"])
    other = mldsa.MLDSA65PrivateKey.generate().public_key()
    with pytest.raises(KeyMismatch):
        verify_auth_data(other, OCTETS, data)


def test_parse_errors() -> None:
    with pytest.raises(TruncatedAuthData, match="empty"):
        parse_signature_auth_data(b"")
    ml = SCHEMES["ML_DSA_44"].algorithm_identifier
    with pytest.raises(TruncatedAuthData, match="13 bytes announced, 5 present"):
        parse_signature_auth_data(bytes([len(ml)]) + ml[:5])
    with pytest.raises(TruncatedAuthData, match="no signature"):
        parse_signature_auth_data(bytes([len(ml)]) + ml)
    unknown = _der.algorithm_identifier("1.2.3.4.5")
    with pytest.raises(UnknownAlgorithmIdentifier, match=r"OID 1\.2\.3\.4\.5"):
        parse_signature_auth_data(bytes([len(unknown)]) + unknown + b"sig")
    garbage = b"\x30\x03\x02\x01\x00"
    with pytest.raises(UnknownAlgorithmIdentifier):
        parse_signature_auth_data(bytes([len(garbage)]) + garbage + b"sig")
    with pytest.raises(UnknownAlgorithmIdentifier, match="zero-length"):
        parse_signature_auth_data(b"\x00sig")
    # ML-DSA with parameters is not what the PQA draft allows
    with_params = _der.algorithm_identifier("2.16.840.1.101.3.4.3.17", b"\x02\x01\x00")
    with pytest.raises(UnknownAlgorithmIdentifier, match="unexpected parameters"):
        parse_signature_auth_data(bytes([len(with_params)]) + with_params + b"sig")
    assert issubclass(UnknownAlgorithmIdentifier, AuthDataError)


def test_scheme_not_allowed_by_signature_hash_algorithms() -> None:
    ml = SCHEMES["ML_DSA_65"]
    data = build_signature_auth_data(ml, b"\x01" * 3309)
    with pytest.raises(
        SchemeNotAllowed,
        match="needs hash IDENTITY, not in "
        r"SIGNATURE_HASH_ALGORITHMS \(SHA2_256, SHA2_512\)",
    ):
        parse_signature_auth_data(data, [HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_512])
    assert parse_signature_auth_data(data, DEFAULT_SIGNATURE_HASH_ALGORITHMS).scheme is ml
    assert parse_signature_auth_data(data).scheme is ml  # no check requested


def test_null_parameters_tolerated_like_strongswan() -> None:
    alg = _der.algorithm_identifier("1.2.840.10045.4.3.2", b"\x05\x00")
    assert scheme_from_algorithm_identifier(alg) is SCHEMES["ECDSA_WITH_SHA256_DER"]
    absent = _der.algorithm_identifier("1.2.840.113549.1.1.11")
    assert scheme_from_algorithm_identifier(absent) is SCHEMES["RSA_EMSA_PKCS1_SHA2_256"]


def test_pss_parameters_are_parsed_and_honoured() -> None:
    # explicit default trailerField: still the registry scheme
    reg = SCHEMES["RSA_EMSA_PSS_SHA2_384"]
    params = _der.read_single(reg.algorithm_identifier).value
    oid_tlv, seq = _der.read_all(params)
    with_trailer = _der.tlv(
        0x30, oid_tlv.encoded + _der.tlv(0x30, seq.value + _der.tlv(0xA3, _der.encode_uint(1)))
    )
    assert scheme_from_algorithm_identifier(with_trailer) is reg
    # SHA-256 with a 20-byte salt (salt field omitted = DEFAULT 20)
    odd = _der.algorithm_identifier(
        "1.2.840.113549.1.1.10",
        _der.tlv(
            0x30,
            _der.tlv(0xA0, _der.algorithm_identifier("2.16.840.1.101.3.4.2.1", b"\x05\x00"))
            + _der.tlv(
                0xA1,
                _der.algorithm_identifier(
                    "1.2.840.113549.1.1.8", _der.algorithm_identifier("2.16.840.1.101.3.4.2.1")
                ),
            ),
        ),
    )
    scheme = scheme_from_algorithm_identifier(odd)
    assert scheme.log_name == "RSA_EMSA_PSS_SHA2_256_SALT_20"
    assert scheme.hash_algorithm is HashAlgorithm.SHA2_256
    key = rsa.generate_private_key(65537, 2048)
    sig = key.sign(OCTETS, padding.PSS(padding.MGF1(hashes.SHA256()), 20), hashes.SHA256())
    assert scheme.verify(key.public_key(), OCTETS, sig)
    assert not SCHEMES["RSA_EMSA_PSS_SHA2_256"].verify(key.public_key(), OCTETS, sig)
    # SHA-1 PSS defaults: parameters SEQUENCE {} -> hash SHA1
    sha1 = _der.algorithm_identifier("1.2.840.113549.1.1.10", b"\x30\x00")
    assert scheme_from_algorithm_identifier(sha1).hash_algorithm is HashAlgorithm.SHA1


def test_ecdsa_auth_data_round_trip() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    data = sign_auth_data(key, OCTETS, SCHEMES["ECDSA_WITH_SHA384_DER"])
    assert verify_auth_data(key.public_key(), OCTETS, data, [3]) is not None


def test_signature_hash_algorithms_round_trip() -> None:
    data = encode_signature_hash_algorithms(DEFAULT_SIGNATURE_HASH_ALGORITHMS)
    assert data.hex() == "0002000300040005"
    assert decode_signature_hash_algorithms(data) == DEFAULT_SIGNATURE_HASH_ALGORITHMS
    mixed = decode_signature_hash_algorithms(bytes.fromhex("00050008ffff"))
    assert mixed == (HashAlgorithm.IDENTITY, 8, 0xFFFF)
    assert decode_signature_hash_algorithms(b"") == ()
    with pytest.raises(AuthDataError, match="odd length 3"):
        decode_signature_hash_algorithms(b"\x00\x02\x00")
