"""XfrmKernel against this host's kernel, in a private network namespace.

XFRM policies, larval SAs (ALLOCSPI), addresses, routes and rules work without ESP; SAs with
ESP are tested in user-mode Linux (tests/uml). ``ip`` is used only to cross-check.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute, netns

from pqike.kernel import select_backend
from pqike.kernel.base import (
    Direction,
    KernelError,
    KernelPolicy,
    KernelRoute,
    KernelSa,
    MemoryKernel,
    Mode,
)
from pqike.kernel.netlink_xfrm import XfrmSocket
from pqike.kernel.xfrm import ROUTE_PROTO, XfrmKernel, bypass_socket, enable_udp_encap
from pqike.wire.iana import EncrId, IntegId

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and iproute2 (cross-check)"
)

A, B = "192.0.2.1", "192.0.2.2"
NET_A, NET_B = ipaddress.ip_network("10.1.0.0/24"), ipaddress.ip_network("10.2.0.0/24")


@pytest.fixture
def ns() -> Iterator[str]:
    """A namespace with va 192.0.2.1/24 (veth to vb, 192.0.2.2/24 in the same namespace)
    and 10.1.0.1/32 on lo."""
    name = f"pqike-xfrm-{os.getpid()}-{secrets.token_hex(3)}"
    netns.create(name)
    try:
        with IPRoute(netns=name) as ipr:
            ipr.link("add", ifname="va", kind="veth", peer={"ifname": "vb"})
            lo, va = ipr.link_lookup(ifname="lo")[0], ipr.link_lookup(ifname="va")[0]
            vb = ipr.link_lookup(ifname="vb")[0]
            for idx in (lo, va, vb):
                ipr.link("set", index=idx, state="up")
            ipr.addr("add", index=va, address=A, prefixlen=24)
            ipr.addr("add", index=lo, address="10.1.0.1", prefixlen=32)
        yield name
    finally:
        netns.remove(name)


def ip(ns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "-n", ns, *args], capture_output=True, text=True, check=True
    ).stdout


def test_probe_reports_missing_esp(ns: str) -> None:
    k = XfrmKernel(netns=ns)
    reason = k.probe()
    k.close()
    if reason is None:
        pytest.skip("this kernel has ESP")
    assert reason.startswith("kernel has no ESP: adding a test SA failed with EPROTONOSUPPORT"), (
        reason
    )
    assert "esp4 module missing" in reason
    assert ip(ns, "xfrm", "state") == ""  # nothing left behind


def test_select_backend(ns: str, caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(select_backend("none"), MemoryKernel)
    with pytest.raises(KernelError, match="unknown kernel backend"):
        select_backend("bogus")
    if XfrmKernel(netns=ns).probe() is None:
        assert select_backend("xfrm", netns=ns).name == "xfrm"
        return
    with pytest.raises(KernelError, match="xfrm unusable: kernel has no ESP"):
        select_backend("xfrm", netns=ns)
    with caplog.at_level(logging.INFO, logger="pqike.KNL"):
        backend = select_backend("auto", netns=ns)
    assert backend.name != "xfrm"
    assert "xfrm unusable (kernel has no ESP" in caplog.text


def test_policies_tunnel_in_out_fwd(ns: str) -> None:
    k = XfrmKernel(netns=ns, install_routes=False)
    pols = [
        KernelPolicy(NET_A, NET_B, Direction.OUT, 7, (A, B)),
        KernelPolicy(NET_B, NET_A, Direction.IN, 7, (B, A)),
        KernelPolicy(NET_B, NET_A, Direction.FWD, 7, (B, A)),
        KernelPolicy(
            ipaddress.ip_network("192.0.2.1/32"),
            ipaddress.ip_network("192.0.2.2/32"),
            Direction.OUT,
            8,
            None,
        ),
    ]
    for p in pols:
        k.add_policy(p)
    out = ip(ns, "xfrm", "policy")
    assert "src 10.1.0.0/24 dst 10.2.0.0/24 \n\tdir out priority 100832" in out
    assert "tmpl src 192.0.2.1 dst 192.0.2.2\n\t\tproto esp reqid 7 mode tunnel" in out
    assert "dir fwd" in out and "dir in" in out
    assert "proto esp reqid 8 mode transport" in out
    with XfrmSocket(netns=ns) as s:
        assert sorted(m["dir"] for m in s.dump_policies()) == [0, 1, 1, 2]
    k.del_policy(pols[0])
    assert "dir out priority 100832" not in ip(ns, "xfrm", "policy")
    k.close()
    assert ip(ns, "xfrm", "policy") == ""


def test_policy_shared_by_two_children(ns: str) -> None:
    """The same selector for two CHILD_SAs (rekeying): the newest template wins, the
    policy lives until the last user deletes it."""
    k = XfrmKernel(netns=ns, install_routes=False)
    old = KernelPolicy(NET_A, NET_B, Direction.OUT, 7, (A, B))
    new = KernelPolicy(NET_A, NET_B, Direction.OUT, 8, (A, B))
    k.add_policy(old)
    k.add_policy(new)
    assert "reqid 8" in ip(ns, "xfrm", "policy")
    k.del_policy(new)
    assert "reqid 7" in ip(ns, "xfrm", "policy")
    k.add_policy(new)
    k.del_policy(old)  # not the active one: reqid 8 stays
    assert "reqid 8" in ip(ns, "xfrm", "policy")
    k.del_policy(new)
    assert ip(ns, "xfrm", "policy") == ""
    k.close()


def test_foreign_state_is_never_touched(ns: str) -> None:
    ip(
        ns,
        "xfrm",
        "policy",
        "add",
        "src",
        "10.1.0.0/24",
        "dst",
        "10.2.0.0/24",
        "dir",
        "out",
        "tmpl",
        "src",
        A,
        "dst",
        B,
        "proto",
        "esp",
        "reqid",
        "99",
        "mode",
        "tunnel",
    )
    ip(ns, "xfrm", "policy", "add", "src", "10.5.0.0/24", "dst", "10.6.0.0/24", "dir", "in")
    foreign_spi = ip(ns, "xfrm", "state", "allocspi", "src", B, "dst", A, "proto", "esp")
    assert "proto esp spi" in foreign_spi
    before_pol, before_sa = ip(ns, "xfrm", "policy"), ip(ns, "xfrm", "state")

    k = XfrmKernel(netns=ns, install_routes=False)
    # a selector held by a foreign policy is refused, not replaced
    with pytest.raises(KernelError, match="EEXIST"):
        k.add_policy(KernelPolicy(NET_A, NET_B, Direction.OUT, 7, (A, B)))
    # deleting what pqike did not install is a no-op
    k.del_policy(KernelPolicy(NET_A, NET_B, Direction.OUT, 99, (A, B)))
    k.add_policy(KernelPolicy(NET_B, NET_A, Direction.IN, 7, (B, A)))
    spi = k.alloc_spi(B, A)  # a larval SA of ours
    assert f"spi 0x{spi:08x}" in ip(ns, "xfrm", "state")
    assert k.installed()["larval"] == [(spi, A)]
    k.close()
    assert ip(ns, "xfrm", "policy") == before_pol
    assert ip(ns, "xfrm", "state") == before_sa


def test_alloc_spi_range_and_sa_errors(ns: str) -> None:
    k = XfrmKernel(netns=ns)
    spis = {k.alloc_spi(B, A) for _ in range(3)}
    assert len(spis) == 3 and all(0xC0000000 <= s <= 0xCFFFFFFF for s in spis)
    # adding an SA without ESP fails with the kernel's reason
    sa = KernelSa(
        0xC0000123,
        A,
        B,
        Mode.TUNNEL,
        EncrId.AES_CBC,
        bytes(16),
        IntegId.HMAC_SHA2_256_128,
        bytes(32),
        1,
        NET_A,
        NET_B,
    )
    if k.probe() is not None:
        with pytest.raises(KernelError, match=r"adding SA c0000123 192\.0\.2\.1 -> 192\.0\.2\.2"):
            k.add_sa(sa)
    with pytest.raises(KernelError, match="querying SA"):
        k.query_sa(0xC0000124, B)
    k.del_sa(0xC0000124, B)  # unknown: no-op
    k.close()
    assert ip(ns, "xfrm", "state") == ""


def test_vip_on_interface_towards_peer(ns: str) -> None:
    k = XfrmKernel(netns=ns)
    k.add_vip("10.3.0.5", peer=B)  # the route to B leaves via va
    k.add_vip("fd00::5")  # no peer: lo
    assert "inet 10.3.0.5/32" in ip(ns, "addr", "show", "dev", "va")
    assert "inet6 fd00::5/128" in ip(ns, "addr", "show", "dev", "lo")
    k.del_vip("fd00::5")
    assert "fd00::5" not in ip(ns, "addr")
    # an address that existed before is not ours: never removed
    k.add_vip("10.1.0.1")
    k.del_vip("10.1.0.1")
    k.close()
    addrs = ip(ns, "addr")
    assert "10.3.0.5" not in addrs and "inet 10.1.0.1/32" in addrs


def test_route_for_out_policy_via_vip(ns: str) -> None:
    k = XfrmKernel(netns=ns)
    k.add_vip("10.3.0.5", peer=B)
    vip_net = ipaddress.ip_network("10.3.0.5/32")
    k.add_policy(KernelPolicy(vip_net, NET_B, Direction.OUT, 1, (A, B)))
    k.add_policy(KernelPolicy(NET_B, vip_net, Direction.IN, 1, (B, A)))
    # site-to-site: 10.1.0.1 on lo lies in the local selector
    k.add_policy(KernelPolicy(NET_A, ipaddress.ip_network("10.4.0.0/16"), Direction.OUT, 2, (A, B)))
    routes = ip(ns, "route", "show", "table", "220")
    assert f"10.2.0.0/24 via 192.0.2.2 dev va proto {ROUTE_PROTO} src 10.3.0.5" in routes
    assert f"10.4.0.0/16 via 192.0.2.2 dev va proto {ROUTE_PROTO} src 10.1.0.1" in routes
    assert "220:\tfrom all lookup 220" in ip(ns, "rule")
    # the kernel now picks the VIP as source towards the remote subnet
    assert "src 10.3.0.5" in ip(ns, "route", "get", "10.2.0.9")
    k.close()
    assert ip(ns, "route", "show", "table", "220") == ""
    assert "lookup 220" not in ip(ns, "rule")
    assert "10.3.0.5" not in ip(ns, "addr")


def test_explicit_routes_refcounted_and_preexisting_rule_kept(ns: str) -> None:
    ip(ns, "rule", "add", "priority", "220", "table", "220")  # somebody else's rule
    k = XfrmKernel(netns=ns)
    r = KernelRoute(NET_B, "10.1.0.1", B)
    k.add_route(r)
    k.add_route(r)
    k.del_route(r)
    assert "10.2.0.0/24" in ip(ns, "route", "show", "table", "220")
    k.del_route(r)
    assert ip(ns, "route", "show", "table", "220") == ""
    with pytest.raises(KernelError, match="adding route"):
        k.add_route(KernelRoute(NET_B, "10.77.0.1", B))  # not a local address
    k.close()
    assert "lookup 220" in ip(ns, "rule")


def test_socket_helpers() -> None:
    # IPv4 only: this host's kernel answers EOPNOTSUPP for IPV6_XFRM_POLICY (no xfrm6)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        enable_udp_encap(s)
        bypass_socket(s)


def _send_udp_in(ns: str, src: str, dst: str) -> None:
    """One UDP datagram from ``src`` to ``dst`` inside the namespace (errors ignored: a
    packet caught by a trap is dropped while the kernel's larval SA waits)."""
    netns.pushns(ns)
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    finally:
        netns.popns()
    with s:
        s.bind((src, 0))
        with contextlib.suppress(OSError):
            s.sendto(b"x", (dst, 9))


def test_trap_policy_ranks_below_child_sa_policy_and_raises_acquire(ns: str) -> None:
    """A trap is an OUT policy with a template and no SA; a packet it catches makes the
    kernel multicast an ACQUIRE with the template's reqid. A CHILD_SA's policy for the same
    selector takes the kernel policy over and hands it back when it goes."""
    k = XfrmKernel(netns=ns)
    got: list[tuple[int, str | None, str | None]] = []
    k.on_acquire = lambda reqid, s, d: got.append((reqid, s, d))
    trap = KernelPolicy(NET_A, NET_B, Direction.OUT, 5, (A, B), trap=True)
    k.add_policy(trap)
    assert k.acquire_fd is not None
    assert "dir out priority 100834" in ip(ns, "xfrm", "policy")  # one below 100832
    _send_udp_in(ns, "10.1.0.1", "10.2.0.7")
    import select

    assert select.select([k.acquire_fd], [], [], 5.0)[0], "no ACQUIRE from the kernel"
    assert k.read_acquires() >= 1
    assert got[0] == (5, "10.1.0.1", "10.2.0.7")
    sa_pol = KernelPolicy(NET_A, NET_B, Direction.OUT, 5, (A, B))
    k.add_policy(sa_pol)
    assert "dir out priority 100832" in ip(ns, "xfrm", "policy")
    k.del_policy(sa_pol)
    assert "dir out priority 100834" in ip(ns, "xfrm", "policy")
    k.add_policy(sa_pol)
    k.del_policy(trap)  # the CHILD_SA's policy stays as it is
    assert "dir out priority 100832" in ip(ns, "xfrm", "policy")
    k.add_policy(trap)  # a trap added under a CHILD_SA does not displace it
    assert "dir out priority 100832" in ip(ns, "xfrm", "policy")
    _send_udp_in(ns, "10.1.0.1", "10.2.0.8")  # caught by the trap again: larval SAs
    assert ip(ns, "xfrm", "state").count("spi 0x00000000 reqid 5") == 1  # (first: purged)
    k.close()
    assert k.acquire_fd is None
    assert ip(ns, "xfrm", "state") == ""  # the kernel's larval ACQUIRE states too
    assert ip(ns, "xfrm", "policy") == "" and "10.2.0.0/24" not in ip(
        ns, "route", "show", "table", "220"
    )


def test_two_workers_share_one_kernel(ns: str) -> None:
    """daemon.workers with kernel = xfrm: a backend per worker process, one kernel. The
    peers of different workers have their own policies and routes; equal selectors (two
    peers claiming one subnet) fail in the second worker instead of taking the first one's
    traffic; the routing rule stays while any worker has routes in the table."""
    first, second = XfrmKernel(netns=ns), XfrmKernel(netns=ns)
    net_c = ipaddress.ip_network("10.4.0.0/16")
    first.add_policy(KernelPolicy(NET_A, NET_B, Direction.OUT, 1, (A, B)))
    second.add_policy(KernelPolicy(NET_A, net_c, Direction.OUT, 2, (A, "192.0.2.3")))
    policies = ip(ns, "xfrm", "policy")
    assert "reqid 1 mode tunnel" in policies and "reqid 2 mode tunnel" in policies
    with pytest.raises(KernelError, match="File exists"):
        second.add_policy(KernelPolicy(NET_A, NET_B, Direction.OUT, 4, (A, "192.0.2.3")))
    assert "reqid 4" not in ip(ns, "xfrm", "policy")
    routes = ip(ns, "route", "show", "table", "220")
    assert "10.2.0.0/24" in routes and "10.4.0.0/16" in routes
    first.close()  # the worker that added the rule stops first
    assert "10.4.0.0/16" in ip(ns, "route", "show", "table", "220")
    assert "lookup 220" in ip(ns, "rule"), "the other worker's route is still in use"
    second.close()
    assert ip(ns, "xfrm", "policy") == "" and ip(ns, "route", "show", "table", "220") == ""
    assert "lookup 220" not in ip(ns, "rule")
