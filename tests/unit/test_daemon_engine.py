"""Two daemons with the real engine over loopback UDP (ephemeral ports, kernel 'none')."""

from __future__ import annotations

import asyncio
import contextlib
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

MOON = (
    """
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
"""
    + PSK
)

CAROL = (
    """
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
"""
    + PSK
)


@pytest.fixture
def log_level():
    root = logging.getLogger("pqike")
    old = root.level
    root.setLevel(1)  # what pqike.log.configure() does; lines at level 1 reach the stream
    yield
    root.setLevel(old)


def _loopback_daemon(base: Path, name: str, socket: str) -> Daemon:
    """A daemon on 127.0.0.1 with ephemeral IKE ports, configured from base/name."""
    return Daemon(
        load_config(base / name),
        socket_path=str(base / socket),
        listen=["127.0.0.1"],
        ike_port=0,
        natt_port=0,
    )


@contextlib.asynccontextmanager
async def two_daemons(base: Path, moon_config: str, carol_config: str):
    """moon, then carol (whose config gets moon's ephemeral port), both on 127.0.0.1."""
    (base / "moon").mkdir(exist_ok=True)
    (base / "moon" / "pqike.toml").write_text(moon_config)
    moon = _loopback_daemon(base, "moon", "m.sock")
    await moon.start()
    try:
        (base / "carol").mkdir(exist_ok=True)
        (base / "carol" / "pqike.toml").write_text(carol_config.format(port=moon.udp.ike_port))
        carol = _loopback_daemon(base, "carol", "c.sock")
        await carol.start()
        try:
            yield moon, carol
        finally:
            await carol.stop()
    finally:
        await moon.stop()


def test_initiate_between_two_daemons_on_loopback(log_level):
    base = Path(tempfile.mkdtemp(prefix="pqk", dir="/tmp"))

    async def run():
        async with two_daemons(base, MOON, CAROL) as (moon, carol):
            lines: list[str] = []
            result = await asyncio.to_thread(
                request,
                carol.socket_path,
                Request(cmd="initiate", child="net", timeout=20),
                lines.append,
            )
            assert result.ok, (result.message, lines)
            kinds = [e.kind for e in result.events]
            assert EventKind.IKE_ESTABLISHED in kinds
            assert EventKind.CHILD_ESTABLISHED in kinds
            assert any("IKE_SA home[1] established" in line for line in lines)
            assert any(line.startswith("[NET] received packet") for line in lines)

            listed = await asyncio.to_thread(request, moon.socket_path, Request(cmd="list-sas"))
            sas = msgspec.convert(listed.data, list[IkeSaInfo])
            assert [(s.name, s.state) for s in sas] == [("rw", "ESTABLISHED")]
            assert sas[0].remote == f"127.0.0.1[{carol.udp.ike_port}]"
            assert sas[0].children[0].name == "net"

            done = await asyncio.to_thread(
                request, carol.socket_path, Request(cmd="terminate", ike="home", timeout=20)
            )
            assert done.ok, done.message

    try:
        asyncio.run(run())
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _with_certs(config: str, me: str, my_id: str, peer_id: str) -> str:
    """One of the PSK configs above with create_peer_pki's files instead of the PSK."""
    return (
        config.replace(PSK, "")
        .replace(
            f'auth = "psk"\nid = "{my_id}"',
            f'auth = "pubkey"\nid = "{my_id}"\ncerts = ["x509/{me}Cert.pem"]\n'
            f'key = "private/{me}Key.pem"',
        )
        .replace(
            f'auth = "psk"\nid = "{peer_id}"',
            f'auth = "pubkey"\nid = "{peer_id}"\ncacerts = ["x509ca/caCert.pem"]',
        )
    )


