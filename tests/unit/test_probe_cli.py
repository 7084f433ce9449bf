"""``pqike probe`` over real UDP on loopback: a pqike Engine behind a socket (with the
non-ESP marker, as on a NAT-T port), the CLI's text and JSON, and an address nobody answers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from pqike.cli import cli
from pqike.engine import Engine
from pqike.events import Datagram, Endpoint
from pqike.kernel.base import MemoryKernel
from tests.exchange.peers import PSK, load_tree

MARKER = b"\x00\x00\x00\x00"
PROPOSALS = "aes256-sha256-x25519-ke1_mlkem768"


@pytest.fixture
def gateway() -> Iterator[int]:
    """A pqike Engine on 127.0.0.1:<port>, NAT-T style (marker on every IKE datagram)."""
    tree = {
        "daemon": {"control_socket": "/tmp/x"},
        "connections": {
            "rw": {
                "local_addrs": ["127.0.0.1"],
                "proposals": [PROPOSALS],
                "local": {"auth": "psk", "id": "moon.strongswan.org"},
                "remote": {"auth": "psk", "id": "carol@strongswan.org"},
                "children": {"net": {"local_ts": ["10.1.0.0/24"]}},
            }
        },
        "secrets": {"ike-1": {"id-1": "carol@strongswan.org", "secret": PSK}},
    }
    engine = Engine(load_tree(tree), MemoryKernel(), events=lambda e: None)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    port = sock.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(65535)
            except TimeoutError:
                continue
            assert data[:4] == MARKER
            src, dst = Endpoint(*addr), Endpoint("127.0.0.1", port)
            engine.receive(Datagram(data=data[4:], src=src, dst=dst), time.monotonic())
            for d in engine.pop_outgoing():
                sock.sendto(MARKER + d.data, (d.dst.host, d.dst.port))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield port
    stop.set()
    t.join()
    sock.close()


def test_probe_over_udp(gateway: int) -> None:
    args = ["probe", "127.0.0.1", "--port", str(gateway), "--natt", "--rate", "100"]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [m["name"] for m in data["ke"]] == ["CURVE_25519"]
    assert [m["name"] for m in data["addke"]["1"]["methods"]] == ["ML_KEM_768"]
    assert data["cost"]["datagrams_sent"] == data["cost"]["probes"]
    text = CliRunner().invoke(cli, args).output
    assert "ADDKE1                    ML_KEM_768 (#" in text
    assert text.splitlines()[-1].startswith("summary: hybrid post-quantum with ML-KEM")


def test_no_answer() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))  # a port that holds still and never answers
        port = s.getsockname()[1]
        args = ["probe", "127.0.0.1", "--port", str(port), "--timeout", "0.05"]
        result = CliRunner().invoke(cli, [*args, "--retransmits", "1"])
    assert result.exit_code == 1
    assert "1 probes, 2 datagrams sent (1 retransmitted" in result.output
    assert "summary: no answer" in result.output


def test_help_warns_about_half_open_limits() -> None:
    text = CliRunner().invoke(cli, ["probe", "--help"]).output
    assert "half-open" in text and "block_threshold" in text and "cookie_threshold" in text
    assert "never IKE_AUTH" in text
