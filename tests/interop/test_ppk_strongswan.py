"""pqike <-> strongSwan 6.1 with Postquantum Preshared Keys (RFC 8784), pqike in both roles.

- the PPK used: classic x25519 and x25519 + ML-KEM-768 (the PPK step after the ADDKE of
  IKE_INTERMEDIATE), PSK and ECDSA certificates; both ends log "using PPK for PPK_ID", both
  list the IKE_SA with the PPK (swanctl's "/PPK", vici's ppk = yes, pqike's list-sas);
- traffic and rekeys afterwards: pings through pqike's userspace ESP and charon's
  kernel-libipsec after the IKE_AUTH CHILD_SA, CHILD_SA rekeys and IKE_SA rekeys started by
  either end (all keyed from the PPK-mixed SK_d: a wrong one would fail the ICV or the next
  IKE message);
- PPK required but missing on one side: a clean AUTHENTICATION_FAILED, and the log line on
  pqike's side that says why;
- PPK optional and missing: the responder falls back to NO_PPK_AUTH, both ends say so, and
  the IKE_SA is up without a PPK.

Helpers, fixtures and both configurations come from test_pqike_strongswan.py.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.harness.strongswan import ping
from tests.interop import test_pqike_strongswan as base
from tests.interop.test_pqike_strongswan import (
    ROLES,
    Pair,
    one_sa,
    pq_tree,
    ss_conf,
    wait_agreement,
)

# the fixtures of the pqike <-> strongSwan tests
pair, pki, pqike = base.pair, base.pki, base.pqike

pytestmark = pytest.mark.interop

PPK_ID = "pqike-ppk-1"
PPK = "0x8a3c5e11f07b42d9a6e0c3b18d5f27e49c0b6a13e7d2f58146ab93c0e5d71f26"
OTHER = {"other-ppk": "0x" + "c4" * 32}  # a PPK, but not carol's: the peer supports PPKs
HYBRID = "aes256-sha256-x25519-ke1_mlkem768"
USING = f"using PPK for PPK_ID '{PPK_ID}'"


def pq_ppk(
    tree: dict[str, Any],
    ppk_id: str | None = None,
    required: bool = False,
    ppks: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A pq_tree() with connections.<conn>.ppk_id/ppk_required and secrets.ppk<suffix>."""
    (conn,) = tree["connections"].values()
    if ppk_id is not None:
        conn["ppk_id"] = ppk_id
    conn["ppk_required"] = required
    for i, (ident, secret) in enumerate((ppks or {}).items()):
        tree.setdefault("secrets", {})[f"ppk-{i}"] = {"id": ident, "secret": secret}
    return tree


def ss_ppk(
    conf: str, ppk_id: str | None = None, required: bool = False, ppks: dict[str, str] | None = None
) -> str:
    """The same settings in an ss_conf() swanctl.conf (charon merges the secrets sections)."""
    settings = f"\n    ppk_id = {ppk_id}" if ppk_id else ""
    settings += f"\n    ppk_required = {'yes' if required else 'no'}"
    conf = conf.replace("    version = 2", "    version = 2" + settings, 1)
    if ppks:
        entries = "".join(
            f"  ppk-{i} {{ id = {ident}\n    secret = {secret} }}\n"
            for i, (ident, secret) in enumerate(ppks.items())
        )
        conf += f"secrets {{\n{entries}}}\n"
    return conf


BOTH = {"ppk_id": PPK_ID, "ppks": {PPK_ID: PPK}}


def start(p: Pair, pq: dict, ss: dict, *, auth: str = "psk", proposal: str = HYBRID, **kw):  # type: ignore[no-untyped-def]
    files = kw.pop("files", None)
    conf = {"proposal": proposal, "auth": auth}
    p.start_ss(ss_ppk(ss_conf(p.ss_name, **conf), **ss), files=(files or {}).get(p.ss_name))
    p.start_pq(pq_ppk(pq_tree(p.pq_name, **conf), **pq), files=(files or {}).get(p.pq_name), **kw)


def initiate(p: Pair, timeout: float = 15) -> Any:
    assert p.pq is not None and p.ss is not None
    if p.pq_initiator:
        return p.pq.initiate(child="net", timeout=timeout)
    return p.ss.initiate(child="net", ike="home", timeout=int(timeout))


def show(p: Pair, pattern: str) -> None:
    """Print the matching lines of both logs (the report quotes them; pytest -s)."""
    assert p.pq is not None and p.ss is not None
    for who, peer in (("pqike", p.pq), ("charon", p.ss)):
        for m in peer.grep(pattern):
            print(f"LOG {p.role} {who}: {m.string.strip()}")


