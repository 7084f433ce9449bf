"""Two UserspaceKernel instances in two network namespaces, traffic through the tunnel.

Topology: namespaces A and B joined by a veth pair (192.168.77.1/24 -- .2/24). Each side
runs this file as a peer process (``python test_userspace_netns.py peer CONFIG``): a
UserspaceKernel with TUN ``pqike0``, a virtual IP on it (A 10.10.1.1, B 10.10.2.1), a
matching SA pair and policies, and a tiny UDP "daemon" on port 4500 that hands ESP-in-UDP to
``esp_handler`` and lends its socket to ``send_udp``. A's remote selector is 0.0.0.0/0, so
its route into the tunnel covers B's outer address too and the bypass route is exercised.

Traffic: ICMP echo (raw socket; the kernel in B answers), a UDP echo and a short UDP flood
from A to B (client process in A). Then counters are checked, and close() must leave each
namespace's links, addresses, routes and rules as they were.
"""

from __future__ import annotations

import asyncio
import difflib
import ipaddress
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
NS_A, NS_B = f"pqus-a-{os.getpid()}", f"pqus-b-{os.getpid()}"
OUTER_A, OUTER_B = "192.168.77.1", "192.168.77.2"
VIP_A, VIP_B = "10.10.1.1", "10.10.2.1"
ECHO_PORT, SINK_PORT = 7777, 7778
SPI_AB, SPI_BA = 0xA0000001, 0xB0000001
KEY_AB, KEY_BA = os.urandom(36).hex(), os.urandom(36).hex()  # AES-256-GCM-16 + salt


# nothing is lost on a veth; a loaded machine only delays: wait long enough not to
# count a late answer as lost (and read it as the answer to the next request)
REPLY_WAIT = 10.0


# ---- peer process (runs inside a namespace) ---------------------------------------------


def run_peer(cfg: dict) -> None:
    sys.path.insert(0, str(ROOT))
    from pqike.events import Endpoint
    from pqike.kernel.base import Direction, KernelPolicy, KernelSa, Mode
    from pqike.kernel.userspace import UserspaceKernel
    from pqike.wire.iana import EncrId, IntegId

    loop = asyncio.new_event_loop()
    natt = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    natt.bind((cfg["local"], 4500))
    natt.setblocking(False)
    local_ep = Endpoint(cfg["local"], 4500)

    def send_udp(data: bytes, src: Endpoint, dst: Endpoint) -> bool:
        assert src == local_ep
        try:
            natt.sendto(data, (dst.host, dst.port))
        except BlockingIOError:
            return False
        return True

    kernel = UserspaceKernel(send_udp, loop=loop, ifname="pqike0", mtu=1400)

    def natt_readable() -> None:  # the daemon's NAT-T socket, reduced to the ESP part
        for _ in range(64):
            try:
                data, addr = natt.recvfrom(65536)
            except BlockingIOError:
                return
            if data[:4] != b"\x00\x00\x00\x00" and data != b"\xff":
                kernel.esp_handler(data, addr, (cfg["local"], 4500))

    loop.add_reader(natt.fileno(), natt_readable)

    net = ipaddress.ip_network
    local_ts, remote_ts = net(cfg["local_ts"]), net(cfg["remote_ts"])
    encap = (4500, 4500)
    common = dict(mode=Mode.TUNNEL, encr=EncrId.AES_GCM_16, integ=IntegId.NONE, integ_key=b"")
    kernel.add_vip(cfg["vip"])
    kernel.add_sa(KernelSa(
        spi=cfg["spi_in"], src=cfg["peer"], dst=cfg["local"], encr_key=bytes.fromhex(
            cfg["key_in"]), reqid=1, src_ts=remote_ts, dst_ts=local_ts, encap=encap,
        replay_window=64, inbound=True, **common,
    ))  # fmt: skip
    kernel.add_sa(KernelSa(
        spi=cfg["spi_out"], src=cfg["local"], dst=cfg["peer"], encr_key=bytes.fromhex(
            cfg["key_out"]), reqid=1, src_ts=local_ts, dst_ts=remote_ts, encap=encap,
        **common,
    ))  # fmt: skip
    t_out, t_in = (cfg["local"], cfg["peer"]), (cfg["peer"], cfg["local"])
    for p in (
        KernelPolicy(local_ts, remote_ts, Direction.OUT, 1, t_out),
        KernelPolicy(remote_ts, local_ts, Direction.IN, 1, t_in),
        KernelPolicy(remote_ts, local_ts, Direction.FWD, 1, t_in),
    ):
        kernel.add_policy(p)

    sink = {"packets": 0, "first": 0.0, "last": 0.0}
    servers = []
    if cfg.get("serve"):
        echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        echo.bind((cfg["vip"], ECHO_PORT))
        echo.setblocking(False)
        sk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sk.bind((cfg["vip"], SINK_PORT))
        sk.setblocking(False)
        servers += [echo, sk]

        def echo_readable() -> None:
            data, addr = echo.recvfrom(65536)
            echo.sendto(data, addr)

        def sink_readable() -> None:
            for _ in range(64):
                try:
                    sk.recv(65536)
                except BlockingIOError:
                    return
                now = time.monotonic()
                sink["first"] = sink["first"] or now
                sink["last"] = now
                sink["packets"] += 1

        loop.add_reader(echo.fileno(), echo_readable)
        loop.add_reader(sk.fileno(), sink_readable)

    done = loop.create_future()
    buf = b""

    def reply(obj: object) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def stdin_readable() -> None:
        nonlocal buf
        chunk = os.read(0, 4096)
        if not chunk:
            done.set_result(None) if not done.done() else None
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            cmd = line.decode().strip()
            if cmd == "stats":
                c_in = kernel.query_sa(cfg["spi_in"], cfg["local"])
                c_out = kernel.query_sa(cfg["spi_out"], cfg["peer"])
                reply({
                    "in": [c_in.packets, c_in.bytes], "out": [c_out.packets, c_out.bytes],
                    "last_use": c_in.last_use, "drops": dict(kernel.stats), "sink": sink,
                    "tun": kernel.tun.name if kernel.tun else None,
                })  # fmt: skip
            elif cmd == "close":
                loop.remove_reader(0)
                kernel.close()
                reply({"closed": True, "tun": kernel.tun})
                done.set_result(None)

    loop.add_reader(0, stdin_readable)
    reply({"ready": kernel.tun.name if kernel.tun else None})
    loop.run_until_complete(done)
    for s in servers:
        loop.remove_reader(s.fileno())
        s.close()
    loop.remove_reader(natt.fileno())
    natt.close()
    kernel.close()
    loop.close()


