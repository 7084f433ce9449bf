"""UDP layer: non-ESP marker, NAT-keepalives, ESP routing and PKTINFO on loopback."""

from __future__ import annotations

import asyncio
import select
import socket

import pytest

from pqike.daemon.udp import (
    IP_PKTINFO,
    NON_ESP_MARKER,
    SOL_UDP,
    UDP_ENCAP,
    UDP_ENCAP_ESPINUDP,
    Kind,
    UdpEndpoints,
    classify,
    frame,
    needs_marker,
)
from pqike.events import Datagram, Endpoint

IKE_HEADER = bytes(range(1, 29))  # 28 bytes that look like an IKE header (SPIi nonzero)


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# --- pure framing --------------------------------------------------------------------------


def test_classify_ike_port_passes_everything_but_keepalive():
    assert classify(IKE_HEADER, natt=False) == (Kind.IKE, IKE_HEADER)
    assert classify(NON_ESP_MARKER + IKE_HEADER, natt=False) == (
        Kind.IKE,
        NON_ESP_MARKER + IKE_HEADER,
    )  # no marker is stripped on port 500
    assert classify(b"\xff", natt=False)[0] is Kind.KEEPALIVE


def test_classify_natt_port():
    assert classify(NON_ESP_MARKER + IKE_HEADER, natt=True) == (Kind.IKE, IKE_HEADER)
    assert classify(b"\xff", natt=True) == (Kind.KEEPALIVE, b"")
    esp = b"\x12\x34\x56\x78" + b"\x00\x00\x00\x01" + b"payload"
    assert classify(esp, natt=True) == (Kind.ESP, esp)
    assert classify(b"\x01\x02", natt=True)[0] is Kind.DROP
    assert classify(NON_ESP_MARKER, natt=True)[0] is Kind.DROP
    assert classify(b"", natt=True)[0] is Kind.DROP


@pytest.mark.parametrize(
    ("src", "dst", "marker"),
    [
        (500, 500, False),
        (500, 31337, False),  # responder on 500 answering a NAT-mapped source port
        (4500, 4500, True),
        (4500, 31337, True),  # floated, peer behind NAT
        (500, 4500, True),  # remote_port = 4500 configured: peer parses on its 4500
    ],
)
def test_needs_marker(src, dst, marker):
    assert needs_marker(src, dst, 500, 4500) is marker
    d = Datagram(data=IKE_HEADER, src=Endpoint("192.0.2.1", src), dst=Endpoint("192.0.2.2", dst))
    assert frame(d, 500, 4500) == (NON_ESP_MARKER + IKE_HEADER if marker else IKE_HEADER)


# --- sockets on loopback ---------------------------------------------------------------------


class Peer:
    """UdpEndpoints on a wildcard address with ephemeral ports, collecting what arrives."""

    def __init__(self, **kwargs):
        self.got: list[Datagram] = []
        self.esp: list[tuple[bytes, Endpoint, Endpoint]] = []
        self.udp = UdpEndpoints(
            self.got.append,
            ike_port=0,
            natt_port=0,
            esp_handler=lambda p, s, d: self.esp.append((p, s, d)),
            **kwargs,
        )


