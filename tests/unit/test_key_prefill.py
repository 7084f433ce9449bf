"""Ephemeral key pairs made ahead when the daemon has nothing queued: each is handed out once
(RFC 7296 §2.12), a forked worker drops its parent's, a handshake uses them, and only the
pairs our role needs are made."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from kem import registry
from kem.ids import KeMethod
from pqike.config import load_config
from pqike.daemon import Daemon
from pqike.engine import SPARE_KEYS, Engine, _ke_backends
from pqike.events import Datagram, Endpoint
from pqike.kernel.base import MemoryKernel
from tests.exchange.peers import make_pair, psk_config
from tests.unit.test_daemon_rxqueue import CONFIG

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


def _cleared(*methods: KeMethod) -> list:  # type: ignore[type-arg]
    backends = [_backend(m) for m in methods]
    for b in backends:
        b._spare.clear()
        b.asked = False
    return backends


def _fill(engine: Engine) -> int:
    """Pairs made until prefill_keys() says each method has its spares."""
    backends = engine._plan_spares()
    before = sum(b.waiting() for b in backends)
    while engine.prefill_keys():
        pass
    return sum(b.waiting() for b in backends) - before


def test_the_engine_fills_its_proposals_methods_and_the_responder_uses_them() -> None:
    net = make_pair(psk_config("carol", PROPOSAL), psk_config("moon", PROPOSAL))
    carol, moon = net.peers["carol"].engine, net.peers["moon"].engine
    x25519, mlkem = _cleared(KeMethod.CURVE_25519, KeMethod.ML_KEM_768)
    # moon only answers: an x25519 pair, never an ML-KEM one (it encapsulates to carol's key)
    assert _fill(moon) == SPARE_KEYS and len(x25519._spare) == SPARE_KEYS and not mlkem._spare
    moons = x25519._spare[0][1]  # carol takes the last made (both share the backends here)
    carol.initiate("net", "home", 0.0)
    net.run()
    assert any(e.kind.name == "IKE_ESTABLISHED" for e in net.peers["moon"].events)
    init_response = next(d for d in net.log if d.src.host != "192.168.0.3")
    assert moons in init_response.data  # moon's KEr is a pair made ahead
    assert x25519._spare == [] and mlkem.asked  # carol initiated: ML-KEM pairs are wanted now
    assert _fill(moon) == 2 * SPARE_KEYS and len(mlkem._spare) == SPARE_KEYS


def test_a_connection_started_here_makes_kem_pairs_ahead_from_the_start() -> None:
    x25519, mlkem = _cleared(KeMethod.CURVE_25519, KeMethod.ML_KEM_768)
    config = psk_config("carol", PROPOSAL, child_extra={"start_action": "start"})
    assert _fill(Engine(config, MemoryKernel())) == 2 * SPARE_KEYS
    assert len(x25519._spare) == len(mlkem._spare) == SPARE_KEYS
    _cleared(KeMethod.CURVE_25519, KeMethod.ML_KEM_768)


def test_a_reload_that_drops_a_method_drops_its_pairs_made_ahead() -> None:
    x25519, mlkem = _cleared(KeMethod.CURVE_25519, KeMethod.ML_KEM_768)
    config = psk_config("carol", PROPOSAL, child_extra={"start_action": "start"})
    engine = Engine(config, MemoryKernel())
    _fill(engine)
    engine.load_config(psk_config("carol", "aes256-sha256-x25519-ke1_mlkem768-modp2048"))
    assert len(x25519._spare) == len(mlkem._spare) == SPARE_KEYS  # still configured: kept
    engine.load_config(psk_config("carol", "aes256-sha256-modp2048"))
    assert x25519._spare == mlkem._spare == []
    _cleared(KeMethod.CURVE_25519, KeMethod.ML_KEM_768, KeMethod.MODP_2048)


def test_an_engine_without_ke_methods_makes_nothing() -> None:
    engine = Engine(psk_config("moon", "aes256-sha256-modp2048"), MemoryKernel())
    modp = _backend(KeMethod.MODP_2048)
    modp.drop_spares()
    assert engine.prefill_keys() and not engine.prefill_keys()  # the second makes the last
    assert modp.waiting() == SPARE_KEYS and not engine.prefill_keys()
    modp.drop_spares()


def test_the_call_that_makes_the_last_pair_says_so() -> None:
    """False as soon as each method has its spares: the daemon spends no loop turn on a
    call that would find nothing to make."""
    (x25519,) = _cleared(KeMethod.CURVE_25519)
    engine = Engine(psk_config("moon", "aes256-sha256-x25519"), MemoryKernel())
    said = [engine.prefill_keys() for _ in range(SPARE_KEYS)]
    assert said == [True] * (SPARE_KEYS - 1) + [False] and x25519.waiting() == SPARE_KEYS
    x25519.drop_spares()


def test_once_all_are_made_no_backend_is_asked_until_a_pair_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (x25519,) = _cleared(KeMethod.CURVE_25519)
    engine = Engine(psk_config("moon", "aes256-sha256-x25519"), MemoryKernel())
    _fill(engine)
    asked: list[str] = []
    for name in ("prefill", "waiting"):
        real = getattr(x25519, name)

        def counting(*args: int, _real=real, _name=name) -> object:  # type: ignore[no-untyped-def]
            asked.append(_name)
            return _real(*args)

        monkeypatch.setattr(x25519, name, counting)
    assert not engine.prefill_keys() and not engine.prefill_keys() and asked == []
    x25519.initiator()  # a handshake took one pair
    assert not engine.prefill_keys() and x25519.waiting() == SPARE_KEYS and asked
    asked.clear()
    assert not engine.prefill_keys() and asked == []
    x25519.drop_spares()  # a reload: made again
    assert engine.prefill_keys() and x25519.waiting() == 1
    x25519.drop_spares()


def test_the_daemon_makes_keys_ahead_once_it_answered_and_nothing_is_queued() -> None:
    """Right after an engine call (a gateway with steady traffic is never idle for long),
    one keygen per loop turn; nothing while a datagram waits."""
    work = Path(tempfile.mkdtemp(prefix="pqk", dir="/tmp"))
    (work / "pqike.toml").write_text(CONFIG)
    config = load_config(work)
    waiting = Datagram(b"\x00" * 28, Endpoint("127.0.0.2", 500), Endpoint("127.0.0.1", 500))

    async def turns(n: int) -> None:  # loop turns, no time: the trigger is not a delay
        for _ in range(n):
            await asyncio.sleep(0)

    async def main() -> None:
        d = Daemon(
            config,
            socket_path=str(work / "ctl.sock"),
            listen=["127.0.0.1"],
            ike_port=0,
            natt_port=0,
        )
        assert isinstance(d.engine, Engine)
        backends = _ke_backends(config)  # "default": ECP_256, a DH
        assert backends
        for b in backends:
            b._spare.clear()
        await d.start()
        try:
            await turns(SPARE_KEYS * len(backends) + 2)
            assert all(len(b._spare) == SPARE_KEYS for b in backends) and not d._prefilling
            backends[0].initiator()  # a handshake took one: made again in the same turn
            d._after_engine()
            assert all(len(b._spare) == SPARE_KEYS for b in backends) and not d._prefilling
            for b in backends:
                b.drop_spares()
            d._rxq.push(waiting)  # under load: the engine's next call comes first
            d._after_engine()
            await turns(5)
            assert all(b._spare == [] for b in backends) and not d._prefilling
            d._rxq.clear()
            d._after_engine()  # one keygen at once; a datagram queued meanwhile stops the chain
            assert sum(len(b._spare) for b in backends) == 1 and d._prefilling
            d._rxq.push(waiting)
            await turns(5)
            assert sum(len(b._spare) for b in backends) == 1 and not d._prefilling
            for b in backends:
                b.drop_spares()
        finally:
            d._rxq.clear()
            await d.stop()

    try:
        asyncio.run(main())
    finally:
        shutil.rmtree(work, ignore_errors=True)
