"""The daemon side of the lifecycle options: ``pqike rekey --ike NAME --reauth`` through the
control socket (a new IKE_SA with the CHILD_SAs, the old one deleted, the command waiting for
both), and start_action = start at daemon start and at reload."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import msgspec

from pqike.daemon.control import Request, request
from pqike.events import EventKind, IkeSaInfo
from tests.unit.test_daemon_engine import CAROL, MOON, log_level, two_daemons  # noqa: F401


def test_rekey_reauth_between_two_daemons(log_level) -> None:  # noqa: F811
    base = Path(tempfile.mkdtemp(prefix="pqk", dir="/tmp"))

    async def run() -> None:
        async with two_daemons(base, MOON, CAROL) as (moon, carol):
            up = await asyncio.to_thread(
                request, carol.socket_path, Request(cmd="initiate", child="net", timeout=20)
            )
            assert up.ok, up.message
            lines: list[str] = []
            done = await asyncio.to_thread(
                request,
                carol.socket_path,
                Request(cmd="rekey", ike="home", reauth=True, timeout=20),
                lines.append,
            )
            assert done.ok, (done.message, lines)
            kinds = [(e.kind, e.ike_id) for e in done.events]
            assert (EventKind.IKE_DELETED, 1) in kinds and (EventKind.IKE_ESTABLISHED, 2) in kinds
            assert any("reauthenticating IKE_SA home[1]" in line for line in lines)
            for d, name in ((carol, "home"), (moon, "rw")):
                listed = await asyncio.to_thread(request, d.socket_path, Request(cmd="list-sas"))
                sas = msgspec.convert(listed.data, list[IkeSaInfo])
                assert [(s.name, s.state) for s in sas] == [(name, "ESTABLISHED")]
                assert [c.name for c in sas[0].children] == ["net"]
            bad = await asyncio.to_thread(
                request, carol.socket_path, Request(cmd="rekey", child="net", reauth=True)
            )
            assert not bad.ok and "--ike" in bad.message

    try:
        asyncio.run(run())
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_cli_rekey_reauth_needs_ike() -> None:
    from click.testing import CliRunner

    from pqike.cli import cli

    result = CliRunner().invoke(cli, ["rekey", "--child", "net", "--reauth"])
    assert result.exit_code == 2 and "rekey --reauth needs --ike" in result.output


def _wait_established(sock: str) -> list[IkeSaInfo]:
    import time

    deadline = time.monotonic() + 10
    while True:
        listed = request(sock, Request(cmd="list-sas"))
        sas = msgspec.convert(listed.data, list[IkeSaInfo])
        if any(s.state == "ESTABLISHED" for s in sas) or time.monotonic() > deadline:
            return sas
        time.sleep(0.05)


def test_start_action_start_at_daemon_start_and_at_reload(log_level) -> None:  # noqa: F811
    """charon initiates start_action = start children when it loads a connection: at start,
    and at reload for a new or changed connection (swanctl --load-conns)."""
    base = Path(tempfile.mkdtemp(prefix="pqk", dir="/tmp"))
    started = CAROL.replace(
        'esp_proposals = ["aes256-sha256"]',
        'esp_proposals = ["aes256-sha256"]\nstart_action = "start"',
    )

    async def run() -> None:
        async with two_daemons(base, MOON, started) as (_moon, carol):
            sas = await asyncio.to_thread(_wait_established, carol.socket_path)
            assert [(s.name, s.state) for s in sas] == [("home", "ESTABLISHED")]
            done = await asyncio.to_thread(
                request, carol.socket_path, Request(cmd="terminate", ike="home", timeout=20)
            )
            assert done.ok
            # an unchanged connection is not started again by a reload
            assert (await asyncio.to_thread(request, carol.socket_path, Request(cmd="reload"))).ok
            listed = await asyncio.to_thread(request, carol.socket_path, Request(cmd="list-sas"))
            assert listed.data == []
            path = base / "carol" / "pqike.toml"
            path.write_text(path.read_text().replace('"10.1.0.0/24"', '"10.1.0.0/16"'))
            assert (await asyncio.to_thread(request, carol.socket_path, Request(cmd="reload"))).ok
            sas = await asyncio.to_thread(_wait_established, carol.socket_path)
            assert [(s.name, s.state) for s in sas] == [("home", "ESTABLISHED")]

    try:
        asyncio.run(run())
    finally:
        shutil.rmtree(base, ignore_errors=True)
