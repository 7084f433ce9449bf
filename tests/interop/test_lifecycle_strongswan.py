"""Lifecycle options against strongSwan 6.1: start_action = start, close_action = start after
the peer's DELETE, reauthentication (make-before-break) from each side with traffic through
pqike's userspace ESP, and keyingtries against a peer that comes up late.

Ping loss during reauthentication is printed as "REAUTH ..." lines (pytest -s)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.harness.strongswan import in_root
from tests.interop.test_pqike_strongswan import (  # noqa: F401 - fixtures used by name
    Pair,
    one_sa,
    pair,
    pq_tree,
    pqike,
    ss_conf,
    wait_agreement,
)

PROP = "aes256-sha256-x25519-ke1_mlkem768"
ESP = "aes256gcm16-x25519"


def _pq(role: str, conn: dict[str, Any] | None = None, child: dict[str, Any] | None = None) -> dict:
    tree = pq_tree(role, proposal=PROP, esp=ESP)
    (c,) = tree["connections"].values()
    c.update(conn or {})
    c["children"]["net"].update(child or {})
    return tree


def _ss(role: str, conn: str = "", child: str = "") -> str:
    conf = ss_conf(role, proposal=PROP, esp=ESP)
    conf = conf.replace("version = 2", f"version = 2\n    {conn}", 1)
    return conf.replace("net { ", f"net {{ {child}\n             ", 1)


def _userspace(p: Pair, tree: dict) -> None:
    try:
        p.start_pq(tree, kernel="userspace")
    except RuntimeError as e:
        if "kernel" in str(e).lower() or "tun" in str(e).lower():
            pytest.skip(f"pqike's userspace kernel backend can't run here: {e}")
        raise


@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_start_action_start(pair, role: str) -> None:  # noqa: F811
    """pqike carol's start_action, or a strongSwan carol's against pqike moon."""
    p = pair(role)
    if role == "initiator":
        p.start_ss(_ss(p.ss_name))
        p.start_pq(_pq(p.pq_name, child={"start_action": "start"}))
    else:
        p.start_pq(_pq(p.pq_name))
        p.start_ss(_ss(p.ss_name, child="start_action = start"))
    assert p.pq is not None and p.ss is not None
    pq_sa, _ = wait_agreement(p.pq, p.ss, p.pq_initiator, timeout=15)  # nobody ran initiate
    assert [c.name for c in pq_sa.children] == ["net"]


@pytest.mark.parametrize(
    ("role", "what"), [("initiator", "child"), ("initiator", "ike"), ("responder", "child")]
)
def test_close_action_start_after_peer_delete(pair, role: str, what: str) -> None:  # noqa: F811
    """pqike re-creates what charon deleted: the CHILD_SA on the same IKE_SA (either IKE
    role: CREATE_CHILD_SA), or the IKE_SA with it (as the initiator, which knows where to)."""
    p = pair(role)
    p.start_ss(_ss(p.ss_name))
    p.start_pq(_pq(p.pq_name, child={"close_action": "start"}))
    assert p.pq is not None and p.ss is not None
    before, _, _ = p.establish()
    if what == "child":
        r = p.ss.terminate(child="net")
    else:
        r = p.ss.terminate(ike="rw")
    assert r.ok, r.output
    after, _ = wait_agreement(
        p.pq,
        p.ss,
        p.pq_initiator,
        ready=lambda a, b: bool(a.children) and a.children[0].spi_in != before.children[0].spi_in,
        timeout=15,
    )
    if what == "child":
        assert after.unique_id == before.unique_id
    else:
        assert after.unique_id != before.unique_id


def _ping(ns: str, dst: str, src: str, count: int) -> str:
    """count echoes at 10/s (blocking: the daemons reauthenticate meanwhile)."""
    argv = ["ping", "-n", "-c", str(count), "-i", "0.1", "-W", "1", "-I", src, dst]
    return in_root(ns, argv, timeout=count / 10 + 30).stdout


@pytest.mark.parametrize("by", ["pqike", "strongswan"])
def test_reauthentication_keeps_traffic_flowing(pair, by: str) -> None:  # noqa: F811
    """pqike as carol (by = pqike: its reauth_time) or as moon (by = strongswan: charon's
    reauth_time, with make_before_break): traffic carol -> moon's intranet keeps flowing."""
    reauth = "reauth_time = 12s\n    rand_time = 0s"
    if by == "pqike":
        p = pair("initiator")
        p.start_ss(_ss(p.ss_name))
        _userspace(p, _pq(p.pq_name, conn={"reauth_time": "12s", "rand_time": 0}))
    else:
        p = pair("responder")
        p.start_ss(_ss(p.ss_name, conn=reauth))
        _userspace(p, _pq(p.pq_name))
    assert p.pq is not None and p.ss is not None
    first, ss_first, _ = p.establish()
    count = 250  # 25 s at 10/s: two reauthentications
    out = _ping(p.topo.carol, p.topo.moon_intranet, "10.3.0.1", count)
    received = _received(out)
    last, ss_last = wait_agreement(p.pq, p.ss, p.pq_initiator, timeout=15)
    reauths = len(p.pq.grep(r"reauthenticat")) if by == "pqike" else None
    print(
        f"REAUTH by {by}: {received}/{count} echoes answered while the IKE_SA was "
        f"reauthenticated (IKE_SA {first.unique_id} -> {last.unique_id}; "
        f"strongSwan {ss_first.spis} -> {ss_last.spis}); pqike log lines: {reauths}"
    )
    assert last.unique_id != first.unique_id and ss_last.spis != ss_first.spis
    assert received >= count - 2, out  # at most a packet in flight at a switch
    assert not p.pq.grep(r"ICV mismatch"), p.pq.tail()


