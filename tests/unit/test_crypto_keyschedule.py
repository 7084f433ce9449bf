"""Key schedule formulas independent of the strongSwan capture: rekey, child splits, XCBC
nonce truncation, IntAuth framing, PSK AUTH."""

from __future__ import annotations

import pytest

from pqike.crypto.algorithms import (
    IkeSuite,
    KeyLengths,
    UnsupportedTransform,
    encr_key_len,
    encr_spec,
    integ_spec,
    prf_spec,
)
from pqike.crypto.keyschedule import (
    KEY_PAD,
    derive_child_keys,
    derive_ike_keys,
    initiator_signed_octets,
    int_auth,
    int_auth_octets,
    psk_auth,
    rekey_ike_keys,
    skeyseed,
    skeyseed_rekey,
    update_ike_keys,
    verify_psk_auth,
)
from pqike.crypto.prf import prf, prf_plus
from pqike.wire.iana import EncrId, IntegId, PrfId

S256 = PrfId.HMAC_SHA2_256
NI, NR = bytes(range(32)), bytes(range(100, 132))
SPI_I, SPI_R = bytes.fromhex("0102030405060708"), bytes.fromhex("1112131415161718")


def test_key_lengths_per_suite() -> None:
    cbc = IkeSuite(EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_512_256, PrfId.HMAC_SHA2_384)
    assert cbc.key_lengths == KeyLengths(sk_d=48, sk_a=64, sk_e=32, sk_p=48)
    gcm = IkeSuite(EncrId.AES_GCM_16, 128, IntegId.NONE, PrfId.AES128_XCBC)
    assert gcm.key_lengths == KeyLengths(sk_d=16, sk_a=0, sk_e=20, sk_p=16)
    chacha = IkeSuite(EncrId.CHACHA20_POLY1305, None, IntegId.NONE, PrfId.HMAC_SHA2_256)
    assert chacha.key_lengths.sk_e == 36
    assert encr_key_len(EncrId.AES_CCM_12, 192) == 24 + 3


def test_suite_validation() -> None:
    with pytest.raises(UnsupportedTransform, match="Key Length"):
        IkeSuite(EncrId.AES_CBC, None, IntegId.HMAC_SHA1_96, S256)
    with pytest.raises(UnsupportedTransform, match="512-bit"):
        IkeSuite(EncrId.AES_CBC, 512, IntegId.HMAC_SHA1_96, S256)
    with pytest.raises(UnsupportedTransform, match="INTEG must be NONE"):
        IkeSuite(EncrId.AES_GCM_16, 128, IntegId.HMAC_SHA1_96, S256)
    with pytest.raises(UnsupportedTransform, match=r"INTEG transform IntegId\.HMAC_MD5_96"):
        IkeSuite(EncrId.AES_CBC, 128, IntegId.HMAC_MD5_96, S256)
    with pytest.raises(UnsupportedTransform, match="NULL is not supported for IKE"):
        IkeSuite(EncrId.NULL, None, IntegId.HMAC_SHA1_96, S256)
    with pytest.raises(UnsupportedTransform, match="ENCR transform EncrId 250"):
        encr_spec(250)
    with pytest.raises(UnsupportedTransform, match=r"PRF transform PrfId\.HMAC_MD5"):
        prf_spec(PrfId.HMAC_MD5)
    with pytest.raises(UnsupportedTransform, match="INTEG transform IntegId 99"):
        integ_spec(99)


def test_derive_ike_keys_split_order() -> None:
    kl = KeyLengths(sk_d=32, sk_a=20, sk_e=16, sk_p=32)
    seed = b"S" * 32
    keymat = prf_plus(S256, seed, NI + NR + SPI_I + SPI_R, kl.total)
    k = derive_ike_keys(S256, seed, NI, NR, SPI_I, SPI_R, kl)
    assert k.sk_d + k.sk_ai + k.sk_ar + k.sk_ei + k.sk_er + k.sk_pi + k.sk_pr == keymat
    assert (len(k.sk_ai), len(k.sk_ei), len(k.sk_pr)) == (20, 16, 32)
    assert derive_ike_keys(S256, seed, NI, NR, 0x0102030405060708, 0x1112131415161718, kl) == k
    assert k.sk_d.hex() not in repr(k)  # keys stay out of logs


@pytest.mark.parametrize("prf_id", [PrfId.AES128_XCBC, PrfId.AES128_CMAC])
def test_skeyseed_truncates_nonces_for_fixed_key_prfs(prf_id: PrfId) -> None:
    g_ir = b"g" * 32
    assert skeyseed(prf_id, NI, NR, g_ir) == prf(prf_id, NI[:8] + NR[:8], g_ir)


