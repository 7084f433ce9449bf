"""Glue between messages and SK/SKF protection (RFC 7296 §3.14, RFC 5282, RFC 7383, RFC 9242).

The cipher is anything shaped like ``SkCipherLike`` (pqike.crypto.sk.SkCipher is one); this
module never imports pqike.crypto. Lengths are computed before sealing, so the IKE header and
the SK/SKF header inside the associated data are the final ones:

- AEAD: associated data = IKE header .. end of the SK header (4 octets) or SKF header (8).
- HMAC suites: the ICV covers associated data | IV | ciphertext.

Fragment sizing mirrors strongSwan ``message.c fragment()`` so both ends split alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from pqike.wire.base import CRITICAL, GENERIC_HEADER, U16
from pqike.wire.errors import InvalidSyntax
from pqike.wire.iana import IKE_HEADER_LEN, PayloadType
from pqike.wire.message import Message, decode_message
from pqike.wire.payloads import (
    GENERIC_HEADER_LEN,
    EncodeError,
    Encrypted,
    EncryptedFragment,
    Payload,
    decode_payloads,
    encode_chain,
    encode_payloads,
    payload_name,
)

__all__ = [
    "Fragment",
    "Opened",
    "Plain",
    "SkCipherLike",
    "fragment_chunk_size",
    "fragment_plaintext_size",
    "int_auth_a_p",
    "max_message_length",
    "open_message",
    "plain",
    "protect",
    "protect_fragments",
    "protect_or_fragment",
    "sealed_message_length",
    "unprotect",
    "unprotect_fragment",
]

IPV4_HEADER_LEN = 20  # no options, as strongSwan assumes
IPV6_HEADER_LEN = 40  # no extension headers
UDP_HEADER_LEN = 8
NON_ESP_MARKER_LEN = 4  # RFC 3948 §2.2, on port 4500
SKF_HEADER_LEN = GENERIC_HEADER_LEN + 4  # + Fragment Number, Total Fragments
_MAX_FRAGMENTS = 0xFFFF
_NONE = int(PayloadType.NONE)


class SkCipherLike(Protocol):
    """What this module needs from an SK cipher (one key, one direction)."""

    iv_len: int
    icv_len: int
    block_size: int  # padding block; 1 for AEAD stream-like ciphers

    def sealed_length(self, plaintext_len: int) -> int:
        """IV + ciphertext (plaintext, minimal padding, Pad Length) + ICV."""
        ...

    def seal(self, associated: bytes, plaintext: bytes) -> bytes:
        """IV | ciphertext | ICV."""
        ...

    def open(self, associated: bytes, body: bytes) -> bytes:
        """The plaintext without padding; raises on an integrity failure."""
        ...


class Plain(NamedTuple):
    """An inner payload chain encoded once: sealing, fragmenting and IntAuth share it."""

    first_inner: int
    plaintext: bytes


def plain(inner: Sequence[Payload] | Plain) -> Plain:
    """``inner`` encoded (unless it is already)."""
    return inner if isinstance(inner, Plain) else Plain(*encode_payloads(inner))


class Opened(NamedTuple):
    """A verified and decrypted SK payload: the inner chain and the plaintext it came from."""

    inner: list[Payload]
    first_inner: int
    plaintext: bytes


class Fragment(NamedTuple):
    """One decrypted SKF fragment, ready for the reassembler."""

    message: Message  # header fields, unprotected payloads, the (sealed) SKF payload
    number: int
    total: int
    first_inner: int  # meaningful in fragment 1 only (0 elsewhere)
    plaintext: bytes  # this fragment's share of the inner payload chain


# --- sealing ------------------------------------------------------------------------------


def _prefix(
    header: Message,
    unprotected: Sequence[Payload],
    sealed: Encrypted | EncryptedFragment,
    body_len: int,
) -> bytes:
    """The message up to the body of its SK/SKF payload, with every length as if that body
    had ``body_len`` bytes: the chain is encoded with an empty body and two lengths patched,
    so a body (or IntAuth's P) is neither made up nor copied to find them."""
    sealed.body = b""
    own_body = sealed.encode_body()  # SKF: Fragment Number and Total; SK: nothing
    own = GENERIC_HEADER_LEN + len(own_body)  # the SK/SKF header, empty body
    length = own + body_len
    if length > U16:
        raise EncodeError(f"{payload_name(sealed.type)} payload of {length} bytes exceeds 65535")
    if not unprotected:  # the common case (all but IKE_SA_INIT): one header, nothing to patch
        flags = (CRITICAL if sealed.critical else 0) | (sealed.reserved_bits & ~CRITICAL)
        own_header = GENERIC_HEADER.pack(sealed.header_next(_NONE), flags, length)
        return header.header(sealed.type, IKE_HEADER_LEN + own + body_len) + own_header + own_body
    first, chain = encode_chain([*unprotected, sealed], outer=True)
    at = len(chain) - own + 2  # its Payload Length field
    patched = chain[:at] + length.to_bytes(2, "big") + chain[at + 2 :]
    return header.header(first, IKE_HEADER_LEN + len(chain) + body_len) + patched


def _seal(
    header: Message,
    unprotected: Sequence[Payload],
    sealed: Encrypted | EncryptedFragment,
    plaintext: bytes,
    cipher: SkCipherLike,
) -> bytes:
    # The lengths are final before sealing: the bytes before the body are exactly the
    # associated data.
    size = cipher.sealed_length(len(plaintext))
    associated = _prefix(header, unprotected, sealed, size)
    body = cipher.seal(associated, plaintext)
    if len(body) != size:
        raise EncodeError(f"cipher sealed {len(body)} bytes, announced {size}")
    sealed.body = body
    return associated + body


def _unprotected(header: Message) -> list[Payload]:
    if header.sealed is not None:
        raise EncodeError("the header message must not already carry an SK/SKF payload")
    return list(header.payloads)


def protect(header: Message, inner: Sequence[Payload] | Plain, cipher: SkCipherLike) -> bytes:
    """``header`` (its payloads are sent unprotected) plus one SK payload sealing ``inner``."""
    first_inner, plaintext = plain(inner)
    return _seal(
        header, _unprotected(header), Encrypted(first_inner=first_inner), plaintext, cipher
    )


def sealed_message_length(header: Message, inner: Plain, cipher: SkCipherLike) -> int:
    """Bytes of ``protect(header, inner, cipher)``, without sealing anything."""
    _, unprotected = encode_chain(_unprotected(header), outer=True)
    return (
        IKE_HEADER_LEN
        + len(unprotected)
        + GENERIC_HEADER_LEN
        + cipher.sealed_length(len(inner.plaintext))
    )


def max_message_length(fragment_size: int, ipv6: bool, natt_marker: bool) -> int:
    """L: the largest IKE message in an IP datagram of ``fragment_size`` bytes."""
    ip = IPV6_HEADER_LEN if ipv6 else IPV4_HEADER_LEN
    return fragment_size - ip - UDP_HEADER_LEN - (NON_ESP_MARKER_LEN if natt_marker else 0)


def fragment_chunk_size(max_len: int, iv_len: int, icv_len: int, block_size: int) -> int:
    """Plaintext bytes per SKF fragment when fragments may be ``max_len`` bytes long:
    ``floor((L - 28 - IV - ICV - 8) / B) * B - 1`` (the last byte of the block is Pad Length).
    """
    room = max_len - IKE_HEADER_LEN - iv_len - icv_len - SKF_HEADER_LEN
    chunk = room // block_size * block_size - 1
    if chunk < 1:
        raise ValueError(f"fragments of {max_len} bytes leave no room for content")
    return chunk


def fragment_plaintext_size(
    fragment_size: int,
    ipv6: bool,
    natt_marker: bool,
    iv_len: int,
    icv_len: int,
    block_size: int,
) -> int:
    """strongSwan's plaintext per fragment for ``charon.fragment_size`` (whole IP datagram)."""
    max_len = max_message_length(fragment_size, ipv6, natt_marker)
    return fragment_chunk_size(max_len, iv_len, icv_len, block_size)


def protect_fragments(
    header: Message, inner: Sequence[Payload] | Plain, cipher: SkCipherLike, max_len: int
) -> list[bytes]:
    """RFC 7383: the inner chain split over SKF fragments 1..N of at most ``max_len`` bytes,
    each sealed with its own associated data. The first inner type and the unprotected
    payloads go in fragment 1 only; the latter shrink fragment 1's share of the plaintext."""
    first_inner, plaintext = plain(inner)
    unprotected = _unprotected(header)
    chunk = fragment_chunk_size(max_len, cipher.iv_len, cipher.icv_len, cipher.block_size)
    _, unprotected_bytes = encode_chain(unprotected, outer=True)
    b = cipher.block_size
    first = (chunk + 1 - len(unprotected_bytes)) // b * b - 1
    if first < 0:
        raise EncodeError(f"unprotected payloads of {len(unprotected_bytes)} bytes do not fit")
    pieces = [plaintext[:first]]
    pieces += [plaintext[i : i + chunk] for i in range(first, len(plaintext), chunk)]
    total = len(pieces)
    if total > _MAX_FRAGMENTS:
        raise EncodeError(f"{total} fragments exceed the 16-bit Total Fragments field")
    return [
        _seal(
            header,
            unprotected if number == 1 else [],
            EncryptedFragment(
                first_inner=first_inner if number == 1 else 0, number=number, total=total
            ),
            piece,
            cipher,
        )
        for number, piece in enumerate(pieces, start=1)
    ]


def protect_or_fragment(
    header: Message,
    inner: Sequence[Payload],
    cipher: SkCipherLike,
    max_len: int | None,
) -> list[bytes]:
    """strongSwan's rule: a message of at most ``max_len`` bytes (or any, when ``max_len`` is
    None, i.e. fragmentation not negotiated) goes whole in one SK payload; else as SKFs."""
    if max_len is not None:
        _, plaintext = encode_payloads(inner)
        _, unprotected = encode_chain(_unprotected(header), outer=True)
        whole = IKE_HEADER_LEN + len(unprotected) + GENERIC_HEADER_LEN
        if whole + cipher.sealed_length(len(plaintext)) > max_len:
            return protect_fragments(header, inner, cipher, max_len)
    return [protect(header, inner, cipher)]


# --- opening ------------------------------------------------------------------------------


def unprotect(data: bytes, cipher: SkCipherLike) -> tuple[Message, list[Payload]]:
    """Decode a message with an SK payload, verify and decrypt it, decode the inner chain.

    Raises DecodeError for malformed bytes (outer, or inner once decrypted) and whatever the
    cipher raises when the ICV does not verify.
    """
    data = bytes(data)
    message = decode_message(data)
    return message, open_message(message, data, cipher).inner


def open_message(message: Message, data: bytes, cipher: SkCipherLike) -> Opened:
    """``unprotect`` of a message already decoded from ``data`` (not decoded twice)."""
    sk = message.sealed
    if not isinstance(sk, Encrypted):
        what = "an SKF payload (use unprotect_fragment)" if sk else "no SK payload"
        raise InvalidSyntax(f"message has {what}", IKE_HEADER_LEN)
    assoc_len = len(data) - len(sk.body)
    plaintext = cipher.open(data[:assoc_len], sk.body)
    inner = decode_payloads(sk.first_inner, plaintext, assoc_len + cipher.iv_len)
    return Opened(inner, sk.first_inner, plaintext)


def unprotect_fragment(
    data: bytes, cipher: SkCipherLike, message: Message | None = None
) -> Fragment:
    """Decode (unless ``message`` is ``data`` decoded already), verify and decrypt one SKF
    fragment; its plaintext is a share of the chain."""
    data = bytes(data)
    if message is None:
        message = decode_message(data)
    skf = message.sealed
    if not isinstance(skf, EncryptedFragment):
        raise InvalidSyntax("message has no SKF payload", IKE_HEADER_LEN)
    assoc_len = len(data) - len(skf.body)
    plaintext = cipher.open(data[:assoc_len], skf.body)
    return Fragment(message, skf.number, skf.total, skf.first_inner, plaintext)


# --- RFC 9242 IntAuth ---------------------------------------------------------------------


def int_auth_a_p(
    message: Message | bytes,
    plaintext: bytes | Sequence[Payload],
    first_inner: int | None = None,
) -> tuple[bytes, bytes]:
    """(IntAuth_A, IntAuth_P) of an IKE_INTERMEDIATE message (RFC 9242 §3.3.2).

    A runs from the IKE header to the end of the SK header as if the message had been sent
    whole: IKE Length = len(A) + len(P), SK Payload Length = 4 + len(P), Next Payload SK even
    when it went as SKF fragments, SK flags 0. P is the inner chain's plaintext (pass the
    bytes, or the payloads to encode them). ``message`` is the message as sent or received
    (for a fragmented one: fragment 1); ``first_inner`` defaults to its SK/SKF's.
    """
    if not isinstance(message, Message):
        message = decode_message(bytes(message))
    if not isinstance(plaintext, (bytes, bytearray)):  # a tuple: no union built per call
        first_inner, plaintext = encode_payloads(plaintext)
    if first_inner is None:
        sealed = message.sealed
        if sealed is None or (isinstance(sealed, EncryptedFragment) and sealed.number != 1):
            raise ValueError("first_inner is needed: the message is not an SK or first SKF")
        first_inner = sealed.first_inner
    sealed = message.sealed
    unprotected = [q for q in message.payloads if q is not sealed]
    p = bytes(plaintext)
    return _prefix(message, unprotected, Encrypted(first_inner=first_inner), len(p)), p
