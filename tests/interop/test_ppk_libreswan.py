"""pqike <-> libreswan 5.2 (pluto) with an RFC 8784 PPK: classic proposal (AES-CBC-256,
SHA2-256, X25519), PSK, pqike in both roles.

libreswan keeps a PPK in ipsec.secrets as ``IDs : PPKS "PPK_ID" "secret"`` and decides with
``ppk=`` (propose/permit: optional, insist: required). 5.2 also announces USE_PPK_INT (PPK in
IKE_INTERMEDIATE, the qr-alt draft, RFC 9867): pqike doesn't, so the PPK is mixed in as RFC
8784 says, and pluto's words for it are "PPK AUTH calculated as initiator/responder".

This kernel has no ESP: pqike initiates childless IKE_SAs (RFC 6023), and a CHILD_SA pluto
negotiates fails in its kernel install only; the IKE_SA is what is checked, and two IKE_SA
rekeys (one from each end) show that both derive from the same PPK-mixed SK_d.

Needs the root of scripts/libreswan-root.sh (tests/harness/libreswan.py); skips without it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import libreswan, rootdaemon
from tests.harness import netns as nsh
from tests.interop.pqike_peer import PqikePeer

pytestmark = pytest.mark.interop

PSK = "qwerty-psk-0123456789"
PPK_ID = "pqike-ppk-1"
PPK = "narodnifrontlimannovisadsrbija-pqike-ppk"  # ipsec.secrets wants a quoted string
ADDR = {"carol": "192.168.0.3", "moon": "192.168.0.2"}
PQ_ID = {"carol": "carol@strongswan.org", "moon": "moon.strongswan.org"}
LS_ID = {"carol": "carol@strongswan.org", "moon": "@moon.strongswan.org"}
OTHER = {"carol": "moon", "moon": "carol"}
USING = f"using PPK for PPK_ID '{PPK_ID}'"


def ls_conf(me: str, ppk: str) -> str:
    peer = OTHER[me]
    lines = [
        *("keyexchange=ikev2", f"left={ADDR[me]}", f"leftid={LS_ID[me]}"),
        *(f"right={ADDR[peer]}", f"rightid={LS_ID[peer]}", "authby=secret"),
        *("ike=aes256-sha2_256-dh31", "esp=aes256-sha2_256", "pfs=no", "auto=add"),
        f"ppk={ppk}",
    ]
    body = "\n".join(f"    {x}" for x in lines)
    return f"config setup\n    ikev1-policy=drop\n\nconn home\n{body}\n"


def ls_secrets(ppk_id: str | None) -> str:
    ids = f"{LS_ID['moon']} {LS_ID['carol']}"
    out = f'{ids} : PSK "{PSK}"\n'
    return out + (f'{ids} : PPKS "{ppk_id}" "{PPK}"\n' if ppk_id else "")


def pq_tree(me: str, ppk_id: str | None, required: bool, ppks: dict[str, str]) -> dict[str, Any]:
    peer = OTHER[me]
    conn: dict[str, Any] = {
        "local_addrs": [ADDR[me]],
        "remote_addrs": [ADDR[peer]],
        "proposals": ["aes256-sha256-x25519"],
        "local": {"auth": "psk", "id": PQ_ID[me]},
        "remote": {"auth": "psk", "id": PQ_ID[peer]},
        "children": {"net": {"esp_proposals": ["aes256-sha256"]}},
        "ppk_required": required,
    }
    if ppk_id:
        conn["ppk_id"] = ppk_id
    secrets: dict[str, Any] = {"ike-1": {"id-1": PQ_ID["moon"], "id-2": PQ_ID["carol"]}}
    secrets["ike-1"]["secret"] = PSK
    for i, (ident, secret) in enumerate(ppks.items()):
        secrets[f"ppk-{i}"] = {"id": ident, "secret": secret}
    return {"daemon": {"fragment_size": 1480}, "connections": {"home": conn}, "secrets": secrets}


@pytest.fixture(scope="module")
def ls_env() -> Path:
    if os.geteuid() != 0:
        pytest.skip("not root: libreswan interop needs network namespaces, mounts and chroot")
    if problem := libreswan.root_problem():
        pytest.skip(problem)
    for tool in ("nsenter", "unshare", "mount", "chroot"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} missing (util-linux/coreutils)")
    nsh.remove_stale()
    return libreswan.root_dir()


@pytest.fixture
def peers(ls_env: Path, tmp_path: Path) -> Iterator[Any]:
    """start(role, ls_ppk, ls_ppk_id, pqike settings) -> (PqikePeer, Pluto)."""
    made: list[Any] = []
    with nsh.topology() as topo:

        def start(role: str, ls_ppk: str, ls_ppk_id: str | None, pq: dict) -> tuple[Any, Any]:
            pq_name = "carol" if role == "initiator" else "moon"
            ls_name = OTHER[pq_name]
            ns = {"carol": topo.carol, "moon": topo.moon}
            ls = libreswan.Pluto(
                ls_name,
                ns[ls_name],
                ls_conf(ls_name, ls_ppk),
                tmp_path / f"ls-{ls_name}",
                secrets=ls_secrets(ls_ppk_id),
            )
            made.append(ls)
            ls.start()
            ls.add("home")
            tree = pq_tree(pq_name, **pq)
            p = PqikePeer(pq_name, ns[pq_name], tree, tmp_path / "pq", listen=ADDR[pq_name])
            made.append(p)
            return p.start(), ls

        yield start
        pids = {d.pid for d in made if isinstance(d, libreswan.Pluto)}
        for d in reversed(made):
            d.stop()
    assert not rootdaemon.leaked_mounts(ls_env)
    assert not pids & set(libreswan.pluto_pids())


def establish(role: str, pq: PqikePeer, ls: Any) -> None:
    if role == "initiator":
        r = pq.initiate(ike="home", timeout=15)  # childless: nothing for the kernel
        assert r.ok, r.output + pq.tail()
    else:
        ls.up("home", timeout=20)
    deadline = time.monotonic() + 15
    while not (ls.ike_established("home") and [s for s in pq.list_sas() if s.established]):
        assert time.monotonic() < deadline, (ls.states(), pq.list_sas(), pq.tail())
        time.sleep(0.1)


BOTH = {"ppk_id": PPK_ID, "required": False, "ppks": {PPK_ID: PPK}}


@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_ppk_used_and_ike_rekeys(peers, role: str) -> None:  # type: ignore[no-untyped-def]
    # the responder insists (pluto ppk=insist / pqike ppk_required), the initiator proposes
    ls_ppk, pq = (
        ("insist", BOTH) if role == "initiator" else ("propose", {**BOTH, "required": True})
    )
    p, ls = peers(role, ls_ppk, PPK_ID, pq)
    establish(role, p, ls)
    (sa,) = p.list_sas()
    assert sa.ppk
    assert p.grep(USING), p.tail()
    ls_role = "responder" if role == "initiator" else "initiator"
    assert ls.grep(f"PPK AUTH calculated as {ls_role}"), ls.log_text()
    # two IKE_SA rekeys, one from each end: each new SKEYSEED is prf(SK_d with the PPK, ...)
    r = p.rekey(ike="home")
    assert r.ok, r.output + p.tail()
    assert ls.whack("--rekey-ike", "--name", "home").ok
    p.wait_log(r"IKE_SA home\[2\] rekeyed between")
    ls.wait_log(r"initiator rekeyed IKE SA")
    (sa,) = [s for s in p.list_sas() if s.established]
    assert sa.ppk and sa.unique_id == 3
    assert ls.ike_established("home")
    for who, d in (("pqike", p), ("pluto", ls)):
        for m in d.grep(r"PPK AUTH|using PPK|rekeyed"):
            print(f"LOG libreswan {role} {who}: {m.string.strip()}")


@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_ppk_optional_and_missing_falls_back(peers, role: str) -> None:  # type: ignore[no-untyped-def]
    """carol proposes PPK_ID pqike-ppk-1; moon has a PPK (so it answers USE_PPK), not that
    one: moon checks carol's NO_PPK_AUTH, and neither end uses a PPK."""
    other = {"other-ppk": PPK + "-other"}
    if role == "initiator":
        p, ls = peers(role, "propose", "other-ppk", BOTH)
    else:
        p, ls = peers(role, "propose", PPK_ID, {"ppk_id": None, "required": False, "ppks": other})
    establish(role, p, ls)
    (sa,) = p.list_sas()
    assert not sa.ppk
    if role == "initiator":
        assert p.grep(f"peer didn't use PPK for PPK_ID '{PPK_ID}'"), p.tail()
        assert ls.grep("ignored received PPK_IDENTITY"), ls.log_text()
    else:
        assert p.grep(f"no PPK for '{PPK_ID}' found, ignored because PPK is not required")
        assert p.grep("no PPK available, using NO_PPK_AUTH notify"), p.tail()
        assert ls.grep("peer wants to continue without PPK - switching to NO_PPK"), ls.log_text()


