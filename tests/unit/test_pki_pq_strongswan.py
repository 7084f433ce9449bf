"""Falcon keys and certificates across pqike and pq-strongswan's own ``pki`` (strongSwan
6.0.0beta6 with its oqs plugin, built by scripts/pq-strongswan.sh): each side parses, verifies
and issues under the other's keys and certificates. No root needed, only the build.

pq-strongswan 6.0.0beta6 knows no ML-DSA, so it parses none of pqike's ML-DSA certificates;
Falcon CAs over ML-DSA end entities are checked on pqike's side only (test_pki_falcon.py).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from pqike import pki
from pqike.auth.certs import (
    cert_public_key,
    format_certificate,
    load_certificate_file,
    verify_chain,
)
from pqike.auth.keys import KeyType, key_type, load_private_key, spki_der
from pqike.auth.oqs_support import liboqs_unavailable_reason
from pqike.auth.payload import sign_auth_data, verify_auth_data
from pqike.auth.schemes import default_scheme
from pqike.wire.iana import HashAlgorithm

PREFIX = Path(os.environ.get("PQIKE_PQSS_PREFIX", "/var/cache/pqike/pq-strongswan"))
PKI = PREFIX / "bin" / "pki"
OQS_REASON = liboqs_unavailable_reason()
pytestmark = [
    pytest.mark.skipif(OQS_REASON is not None, reason=f"liboqs: {OQS_REASON}"),
    pytest.mark.skipif(
        not os.access(PKI, os.X_OK),
        reason=f"no pq-strongswan pki at {PKI}: scripts/pq-strongswan.sh",
    ),
]
# the walkthrough's strongswan.conf: pki loads the oqs plugin explicitly
PKI_CONF = "pki {\n  load = random drbg x509 pubkey pkcs1 pkcs8 pem openssl oqs\n}\n"
CA_DN = "C=CH, O=Cyber, CN=Cyber Root CA"


def _pki(tmp: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """pq-strongswan's pki with the oqs plugin; stdout stays bytes (DER by default)."""
    conf = tmp / "strongswan.conf"
    if not conf.exists():
        conf.write_text(PKI_CONF)
    env = {**os.environ, "STRONGSWAN_CONF": str(conf)}
    done = subprocess.run([str(PKI), *args], capture_output=True, env=env, timeout=60, check=False)
    if check:
        assert done.returncode == 0, (done.stdout + done.stderr).decode(errors="replace")
    return done


def _text(tmp: Path, *args: str) -> str:
    return _pki(tmp, *args).stdout.decode()


def _colon_sha1(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in hashlib.sha1(data).digest())


def test_pqike_takes_pq_strongswans_keys_and_certificates(tmp_path: Path) -> None:
    """pki --gen (DER, its default), --self, --issue: pqike loads, verifies, signs with them."""
    ca_key, ca_cert = tmp_path / "caKey.der", tmp_path / "caCert.der"
    ee_key, ee_cert = tmp_path / "carolKey.der", tmp_path / "carolCert.der"
    ca_key.write_bytes(_pki(tmp_path, "--gen", "--type", "falcon1024").stdout)
    ca_cert.write_bytes(_pki(tmp_path, "--self", "--ca", "--in", str(ca_key), "--dn", CA_DN).stdout)
    ee_key.write_bytes(_pki(tmp_path, "--gen", "--type", "falcon512").stdout)
    issue = ["--issue", "--cacert", str(ca_cert), "--cakey", str(ca_key), "--type", "priv"]
    carol = ["--dn", "C=CH, O=Cyber, CN=carol@strongswan.org", "--san", "carol@strongswan.org"]
    ee_cert.write_bytes(_pki(tmp_path, *issue, "--in", str(ee_key), *carol).stdout)
    ca, ee = load_certificate_file(ca_cert), load_certificate_file(ee_cert)
    assert verify_chain(ee, [ca]) == [ee, ca]
    key = load_private_key(ee_key.read_bytes())
    assert key_type(key) is KeyType.FALCON_512
    assert spki_der(key) == spki_der(cert_public_key(ee))
    assert "  pubkey:    FALCON_1024 14344 bits\n" in format_certificate(ca, detailed=True)
    octets = b"IKE_AUTH signed octets"
    auth = sign_auth_data(key, octets, default_scheme(key))
    assert verify_auth_data(cert_public_key(ee), octets, auth, [HashAlgorithm.IDENTITY])
    # pqike issues under pq-strongswan's CA key and certificate
    moon_key = pki.generate_key("mldsa87")
    moon = pki.issue_certificate(ca, load_private_key(ca_key.read_bytes()), moon_key, "CN=moon")
    assert verify_chain(moon, [ca]) == [moon, ca]


