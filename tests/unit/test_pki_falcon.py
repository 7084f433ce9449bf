"""Falcon certificates issued by pqike's own X.509 encoder: Falcon CAs over ML-DSA and Falcon
end entities, an ML-DSA CA over a Falcon end entity, their encoding as pq-strongswan's oqs
plugin writes it, chain verification, Falcon private keys, and the pki CLI for them."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pqike import pki
from pqike.auth import _der
from pqike.auth.certs import (
    cert_public_key,
    cert_signature_scheme,
    cert_spki_der,
    format_certificate,
    verify_chain,
)
from pqike.auth.errors import CertificateError
from pqike.auth.keys import (
    FalconPrivateKey,
    load_private_key,
    private_key_pem,
    public_key_of,
    spki_der,
)
from pqike.auth.oqs_support import liboqs_unavailable_reason, oqs_module
from pqike.auth.schemes import default_scheme
from pqike.auth.x509_der import TbsCertificate, sign_certificate

OQS_REASON = liboqs_unavailable_reason()
pytestmark = pytest.mark.skipif(OQS_REASON is not None, reason=f"liboqs: {OQS_REASON}")

CA_DN = "C=CH, O=Cyber, CN=Cyber Root CA"
MOON_DN = "C=CH, O=Cyber, CN=moon.strongswan.org"
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
# strongSwan oid.txt: 1.3.9999.3.1 falcon512, 1.3.9999.3.4 falcon1024; ML-DSA: NIST's
# 2.16.840.1.101.3.4.3.18/19; parameters absent for all of them
ALG_ID = {
    "falcon512": bytes.fromhex("300706052bce0f0301"),
    "falcon1024": bytes.fromhex("300706052bce0f0304"),
    "mldsa65": bytes.fromhex("300b0609608648016503040312"),
    "mldsa87": bytes.fromhex("300b0609608648016503040313"),
}
SCHEME = {
    "falcon512": "FALCON_512",
    "falcon1024": "FALCON_1024",
    "mldsa65": "ML_DSA_65",
    "mldsa87": "ML_DSA_87",
}
LIBOQS_NAME = {"falcon512": "Falcon-512", "falcon1024": "Falcon-1024"}


@dataclass
class Chain:
    ca_kind: str
    ee_kind: str
    ca_key: object
    ca: x509.Certificate
    ee_key: object
    ee: x509.Certificate


def _chain(ca_kind: str, ee_kind: str) -> Chain:
    ca_key = pki.generate_key(ca_kind)
    ca = pki.self_signed_ca(ca_key, CA_DN, not_before=START)
    ee_key = pki.generate_key(ee_kind)
    ee = pki.issue_certificate(
        ca, ca_key, ee_key, MOON_DN, san=["moon.strongswan.org"], not_before=START
    )
    return Chain(ca_kind, ee_kind, ca_key, ca, ee_key, ee)


COMBOS = [
    ("falcon1024", "mldsa87"),  # the walkthrough's CA (with ML-DSA for its Dilithium5)
    ("falcon1024", "falcon1024"),
    ("falcon512", "falcon512"),
    ("mldsa65", "falcon1024"),
]


@pytest.fixture(scope="module", params=COMBOS, ids=lambda c: f"{c[0]}-ca-{c[1]}-ee")
def chain(request: pytest.FixtureRequest) -> Chain:
    return _chain(*request.param)


def _outer(cert: x509.Certificate) -> tuple[bytes, bytes, bytes]:
    """(TBSCertificate DER, signatureAlgorithm DER, signature) decoded by hand."""
    tbs, alg, sig = _der.read_all(_der.read_single(cert.public_bytes(Encoding.DER), 0x30).value)
    assert sig.tag == 0x03 and sig.value[0] == 0
    return tbs.encoded, alg.encoded, sig.value[1:]


def _raw_public(key: object) -> bytes:
    return public_key_of(key).public_bytes_raw()  # type: ignore[arg-type,union-attr]


def test_chain_verifies(chain: Chain) -> None:
    assert verify_chain(chain.ee, [chain.ca], now=NOW) == [chain.ee, chain.ca]
    assert verify_chain(chain.ca, [chain.ca], now=NOW) == [chain.ca]
    assert _raw_public(cert_public_key(chain.ee)) == _raw_public(chain.ee_key)


def test_encoding_is_pq_strongswans(chain: Chain) -> None:
    """signatureAlgorithm inside and outside the TBS is the key's AlgorithmIdentifier without
    parameters, and the signature is a plain liboqs signature over the TBS DER."""
    for cert in (chain.ca, chain.ee):
        tbs, alg, sig = _outer(cert)
        assert alg == ALG_ID[chain.ca_kind]
        fields = _der.read_all(_der.read_single(tbs, 0x30).value)
        assert fields[0].encoded == bytes.fromhex("a003020102")  # v3
        assert fields[2].encoded == alg  # RFC 5280 §4.1.2.3: the same AlgorithmIdentifier
        assert cert_signature_scheme(cert).name == SCHEME[chain.ca_kind]
        if chain.ca_kind in LIBOQS_NAME:
            with oqs_module().Signature(LIBOQS_NAME[chain.ca_kind]) as verifier:
                assert verifier.verify(tbs, sig, _raw_public(chain.ca_key))
    if chain.ee_kind in LIBOQS_NAME:
        raw = _raw_public(chain.ee_key)
        bits = b"\x03\x82" + (len(raw) + 1).to_bytes(2, "big") + b"\x00" + raw
        body = ALG_ID[chain.ee_kind] + bits
        assert cert_spki_der(chain.ee) == b"\x30\x82" + len(body).to_bytes(2, "big") + body


def test_key_identifiers_and_summary(chain: Chain) -> None:
    ski = chain.ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    aki = chain.ee.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski
    assert ski == hashlib.sha1(_raw_public(chain.ca_key)).digest()  # method 1 over raw key
    text = format_certificate(chain.ee, now=NOW, detailed=True)
    bits = 8 * len(_raw_public(chain.ee_key))
    assert f"  pubkey:    {SCHEME[chain.ee_kind]} {bits} bits\n" in text
    assert "  altNames:  moon.strongswan.org\n" in text


def test_tampered_tbs_is_rejected(chain: Chain) -> None:
    der = bytearray(chain.ee.public_bytes(Encoding.DER))
    pos = der.index(b"moon.strongswan.org")  # the subject CN, inside the signed part
    der[pos] ^= 0x20
    tampered = x509.load_der_x509_certificate(bytes(der))
    with pytest.raises(CertificateError, match=r"^signature of 'C=CH, O=Cyber, CN=Moon\."):
        verify_chain(tampered, [chain.ca], now=NOW)


def test_tampered_signature_is_rejected(chain: Chain) -> None:
    der = bytearray(chain.ee.public_bytes(Encoding.DER))
    der[-10] ^= 0x01
    tampered = x509.load_der_x509_certificate(bytes(der))
    with pytest.raises(CertificateError, match=f"^signature of '{MOON_DN}' by '{CA_DN}' invalid$"):
        verify_chain(tampered, [chain.ca], now=NOW)


def test_wrong_issuer_is_rejected(chain: Chain) -> None:
    other_key = pki.generate_key(chain.ca_kind)
    impostor = pki.self_signed_ca(other_key, CA_DN, not_before=START)  # same name, other key
    with pytest.raises(CertificateError, match=f"^no trusted CA for issuer '{CA_DN}' "):
        verify_chain(chain.ee, [impostor], now=NOW)
    # without an authorityKeyIdentifier to tell them apart, the impostor's key must fail
    bare = TbsCertificate(
        7, chain.ca.subject, pki.parse_dn(MOON_DN), START, NOW, spki_der(chain.ee_key)
    )
    no_aki = sign_certificate(bare, chain.ca_key, default_scheme(chain.ca_key))  # type: ignore[arg-type]
    assert verify_chain(no_aki, [chain.ca], now=NOW) == [no_aki, chain.ca]
    with pytest.raises(CertificateError, match=f"^signature of '{MOON_DN}' by '{CA_DN}' invalid$"):
        verify_chain(no_aki, [impostor], now=NOW)


def test_falcon_private_key_is_pq_strongswans_pkcs8() -> None:
    """oqs_private_key.c: SEQUENCE { 0, AlgorithmIdentifier, OCTET STRING { OCTET STRING
    { secret key || public key } } }; pqike's older flat form still loads."""
    for kind, header, flat_header in (
        (
            "falcon512",
            "30820896020100300706052bce0f03010482088604820882",
            "30820892020100300706052bce0f030104820882",
        ),
        (
            "falcon1024",
            "30821016020100300706052bce0f03040482100604821002",
            "30821012020100300706052bce0f030404821002",
        ),
    ):
        key = pki.generate_key(kind)
        assert isinstance(key, FalconPrivateKey)
        der = _pem_body(private_key_pem(key))
        assert der == bytes.fromhex(header) + key.secret + key.public.raw
        for blob in (der, private_key_pem(key)):  # pki --gen writes DER by default
            again = load_private_key(blob)
            assert isinstance(again, FalconPrivateKey) and again.secret == key.secret
        flat = bytes.fromhex(flat_header) + key.secret + key.public.raw
        assert load_private_key(flat) == key


