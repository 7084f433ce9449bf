"""Key generation, PEM round trips (Falcon's own format included) and key sizes."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from pqike.auth import _der
from pqike.auth.errors import AuthError
from pqike.auth.keys import (
    FALCON_OIDS,
    FalconPrivateKey,
    KeyType,
    generate_private_key,
    key_bits,
    key_type,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_pem,
    spki_der,
)
from pqike.auth.oqs_support import liboqs_unavailable_reason

OQS_REASON = liboqs_unavailable_reason()
needs_oqs = pytest.mark.skipif(OQS_REASON is not None, reason=f"liboqs: {OQS_REASON}")

CLASSIC_AND_MLDSA = [
    (KeyType.ML_DSA_44, 1312 * 8),
    (KeyType.ML_DSA_65, 1952 * 8),
    (KeyType.ML_DSA_87, 2592 * 8),
    (KeyType.ED25519, 256),
    (KeyType.ED448, 456),
    (KeyType.ECDSA, 256),
    (KeyType.RSA, 2048),
]


@pytest.mark.parametrize(("kt", "bits"), CLASSIC_AND_MLDSA)
def test_pem_round_trip_and_bits(kt: KeyType, bits: int) -> None:
    key = generate_private_key(kt, bits=2048 if kt is KeyType.RSA else None)
    assert key_type(key) is kt and key_bits(key) == bits
    loaded = load_private_key(private_key_pem(key))
    assert spki_der(loaded) == spki_der(key)
    pub = load_public_key(public_key_pem(key))
    assert spki_der(pub) == spki_der(key) and key_type(pub) is kt


def test_encrypted_pem_and_der() -> None:
    key = generate_private_key(KeyType.ECDSA, curve=ec.SECP384R1())
    pem = private_key_pem(key, b"pw")
    assert b"ENCRYPTED" in pem
    assert spki_der(load_private_key(pem, b"pw")) == spki_der(key)
    with pytest.raises(AuthError, match="cannot load private key"):
        load_private_key(pem, b"wrong")
    assert key_bits(load_public_key(spki_der(key))) == 384


def test_garbage_is_rejected() -> None:
    with pytest.raises(AuthError):
        load_private_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(AuthError):
        load_public_key(b"not a key")


@needs_oqs
@pytest.mark.parametrize(
    ("kt", "pk_len", "sk_len"), [(KeyType.FALCON_512, 897, 1281), (KeyType.FALCON_1024, 1793, 2305)]
)
def test_falcon_key_format(kt: KeyType, pk_len: int, sk_len: int) -> None:
    key = generate_private_key(kt)
    assert isinstance(key, FalconPrivateKey)
    assert len(key.public.raw) == pk_len and len(key.secret) == sk_len
    assert key_bits(key) == 8 * pk_len
    spki = spki_der(key)
    alg, bits = _der.read_all(_der.read_single(spki).value)
    assert _der.parse_algorithm_identifier(alg.encoded) == (FALCON_OIDS[kt], None)
    assert bits.value == b"\x00" + key.public.raw
    pem = private_key_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    again = load_private_key(pem)
    assert isinstance(again, FalconPrivateKey)
    assert again.secret == key.secret and again.public == key.public
    assert load_public_key(public_key_pem(key)) == key.public
    assert key.secret[:16].hex() not in repr(key).replace(", ", "")  # repr hides the secret
    assert "secret=" not in repr(key)


def test_falcon_without_liboqs_raises_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pqike.auth import oqs_support
    from pqike.auth.errors import LiboqsUnavailable

    monkeypatch.setattr(oqs_support, "_status", lambda: (None, "liboqs not found in ~/_oqs"))
    with pytest.raises(LiboqsUnavailable, match=r"^Falcon needs liboqs: liboqs not found"):
        generate_private_key(KeyType.FALCON_512)
