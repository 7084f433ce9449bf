"""A tiny classic-pcap reader and writer for IKE test data.

Reading: classic libpcap files (either byte order, micro- or nanosecond), link types Ethernet
(with 802.1Q tags), Linux cooked v1/v2 and raw IP; IPv4 (unfragmented) and IPv6 (no extension
headers); UDP to or from port 500 or 4500. On 4500 the non-ESP marker is stripped and ESP and
NAT-keepalives are skipped (RFC 3948 §2). Writing: Ethernet/IPv4/UDP packets, enough for tshark.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pqike.wire.iana import IKE_NATT_UDP_PORT, IKE_UDP_PORT

IKE_PORT, NATT_PORT = IKE_UDP_PORT, IKE_NATT_UDP_PORT
NON_ESP_MARKER = b"\x00\x00\x00\x00"

_MAGIC_US, _MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
_LINK_ETHERNET, _LINK_RAW, _LINK_SLL, _LINK_SLL2 = 1, 101, 113, 276
_ETH_IPV4, _ETH_IPV6, _ETH_VLAN = 0x0800, 0x86DD, (0x8100, 0x88A8)
_IPPROTO_UDP = 17


@dataclass(frozen=True)
class IkePacket:
    index: int  # 0-based position in the capture (counting every record)
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    data: bytes  # the IKE message (non-ESP marker removed)
    natt: bool  # came with a non-ESP marker (port 4500)


def _network(link: int, frame: bytes) -> tuple[int, bytes] | None:
    """(ethertype, L3 bytes) for the supported link types."""
    if link == _LINK_ETHERNET:
        if len(frame) < 14:
            return None
        etype, pos = struct.unpack_from("!H", frame, 12)[0], 14
        while etype in _ETH_VLAN and len(frame) >= pos + 4:
            etype, pos = struct.unpack_from("!H", frame, pos + 2)[0], pos + 4
        return etype, frame[pos:]
    if link == _LINK_SLL and len(frame) >= 16:
        return struct.unpack_from("!H", frame, 14)[0], frame[16:]
    if link == _LINK_SLL2 and len(frame) >= 20:
        return struct.unpack_from("!H", frame, 0)[0], frame[20:]
    if link == _LINK_RAW and frame:
        return (_ETH_IPV6 if frame[0] >> 4 == 6 else _ETH_IPV4), frame
    return None


def _udp(etype: int, l3: bytes) -> tuple[str, str, bytes] | None:
    """(src, dst, UDP segment) of an unfragmented IPv4 or plain IPv6 UDP packet."""
    if etype == _ETH_IPV4 and len(l3) >= 20 and l3[0] >> 4 == 4:
        ihl = (l3[0] & 0x0F) * 4
        total = struct.unpack_from("!H", l3, 2)[0]
        frag = struct.unpack_from("!H", l3, 6)[0] & 0x3FFF  # MF flag or offset: a fragment
        if l3[9] != _IPPROTO_UDP or frag or total > len(l3):
            return None
        src, dst = (str(ipaddress.IPv4Address(l3[i : i + 4])) for i in (12, 16))
        return src, dst, l3[ihl:total]
    if etype == _ETH_IPV6 and len(l3) >= 40 and l3[6] == _IPPROTO_UDP:
        plen = struct.unpack_from("!H", l3, 4)[0]
        src, dst = (str(ipaddress.IPv6Address(l3[i : i + 16])) for i in (8, 24))
        return src, dst, l3[40 : 40 + plen]
    return None


def read_records(path: str | os.PathLike) -> Iterator[tuple[float, int, bytes]]:
    """(timestamp, link type, frame) of every record of a classic pcap file."""
    raw = Path(path).read_bytes()
    if len(raw) < 24:
        raise ValueError(f"{path}: too short for a pcap header")
    for order in ("<", ">"):
        magic = struct.unpack_from(order + "I", raw)[0]
        if magic in (_MAGIC_US, _MAGIC_NS):
            break
    else:
        raise ValueError(f"{path}: not a classic pcap file (pcapng is not supported)")
    scale = 1e-9 if magic == _MAGIC_NS else 1e-6
    link = struct.unpack_from(order + "I", raw, 20)[0] & 0x0FFFFFFF
    pos = 24
    while pos + 16 <= len(raw):
        sec, frac, incl, _orig = struct.unpack_from(order + "IIII", raw, pos)
        pos += 16
        if pos + incl > len(raw):
            raise ValueError(f"{path}: truncated record at byte {pos - 16}")
        yield sec + frac * scale, link, raw[pos : pos + incl]
        pos += incl


def ike_packets(path: str | os.PathLike) -> list[IkePacket]:
    """Every IKE message in the capture, in order (ESP and keepalives skipped)."""
    out: list[IkePacket] = []
    for index, (ts, link, frame) in enumerate(read_records(path)):
        l3 = _network(link, frame)
        udp = _udp(*l3) if l3 else None
        if udp is None or len(udp[2]) < 8:
            continue
        src, dst, seg = udp
        sport, dport, ulen = struct.unpack_from("!HHH", seg)
        payload = seg[8:ulen]
        ports = {sport, dport}
        if NATT_PORT in ports:
            if not payload.startswith(NON_ESP_MARKER):
                continue  # ESP (non-zero SPI) or a one-octet NAT-keepalive
            out.append(IkePacket(index, ts, src, sport, dst, dport, payload[4:], True))
        elif IKE_PORT in ports:
            out.append(IkePacket(index, ts, src, sport, dst, dport, payload, False))
    return out


# --- writing ------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_frame(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An Ethernet/IPv4/UDP frame with valid IP and UDP checksums."""
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    ulen = 8 + len(payload)
    pseudo = s + d + struct.pack("!BBH", 0, _IPPROTO_UDP, ulen)
    csum = _checksum(pseudo + struct.pack("!HHHH", sport, dport, ulen, 0) + payload) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, ulen, csum) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, _IPPROTO_UDP, 0, s, d)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    eth = bytes.fromhex("020000000002020000000001") + struct.pack("!H", _ETH_IPV4)
    return eth + ip + udp


def write_pcap(path: str | os.PathLike, frames: Iterable[bytes]) -> Path:
    """A classic little-endian pcap file of Ethernet frames, one per second."""
    out = [struct.pack("<IHHiIII", _MAGIC_US, 2, 4, 0, 0, 65535, _LINK_ETHERNET)]
    for i, frame in enumerate(frames):
        out.append(struct.pack("<IIII", i, 0, len(frame), len(frame)) + frame)
    target = Path(path)
    target.write_bytes(b"".join(out))
    return target


def write_ike_pcap(
    path: str | os.PathLike,
    messages: Iterable[bytes],
    src: str = "192.0.2.1",
    dst: str = "192.0.2.2",
) -> Path:
    """IKE messages as UDP/500 datagrams from ``src`` to ``dst``."""
    return write_pcap(path, (udp_frame(src, dst, IKE_PORT, IKE_PORT, m) for m in messages))
