"""RFC 7427 scheme registry: AlgorithmIdentifier bytes, sign/verify round trips, tamper
detection, strongSwan's default scheme choice, and the classic methods 1 and 9-11."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, rsa

from pqike.auth.errors import KeyMismatch, NoCommonScheme
from pqike.auth.keys import FalconPrivateKey, KeyType
from pqike.auth.oqs_support import liboqs_unavailable_reason
from pqike.auth.schemes import (
    SCHEMES,
    classic_method_for_key,
    classic_sign,
    classic_verify,
    default_scheme,
    scheme_by_name,
    schemes_for_key,
    select_scheme,
)
from pqike.wire.iana import AuthMethod, HashAlgorithm

OQS_REASON = liboqs_unavailable_reason()
needs_oqs = pytest.mark.skipif(OQS_REASON is not None, reason=f"liboqs: {OQS_REASON}")

OCTETS = b"RealMessage1|NonceRData|prf(SK_pi, IDi')" * 7


@pytest.fixture(scope="module")
def keys() -> dict[KeyType, object]:
    out: dict[KeyType, object] = {
        KeyType.RSA: rsa.generate_private_key(65537, 2048),
        KeyType.ECDSA: ec.generate_private_key(ec.SECP256R1()),
        KeyType.ED25519: ed25519.Ed25519PrivateKey.generate(),
        KeyType.ED448: ed448.Ed448PrivateKey.generate(),
        KeyType.ML_DSA_44: mldsa.MLDSA44PrivateKey.generate(),
        KeyType.ML_DSA_65: mldsa.MLDSA65PrivateKey.generate(),
        KeyType.ML_DSA_87: mldsa.MLDSA87PrivateKey.generate(),
    }
    if OQS_REASON is None:
        out[KeyType.FALCON_512] = FalconPrivateKey.generate(KeyType.FALCON_512)
        out[KeyType.FALCON_1024] = FalconPrivateKey.generate(KeyType.FALCON_1024)
    return out


# Facts file §5b (PQA draft / strongSwan ml-dsa branch; SS 6.0beta6 for Falcon), RFC 8420
# (EdDSA), RFC 7427 App. A (ECDSA, PKCS#1 with NULL), and the RSASSA-PSS SHA-256/salt 32
# AlgorithmIdentifier from Chromium's verify_signed_data test data.
EXPECTED_ALG_IDS = {
    "ML_DSA_44": "300b0609608648016503040311",
    "ML_DSA_65": "300b0609608648016503040312",
    "ML_DSA_87": "300b0609608648016503040313",
    "FALCON_512": "300706052bce0f0301",
    "FALCON_1024": "300706052bce0f0304",
    "ED25519": "300506032b6570",
    "ED448": "300506032b6571",
    "ECDSA_WITH_SHA256_DER": "300a06082a8648ce3d040302",
    "ECDSA_WITH_SHA384_DER": "300a06082a8648ce3d040303",
    "ECDSA_WITH_SHA512_DER": "300a06082a8648ce3d040304",
    "RSA_EMSA_PKCS1_SHA2_256": "300d06092a864886f70d01010b0500",
    "RSA_EMSA_PKCS1_SHA2_384": "300d06092a864886f70d01010c0500",
    "RSA_EMSA_PKCS1_SHA2_512": "300d06092a864886f70d01010d0500",
    "RSA_EMSA_PSS_SHA2_256": "304106092a864886f70d01010a3034a00f300d06096086480165030402010500"
    "a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120",
}


def test_registry_has_every_scheme_from_the_brief() -> None:
    assert set(SCHEMES) == set(EXPECTED_ALG_IDS) | {
        "RSA_EMSA_PSS_SHA2_384",
        "RSA_EMSA_PSS_SHA2_512",
    }


@pytest.mark.parametrize(("name", "der"), sorted(EXPECTED_ALG_IDS.items()))
def test_algorithm_identifier_bytes(name: str, der: str) -> None:
    assert SCHEMES[name].algorithm_identifier.hex() == der


def test_implied_ikev2_hash() -> None:
    identity = {n for n, s in SCHEMES.items() if s.hash_algorithm is HashAlgorithm.IDENTITY}
    assert identity == {
        "ML_DSA_44",
        "ML_DSA_65",
        "ML_DSA_87",
        "FALCON_512",
        "FALCON_1024",
        "ED25519",
        "ED448",
    }
    assert SCHEMES["RSA_EMSA_PSS_SHA2_384"].hash_algorithm is HashAlgorithm.SHA2_384
    assert SCHEMES["ECDSA_WITH_SHA512_DER"].hash_algorithm is HashAlgorithm.SHA2_512
    assert SCHEMES["RSA_EMSA_PSS_SHA2_256"].log_name == "RSA_EMSA_PSS_SHA2_256_SALT_32"


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_sign_verify_round_trip_and_tamper(name: str, keys: dict[KeyType, object]) -> None:
    scheme = SCHEMES[name]
    if scheme.key_type not in keys:
        pytest.skip(f"liboqs: {OQS_REASON}")
    key = keys[scheme.key_type]
    pub = key.public_key()  # type: ignore[attr-defined]
    sig = scheme.sign(key, OCTETS)  # type: ignore[arg-type]
    assert scheme.verify(pub, OCTETS, sig)
    bad_sig = bytearray(sig)
    bad_sig[len(sig) // 2] ^= 0x01
    assert not scheme.verify(pub, OCTETS, bytes(bad_sig))
    assert not scheme.verify(pub, OCTETS[:-1] + b"!", sig)
    assert not scheme.verify(pub, OCTETS, sig[:-1])


def test_ml_dsa_is_pure_with_empty_context(keys: dict[KeyType, object]) -> None:
    key = keys[KeyType.ML_DSA_65]
    sig = SCHEMES["ML_DSA_65"].sign(key, OCTETS)  # type: ignore[arg-type]
    key.public_key().verify(sig, OCTETS)  # type: ignore[attr-defined] # no context, unhashed
    assert len(sig) == 3309


def test_scheme_rejects_key_of_other_type(keys: dict[KeyType, object]) -> None:
    with pytest.raises(KeyMismatch, match="ML_DSA_87 needs a ML_DSA_87 key, got ML_DSA_65"):
        SCHEMES["ML_DSA_87"].sign(keys[KeyType.ML_DSA_65], OCTETS)  # type: ignore[arg-type]
    with pytest.raises(KeyMismatch):
        SCHEMES["ECDSA_WITH_SHA256_DER"].verify(keys[KeyType.RSA].public_key(), OCTETS, b"x")  # type: ignore[attr-defined]


@needs_oqs
def test_falcon_signature_sizes(keys: dict[KeyType, object]) -> None:
    for kt, limit in ((KeyType.FALCON_512, 752), (KeyType.FALCON_1024, 1462)):
        sig = default_scheme(keys[kt]).sign(keys[kt], OCTETS)  # type: ignore[arg-type]
        assert 0 < len(sig) <= limit


def test_default_schemes(keys: dict[KeyType, object]) -> None:
    for kt in (
        KeyType.ML_DSA_44,
        KeyType.ML_DSA_65,
        KeyType.ML_DSA_87,
        KeyType.ED25519,
        KeyType.ED448,
    ):
        assert default_scheme(keys[kt]).name == kt.value  # type: ignore[arg-type]
    assert default_scheme(keys[KeyType.ECDSA]).name == "ECDSA_WITH_SHA256_DER"  # type: ignore[arg-type]
    p384 = ec.generate_private_key(ec.SECP384R1())
    assert [s.name for s in schemes_for_key(p384)] == [
        "ECDSA_WITH_SHA384_DER",
        "ECDSA_WITH_SHA512_DER",
    ]
    # strongSwan: RSA PKCS#1 v1.5 unless charon.rsa_pss = yes; SHA-256 up to 3072 bits
    rsa2048 = keys[KeyType.RSA]
    assert [s.name for s in schemes_for_key(rsa2048)] == [  # type: ignore[arg-type]
        "RSA_EMSA_PKCS1_SHA2_256",
        "RSA_EMSA_PKCS1_SHA2_384",
        "RSA_EMSA_PKCS1_SHA2_512",
    ]
    assert default_scheme(rsa2048, rsa_pss=True).name == "RSA_EMSA_PSS_SHA2_256"  # type: ignore[arg-type]
    rsa4096 = rsa.generate_private_key(65537, 4096)
    assert [s.name for s in schemes_for_key(rsa4096)] == [
        "RSA_EMSA_PKCS1_SHA2_384",
        "RSA_EMSA_PKCS1_SHA2_512",
        "RSA_EMSA_PKCS1_SHA2_256",
    ]


def test_select_scheme_honours_peer_hashes(keys: dict[KeyType, object]) -> None:
    mldsa87 = keys[KeyType.ML_DSA_87]
    assert select_scheme(mldsa87, [2, 5]).name == "ML_DSA_87"  # type: ignore[arg-type]
    with pytest.raises(NoCommonScheme, match="ML_DSA_87 key"):
        select_scheme(mldsa87, [HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_512])  # type: ignore[arg-type]
    assert select_scheme(keys[KeyType.RSA], [4]).name == "RSA_EMSA_PKCS1_SHA2_512"  # type: ignore[arg-type]


def test_scheme_by_name() -> None:
    assert scheme_by_name("ecdsa_with_sha384") is SCHEMES["ECDSA_WITH_SHA384_DER"]
    assert scheme_by_name("ml_dsa_44") is SCHEMES["ML_DSA_44"]
    with pytest.raises(KeyError):
        scheme_by_name("DILITHIUM_5")


@pytest.mark.parametrize(
    ("curve", "method", "size"),
    [
        (ec.SECP256R1(), AuthMethod.ECDSA_SHA256_P256, 64),
        (ec.SECP384R1(), AuthMethod.ECDSA_SHA384_P384, 96),
        (ec.SECP521R1(), AuthMethod.ECDSA_SHA512_P521, 132),
    ],
)
def test_classic_ecdsa(curve: ec.EllipticCurve, method: AuthMethod, size: int) -> None:
    key = ec.generate_private_key(curve)
    assert classic_method_for_key(key) == method
    sig = classic_sign(method, key, OCTETS)
    assert len(sig) == size  # RFC 4754: fixed-size r|s, not DER
    assert classic_verify(method, key.public_key(), OCTETS, sig)
    assert not classic_verify(method, key.public_key(), OCTETS + b"x", sig)
    assert not classic_verify(method, key.public_key(), OCTETS, sig[:-1])


def test_classic_rsa_and_mismatches(keys: dict[KeyType, object]) -> None:
    key = keys[KeyType.RSA]
    assert classic_method_for_key(key) == AuthMethod.RSA_SIG  # type: ignore[arg-type]
    sig = classic_sign(AuthMethod.RSA_SIG, key, OCTETS)  # type: ignore[arg-type]
    pub = key.public_key()  # type: ignore[attr-defined]
    assert classic_verify(AuthMethod.RSA_SIG, pub, OCTETS, sig)
    assert not classic_verify(AuthMethod.RSA_SIG, pub, OCTETS, bytes(len(sig)))
    with pytest.raises(KeyMismatch):
        classic_sign(AuthMethod.ECDSA_SHA256_P256, key, OCTETS)  # type: ignore[arg-type]
    with pytest.raises(KeyMismatch, match="Digital Signature method"):
        classic_method_for_key(keys[KeyType.ML_DSA_44])  # type: ignore[arg-type]
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(KeyMismatch):
        classic_sign(AuthMethod.ECDSA_SHA256_P256, p384, OCTETS)
