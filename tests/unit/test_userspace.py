"""UserspaceKernel without a real TUN: SA/policy bookkeeping, routing decisions, data path.

Two backends are wired back to back in memory (A's ``send_udp`` feeds B's ``esp_handler``)
with a fake TUN device; tests/unit/test_userspace_netns.py does the same with real TUN
devices in two network namespaces.
"""

from __future__ import annotations

import inspect
import ipaddress
import struct
from typing import Any

import pytest

from pqike.events import Endpoint
from pqike.kernel import userspace
from pqike.kernel.base import (
    Direction,
    KernelBackend,
    KernelError,
    KernelPolicy,
    KernelRoute,
    KernelSa,
    MemoryKernel,
    Mode,
)
from pqike.kernel.esp import NH_NONE
from pqike.kernel.userspace import UserspaceKernel
from pqike.wire.iana import EncrId, IntegId

net = ipaddress.ip_network
OUT_A, OUT_B = "198.51.100.1", "203.0.113.2"  # A behind a NAT: port 4501 outside


class FakeTun:
    instances: list[FakeTun] = []

    def __init__(self, name: str, mtu: int, table: int) -> None:
        self.name, self.mtu, self.table, self.fd = name.replace("%d", "0"), mtu, table, -1
        self.addresses: list[str] = []
        self.routes: list[dict[str, Any]] = []
        self.rules: list[int] = []
        self.written: list[bytes] = []
        self.queue: list[bytes] = []
        self.closed = False
        FakeTun.instances.append(self)

    def read(self) -> bytes | None:
        return self.queue.pop(0) if self.queue else None

    def write(self, packet: bytes) -> bool:
        self.written.append(packet)
        return True

    def add_address(self, address: str) -> None:
        self.addresses.append(address)

    def del_address(self, address: str) -> None:
        self.addresses.remove(address)

    def add_route(self, n, src=None):  # type: ignore[no-untyped-def]
        spec = {"dst": str(n), "prefsrc": src}
        self.routes.append(spec)
        return spec

    def add_bypass_route(self, host: str) -> dict[str, Any]:
        spec = {"dst": host, "bypass": True}
        self.routes.append(spec)
        return spec

    def del_route(self, spec: dict[str, Any]) -> None:
        self.routes.remove(spec)

    def ensure_rule(self, family: int, priority: int) -> None:
        if family not in self.rules:
            self.rules.append(family)

    def local_address_in(self, n) -> str | None:  # type: ignore[no-untyped-def]
        return "10.1.0.254" if ipaddress.ip_address("10.1.0.254") in n else None

    def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def fake_tun(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeTun.instances.clear()
    monkeypatch.setattr(userspace, "TunDevice", FakeTun)


def ipv4(src: str, dst: str, payload: bytes = b"x" * 20, proto: int = 17) -> bytes:
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, s, d)
    return hdr + payload


def ipv6(src: str, dst: str, payload: bytes = b"y" * 8) -> bytes:
    return (
        struct.pack("!IHBB", 6 << 28, len(payload), 17, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + payload
    )


def sa(spi: int, src: str, dst: str, lts: str, rts: str, *, inbound: bool, reqid: int = 1,
       key: bytes = b"k" * 36, encap: tuple[int, int] | None = (4500, 4500),
       mode: Mode = Mode.TUNNEL) -> KernelSa:  # fmt: skip
    return KernelSa(
        spi, src, dst, mode, EncrId.AES_GCM_16, key, IntegId.NONE, b"", reqid,
        net(lts), net(rts), encap, replay_window=32, inbound=inbound,
    )  # fmt: skip


def policies(lts: str, rts: str, local: str, remote: str, reqid: int = 1) -> list[KernelPolicy]:
    lo, re = net(lts), net(rts)
    return [
        KernelPolicy(lo, re, Direction.OUT, reqid, (local, remote)),
        KernelPolicy(re, lo, Direction.IN, reqid, (remote, local)),
        KernelPolicy(re, lo, Direction.FWD, reqid, (remote, local)),
    ]


class Wire:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Endpoint, Endpoint]] = []
        self.ok = True

    def __call__(self, data: bytes, src: Endpoint, dst: Endpoint) -> bool:
        self.sent.append((data, src, dst))
        return self.ok


