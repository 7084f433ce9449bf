"""pqike <-> libreswan 5.2 (pluto from scripts/libreswan-root.sh): RSA certificates with RFC 7427
Digital Signature authentication (method 14) and PSK, pqike as initiator (carol, against a
libreswan moon) and as responder (moon, against a libreswan carol).

libreswan signs RFC 7427 RSA only with RSASSA-PSS, and accepts PKCS#1 v1.5 only with
``authby=rsasig`` (not ``authby=rsa-sha2``): pqike's ``rsa_pss`` decides which it sends.

This kernel has XFRM but no ESP: pluto's CHILD_SA install fails ("netlink response for Add SA
esp...: Protocol not supported (errno 93)"). The IKE_SA is what these tests check:
- pqike initiating asks for a childless IKE_SA (RFC 6023, which pluto supports), so nothing is
  installed and both ends hold the IKE_SA;
- pluto initiating includes a CHILD_SA in IKE_AUTH; pqike establishes both, pluto establishes
  the IKE_SA, fails to install the CHILD_SA and deletes it (pqike sees the DELETE);
- a CHILD_SA requested by pqike in IKE_AUTH is answered with TEMPORARY_FAILURE
  (test_child_sa_needs_esp_in_the_kernel).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    load_pem_private_key,
    pkcs12,
)

from tests.harness import netns as nsh
from tests.harness.libreswan import P12_PASSWORD, Pluto, pluto_pids, root_dir, root_problem
from tests.harness.rootdaemon import leaked_mounts
from tests.interop.pqike_peer import PqikePeer

pytestmark = pytest.mark.interop

PSK = "qwerty-psk-0123456789"
ADDR = {"carol": "192.168.0.3", "moon": "192.168.0.2"}
PQ_ID = {"carol": "carol@strongswan.org", "moon": "moon.strongswan.org"}
LS_ID = {"carol": "carol@strongswan.org", "moon": "@moon.strongswan.org"}  # @: an FQDN ID
OTHER = {"carol": "moon", "moon": "carol"}
ROLES = ("initiator", "responder")  # pqike's role
KERNEL_REFUSES_ESP = r"netlink response for Add SA esp\.\S+: Protocol not supported"
# pluto's words for a peer's RFC 7427 signature (the "digital signature" is method 14)
PSS_256 = r"RSASSA-PSS with SHA2_256 digital signature"
PKCS1_256 = r"PKCS#1 1\.5 RSA with SHA2_256 digital signature"
NEEDS_V1_5 = "authentication failed: peer authentication requires policy RSASIG_v1_5"


@pytest.fixture(scope="module")
def ls_env() -> Path:
    if os.geteuid() != 0:
        pytest.skip("not root: libreswan interop needs network namespaces, mounts and chroot")
    if problem := root_problem():
        pytest.skip(problem)
    for tool in ("nsenter", "unshare", "mount", "chroot"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} missing (util-linux/coreutils)")
    nsh.remove_stale()
    return root_dir()


@pytest.fixture(scope="module")
def rsa_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    """peer -> {relative path -> PEM} (pqike's layout) plus "p12" (cert and key for NSS)."""
    from pqike.pki import create_peer_pki

    base = tmp_path_factory.mktemp("pki-rsa")
    create_peer_pki({p: (base / p, PQ_ID[p]) for p in ("carol", "moon")}, kind="rsa")
    out: dict[str, dict[str, bytes]] = {}
    for peer in ("carol", "moon"):
        files = {
            str(p.relative_to(base / peer)): p.read_bytes() for p in (base / peer).rglob("*.pem")
        }
        key = load_pem_private_key(files[f"private/{peer}Key.pem"], None)
        cert = x509.load_pem_x509_certificate(files[f"x509/{peer}Cert.pem"])
        files["p12"] = pkcs12.serialize_key_and_certificates(
            peer.encode(),
            key,
            cert,
            None,
            BestAvailableEncryption(P12_PASSWORD.encode()),  # type: ignore[arg-type]
        )
        out[peer] = files
    return out


def ls_conf(me: str, authby: str) -> str:
    """ipsec.conf for a libreswan carol or moon: host to host, AES-256/SHA-256/X25519 (dh31)
    for IKE, AES-256/SHA-256 without PFS for ESP (pqike's esp_proposals below)."""
    peer = OTHER[me]
    conn = [
        "keyexchange=ikev2",
        f"left={ADDR[me]}",
        f"leftid={LS_ID[me]}",
        f"right={ADDR[peer]}",
        f"rightid={LS_ID[peer]}",
        f"authby={authby}",
        "ike=aes256-sha2_256-dh31",
        "esp=aes256-sha2_256",
        "pfs=no",
        "auto=add",
    ]
    if authby != "secret":
        # rightca: pluto then sends CERTREQ, without which pqike (send_cert = ifasked, as
        # charon) sends no certificate as responder
        conn += [f"leftcert={me}", "rightca=%same"]
    body = "\n".join(f"    {line}" for line in conn)
    return f"config setup\n    ikev1-policy=drop\n\nconn home\n{body}\n"


def pq_tree(me: str, auth: str, rsa_pss: bool = False) -> dict[str, Any]:
    peer = OTHER[me]
    if auth == "psk":
        local: dict[str, Any] = {"auth": "psk", "id": PQ_ID[me]}
        remote: dict[str, Any] = {"auth": "psk", "id": PQ_ID[peer]}
    else:
        local = {
            "auth": "pubkey",
            "id": PQ_ID[me],
            "certs": [f"x509/{me}Cert.pem"],
            "key": f"private/{me}Key.pem",
        }
        remote = {"auth": "pubkey", "id": PQ_ID[peer], "cacerts": ["x509ca/caCert.pem"]}
    conn = {
        "local_addrs": [ADDR[me]],
        "remote_addrs": [ADDR[peer]],
        "proposals": ["aes256-sha256-x25519"],
        "local": local,
        "remote": remote,
        "children": {"net": {"esp_proposals": ["aes256-sha256"]}},
    }
    tree: dict[str, Any] = {
        "daemon": {"fragment_size": 1480, "rsa_pss": rsa_pss},
        "connections": {"home": conn},
    }
    if auth == "psk":
        tree["secrets"] = {"ike-1": {"id-1": PQ_ID["moon"], "id-2": PQ_ID["carol"], "secret": PSK}}
    return tree


@dataclass
class Pair:
    """pqike in one role, pluto in the other, in a fresh carol/moon topology."""

    role: str
    topo: nsh.Topology
    tmp_path: Path
    pq: PqikePeer | None = None
    ls: Pluto | None = None
    stops: list[Callable[[], object]] = field(default_factory=list)

    @property
    def pq_name(self) -> str:
        return "carol" if self.role == "initiator" else "moon"

    @property
    def ls_name(self) -> str:
        return OTHER[self.pq_name]

    def netns(self, name: str) -> str:
        return self.topo.carol if name == "carol" else self.topo.moon

    def start(
        self, auth: str, authby: str, rsa_pss: bool = False, pki: dict | None = None
    ) -> tuple[PqikePeer, Pluto]:
        ls_files = (pki or {}).get(self.ls_name, {})
        self.ls = Pluto(
            self.ls_name,
            self.netns(self.ls_name),
            ls_conf(self.ls_name, authby),
            self.tmp_path / f"ls-{self.ls_name}",
            secrets=f'{LS_ID["moon"]} {LS_ID["carol"]} : PSK "{PSK}"\n',
            ca_certs={"ca": ls_files["x509ca/caCert.pem"]} if ls_files else None,
            pkcs12={self.ls_name: ls_files["p12"]} if ls_files else None,
        )
        self.stops.append(self.ls.stop)
        self.ls.start()
        self.ls.add("home")
        pq_files = {k: v for k, v in (pki or {}).get(self.pq_name, {}).items() if k != "p12"}
        self.pq = PqikePeer(
            self.pq_name,
            self.netns(self.pq_name),
            pq_tree(self.pq_name, auth, rsa_pss),
            self.tmp_path / f"pq-{self.pq_name}",
            listen=ADDR[self.pq_name],
            files=pq_files,
        )
        self.stops.append(self.pq.stop)
        self.pq.start()
        return self.pq, self.ls


@pytest.fixture
def pair(ls_env: Path, tmp_path: Path) -> Iterator[Callable[[str], Pair]]:
    made: list[Pair] = []
    with nsh.topology() as topo:

        def make(role: str) -> Pair:
            made.append(Pair(role, topo, tmp_path))
            return made[-1]

        yield make
        started = {p.ls.pid for p in made if p.ls is not None}
        for p in made:
            for stop in reversed(p.stops):
                stop()
    assert not leaked_mounts(ls_env), leaked_mounts(ls_env)
    # ours only: another test run may have plutos of its own
    alive = started & set(pluto_pids())
    assert not alive, f"pluto processes left: {alive}"


def wait_for(what: str, check: Callable[[], object], timeout: float = 15) -> object:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)
    return found


