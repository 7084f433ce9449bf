"""Mutators: byte-level ones for whole IKE messages (and for SK plaintext), and
structure-aware ones for payload lists (what goes under SK/SKF before sealing, or an
IKE_SA_INIT message before encoding).

Every mutator takes a seeded ``random.Random`` and returns ``(op name, result)``; the name
goes into reports so a failure can be reproduced. Byte mutators know the IKE layout (header
fields, the generic payload header chain) but never decode, so they also work on bytes a
decoder would refuse.
"""

from __future__ import annotations

import copy
import ipaddress
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from random import Random

from pqike.wire.iana import (
    IKE_HEADER_LEN,
    AuthMethod,
    CfgAttr,
    ExchangeType,
    IdType,
    KeMethod,
    NotifyType,
    PayloadType,
    TransformType,
    TsType,
)
from pqike.wire.payloads import (
    AddressRangeSelector,
    Authentication,
    Certificate,
    CertificateRequest,
    ConfigAttribute,
    Configuration,
    Delete,
    EncodeError,
    ExtensibleAuthentication,
    Identification,
    IDi,
    IDr,
    KeyExchange,
    Nonce,
    Notify,
    Payload,
    Proposal,
    RawTrafficSelector,
    SecurityAssociation,
    TrafficSelectors,
    Transform,
    TransformAttribute,
    TSi,
    TSr,
    UnknownPayload,
    VendorId,
    encode_payloads,
)

U16_EDGES = (0, 1, 2, 3, 4, 5, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x3FFF, 0x4000, 0x7FFF, 0x8000,
             0xFFFE, 0xFFFF)  # fmt: skip
BYTE_EDGES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
SEALED_TYPES = (PayloadType.SK, PayloadType.SKF)
# payload types worth naming in a Next Payload field: every known one, NONE, neighbours of
# the registry and the private-use range
PAYLOAD_TYPES = (*[int(t) for t in PayloadType], 1, 32, 49, 50, 51, 52, 54, 127, 128, 200, 255)


# --- byte level: the generic payload header chain -------------------------------------------


@dataclass(frozen=True)
class ChainEntry:
    offset: int  # of the generic payload header
    ptype: int
    next_at: int  # where the Next Payload value naming *this* payload lives


def walk_chain(data: bytes, start: int, first_type: int, first_at: int) -> list[ChainEntry]:
    """The payload headers a decoder would visit, as far as the lengths hold together."""
    out: list[ChainEntry] = []
    ptype, pos, at = first_type, start, first_at
    while ptype != 0 and pos + 4 <= len(data):
        out.append(ChainEntry(pos, ptype, at))
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 4 or ptype in SEALED_TYPES:
            break
        ptype, at, pos = data[pos], pos, pos + length
    return out


def message_chain(data: bytes) -> list[ChainEntry]:
    if len(data) < IKE_HEADER_LEN:
        return []
    return walk_chain(data, IKE_HEADER_LEN, data[16], 16)


ByteOp = Callable[[bytearray, Random, list[ChainEntry], bool], str]


def _fix_length(b: bytearray, header: bool) -> None:
    if header and len(b) >= IKE_HEADER_LEN:
        b[24:28] = len(b).to_bytes(4, "big")


def _flip_bits(b: bytearray, rng: Random, chain: list[ChainEntry], header: bool) -> str:
    n = rng.choice((1, 1, 2, 3, 8))
    for _ in range(n):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return f"flip{n}"


def _set_bytes(b: bytearray, rng: Random, chain: list[ChainEntry], header: bool) -> str:
    n = rng.choice((1, 1, 2, 4, 8))
    for _ in range(n):
        b[rng.randrange(len(b))] = rng.choice((*BYTE_EDGES, rng.randrange(256)))
    return f"set{n}"


def _truncate(b: bytearray, rng: Random, chain: list[ChainEntry], header: bool) -> str:
    cut = rng.choice((rng.randrange(len(b)), len(b) - 1, IKE_HEADER_LEN, IKE_HEADER_LEN - 1))
    del b[max(0, cut) :]
    return "truncate"


