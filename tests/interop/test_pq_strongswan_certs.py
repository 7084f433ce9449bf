"""The walkthrough's authentication against pq-strongswan: a Falcon-1024 CA over Falcon-1024
end entities (the reference 004 has Dilithium5 end entities; pq-strongswan 6.0.0beta6 with
liboqs 0.16 has no Dilithium/ML-DSA, and Falcon-1024 keeps the reference's NIST level 5).
The walkthrough's IKE_SA (x25519 + Kyber-L3 + BIKE-L3 + HQC-L3) with its ``net`` child,
fragment_size 1480, swanctl's x509/ x509ca/ private/ layout as in the reference, in three
pairings (pq-strongswan <-> pq-strongswan, pqike -> pq-strongswan, pq-strongswan -> pqike):
IKE_SA established, both ends authenticated with FALCON_1024, a ping through ``net``, and
IKE_AUTH's sizes and fragments from the senders' logs ("SIZES" lines, pytest -s).

Certificates issued by pqike's pki, and by pq-strongswan's own pki (``--gen --type
falcon1024``, ``--self``, ``--issue``) for the two pqike pairings.

Needs root, scripts/pq-strongswan.sh's build and liboqs for pqike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from pqike.auth.certs import load_certificate
from tests.interop.test_pq_strongswan import (
    CAROL_ID,
    MOON_ID,
    SKIPPED,
    WALK_IKE,
    Daemons,
    Exchange,
    Marks,
    agreed,
    daemons,
    initiate,
    pair_up,
    ping,
    pq_env,  # noqa: F401 (fixture)
    pqike_tree,
    swanctl_conf,
    terminate,
    wait_for,
)
from tests.unit.test_pki_pq_strongswan import _pki

pytestmark = pytest.mark.interop

PAIRINGS = ("pq-strongswan", "pqike-initiator", "pqike-responder")
LABEL = {
    "pq-strongswan": "pq-strongswan<->pq-strongswan",
    "pqike-initiator": "pqike->pq-strongswan",
    "pqike-responder": "pq-strongswan->pqike",
}
CA_DN = "C=CH, O=Cyber, CN=Cyber Root CA"
PEERS = {"carol": CAROL_ID, "moon": MOON_ID}
# pqike's and charon's log line for a peer authenticated with a Falcon-1024 signature
AUTHENTICATED = r"authentication of '{}' with FALCON_1024 successful"

Files = dict[str, dict[str, bytes]]  # peer -> path in its config directory -> PEM


def pqike_pki(tmp: Path) -> Files:
    """pqike's pki: Falcon-1024 CA and end entities (CN and SAN = identity)."""
    from pqike.pki import create_peer_pki

    create_peer_pki(
        {who: (tmp / who, ident) for who, ident in PEERS.items()},
        kind="falcon1024",
        ca_kind="falcon1024",
        ca_dn=CA_DN,
    )
    return {
        who: {str(p.relative_to(tmp / who)): p.read_bytes() for p in (tmp / who).rglob("*.pem")}
        for who in PEERS
    }


def pq_strongswan_pki(tmp: Path) -> Files:
    """The same from pq-strongswan's pki, as the reference made them (PEM throughout)."""
    pem = ("--outform", "pem")
    ca_key = _pki(tmp, "--gen", "--type", "falcon1024", *pem).stdout
    (tmp / "caKey.pem").write_bytes(ca_key)
    ca = _pki(tmp, "--self", "--ca", "--in", str(tmp / "caKey.pem"), "--dn", CA_DN, *pem).stdout
    (tmp / "caCert.pem").write_bytes(ca)
    out: Files = {}
    for who, ident in PEERS.items():
        key = _pki(tmp, "--gen", "--type", "falcon1024", *pem).stdout
        (tmp / f"{who}Key.pem").write_bytes(key)
        cert = _pki(
            tmp,
            "--issue",
            "--cacert",
            str(tmp / "caCert.pem"),
            "--cakey",
            str(tmp / "caKey.pem"),
            "--type",
            "priv",
            "--in",
            str(tmp / f"{who}Key.pem"),
            "--dn",
            f"C=CH, O=Cyber, CN={ident}",
            "--san",
            ident,
            *pem,
        ).stdout
        out[who] = {
            "x509ca/caCert.pem": ca,
            f"x509/{who}Cert.pem": cert,
            f"private/{who}Key.pem": key,
        }
    return out


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Files]:
    """Issuer ("pqike" / "pq-strongswan") -> certificates, made once for every pairing (so
    only the AUTH signatures differ between runs)."""
    return {
        "pqike": pqike_pki(tmp_path_factory.mktemp("pki-pqike")),
        "pq-strongswan": pq_strongswan_pki(tmp_path_factory.mktemp("pki-pqss")),
    }


@dataclass
class AuthRun:
    """One walkthrough IKE_SA with certificates: its IKE_AUTH exchange as the senders
    logged it."""

    pairing: str
    exchanges: list[Exchange]

    @property
    def ike_auth(self) -> Exchange:
        (auth,) = [e for e in self.exchanges if e.exchange == "IKE_AUTH"]
        return auth

    def report(self, issuer: str) -> None:
        for e in self.exchanges:
            print(f"SIZES certs {issuer} | {LABEL[self.pairing]} | {e.row()}")