async def _settle(predicate, timeout=2.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("timed out waiting for packets")
        await asyncio.sleep(0.005)


def _raw(family=socket.AF_INET, addr="127.0.0.1"):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((addr, 0))
    s.settimeout(2.0)
    return s


def test_two_daemons_talk_ike_and_natt_ports():
    async def run():
        a, b = Peer(), Peer()
        for p in (a, b):
            p.udp.open()
            p.udp.attach(asyncio.get_running_loop())
        try:
            assert a.udp.ike_port and a.udp.natt_port and a.udp.ike_port != a.udp.natt_port
            lo = "127.0.0.1"
            # IKE port to IKE port: no marker on the wire, nothing to strip
            d1 = Datagram(
                data=IKE_HEADER, src=Endpoint(lo, a.udp.ike_port), dst=Endpoint(lo, b.udp.ike_port)
            )
            assert a.udp.send(d1)
            # floated to NAT-T: marker added by A, stripped by B
            d2 = Datagram(
                data=IKE_HEADER[::-1],
                src=Endpoint(lo, a.udp.natt_port),
                dst=Endpoint(lo, b.udp.natt_port),
            )
            assert a.udp.send(d2)
            await _settle(lambda: len(b.got) == 2)
            assert b.got[0] == Datagram(
                data=IKE_HEADER, src=Endpoint(lo, a.udp.ike_port), dst=Endpoint(lo, b.udp.ike_port)
            )
            assert b.got[1] == Datagram(
                data=IKE_HEADER[::-1],
                src=Endpoint(lo, a.udp.natt_port),
                dst=Endpoint(lo, b.udp.natt_port),
            )
            assert a.udp.stats.sent == 2 and b.udp.stats.received == 2
        finally:
            a.udp.close()
            b.udp.close()

    asyncio.run(run())


def test_marker_on_the_wire_keepalive_esp_and_garbage():
    async def run():
        b = _attached_peer()
        raw = _raw()
        try:
            natt = ("127.0.0.1", b.udp.natt_port)
            raw.sendto(b"\xff", natt)  # NAT-keepalive: ignored
            raw.sendto(b"\x01", natt)  # too short for anything: dropped
            raw.sendto(b"\x7f" * 60000, natt)  # big, not IKE: ESP as far as UDP knows
            esp = b"\xc1\xa6\xba\x36" + b"\x00\x00\x00\x07" + b"ciphertext"
            raw.sendto(esp, natt)
            raw.sendto(NON_ESP_MARKER + IKE_HEADER, natt)
            raw.sendto(b"garbage that is no IKE at all", ("127.0.0.1", b.udp.ike_port))
            await _settle(lambda: len(b.got) == 2 and len(b.esp) == 2)
            assert b.udp.stats.keepalives == 1
            assert b.udp.stats.dropped == 1
            assert b.esp[1][0] == esp
            src, dst = b.esp[1][1], b.esp[1][2]
            assert src == Endpoint("127.0.0.1", raw.getsockname()[1])
            assert dst == Endpoint("127.0.0.1", b.udp.natt_port)
            assert b.got[0].data == IKE_HEADER  # marker stripped
            assert b.got[1].data == b"garbage that is no IKE at all"  # engine's job to reject

            # and what B sends from its NAT-T port carries the marker on the wire
            reply = Datagram(
                data=IKE_HEADER,
                src=Endpoint("127.0.0.1", b.udp.natt_port),
                dst=Endpoint("127.0.0.1", raw.getsockname()[1]),
            )
            assert b.udp.send(reply)
            data, _ = await asyncio.get_running_loop().run_in_executor(None, raw.recvfrom, 70000)
            assert data == NON_ESP_MARKER + IKE_HEADER
            # ESP goes out unmarked, only from the NAT-T socket
            assert b.udp.send_esp(esp, reply.src, reply.dst)
            data, _ = await asyncio.get_running_loop().run_in_executor(None, raw.recvfrom, 70000)
            assert data == esp
            assert not b.udp.send_esp(esp, Endpoint("127.0.0.1", b.udp.ike_port), reply.dst)
        finally:
            raw.close()
            b.udp.close()

    asyncio.run(run())


def test_handler_exceptions_do_not_kill_the_reader():
    async def run():
        calls = []

        def boom(d: Datagram) -> None:
            calls.append(d)
            if len(calls) == 1:
                raise RuntimeError("engine bug")

        u = UdpEndpoints(boom, ike_port=0, natt_port=0, addresses=["127.0.0.1"])
        u.open()
        u.attach(asyncio.get_running_loop())
        raw = _raw()
        try:
            raw.sendto(IKE_HEADER, ("127.0.0.1", u.ike_port))
            raw.sendto(IKE_HEADER, ("127.0.0.1", u.ike_port))
            await _settle(lambda: len(calls) == 2)
            assert u.stats.dropped == 1
        finally:
            raw.close()
            u.close()

    asyncio.run(run())


def _attached_peer() -> Peer:
    """A Peer whose sockets (wildcard) are open and read by the running loop."""
    b = Peer()
    b.udp.open()
    b.udp.attach(asyncio.get_running_loop())
    return b


def test_pktinfo_round_trip_on_wildcard_socket():
    """A wildcard socket learns which address a packet was sent to and answers from it."""

    async def run():
        b = _attached_peer()
        raw = _raw(addr="127.0.0.1")
        try:
            raw.sendto(IKE_HEADER, ("127.0.0.2", b.udp.ike_port))  # 127/8 is all loopback
            await _settle(lambda: len(b.got) == 1)
            got = b.got[0]
            assert got.dst == Endpoint("127.0.0.2", b.udp.ike_port)
            # answer from the address the engine picks (the one the peer used)
            assert b.udp.send(Datagram(data=IKE_HEADER, src=got.dst, dst=got.src))
            _, addr = await asyncio.get_running_loop().run_in_executor(None, raw.recvfrom, 2048)
            assert addr == ("127.0.0.2", b.udp.ike_port)
            # and from another local address when told so
            assert b.udp.send(
                Datagram(data=IKE_HEADER, src=Endpoint("127.0.0.3", got.dst.port), dst=got.src)
            )
            _, addr = await asyncio.get_running_loop().run_in_executor(None, raw.recvfrom, 2048)
            assert addr == ("127.0.0.3", b.udp.ike_port)
        finally:
            raw.close()
            b.udp.close()

    asyncio.run(run())


def test_pktinfo_converted_per_address_not_per_datagram(monkeypatch):
    """A wildcard socket reads the destination of every datagram and sends each answer from
    an address: both conversions are made once per address (ours, a handful), and still
    right when the address changes."""
    import pqike.daemon.udp as udp

    converted: list[str] = []
    real_ntoa, real_aton = socket.inet_ntoa, socket.inet_aton
    monkeypatch.setattr(socket, "inet_ntoa", lambda b: converted.append("ntoa") or real_ntoa(b))
    monkeypatch.setattr(socket, "inet_aton", lambda h: converted.append("aton") or real_aton(h))
    udp._pktinfo.cache_clear()
    udp._pktinfo_dst.cache_clear()

    async def run():
        b = _attached_peer()
        raw = _raw(addr="127.0.0.1")
        try:
            for n, to in enumerate(["127.0.0.2"] * 3 + ["127.0.0.3"] * 2, start=1):
                raw.sendto(IKE_HEADER, (to, b.udp.ike_port))
                await _settle(lambda n=n: len(b.got) == n)
                got = b.got[-1]
                assert got.dst == Endpoint(to, b.udp.ike_port)
                assert b.udp.send(Datagram(data=IKE_HEADER, src=got.dst, dst=got.src))
                loop = asyncio.get_running_loop()
                _, addr = await loop.run_in_executor(None, raw.recvfrom, 2048)
                assert addr == (to, b.udp.ike_port)
        finally:
            raw.close()
            b.udp.close()

    asyncio.run(run())
    assert sorted(converted) == ["aton", "aton", "ntoa", "ntoa"]  # one each per address


def test_only_wildcard_sockets_ask_for_each_datagrams_destination():
    """PKTINFO on a wildcard socket (it must learn the destination), not on a bound one
    (its address is the destination: the control message would be read for nothing)."""
    bound = UdpEndpoints(lambda d: got.append(d), ike_port=0, natt_port=0, addresses=["127.0.0.1"])
    wildcard = UdpEndpoints(lambda d: None, ike_port=0, natt_port=0, addresses=["0.0.0.0"])
    got: list[Datagram] = []
    raw = _raw()
    try:
        for u in (bound, wildcard):
            u.open()
        for u, want in ((bound, 0), (wildcard, 1)):
            for s in u._socks:
                assert s.sock.getsockopt(socket.IPPROTO_IP, IP_PKTINFO) == want
        (s,) = [s for s in bound._socks if s.port == bound.ike_port]
        raw.sendto(IKE_HEADER, ("127.0.0.1", bound.ike_port))
        select.select([s.sock], [], [], 2.0)
        bound._readable(s)
        assert got == [Datagram(IKE_HEADER, got[0].src, Endpoint("127.0.0.1", bound.ike_port))]
    finally:
        raw.close()
        bound.close()
        wildcard.close()


def test_one_destination_endpoint_per_local_address():
    """What a wildcard socket reads names its destination with the same Endpoint for each
    local address (built once, not per datagram), and the right one for each."""

    async def run():
        b = _attached_peer()
        raw = _raw(addr="127.0.0.1")
        try:
            for n, to in enumerate(["127.0.0.2", "127.0.0.3", "127.0.0.2"], start=1):
                raw.sendto(IKE_HEADER, (to, b.udp.ike_port))
                await _settle(lambda n=n: len(b.got) == n)
        finally:
            raw.close()
            b.udp.close()
        dsts = [d.dst for d in b.got]
        assert [d.host for d in dsts] == ["127.0.0.2", "127.0.0.3", "127.0.0.2"]
        assert dsts[0] is dsts[2] and dsts[0] is not dsts[1]

    asyncio.run(run())


class _CountingSocket:
    """A socket whose recvmsg calls are counted, the failing ones (EAGAIN) apart."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reads = 0
        self.failed = 0

    def recvmsg(self, *args: int):  # type: ignore[no-untyped-def]
        self.reads += 1
        try:
            return self.sock.recvmsg(*args)
        except BlockingIOError:
            self.failed += 1
            raise

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.sock, name)


def test_a_lone_datagram_is_read_without_a_failing_read():
    """A wakeup for one datagram (the usual one at low load) learns from poll() that none
    follows, not from a recvmsg that fails (an exception per wakeup); a burst is read to
    its end in one wakeup; a spurious wakeup reads nothing and drops nothing."""
    u = UdpEndpoints(lambda d: got.append(d), ike_port=0, natt_port=0, addresses=["127.0.0.1"])
    got: list[Datagram] = []
    u.open()
    raw = _raw()
    try:
        (s,) = [s for s in u._socks if s.port == u.ike_port]
        counting = _CountingSocket(s.sock)
        s.sock = counting  # type: ignore[assignment]
        raw.sendto(IKE_HEADER, ("127.0.0.1", u.ike_port))
        select.select([counting.sock], [], [], 2.0)
        u._readable(s)
        assert len(got) == 1 and counting.reads == 1 and counting.failed == 0
        for n in range(3):
            raw.sendto(IKE_HEADER + bytes([n]), ("127.0.0.1", u.ike_port))
        select.select([counting.sock], [], [], 2.0)  # loopback: all three are queued now
        u._readable(s)
        assert [d.data[-1] for d in got[1:]] == [0, 1, 2]
        u._readable(s)  # nothing there
        assert len(got) == 4 and u.stats.dropped == 0
    finally:
        raw.close()
        u.close()


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 on loopback")
def test_ipv6_pktinfo_and_same_ports_for_both_families():
    async def run():
        b = _attached_peer()
        raw = _raw(socket.AF_INET6, "::1")
        try:
            assert f"::[{b.udp.ike_port}]" in b.udp.listening
            assert f"0.0.0.0[{b.udp.ike_port}]" in b.udp.listening
            raw.sendto(NON_ESP_MARKER + IKE_HEADER, ("::1", b.udp.natt_port))
            await _settle(lambda: len(b.got) == 1)
            got = b.got[0]
            assert got.dst == Endpoint("::1", b.udp.natt_port)
            assert got.src.host == "::1" and got.data == IKE_HEADER
            assert b.udp.send(Datagram(data=IKE_HEADER, src=got.dst, dst=got.src))
            data, addr = await asyncio.get_running_loop().run_in_executor(None, raw.recvfrom, 2048)
            assert data == NON_ESP_MARKER + IKE_HEADER
            assert addr[:2] == ("::1", b.udp.natt_port)
        finally:
            raw.close()
            b.udp.close()

    asyncio.run(run())


def test_bound_addresses_and_send_errors():
    u = UdpEndpoints(lambda d: None, ike_port=0, natt_port=0, addresses=["127.0.0.1"])
    u.open()
    try:
        assert u.listening == [f"127.0.0.1[{u.ike_port}]", f"127.0.0.1[{u.natt_port}]"]
        # no socket on that port: logged and counted, not raised
        bad = Datagram(data=b"x", src=Endpoint("127.0.0.1", 1), dst=Endpoint("127.0.0.1", 9))
        assert not u.send(bad)
        assert u.stats.send_errors == 1
    finally:
        u.close()


def test_bind_conflict_is_a_clear_oserror():
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    try:
        u = UdpEndpoints(lambda d: None, ike_port=port, natt_port=0, addresses=["127.0.0.1"])
        with pytest.raises(OSError, match=f"cannot bind IKE port {port}"):
            u.open()
        assert u.listening == []
    finally:
        holder.close()


def test_udp_encap_only_on_natt_socket_when_asked():
    for wanted in (False, True):
        u = UdpEndpoints(
            lambda d: None, ike_port=0, natt_port=0, addresses=["127.0.0.1"], udp_encap=wanted
        )
        u.open()
        try:
            ike = u.socket_for(u.ike_port, socket.AF_INET)
            natt = u.socket_for(u.natt_port, socket.AF_INET)
            try:
                natt_encap = natt.getsockopt(SOL_UDP, UDP_ENCAP)
                ike_encap = ike.getsockopt(SOL_UDP, UDP_ENCAP)
            except OSError:
                pytest.skip("kernel cannot read back UDP_ENCAP")
            assert ike_encap == 0
            assert natt_encap == (UDP_ENCAP_ESPINUDP if wanted else 0)
        finally:
            u.close()