def _extend(b: bytearray, rng: Random, chain: list[ChainEntry], header: bool) -> str:
    b += rng.randbytes(rng.choice((1, 4, 16, 100, 1500)))
    if header and rng.random() < 0.5:
        _fix_length(b, header)  # a consistent IKE Length, garbage at the end
        return "extend+len"
    return "extend"


def _ike_length(b: bytearray, rng: Random, chain: list[ChainEntry], header: bool) -> str:
    n = len(b)
    value = rng.choice((0, 1, 27, 28, 29, n - 1, n + 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF))
    b[24:28] = value.to_bytes(4, "big")
    return "ike-length"


def _payload_length(b: bytearray, rng: Random, chain: list[ChainEntry], header: bool) -> str:
    if not chain:
        return _set_bytes(b, rng, chain, header)
    e = rng.choice(chain)
    cur = int.from_bytes(b[e.offset + 2 : e.offset + 4], "big")
    left = len(b) - e.offset
    value = rng.choice((*U16_EDGES, cur - 1, cur + 1, left, left + 1, left - 1))
    b[e.offset + 2 : e.offset + 4] = (value & 0xFFFF).to_bytes(2, "big")
    return "payload-length"


def _next_payload(b: bytearray, rng: Random, chain: list[ChainEntry], header: bool) -> str:
    if not chain:
        return _set_bytes(b, rng, chain, header)
    e = rng.choice(chain)
    b[e.next_at] = rng.choice((*PAYLOAD_TYPES, rng.randrange(256)))
    return "next-payload"


def _critical(b: bytearray, rng: Random, chain: list[ChainEntry], header: bool) -> str:
    if not chain:
        return _set_bytes(b, rng, chain, header)
    e = rng.choice(chain)
    if rng.random() < 0.7:
        b[e.offset + 1] ^= 0x80
        return "critical"
    b[e.offset + 1] |= rng.randrange(1, 0x80)
    return "reserved-bits"


def _plain_payload(b: bytearray, rng: Random, chain: list[ChainEntry]) -> tuple[ChainEntry, int]:
    """A payload of the chain that is not SK/SKF, and its Payload Length."""
    e = rng.choice([e for e in chain if e.ptype not in SEALED_TYPES])
    return e, int.from_bytes(b[e.offset + 2 : e.offset + 4], "big")


def _drop_payload(b: bytearray, rng: Random, chain: list[ChainEntry], header: bool) -> str:
    """Splice a payload out of the chain and fix the lengths around it."""
    if all(e.ptype in SEALED_TYPES for e in chain):
        return _truncate(b, rng, chain, header)
    e, length = _plain_payload(b, rng, chain)
    b[e.next_at] = b[e.offset]
    del b[e.offset : e.offset + length]
    _fix_length(b, header)
    return "drop-payload"


def _dup_payload(b: bytearray, rng: Random, chain: list[ChainEntry], header: bool) -> str:
    """Insert a copy of a payload in front of it."""
    if all(e.ptype in SEALED_TYPES for e in chain):
        return _extend(b, rng, chain, header)
    e, length = _plain_payload(b, rng, chain)
    dup = bytearray(b[e.offset : e.offset + max(length, 4)])
    dup[0] = e.ptype  # the copy is followed by the original
    b[e.offset : e.offset] = dup
    _fix_length(b, header)
    return "dup-payload"


def _version(b: bytearray, rng: Random, chain: list[ChainEntry], header: bool) -> str:
    b[17] = rng.choice((0x00, 0x10, 0x1F, 0x21, 0x2F, 0x30, 0x31, 0xF0, 0xFF))
    return "version"


def _flags(b: bytearray, rng: Random, chain: list[ChainEntry], header: bool) -> str:
    b[19] = rng.choice((b[19] ^ 0x08, b[19] ^ 0x20, b[19] ^ 0x10, b[19] ^ 0x28, rng.randrange(256)))
    return "flags"


def _exchange(b: bytearray, rng: Random, chain: list[ChainEntry], header: bool) -> str:
    b[18] = rng.choice((*[int(t) for t in ExchangeType], 0, 1, 33, 39, 42, 45, 240, 255))
    return "exchange"


