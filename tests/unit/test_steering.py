"""The reuseport steering program, run by the kernel: a real reuseport group of sockets on
loopback (IPv4 and IPv6), crafted datagrams from many source addresses, and which socket
receives each."""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct

import pytest

from pqike.daemon.steering import Partition, attach_steering
from pqike.partition import address_owner

_LOOPBACK = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}
_IPV6_FREEBIND = getattr(socket, "IPV6_FREEBIND", 78)  # linux/in6.h; Python 3.11 lacks it


def _group(count: int, natt: bool, family: int = socket.AF_INET) -> list[socket.socket]:
    socks: list[socket.socket] = []
    port = 0
    for index in range(count):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if index == 0:
            attach_steering(s, count, natt)
        s.bind((_LOOPBACK[family], port))
        port = s.getsockname()[1]
        socks.append(s)
    return socks


def _receiver(socks: list[socket.socket], payload: bytes, source: str | None = None) -> int:
    """Send ``payload`` to the group (from ``source``, any address of the family: IPv6
    through IPV6_FREEBIND, IPv4 from 127.0.0.0/8); the index of the socket that got it."""
    family = socks[0].family
    port = socks[0].getsockname()[1]
    with socket.socket(family, socket.SOCK_DGRAM) as client:
        if source is not None:
            if family == socket.AF_INET6:
                client.setsockopt(socket.IPPROTO_IPV6, _IPV6_FREEBIND, 1)
            client.bind((source, 0))
        client.sendto(payload, (_LOOPBACK[family], port))
    ready, _, _ = select.select(socks, [], [], 5.0)
    assert len(ready) == 1, "exactly one socket receives each datagram"
    data, sender = ready[0].recvfrom(65536)
    assert data == payload
    assert source is None or sender[0] == source
    return socks.index(ready[0])


def _ike(spi_i: bytes, spi_r: bytes, initiator: bool, response: bool = False) -> bytes:
    flags = (0x08 if initiator else 0) | (0x20 if response else 0)
    # RFC 7296 §3.1: SPIs, next payload, version 2.0, exchange, flags, message ID, length
    return spi_i + spi_r + struct.pack("!BBBBII", 0, 0x20, 34, flags, 1, 28)


@pytest.fixture(params=[2, 3])
def count(request: pytest.FixtureRequest) -> int:
    return request.param


@pytest.mark.parametrize("natt", [False, True])
def test_ike_is_steered_by_our_spi(count: int, natt: bool) -> None:
    marker = b"\0\0\0\0" if natt else b""
    socks = _group(count, natt)
    try:
        for first in range(0, 256, 7):
            ours = bytes([first]) + os.urandom(7)
            theirs = bytes([(first + 1) % 256]) + os.urandom(7)
            want = first % count
            # from the original initiator: our SPI is the responder SPI
            assert _receiver(socks, marker + _ike(theirs, ours, initiator=True)) == want
            # from the original responder (to an IKE_SA we initiated): the initiator SPI
            assert (
                _receiver(socks, marker + _ike(ours, theirs, initiator=False, response=True))
                == want
            )
    finally:
        for s in socks:
            s.close()


def _sources(family: int) -> list[str]:
    """Peer addresses whose steering words differ in every octet, and a few random ones."""
    if family == socket.AF_INET:
        fixed = [f"127.{b}.{(b * 7) % 256}.{(b * 13 + 1) % 256}" for b in range(0, 256, 9)]
        return fixed + [f"127.{o[0]}.{o[1]}.{o[2]}" for o in (os.urandom(3) for _ in range(20))]
    fixed = [f"2001:db8:{b:x}::{(b * 7) % 256:x}:{b * 13 + 1:x}" for b in range(0, 256, 9)]
    rand = [ipaddress.IPv6Address(b"\x20\x01\x0d\xb8" + os.urandom(12)) for _ in range(20)]
    return [str(ipaddress.IPv6Address(a)) for a in fixed + rand]  # as recvfrom spells them


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("natt", [False, True])
def test_new_ike_sa_init_is_steered_by_the_source_address(
    count: int, natt: bool, family: int
) -> None:
    marker = b"\0\0\0\0" if natt else b""
    socks = _group(count, natt, family)
    try:
        seen = set()
        for source in _sources(family):
            want = address_owner(source, count)
            seen.add(want)
            # any initiator SPI (a retransmission, a COOKIE or INVALID_KE retry, the peer's
            # next IKE_SA): the same worker for the same address
            for first in (0, 1, 2, 0x80, 0xFF):
                spi_i = bytes([first]) + os.urandom(7)
                init = marker + _ike(spi_i, bytes(8), initiator=True)
                assert _receiver(socks, init, source) == want, source
            # a responder SPI of zero in the first word only is not a new IKE_SA
            spi_r = bytes(4) + b"\x00\x00\x00\x01"
            got = _receiver(socks, marker + _ike(spi_i, spi_r, initiator=True), source)
            assert got == 0, "steered by the responder SPI's first octet (zero)"
        assert seen == set(range(count)), "the sources spread over all workers"
    finally:
        for s in socks:
            s.close()


def test_address_owner_folds_every_word() -> None:
    # the kernel's words, computed here by hand: IPv4 as one number, IPv6 XORed
    assert address_owner("192.0.2.7", 3) == 0xC0000207 % 3
    assert address_owner("2001:db8::1:2", 5) == (0x20010DB8 ^ 0 ^ 0 ^ 0x00010002) % 5
    assert address_owner("fe80::1%eth0", 2) == (0xFE800000 ^ 1) % 2
    assert Partition(1, 2).owns_peer("10.0.0.1") and not Partition(0, 2).owns_peer("10.0.0.1")
    assert Partition().owns_peer("10.0.0.2")


def test_esp_in_udp_is_steered_by_its_spi(count: int) -> None:
    socks = _group(count, natt=True)
    try:
        for first in range(1, 256, 5):
            spi = bytes([first]) + os.urandom(3)
            assert _receiver(socks, spi + b"\0\0\0\1" + os.urandom(40)) == first % count
    finally:
        for s in socks:
            s.close()


def test_keepalives_and_runts_go_somewhere(count: int) -> None:
    for natt in (False, True):
        socks = _group(count, natt)
        try:
            for payload in (b"\xff", b"\0\0\0\0", b"\0\0\0\0" + bytes(10), bytes(5)):
                assert 0 <= _receiver(socks, payload) < count
        finally:
            for s in socks:
                s.close()


def test_partition_allocates_what_steers_to_it(count: int) -> None:
    for index in range(count):
        p = Partition(index, count)
        for _ in range(500):
            assert p.ike_spi(os.urandom)[0] % count == index
            assert (p.esp_spi(int.from_bytes(os.urandom(4), "big")) >> 24) % count == index
        ids = [Partition(i, count).unique_id(k) for i in range(count) for k in range(1, 50)]
        assert len(set(ids)) == len(ids) and min(ids) == 1


def test_partition_keeps_the_spi_random() -> None:
    p = Partition(1, 2)
    assert {p.ike_spi(os.urandom)[0] for _ in range(2000)} == set(range(1, 256, 2))
    with pytest.raises(ValueError):
        Partition(2, 2)
