"""terminate --force (charon's forced delete: the DELETE goes out, the IKE_SA is gone at
once) and terminate --child-id (one CHILD_SA by its unique id)."""

from __future__ import annotations

import pytest

from pqike.engine import EngineError
from pqike.events import EventKind
from tests.exchange.peers import make_pair, psk_config

PROPOSAL = "aes256-sha256-x25519"


def _up(**kw):  # type: ignore[no-untyped-def]
    net = make_pair(psk_config("carol", PROPOSAL, **kw), psk_config("moon", PROPOSAL, **kw))
    net.peers["carol"].engine.initiate("net", None, 0.0)
    net.run()
    return net


def test_force_removes_the_ike_sa_without_waiting() -> None:
    net = _up()
    carol = net.peers["carol"]
    carol.engine.terminate("home", None, None, 1.0, force=True)
    # gone before the peer could answer, everything it installed removed
    assert carol.engine.list_sas(1.0) == []
    assert carol.kernel.sas == {} and carol.kernel.vips == []
    assert carol.events[-1].kind == EventKind.IKE_DELETED
    assert "forced" in carol.events[-1].message
    pending = carol.engine.pop_outgoing()
    assert len(pending) == 1  # the DELETE still goes out
    for d in pending:
        net.peers["moon"].engine.receive(d, 1.0)
    net.run()  # moon's answer reaches an IKE_SA carol no longer has: dropped quietly
    assert net.peers["moon"].engine.list_sas(1.0) == []
    assert net.peers["moon"].events[-1].kind == EventKind.IKE_DELETED


def test_force_is_for_ike_sas_only() -> None:
    net = _up()
    with pytest.raises(EngineError, match="--force applies to IKE_SAs"):
        net.peers["carol"].engine.terminate(None, "net", None, 1.0, force=True)


def test_child_id_deletes_only_that_child() -> None:
    net = _up(host_esp="aes128-sha256")
    carol = net.peers["carol"]
    carol.engine.initiate("host", "home", 1.0)
    net.run()
    (sa,) = carol.engine.list_sas(1.0)
    ids = {c.name: c.unique_id for c in sa.children}
    assert set(ids) == {"net", "host"}
    carol.engine.terminate(None, None, None, 2.0, child_id=ids["host"])
    net.run()
    (sa,) = carol.engine.list_sas(2.0)
    assert [c.unique_id for c in sa.children] == [ids["net"]]
    (msa,) = net.peers["moon"].engine.list_sas(2.0)
    assert [c.name for c in msa.children] == ["net"]
    with pytest.raises(EngineError, match="no CHILD_SA with unique id 99 is established"):
        carol.engine.terminate(None, None, None, 3.0, child_id=99)
