"""Daemon + control socket with a fake engine: streaming, waiting for events, timers,
reload, error handling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path

import msgspec
import pytest

from pqike.config import Config, load_config
from pqike.daemon import CommandError, Daemon, Request, request
from pqike.daemon.logtap import LogTap, sa_id
from pqike.events import (
    ChildSaInfo,
    Datagram,
    Endpoint,
    Event,
    EventKind,
    IkeSaInfo,
)
from pqike.log import Subsystem, get_logger

CONFIG = """
[connections.home]
remote_addrs = ["192.0.2.2"]

[connections.home.local]
auth = "psk"
id = "carol@example.org"

[connections.home.remote]
auth = "psk"
id = "moon.example.org"

[connections.home.children.net]
remote_ts = ["10.1.0.0/16"]

[secrets.ike-home]
secret = "0sv+NkxY9LLZvwj4qCC2o/gGrWDF2d21jL"
id = "moon.example.org"
"""


class FakeEngine:
    """Establishes SAs 50 ms after initiate (via tick), logs like the real one."""

    instances: list[FakeEngine] = []

    def __init__(self, config, kernel, events):
        self.config = config
        self.kernel = kernel
        self.emit = events
        self.out: list[Datagram] = []
        self.pending: dict[int, tuple[str | None, float]] = {}
        self.sas: dict[int, IkeSaInfo] = {}
        self.loaded: list[Config] = []
        self.received: list[Datagram] = []
        self.ticks: list[float] = []
        self.closed = False
        self.next_id = 0
        self.other_due: float | None = None
        self.peer = Endpoint("127.0.0.1", 9)
        self.local = Endpoint("127.0.0.1", 500)
        FakeEngine.instances.append(self)

    def load_config(self, config):
        self.loaded.append(config)
        self.config = config

    def initiate(self, child, ike, now):
        if "nope" in (child, ike):
            raise CommandError("no CHILD_SA config named 'nope' found")
        self.next_id += 1
        uid = self.next_id
        get_logger(Subsystem.IKE, f"home|{uid}")(
            "initiating IKE_SA home[%d] to %s", uid, "192.0.2.2"
        )
        get_logger(Subsystem.IKE, "other|99")("unrelated line of another IKE_SA")
        self.out.append(Datagram(data=b"IKE_SA_INIT", src=self.local, dst=self.peer))
        self.pending[uid] = (child, now + 0.1)
        self.other_due = now + 0.02
        return uid

    def next_deadline(self):
        times = [t for _, t in self.pending.values()]
        if self.other_due is not None:
            times.append(self.other_due)
        return min(times, default=None)

    def tick(self, now):
        self.ticks.append(now)
        if self.other_due is not None and self.other_due <= now:
            # a call that concerns only another SA: its SA-less lines must not be streamed
            self.other_due = None
            get_logger(Subsystem.NET)("received packet: from 198.51.100.7[500] (other SA)")
            get_logger(Subsystem.IKE, "other|99")("another line of IKE_SA other[99]")
            return
        for uid, (child, due) in list(self.pending.items()):
            if due > now:
                continue
            del self.pending[uid]
            if child == "never":
                continue
            get_logger(Subsystem.NET)("received packet: from 192.0.2.2[500] (336 bytes)")
            log = get_logger(Subsystem.IKE, f"home|{uid}")
            log("IKE_SA home[%d] established", uid)
            self.emit(Event(kind=EventKind.IKE_ESTABLISHED, ike="home", ike_id=uid))
            if child == "bad":
                self.emit(
                    Event(
                        kind=EventKind.CHILD_FAILED,
                        ike="home",
                        ike_id=uid,
                        child="bad",
                        message="no acceptable ESP proposal",
                    )
                )
                continue
            self.emit(
                Event(
                    kind=EventKind.CHILD_ESTABLISHED,
                    ike="home",
                    ike_id=uid,
                    child=child,
                    child_id=uid,
                )
            )
            self.sas[uid] = _sa_info(uid, child or "net")

    def terminate(self, ike, child, ike_id, now):
        for uid in [u for u, sa in self.sas.items() if ike_id in (None, u)]:
            del self.sas[uid]
            get_logger(Subsystem.IKE, f"home|{uid}")("deleting IKE_SA home[%d]", uid)
            self.emit(Event(kind=EventKind.IKE_DELETED, ike="home", ike_id=uid))

    def rekey(self, ike, child, now):
        raise RuntimeError("boom")

    def receive(self, datagram, now):
        self.received.append(datagram)
        self.out.append(Datagram(data=b"response", src=datagram.dst, dst=datagram.src))

    def pop_outgoing(self):
        out, self.out = self.out, []
        return out

    def list_sas(self, now=0.0):
        return list(self.sas.values())

    def close(self, now):
        self.closed = True


def _sa_info(uid: int, child: str) -> IkeSaInfo:
    return IkeSaInfo(
        name="home",
        unique_id=uid,
        state="ESTABLISHED",
        version=2,
        initiator=True,
        spi_i="cb469ea1a7223567",
        spi_r="6010c9fd60119c5b",
        local="192.0.2.1[4500]",
        remote="192.0.2.2[4500]",
        local_id="carol@example.org",
        remote_id="moon.example.org",
        proposal="IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519",
        children=[
            ChildSaInfo(
                name=child,
                unique_id=uid,
                reqid=1,
                state="INSTALLED",
                mode="TUNNEL",
                protocol="ESP",
                encap=True,
                spi_in="c1a6ba36",
                spi_out="cc8e4ab2",
                proposal="ESP:AES_CBC_256/HMAC_SHA2_256_128/NO_EXT_SEQ",
                local_ts=["10.3.0.1/32"],
                remote_ts=["10.1.0.0/24"],
            )
        ],
    )


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=1)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def logs():
    root = logging.getLogger("pqike")
    old = root.level
    root.setLevel(1)
    handler = ListHandler()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old)


@pytest.fixture
def workdir():
    # short: AF_UNIX paths are limited to 108 bytes
    path = tempfile.mkdtemp(prefix="pqk", dir="/tmp")
    (Path(path) / "pqike.toml").write_text(CONFIG)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def fake_daemon(workdir: Path) -> Daemon:
    """A daemon with the fake engine on ephemeral loopback ports, the config in workdir."""
    config = load_config(workdir)
    FakeEngine.instances.clear()
    return Daemon(
        config,
        config_path=str(workdir),
        engine_factory=FakeEngine,
        socket_path=str(workdir / "ctl.sock"),
        listen=["127.0.0.1"],
        ike_port=0,
        natt_port=0,
    )


@contextlib.asynccontextmanager
async def running(workdir: Path):
    d = fake_daemon(workdir)
    await d.start()
    try:
        yield d
    finally:
        await d.stop()


async def call(d: Daemon, req: Request, lines: list[str] | None = None):
    return await asyncio.to_thread(
        request, d.socket_path, req, None if lines is None else lines.append, timeout=10
    )


def test_initiate_streams_the_sa_log_and_waits_for_establishment(workdir, logs):
    async def run():
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(2)
        try:
            async with running(workdir) as d:
                engine = FakeEngine.instances[0]
                engine.peer = Endpoint("127.0.0.1", peer.getsockname()[1])
                engine.local = Endpoint("127.0.0.1", d.udp.ike_port)
                lines: list[str] = []
                result = await call(d, Request(cmd="initiate", child="net"), lines)
                assert result.ok, result.message
                assert result.message == "initiate completed successfully"
                assert [e.kind for e in result.events] == [
                    EventKind.IKE_ESTABLISHED,
                    EventKind.CHILD_ESTABLISHED,
                ]
                assert lines == [
                    "[CFG] control: initiate CHILD_SA 'net'",
                    "[IKE] initiating IKE_SA home[1] to 192.0.2.2",
                    "[NET] received packet: from 192.0.2.2[500] (336 bytes)",
                    "[IKE] IKE_SA home[1] established",
                ]
                assert engine.ticks, "the timer never drove tick()"
                # the datagram queued by initiate went out through the IKE socket
                data, addr = await asyncio.to_thread(peer.recvfrom, 2048)
                assert data == b"IKE_SA_INIT" and addr == ("127.0.0.1", d.udp.ike_port)

                sas = await call(d, Request(cmd="list-sas"))
                infos = msgspec.convert(sas.data, list[IkeSaInfo])
                assert [s.unique_id for s in infos] == [1]
                assert infos[0].children[0].spi_in == "c1a6ba36"

                term = await call(d, Request(cmd="terminate", ike="home"), lines)
                assert term.ok and term.message == "terminate completed successfully"
                assert lines[-1] == "[IKE] deleting IKE_SA home[1]"
        finally:
            peer.close()

    asyncio.run(run())


def test_initiate_failure_timeout_and_unknown_connection(workdir, logs):
    async def run():
        async with running(workdir) as d:
            bad = await call(d, Request(cmd="initiate", child="bad"))
            assert not bad.ok
            assert bad.message == "initiate failed: no acceptable ESP proposal"
            assert EventKind.CHILD_FAILED in [e.kind for e in bad.events]

            slow = await call(d, Request(cmd="initiate", child="never", timeout=0.3))
            assert not slow.ok
            assert slow.message.startswith("initiate failed: timeout after 0.3s")

            lines: list[str] = []
            unknown = await call(d, Request(cmd="initiate", child="nope"), lines)
            assert not unknown.ok
            assert unknown.message == "initiate failed: no CHILD_SA config named 'nope' found"
            assert lines == ["[CFG] control: initiate CHILD_SA 'nope'"]

            none = await call(d, Request(cmd="initiate"))
            assert not none.ok and "--child" in none.message

    asyncio.run(run())


def test_concurrent_clients_while_initiate_waits(workdir, logs):
    async def run():
        async with running(workdir) as d:
            waiting = asyncio.ensure_future(
                call(d, Request(cmd="initiate", child="never", timeout=1.0))
            )
            await asyncio.sleep(0.1)
            stats = await call(d, Request(cmd="stats"))
            assert stats.ok and stats.data["control_clients"] == 2
            assert stats.data["listening"] == d.udp.listening
            assert not (await waiting).ok

    asyncio.run(run())


def test_internal_errors_are_one_line_for_the_client_traceback_in_the_log(workdir, logs):
    async def run():
        async with running(workdir) as d:
            result = await call(d, Request(cmd="rekey", ike="home"))
            assert not result.ok
            assert result.message == (
                "rekey failed: internal error (RuntimeError: boom), see the daemon log"
            )
            assert "\n" not in result.message
            assert any("Traceback" in line for line in logs.lines)
            assert any("RuntimeError: boom" in line for line in logs.lines)

    asyncio.run(run())


def test_bad_requests_and_socket_permissions(workdir, logs):
    async def run():
        async with running(workdir) as d:
            mode = stat.S_IMODE(os.stat(d.socket_path).st_mode)
            assert mode == 0o600
            reader, writer = await asyncio.open_unix_connection(d.socket_path)
            writer.write(b"this is not json\n")
            writer.write(b'{"cmd": "explode"}\n')
            writer.write(b'{"cmd": "list-sas"}\n')
            await writer.drain()
            replies = [msgspec.json.decode(await reader.readline()) for _ in range(3)]
            writer.close()
            assert replies[0]["ok"] is False and replies[0]["message"].startswith("bad request")
            assert replies[1]["message"].startswith("unknown command 'explode'")
            assert replies[2] == {
                "type": "result",
                "ok": True,
                "message": "",
                "events": [],
                "data": [],
            }

    asyncio.run(run())


def test_reload_with_bad_config_keeps_the_running_one(workdir, logs):
    async def run():
        async with running(workdir) as d:
            engine = FakeEngine.instances[0]
            # ephemeral ports: the engine was told the ports the sockets really have
            assert engine.config.daemon.port == d.udp.ike_port != 500
            assert engine.config.daemon.port_nat_t == d.udp.natt_port
            before = list(engine.loaded)
            (workdir / "pqike.toml").write_text(CONFIG + "\n[connections.home.children.net]\n")
            result = await call(d, Request(cmd="reload"))
            assert not result.ok
            assert str(workdir / "pqike.toml") in result.message
            assert engine.loaded == before
            conns = await call(d, Request(cmd="list-conns"))
            assert list(conns.data["connections"]) == ["home"]

            office = CONFIG.replace("[connections.home", "[connections.office")
            (workdir / "pqike.toml").write_text(office.replace("ike-home", "ike-office"))
            result = await call(d, Request(cmd="load-all"))
            assert result.ok, result.message
            assert result.message.startswith("loaded 1 connection (office), unloaded home")
            assert len(engine.loaded) == len(before) + 1 and d.config is engine.loaded[-1]
            assert d.config.daemon.port == d.udp.ike_port
            conns = await call(d, Request(cmd="list-conns"))
            assert "office: IKEv2" in conns.data["text"]

    asyncio.run(run())


def test_reload_with_unusable_files_changes_nothing_and_logs_each_reason(workdir, logs):
    async def run():
        async with running(workdir) as d:
            engine = FakeEngine.instances[0]
            before, loaded = d.config, list(engine.loaded)
            (workdir / "ca.pem").write_bytes(b"\x00" * 64)
            (workdir / "pqike.toml").write_text(
                CONFIG.replace(
                    'auth = "psk"\nid = "carol@example.org"',
                    'auth = "pubkey"\nid = "carol@example.org"\ncerts = ["carol.pem"]\n'
                    'key = "carol.key"\ncacerts = ["ca.pem"]',
                    1,
                )
            )
            result = await call(d, Request(cmd="reload"))
            assert not result.ok
            problems = [
                "connections.home.local.certs[0]: carol.pem: cannot read: No such file or "
                "directory",
                "connections.home.local.cacerts[0]: ca.pem: not a PEM or DER X.509 certificate",
                "connections.home.local.key: carol.key: cannot read: No such file or directory",
            ]
            main = workdir / "pqike.toml"
            assert result.message.splitlines() == [f"{main}: {p}" for p in problems]
            assert d.config is before and engine.config is before and engine.loaded == loaded
            start = logs.lines.index(
                f"reloading {workdir} failed, keeping the running configuration"
            )
            assert logs.lines[start + 1 : start + 4] == [f"  {main}: {p}" for p in problems]

    asyncio.run(run())


def test_received_datagrams_reach_the_engine_and_answers_go_back(workdir, logs):
    async def run():
        async with running(workdir) as d:
            engine = FakeEngine.instances[0]
            peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            peer.bind(("127.0.0.1", 0))
            peer.settimeout(2)
            try:
                peer.sendto(b"\x00\x00\x00\x00IKE_AUTH", ("127.0.0.1", d.udp.natt_port))
                data, _ = await asyncio.to_thread(peer.recvfrom, 2048)
                assert data == b"\x00\x00\x00\x00response"  # NAT-T: marker both ways
                assert engine.received[0] == Datagram(
                    data=b"IKE_AUTH",
                    src=Endpoint("127.0.0.1", peer.getsockname()[1]),
                    dst=Endpoint("127.0.0.1", d.udp.natt_port),
                )
            finally:
                peer.close()

    asyncio.run(run())


def test_stop_closes_engine_and_removes_socket(workdir, logs):
    async def run():
        async with running(workdir) as d:
            path = d.socket_path
            engine = FakeEngine.instances[0]
        assert engine.closed
        assert not os.path.exists(path)

    asyncio.run(run())


def test_second_daemon_on_the_same_socket_is_refused(workdir, logs):
    async def run():
        async with running(workdir) as d:
            other = Daemon(
                d.config,
                engine_factory=FakeEngine,
                socket_path=d.socket_path,
                listen=["127.0.0.1"],
                ike_port=0,
                natt_port=0,
            )
            with pytest.raises(OSError, match="another daemon"):
                await other.start()
            assert other.udp.listening == []
            ok = await call(d, Request(cmd="list-sas"))  # the first one is unharmed
            assert ok.ok

    asyncio.run(run())


def test_log_tap_attribution():
    out: list[str] = []
    tap = LogTap(out.append)

    def rec(msg, sa=""):
        r = logging.LogRecord("pqike.NET", 20, __file__, 1, msg, None, None)
        r.sa = sa
        return r

    tap.add(rec("before the id is known"))
    tap.end_call()
    assert out == []
    tap.resolve({1})
    assert out == []  # that call logged nothing for IKE_SA #1
    tap.add(rec("sa-less, same call"))
    tap.add(rec("ours", "home|1"))
    tap.add(rec("theirs", "home|2"))
    tap.end_call()
    tap.add(rec("sa-less, other call"))
    tap.add(rec("theirs again", "home|2"))
    tap.end_call()
    assert out == ["[NET] sa-less, same call", "[NET] ours"]
    assert sa_id("home|12") == 12 and sa_id("") is None and sa_id("x|y") is None