def tunnel(lts_a: str = "10.1.0.0/24", lts_b: str = "10.2.0.0/24"):  # type: ignore[no-untyped-def]
    """A (OUT_A, NAT-mapped to 4501 as B sees it) <-> B, SPIs a->b 0x1000, b->a 0x2000."""
    wa, wb = Wire(), Wire()
    a, b = UserspaceKernel(wa), UserspaceKernel(wb)
    a.add_sa(sa(0x2000, OUT_B, OUT_A, lts_b, lts_a, inbound=True, key=b"B" * 36))
    a.add_sa(sa(0x1000, OUT_A, OUT_B, lts_a, lts_b, inbound=False, key=b"A" * 36))
    b.add_sa(sa(0x1000, OUT_A, OUT_B, lts_a, lts_b, inbound=True, key=b"A" * 36,
                encap=(4501, 4500)))  # fmt: skip
    b.add_sa(sa(0x2000, OUT_B, OUT_A, lts_b, lts_a, inbound=False, key=b"B" * 36,
                encap=(4500, 4501)))  # fmt: skip
    for p in policies(lts_a, lts_b, OUT_A, OUT_B):
        a.add_policy(p)
    for p in policies(lts_b, lts_a, OUT_B, OUT_A):
        b.add_policy(p)
    return a, wa, b, wb


def deliver(wire: Wire, to: UserspaceKernel) -> None:
    for data, src, dst in wire.sent:
        to.esp_handler(data, (src.host, src.port), dst)
    wire.sent.clear()


# ---- interface -----------------------------------------------------------------------------


def test_satisfies_kernel_backend_protocol() -> None:
    for name, member in inspect.getmembers(KernelBackend, inspect.isfunction):
        if name.startswith("_"):
            continue
        ours = getattr(UserspaceKernel, name)
        assert list(inspect.signature(ours).parameters) == list(
            inspect.signature(member).parameters
        ), name
        assert hasattr(MemoryKernel, name)
    k: KernelBackend = UserspaceKernel()
    assert k.name == "userspace"


def test_plain_esp_and_transport_mode_refused() -> None:
    k = UserspaceKernel()
    with pytest.raises(KernelError, match=r"UDP-encapsulated ESP only.*encap = yes"):
        k.add_sa(sa(0x100, OUT_A, OUT_B, "10.1.0.0/24", "10.2.0.0/24", inbound=False,
                    encap=None))  # fmt: skip
    with pytest.raises(KernelError, match="tunnel mode only"):
        k.add_sa(sa(0x100, OUT_A, OUT_B, OUT_A + "/32", OUT_B + "/32", inbound=False,
                    mode=Mode.TRANSPORT))  # fmt: skip
    with pytest.raises(KernelError, match="tunnel mode only"):
        k.add_policy(KernelPolicy(net("10.1.0.0/24"), net("10.2.0.0/24"), Direction.OUT, 1, None))
    with pytest.raises(KernelError, match="key material"):
        k.add_sa(sa(0x100, OUT_A, OUT_B, "10.1.0.0/24", "10.2.0.0/24", inbound=False, key=b"x"))
    k.add_sa(sa(0x100, OUT_A, OUT_B, "10.1.0.0/24", "10.2.0.0/24", inbound=False))
    with pytest.raises(KernelError, match="exists already"):
        k.add_sa(sa(0x100, OUT_A, OUT_B, "10.1.0.0/24", "10.2.0.0/24", inbound=False))
    assert not FakeTun.instances  # SAs alone need no TUN device


def test_alloc_spi_unique_and_not_reserved() -> None:
    k = UserspaceKernel()
    spis = {k.alloc_spi(OUT_B, OUT_A) for _ in range(200)}
    assert len(spis) == 200 and min(spis) > 255