# ---- client (runs inside namespace A) ------------------------------------------------------


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def run_client(cfg: dict) -> None:
    out: dict = {}
    # ICMP echo through the tunnel (the kernel in B answers from its VIP)
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    icmp.bind((cfg["src"], 0))
    icmp.settimeout(2)
    replies, ident = 0, os.getpid() & 0xFFFF
    for seq in range(1, cfg["pings"] + 1):
        body = struct.pack("!d", time.time()) + bytes(48)
        hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        hdr = struct.pack("!BBHHH", 8, 0, _csum(hdr + body), ident, seq)
        icmp.sendto(hdr + body, (cfg["dst"], 0))
        deadline = time.monotonic() + REPLY_WAIT
        while time.monotonic() < deadline:
            try:
                pkt, addr = icmp.recvfrom(2048)
            except TimeoutError:
                break
            ihl = (pkt[0] & 0x0F) * 4
            typ, _, _, rid, rseq = struct.unpack("!BBHHH", pkt[ihl : ihl + 8])
            if typ == 0 and rid == ident and rseq == seq and addr[0] == cfg["dst"]:
                replies += 1
                break
    out["ping_replies"] = replies
    # UDP echo
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((cfg["src"], 0))
    u.settimeout(REPLY_WAIT)
    echoed = 0
    t0 = time.monotonic()
    for i in range(cfg["echoes"]):
        msg = f"hello {i}".encode() * 10
        u.sendto(msg, (cfg["dst"], ECHO_PORT))
        try:
            if u.recv(65536) == msg:
                echoed += 1
        except TimeoutError:
            pass
    out["echoed"] = echoed
    out["echo_rtt_per_s"] = cfg["echoes"] / (time.monotonic() - t0)
    # a short UDP flood, paced in bursts so the TUN queue is not the bottleneck
    payload, every = bytes(cfg.get("size", 64)), cfg.get("pace_every", 32)
    t0 = time.monotonic()
    for i in range(cfg["flood"]):
        u.sendto(payload, (cfg["dst"], SINK_PORT))
        if every and i % every == every - 1:
            time.sleep(0.0005)
    out["flood_sent"] = cfg["flood"]
    out["flood_send_s"] = time.monotonic() - t0
    print(json.dumps(out))


# ---- test driver ---------------------------------------------------------------------------


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, TUN devices)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun missing"
    if shutil.which("ip") is None:
        return "iproute2 'ip' missing"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def sh(*args: str, ns: str | None = None, check: bool = True) -> str:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True).stdout


def snapshot(ns: str) -> dict[str, str]:
    return {
        "links": sh("ip", "-br", "link", ns=ns),
        "addrs": sh("ip", "-br", "addr", ns=ns),
        "routes4": sh("ip", "-4", "route", "show", "table", "all", ns=ns),
        "routes6": sh("ip", "-6", "route", "show", "table", "all", ns=ns),
        "rules4": sh("ip", "-4", "rule", ns=ns),
        "rules6": sh("ip", "-6", "rule", ns=ns),
    }