def test_pq_strongswan_takes_pqikes_keys_and_certificates(tmp_path: Path) -> None:
    """pqike's Falcon CA and end entity pass pki --verify; pki --print reads pqike's keys
    (same keyid); pki --issue signs with pqike's CA key, and pqike verifies the result."""
    ca_key = pki.generate_key("falcon1024")
    ca = pki.self_signed_ca(ca_key, CA_DN)
    ee_key = pki.generate_key("falcon512")
    ee = pki.issue_certificate(
        ca, ca_key, ee_key, "C=CH, O=Cyber, CN=moon.strongswan.org", san=["moon.strongswan.org"]
    )
    files = {
        "caKey.pem": pki.private_key_pem(ca_key),
        "caCert.pem": pki.certificate_pem(ca),
        "moonKey.pem": pki.private_key_pem(ee_key),
        "moonCert.pem": pki.certificate_pem(ee),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    f = {name: str(tmp_path / name) for name in files}
    for cert, extra in (("moonCert.pem", ["--cacert", f["caCert.pem"]]), ("caCert.pem", [])):
        out = _text(tmp_path, "--verify", "--in", f[cert], *extra)
        assert out == "certificate trusted, lifetimes valid\n"
    for name, key, kind in (
        ("caKey.pem", ca_key, "Falcon1024 14344"),
        ("moonKey.pem", ee_key, "Falcon512 7176"),
    ):
        out = _text(tmp_path, "--print", "--type", "priv", "--in", f[name])
        assert f"  privkey:   {kind} bits\n" in out
        assert f"  keyid:     {_colon_sha1(spki_der(key))}\n" in out
    out = _text(tmp_path, "--print", "--in", f["moonCert.pem"])
    assert "  altNames:  moon.strongswan.org\n" in out and "  pubkey:    Falcon512 7176 bits" in out
    issue = ["--issue", "--cacert", f["caCert.pem"], "--cakey", f["caKey.pem"], "--type", "priv"]
    eve = _pki(tmp_path, *issue, "--in", f["moonKey.pem"], "--dn", "C=CH, CN=eve").stdout
    (tmp_path / "eve.der").write_bytes(eve)
    eve_cert = load_certificate_file(tmp_path / "eve.der")
    assert verify_chain(eve_cert, [ca]) == [eve_cert, ca]


def test_pq_strongswan_rejects_a_tampered_pqike_certificate(tmp_path: Path) -> None:
    ca_key = pki.generate_key("falcon1024")
    ca = pki.self_signed_ca(ca_key, CA_DN)
    cert = pki.issue_certificate(ca, ca_key, pki.generate_key("falcon512"), "CN=moon")
    ee = bytearray(cert.public_bytes(Encoding.DER))
    ee[ee.index(b"moon")] ^= 0x20
    (tmp_path / "ca.pem").write_bytes(pki.certificate_pem(ca))
    (tmp_path / "ee.der").write_bytes(bytes(ee))
    done = _pki(
        tmp_path,
        "--verify",
        "--in",
        str(tmp_path / "ee.der"),
        "--cacert",
        str(tmp_path / "ca.pem"),
        check=False,
    )
    assert done.returncode == 1 and b"certificate untrusted" in done.stdout
