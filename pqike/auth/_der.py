"""Just enough DER for AlgorithmIdentifiers, SubjectPublicKeyInfo, PKCS#8 envelopes and the
outer layers of an X.509 certificate.

cryptography (our only ASN.1-capable dependency) exposes no generic DER codec, and the
structures needed here are tiny: definite lengths, a handful of universal tags. Anything
else is rejected rather than guessed at.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

SEQUENCE = 0x30
BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18


class DerError(ValueError):
    """Malformed or unsupported DER."""


@dataclass(frozen=True, slots=True)
class Tlv:
    tag: int
    value: bytes
    encoded: bytes  # the whole TLV, for exact-bytes comparisons


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(value)) + value


def read_tlv(data: bytes, pos: int = 0) -> tuple[Tlv, int]:
    """One TLV at ``pos``; returns it and the offset after it."""
    if pos + 2 > len(data):
        raise DerError("truncated DER header")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte DER tags are not supported")
    first = data[pos + 1]
    hdr = 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4:
            raise DerError("indefinite or oversized DER length")
        if pos + 2 + n > len(data):
            raise DerError("truncated DER length")
        length = int.from_bytes(data[pos + 2 : pos + 2 + n], "big")
        if length < 0x80 or data[pos + 2] == 0:
            raise DerError("non-minimal DER length")
        hdr += n
    end = pos + hdr + length
    if end > len(data):
        raise DerError("DER value runs past the end of the data")
    return Tlv(tag, bytes(data[pos + hdr : end]), bytes(data[pos:end])), end


def read_all(data: bytes) -> list[Tlv]:
    """All TLVs that exactly fill ``data``."""
    out: list[Tlv] = []
    pos = 0
    while pos < len(data):
        item, pos = read_tlv(data, pos)
        out.append(item)
    return out


def read_single(data: bytes, tag: int | None = None) -> Tlv:
    item, end = read_tlv(data)
    if end != len(data):
        raise DerError("trailing bytes after DER object")
    if tag is not None and item.tag != tag:
        raise DerError(f"expected DER tag 0x{tag:02x}, got 0x{item.tag:02x}")
    return item


def encode_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39):
        raise ValueError(f"invalid OID {dotted!r}")
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv(OID, bytes(body))


def decode_oid(value: bytes) -> str:
    if not value or value[-1] & 0x80:
        raise DerError("malformed OID")
    arcs: list[int] = []
    acc = 0
    for i, b in enumerate(value):
        if acc == 0 and b == 0x80 and (i == 0 or not value[i - 1] & 0x80):
            raise DerError("non-minimal OID arc")
        acc = (acc << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(acc)
            acc = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def encode_uint(n: int) -> bytes:
    body = n.to_bytes(n.bit_length() // 8 + 1, "big")  # leading 0 keeps it positive
    return tlv(INTEGER, body)


def decode_uint(value: bytes) -> int:
    if not value or value[0] & 0x80:
        raise DerError("expected a non-negative INTEGER")
    return int.from_bytes(value, "big")


def algorithm_identifier(oid: str, params: bytes | None = None) -> bytes:
    """DER AlgorithmIdentifier; ``params`` is an encoded TLV or None for absent."""
    return tlv(SEQUENCE, encode_oid(oid) + (params or b""))


def parse_algorithm_identifier(data: bytes) -> tuple[str, bytes | None]:
    """(dotted OID, encoded parameters TLV or None) of one complete AlgorithmIdentifier."""
    seq = read_single(data, SEQUENCE)
    parts = read_all(seq.value)
    if not parts or parts[0].tag != OID or len(parts) > 2:
        raise DerError("malformed AlgorithmIdentifier")
    return decode_oid(parts[0].value), parts[1].encoded if len(parts) == 2 else None


def encode_bool(value: bool) -> bytes:
    return tlv(BOOLEAN, b"\xff" if value else b"\x00")  # DER: TRUE is 0xFF


def bit_string(data: bytes) -> bytes:
    """A BIT STRING of whole octets (no unused bits), as keys and signatures are."""
    return tlv(BIT_STRING, b"\x00" + data)


def encode_time(t: dt.datetime) -> bytes:
    """RFC 5280 §4.1.2.5 Time: UTCTime through 2049, GeneralizedTime from 2050; seconds
    precision, always UTC ("Z"). A naive datetime is taken as UTC."""
    t = t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)
    if 1950 <= t.year <= 2049:
        return tlv(UTC_TIME, t.strftime("%y%m%d%H%M%SZ").encode())
    return tlv(GENERALIZED_TIME, f"{t.year:04d}{t.strftime('%m%d%H%M%S')}Z".encode())