def _message_id(b: bytearray, rng: Random, chain: list[ChainEntry], header: bool) -> str:
    mid = int.from_bytes(b[20:24], "big")
    value = rng.choice((0, 1, mid - 1, mid + 1, mid + 2, 0x7FFFFFFF, 0xFFFFFFFF))
    b[20:24] = (value & 0xFFFFFFFF).to_bytes(4, "big")
    return "message-id"


def _spis(b: bytearray, rng: Random, chain: list[ChainEntry], header: bool) -> str:
    what = rng.randrange(4)
    if what == 0:
        b[8:16] = bytes(8)
    elif what == 1:
        b[0:8] = bytes(8)
    elif what == 2:
        b[0:8], b[8:16] = b[8:16], b[0:8]
    else:
        at = rng.choice((0, 8))
        b[at : at + 8] = rng.randbytes(8)
    return "spis"


def _skf_numbers(b: bytearray, rng: Random, chain: list[ChainEntry], header: bool) -> str:
    skf = [e for e in chain if e.ptype == PayloadType.SKF]
    if not skf or skf[0].offset + 8 > len(b):
        return _flip_bits(b, rng, chain, header)
    at = skf[0].offset + 4 + rng.choice((0, 2))
    b[at : at + 2] = rng.choice((*U16_EDGES, 9, 10, 11, 254, 256)).to_bytes(2, "big")
    return "skf-numbers"


HEADER_OPS: tuple[ByteOp, ...] = (_version, _flags, _exchange, _message_id, _spis, _ike_length)
CHAIN_OPS: tuple[ByteOp, ...] = (
    _payload_length,
    _next_payload,
    _critical,
    _drop_payload,
    _dup_payload,
    _skf_numbers,
)
BLIND_OPS: tuple[ByteOp, ...] = (_flip_bits, _set_bytes, _truncate, _extend)
BYTE_OPS: tuple[ByteOp, ...] = HEADER_OPS + CHAIN_OPS + BLIND_OPS


def mutate_message(data: bytes, rng: Random, other: bytes | None = None) -> tuple[str, bytes]:
    """One to three byte-level mutations of a whole IKE message; never returns ``data``.

    ``other`` (another seed) allows a splice: this message's header, the other's payloads.
    """
    for _ in range(8):
        b = bytearray(data)
        names = []
        if other is not None and len(other) > IKE_HEADER_LEN and rng.random() < 0.05:
            b[IKE_HEADER_LEN:] = other[IKE_HEADER_LEN:]
            b[16] = other[16]
            _fix_length(b, True)
            names.append("splice")
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            if not b:
                break
            ops = BYTE_OPS if len(b) >= IKE_HEADER_LEN else BLIND_OPS
            names.append(rng.choice(ops)(b, rng, message_chain(bytes(b)), True))
        if bytes(b) != data:
            return "+".join(names), bytes(b)
    return "random", rng.randbytes(rng.randrange(1, 2000))


def mutate_plaintext(first: int, plain: bytes, rng: Random) -> tuple[str, int, bytes]:
    """Byte-level mutation of an SK inner chain before sealing: (op, first type, bytes).

    The first payload type travels in the SK header, not in the plaintext; it is kept in
    front of the buffer so the chain ops can rewrite it like any Next Payload field.
    """
    for _ in range(8):
        b = bytearray([first]) + bytearray(plain)
        names = []
        for _ in range(rng.choice((1, 1, 2))):
            if len(b) < 1:
                break
            chain = walk_chain(bytes(b), 1, b[0], 0)
            ops = CHAIN_OPS + BLIND_OPS if len(b) > 1 else (_next_payload, _extend)
            names.append(rng.choice(ops)(b, rng, chain, False))
        new_first, new_plain = (b[0], bytes(b[1:])) if b else (0, b"")
        if (new_first, new_plain) != (first, plain):
            return "+".join(names), new_first, new_plain
    return "random", first, rng.randbytes(rng.randrange(1, 200))


# --- structure level: payload lists ---------------------------------------------------------


