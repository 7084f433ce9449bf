"""SK/SKF protection glue, RFC 7383 fragment arithmetic and RFC 9242 IntAuth input."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, replace
from typing import ClassVar

import pytest

from pqike.crypto.algorithms import encr_key_len, integ_spec
from pqike.crypto.sk import IntegrityError, SkCipher
from pqike.wire.errors import DecodeError, InvalidSyntax
from pqike.wire.iana import (
    IKE_HEADER_LEN,
    EncrId,
    ExchangeType,
    IntegId,
    KeMethod,
    NotifyType,
    PayloadType,
)
from pqike.wire.message import Message, decode_message
from pqike.wire.payloads import (
    Encrypted,
    EncryptedFragment,
    KeyExchange,
    Nonce,
    Notify,
    Payload,
    VendorId,
    decode_payloads,
    encode_payloads,
)
from pqike.wire.sk import (
    SkCipherLike,
    fragment_chunk_size,
    fragment_plaintext_size,
    int_auth_a_p,
    max_message_length,
    protect,
    protect_fragments,
    protect_or_fragment,
    unprotect,
    unprotect_fragment,
)

SUITES = {
    "aes256-sha256": (EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_256_128),
    "aes128-sha1": (EncrId.AES_CBC, 128, IntegId.HMAC_SHA1_96),
    "aes256gcm16": (EncrId.AES_GCM_16, 256, IntegId.NONE),
    "chacha20poly1305": (EncrId.CHACHA20_POLY1305, None, IntegId.NONE),
}
BIKE_L3_PUBLIC_KEY = 3083  # bytes (ikev2-facts.md §6)


def cipher(suite: str) -> SkCipher:
    encr, bits, integ = SUITES[suite]
    ikey = os.urandom(integ_spec(integ).key_len) if integ != IntegId.NONE else b""
    key = os.urandom(encr_key_len(encr, bits))
    return SkCipher(encr, bits, integ, key, ikey)


def pair(suite: str) -> tuple[SkCipher, SkCipher]:
    """Sender and receiver sharing one key."""
    encr, bits, integ = SUITES[suite]
    ikey = os.urandom(integ_spec(integ).key_len) if integ != IntegId.NONE else b""
    key = os.urandom(encr_key_len(encr, bits))
    return SkCipher(encr, bits, integ, key, ikey), SkCipher(encr, bits, integ, key, ikey)


class Recording:
    """Wraps a cipher and records the associated data it was given."""

    def __init__(self, inner: SkCipherLike) -> None:
        self.inner = inner
        self.iv_len, self.icv_len = inner.iv_len, inner.icv_len
        self.block_size = inner.block_size
        self.associated: list[bytes] = []

    def sealed_length(self, n: int) -> int:
        return self.inner.sealed_length(n)

    def seal(self, associated: bytes, plaintext: bytes) -> bytes:
        self.associated.append(associated)
        return self.inner.seal(associated, plaintext)

    def open(self, associated: bytes, body: bytes) -> bytes:
        self.associated.append(associated)
        return self.inner.open(associated, body)


def header(exchange: ExchangeType = ExchangeType.IKE_INTERMEDIATE, mid: int = 2) -> Message:
    return Message(
        spi_i=bytes.fromhex("e292dc51a808689d"),
        spi_r=bytes.fromhex("5a0b3c1d2e3f4051"),
        exchange=exchange,
        message_id=mid,
        initiator=True,
    )


def ke(size: int, method: KeMethod = KeMethod.BIKE_L3) -> list[Payload]:
    return [KeyExchange(method=method, data=os.urandom(size))]


@dataclass
class EmptyNonce(Payload):
    """Encodes a Nonce payload without data: valid to seal, invalid once decrypted."""

    TYPE: ClassVar[PayloadType] = PayloadType.NONCE

    def encode_body(self) -> bytes:
        return b""


# --- SK -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_protect_unprotect_round_trip(suite: str) -> None:
    tx, rx = pair(suite)
    inner = [*ke(1184, KeMethod.ML_KEM_768), Notify(notify_type=NotifyType.ADDITIONAL_KEY_EXCHANGE)]
    wire = protect(header(), inner, tx)
    message, opened = unprotect(wire, rx)
    assert opened == inner
    assert message.sealed is not None and message.sealed.first_inner == PayloadType.KE
    assert int.from_bytes(wire[24:28], "big") == len(wire)
    assert wire[16] == PayloadType.SK
    assert len(wire) == IKE_HEADER_LEN + 4 + tx.sealed_length(len(encode_payloads(inner)[1]))


@pytest.mark.parametrize("suite", ["aes256-sha256", "aes256gcm16"])
def test_associated_data_is_the_final_header(suite: str) -> None:
    tx, rx = pair(suite)
    rec = Recording(tx)
    unprot = [VendorId(data=b"cleartext before SK")]
    wire = protect(header().with_payloads(unprot), ke(100), rec)
    (assoc,) = rec.associated
    # IKE header (final Length) | unprotected payloads | SK generic header, then the body.
    assert wire.startswith(assoc)
    assert len(assoc) == IKE_HEADER_LEN + 4 + len(b"cleartext before SK") + 4
    assert assoc[24:28] == len(wire).to_bytes(4, "big")
    sk_len = struct.unpack_from("!H", assoc, len(assoc) - 2)[0]
    assert sk_len == len(wire) - len(assoc) + 4
    message, opened = unprotect(wire, rx)
    assert message.payloads[0] == unprot[0] and len(opened) == 1


@pytest.mark.parametrize("where", [0, 17, 24, 40, -1])
def test_tampering_anywhere_fails_integrity(where: int) -> None:
    tx, rx = pair("aes256-sha256")
    wire = bytearray(protect(header(), ke(64), tx))
    wire[where] ^= 0x01
    with pytest.raises((IntegrityError, DecodeError)):
        unprotect(bytes(wire), rx)


def test_unprotect_needs_an_sk_payload() -> None:
    plain = header().with_payloads([VendorId(data=b"x")]).encode()
    with pytest.raises(InvalidSyntax, match="no SK payload"):
        unprotect(plain, cipher("aes256gcm16"))
    tx, rx = pair("aes256gcm16")
    frag = protect_fragments(header(), ke(10), tx, 1000)[0]
    with pytest.raises(InvalidSyntax, match="unprotect_fragment"):
        unprotect(frag, rx)
    with pytest.raises(InvalidSyntax, match="no SKF payload"):
        unprotect_fragment(protect(header(), ke(10), tx), rx)


def test_malformed_inner_chain_is_a_decode_error() -> None:
    tx, rx = pair("aes256gcm16")
    wire = protect(header(), [EmptyNonce()], tx)
    with pytest.raises(InvalidSyntax, match="nonce of 0 bytes") as info:
        unprotect(wire, rx)
    assert info.value.offset == IKE_HEADER_LEN + 4 + tx.iv_len + 4


def test_header_must_not_carry_sk_already() -> None:
    with pytest.raises(ValueError, match="SK/SKF"):
        protect(header().with_payloads([Encrypted()]), ke(4), cipher("aes256gcm16"))


# --- fragment arithmetic (strongSwan message.c fragment(), ikev2-facts.md §5) --------------


@pytest.mark.parametrize(
    ("fragment_size", "ipv6", "marker", "iv", "icv", "block", "plaintext"),
    [
        (1480, False, True, 16, 16, 16, 1375),  # aes256-sha256 over NAT-T
        (1480, False, False, 16, 16, 16, 1375),  # port 500 gives the same
        (1480, False, True, 16, 12, 16, 1375),  # HMAC-SHA1-96
        (1480, False, True, 16, 32, 16, 1359),  # HMAC-SHA2-512-256
        (1480, False, True, 8, 16, 1, 1387),  # AES-GCM-16
        (1280, False, True, 16, 16, 16, 1167),  # the default fragment_size
        (1280, True, False, 16, 16, 16, 1151),
    ],
)
def test_fragment_plaintext_size(
    fragment_size: int, ipv6: bool, marker: bool, iv: int, icv: int, block: int, plaintext: int
) -> None:
    assert fragment_plaintext_size(fragment_size, ipv6, marker, iv, icv, block) == plaintext


def test_full_fragment_sizes_from_facts() -> None:
    # 28 + 8 + IV + roundup(C + 1, B) + ICV
    for icv, full in ((16, 1444), (12, 1440), (32, 1444)):
        c = fragment_plaintext_size(1480, False, True, 16, icv, 16)
        assert 28 + 8 + 16 + (c + 1) + icv == full
    c = fragment_plaintext_size(1480, False, True, 8, 16, 1)
    assert 28 + 8 + 8 + c + 1 + 16 == 1448
    assert max_message_length(1480, False, True) == 1448
    assert max_message_length(1280, False, True) == 1248
    assert max_message_length(1280, True, False) == 1232


def test_tiny_fragment_size_is_refused() -> None:
    with pytest.raises(ValueError, match="no room"):
        fragment_chunk_size(60, 16, 16, 16)


def test_bike_l3_request_goes_as_1444_1444_420() -> None:
    tx, rx = pair("aes256-sha256")
    inner = ke(BIKE_L3_PUBLIC_KEY)
    assert len(protect(header(), inner, tx)) == 3168  # what strongSwan sends whole
    max_len = max_message_length(1480, ipv6=False, natt_marker=True)
    frags = protect_fragments(header(), inner, tx, max_len)
    assert [len(f) for f in frags] == [1444, 1444, 420]
    opened = [unprotect_fragment(f, rx) for f in frags]
    assert [len(o.plaintext) for o in opened] == [1375, 1375, 341]
    assert [(o.number, o.total) for o in opened] == [(1, 3), (2, 3), (3, 3)]
    assert [o.first_inner for o in opened] == [PayloadType.KE, 0, 0]
    assert decode_payloads(opened[0].first_inner, b"".join(o.plaintext for o in opened)) == inner
    assert all(o.message.message_id == 2 for o in opened)


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("max_len", [200, 576, 1232, 1448])
def test_fragments_fit_and_reassemble(suite: str, max_len: int) -> None:
    tx, rx = pair(suite)
    inner = [*ke(3000), Notify(notify_type=NotifyType.ADDITIONAL_KEY_EXCHANGE, data=b"\x42")]
    frags = protect_fragments(header(), inner, tx, max_len)
    assert all(len(f) <= max_len for f in frags)
    chunk = fragment_chunk_size(max_len, tx.iv_len, tx.icv_len, tx.block_size)
    full = IKE_HEADER_LEN + 8 + tx.sealed_length(chunk)
    assert all(len(f) == full for f in frags[:-1])  # every fragment but the last is full
    opened = [unprotect_fragment(f, rx) for f in frags]
    assert decode_payloads(opened[0].first_inner, b"".join(o.plaintext for o in opened)) == inner


@pytest.mark.parametrize("suite", ["aes256-sha256", "aes256gcm16"])
def test_each_fragment_sealed_with_its_own_header(suite: str) -> None:
    tx, rx = pair(suite)
    rec = Recording(tx)
    frags = protect_fragments(header(), ke(2000), rec, 600)
    assert len(rec.associated) == len(frags)
    for number, (assoc, wire) in enumerate(zip(rec.associated, frags, strict=True), start=1):
        # IKE header | SKF header: Next (KE in #1 only), flags, length, number, total
        assert len(assoc) == IKE_HEADER_LEN + 8 and wire.startswith(assoc)
        assert assoc[16] == PayloadType.SKF
        assert assoc[28] == (PayloadType.KE if number == 1 else 0)
        assert struct.unpack_from("!HH", assoc, 32) == (number, len(frags))
    # fragments cannot be swapped: the header (fragment number) is authenticated
    swapped = frags[1][:32] + frags[0][32:36] + frags[1][36:]
    with pytest.raises((IntegrityError, DecodeError)):
        unprotect_fragment(swapped, rx)


def test_unprotected_payloads_only_in_first_fragment() -> None:
    tx, rx = pair("aes256-sha256")
    unprot = [VendorId(data=b"v" * 40)]
    frags = protect_fragments(header().with_payloads(unprot), ke(3000), tx, 1448)
    opened = [unprotect_fragment(f, rx) for f in frags]
    assert opened[0].message.payloads[:-1] == unprot
    assert all(len(o.message.payloads) == 1 for o in opened[1:])
    assert all(len(f) <= 1448 for f in frags)
    assert len(opened[0].plaintext) < len(opened[1].plaintext)


def test_protect_or_fragment_follows_strongswan_rule() -> None:
    tx, rx = pair("aes256-sha256")
    inner = ke(1184, KeMethod.ML_KEM_768)  # the 1264-byte ML-KEM-768 request
    whole = protect_or_fragment(header(), inner, tx, max_message_length(1480, False, True))
    assert [len(w) for w in whole] == [1264]
    assert decode_message(whole[0]).sealed.TYPE == PayloadType.SK
    # At the default fragment_size 1280 over NAT-T (L = 1248) it is fragmented (C = 1167).
    frags = protect_or_fragment(header(), inner, tx, max_message_length(1280, False, True))
    assert len(frags) == 2
    assert [len(unprotect_fragment(f, rx).plaintext) for f in frags] == [1167, 1192 - 1167]
    assert len(protect_or_fragment(header(), ke(5000), tx, None)) == 1


# --- IntAuth ------------------------------------------------------------------------------


def test_int_auth_a_p_of_a_sent_message() -> None:
    tx, _ = pair("aes256gcm16")
    inner = ke(1184, KeMethod.ML_KEM_768)
    first, plaintext = encode_payloads(inner)
    wire = protect(header(), inner, tx)
    a, p = int_auth_a_p(header(), inner)
    assert p == plaintext
    # A is the wire's header and SK header, with lengths for the plaintext, not the ciphertext.
    assert len(a) == IKE_HEADER_LEN + 4
    assert a[:24] == wire[:24] and a[28] == wire[28] == first
    assert int.from_bytes(a[24:28], "big") == len(a) + len(p)
    assert struct.unpack_from("!H", a, 30)[0] == 4 + len(p)
    assert (a, p) == int_auth_a_p(wire, plaintext)
    assert (a, p) == int_auth_a_p(decode_message(wire), plaintext)


def test_int_auth_a_p_of_fragments_uses_sk() -> None:
    tx, rx = pair("aes256-sha256")
    inner = ke(BIKE_L3_PUBLIC_KEY)
    frags = protect_fragments(header(), inner, tx, 1448)
    opened = [unprotect_fragment(f, rx) for f in frags]
    plaintext = b"".join(o.plaintext for o in opened)
    a, p = int_auth_a_p(opened[0].message, plaintext)
    assert (a, p) == int_auth_a_p(header(), inner)
    assert a[16] == PayloadType.SK and a[29] == 0  # SK, flags 0
    with pytest.raises(ValueError, match="first_inner"):
        int_auth_a_p(opened[1].message, plaintext)
    assert int_auth_a_p(opened[1].message, plaintext, PayloadType.KE) == (a, p)


def test_int_auth_keeps_unprotected_payloads_and_clears_sk_flags() -> None:
    unprot = [Notify(notify_type=12345, data=b"n")]
    sk = EncryptedFragment(first_inner=PayloadType.KE, number=1, total=3, critical=True)
    message = header().with_payloads([*unprot, sk])
    a, _ = int_auth_a_p(message, b"\x00" * 10)
    assert a[16] == PayloadType.NOTIFY and a[28] == PayloadType.SK
    assert a[-4:] == bytes([PayloadType.KE, 0]) + (14).to_bytes(2, "big")


@pytest.mark.parametrize("unprotected", [[], [Notify(notify_type=12345, data=b"n")]])
@pytest.mark.parametrize(
    "sealed",
    [
        Encrypted(first_inner=PayloadType.KE),
        Encrypted(first_inner=PayloadType.IDi, critical=True, reserved_bits=0x05),
        EncryptedFragment(first_inner=PayloadType.KE, number=1, total=3),
        EncryptedFragment(number=2, total=3, critical=True, reserved_bits=0x7F),
    ],
)
def test_prefix_is_the_encoded_message_up_to_the_body(
    sealed: Encrypted | EncryptedFragment, unprotected: list[Payload]
) -> None:
    # the associated data is the whole message, encoded the long way, minus its body; with
    # or without unprotected payloads in front, whatever the C and reserved bits
    from pqike.wire.sk import _prefix

    body = b"\xab" * 77
    whole = header().with_payloads([*unprotected, replace(sealed, body=body)]).encode()
    assert _prefix(header(), unprotected, replace(sealed), len(body)) == whole[: -len(body)]


@pytest.mark.parametrize("flags", [0x00, 0x80, 0x01, 0x81])
def test_message_chain_walked_in_place(monkeypatch, flags: int) -> None:  # type: ignore[no-untyped-def]
    """Every message, one SK payload or more, is decoded by the one chain walk over the
    datagram itself (no copy of everything after the IKE header): SK flags, first inner
    type and body kept, the same bytes again; an SK length that does not fill the message
    is the error naming the bytes after it."""
    import pqike.wire.message as wire_message
    from pqike.wire.payloads import decode_chain

    walked: list[object] = []

    def walk(*args: object, **kwargs: object) -> object:
        walked.append(args[1])
        return decode_chain(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(wire_message, "decode_chain", walk)
    body = os.urandom(80)
    nonce = struct.pack("!BBH", PayloadType.SK, 0, 4 + 16) + b"n" * 16
    sk = struct.pack("!BBH", PayloadType.IDi, flags, 4 + len(body)) + body
    for first, chain in ((PayloadType.SK, sk), (PayloadType.NONCE, nonce + sk)):
        head = struct.pack("!8s8sBBBBII", b"i" * 8, b"r" * 8, first, 0x20, 35, 0x08, 1, 28)
        data = head[:24] + struct.pack("!I", 28 + len(chain)) + chain
        message = decode_message(data)
        assert walked.pop() is data  # before: the chain after the header, copied
        (sealed,) = message.payloads[-1:]
        assert isinstance(sealed, Encrypted) and sealed.first_inner == PayloadType.IDi
        assert (sealed.body, sealed.critical, sealed.reserved_bits) == (
            body, bool(flags & 0x80), flags & 0x7F
        )  # fmt: skip
        assert message.encode() == data
    short = data[: -len(sk) + 2] + struct.pack("!H", 3 + len(body)) + data[-len(body) :]
    with pytest.raises(InvalidSyntax, match="1 bytes after the encrypted payload") as e:
        decode_message(short)
    assert e.value.offset == len(data) - 1


def test_header_only_message_naming_sk_is_invalid_syntax() -> None:
    """An IKE header alone (Length 28) that names an SK payload is a truncated chain, as
    before the SK-only path: InvalidSyntax, nothing else."""
    header = struct.pack("!8s8sBBBBII", b"i" * 8, b"r" * 8, PayloadType.SK, 0x20, 35, 0x08, 3, 28)
    with pytest.raises(InvalidSyntax, match="truncated"):
        decode_message(header)


def test_sealed_builds_no_union_per_call(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Message.sealed (asked a few dozen times per handshake) is the last payload when it is
    an SK or SKF one, checked against a tuple made once, not an ``A | B`` union each call."""
    import pqike.wire.message as wire_message

    unions: list[object] = []

    class Meta(type):
        def __or__(cls, other: object) -> object:
            unions.append(other)
            return type.__or__(cls, other)  # type: ignore[operator]

    monkeypatch.setattr(wire_message, "Encrypted", Meta("Encrypted", (Encrypted,), {}))
    sk, skf = Encrypted(first_inner=PayloadType.IDi), EncryptedFragment(number=1, total=2)
    for payloads, sealed in (([Nonce(data=b"n" * 16), sk], sk), ([skf], skf), ([], None)):
        assert header().with_payloads(payloads).sealed is sealed
    assert header().with_payloads([sk, Nonce(data=b"n" * 16)]).sealed is None
    assert unions == []  # before: one union built per call