# ---- data path -----------------------------------------------------------------------------


def test_round_trip_counters_and_nat_ports() -> None:
    a, wa, b, wb = tunnel()
    pkt = ipv4("10.1.0.5", "10.2.0.7")
    assert a.outbound(pkt)
    (data, src, dst), = wa.sent  # fmt: skip
    assert (src, dst) == (Endpoint(OUT_A, 4500), Endpoint(OUT_B, 4500))
    assert data[:4] == b"\x00\x00\x10\x00"
    deliver(wa, b)
    assert b.tun.written == [pkt]  # type: ignore[union-attr]
    b.tun.queue.append(ipv4("10.2.0.7", "10.1.0.5", b"reply"))  # type: ignore[union-attr]
    b.read_tun()
    assert wb.sent[0][2] == Endpoint(OUT_A, 4501)  # to A's NAT mapping
    deliver(wb, a)
    assert a.tun.written[0].endswith(b"reply")  # type: ignore[union-attr]
    c = a.query_sa(0x1000, OUT_B)
    assert (c.packets, c.bytes) == (1, len(pkt)) and c.last_use
    assert b.query_sa(0x1000, OUT_B).packets == 1
    assert a.query_sa(0x2000, OUT_A).packets == 1
    assert a.query_sa(0xDEAD, OUT_A).packets == 0
    assert {s.spi for s, _ in a.sa_list()} == {0x1000, 0x2000}


def test_ipv6_inner() -> None:
    a, wa, b, _ = tunnel("fd00:1::/64", "fd00:2::/64")
    pkt = ipv6("fd00:1::5", "fd00:2::7")
    assert a.outbound(pkt)
    deliver(wa, b)
    assert b.tun.written == [pkt]  # type: ignore[union-attr]
    assert a.tun.rules == [10]  # type: ignore[union-attr]  # AF_INET6 rule only


def test_most_specific_policy_and_newest_sa() -> None:
    w = Wire()
    k = UserspaceKernel(w)
    k.add_sa(sa(0x10, OUT_A, OUT_B, "10.1.0.0/24", "10.0.0.0/8", inbound=False, reqid=1))
    k.add_sa(sa(0x20, OUT_A, OUT_B, "10.1.0.0/24", "10.2.0.0/16", inbound=False, reqid=2))
    for p in policies("10.1.0.0/24", "10.0.0.0/8", OUT_A, OUT_B, 1):
        k.add_policy(p)
    for p in policies("10.1.0.0/24", "10.2.0.0/16", OUT_A, OUT_B, 2):
        k.add_policy(p)

    def spi_for(dst: str) -> int:
        assert k.outbound(ipv4("10.1.0.1", dst))
        return int.from_bytes(w.sent.pop()[0][:4], "big")

    assert spi_for("10.2.3.4") == 0x20
    assert spi_for("10.3.3.4") == 0x10
    k.add_sa(sa(0x21, OUT_A, OUT_B, "10.1.0.0/24", "10.2.0.0/16", inbound=False, reqid=2))
    assert spi_for("10.2.3.4") == 0x21  # rekeyed: the new SA takes over
    k.del_sa(0x21, OUT_B)
    assert spi_for("10.2.3.4") == 0x20
    assert not k.outbound(ipv4("10.9.0.1", "10.2.3.4"))  # source outside every selector
    assert k.stats["drop-no-sa"] == 1
    k.del_sa(0x20, OUT_B)
    assert not k.outbound(ipv4("10.1.0.1", "10.2.3.4"))
    assert k.stats["drop-no-sa"] == 2