@dataclass
class Context:
    """What a structure mutator may borrow from the session: SPIs that exist."""

    child_spis: list[bytes] = field(default_factory=list)
    ike_spis: list[bytes] = field(default_factory=list)


def _pick(rng: Random, values: Sequence[int]) -> int:
    return rng.choice(values)


def _text(rng: Random) -> bytes:
    return rng.choice(
        (
            b"",
            b"carol@strongswan.org\n12:00:00 [IKE] <rw|1> IKE_SA rw[1] established",
            b"\x00\x01\x7f\x1b[31mred\x1b[0m",
            b"\xff\xfe\xfd",
            rng.randbytes(rng.choice((1, 3, 4, 5, 15, 16, 17, 64))),
            b"a" * rng.choice((255, 256, 4000)),
            "ünïcødé.example".encode(),
        )
    )


def random_notify(rng: Random, ctx: Context) -> Notify:
    ntype = rng.choice((*list(NotifyType), rng.randrange(0x10000), 0, 16384, 65535))
    spi = rng.choice((b"", b"", rng.randbytes(rng.choice((1, 4, 8, 16))), *ctx.child_spis[:2]))
    data = rng.choice(
        (
            b"",
            rng.randbytes(rng.choice((1, 2, 3, 4, 8, 16, 20, 32, 255, 2000))),
            struct.pack("!H", rng.choice((0, 31, 19, 0xFFFF))),
        )
    )
    return Notify(notify_type=ntype, data=data, protocol=_pick(rng, (0, 1, 2, 3, 255)), spi=spi)


def random_transform(rng: Random) -> Transform:
    ttype = rng.choice((*list(TransformType), 0, 13, 241, 255))
    tid = rng.choice((0, 1, 12, 20, 31, 35, 36, 37, 1024, 0xFFFF, rng.randrange(0x10000)))
    attrs = []
    if rng.random() < 0.3:
        value: int | bytes = rng.choice((0, 1, 127, 128, 256, 0xFFFF, rng.randbytes(3)))
        attrs.append(TransformAttribute(rng.choice((14, 1, 0x7FFF)), value))
    return Transform(ttype, tid, attrs)


def random_proposal(rng: Random, ctx: Context) -> Proposal:
    spi = rng.choice((b"", rng.randbytes(rng.choice((1, 4, 8, 16))), *ctx.child_spis[:1]))
    transforms = [random_transform(rng) for _ in range(rng.choice((0, 1, 3, 6, 30)))]
    return Proposal(
        number=_pick(rng, (0, 1, 2, 255)),
        protocol=_pick(rng, (0, 1, 2, 3, 4, 255)),
        transforms=transforms,
        spi=spi,
    )


def random_selector(rng: Random) -> AddressRangeSelector | RawTrafficSelector:
    if rng.random() < 0.2:
        size = rng.choice((0, 3, 8, 12, 20, 36, 100))
        return RawTrafficSelector(rng.choice((*list(TsType), 0, 6, 255)), rng.randbytes(size))
    v6 = rng.random() < 0.3
    bits = 128 if v6 else 32
    lo, hi = rng.getrandbits(bits), rng.getrandbits(bits)
    if rng.random() < 0.5:
        lo, hi = min(lo, hi), max(lo, hi)
    make = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
    return AddressRangeSelector(
        make(lo),
        make(hi),
        _pick(rng, (0, 1, 6, 17, 58, 255)),
        _pick(rng, (0, 1, 500, 0xFFFF)),
        _pick(rng, (0, 1, 500, 0xFFFF)),
    )


