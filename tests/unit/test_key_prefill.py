"""Ephemeral key pairs made ahead while the daemon is idle: each is handed out once
(RFC 7296 §2.12), a forked worker drops its parent's, and a handshake uses them."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from kem import registry
from kem.ids import KeMethod
from pqike.config import load_config
from pqike.daemon import Daemon
from pqike.engine import SPARE_KEYS, Engine, _ke_backends
from pqike.kernel.base import MemoryKernel
from tests.exchange.peers import make_pair, psk_config
from tests.unit.test_daemon_rxqueue import CONFIG, until

PROPOSAL = "aes256-sha256-x25519-ke1_mlkem768"


def _backend(method: KeMethod):  # type: ignore[no-untyped-def]
    return registry.get(method).backend()


def test_a_pair_made_ahead_is_handed_out_once_then_fresh_ones_again() -> None:
    for method in (KeMethod.CURVE_25519, KeMethod.ML_KEM_768):
        backend = _backend(method)
        backend._spare.clear()
        assert backend.prefill(2) and backend.prefill(2) and not backend.prefill(2)
        ahead = {public for _, public in backend._spare}
        got = [backend.initiator().public_value for _ in range(4)]
        assert set(got[:2]) == ahead  # the two made ahead, one each
        assert len(set(got)) == 4 and backend._spare == []  # then fresh: none twice


def test_a_forked_child_drops_the_pairs_its_parent_made() -> None:
    backend = _backend(KeMethod.CURVE_25519)
    backend._spare.clear()
    backend.prefill(1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report how many it kept, then leave without pytest's cleanup
        os.write(write, str(len(backend._spare)).encode())
        os._exit(0)
    os.close(write)
    kept = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert kept == b"0" and len(backend._spare) == 1
    backend._spare.clear()


def test_the_engine_fills_its_proposals_methods_and_the_responder_uses_them() -> None:
    net = make_pair(psk_config("carol", PROPOSAL), psk_config("moon", PROPOSAL))
    carol, moon = net.peers["carol"].engine, net.peers["moon"].engine
    x25519 = _backend(KeMethod.CURVE_25519)
    mlkem = _backend(KeMethod.ML_KEM_768)
    x25519._spare.clear()
    mlkem._spare.clear()
    made = 0
    while moon.prefill_keys():
        made += 1
    assert made == 2 * SPARE_KEYS and len(x25519._spare) == len(mlkem._spare) == SPARE_KEYS
    moons = x25519._spare[0][1]  # carol takes the last made (both share the backends here)
    carol.initiate("net", "home", 0.0)
    net.run()
    assert any(e.kind.name == "IKE_ESTABLISHED" for e in net.peers["moon"].events)
    init_response = next(d for d in net.log if d.src.host != "192.168.0.3")
    assert moons in init_response.data  # moon's KEr is a pair made ahead
    assert len(x25519._spare) == 0 and len(mlkem._spare) == SPARE_KEYS - 1


def test_an_engine_without_ke_methods_makes_nothing() -> None:
    engine = Engine(psk_config("moon", "aes256-sha256-modp2048"), MemoryKernel())
    _backend(KeMethod.MODP_2048)._spare.clear()
    assert engine.prefill_keys() and engine.prefill_keys() and not engine.prefill_keys()
    _backend(KeMethod.MODP_2048)._spare.clear()


def test_the_daemon_makes_keys_ahead_once_it_is_idle() -> None:
    work = Path(tempfile.mkdtemp(prefix="pqk", dir="/tmp"))
    (work / "pqike.toml").write_text(CONFIG)
    config = load_config(work)

    async def main() -> None:
        d = Daemon(
            config,
            socket_path=str(work / "ctl.sock"),
            listen=["127.0.0.1"],
            ike_port=0,
            natt_port=0,
        )
        assert isinstance(d.engine, Engine)
        backends = _ke_backends(config)  # "default": ECP_256
        assert backends
        for b in backends:
            b._spare.clear()
        now = [1000.0]
        d._idle_clock = lambda: now[0]  # frozen: the engine was busy a moment ago
        await d.start()
        try:
            for _ in range(20):  # loop turns and timers, but never idle for long enough
                await asyncio.sleep(0.002)
            assert all(b._spare == [] for b in backends)
            now[0] += 1.0  # a second without engine work
            await until(lambda: all(len(b._spare) == SPARE_KEYS for b in backends), "keys")
            await until(lambda: not d._prefilling, "the end of the chain")
        finally:
            await d.stop()

    try:
        asyncio.run(main())
    finally:
        shutil.rmtree(work, ignore_errors=True)