def test_inbound_drops_counted() -> None:
    a, wa, b, _ = tunnel()
    b.esp_handler(b"\x00\x00\x99\x99" + bytes(40), (OUT_A, 4501), (OUT_B, 4500))
    assert b.stats["drop-unknown-spi"] == 1
    b.esp_handler(b"\x00\x00\x10", (OUT_A, 4501), (OUT_B, 4500))
    assert b.stats["drop-malformed"] == 1
    # A may send what its policy allows, but B only accepts what B's inbound policy allows
    a.add_policy(KernelPolicy(net("10.1.0.0/24"), net("10.3.0.0/24"), Direction.OUT, 1,
                              (OUT_A, OUT_B)))  # fmt: skip
    assert a.outbound(ipv4("10.1.0.5", "10.3.0.7"))
    deliver(wa, b)
    assert b.stats["drop-policy-mismatch"] == 1 and not b.tun.written  # type: ignore[union-attr]
    assert a.outbound(ipv4("10.1.0.5", "10.2.0.7"))
    replay = wa.sent[0]
    deliver(wa, b)
    b.esp_handler(*replay)
    assert b.stats["drop-replay"] == 1
    tampered = bytearray(replay[0])
    tampered[-1] ^= 1
    struct.pack_into("!I", tampered, 4, 99)
    b.esp_handler(bytes(tampered), replay[1], replay[2])
    assert b.stats["drop-icv-mismatch"] == 1
    assert len(b.tun.written) == 1  # type: ignore[union-attr]


def test_dummy_packet_discarded_silently() -> None:
    a, _, b, _ = tunnel()
    entry = a._outbound[1][-1]
    b.esp_handler(entry.esp.encapsulate(b"", NH_NONE), (OUT_A, 4501), (OUT_B, 4500))
    assert b.stats["dummy"] == 1 and not b.tun.written  # type: ignore[union-attr]
    assert not [k for k in b.stats if k.startswith("drop")]


def test_send_failure_and_ipv6_chatter() -> None:
    a, wa, _, _ = tunnel()
    wa.ok = False
    assert not a.outbound(ipv4("10.1.0.5", "10.2.0.7"))
    assert a.stats["drop-send-failed"] == 1
    assert not a.outbound(ipv6("fe80::1", "ff02::2"))  # router solicitation from the TUN
    assert a.stats["ignored"] == 1 and a.stats["drop-no-sa"] == 0
    assert not a.outbound(b"")
    assert a.stats["drop-malformed"] == 1


# ---- routes, VIPs, cleanup -------------------------------------------------------------------


def test_routes_refcounted_with_bypass_and_source() -> None:
    k = UserspaceKernel(Wire())
    k.add_vip("10.9.9.9")
    p1 = policies("10.1.0.0/24", "0.0.0.0/0", OUT_A, OUT_B, 1)
    p2 = policies("10.1.0.0/24", "0.0.0.0/0", OUT_A, OUT_B, 2)
    p3 = policies("10.9.9.9/32", "10.5.0.0/16", OUT_A, OUT_B, 3)
    for p in p1 + p2 + p3:
        k.add_policy(p)
    tun = k.tun
    assert isinstance(tun, FakeTun) and tun.name == "pqike0" and tun.table == 220
    assert tun.routes == [
        {"dst": OUT_B, "bypass": True},  # the peer is inside 0.0.0.0/0
        {"dst": "0.0.0.0/0", "prefsrc": "10.1.0.254"},  # a host address inside our selector
        {"dst": "10.5.0.0/16", "prefsrc": "10.9.9.9"},  # the virtual IP
    ]
    assert tun.rules == [2]
    for p in p1:
        k.del_policy(p)
    assert len(tun.routes) == 3  # still used by reqid 2
    for p in p2:
        k.del_policy(p)
    assert tun.routes == [{"dst": "10.5.0.0/16", "prefsrc": "10.9.9.9"}]
    k.del_policy(p3[0])
    k.del_policy(p3[0])  # twice: no-op
    assert tun.routes == []