@pytest.fixture
def namespaces():
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", "pqus-va", "netns", NS_A, "type", "veth", "peer", "name",
           "pqus-vb", "netns", NS_B)  # fmt: skip
        for ns, dev, addr in ((NS_A, "pqus-va", OUTER_A), (NS_B, "pqus-vb", OUTER_B)):
            sh("ip", "link", "set", "lo", "up", ns=ns)
            sh("ip", "addr", "add", f"{addr}/24", "dev", dev, ns=ns)
            sh("sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1", ns=ns)
            sh("ip", "link", "set", dev, "up", ns=ns)
        for ns, dev in ((NS_A, "pqus-va"), (NS_B, "pqus-vb")):  # stable before the snapshot
            for _ in range(100):
                if " UP " in sh("ip", "-br", "link", "show", dev, ns=ns):
                    break
                time.sleep(0.02)
        yield
    finally:
        for ns in (NS_A, NS_B):
            sh("ip", "netns", "del", ns, check=False)


class Peer:
    def __init__(self, ns: str, cfg: dict) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, PY, __file__, "peer", json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=ROOT,
        )  # fmt: skip

    def ask(self, cmd: str | None = None) -> dict:
        assert self.proc.stdin and self.proc.stdout
        if cmd:
            self.proc.stdin.write(cmd + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(
                f"peer died: {self.proc.stderr.read() if self.proc.stderr else ''}"
            )
        return json.loads(line)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for f in (self.proc.stdin, self.proc.stdout):
            if f and not f.closed:
                f.close()
        err = self.proc.stderr.read() if self.proc.stderr else ""
        return err


def test_ping_and_udp_through_tunnel(namespaces) -> None:
    before = {ns: snapshot(ns) for ns in (NS_A, NS_B)}
    cfg_a = dict(local=OUTER_A, peer=OUTER_B, vip=VIP_A, local_ts=f"{VIP_A}/32",
                 remote_ts="0.0.0.0/0", spi_in=SPI_BA, spi_out=SPI_AB, key_in=KEY_BA,
                 key_out=KEY_AB)  # fmt: skip
    cfg_b = dict(local=OUTER_B, peer=OUTER_A, vip=VIP_B, local_ts="0.0.0.0/0",
                 remote_ts=f"{VIP_A}/32", spi_in=SPI_AB, spi_out=SPI_BA, key_in=KEY_AB,
                 key_out=KEY_BA, serve=True)  # fmt: skip
    peers = [Peer(NS_A, cfg_a), Peer(NS_B, cfg_b)]
    try:
        a, b = peers
        assert a.ask() == {"ready": "pqike0"}
        assert b.ask() == {"ready": "pqike0"}
        # A's 0.0.0.0/0 covers B's outer address: the bypass keeps ESP on the veth
        assert f"{OUTER_B} dev pqus-va" in sh("ip", "route", "show", "table", "220", ns=NS_A)
        assert "default dev pqike0" in sh("ip", "route", "show", "table", "220", ns=NS_A)
        assert "220:" in sh("ip", "rule", ns=NS_A)

        client_cfg = dict(src=VIP_A, dst=VIP_B, pings=5, echoes=200, flood=4000)
        res = subprocess.run(
            ["ip", "netns", "exec", NS_A, PY, __file__, "client", json.dumps(client_cfg)],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        client = json.loads(res.stdout)
        assert client["ping_replies"] == 5
        assert client["echoed"] == 200
        time.sleep(0.5)
        sa, sb = a.ask("stats"), b.ask("stats")
        sent_a = 5 + 200 + client["flood_sent"]
        assert sa["out"][0] >= 205 and sb["in"][0] >= 205
        assert sb["in"][0] <= sa["out"][0] <= sent_a + 10  # + stray packets (none expected)
        assert sb["out"][0] == sa["in"][0] >= 205  # replies: nothing lost on the veth
        assert sa["out"][1] > 200 * 84 and sa["last_use"]
        assert not [k for s in (sa, sb) for k in s["drops"] if k.startswith("drop")], (sa, sb)
        sink = sb["sink"]
        rate = sink["packets"] / max(sink["last"] - sink["first"], 1e-6)
        print(
            f"\nICMP 5/5, UDP echo {client['echo_rtt_per_s']:.0f} round trips/s, "
            f"flood {sink['packets']}/{client['flood_sent']} received at {rate:.0f} packets/s"
        )
        assert sink["packets"] > client["flood_sent"] // 2

        for p in peers:
            assert p.ask("close") == {"closed": True, "tun": None}
            p.proc.stdin.close()  # type: ignore[union-attr]
            assert p.proc.wait(timeout=10) == 0
    finally:
        errors = [p.stop() for p in peers]
    after = {ns: snapshot(ns) for ns in (NS_A, NS_B)}
    diff = [
        f"{ns} {k}:\n" + "\n".join(difflib.unified_diff(before[ns][k].splitlines(),
                                                        after[ns][k].splitlines(), lineterm=""))
        for ns in before
        for k in before[ns]
        if before[ns][k] != after[ns][k]
    ]  # fmt: skip
    assert not diff, "\n".join(diff + errors)


if __name__ == "__main__":
    mode, conf = sys.argv[1], json.loads(sys.argv[2])
    run_peer(conf) if mode == "peer" else run_client(conf)