def test_failed_reload_keeps_the_running_config_and_its_credentials(log_level):
    from pqike.pki import create_peer_pki

    base = Path(tempfile.mkdtemp(prefix="pqk", dir="/tmp"))
    peers = {"moon": "moon.example.org", "carol": "carol@example.org"}
    create_peer_pki({name: (base / name, ident) for name, ident in peers.items()}, kind="ed25519")

    async def run():
        moon_config = _with_certs(MOON, "moon", "moon.example.org", "carol@example.org")
        carol_config = _with_certs(CAROL, "carol", "carol@example.org", "moon.example.org")
        async with two_daemons(base, moon_config, carol_config) as (_, carol):
            running = carol.config
            assert carol.engine.config is running
            # the operator botches the PKI on disk and reloads
            carol_dir = base / "carol"
            (carol_dir / "x509" / "carolCert.pem").write_bytes(b"garbage")
            (carol_dir / "x509ca" / "caCert.pem").unlink()
            result = await asyncio.to_thread(request, carol.socket_path, Request(cmd="reload"))
            assert not result.ok
            main = carol_dir / "pqike.toml"
            assert result.message.splitlines() == [
                f"{main}: connections.home.local.certs[0]: x509/carolCert.pem: not a PEM "
                "or DER X.509 certificate",
                f"{main}: connections.home.remote.cacerts[0]: x509ca/caCert.pem: cannot "
                "read: No such file or directory",
            ]
            assert carol.config is running and carol.engine.config is running
            # a new IKE_SA authenticates with what was loaded at start
            lines: list[str] = []
            result = await asyncio.to_thread(
                request,
                carol.socket_path,
                Request(cmd="initiate", child="net", timeout=20),
                lines.append,
            )
            assert result.ok, (result.message, lines)
            assert any(
                "authentication of 'carol@example.org' (myself) with" in line for line in lines
            )

    try:
        asyncio.run(run())
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_trap_acquire_install_uninstall_list_pols_through_the_daemon(log_level):
    """start_action = trap: the daemon installs the trap at start; a packet the data plane
    catches in it (MemoryKernel.send plays the kernel) starts the CHILD_SA over UDP; the
    control socket's install/uninstall/list-pols act like swanctl's; nothing stays."""
    base = Path(tempfile.mkdtemp(prefix="pqk", dir="/tmp"))
    trapped = CAROL.replace(
        'esp_proposals = ["aes256-sha256"]\n',
        'esp_proposals = ["aes256-sha256"]\nstart_action = "trap"\n',
    )

    async def established(daemon) -> bool:
        for _ in range(200):
            if any(c.state == "INSTALLED" for s in daemon._list_sas() for c in s.children):
                return True
            await asyncio.sleep(0.05)
        return False

    async def run():
        async with two_daemons(base, MOON, trapped) as (_moon, carol):
            pols = await asyncio.to_thread(request, carol.socket_path, Request(cmd="list-pols"))
            assert [(p["name"], p["local_ts"], p["remote_ts"]) for p in pols.data] == [
                ("net", ["10.3.0.0/24"], ["10.1.0.0/24"])
            ]
            assert carol._list_sas() == []
            assert carol.kernel.send("10.3.0.1", "10.1.0.5") == "acquire"
            assert carol.kernel.send("10.3.0.1", "10.1.0.5") == "acquire"  # still pending
            assert await established(carol)
            assert len(carol._list_sas()) == 1
            assert carol.kernel.send("10.3.0.1", "10.1.0.5") == "protected"
            again = await asyncio.to_thread(
                request, carol.socket_path, Request(cmd="install", child="net")
            )
            assert not again.ok and "already routed" in again.message
            gone = await asyncio.to_thread(
                request, carol.socket_path, Request(cmd="uninstall", child="net")
            )
            assert gone.ok and gone.message == "uninstall policy 'net' completed successfully"
            assert carol.kernel.traps() == []
            back = await asyncio.to_thread(
                request, carol.socket_path, Request(cmd="install", child="net")
            )
            assert back.ok, back.message
            assert len(carol.kernel.traps()) == 1
        assert carol.kernel.policies == [] and carol.kernel.sas == {}

    try:
        asyncio.run(run())
    finally:
        shutil.rmtree(base, ignore_errors=True)