def test_skeyseed_full_nonces_for_hmac() -> None:
    assert skeyseed(S256, NI, NR, b"g") == prf(S256, NI + NR, b"g")


def test_update_uses_previous_sk_d() -> None:
    kl = KeyLengths(32, 32, 32, 32)
    k0 = derive_ike_keys(S256, b"seed0", NI, NR, SPI_I, SPI_R, kl)
    k1 = update_ike_keys(S256, k0, b"kem-ss", NI, NR, SPI_I, SPI_R, kl)
    assert k1 == derive_ike_keys(
        S256, prf(S256, k0.sk_d, b"kem-ss" + NI + NR), NI, NR, SPI_I, SPI_R, kl
    )


def test_ike_rekey_with_followup_kes() -> None:
    """RFC 9370 §2.2.4: prf(SK_d(old), SK(0)|Ni|Nr|SK(1)|SK(2)), old PRF, new SPIs."""
    old_prf = PrfId.HMAC_SHA2_512
    old_skd = b"D" * 64
    new = IkeSuite(EncrId.AES_GCM_16, 256, IntegId.NONE, PrfId.HMAC_SHA2_256).key_lengths
    seed = skeyseed_rekey(old_prf, old_skd, b"ecdh", NI, NR, [b"mlkem1", b"mlkem2"])
    assert seed == prf(old_prf, old_skd, b"ecdh" + NI + NR + b"mlkem1" + b"mlkem2")
    new_spi_i, new_spi_r = b"\xaa" * 8, b"\xbb" * 8
    keys = rekey_ike_keys(
        old_prf, old_skd, b"ecdh", NI, NR, new_spi_i, new_spi_r, new, [b"mlkem1", b"mlkem2"]
    )
    assert keys == derive_ike_keys(old_prf, seed, NI, NR, new_spi_i, new_spi_r, new)
    assert len(keys.sk_d) == 32 and len(keys.sk_ei) == 36  # sized by the NEW suite


def test_child_keys_aead_with_kes() -> None:
    sk_d = b"d" * 32
    ck = derive_child_keys(
        S256,
        sk_d,
        NI,
        NR,
        encr=EncrId.AES_GCM_16,
        encr_key_bits=256,
        ke_secret=b"ke0",
        add_secrets=[b"ke1", b"ke2"],
    )
    keymat = prf_plus(S256, sk_d, b"ke0" + NI + NR + b"ke1" + b"ke2", 2 * 36)
    assert ck.encr_i == keymat[:36] and ck.encr_r == keymat[36:]
    assert ck.integ_i == ck.integ_r == b""


def test_child_keys_cbc_order() -> None:
    sk_d = b"d" * 32
    ck = derive_child_keys(
        S256, sk_d, NI, NR, encr=EncrId.AES_CBC, encr_key_bits=128, integ=IntegId.HMAC_SHA1_96
    )
    km = prf_plus(S256, sk_d, NI + NR, 2 * (16 + 20))
    # RFC 7296 §2.17: encr i->r, integ i->r, encr r->i, integ r->i
    assert (ck.encr_i, ck.integ_i, ck.encr_r, ck.integ_r) == (
        km[:16],
        km[16:36],
        km[36:52],
        km[52:],
    )


def test_int_auth_chain_step() -> None:
    first = int_auth(S256, b"p" * 32, None, b"A1", b"P1")
    assert first == prf(S256, b"p" * 32, b"A1P1")
    assert int_auth(S256, b"p" * 32, first, b"A2") == prf(S256, b"p" * 32, first + b"A2")


def test_int_auth_octets() -> None:
    assert int_auth_octets(None, None, 1) == b""
    assert int_auth_octets(b"i" * 32, b"r" * 32, 4) == b"i" * 32 + b"r" * 32 + b"\x00\x00\x00\x04"
    with pytest.raises(ValueError):
        int_auth_octets(b"i" * 32, None, 4)


def test_signed_octets_and_psk() -> None:
    octets = initiator_signed_octets(b"MSG1", b"NR", S256, b"k" * 32, 2, b"host.example")
    assert octets == b"MSG1NR" + prf(S256, b"k" * 32, b"\x02\x00\x00\x00host.example")
    assert len(KEY_PAD) == 17
    auth = psk_auth(S256, b"secret", octets)
    assert auth == prf(S256, prf(S256, b"secret", b"Key Pad for IKEv2"), octets)
    assert verify_psk_auth(S256, b"secret", octets, auth)
    assert not verify_psk_auth(S256, b"secret", octets, auth[:-1] + b"\x00")