def random_payload(rng: Random, ctx: Context) -> Payload:
    """One payload of any kind, with hostile contents."""
    kind = rng.randrange(14)
    if kind == 0:
        return random_notify(rng, ctx)
    if kind == 1:
        return UnknownPayload(
            payload_type=rng.choice((1, 32, 49, 50, 52, 54, 127, 128, 200, 255)),
            body=rng.randbytes(rng.choice((0, 4, 40))),
            critical=rng.random() < 0.5,
        )
    if kind == 2:
        return KeyExchange(method=rng.choice((*list(KeMethod), 0, 0xFFFF)), data=_text(rng))
    if kind == 3:
        cls = rng.choice((IDi, IDr))
        return cls(id_type=rng.choice((*list(IdType), 0, 4, 12, 255)), data=_text(rng))
    if kind == 4:
        return Authentication(method=rng.choice((*list(AuthMethod), 0, 255)), data=_text(rng))
    if kind == 5:
        return Nonce(data=rng.randbytes(rng.choice((0, 1, 15, 16, 256, 257, 1000))))
    if kind == 6:
        return SecurityAssociation(proposals=[random_proposal(rng, ctx) for _ in range(3)])
    if kind == 7:
        cls_ts = rng.choice((TSi, TSr))
        return cls_ts(selectors=[random_selector(rng) for _ in range(rng.choice((0, 1, 2, 40)))])
    if kind == 8:
        return random_cp(rng)
    if kind == 9:
        return random_delete(rng, ctx)
    if kind == 10:
        cls_c = rng.choice((Certificate, CertificateRequest))
        return cls_c(encoding=rng.choice((0, 1, 4, 12, 255)), data=_text(rng))
    if kind == 11:
        body = rng.randbytes(rng.choice((0, 3, 4, 10)))
        return ExtensibleAuthentication(message=body)
    if kind == 12:
        return VendorId(data=_text(rng))
    return Notify(notify_type=NotifyType.ADDITIONAL_KEY_EXCHANGE, data=rng.randbytes(1))


def random_cp(rng: Random) -> Configuration:
    attrs = []
    for _ in range(rng.choice((0, 1, 3, 200))):
        atype = rng.choice((*list(CfgAttr), 0, 0x7FFF, rng.randrange(0x8000)))
        size = rng.choice((0, 1, 3, 4, 5, 8, 16, 17, 20))
        attrs.append(ConfigAttribute(atype, rng.randbytes(size), rng.random() < 0.1))
    return Configuration(cfg_type=rng.choice((0, 1, 2, 3, 4, 5, 255)), attributes=attrs)


def random_delete(rng: Random, ctx: Context) -> Delete:
    size = rng.choice((0, 1, 2, 3, 4, 4, 8, 16, 255))
    count = rng.choice((0, 1, 1, 2, 100, 1000)) if size else 0
    known = [s for s in ctx.child_spis + ctx.ike_spis if len(s) == size]
    spis = [rng.choice(known) if known and rng.random() < 0.5 else rng.randbytes(size)
            for _ in range(count)]  # fmt: skip
    return Delete(protocol=_pick(rng, (0, 1, 2, 3, 4, 255)), spis=spis, spi_size=size)


# field mutations, one function per payload class --------------------------------------------


def _mut_bytes(data: bytes, rng: Random) -> bytes:
    choice = rng.randrange(6)
    if choice == 0 or not data:
        return rng.randbytes(rng.choice((0, 1, 2, 31, 33, 1000, 3000)))
    if choice == 1:
        return data[: rng.randrange(len(data))]
    if choice == 2:
        return data + rng.randbytes(rng.choice((1, 16, 1000)))
    if choice == 3:
        return rng.randbytes(len(data))
    if choice == 4:
        b = bytearray(data)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b)
    return data * 2


def _mut_ke(p: KeyExchange, rng: Random, ctx: Context) -> None:
    if rng.random() < 0.4:
        p.method = rng.choice((*list(KeMethod), 0, 0xFFFF, rng.randrange(0x10000)))
    else:
        p.data = _mut_bytes(p.data, rng)


def _mut_id(p: Identification, rng: Random, ctx: Context) -> None:
    choice = rng.randrange(3)
    if choice == 0:
        p.id_type = rng.choice((IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR))
        p.data = rng.randbytes(rng.choice((0, 1, 3, 4, 5, 15, 16, 17)))
    elif choice == 1:
        p.id_type = rng.choice((*list(IdType), 0, 4, 12, 255))
    else:
        p.data = _text(rng)


