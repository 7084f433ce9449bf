"""Per-message bookkeeping of an established IKE_SA costs no avoidable allocation or import:
Engine._reap indexes an IKE_SA by peer without building a set per message, and
IkeSa.deleting answers without an import statement; both still say what they said."""

from __future__ import annotations

import builtins
from collections.abc import Callable

import pytest

from pqike import engine as engine_mod
from tests.exchange.peers import make_pair, psk_config


def _establish():  # type: ignore[no-untyped-def]
    prop = "aes256-sha256-x25519"
    net = make_pair(psk_config("carol", prop), psk_config("moon", prop))
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    return net


def test_messages_of_an_indexed_ike_sa_build_no_set(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _establish()
    moon = net.peers["moon"].engine
    (sa,) = moon.sas.values()
    key = (sa.name, sa.remote_id)
    assert moon._by_peer[key] == {sa}
    built: list[object] = []

    def counting_set(*args: object) -> set[object]:
        built.append(args)
        return set(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(engine_mod, "set", counting_set, raising=False)
    received = len(net.log)
    net.peers["carol"].engine.rekey(None, "net", net.now)  # CREATE_CHILD_SA, then a DELETE
    net.run()
    assert len(net.log) - received >= 4  # moon answered requests on the indexed IKE_SA
    assert built == []
    assert moon._by_peer[key] == {sa}  # still indexed, once


def test_deleting_runs_no_import(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _establish()
    net.filter = lambda d: []  # the DELETE goes unanswered for now
    carol = net.peers["carol"].engine
    carol.terminate("home", None, None, net.now)
    net.run()
    (ours,) = carol.sas.values()
    (theirs,) = net.peers["moon"].engine.sas.values()
    imports: list[str] = []
    real: Callable[..., object] = builtins.__import__

    def counting(name: str, *args: object, **kw: object) -> object:
        imports.append(name)
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", counting)
    assert ours.deleting and not theirs.deleting
    assert imports == []
