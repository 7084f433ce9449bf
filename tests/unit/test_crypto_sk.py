"""SkCipher: AEAD (RFC 5282 / RFC 7634) and AES-CBC + HMAC round trips, tampering, errors."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from pqike.crypto.algorithms import IkeSuite, UnsupportedTransform, encr_key_len, integ_spec
from pqike.crypto.keyschedule import IkeKeys
from pqike.crypto.mac import integ_icv
from pqike.crypto.sk import Direction, IntegrityError, SkCipher, SkFormatError
from pqike.wire.iana import EncrId, IntegId, PrfId

AEAD = [
    (EncrId.AES_GCM_16, 128),
    (EncrId.AES_GCM_16, 256),
    (EncrId.AES_GCM_12, 192),
    (EncrId.AES_GCM_8, 256),
    (EncrId.AES_CCM_16, 128),
    (EncrId.AES_CCM_8, 256),
    (EncrId.CHACHA20_POLY1305, None),
]
CBC = [
    (128, IntegId.HMAC_SHA1_96),
    (256, IntegId.HMAC_SHA2_256_128),
    (192, IntegId.HMAC_SHA2_384_192),
    (256, IntegId.HMAC_SHA2_512_256),
    (128, IntegId.AES_XCBC_96),
    (128, IntegId.AES_CMAC_96),
]
ASSOC = bytes(28) + b"\x21\x00\x00\x00"  # stand-in IKE header + SK generic header


def make(encr: EncrId, bits: int | None, integ: IntegId = IntegId.NONE) -> SkCipher:
    ikey = os.urandom(integ_spec(integ).key_len) if integ != IntegId.NONE else b""
    return SkCipher(encr, bits, integ, os.urandom(encr_key_len(encr, bits)), ikey)


ALL = [make(e, b) for e, b in AEAD] + [make(EncrId.AES_CBC, b, i) for b, i in CBC]


@pytest.mark.parametrize("cipher", ALL, ids=repr)
@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 100])
def test_round_trip_and_length(cipher: SkCipher, n: int) -> None:
    plain = os.urandom(n)
    body = cipher.seal(ASSOC, plain)
    assert len(body) == cipher.sealed_length(n)
    assert (len(body) - cipher.iv_len - cipher.icv_len) % cipher.block_size == 0
    assert cipher.open(ASSOC, body) == plain


@pytest.mark.parametrize("cipher", ALL, ids=repr)
def test_tampering_detected(cipher: SkCipher) -> None:
    body = cipher.seal(ASSOC, b"payload bytes")
    for pos in (0, cipher.iv_len, len(body) - 1):  # IV, ciphertext, ICV
        bad = bytearray(body)
        bad[pos] ^= 0x01
        with pytest.raises(IntegrityError):
            cipher.open(ASSOC, bytes(bad))
    with pytest.raises(IntegrityError):
        cipher.open(b"\x01" + ASSOC[1:], body)  # associated data is authenticated


def test_sizes_and_padding_block() -> None:
    gcm = make(EncrId.AES_GCM_16, 256)
    assert (gcm.iv_len, gcm.icv_len, gcm.block_size) == (8, 16, 1)
    assert gcm.sealed_length(10) == 8 + 11 + 16  # AEAD: just the Pad Length byte
    cbc = make(EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_256_128)
    assert (cbc.iv_len, cbc.icv_len, cbc.block_size) == (16, 16, 16)
    assert cbc.sealed_length(1192) == 16 + 1200 + 16  # strongSwan's IKE_INTERMEDIATE #1
    assert cbc.sealed_length(16) == 16 + 32 + 16  # full block of padding when aligned
    ccm = make(EncrId.AES_CCM_8, 128)
    assert (ccm.iv_len, ccm.icv_len) == (8, 8)


@pytest.mark.parametrize(
    ("encr", "bits", "aead", "salt_len"),
    [
        (EncrId.AES_GCM_16, 256, lambda k: AESGCM(k), 4),
        (EncrId.CHACHA20_POLY1305, None, lambda k: ChaCha20Poly1305(k), 4),
        (EncrId.AES_CCM_16, 128, lambda k: AESCCM(k, 16), 3),
    ],
)
def test_aead_nonce_is_salt_then_iv(encr: EncrId, bits: int | None, aead, salt_len: int) -> None:
    """RFC 5282 §4 / RFC 7634 §2 / RFC 4309: key material = key | salt, nonce = salt | IV."""
    keymat = os.urandom(encr_key_len(encr, bits))
    cipher = SkCipher(encr, bits, IntegId.NONE, keymat)
    iv = bytes.fromhex("0001020304050607")
    body = cipher.seal(ASSOC, b"hello", iv=iv)
    key, salt = keymat[:-salt_len], keymat[-salt_len:]
    expected = aead(key).encrypt(salt + iv, b"hello\x00", ASSOC)
    assert body == iv + expected


def test_aead_ivs_unique_and_counting() -> None:
    gcm = make(EncrId.AES_GCM_16, 128)
    ivs = [gcm.seal(b"", b"x")[:8] for _ in range(4)]
    nums = [int.from_bytes(iv, "big") for iv in ivs]
    assert len(set(ivs)) == 4
    assert all((b - a) % (1 << 64) == 1 for a, b in itertools.pairwise(nums))


def test_cbc_ivs_random() -> None:
    cbc = make(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128)
    assert cbc.seal(b"", b"x")[:16] != cbc.seal(b"", b"x")[:16]


def test_short_and_misaligned_bodies() -> None:
    cbc = make(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128)
    with pytest.raises(SkFormatError, match="shorter"):
        cbc.open(ASSOC, bytes(32))  # IV + ICV only
    with pytest.raises(SkFormatError, match="multiple"):
        cbc.open(ASSOC, bytes(16 + 15 + 16))
    gcm = make(EncrId.AES_GCM_16, 128)
    with pytest.raises(SkFormatError, match="shorter"):
        gcm.open(ASSOC, bytes(24))


def test_bad_pad_length_after_valid_icv() -> None:
    """An authentic body whose Pad Length (200) exceeds its 16-byte plaintext is rejected."""
    ekey, ikey, iv = os.urandom(16), os.urandom(32), os.urandom(16)
    cbc = SkCipher(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, ekey, ikey)
    enc = Cipher(algorithms.AES(ekey), modes.CBC(iv)).encryptor()
    ct = enc.update(bytes(15) + b"\xc8") + enc.finalize()
    body = iv + ct + integ_icv(IntegId.HMAC_SHA2_256_128, ikey, ASSOC + iv + ct)
    with pytest.raises(SkFormatError, match="Pad Length 200"):
        cbc.open(ASSOC, body)
    # The same block with a fitting Pad Length (15) opens to the empty plaintext.
    enc = Cipher(algorithms.AES(ekey), modes.CBC(iv)).encryptor()
    ct = enc.update(bytes(15) + b"\x0f") + enc.finalize()
    body = iv + ct + integ_icv(IntegId.HMAC_SHA2_256_128, ikey, ASSOC + iv + ct)
    assert cbc.open(ASSOC, body) == b""


def test_key_and_iv_validation() -> None:
    with pytest.raises(ValueError, match="36-byte key"):
        SkCipher(EncrId.AES_GCM_16, 256, IntegId.NONE, bytes(32))
    with pytest.raises(ValueError, match="32-byte key"):
        SkCipher(EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_256_128, bytes(32), bytes(20))
    with pytest.raises(UnsupportedTransform, match="INTEG must be NONE"):
        SkCipher(EncrId.AES_GCM_16, 128, IntegId.HMAC_SHA1_96, bytes(20), bytes(20))
    with pytest.raises(UnsupportedTransform, match="AES_CTR"):
        SkCipher(EncrId.AES_CTR, 128, IntegId.HMAC_SHA1_96, bytes(20), bytes(20))
    with pytest.raises(UnsupportedTransform, match="ENCR"):
        SkCipher(EncrId.TRIPLE_DES, None, IntegId.HMAC_SHA1_96, bytes(24), bytes(20))
    with pytest.raises(ValueError, match="8-byte IV"):
        make(EncrId.AES_GCM_16, 128).seal(b"", b"x", iv=bytes(12))


def test_for_ike_direction_selection() -> None:
    suite = IkeSuite(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, PrfId.HMAC_SHA2_256)
    kl = suite.key_lengths
    keys = IkeKeys(
        sk_d=os.urandom(kl.sk_d),
        sk_ai=os.urandom(32),
        sk_ar=os.urandom(32),
        sk_ei=os.urandom(16),
        sk_er=os.urandom(16),
        sk_pi=b"",
        sk_pr=b"",
    )
    i_out = SkCipher.for_ike(suite, keys, True, Direction.OUTBOUND)
    r_in = SkCipher.for_ike(suite, keys, False, "in")
    r_out = SkCipher.for_ike(suite, keys, False, Direction.OUTBOUND)
    i_in = SkCipher.for_ike(suite, keys, True, "in")
    assert r_in.open(ASSOC, i_out.seal(ASSOC, b"request")) == b"request"
    assert i_in.open(ASSOC, r_out.seal(ASSOC, b"response")) == b"response"
    with pytest.raises(IntegrityError):
        i_in.open(ASSOC, i_out.seal(ASSOC, b"reflected"))


def test_for_ike_per_key_update_work_is_per_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each RFC 9370 key update (three per 3 ML-KEM handshake) makes two SkCiphers: neither
    converts its direction through Direction() nor asks for the INTEG hash again; a bad
    direction is still a ValueError."""
    import pqike.crypto.sk as sk

    calls: list[object] = []
    real_hash = sk.integ_hash

    class CountingDirection:
        OUTBOUND, INBOUND = Direction.OUTBOUND, Direction.INBOUND

        def __new__(cls, value: str) -> Direction:  # type: ignore[misc]
            calls.append(value)
            return Direction(value)

    monkeypatch.setattr(sk, "Direction", CountingDirection)
    monkeypatch.setattr(sk, "integ_hash", _counting(real_hash, calls))
    sk._params.cache_clear()
    suite = IkeSuite(EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_256_128, PrfId.HMAC_SHA2_256)
    keys = IkeKeys(*(os.urandom(32) for _ in range(7)))
    SkCipher.for_ike(suite, keys, False, "out")  # the suite's first cipher: its hash once
    calls.clear()
    pairs = [
        (SkCipher.for_ike(suite, keys, i, "out"), SkCipher.for_ike(suite, keys, not i, "in"))
        for i in (True, False)
    ]
    assert calls == []  # before: 4 Direction() and 4 integ_hash calls
    for sender, receiver in pairs:
        assert receiver.open(ASSOC, sender.seal(ASSOC, b"x")) == b"x"
    with pytest.raises(ValueError, match="not a valid Direction"):
        SkCipher.for_ike(suite, keys, True, "sideways")


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=40))
def test_round_trip_property(plain: bytes, assoc: bytes) -> None:
    for cipher in (ALL[0], ALL[-1]):
        assert cipher.open(assoc, cipher.seal(assoc, plain)) == plain