def _ls_established_both(pq: PqikePeer, ls: Pluto) -> None:
    """pqike and pluto hold the same established IKE_SA."""
    (sa,) = [s for s in pq.list_sas() if s.state == "ESTABLISHED"]
    assert sa.remote_id == PQ_ID[OTHER[pq.name]]
    wait_for("pluto's IKE SA", lambda: ls.ike_established("home"))


# --------------------------------------------------------------------------- RSA certificates

# (libreswan authby, pqike rsa_pss) -> does libreswan accept pqike's signature?
RSA_CASES = [
    pytest.param("rsa-sha2", True, id="rsa-sha2-pss"),
    pytest.param("rsa-sha2", False, id="rsa-sha2-pkcs1-refused"),
    pytest.param("rsasig", True, id="rsasig-pss"),
    pytest.param("rsasig", False, id="rsasig-pkcs1"),
]


@pytest.mark.parametrize(("authby", "rsa_pss"), RSA_CASES)
def test_rsa_pqike_initiator(pair, rsa_pki, authby: str, rsa_pss: bool) -> None:
    pq, ls = pair("initiator").start("pubkey", authby, rsa_pss, rsa_pki)
    ours = "RSA_EMSA_PSS_SHA2_256_SALT_32" if rsa_pss else "RSA_EMSA_PKCS1_SHA2_256"
    r = pq.initiate(ike="home", timeout=15)  # childless: nothing for the kernel
    assert pq.grep(rf"authentication of 'carol@strongswan\.org' \(myself\) with {ours} successful")
    if authby == "rsa-sha2" and not rsa_pss:
        assert r.returncode == 1, r.output
        assert ls.grep(NEEDS_V1_5), ls.log_text()
        # the hint names our padding and the option that changes it
        assert f"signed with {ours}" in r.output and "set rsa_pss = true" in r.output, r.output
        assert pq.list_sas() == [] and not ls.ike_established("home")
        return
    assert r.ok, r.output + pq.tail()
    _ls_established_both(pq, ls)
    theirs = PSS_256 if rsa_pss else PKCS1_256
    assert ls.grep(
        rf"responder established IKE SA; authenticated peer certificate "
        rf"'carol@strongswan\.org' and \d+-bit {theirs}"
    ), ls.log_text()
    # pluto answers with the hash and padding of the initiator's signature
    assert pq.grep(rf"authentication of 'moon\.strongswan\.org' with {ours} successful"), pq.tail()
    assert ls.grep(r"creating childless SA"), ls.log_text()