def _mut_auth(p: Authentication, rng: Random, ctx: Context) -> None:
    if rng.random() < 0.3:
        p.method = rng.choice((*list(AuthMethod), 0, 255))
    elif p.method == AuthMethod.DIGITAL_SIGNATURE and rng.random() < 0.5:
        # RFC 7427: one length octet, an AlgorithmIdentifier, the signature
        p.data = bytes([rng.choice((0, 1, 0x0F, 0x80, 0xFF))]) + p.data[1:]
    else:
        p.data = _mut_bytes(p.data, rng)


def _mut_notify(p: Notify, rng: Random, ctx: Context) -> None:
    choice = rng.randrange(4)
    if choice == 0:
        p.notify_type = rng.choice((*list(NotifyType), rng.randrange(0x10000)))
    elif choice == 1:
        p.data = _mut_bytes(p.data, rng)
    elif choice == 2:
        p.spi = rng.choice((b"", rng.randbytes(rng.choice((1, 3, 4, 8, 16)))))
    else:
        p.protocol = _pick(rng, (0, 1, 2, 3, 4, 255))


def _mut_sa(p: SecurityAssociation, rng: Random, ctx: Context) -> None:
    choice = rng.randrange(6)
    props = p.proposals
    if choice == 0 or not props:
        p.proposals = [random_proposal(rng, ctx) for _ in range(rng.choice((0, 1, 2, 20)))]
        return
    prop = rng.choice(props)
    if choice == 1:
        prop.protocol = _pick(rng, (0, 1, 2, 3, 4, 255))
    elif choice == 2:
        prop.spi = rng.choice((b"", rng.randbytes(rng.choice((1, 3, 4, 8, 16, 255)))))
    elif choice == 3 and prop.transforms:
        i = rng.randrange(len(prop.transforms))  # what rng.choice draws
        tid = rng.choice((0, 0xFFFF, rng.randrange(0x10000)))
        ttype = rng.choice((*list(TransformType), 0, 255))
        prop.transforms[i] = replace(prop.transforms[i], transform_type=ttype, transform_id=tid)
    elif choice == 4 and prop.transforms:
        victim = rng.randrange(len(prop.transforms))
        if rng.random() < 0.5:
            del prop.transforms[victim]
        else:
            prop.transforms.append(copy.deepcopy(prop.transforms[victim]))
    else:
        prop.transforms.append(random_transform(rng))


def _mut_ts(p: TrafficSelectors, rng: Random, ctx: Context) -> None:
    choice = rng.randrange(4)
    if choice == 0:
        p.selectors = []
    elif choice == 1:
        p.selectors = [random_selector(rng) for _ in range(rng.choice((1, 2, 255)))]
    elif choice == 2 and p.selectors:
        i = rng.randrange(len(p.selectors))  # what rng.choice draws
        s = p.selectors[i]
        if isinstance(s, AddressRangeSelector):  # immutable: a swapped one in its place
            start_port, end_port = _pick(rng, (0xFFFF, 500)), _pick(rng, (0, 499))
            p.selectors[i] = replace(
                s,
                start_addr=s.end_addr,
                end_addr=s.start_addr,
                start_port=start_port,
                end_port=end_port,
                ip_protocol=_pick(rng, (0, 6, 17, 255)),
            )
    else:
        p.selectors.append(random_selector(rng))


def _mut_cp(p: Configuration, rng: Random, ctx: Context) -> None:
    if rng.random() < 0.4:
        p.cfg_type = rng.choice((0, 1, 2, 3, 4, 255))
    else:
        p.attributes = random_cp(rng).attributes


def _mut_delete(p: Delete, rng: Random, ctx: Context) -> None:
    fresh = random_delete(rng, ctx)
    if rng.random() < 0.3:
        fresh.protocol = p.protocol
    p.protocol, p.spis, p.spi_size = fresh.protocol, fresh.spis, fresh.spi_size


def _mut_nonce(p: Nonce, rng: Random, ctx: Context) -> None:
    p.data = rng.randbytes(rng.choice((0, 1, 15, 17, 255, 256, 257, 2000)))


def _mut_cert(p: Certificate, rng: Random, ctx: Context) -> None:
    if rng.random() < 0.3:
        p.encoding = rng.choice((0, 1, 4, 12, 255))
    else:
        p.data = _mut_bytes(p.data, rng)


