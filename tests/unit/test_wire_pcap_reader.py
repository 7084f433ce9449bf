"""tests/harness/pcap.py: the tiny pcap reader/writer the wire tests rely on."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest

from tests.harness.pcap import ike_packets, udp_frame, write_pcap

IKE = b"\x11" * 28  # stands in for an IKE message; the reader does not decode IKE


def ipv6_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    head = struct.pack("!IHBB", 6 << 28, len(udp), 17, 64)
    return head + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + udp


def pcap(path: Path, link: int, frames: list[bytes], order: str = "<", magic: int = 0xA1B2C3D4):
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, link)]
    out += [struct.pack(order + "IIII", 7, 500, len(f), len(f)) + f for f in frames]
    path.write_bytes(b"".join(out))
    return path


def test_writer_round_trip_and_port_4500(tmp_path: Path) -> None:
    frames = [
        udp_frame("192.0.2.1", "192.0.2.2", 500, 500, IKE),
        udp_frame("192.0.2.1", "192.0.2.2", 4500, 4500, b"\0\0\0\0" + IKE),  # non-ESP marker
        udp_frame("192.0.2.1", "192.0.2.2", 4500, 4500, b"\x7a\xb9\x20\x63" + bytes(40)),  # ESP
        udp_frame("192.0.2.1", "192.0.2.2", 4500, 4500, b"\xff"),  # NAT-keepalive
        udp_frame("192.0.2.1", "192.0.2.2", 53, 53, IKE),  # not IKE
    ]
    got = ike_packets(write_pcap(tmp_path / "a.pcap", frames))
    assert [(p.index, p.natt, p.data) for p in got] == [(0, False, IKE), (1, True, IKE)]
    assert (got[1].src, got[1].sport, got[1].dst, got[1].dport) == (
        "192.0.2.1",
        4500,
        "192.0.2.2",
        4500,
    )


def test_vlan_sll_ipv6_big_endian_nanoseconds(tmp_path: Path) -> None:
    eth = udp_frame("192.0.2.1", "192.0.2.2", 500, 500, IKE)
    vlan = eth[:12] + b"\x81\x00\x00\x07" + eth[12:]
    v6 = ipv6_udp("2001:db8::1", "2001:db8::2", 4500, 4500, b"\0\0\0\0" + IKE)
    sll = struct.pack("!HHH8sH", 0, 1, 6, bytes(8), 0x86DD) + v6
    assert [p.data for p in ike_packets(pcap(tmp_path / "v.pcap", 1, [vlan]))] == [IKE]
    got = ike_packets(pcap(tmp_path / "s.pcap", 113, [sll], ">", 0xA1B23C4D))
    assert [(p.src, p.natt, p.data) for p in got] == [("2001:db8::1", True, IKE)]
    assert got[0].time == pytest.approx(7 + 500e-9)
    assert [p.data for p in ike_packets(pcap(tmp_path / "r.pcap", 101, [v6]))] == [IKE]


def test_ip_fragments_are_skipped(tmp_path: Path) -> None:
    frame = bytearray(udp_frame("192.0.2.1", "192.0.2.2", 500, 500, IKE))
    frame[14 + 6] |= 0x20  # More Fragments
    assert ike_packets(write_pcap(tmp_path / "f.pcap", [bytes(frame)])) == []


def test_pcapng_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.pcapng"
    path.write_bytes(bytes.fromhex("0a0d0d0a") + bytes(40))
    with pytest.raises(ValueError, match="pcapng"):
        ike_packets(path)