@pytest.mark.parametrize(("authby", "rsa_pss"), RSA_CASES)
def test_rsa_pqike_responder(pair, rsa_pki, authby: str, rsa_pss: bool) -> None:
    pq, ls = pair("responder").start("pubkey", authby, rsa_pss, rsa_pki)
    ours = "RSA_EMSA_PSS_SHA2_256_SALT_32" if rsa_pss else "RSA_EMSA_PKCS1_SHA2_256"
    ls.up("home", timeout=20)
    # pluto signs with RSASSA-PSS and prefers SHA-512; pqike accepts it and answers
    pq.wait_log(r"authentication of 'carol@strongswan\.org' with RSA_EMSA_PSS_SHA2_512_SALT_64")
    pq.wait_log(rf"authentication of 'moon\.strongswan\.org' \(myself\) with {ours} successful")
    if authby == "rsa-sha2" and not rsa_pss:
        ls.wait_log(NEEDS_V1_5)
        # pluto deletes the IKE_SA it could not authenticate; pqike follows
        pq.wait_log(r"received DELETE for IKE_SA home\[\d+\]")
        wait_for("pqike's IKE_SA gone", lambda: pq.list_sas() == [])
        return
    theirs = PSS_256 if rsa_pss else PKCS1_256
    ls.wait_log(
        rf"initiator established IKE SA; authenticated peer certificate "
        rf"'@moon\.strongswan\.org' and \d+-bit {theirs}"
    )
    # the CHILD_SA fails only in pluto's kernel install; the IKE_SA stays
    ls.wait_log(KERNEL_REFUSES_ESP)
    ls.wait_log(r"IKE SA established but initiator rejected Child SA response")
    _ls_established_both(pq, ls)


# --------------------------------------------------------------------------- PSK


@pytest.mark.parametrize("role", ROLES)
def test_psk(pair, role: str) -> None:
    pq, ls = pair(role).start("psk", "secret")
    if role == "initiator":
        r = pq.initiate(ike="home", timeout=15)
        assert r.ok, r.output + pq.tail()
        assert ls.grep(
            r"responder established IKE SA; authenticated peer using authby=secret and "
            r"ID_USER_FQDN 'carol@strongswan\.org'"
        ), ls.log_text()
    else:
        ls.up("home", timeout=20)
        ls.wait_log(
            r"initiator established IKE SA; authenticated peer using authby=secret and "
            r"ID_FQDN '@moon\.strongswan\.org'"
        )
        ls.wait_log(KERNEL_REFUSES_ESP)
    assert pq.grep(r"authentication of '[^']+' with pre-shared key successful"), pq.tail()
    _ls_established_both(pq, ls)


def test_child_sa_needs_esp_in_the_kernel(pair) -> None:
    """What a CHILD_SA in IKE_AUTH gets from pluto on this kernel: its install fails and it
    answers TEMPORARY_FAILURE, which (as for charon) fails pqike's IKE_SA too."""
    pq, ls = pair("initiator").start("psk", "secret")
    r = pq.initiate(child="net", timeout=15)
    assert r.returncode == 1 and "received TEMPORARY_FAILURE notify error" in r.output, r.output
    assert ls.grep(KERNEL_REFUSES_ESP), ls.log_text()
    assert ls.grep(r"responder established IKE SA"), ls.log_text()
