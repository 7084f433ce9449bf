"""Real ESP through XfrmKernel: two namespaces, a veth, tunnel-mode SAs and policies, ping.

These need a kernel with ESP. Here they run inside user-mode Linux, started by
tests/uml/test_uml.py (``python -m tests.uml.harness tests/uml/esp``); on a host whose own
kernel has ESP they run directly. Elsewhere they skip with the probe's reason.

    ns a: va 192.0.2.1/24, lo 10.1.0.1 ===== ESP (tunnel) ===== ns b: vb 192.0.2.2/24, lo 10.2.0.1

No route for the inner subnets is set up by the test: XfrmKernel installs it (table 220,
source 10.1.0.1 / 10.2.0.1) together with the OUT policy.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pyroute2 import IPRoute, netns

from pqike.kernel.base import Direction, KernelPolicy, KernelSa, Mode
from pqike.kernel.netlink_xfrm import XfrmSocket
from pqike.kernel.xfrm import XfrmKernel, enable_udp_encap
from pqike.wire.iana import EncrId, IntegId

pytestmark = pytest.mark.uml

A, B = "192.0.2.1", "192.0.2.2"
A_IN, B_IN = "10.1.0.1", "10.2.0.1"
NET_A, NET_B = ipaddress.ip_network("10.1.0.0/24"), ipaddress.ip_network("10.2.0.0/24")

# name -> (encr, encr key length incl. salt, integ, integ key length, NAT-T, ESN)
SUITES = {
    "aes-gcm-16": (EncrId.AES_GCM_16, 20, IntegId.NONE, 0, False, False),
    "aes-cbc-256+sha256": (EncrId.AES_CBC, 32, IntegId.HMAC_SHA2_256_128, 32, False, False),
    "aes-gcm-16-natt": (EncrId.AES_GCM_16, 36, IntegId.NONE, 0, True, False),
    "chacha20-poly1305": (EncrId.CHACHA20_POLY1305, 36, IntegId.NONE, 0, False, False),
    "aes-gcm-16-esn": (EncrId.AES_GCM_16, 20, IntegId.NONE, 0, False, True),
}


def _ping_cmd() -> list[str] | None:
    if shutil.which("ping"):
        return ["ping"]
    if shutil.which("busybox"):
        return ["busybox", "ping"]
    return None


def ping(
    ns: str, src: str, dst: str, count: int = 3, deadline: int = 5
) -> subprocess.CompletedProcess[str]:
    cmd = _ping_cmd()
    assert cmd, "no ping (iputils-ping or busybox)"
    argv = ["nsenter", f"--net=/run/netns/{ns}", *cmd, "-c", str(count), "-i", "0.2"]
    argv += ["-w", str(deadline), "-W", str(deadline), "-I", src, dst]
    return subprocess.run(argv, capture_output=True, text=True, timeout=20)


@dataclass
class Pair:
    a: str
    b: str


@pytest.fixture
def pair() -> Iterator[Pair]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    token = secrets.token_hex(3)
    p = Pair(f"pqike-esp-a-{token}", f"pqike-esp-b-{token}")
    netns.create(p.a)
    netns.create(p.b)
    try:
        with IPRoute(netns=p.a) as ia, IPRoute(netns=p.b) as ib:
            ia.link("add", ifname="va", kind="veth", peer={"ifname": "vb"})
            ia.link("set", index=ia.link_lookup(ifname="vb")[0], net_ns_fd=p.b)
            for ipr, dev, outer, inner in ((ia, "va", A, A_IN), (ib, "vb", B, B_IN)):
                lo = ipr.link_lookup(ifname="lo")[0]
                idx = ipr.link_lookup(ifname=dev)[0]
                ipr.link("set", index=lo, state="up")
                ipr.addr("add", index=lo, address=inner, prefixlen=32)
                ipr.addr("add", index=idx, address=outer, prefixlen=24)
                ipr.link("set", index=idx, state="up")
        reason = XfrmKernel(netns=p.a).probe()
        if reason is not None:
            pytest.skip(f"{reason} (run these in UML: python -m tests.uml.harness)")
        yield p
    finally:
        netns.remove(p.a)
        netns.remove(p.b)


def install_side(
    k: XfrmKernel,
    me: str,
    peer: str,
    my_net: ipaddress.IPv4Network,
    peer_net: ipaddress.IPv4Network,
    spi_in: int,
    spi_out: int,
    keys_in: tuple[bytes, bytes],
    keys_out: tuple[bytes, bytes],
    suite: str,
) -> None:
    encr, _, integ, _, natt, esn = SUITES[suite]
    encap = (4500, 4500) if natt else None
    k.add_sa(
        KernelSa(
            spi_out,
            me,
            peer,
            Mode.TUNNEL,
            encr,
            keys_out[0],
            integ,
            keys_out[1],
            1,
            my_net,
            peer_net,
            encap,
            esn=esn,
        )
    )
    k.add_sa(
        KernelSa(
            spi_in,
            peer,
            me,
            Mode.TUNNEL,
            encr,
            keys_in[0],
            integ,
            keys_in[1],
            1,
            peer_net,
            my_net,
            encap,
            esn=esn,
            inbound=True,
        )
    )
    k.add_policy(KernelPolicy(my_net, peer_net, Direction.OUT, 1, (me, peer)))
    k.add_policy(KernelPolicy(peer_net, my_net, Direction.IN, 1, (peer, me)))
    k.add_policy(KernelPolicy(peer_net, my_net, Direction.FWD, 1, (peer, me)))


def leftovers(ns: str) -> dict[str, list]:
    """SA SPIs, policy directions, table-220 routes and rules left in ``ns``.

    ``ip -n`` when available (a cross-check, and cheaper than a pyroute2 socket in another
    namespace, which forks a helper process), else netlink.
    """
    if shutil.which("ip"):

        def run(*args: str) -> str:
            argv = ["ip", "-n", ns, *args]
            return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

        return {
            "sas": re.findall(r"spi (0x[0-9a-f]+)", run("xfrm", "state")),
            "policies": re.findall(r"\bdir (\w+)", run("xfrm", "policy")),
            "routes": run("route", "show", "table", "220").splitlines(),
            "rules": [r for r in run("rule").splitlines() if "lookup 220" in r],
        }
    with XfrmSocket(netns=ns) as s:
        sas = [f"0x{m['id_spi']:08x}" for m in s.dump_sas()]
        pols = [("in", "out", "fwd")[m["dir"]] for m in s.dump_policies()]
    with IPRoute(netns=ns) as ipr:
        routes = [r.get("RTA_DST") for r in ipr.get_routes(table=220)]
        rules = [r.get("FRA_TABLE") for r in ipr.get_rules() if r.get("FRA_TABLE") == 220]
    return {"sas": sas, "policies": pols, "routes": routes, "rules": rules}


@pytest.mark.parametrize("suite", list(SUITES))
def test_esp_tunnel_ping(pair: Pair, suite: str) -> None:
    encr, elen, _, ilen, natt, esn = SUITES[suite]
    ka, kb = XfrmKernel(netns=pair.a), XfrmKernel(netns=pair.b)
    socks = []
    try:
        if natt:  # inbound ESP-in-UDP is only decapsulated on a UDP_ENCAP socket
            for ns in (pair.a, pair.b):
                s = netns.create_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("0.0.0.0", 4500))
                enable_udp_encap(s)
                socks.append(s)
        spi_ab = kb.alloc_spi(A, B)  # b's inbound SPI, allocated like an IKE responder does
        spi_ba = ka.alloc_spi(B, A)
        k_ab = (os.urandom(elen), os.urandom(ilen))
        k_ba = (os.urandom(elen), os.urandom(ilen))
        install_side(ka, A, B, NET_A, NET_B, spi_ba, spi_ab, k_ba, k_ab, suite)
        install_side(kb, B, A, NET_B, NET_A, spi_ab, spi_ba, k_ab, k_ba, suite)

        r = ping(pair.a, A_IN, B_IN)
        assert r.returncode == 0, r.stdout + r.stderr
        out_a, in_b = ka.query_sa(spi_ab, B), kb.query_sa(spi_ab, B)
        out_b, in_a = kb.query_sa(spi_ba, A), ka.query_sa(spi_ba, A)
        for c in (out_a, in_b, out_b, in_a):
            assert c.packets >= 2 and c.bytes > 0, (out_a, in_b, out_b, in_a)
        assert in_b.packets == out_a.packets
        assert out_a.last_use is not None
        if shutil.which("ip"):  # cross-check what the kernel holds
            state = subprocess.run(
                ["ip", "-n", pair.a, "xfrm", "state"], capture_output=True, text=True, check=True
            ).stdout
            assert f"spi 0x{spi_ab:08x} reqid 1 mode tunnel" in state
            assert ("aead " if encr != EncrId.AES_CBC else "enc cbc(aes)") in state
            if natt:
                assert "encap type espinudp sport 4500 dport 4500" in state
            if esn:
                assert "flag af-unspec esn" in state

        # the policy is enforced: without a's outbound SA nothing passes
        ka.del_sa(spi_ab, B)
        r = ping(pair.a, A_IN, B_IN, count=1, deadline=1)
        assert r.returncode != 0, "ping passed without an SA: traffic was not protected"
    finally:
        ka.close()
        kb.close()
        for s in socks:
            s.close()
    for ns in (pair.a, pair.b):
        assert leftovers(ns) == {"sas": [], "policies": [], "routes": [], "rules": []}


def test_foreign_state_survives_close(pair: Pair) -> None:
    """A real SA and a policy made with ip xfrm (not by pqike) outlive XfrmKernel.close()."""
    if not shutil.which("ip"):
        pytest.skip("no ip (iproute2) for the cross-check")
    ip = ["ip", "-n", pair.a, "xfrm"]
    key = "0x" + os.urandom(20).hex()
    subprocess.run(
        [
            *ip,
            "state",
            "add",
            "src",
            B,
            "dst",
            A,
            "proto",
            "esp",
            "spi",
            "0x4242",
            "reqid",
            "9",
            "mode",
            "tunnel",
            "aead",
            "rfc4106(gcm(aes))",
            key,
            "128",
        ],
        check=True,
    )
    subprocess.run(
        [
            *ip,
            "policy",
            "add",
            "src",
            "10.9.0.0/24",
            "dst",
            "10.8.0.0/24",
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
            "9",
            "mode",
            "tunnel",
        ],
        check=True,
    )
    ka = XfrmKernel(netns=pair.a)
    spi = ka.alloc_spi(B, A)
    install_side(
        ka,
        A,
        B,
        NET_A,
        NET_B,
        spi,
        0xC1000001,
        (os.urandom(20), b""),
        (os.urandom(20), b""),
        "aes-gcm-16",
    )
    ka.close()
    left = leftovers(pair.a)
    assert left["sas"] == ["0x00004242"] and left["policies"] == ["out"]
    state = subprocess.run([*ip, "state"], capture_output=True, text=True, check=True).stdout
    assert "spi 0x00004242" in state and "rfc4106(gcm(aes))" in state
