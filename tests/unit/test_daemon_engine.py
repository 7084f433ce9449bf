"""Two daemons with the real engine over loopback UDP (ephemeral ports, kernel 'none')."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

import msgspec
import pytest

from pqike.config import load_config
from pqike.daemon import Daemon, Request, request
from pqike.events import EventKind, IkeSaInfo

pytest.importorskip("pqike.engine")

PSK = """
[secrets.ike-1]
id-1 = "moon.example.org"
id-2 = "carol@example.org"
secret = "0sv+NkxY9LLZvwj4qCC2o/gGrWDF2d21jL"
"""

MOON = """
[connections.rw]
local_addrs = ["127.0.0.1"]
proposals = ["aes256-sha256-x25519-ke1_mlkem768"]

[connections.rw.local]
auth = "psk"
id = "moon.example.org"

[connections.rw.remote]
auth = "psk"
id = "carol@example.org"

[connections.rw.children.net]
local_ts = ["10.1.0.0/24"]
remote_ts = ["10.3.0.0/24"]
esp_proposals = ["aes256-sha256"]
""" + PSK

CAROL = """
[connections.home]
local_addrs = ["127.0.0.1"]
remote_addrs = ["127.0.0.1"]
remote_port = {port}
proposals = ["aes256-sha256-x25519-ke1_mlkem768"]

[connections.home.local]
auth = "psk"
id = "carol@example.org"

[connections.home.remote]
auth = "psk"
id = "moon.example.org"

[connections.home.children.net]
local_ts = ["10.3.0.0/24"]
remote_ts = ["10.1.0.0/24"]
esp_proposals = ["aes256-sha256"]
""" + PSK


@pytest.fixture
def log_level():
    root = logging.getLogger("pqike")
    old = root.level
    root.setLevel(1)  # what pqike.log.configure() does; lines at level 1 reach the stream
    yield
    root.setLevel(old)


def test_initiate_between_two_daemons_on_loopback(log_level):
    base = Path(tempfile.mkdtemp(prefix="pqk", dir="/tmp"))

    async def run():
        (base / "moon").mkdir()
        (base / "moon" / "pqike.toml").write_text(MOON)
        moon = Daemon(load_config(base / "moon"), socket_path=str(base / "m.sock"),
                      listen=["127.0.0.1"], ike_port=0, natt_port=0)
        await moon.start()
        try:
            (base / "carol").mkdir()
            (base / "carol" / "pqike.toml").write_text(CAROL.format(port=moon.udp.ike_port))
            carol = Daemon(load_config(base / "carol"), socket_path=str(base / "c.sock"),
                           listen=["127.0.0.1"], ike_port=0, natt_port=0)
            await carol.start()
            try:
                lines: list[str] = []
                result = await asyncio.to_thread(
                    request, carol.socket_path,
                    Request(cmd="initiate", child="net", timeout=20), lines.append)
                assert result.ok, (result.message, lines)
                kinds = [e.kind for e in result.events]
                assert EventKind.IKE_ESTABLISHED in kinds
                assert EventKind.CHILD_ESTABLISHED in kinds
                assert any("IKE_SA home[1] established" in line for line in lines)
                assert any(line.startswith("[NET] received packet") for line in lines)

                listed = await asyncio.to_thread(request, moon.socket_path,
                                                 Request(cmd="list-sas"))
                sas = msgspec.convert(listed.data, list[IkeSaInfo])
                assert [(s.name, s.state) for s in sas] == [("rw", "ESTABLISHED")]
                assert sas[0].remote == f"127.0.0.1[{carol.udp.ike_port}]"
                assert sas[0].children[0].name == "net"

                done = await asyncio.to_thread(request, carol.socket_path,
                                               Request(cmd="terminate", ike="home", timeout=20))
                assert done.ok, done.message
            finally:
                await carol.stop()
        finally:
            await moon.stop()

    try:
        asyncio.run(run())
    finally:
        shutil.rmtree(base, ignore_errors=True)