def assert_ppk_on_both(p: Pair, used: bool) -> None:
    assert p.pq is not None and p.ss is not None
    pq_sa, ss_sa = one_sa(p.pq), one_sa(p.ss)
    assert pq_sa.ppk is used and (ss_sa.raw.get("ppk") == "yes") is used, (pq_sa, ss_sa.raw)
    listing = p.ss.swanctl("--list-sas").output
    assert ("/KE1_ML_KEM_768/PPK\n" in listing or "/CURVE_25519/PPK\n" in listing) is used
    pq_listing = p.pq.cli("list-sas").output
    assert ("/PPK\n" in pq_listing) is used, pq_listing


# --------------------------------------------------------------------------- the PPK used


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("proposal", "auth"),
    [
        pytest.param("aes256-sha256-x25519", "psk", id="x25519-psk"),
        pytest.param(HYBRID, "psk", id="x25519+mlkem768-psk"),
        pytest.param(HYBRID, "pubkey", id="x25519+mlkem768-ecdsa"),
    ],
)
def test_ppk_used(pair, pki, role: str, proposal: str, auth: str) -> None:  # type: ignore[no-untyped-def]
    p = pair(role)
    files = pki("ecdsa-p256") if auth == "pubkey" else None
    # the initiator lets the PPK be optional (it sends NO_PPK_AUTH), the responder requires it
    init, resp = dict(BOTH), {**BOTH, "required": True}
    pq, ss = (init, resp) if p.pq_initiator else (resp, init)
    start(p, pq, ss, auth=auth, proposal=proposal, files=files)
    r = initiate(p)
    assert r.ok, f"{r.output}\n{p.pq.tail()}"  # type: ignore[union-attr]
    wait_agreement(p.pq, p.ss, p.pq_initiator)  # type: ignore[arg-type]
    assert p.pq.grep(re.escape(USING)) and p.ss.grep(re.escape(USING))  # type: ignore[union-attr]
    assert_ppk_on_both(p, True)
    # carol's IKE_AUTH request carries N(PPK_ID) and N(NO_PPK), moon's response N(PPK_ID)
    auth_req = r"IKE_AUTH request \d+ \[ .*N\(PPK_ID\)"
    assert p.pq.grep(auth_req) and p.ss.grep(auth_req)  # type: ignore[union-attr]
    assert p.pq.grep(r"IKE_AUTH request \d+ \[ .*N\(NO_PPK\)")  # type: ignore[union-attr]
    assert p.pq.grep(r"IKE_AUTH response \d+ \[ .*N\(PPK_ID\)")  # type: ignore[union-attr]
    assert p.pq.grep(r"IKE_SA_INIT (request|response) 0 \[ .*N\(USE_PPK\)")  # type: ignore[union-attr]
    show(p, r"PPK|IKE_AUTH (request|response)")


# --------------------------------------------------------------------------- traffic and rekeys


@pytest.mark.parametrize("role", ROLES)
def test_ppk_traffic_and_rekeys(pair, role: str) -> None:  # type: ignore[no-untyped-def]
    """CHILD_SA and IKE_SA rekeys by either end after a PPK IKE_AUTH (PFS with x25519 +
    ML-KEM-768), a ping after each: the CHILD_SA keys, old and new, and every new IKE_SA
    come from the PPK-mixed SK_d on both ends."""
    p = pair(role)
    esp = {"esp": HYBRID}
    p.start_ss(ss_ppk(ss_conf(p.ss_name, proposal=HYBRID, **esp), **BOTH))
    # (the TUN device pqike's userspace ESP needs is checked with kernel-libipsec's: conftest)
    p.start_pq(pq_ppk(pq_tree(p.pq_name, proposal=HYBRID, **esp), **BOTH), kernel="userspace")
    assert p.pq is not None and p.ss is not None
    p.establish()
    assert_ppk_on_both(p, True)
    ike_pq, ike_ss = ("home", "rw") if p.pq_initiator else ("rw", "home")
    steps = [
        ("child", "pqike"),
        ("ike", "strongswan"),
        ("child", "pqike"),
        ("ike", "pqike"),
        ("child", "strongswan"),
    ]
    ike_initiator = p.pq_initiator  # pqike's role in the current IKE_SA
    for what, by in [("none", "-"), *steps]:
        before = one_sa(p.pq)
        r: Any = None
        if what == "child":
            r = (
                p.pq.rekey(child="net")
                if by == "pqike"
                else p.ss.swanctl("--rekey", "--child", "net")
            )
        elif what == "ike":
            r = (
                p.pq.rekey(ike=ike_pq)
                if by == "pqike"
                else p.ss.swanctl("--rekey", "--ike", ike_ss)
            )
            ike_initiator = by == "pqike"  # the rekey's starter initiates the new IKE_SA
        assert r is None or r.ok, f"{r.output}\n{p.pq.tail()}"

        def done(a, b, what=what, before=before) -> bool:  # type: ignore[no-untyped-def]
            if what == "ike":
                return (a.spi_i, a.spi_r) != (before.spi_i, before.spi_r)
            if what == "child":
                return a.children[0].spi_in != before.children[0].spi_in
            return True

        pq_sa, _ = wait_agreement(p.pq, p.ss, ike_initiator, ready=done)
        assert pq_sa.ppk  # a rekeyed IKE_SA keeps the PPK in its SK_d
        res = ping(p.topo.carol, p.topo.moon_intranet, src="10.3.0.1", count=2)
        assert res.returncode == 0 and " 0% packet loss" in res.stdout, (what, by, res.stdout)
    assert not p.pq.grep(r"ICV mismatch|integrity check failed"), p.pq.tail()
    assert_ppk_on_both(p, True)
    show(p, r"PPK|rekeyed")


