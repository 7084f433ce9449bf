"""prf / prf+ known answers: RFC 2202, RFC 4231, RFC 3566/4434 (XCBC), RFC 4493/4615 (CMAC)."""

from __future__ import annotations

import pytest

from pqike.crypto.algorithms import UnsupportedTransform
from pqike.crypto.mac import aes_xcbc_mac, integ_icv
from pqike.crypto.prf import prf, prf_plus
from pqike.wire.iana import IntegId, PrfId

H = bytes.fromhex
S256, S384, S512 = PrfId.HMAC_SHA2_256, PrfId.HMAC_SHA2_384, PrfId.HMAC_SHA2_512

KEY_131 = b"\xaa" * 131
MSG_6 = b"Test Using Larger Than Block-Size Key - Hash Key First"
MSG_7 = (
    b"This is a test using a larger than block-size key and a larger than block-size data. "
    b"The key needs to be hashed before being used by the HMAC algorithm."
)

# RFC 4231 §4.2-4.8 (test case 5 is about truncation and is skipped).
RFC4231 = [
    (
        "case1",
        b"\x0b" * 20,
        b"Hi There",
        {
            S256: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            S384: (
                "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
                "faea9ea9076ede7f4af152e8b2fa9cb6"
            ),
            S512: (
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
                "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"
            ),
        },
    ),
    (
        "case3",
        b"\xaa" * 20,
        b"\xdd" * 50,
        {
            S256: "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            S384: (
                "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b"
                "2a5ab39dc13814b94e3ab6e101a34f27"
            ),
            S512: (
                "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39"
                "bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb"
            ),
        },
    ),
    (
        "case4",
        bytes(range(1, 26)),
        b"\xcd" * 50,
        {
            S256: "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            S384: (
                "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e"
                "6801dd23c4a7d679ccf8a386c674cffb"
            ),
            S512: (
                "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db"
                "a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd"
            ),
        },
    ),
    (
        "case6",
        KEY_131,
        MSG_6,
        {
            S256: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            S384: (
                "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6"
                "0c2ef6ab4030fe8296248df163f44952"
            ),
            S512: (
                "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
                "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"
            ),
        },
    ),
    (
        "case7",
        KEY_131,
        MSG_7,
        {
            S256: "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            S384: (
                "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5"
                "a678cc31e799176d3860e6110c46523e"
            ),
            S512: (
                "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944"
                "b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58"
            ),
        },
    ),
]


@pytest.mark.parametrize(
    ("prf_id", "key", "data", "out"),
    [
        pytest.param(p, key, data, out, id=f"{name}-{p.name}")
        for name, key, data, outs in RFC4231
        for p, out in outs.items()
    ],
)
def test_rfc4231_hmac_sha2(prf_id: PrfId, key: bytes, data: bytes, out: str) -> None:
    assert prf(prf_id, key, data) == H(out)


def test_rfc2202_hmac_sha1() -> None:
    assert prf(PrfId.HMAC_SHA1, b"\x0b" * 20, b"Hi There") == H(
        "b617318655057264e28bc0b6fb378c8ef146be00"
    )


def test_rfc4868_integ_truncation() -> None:
    # RFC 4868 §2.7.2.1 test case AUTH256-1: HMAC-SHA-256-128 with a 32-byte key.
    icv = integ_icv(IntegId.HMAC_SHA2_256_128, b"\x0b" * 32, b"Hi There")
    assert icv == H("198a607eb44bfbc69903a0f1cf2bbdc5")


K16 = bytes(range(16))
M20 = bytes(range(20))


@pytest.mark.parametrize(
    ("data", "mac"),
    [  # RFC 3566 §4.6 test cases 1-5
        (b"", "75f0251d528ac01c4573dfd584d79f29"),
        (bytes(range(3)), "5b376580ae2f19afe7219ceef172756f"),
        (bytes(range(16)), "d2a246fa349b68a79998a4394ff7a263"),
        (M20, "47f51b4564966215b8985c63055ed308"),
        (bytes(range(32)), "f54f0ec8d2b9f3d36807734bd5283fd4"),
    ],
)
def test_rfc3566_aes_xcbc(data: bytes, mac: str) -> None:
    assert aes_xcbc_mac(K16, data) == H(mac)
    assert prf(PrfId.AES128_XCBC, K16, data) == H(mac)
    assert integ_icv(IntegId.AES_XCBC_96, K16, data) == H(mac)[:12]