def test_suite_checked_once_not_per_cipher(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key update makes two SkCiphers (and asks the key lengths): the transform specs
    of a suite are looked up once; a bad suite still raises each time."""
    import pqike.crypto.algorithms as algorithms
    import pqike.crypto.sk as sk

    looked_up: list[int] = []
    counting = _counting(sk.encr_spec, looked_up)
    monkeypatch.setattr(sk, "encr_spec", counting)
    monkeypatch.setattr(algorithms, "encr_spec", counting)
    sk._params.cache_clear()
    algorithms._key_lengths.cache_clear()
    suite = IkeSuite(EncrId.AES_CBC, 192, IntegId.HMAC_SHA2_384_192, PrfId.HMAC_SHA2_384)
    looked_up.clear()  # IkeSuite checks itself once when made
    lengths = [suite.key_lengths for _ in range(3)]
    keys = IkeKeys(*(os.urandom(n) for n in (48, 48, 48, 24, 24, 48, 48)))
    ciphers = [SkCipher.for_ike(suite, keys, i, d) for i in (True, False) for d in ("in", "out")]
    assert len(looked_up) == 4  # twice (itself, encr_key_len) for the lengths, the ciphers
    assert (lengths[0].sk_e, lengths[0].sk_a) == (24, 48)
    assert ciphers[0].open(ASSOC, ciphers[3].seal(ASSOC, b"x")) == b"x"
    for _ in range(2):
        with pytest.raises(UnsupportedTransform):
            SkCipher(EncrId.AES_GCM_16, 128, IntegId.HMAC_SHA2_256_128, bytes(20))


@pytest.mark.parametrize("integ", [IntegId.HMAC_SHA1_96, IntegId.HMAC_SHA2_512_256])
def test_hmac_icv_without_dispatch(monkeypatch: pytest.MonkeyPatch, integ: IntegId) -> None:
    """The HMAC ICV of a sealed body is computed in place (no integ_icv dispatch per
    message) and equals integ_icv() over the same octets."""
    import pqike.crypto.sk as sk

    ekey, ikey, iv = os.urandom(16), os.urandom(integ_spec(integ).key_len), os.urandom(16)
    cbc = SkCipher(EncrId.AES_CBC, 128, integ, ekey, ikey)

    def dispatched(*args: object) -> bytes:
        raise AssertionError("integ_icv dispatch for an HMAC transform")

    monkeypatch.setattr(sk, "integ_icv", dispatched)
    body = cbc.seal(ASSOC, b"payload", iv)
    assert cbc.open(ASSOC, body) == b"payload"
    monkeypatch.undo()
    icv_len = integ_spec(integ).icv_len
    assert body[-icv_len:] == integ_icv(integ, ikey, ASSOC + body[:-icv_len])


def test_sk_cipher_has_no_instance_dict() -> None:
    """Every IKE_SA, half-open ones included, holds two SkCiphers: they carry no __dict__."""
    gcm = make(EncrId.AES_GCM_16, 128)
    cbc = SkCipher(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, bytes(16), bytes(32))
    for cipher in (gcm, cbc):
        assert not hasattr(cipher, "__dict__")
        with pytest.raises(AttributeError):
            cipher.spare = 1  # type: ignore[attr-defined]


def test_hmac_keyed_once_per_cipher(monkeypatch: pytest.MonkeyPatch) -> None:
    """The HMAC is keyed when the cipher is made (after the response that derived the keys)
    and copied per message; every ICV is still RFC 4868's HMAC, truncated."""
    import hashlib
    import hmac as std_hmac

    from pqike.crypto import sk as sk_mod

    integ_key = os.urandom(32)
    sender = SkCipher(EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_256_128, bytes(32), integ_key)
    receiver = SkCipher(EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_256_128, bytes(32), integ_key)
    made: list[bytes] = []
    real = sk_mod._chmac.HMAC

    def counting(key: bytes, algorithm, backend=None):  # type: ignore[no-untyped-def]
        made.append(key)
        return real(key, algorithm)

    monkeypatch.setattr(sk_mod._chmac, "HMAC", counting)
    for n in (0, 40, 1000):
        aad = os.urandom(28)
        body = sender.seal(aad, os.urandom(n))
        icv = body[-16:]
        assert icv == std_hmac.new(integ_key, aad + body[:-16], hashlib.sha256).digest()[:16]
        receiver.open(aad, body)
    assert made == []


def _counting(real: Callable[[Any], object], log: list[Any]) -> Callable[[Any], object]:
    """``real``, noting each argument it is called with in ``log``."""

    def counting(arg: Any) -> object:
        log.append(arg)
        return real(arg)

    return counting
