"""RSA signature schemes for daemon.rsa_pss (charon.rsa_pss): which one we sign with, given
the peer's SIGNATURE_HASH_ALGORITHMS and the key size; PSS AlgorithmIdentifiers as RFC 7427
(and libreswan) have them; either padding verifies."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pqike.auth.errors import NoCommonScheme
from pqike.auth.keys import KeyType
from pqike.auth.payload import sign_auth_data, verify_auth_data
from pqike.auth.schemes import SCHEMES, schemes_for_key, select_scheme
from pqike.wire.iana import HashAlgorithm

OCTETS = b"RealMessage1|NonceRData|prf(SK_pi, IDi')" * 7


@pytest.fixture(scope="module")
def keys() -> dict[KeyType, object]:
    return {
        KeyType.RSA: rsa.generate_private_key(65537, 2048),
        KeyType.ECDSA: ec.generate_private_key(ec.SECP256R1()),
    }


def test_rsa_pss_choice_follows_peer_hashes(keys: dict[KeyType, object]) -> None:
    """charon.rsa_pss: PSS first (strongSwan's scheme_map), each needing its hash in the
    peer's SIGNATURE_HASH_ALGORITHMS; without a PSS hash in common, the PKCS#1 fallbacks."""
    rsa2048 = keys[KeyType.RSA]
    all_sha2 = [HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512]
    assert select_scheme(rsa2048, all_sha2, rsa_pss=True).log_name == (  # type: ignore[arg-type]
        "RSA_EMSA_PSS_SHA2_256_SALT_32"
    )
    assert select_scheme(rsa2048, all_sha2).name == "RSA_EMSA_PKCS1_SHA2_256"  # type: ignore[arg-type]
    only_512 = [HashAlgorithm.SHA2_512, HashAlgorithm.IDENTITY]
    assert select_scheme(rsa2048, only_512, rsa_pss=True).log_name == (  # type: ignore[arg-type]
        "RSA_EMSA_PSS_SHA2_512_SALT_64"
    )
    # a 4096-bit key is past SHA-256's 3072-bit limit in the scheme map: SHA-384 first
    rsa4096 = rsa.generate_private_key(65537, 4096)
    assert [s.name for s in schemes_for_key(rsa4096, rsa_pss=True)][:2] == [
        "RSA_EMSA_PSS_SHA2_384",
        "RSA_EMSA_PSS_SHA2_512",
    ]
    assert select_scheme(rsa4096, [HashAlgorithm.SHA2_256], rsa_pss=True).name == (
        "RSA_EMSA_PKCS1_SHA2_256"
    )  # strongSwan's RSA fallback is PKCS#1, even with rsa_pss
    with pytest.raises(NoCommonScheme, match="RSA key"):
        select_scheme(rsa2048, [HashAlgorithm.SHA1], rsa_pss=True)  # type: ignore[arg-type]
    # rsa_pss concerns RSA keys only
    assert select_scheme(keys[KeyType.ECDSA], all_sha2, rsa_pss=True).name == (  # type: ignore[arg-type]
        "ECDSA_WITH_SHA256_DER"
    )


# RFC 7427 Appendix A.4.3, as libreswan 5.2 has them (include/ietf_constants.h
# ASN1_RSASSA_PSS_SHA2_*_BLOB): it compares the received AlgorithmIdentifier byte for byte
RFC7427_PSS = {
    "RSA_EMSA_PSS_SHA2_384": "304106092a864886f70d01010a3034a00f300d06096086480165030402020500"
    "a11c301a06092a864886f70d010108300d06096086480165030402020500a203020130",
    "RSA_EMSA_PSS_SHA2_512": "304106092a864886f70d01010a3034a00f300d06096086480165030402030500"
    "a11c301a06092a864886f70d010108300d06096086480165030402030500a203020140",
}


@pytest.mark.parametrize(("name", "der"), sorted(RFC7427_PSS.items()))
def test_pss_algorithm_identifiers_are_rfc7427s(name: str, der: str) -> None:
    assert SCHEMES[name].algorithm_identifier.hex() == der


@pytest.mark.parametrize(
    "signer",
    [
        "RSA_EMSA_PSS_SHA2_256",
        "RSA_EMSA_PKCS1_SHA2_256",
        "RSA_EMSA_PSS_SHA2_512",
        "RSA_EMSA_PKCS1_SHA2_384",
    ],
)
def test_verification_takes_either_padding(keys: dict[KeyType, object], signer: str) -> None:
    """Whatever rsa_pss says about our signatures, a peer's PSS or PKCS#1 v1.5 AUTH data
    verifies (the scheme comes from its AlgorithmIdentifier)."""
    key = keys[KeyType.RSA]
    data = sign_auth_data(key, OCTETS, SCHEMES[signer])  # type: ignore[arg-type]
    pub = key.public_key()  # type: ignore[attr-defined]
    ok = verify_auth_data(pub, OCTETS, data, [2, 3, 4])
    assert ok is not None and ok.scheme.name == signer
    assert verify_auth_data(pub, OCTETS + b"x", data, [2, 3, 4]) is None