def test_vips_refcounted_and_close() -> None:
    a, *_ = tunnel()
    a.add_vip("10.1.0.9")
    a.add_vip("10.1.0.9")
    a.add_vip("fd00::9")
    tun = a.tun
    assert tun.addresses == ["10.1.0.9", "fd00::9"]  # type: ignore[union-attr]
    a.del_vip("10.1.0.9")
    assert "10.1.0.9" in tun.addresses  # type: ignore[union-attr]
    a.del_vip("10.1.0.9")
    a.del_vip("10.1.0.9")
    assert tun.addresses == ["fd00::9"]  # type: ignore[union-attr]
    a.close()
    assert tun.closed and a.tun is None  # type: ignore[union-attr]
    assert not a.policies and not a.sa_list()
    a.close()  # idempotent


def test_explicit_routes_share_and_set_source() -> None:
    k = UserspaceKernel(Wire())
    assert k.needs_udp_encap_socket is False  # the daemon keeps a plain NAT-T socket
    k.add_vip("192.0.2.9", peer=OUT_B)
    pols = policies("10.1.0.0/24", "10.5.0.0/16", OUT_A, OUT_B)
    for p in pols:
        k.add_policy(p)
    tun = k.tun
    assert isinstance(tun, FakeTun)
    assert tun.routes == [{"dst": "10.5.0.0/16", "prefsrc": "10.1.0.254"}]
    r = KernelRoute(net("10.5.0.0/16"), "192.0.2.9", OUT_B)
    k.add_route(r)
    assert tun.routes == [{"dst": "10.5.0.0/16", "prefsrc": "192.0.2.9"}]
    k.del_policy(pols[0])
    assert len(tun.routes) == 1  # still wanted by the explicit route
    k.del_route(r)
    assert tun.routes == []
    everything = KernelRoute(net("0.0.0.0/0"), "192.0.2.9", OUT_B)
    k.add_route(everything)
    assert {"dst": OUT_B, "bypass": True} in tun.routes
    k.del_route(everything)
    k.del_route(everything)
    assert tun.routes == []


def test_trap_in_the_tun_path_reports_acquire_until_the_sa_is_there() -> None:
    """A packet routed into the TUN for a trapped child (OUT trap policy, no SA) is the
    userspace ACQUIRE: reported once per packet (the engine deduplicates), then dropped;
    once the CHILD_SA with the trap's reqid is installed it is encrypted; when the SA goes
    the trap catches traffic again. The trap's route into the TUN goes with the trap."""
    w = Wire()
    k = UserspaceKernel(w)
    got: list[tuple[int, str | None, str | None]] = []
    k.on_acquire = lambda reqid, s, d: got.append((reqid, s, d))
    trap = KernelPolicy(net("10.1.0.0/24"), net("10.2.0.0/24"), Direction.OUT, 9,
                        (OUT_A, OUT_B), trap=True)  # fmt: skip
    k.add_policy(trap)
    assert [r["dst"] for r in k.tun.routes] == ["10.2.0.0/24"]  # type: ignore[union-attr]
    k.tun.queue.append(ipv4("10.1.0.5", "10.2.0.7"))  # type: ignore[union-attr]
    k.read_tun()
    assert got == [(9, "10.1.0.5", "10.2.0.7")] and w.sent == []
    assert k.stats["acquire"] == 1 and k.stats["drop-no-sa"] == 0
    k.add_sa(sa(0x30, OUT_A, OUT_B, "10.1.0.0/24", "10.2.0.0/24", inbound=False, reqid=9))
    for p in policies("10.1.0.0/24", "10.2.0.0/24", OUT_A, OUT_B, 9):
        k.add_policy(p)
    assert k.outbound(ipv4("10.1.0.5", "10.2.0.7")) and len(got) == 1
    k.del_sa(0x30, OUT_B)
    for p in policies("10.1.0.0/24", "10.2.0.0/24", OUT_A, OUT_B, 9):
        k.del_policy(p)
    assert not k.outbound(ipv4("10.1.0.5", "10.2.0.8")) and len(got) == 2
    k.del_policy(trap)
    assert k.tun.routes == [] and k.policies == []  # type: ignore[union-attr]
    assert not k.outbound(ipv4("10.1.0.5", "10.2.0.9")) and len(got) == 2