def _received(ping_output: str) -> int:
    for line in ping_output.splitlines():
        if "packets transmitted" in line:
            return int(line.split(",")[1].split()[0])
    raise AssertionError(ping_output)


def test_keyingtries_forever_reaches_a_late_peer(pair, charon) -> None:  # noqa: F811
    """pqike keeps trying (keyingtries = 0) until strongSwan moon comes up."""
    p = pair("initiator")
    tree = _pq(p.pq_name, conn={"keyingtries": 0}, child={"start_action": "start"})
    tree["daemon"] |= {"retransmit_tries": 1, "retransmit_timeout": 0.5}
    p.start_pq(tree)
    assert p.pq is not None
    p.pq.wait_log(r"peer not responding, trying again \(3/forever\)", timeout=20)
    p.start_ss(_ss(p.ss_name))
    assert p.ss is not None
    pq_sa, _ = wait_agreement(p.pq, p.ss, True, timeout=20)
    assert pq_sa.children


def test_keyingtries_n_gives_up(pair) -> None:  # noqa: F811
    p = pair("initiator")
    tree = _pq(p.pq_name, conn={"keyingtries": 2}, child={"start_action": "start"})
    tree["daemon"] |= {"retransmit_tries": 1, "retransmit_timeout": 0.5}
    p.start_pq(tree)
    assert p.pq is not None
    p.pq.wait_log(r"establishing IKE_SA failed, peer not responding", timeout=20)
    time.sleep(2)
    assert p.pq.list_sas() == []
    assert len(p.pq.grep(r"initiating IKE_SA")) == 2


def test_hard_lifetime_deletes_at_the_peer(pair) -> None:  # noqa: F811
    """pqike moon assigned carol a virtual IP, so it cannot reauthenticate (as charon): at
    its hard lifetime it sends a DELETE, and strongSwan carol drops the IKE_SA too rather
    than keep a dead tunnel."""
    p = pair("responder")
    p.start_ss(_ss(p.ss_name))
    p.start_pq(_pq(p.pq_name, conn={"reauth_time": "6s", "rand_time": 0, "over_time": "2s"}))
    assert p.pq is not None and p.ss is not None
    p.establish()
    p.pq.wait_log(r"initiator did not reauthenticate as requested", timeout=15)
    p.pq.wait_log(r"reached its hard lifetime, deleting it", timeout=15)
    p.ss.wait_log(r"received DELETE for IKE_SA home", timeout=10)
    deadline = time.monotonic() + 10
    while (p.ss.list_sas() or p.pq.list_sas()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert p.ss.list_sas() == [] and p.pq.list_sas() == []
