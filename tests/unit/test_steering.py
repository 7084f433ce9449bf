"""The reuseport steering program, run by the kernel: a real reuseport group of sockets on
loopback, crafted datagrams, and which socket receives each."""

from __future__ import annotations

import os
import select
import socket
import struct

import pytest

from pqike.daemon.steering import Partition, attach_steering


def _group(count: int, natt: bool) -> list[socket.socket]:
    socks: list[socket.socket] = []
    port = 0
    for index in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if index == 0:
            attach_steering(s, count, natt)
        s.bind(("127.0.0.1", port))
        port = s.getsockname()[1]
        socks.append(s)
    return socks


def _receiver(socks: list[socket.socket], payload: bytes) -> int:
    """Send ``payload`` to the group; the index of the socket that got it."""
    port = socks[0].getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(payload, ("127.0.0.1", port))
    ready, _, _ = select.select(socks, [], [], 5.0)
    assert len(ready) == 1, "exactly one socket receives each datagram"
    assert ready[0].recv(65536) == payload
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


@pytest.mark.parametrize("natt", [False, True])
def test_new_ike_sa_init_is_steered_by_the_initiator_spi(count: int, natt: bool) -> None:
    marker = b"\0\0\0\0" if natt else b""
    socks = _group(count, natt)
    try:
        for first in range(256):
            spi_i = bytes([first]) + os.urandom(7)
            got = _receiver(socks, marker + _ike(spi_i, bytes(8), initiator=True))
            assert got == first % count
            # a responder SPI of zero in the first word only is not a new IKE_SA
            spi_r = bytes(4) + b"\x00\x00\x00\x01"
            got = _receiver(socks, marker + _ike(spi_i, spi_r, initiator=True))
            assert got == 0, "steered by the responder SPI's first octet (zero)"
    finally:
        for s in socks:
            s.close()


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