@pytest.mark.parametrize(
    ("key", "mac"),
    [  # RFC 4434 §6: variable key lengths
        (K16, "47f51b4564966215b8985c63055ed308"),
        (bytes(range(10)), "0fa087af7d866e7653434e602fdde835"),
        (K16 + H("edcb"), "8cd3c93ae598a9803006ffb67c40e9e4"),
    ],
)
def test_rfc4434_xcbc_prf_key_sizes(key: bytes, mac: str) -> None:
    assert prf(PrfId.AES128_XCBC, key, M20) == H(mac)


@pytest.mark.parametrize(
    ("key", "mac"),
    [  # RFC 4615 §4
        (K16 + H("edcb"), "84a348a4a45d235babfffc0d2b4da09a"),
        (K16, "980ae87b5f4c9c5214f5b6a8455e4c2d"),
        (bytes(range(10)), "290d9e112edb09ee141fcf64c0b72f3d"),
    ],
)
def test_rfc4615_cmac_prf(key: bytes, mac: str) -> None:
    assert prf(PrfId.AES128_CMAC, key, M20) == H(mac)


def test_rfc4493_cmac_96() -> None:
    key = H("2b7e151628aed2a6abf7158809cf4f3c")
    icv = integ_icv(IntegId.AES_CMAC_96, key, H("6bc1bee22e409f96e93d7e117393172a"))
    assert icv == H("070a16b46b4d4144f79bdd9dd04a287c")[:12]


@pytest.mark.parametrize("prf_id", [PrfId.HMAC_SHA1, S256, S384, S512, PrfId.AES128_CMAC])
def test_prf_plus_matches_definition(prf_id: PrfId) -> None:
    key, seed = b"K" * 32, b"seed-" * 13
    t, blocks = b"", []
    for n in range(1, 6):
        t = prf(prf_id, key, t + seed + bytes([n]))
        blocks.append(t)
    direct = b"".join(blocks)
    for length in (0, 1, len(blocks[0]), len(blocks[0]) + 1, len(direct)):
        assert prf_plus(prf_id, key, seed, length) == direct[:length]


def test_prf_plus_counter_limit() -> None:
    out_len = 32
    assert len(prf_plus(S256, b"k", b"s", 255 * out_len)) == 255 * out_len
    with pytest.raises(ValueError, match="at most 8160 bytes"):
        prf_plus(S256, b"k", b"s", 255 * out_len + 1)


def test_prf_plus_counter_wraps_nowhere() -> None:
    # Block 255 uses counter 0xff, the last one a 1-byte counter can express.
    long = prf_plus(S256, b"k", b"s", 255 * 32)
    t = long[253 * 32 : 254 * 32]
    assert long[-32:] == prf(S256, b"k", t + b"s" + b"\xff")


@pytest.mark.parametrize("bad", [PrfId.HMAC_MD5, PrfId.HMAC_TIGER, 99])
def test_unsupported_prf(bad: int) -> None:
    with pytest.raises(UnsupportedTransform, match="PRF"):
        prf(bad, b"k", b"d")  # type: ignore[arg-type]


def test_prf_plus_keys_once_and_copies_for_all_blocks_but_the_last(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """prf+ with an HMAC PRF keys one HMAC and starts every block but the last from a copy
    of it; the last block finishes the keyed one (seven SK_* keys: seven blocks, six
    copies), still RFC 7296 §2.13's T1 | T2 | ..."""
    from pqike.crypto import prf as prf_mod

    real = prf_mod._chmac.HMAC
    made: list[bytes] = []
    copies: list[int] = []

    class Counting:
        def __init__(self, key: bytes, algorithm: object, _h: object = None) -> None:
            if _h is None:
                made.append(key)
            self._h = _h if _h is not None else real(key, algorithm)  # type: ignore[arg-type]

        def copy(self) -> Counting:
            copies.append(1)
            return Counting(b"", None, self._h.copy())  # type: ignore[attr-defined]

        def update(self, data: bytes) -> None:
            self._h.update(data)  # type: ignore[attr-defined]

        def finalize(self) -> bytes:
            return self._h.finalize()  # type: ignore[attr-defined,no-any-return]

    key, seed = b"K" * 32, b"Ni | Nr | SPIi | SPIr"
    expected = prf_plus(S256, key, seed, 7 * 32)
    monkeypatch.setattr(prf_mod._chmac, "HMAC", Counting)
    assert prf_plus(S256, key, seed, 7 * 32) == expected
    assert (made, len(copies)) == ([key], 6)  # before: 7 copies
    t, blocks = b"", []
    for n in range(1, 8):
        t = prf(S256, key, t + seed + bytes([n]))
        blocks.append(t)
    assert b"".join(blocks) == expected
