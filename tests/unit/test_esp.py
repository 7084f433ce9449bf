"""RFC 4303 ESP processing (pqike.kernel.esp): real strongSwan packets, layouts, replay, tamper."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from pqike.crypto.mac import integ_icv
from pqike.kernel.base import KernelSa, Mode
from pqike.kernel.esp import (
    NH_IPV4,
    NH_IPV6,
    DropReason,
    EspSa,
    IcvError,
    MalformedError,
    ReplayError,
    ReplayWindow,
    SequenceOverflow,
    UnknownSpiError,
    UnsupportedSaError,
    next_header_for,
)
from pqike.wire.iana import EncrId, IntegId

H = bytes.fromhex
DATA = json.loads((Path(__file__).parents[1] / "data" / "strongswan61_keys.json").read_text())
CHILD = DATA["child_sa"]
PKT = [H(p["udp_payload"]) for p in DATA["packets"]]
ESP_OUT, ESP_IN = 12, 13  # carol -> moon (initiator keys), moon -> carol (responder keys)

INNER4 = bytes.fromhex("450000540001000040010000c0a80001c0a80002") + bytes(range(64))
INNER6 = bytes.fromhex("6000000000083a40") + bytes(15) + b"\x01" + bytes(15) + b"\x02" + bytes(8)


def pair(encr: EncrId, key: bytes, integ: IntegId = IntegId.NONE, ikey: bytes = b"", **kw):
    out = EspSa(0x11223344, encr, key, integ, ikey, **kw)
    inb = EspSa(0x11223344, encr, key, integ, ikey, inbound=True, **kw)
    return out, inb


def key(n: int, seed: int = 1) -> bytes:
    return bytes((seed * 31 + i * 7) & 0xFF for i in range(n))


# ---- strongSwan 6.1 kernel-libipsec capture ----------------------------------------------


def ss_sa(idx: int, inbound: bool) -> EspSa:
    encr, integ = ("encr_i", "integ_i") if idx == ESP_OUT else ("encr_r", "integ_r")
    spi = int.from_bytes(PKT[idx][:4], "big")
    return EspSa(
        spi,
        EncrId.AES_CBC,
        H(CHILD[encr]),
        IntegId.HMAC_SHA2_256_128,
        H(CHILD[integ]),
        inbound=inbound,
    )


@pytest.mark.parametrize("idx", [ESP_OUT, ESP_IN], ids=["carol-to-moon", "moon-to-carol"])
def test_strongswan_capture_decrypts_and_reencrypts(idx: int) -> None:
    pkt = PKT[idx]
    inb = ss_sa(idx, inbound=True)
    nh, inner = inb.decapsulate(pkt)
    assert nh == NH_IPV4
    assert inner[0] == 0x45 and inner[9] == 1  # IPv4, ICMP
    assert len(inner) == struct.unpack("!H", inner[2:4])[0] == 84
    icmp_type = inner[20]
    assert icmp_type == (8 if idx == ESP_OUT else 0)  # echo request out, echo reply back
    if idx == ESP_IN:
        assert inner == H(DATA["esp_inbound"]["payload"])
    assert (inb.counters.packets, inb.counters.bytes) == (1, 84)
    # same IV and sequence number: byte-identical to strongSwan's packet
    out = ss_sa(idx, inbound=False)
    assert out.encapsulate(inner, nh, iv=pkt[8:24]) == pkt
    assert out.seq == 1 == struct.unpack("!I", pkt[4:8])[0]


def test_strongswan_capture_wrong_direction_keys_fail() -> None:
    with pytest.raises(IcvError):
        EspSa(
            int.from_bytes(PKT[ESP_IN][:4], "big"),
            EncrId.AES_CBC,
            H(CHILD["encr_i"]),
            IntegId.HMAC_SHA2_256_128,
            H(CHILD["integ_i"]),
            inbound=True,
        ).decapsulate(PKT[ESP_IN])


def test_strongswan_capture_replayed_once() -> None:
    inb = ss_sa(ESP_IN, inbound=True)
    inb.decapsulate(PKT[ESP_IN])
    with pytest.raises(ReplayError) as e:
        inb.decapsulate(PKT[ESP_IN])
    assert e.value.reason is DropReason.REPLAY


# ---- layouts ---------------------------------------------------------------------------


def test_cbc_hmac_layout_rfc4303() -> None:
    k, ik = key(32), key(32, 2)
    out = EspSa(0xAABBCCDD, EncrId.AES_CBC, k, IntegId.HMAC_SHA2_256_128, ik)
    iv = bytes(range(16))
    pkt = out.encapsulate(INNER4, NH_IPV4, iv=iv)
    assert pkt[:8] == H("aabbccdd00000001") and pkt[8:24] == iv
    ct, icv = pkt[24:-16], pkt[-16:]
    assert icv == integ_icv(IntegId.HMAC_SHA2_256_128, ik, pkt[:-16])
    dec = Cipher(algorithms.AES(k), modes.CBC(iv)).decryptor()
    plain = dec.update(ct) + dec.finalize()
    pad = (-(len(INNER4) + 2)) % 16
    assert plain == INNER4 + bytes(range(1, pad + 1)) + bytes([pad, 4])
    # random IV when none is given
    assert out.encapsulate(INNER4, NH_IPV4)[8:24] != out.encapsulate(INNER4, NH_IPV4)[8:24]


@pytest.mark.parametrize("esn", [False, True])
def test_gcm_layout_rfc4106(esn: bool) -> None:
    """RFC 4106 §3: 8-byte IV after seq; nonce = salt | IV; §5: AAD = SPI | seq (| ESN)."""
    k, salt = key(16), H("cafebabe")
    out = EspSa(0x01020304, EncrId.AES_GCM_16, k + salt, esn=esn)
    out.seq = (7 << 32) + 41 if esn else 41
    pkt = out.encapsulate(INNER4, NH_IPV4)
    seq = out.seq
    assert pkt[:8] == struct.pack("!II", 0x01020304, seq & 0xFFFFFFFF)
    iv = pkt[8:16]
    assert iv == seq.to_bytes(8, "big")  # the counter IV
    aad = pkt[:8] if not esn else pkt[:4] + seq.to_bytes(8, "big")
    plain = AESGCM(k).decrypt(salt + iv, pkt[16:], aad)
    pad = (-(len(INNER4) + 2)) % 4
    assert plain == INNER4 + bytes(range(1, pad + 1)) + bytes([pad, NH_IPV4])
    assert (len(pkt) - 16 - 16) % 4 == 0


def test_chacha20_poly1305_layout_rfc7634() -> None:
    k, salt = key(32), H("01020304")
    out = EspSa(0x0A0B0C0D, EncrId.CHACHA20_POLY1305, k + salt)
    pkt = out.encapsulate(INNER6, NH_IPV6)
    plain = ChaCha20Poly1305(k).decrypt(salt + pkt[8:16], pkt[16:], pkt[:8])
    assert plain[: len(INNER6)] == INNER6 and plain[-1] == NH_IPV6


def test_cbc_esn_high_bits_in_icv_only() -> None:
    k, ik = key(16), key(32, 3)
    out = EspSa(0x100, EncrId.AES_CBC, k, IntegId.HMAC_SHA2_256_128, ik, esn=True)
    out.seq = (5 << 32) + 9
    pkt = out.encapsulate(INNER4, NH_IPV4)
    assert pkt[4:8] == struct.pack("!I", 10)
    assert pkt[-16:] == integ_icv(IntegId.HMAC_SHA2_256_128, ik, pkt[:-16] + struct.pack("!I", 5))


# ---- round trips -----------------------------------------------------------------------

SUITES = [
    (EncrId.AES_CBC, 16, IntegId.HMAC_SHA1_96, 20),
    (EncrId.AES_CBC, 32, IntegId.HMAC_SHA2_256_128, 32),
    (EncrId.AES_CBC, 24, IntegId.HMAC_SHA2_384_192, 48),
    (EncrId.AES_CBC, 32, IntegId.HMAC_SHA2_512_256, 64),
    (EncrId.AES_CBC, 16, IntegId.AES_XCBC_96, 16),
    (EncrId.AES_CBC, 16, IntegId.AES_CMAC_96, 16),
    (EncrId.AES_CTR, 20, IntegId.HMAC_SHA2_256_128, 32),
    (EncrId.NULL, 0, IntegId.HMAC_SHA2_256_128, 32),
    (EncrId.AES_GCM_16, 20, IntegId.NONE, 0),
    (EncrId.AES_GCM_16, 36, IntegId.NONE, 0),
    (EncrId.AES_GCM_12, 20, IntegId.NONE, 0),
    (EncrId.AES_GCM_8, 28, IntegId.NONE, 0),
    (EncrId.AES_CCM_16, 19, IntegId.NONE, 0),
    (EncrId.AES_CCM_8, 35, IntegId.NONE, 0),
    (EncrId.CHACHA20_POLY1305, 36, IntegId.NONE, 0),
]


@pytest.mark.parametrize("esn", [False, True], ids=["seq32", "esn"])
@pytest.mark.parametrize(
    ("encr", "klen", "integ", "ilen"),
    SUITES,
    ids=[f"{s[0].name}-{s[1]}-{s[2].name}" for s in SUITES],
)
def test_round_trip(encr: EncrId, klen: int, integ: IntegId, ilen: int, esn: bool) -> None:
    out, inb = pair(encr, key(klen), integ, key(ilen, 5), esn=esn)
    if esn:  # cross the 2^32 boundary: the high bits must be inferred right
        out.seq = inb.window.top = (1 << 32) - 3
    for n in (0, 1, 2, 3, 15, 16, 17, 100, 1399):
        payload = INNER4[:1] + bytes(range(256))[: max(n - 1, 0)] if n else b""
        pkt = out.encapsulate(payload, NH_IPV4)
        assert (len(pkt) - 8 - out.iv_len - out.icv_len) % out.align == 0
        assert len(pkt) == len(payload) + out.overhead(len(payload))
        assert inb.decapsulate(pkt) == (NH_IPV4, payload)
    assert inb.counters.packets == out.counters.packets == 9
    assert inb.counters.bytes == out.counters.bytes
    if esn:
        assert inb.window.top == out.seq > 1 << 32


def test_next_header_for() -> None:
    assert next_header_for(INNER4) == NH_IPV4
    assert next_header_for(INNER6) == NH_IPV6
    with pytest.raises(MalformedError):
        next_header_for(b"\x10abc")


def test_from_kernel_sa() -> None:
    import ipaddress

    net = ipaddress.ip_network("10.0.0.0/24")
    ksa = KernelSa(
        0x1234, "1.1.1.1", "2.2.2.2", Mode.TUNNEL, EncrId.AES_GCM_16, key(36), IntegId.NONE,
        b"", 1, net, net, (4500, 4500), replay_window=64, esn=True, inbound=True,
    )  # fmt: skip
    sa = EspSa.from_kernel_sa(ksa)
    assert (sa.spi, sa.inbound, sa.esn, sa.window.size, sa.icv_len) == (0x1234, True, True, 64, 16)


# ---- anti-replay -----------------------------------------------------------------------


def test_replay_duplicate_old_and_slide() -> None:
    out, inb = pair(EncrId.AES_GCM_16, key(20), replay_window=32)
    pkts = [out.encapsulate(INNER4, NH_IPV4) for _ in range(100)]
    inb.decapsulate(pkts[0])
    with pytest.raises(ReplayError, match="replayed"):
        inb.decapsulate(pkts[0])
    inb.decapsulate(pkts[49])  # seq 50: window slides to 19..50
    inb.decapsulate(pkts[20])  # seq 21, out of order but inside the window
    with pytest.raises(ReplayError, match="replayed"):
        inb.decapsulate(pkts[20])
    inb.decapsulate(pkts[19])  # seq 20: oldest in-window, still fresh
    with pytest.raises(ReplayError, match="too old"):
        inb.decapsulate(pkts[17])  # seq 18
    with pytest.raises(ReplayError, match="too old"):
        inb.decapsulate(pkts[1])
    inb.decapsulate(pkts[99])  # jump far ahead: everything before 69 is too old now
    with pytest.raises(ReplayError):
        inb.decapsulate(pkts[60])
    inb.decapsulate(pkts[98])
    assert inb.counters.packets == 6


def test_replay_window_bitmap_unit() -> None:
    w = ReplayWindow(4)
    for s in (1, 3, 2):
        w.check(s)
        w.accept(s)
    assert (w.top, w.bitmap) == (3, 0b111)
    w.accept(6)
    assert (w.top, w.bitmap) == (6, 0b1001)  # 6 and 3; 4, 5 missing
    w.check(4)
    w.check(5)
    with pytest.raises(ReplayError):
        w.check(3)
    with pytest.raises(ReplayError):
        w.check(2)  # 6 - 2 = 4 >= window
    with pytest.raises(ReplayError):
        w.check(0)


def test_replay_window_zero_disables() -> None:
    out, inb = pair(EncrId.AES_GCM_16, key(20), replay_window=0)
    pkt = out.encapsulate(INNER4, NH_IPV4)
    inb.decapsulate(pkt)
    inb.decapsulate(pkt)
    assert inb.counters.packets == 2


def test_forged_packet_does_not_move_window() -> None:
    out, inb = pair(EncrId.AES_GCM_16, key(20))
    good = [out.encapsulate(INNER4, NH_IPV4) for _ in range(3)]
    forged = bytearray(good[0])
    forged[4:8] = struct.pack("!I", 1_000_000)
    with pytest.raises(IcvError):
        inb.decapsulate(bytes(forged))
    assert inb.window.top == 0
    for p in good:
        inb.decapsulate(p)


def test_esn_inference_rfc4303_appendix_a() -> None:
    w = ReplayWindow(64, esn=True)
    w.accept((3 << 32) + 10)  # Tl = 10 < W - 1: case B
    assert w.infer(5) == (3 << 32) + 5
    assert w.infer(0xFFFFFFF0) == (2 << 32) + 0xFFFFFFF0  # just below the boundary
    assert w.infer(100) == (3 << 32) + 100
    w.accept((3 << 32) + 1000)  # case A
    assert w.infer(999) == (3 << 32) + 999
    assert w.infer(2000) == (3 << 32) + 2000
    assert w.infer(3) == (4 << 32) + 3  # below the window: next subspace
    assert ReplayWindow(32, esn=True).infer(7) == 7


# ---- tamper, malformed, unknown SPI, limits -----------------------------------------------


@pytest.mark.parametrize("encr", [EncrId.AES_CBC, EncrId.AES_GCM_16, EncrId.AES_GCM_8])
def test_tamper_anywhere_fails_icv(encr: EncrId) -> None:
    cbc = encr == EncrId.AES_CBC
    out, inb = pair(
        encr, key(32 if cbc else 20), IntegId.HMAC_SHA2_256_128 if cbc else IntegId.NONE,
        key(32) if cbc else b"",
    )  # fmt: skip
    pkt = out.encapsulate(INNER4, NH_IPV4)
    for pos in range(4, len(pkt)):
        bad = bytearray(pkt)
        bad[pos] ^= 0x01
        with pytest.raises((IcvError, ReplayError)) as e:  # seq 0 is a replay-check error
            inb.decapsulate(bytes(bad))
        assert e.value.reason in (DropReason.ICV, DropReason.REPLAY)
    assert inb.decapsulate(pkt) == (NH_IPV4, INNER4)


def test_wrong_spi_and_short_packets() -> None:
    out, inb = pair(EncrId.AES_GCM_16, key(20))
    pkt = out.encapsulate(INNER4, NH_IPV4)
    with pytest.raises(UnknownSpiError):
        inb.decapsulate(b"\x99\x99\x99\x99" + pkt[4:])
    for n in (0, 7, 8, 16, 31, len(pkt) - 1):
        with pytest.raises((MalformedError, IcvError)):
            inb.decapsulate(pkt[:n])


def test_cbc_length_not_block_multiple_is_malformed() -> None:
    out, inb = pair(EncrId.AES_CBC, key(16), IntegId.HMAC_SHA2_256_128, key(32))
    pkt = out.encapsulate(INNER4, NH_IPV4)
    with pytest.raises(MalformedError):
        inb.decapsulate(pkt[:30] + pkt[31:])


def test_bad_padding_with_valid_icv_is_malformed() -> None:
    k, salt = key(16), H("00000001")
    inb = EspSa(0x500, EncrId.AES_GCM_16, k + salt, inbound=True)
    hdr, iv = struct.pack("!II", 0x500, 1), bytes(8)
    for trailer in (b"\x01\x02\x04\x02\x04", b"\x00\x00\x00\x09\x04"):
        plain = INNER4[: len(INNER4) - 1] + trailer
        plain = plain[: len(plain) - len(plain) % 4]
        pkt = hdr + iv + AESGCM(k).encrypt(salt + iv, plain, hdr)
        with pytest.raises(MalformedError):
            inb.decapsulate(pkt)
        inb.window = ReplayWindow(32)


def test_sequence_overflow() -> None:
    out = EspSa(0x600, EncrId.AES_GCM_16, key(20))
    out.seq = 0xFFFFFFFE
    out.encapsulate(INNER4, NH_IPV4)
    with pytest.raises(SequenceOverflow) as e:
        out.encapsulate(INNER4, NH_IPV4)
    assert e.value.reason is DropReason.SEQ_OVERFLOW
    esn = EspSa(0x600, EncrId.AES_GCM_16, key(20), esn=True)
    esn.seq = 0xFFFFFFFF
    assert esn.encapsulate(INNER4, NH_IPV4)[4:8] == bytes(4)  # low bits wrap, high bits go on


@pytest.mark.parametrize(
    ("encr", "klen", "integ", "ilen", "match"),
    [
        (EncrId.AES_GCM_16, 20, IntegId.HMAC_SHA2_256_128, 32, "INTEG must be NONE"),
        (EncrId.AES_CBC, 32, IntegId.NONE, 0, "without integrity"),
        (EncrId.AES_CBC, 31, IntegId.HMAC_SHA2_256_128, 32, "key material"),
        (EncrId.AES_GCM_16, 3, IntegId.NONE, 0, "key material"),
        (EncrId.AES_CBC, 32, IntegId.HMAC_SHA2_256_128, 31, "32-byte key"),
        (EncrId.TRIPLE_DES, 24, IntegId.HMAC_SHA2_256_128, 32, "unsupported"),
        (EncrId.AES_CBC, 16, IntegId.HMAC_MD5_96, 16, "unsupported"),
    ],
)
def test_unsupported(encr: EncrId, klen: int, integ: IntegId, ilen: int, match: str) -> None:
    with pytest.raises(UnsupportedSaError, match=match):
        EspSa(0x700, encr, key(klen), integ, key(ilen))


def test_direction_enforced() -> None:
    out, inb = pair(EncrId.AES_GCM_16, key(20))
    with pytest.raises(UnsupportedSaError):
        inb.encapsulate(INNER4, NH_IPV4)
    with pytest.raises(UnsupportedSaError):
        out.decapsulate(out.encapsulate(INNER4, NH_IPV4))