def _mut_generic(p: Payload, rng: Random, ctx: Context) -> None:
    if hasattr(p, "data"):
        p.data = _mut_bytes(p.data, rng)  # type: ignore[attr-defined]
    else:
        p.critical = not p.critical


_FIELD_MUTATORS: tuple[tuple[type, Callable[..., None]], ...] = (
    (KeyExchange, _mut_ke),
    (Identification, _mut_id),
    (Authentication, _mut_auth),
    (Notify, _mut_notify),
    (SecurityAssociation, _mut_sa),
    (TrafficSelectors, _mut_ts),
    (Configuration, _mut_cp),
    (Delete, _mut_delete),
    (Nonce, _mut_nonce),
    (Certificate, _mut_cert),
)

# the families a test can restrict structure mutations to (see test_sealed)
FAMILIES = ("list", "notify", "ke", "sa", "ts", "id", "auth", "cp", "delete", "other")
_FAMILY_OF: dict[type, str] = {
    KeyExchange: "ke",
    Identification: "id",
    Authentication: "auth",
    Notify: "notify",
    SecurityAssociation: "sa",
    TrafficSelectors: "ts",
    Configuration: "cp",
    Delete: "delete",
}


def family_of(p: Payload) -> str:
    return next((f for cls, f in _FAMILY_OF.items() if isinstance(p, cls)), "other")


def _mutate_field(p: Payload, rng: Random, ctx: Context) -> str:
    for cls, fn in _FIELD_MUTATORS:
        if isinstance(p, cls):
            fn(p, rng, ctx)
            return f"field:{type(p).__name__}"
    _mut_generic(p, rng, ctx)
    return f"field:{type(p).__name__}"


def _list_op(out: list[Payload], rng: Random, ctx: Context, family: str | None) -> str:
    """Drop/duplicate/reorder/insert/replace: what a hostile peer does to the payload list."""
    choice = rng.randrange(7)
    if choice == 0 and out:
        del out[rng.randrange(len(out))]
        return "drop"
    if choice == 1 and out:
        i = rng.randrange(len(out))
        out.insert(rng.randrange(len(out) + 1), copy.deepcopy(out[i]))
        return "duplicate"
    if choice == 2 and len(out) > 1:
        rng.shuffle(out)
        return "shuffle"
    if choice == 3:
        out.clear()
        return "empty"
    if choice == 4 and out:
        p = rng.choice(out)
        p.critical = not p.critical
        return "critical"
    new = _random_of_family(rng, ctx, family)
    if choice == 5 and out:
        out[rng.randrange(len(out))] = new
        return f"replace:{type(new).__name__}"
    out.insert(rng.randrange(len(out) + 1), new)
    return f"insert:{type(new).__name__}"


def _random_of_family(rng: Random, ctx: Context, family: str | None) -> Payload:
    for _ in range(50):
        p = random_payload(rng, ctx)
        if family in (None, "list") or family_of(p) == family:
            return p
    return random_payload(rng, ctx)


def mutate_payloads(
    payloads: Sequence[Payload], rng: Random, ctx: Context | None = None, family: str | None = None
) -> tuple[str, list[Payload]]:
    """A hostile variant of ``payloads`` that still encodes; never the same list.

    ``family`` restricts the mutation to one kind of payload (``FAMILIES``); with None,
    anything goes.
    """
    ctx = ctx or Context()
    for _ in range(20):
        out = copy.deepcopy(list(payloads))
        names = []
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            targets = [p for p in out if family in (None, "list") or family_of(p) == family]
            if family == "list" or not targets or rng.random() < 0.25:
                names.append(_list_op(out, rng, ctx, family))
            else:
                names.append(_mutate_field(rng.choice(targets), rng, ctx))
        try:
            if encode_payloads(out) == encode_payloads(payloads):
                continue
        except (EncodeError, ValueError, struct.error):
            continue
        return "+".join(names), out
    return "insert:Notify", [*copy.deepcopy(list(payloads)), random_notify(rng, ctx)]