def test_ppk_required_by_libreswan_pqike_without(peers) -> None:  # type: ignore[no-untyped-def]
    """pluto's ppk=insist refuses a peer without USE_PPK already in IKE_SA_INIT, with
    NO_PROPOSAL_CHOSEN (strongSwan answers AUTHENTICATION_FAILED in IKE_AUTH)."""
    p, ls = peers("initiator", "insist", PPK_ID, {"ppk_id": None, "required": False, "ppks": {}})
    r = p.initiate(ike="home", timeout=15)
    assert r.returncode == 1 and "received NO_PROPOSAL_CHOSEN notify error" in r.output, r.output
    assert ls.grep("connection has ppk=insist but peer does not support PPK"), ls.log_text()


def test_ppk_required_by_pqike_libreswan_without(peers) -> None:  # type: ignore[no-untyped-def]
    p, ls = peers("responder", "no", None, {**BOTH, "required": True})
    ls.up("home", timeout=20)
    p.wait_log("PPK required but peer does not support PPK")
    p.wait_log(r"generating IKE_AUTH response 1 \[ N\(AUTH_FAILED\) \]")
    # the refused IKE_SA is gone; pluto's next attempt may already be half-open
    assert all(sa.state == "CONNECTING" and not sa.remote_id for sa in p.list_sas())