def _pem_body(pem: bytes) -> bytes:
    import base64

    return base64.b64decode(b"".join(pem.strip().splitlines()[1:-1]))


# --- the pki CLI -----------------------------------------------------------------------------


def _pki(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(pki.pki, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def test_cli_falcon_ca_workflow(tmp_path: Path) -> None:
    names = "caKey caCert moonKey moonCert carolKey carolPub carolCert otherKey otherCert"
    f = {n: str(tmp_path / f"{n}.pem") for n in names.split()}
    _pki("gen", "--type", "falcon1024", "--outfile", f["caKey"])
    _pki("self", "--in", f["caKey"], "--dn", CA_DN, "--outfile", f["caCert"])
    _pki("gen", "--type", "mldsa87", "--outfile", f["moonKey"])
    ca = ["--cacert", f["caCert"], "--cakey", f["caKey"]]
    _pki("issue", *ca, "--in", f["moonKey"], "--dn", MOON_DN, "--outfile", f["moonCert"])
    _pki("gen", "--type", "falcon512", "--outfile", f["carolKey"])
    Path(f["carolPub"]).write_text(_pki("pub", "--in", f["carolKey"]))
    carol = ["--dn", "C=CH, O=Cyber, CN=carol@strongswan.org", "--san", "carol@strongswan.org"]
    _pki("issue", *ca, "--in", f["carolPub"], *carol, "--outfile", f["carolCert"])
    text = _pki("print", "--in", f["caCert"])
    assert "  pubkey:    FALCON_1024 14344 bits\n" in text
    assert "  signature: FALCON_1024, " in text and "  flags:     CA self-signed\n" in text
    assert "  pubkey:    FALCON_512 7176 bits\n" in _pki("print", "--in", f["carolCert"])
    for cert in ("moonCert", "carolCert"):
        out = _pki("verify", "--in", f[cert], "--cacert", f["caCert"])
        assert out == "certificate trusted, lifetimes valid\n"
    assert _pki("verify", "--in", f["caCert"]) == "certificate trusted, lifetimes valid\n"
    out = _pki("verify", "--in", f["moonCert"], code=1)
    assert "certificate untrusted: no CA certificate given and the certificate is not" in out
    # a CA of the same name with another key
    _pki("gen", "--type", "falcon1024", "--outfile", f["otherKey"])
    _pki("self", "--in", f["otherKey"], "--dn", CA_DN, "--outfile", f["otherCert"])
    out = _pki("verify", "--in", f["moonCert"], "--cacert", f["otherCert"], code=1)
    assert f"certificate untrusted: no trusted CA for issuer '{CA_DN}'" in out


def test_cli_verify_rejects_a_tampered_self_signed_ca(tmp_path: Path) -> None:
    key = pki.generate_key("falcon1024")
    der = bytearray(pki.self_signed_ca(key, CA_DN).public_bytes(Encoding.DER))
    der[der.index(b"Cyber Root CA")] ^= 0x20
    (tmp_path / "ca.der").write_bytes(bytes(der))
    out = _pki("verify", "--in", str(tmp_path / "ca.der"), code=1)
    assert "certificate untrusted: signature of the self-signed certificate is invalid" in out