# --------------------------------------------------------------------------- required, missing


REQUIRED_MISSING = [
    # id, pqike's settings, charon's, what pqike logs, what charon logs
    pytest.param(
        "initiator",
        {},
        {**BOTH, "required": True},
        r"received AUTHENTICATION_FAILED notify error: responder 'moon\.strongswan\.org' "
        r"rejected our authentication",
        r"PPK required but peer does not support PPK",
        id="pqike-initiator-without-ppk",
    ),
    pytest.param(
        "initiator",
        {**BOTH, "required": True},
        {"ppks": OTHER},
        rf"; we require PPK_ID '{PPK_ID}' \(no NO_PPK_AUTH\): has it that PPK\?",
        rf"no PPK for '{PPK_ID}' found, ignored because PPK is not required",
        id="pqike-initiator-requires-responder-lacks-it",
    ),
    pytest.param(
        "responder",
        {**BOTH, "required": True},
        {},
        r"PPK required but peer does not support PPK",
        r"received AUTHENTICATION_FAILED notify error",
        id="pqike-responder-requires-initiator-without-ppk",
    ),
    pytest.param(
        "responder",
        {**BOTH, "required": True},
        {"ppk_id": PPK_ID},  # named, but charon has no such secret: no PPK_IDENTITY
        r"PPK required but no PPK_IDENTITY received",
        rf"no PPK for '{PPK_ID}' found, ignored because PPK is not required",
        id="pqike-responder-requires-initiator-lacks-secret",
    ),
]


@pytest.mark.parametrize(("role", "pq", "ss", "pq_says", "ss_says"), REQUIRED_MISSING)
def test_ppk_required_but_missing(pair, role, pq, ss, pq_says, ss_says) -> None:  # type: ignore[no-untyped-def]
    p = pair(role)
    start(p, pq, ss)
    r = initiate(p)
    assert not r.ok, r.output
    assert p.pq.grep(pq_says), p.pq.tail()  # type: ignore[union-attr]
    assert p.ss.grep(ss_says), p.ss.log_text()  # type: ignore[union-attr]
    # the responder answered IKE_AUTH with AUTHENTICATION_FAILED, nothing else
    responder = p.ss if p.pq_initiator else p.pq
    assert responder.grep(r"generating IKE_AUTH response \d+ \[ N\(AUTH_FAILED\) \]")  # type: ignore[union-attr]
    time.sleep(0.3)
    assert p.pq.list_sas() == [] and p.ss.list_sas() == []  # type: ignore[union-attr]
    show(p, r"PPK|AUTH_FAILED|AUTHENTICATION_FAILED")


# --------------------------------------------------------------------------- optional, missing


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("auth", ["psk", "pubkey"], ids=["psk", "ecdsa"])
def test_ppk_optional_and_missing_falls_back(pair, pki, role: str, auth: str) -> None:  # type: ignore[no-untyped-def]
    """carol names PPK_ID pqike-ppk-1 and lets it be optional; moon has PPKs (so it answers
    USE_PPK) but not that one: moon checks carol's NO_PPK_AUTH, both go on without a PPK."""
    p = pair(role)
    carol, moon = dict(BOTH), {"ppks": OTHER}
    pq, ss = (carol, moon) if p.pq_initiator else (moon, carol)
    files = pki("ecdsa-p256") if auth == "pubkey" else None
    start(p, pq, ss, auth=auth, files=files)
    r = initiate(p)
    assert r.ok, f"{r.output}\n{p.pq.tail()}"  # type: ignore[union-attr]
    wait_agreement(p.pq, p.ss, p.pq_initiator)  # type: ignore[arg-type]
    assert_ppk_on_both(p, False)
    carol_peer, moon_peer = (p.pq, p.ss) if p.pq_initiator else (p.ss, p.pq)
    assert moon_peer.grep(  # type: ignore[union-attr]
        rf"no PPK for '{PPK_ID}' found, ignored because PPK is not required"
    )
    assert moon_peer.grep(r"no PPK available, using NO_PPK_AUTH notify")  # type: ignore[union-attr]
    assert carol_peer.grep(rf"peer didn't use PPK for PPK_ID '{PPK_ID}'")  # type: ignore[union-attr]
    show(p, r"PPK")
