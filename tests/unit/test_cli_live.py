"""The swanctl-like verbs against two real daemons on loopback: list-pools, counters,
terminate --force, and the streams (log, monitor-sa) a client ends by closing its end."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from pqike.cli import cli
from pqike.daemon import Daemon, Request, request
from pqike.daemon.control import EventLine, Reply
from tests.unit.test_daemon_engine import CAROL, MOON, log_level, two_daemons  # noqa: F401

MOON_POOL = (
    MOON.replace(
        'local_addrs = ["127.0.0.1"]\n',
        'local_addrs = ["127.0.0.1"]\npools = ["rw_pool"]\n',
        1,
    ).replace('remote_ts = ["10.3.0.0/24"]', 'remote_ts = ["dynamic"]')
    + '\n[pools.rw_pool]\naddrs = "10.3.0.0/28"\n'
)
CAROL_VIP = CAROL.replace(
    "remote_port = {port}\n", 'remote_port = {port}\nvips = ["0.0.0.0"]\n', 1
).replace('local_ts = ["10.3.0.0/24"]', 'local_ts = ["dynamic"]')
_decode = msgspec.json.Decoder(Reply)


@pytest.fixture
def base():  # type: ignore[no-untyped-def]
    path = Path(tempfile.mkdtemp(prefix="pqk", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


async def _up(carol: Daemon) -> None:
    result = await asyncio.to_thread(
        request, carol.socket_path, Request(cmd="initiate", child="net", timeout=20)
    )
    assert result.ok, result.message


def test_list_pools_counters_and_force(base: Path, log_level: None) -> None:  # noqa: F811
    async def run() -> None:
        async with two_daemons(base, MOON_POOL, CAROL_VIP) as (moon, carol):
            await _up(carol)
            code, out, _ = await asyncio.to_thread(
                _cli, "list-pools", "--leases", "--socket", moon.socket_path
            )
            assert code == 0, out
            assert out.splitlines() == [
                f"{'rw_pool':<20} {'10.3.0.0':<30} {'1 / 0 / 14':>16}",
                f"  {'10.3.0.1':<30} online   'carol@example.org'",
            ]
            code, out, _ = await asyncio.to_thread(
                _cli, "list-pools", "--json", "--socket", moon.socket_path
            )
            assert json.loads(out) == {
                "version": 1,
                "pools": {"rw_pool": {"base": "10.3.0.0", "size": 14, "online": 1, "offline": 0}},
            }

            code, out, _ = await asyncio.to_thread(
                _cli, "counters", "--json", "--socket", carol.socket_path
            )
            counted = json.loads(out)["counters"]["global"]
            assert {k: v for k, v in counted.items() if v} == {
                "ike-init-out-req": 1,
                "ike-init-in-resp": 1,
                "ike-intermediate-out-req": 1,  # ML-KEM-768 in IKE_INTERMEDIATE
                "ike-intermediate-in-resp": 1,
                "ike-auth-out-req": 1,
                "ike-auth-in-resp": 1,
            }
            code, out, _ = await asyncio.to_thread(
                _cli, "counters", "--reset", "--socket", moon.socket_path
            )
            assert code == 0 and "  ike-init-in-req       : 1\n" in out
            assert out.endswith("reset-counters completed\n")
            moon_counters = moon.engine.counters.values  # type: ignore[attr-defined]
            assert not any(moon_counters.values())

            code, _, err = await asyncio.to_thread(
                _cli, "terminate", "--child", "net", "--force", "--socket", carol.socket_path
            )
            assert code == 2 and "--force applies to IKE_SAs" in err
            code, out, err = await asyncio.to_thread(
                _cli, "terminate", "--ike", "home", "--force", "--socket", carol.socket_path
            )
            assert code == 0, err
            assert out.endswith("terminate completed successfully\n")
            assert carol.engine.list_sas() == []  # no answer awaited

    asyncio.run(run())


class _Stream:
    """A raw control client of a streaming command, read line by line."""

    def __init__(self, path: str, cmd: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(path)
        self.sock.sendall(msgspec.json.encode(Request(cmd=cmd)) + b"\n")
        self.file = self.sock.makefile("rb")

    def until(self, predicate):  # type: ignore[no-untyped-def]
        seen = []
        while True:
            reply = _decode.decode(self.file.readline())
            seen.append(reply)
            if predicate(reply):
                return seen

    def close(self) -> None:
        self.file.close()
        self.sock.close()


async def _eventually(predicate) -> None:  # type: ignore[no-untyped-def]
    for _ in range(200):  # the daemon notices the closed client on its next loop turn
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the daemon did not get there")


def test_log_and_monitor_sa_stream_until_the_client_goes(
    base: Path,
    log_level: None,  # noqa: F811
) -> None:
    async def run() -> None:
        async with two_daemons(base, MOON_POOL, CAROL_VIP) as (moon, carol):
            log = _Stream(moon.socket_path, "log")
            monitor = _Stream(moon.socket_path, "monitor-sa")
            await _eventually(lambda: moon.router.taps and moon._monitors)
            await _up(carol)

            def established(r):  # type: ignore[no-untyped-def]
                return getattr(r, "line", "").startswith("[IKE] IKE_SA rw[1] established")

            lines = await asyncio.to_thread(log.until, established)
            assert any(getattr(r, "line", "").startswith("[NET] received packet") for r in lines)

            def child_up(r):  # type: ignore[no-untyped-def]
                return isinstance(r, EventLine) and r.event.kind == "child-established"

            events = await asyncio.to_thread(monitor.until, child_up)
            assert [e.event.kind for e in events] == ["ike-established", "child-established"]
            (sa,) = events[-1].sas
            assert sa.state == "ESTABLISHED" and [c.name for c in sa.children] == ["net"]

            log.close()
            monitor.close()
            await _eventually(lambda: not moon.router.taps and not moon._monitors)

    asyncio.run(run())


def test_monitor_sa_output_names_vici_events() -> None:
    from pqike.cli import format_monitor, monitor_document
    from pqike.events import Event, EventKind

    down = EventLine(
        event=Event(
            kind=EventKind.CHILD_DELETED,
            ike="home",
            ike_id=1,
            child="net",
            child_id=2,
            message="deleted by peer",
        ),
    )
    assert format_monitor(down) == "child-updown event: net{2} of home[1] down (deleted by peer)\n"
    doc = monitor_document(down)
    assert doc == {
        "version": 1,
        "event": "child-updown",
        "up": False,
        "ike": "home",
        "ike-id": 1,
        "child": "net",
        "child-id": 2,
        "message": "deleted by peer",
        "ike-sas": {},
    }
    rekey = EventLine(event=Event(kind=EventKind.IKE_REKEYED, ike="home", ike_id=1))
    assert monitor_document(rekey)["event"] == "ike-rekey" and "up" not in monitor_document(rekey)