def authenticate(d: Daemons, pairing: str, files: Files) -> AuthRun:
    """carol and moon for ``pairing`` with certificates; establish IKE_SA + net, check both
    authentications and a ping, then take the IKE_SA down."""
    kw: dict[str, Any] = {"esp": "aes256-sha256", "auth": "pubkey"}
    if pairing == "pqike-responder":
        moon: Any = d.pqike(
            "moon", pqike_tree("moon", {"rw": WALK_IKE}, **kw), "userspace", files=files["moon"]
        )
    else:
        moon = d.charon("moon", swanctl_conf("moon", {"rw": WALK_IKE}, **kw), files=files["moon"])
    if pairing == "pqike-initiator":
        tree = pqike_tree("carol", {"home": WALK_IKE}, **kw)
        carol: Any = d.pqike("carol", tree, "userspace", files=files["carol"])
    else:
        conf = swanctl_conf("carol", {"home": WALK_IKE}, **kw)
        carol = d.charon("carol", conf, files=files["carol"])
    marks = Marks(carol, moon)
    initiate(carol, "net", "home")
    snap = wait_for("IKE_SA + net", lambda: agreed(carol, moon))
    assert snap.proposal.endswith("/CURVE_25519/KE1_KYBER_L3/KE2_BIKE_L3/KE3_HQC_L3"), snap
    ping(d.topo.carol, "10.1.0.1")
    exchanges = pair_up(marks.step())
    for peer, other in ((carol, MOON_ID), (moon, CAROL_ID)):
        assert peer.grep(AUTHENTICATED.format(re.escape(other))), peer.log_path
        assert not peer.grep(SKIPPED), peer.log_path
    terminate(carol, "home")
    wait_for("both ends down", lambda: not carol.list_sas() and not moon.list_sas())
    return AuthRun(pairing, exchanges)


@pytest.fixture(scope="module")
def reference_run(
    pq_env: Path,  # noqa: F811 (the fixture imported above)
    tmp_path_factory: pytest.TempPathFactory,
    certs: dict[str, Files],
) -> AuthRun:
    """pq-strongswan <-> pq-strongswan with pqike's certificates: what pqike is compared with."""
    with daemons(tmp_path_factory.mktemp("pqss-auth"), pq_env) as d:
        run = authenticate(d, "pq-strongswan", certs["pqike"])
    run.report("pqike")
    return run


# Notifies of charon's that a pqike pairing's IKE_AUTH lacks (extensions pqike does not
# implement, or that charon sends only to a peer that announced them), with their lengths:
# pqike initiator: MOBIKE and the like, so charon answers without MOBIKE_SUP/ADD_4_ADDR;
# pqike responder: no MOBIKE_SUP, no ADD_4_ADDR (moon's 10.1.0.1 and 10.2.0.1), and charon
# sends MULT_AUTH only to a responder that announced it in IKE_SA_INIT.
NOTIFY_LEN = {"ADD_4_ADDR": 12}  # the others carry no data: 8 bytes
MISSING = {
    "pqike-initiator": (
        ("MOBIKE_SUP", "NO_ADD_ADDR", "MULT_AUTH", "EAP_ONLY", "MSG_ID_SYN_SUP"),
        ("MOBIKE_SUP", "ADD_4_ADDR", "ADD_4_ADDR"),
    ),
    "pqike-responder": (("MULT_AUTH",), ("MOBIKE_SUP", "ADD_4_ADDR", "ADD_4_ADDR")),
}
# Falcon signatures are compressed: their length varies (AUTH data of 1272-1289 bytes in 300
# Falcon-1024 signatures), and AES-CBC pads to 16 bytes; only the AUTH signature differs
# between two runs with the same certificates
SIGNATURE_SLACK = 48


def without(payloads: str, notifies: tuple[str, ...]) -> list[str]:
    out = payloads.split()
    for n in notifies:
        out.remove(f"N({n})")
    return out


def cert_der_len(pem: bytes) -> int:
    return len(load_certificate(pem).public_bytes(Encoding.DER))


@pytest.mark.parametrize("issuer", ["pqike", "pq-strongswan"])
@pytest.mark.parametrize("pairing", PAIRINGS[1:])
def test_walkthrough_auth(
    pq_env: Path,  # noqa: F811
    tmp_path: Path,
    certs: dict[str, Files],
    reference_run: AuthRun,
    pairing: str,
    issuer: str,
) -> None:
    """pqike in either role with the walkthrough's Falcon certificates: established, both
    ends authenticated with FALCON_1024, a ping through net (authenticate), and IKE_AUTH
    with pq-strongswan's payloads, fragments and sizes but for the notifies of MISSING and
    the certificates' own lengths."""
    with daemons(tmp_path, pq_env) as d:
        run = authenticate(d, pairing, certs[issuer])
    run.report(issuer)
    ref = reference_run.ike_auth
    assert run.ike_auth.response is not None and ref.response is not None
    messages = (
        (run.ike_auth.request, ref.request, "carol"),
        (run.ike_auth.response, ref.response, "moon"),
    )
    for (ours, theirs, sender), missing in zip(messages, MISSING[pairing], strict=True):
        assert ours.payloads.split() == without(theirs.payloads, missing), (ours, theirs)
        assert ours.fragments == theirs.fragments, (ours, theirs)
        cert = f"x509/{sender}Cert.pem"
        expected = (
            theirs.size
            - sum(NOTIFY_LEN.get(n, 8) for n in missing)
            + cert_der_len(certs[issuer][sender][cert])
            - cert_der_len(certs["pqike"][sender][cert])
        )
        assert abs(ours.size - expected) <= SIGNATURE_SLACK, (ours.size, expected)
