"""daemon.workers: what cannot be shared is refused at load; the supervisor starts the
workers in one reuseport group (steered by SPI, a new IKE_SA_INIT by the peer's address),
starts each IKE_SA we initiate in the worker owning the peer's address, fans requests out,
and stops all of them when one dies. Loopback, ephemeral ports, no root."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import signal
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from pqike.config import ConfigError, load_config
from pqike.config.toml_writer import dumps
from pqike.daemon.control import Request, Result, request
from pqike.daemon.workers import Supervisor, merged_pools, resolve_workers, worker_socket
from pqike.partition import Partition, address_owner
from tests.exchange.peers import make_pair, psk_config
from tests.unit.test_options_rule import BASE as RULE_BASE

BASE: dict = copy.deepcopy(RULE_BASE)
BASE["daemon"] = {"kernel": "none", "workers": 2}

SHARED = [
    ("daemon.kernel", lambda t: t["daemon"].update(kernel="userspace")),
    ("daemon.kernel", lambda t: t["daemon"].pop("kernel")),  # auto
    ("daemon.save_keys.ike", lambda t: t["daemon"].update(save_keys={"ike": True})),
    ("daemon.save_keys.esp", lambda t: t["daemon"].update(save_keys={"esp": True})),
    ("connections.home.ppk_id", lambda t: _ppk(t)),
    (
        "connections.home.children.net.start_action",
        lambda t: t["connections"]["home"]["children"]["net"].update(start_action="trap"),
    ),
    (
        "connections.home.children.net.dpd_action",
        lambda t: t["connections"]["home"]["children"]["net"].update(dpd_action="trap"),
    ),
]


def _pool(tree: dict) -> None:
    tree["connections"]["home"]["pools"] = ["p"]
    tree["pools"] = {"p": {"addrs": "10.3.0.0/24"}}


def _ppk(tree: dict) -> None:
    tree["connections"]["home"]["ppk_id"] = "ppk@example.org"
    tree["secrets"]["ppk-1"] = {"id": "ppk@example.org", "secret": "0x" + "ab" * 32}


def _write(tmp_path: Path, tree: dict) -> Path:
    (tmp_path / "pqike.toml").write_text(dumps(tree))
    return tmp_path


@pytest.mark.parametrize(("keypath", "change"), SHARED)
def test_what_workers_cannot_share_is_refused(
    tmp_path: Path, keypath: str, change: Callable[[dict], None]
) -> None:
    tree = copy.deepcopy(BASE)
    change(tree)
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, tree), require_files=False)
    assert e.value.keypath == keypath
    assert "not supported with daemon.workers = 2" in e.value.message
    assert str(tmp_path / "pqike.toml") in str(e.value)
    tree["daemon"]["workers"] = 1  # one process: all of it is fine
    load_config(_write(tmp_path, tree), require_files=False)


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t["daemon"].update(kernel="xfrm"),
        lambda t: t["connections"]["home"].update(unique="keep"),
        lambda t: t["connections"]["home"].update(unique="replace"),
        _pool,
    ],
    ids=["kernel-xfrm", "unique-keep", "unique-replace", "pools"],
)
def test_what_one_peer_address_keeps_in_one_worker_is_accepted(
    tmp_path: Path, change: Callable[[dict], None]
) -> None:
    tree = copy.deepcopy(BASE)
    change(tree)
    config = load_config(_write(tmp_path, tree), require_files=False)
    assert config.daemon.workers == 2


def test_workers_zero_means_one_per_cpu(tmp_path: Path) -> None:
    tree = copy.deepcopy(BASE)
    tree["daemon"]["workers"] = 0
    config = load_config(_write(tmp_path, tree), require_files=False)
    assert resolve_workers(config.daemon.workers) == os.cpu_count()
    assert resolve_workers(load_config(_write(tmp_path, BASE)).daemon.workers) == 2
    del tree["daemon"]["workers"]
    assert load_config(_write(tmp_path, tree), require_files=False).daemon.workers == 1


# --- the supervisor ------------------------------------------------------------------------


def _supervised(
    tmp_path: Path, body: Callable[[Supervisor], Awaitable[None]], tree: dict | None = None
) -> BaseException | None:
    """Run a 2-worker supervisor on 127.0.0.1 around ``body``; what ``run`` raised."""
    tree = copy.deepcopy(tree or BASE)
    tree["daemon"]["control_socket"] = str(tmp_path / "pqike.sock")
    _write(tmp_path, tree)
    config = load_config(tmp_path, require_files=False)
    sup = Supervisor(
        config,
        config_path=str(tmp_path),
        count=2,
        kernel="none",
        listen=("127.0.0.1",),
        ike_port=0,
        natt_port=0,
    )

    async def main() -> BaseException | None:
        ready = asyncio.Event()
        run = asyncio.ensure_future(sup.run(signals=False, ready=ready.set))
        await asyncio.wait_for(asyncio.wait([run, asyncio.ensure_future(ready.wait())],
                                             return_when=asyncio.FIRST_COMPLETED), 60)  # fmt: skip
        if not run.done():
            try:
                await body(sup)
            finally:
                sup.request_stop()
        try:
            await asyncio.wait_for(run, 60)
        except Exception as e:
            return e
        return None

    return asyncio.run(main())


async def _ask(path: str, req: Request) -> Result:
    return await asyncio.to_thread(request, path, req, timeout=30)


def _ike_port(stats: dict) -> int:
    return int(stats["listening"][0].split("[")[1].rstrip("]"))


def _ike_sa_init(first: int) -> bytes:
    spi_i = bytes([first]) + os.urandom(7)
    return spi_i + bytes(8) + struct.pack("!BBBBII", 33, 0x20, 34, 0x08, 0, 28)


def _peer(index: int, k: int = 0) -> str:
    """A loopback peer address whose new IKE_SA_INITs go to worker ``index`` of 2."""
    host = f"127.0.0.{2 + 2 * k + index}"
    assert address_owner(host, 2) == index
    return host


def test_workers_share_the_port_and_each_gets_its_peers(tmp_path: Path) -> None:
    async def body(sup: Supervisor) -> None:
        stats = (await _ask(sup.socket_path, Request(cmd="stats"))).data
        assert [w["index"] for w in stats["workers"]] == [0, 1]
        port = _ike_port(stats)
        for k in range(5):  # each peer address with SPIs of both workers' first octets
            for index in (0, 1):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                    client.bind((_peer(index, k), 0))
                    client.sendto(_ike_sa_init(1 - index), ("127.0.0.1", port))
        for index in (0, 1):
            path = worker_socket(sup.socket_path, index)
            for _ in range(100):  # the worker reads them asynchronously
                got = (await _ask(path, Request(cmd="stats"))).data["packets"]["received"]
                if got >= 5:
                    break
                await asyncio.sleep(0.05)
            assert got == 5, f"worker {index} received {got} of its 5"
        total = (await _ask(sup.socket_path, Request(cmd="stats"))).data
        assert total["packets"]["received"] == 10 and total["pid"] == os.getpid()

    assert _supervised(tmp_path, body) is None


def test_reload_reaches_every_worker_and_unmatched_terminate_is_answered_once(
    tmp_path: Path,
) -> None:
    async def body(sup: Supervisor) -> None:
        tree = copy.deepcopy(BASE)
        tree["daemon"]["control_socket"] = sup.socket_path
        tree["connections"]["other"] = copy.deepcopy(tree["connections"]["home"])
        _write(tmp_path, tree)
        result = await _ask(sup.socket_path, Request(cmd="reload"))
        assert result.ok, result.message
        for index in (0, 1):
            conns = await _ask(worker_socket(sup.socket_path, index), Request(cmd="list-conns"))
            assert set(conns.data["connections"]) == {"home", "other"}
        result = await _ask(sup.socket_path, Request(cmd="terminate", ike="home"))
        # no worker holds one: worker 0 answers as a single daemon does
        assert (result.ok, result.message) == (False, "terminate failed: no matching IKE_SA")
        assert (await _ask(sup.socket_path, Request(cmd="list-sas"))).data == []

    assert _supervised(tmp_path, body) is None


def test_a_dead_worker_stops_them_all(tmp_path: Path) -> None:
    pids: list[int] = []

    async def body(sup: Supervisor) -> None:
        pids.extend(w.proc.pid for w in sup.workers)
        os.kill(pids[1], signal.SIGKILL)
        for _ in range(200):
            if all(w.proc.returncode is not None for w in sup.workers):
                return
            await asyncio.sleep(0.05)

    raised = _supervised(tmp_path, body)
    assert isinstance(raised, OSError) and "a worker process exited" in str(raised)
    time.sleep(0.1)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not Path(tmp_path / "pqike.sock").exists()


def test_kernel_override_is_refused_with_workers(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pqike.cli import cli

    tree = copy.deepcopy(BASE)
    tree["daemon"]["control_socket"] = str(tmp_path / "pqike.sock")
    _write(tmp_path, tree)
    argv = ["daemon", "--config", str(tmp_path), "-F", "--kernel", "userspace"]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2
    assert "--kernel userspace is not supported with 2 workers" in result.output
    assert not (tmp_path / "pqike.sock").exists()


def test_log_streams_the_lines_of_every_worker(tmp_path: Path) -> None:
    async def body(sup: Supervisor) -> None:
        reader, writer = await asyncio.open_unix_connection(sup.socket_path)
        writer.write(b'{"cmd": "log"}\n')
        await writer.drain()
        port = _ike_port((await _ask(sup.socket_path, Request(cmd="stats"))).data)
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        try:
            # client i sends from an address steered to worker i, until a line of each
            # arrives (the supervisor subscribes to the workers' logs once the request is in)
            for index, c in enumerate(clients):
                c.bind((_peer(index), 0))
            sources = [f"from {_peer(i)}[{c.getsockname()[1]}]" for i, c in enumerate(clients)]
            seen: set[str] = set()
            for _ in range(100):
                for index, c in enumerate(clients):
                    if sources[index] not in seen:
                        c.sendto(_ike_sa_init(index), ("127.0.0.1", port))
                with contextlib.suppress(TimeoutError):
                    while True:
                        line = (await asyncio.wait_for(reader.readline(), 0.2)).decode()
                        seen |= {source for source in sources if source in line}
                if seen == set(sources):
                    break
            assert seen == set(sources)
        finally:
            for c in clients:
                c.close()
            writer.close()

    assert _supervised(tmp_path, body) is None


def _conn(remote: str, start: bool = False) -> dict:
    conn = copy.deepcopy(BASE["connections"]["home"])
    conn["remote_addrs"] = [remote]
    conn["remote_port"] = 9  # discard: nobody answers, the IKE_SA stays CONNECTING
    if start:
        conn["children"]["net"]["start_action"] = "start"
    return conn


def test_ike_sas_we_initiate_start_in_the_worker_owning_the_peer(tmp_path: Path) -> None:
    tree = copy.deepcopy(BASE)
    tree["connections"] = {
        "started": _conn(_peer(1), start=True),
        "one": _conn(_peer(1, 1)),
        "zero": _conn(_peer(0)),
    }

    async def names(sup: Supervisor, index: int) -> set[str]:
        path = worker_socket(sup.socket_path, index)
        return {sa["name"] for sa in (await _ask(path, Request(cmd="list-sas"))).data}

    async def body(sup: Supervisor) -> None:
        for _ in range(100):  # start_action = start runs once the worker is up
            if await names(sup, 1):
                break
            await asyncio.sleep(0.05)
        # a worker in turn would start "one" in worker 0
        for ike in ("one", "zero"):
            result = await _ask(sup.socket_path, Request(cmd="initiate", ike=ike, timeout=0.1))
            assert "is still being established" in result.message, result.message
        assert await names(sup, 0) == {"zero"}
        assert await names(sup, 1) == {"started", "one"}
        missing = await _ask(sup.socket_path, Request(cmd="initiate", ike="nothing"))
        assert not missing.ok and "no connection named 'nothing'" in missing.message

    assert _supervised(tmp_path, body, tree) is None


def test_each_worker_leases_its_share_of_a_pool() -> None:
    net = make_pair(
        psk_config("carol", "aes256-sha256-x25519"), psk_config("moon", "aes256-sha256-x25519")
    )
    moon = net.peers["moon"].engine
    moon.partition = Partition(1, 2)
    moon.load_config(moon.config)  # the services the IKE_SAs get carry the partition
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    (sa,) = net.peers["carol"].engine.sas.values()
    assert sa.local_vips == ["10.3.0.2"], "worker 1 of 2: 10.3.0.2, .4, ... (worker 0: .1, .3)"
    (pool,) = [p for p in moon.list_pools() if p.name == "rw_pool"]
    assert [lease.address for lease in pool.leases] == ["10.3.0.2"]


def test_list_pools_merges_the_shares_of_all_workers() -> None:
    def part(online: int, offline: int, leases: list[dict]) -> list[dict]:
        pool = {"name": "p", "base": "10.3.0.0", "size": 254, "online": online}
        return [{**pool, "offline": offline, "leases": leases}]

    a = {"address": "10.3.0.1", "identity": "a", "status": "online"}
    b = {"address": "10.3.0.2", "identity": "b", "status": "offline"}
    merged = merged_pools([part(1, 0, [a]), part(0, 1, [b])])
    assert merged == [{**part(1, 1, [a, b])[0]}]
