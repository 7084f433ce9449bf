"""The ``pki`` click group: gen -> self -> issue -> print, files written as PEM."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner

from pqike.auth.certs import Identity, load_certificate, match_identity, verify_chain
from pqike.auth.keys import KeyType, key_type, load_private_key, load_public_key
from pqike.pki import pki


def _run(*args: str) -> str:
    result = CliRunner().invoke(pki, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_ca_and_end_entity_workflow(tmp_path: Path) -> None:
    ca_key, ca_cert = tmp_path / "caKey.pem", tmp_path / "caCert.pem"
    moon_key, moon_cert = tmp_path / "moonKey.pem", tmp_path / "moonCert.pem"
    _run("gen", "--type", "mldsa87", "--outfile", str(ca_key))
    assert stat.S_IMODE(ca_key.stat().st_mode) == 0o600
    assert key_type(load_private_key(ca_key.read_bytes())) is KeyType.ML_DSA_87
    _run("self", "--in", str(ca_key), "--dn", "C=CH, O=strongSwan Project, CN=Root CA",
         "--outfile", str(ca_cert))
    _run("gen", "--type", "ecdsa-p384", "--outfile", str(moon_key))
    pub = _run("pub", "--in", str(moon_key))
    assert key_type(load_public_key(pub.encode())) is KeyType.ECDSA
    (tmp_path / "moonPub.pem").write_text(pub)
    _run("issue", "--cacert", str(ca_cert), "--cakey", str(ca_key),
         "--in", str(tmp_path / "moonPub.pem"), "--dn", "C=CH, O=strongSwan Project, CN=moon",
         "--san", "moon.strongswan.org", "--san", "192.168.0.1", "--flag", "serverAuth",
         "--outfile", str(moon_cert))
    ca, moon = load_certificate(ca_cert.read_bytes()), load_certificate(moon_cert.read_bytes())
    assert verify_chain(moon, [ca]) == [moon, ca]
    assert match_identity(moon, Identity.from_string("192.168.0.1"))
    text = _run("print", "--in", str(moon_cert))
    assert 'subject:  "C=CH, O=strongSwan Project, CN=moon"' in text
    assert "pubkey:    ECDSA 384 bits" in text and "flags:     serverAuth" in text
    assert "signature: ML_DSA_87" in text


def test_gen_to_stdout_and_errors(tmp_path: Path) -> None:
    out = _run("gen", "--type", "ed25519")
    assert out.startswith("-----BEGIN PRIVATE KEY-----")
    bad = CliRunner().invoke(pki, ["self", "--in", "/dev/null", "--dn", "CN=x"])
    assert bad.exit_code != 0 and "Error" in bad.output
