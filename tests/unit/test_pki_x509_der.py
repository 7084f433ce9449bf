"""pqike's X.509 encoder (pqike.auth.x509_der) against cryptography's CertificateBuilder for
the key types both handle: the same fields give the same TBSCertificate. No liboqs needed."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pqike import pki
from pqike.auth.certs import cert_spki_der, verify_chain
from pqike.auth.keys import spki_der

CA_DN = "C=CH, O=Cyber, CN=Cyber Root CA"
MOON_DN = "C=CH, O=Cyber, CN=moon.strongswan.org"
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)

CLASSIC = {
    "ed25519": None,
    "ecdsa-p384": hashes.SHA384(),
    "rsa": hashes.SHA256(),
    "mldsa44": None,
}


def _reference_builder(
    subject: str, issuer: str, pub: object, serial: int, not_after: dt.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(pki.parse_dn(subject))
        .issuer_name(pki.parse_dn(issuer))
        .public_key(pub)  # type: ignore[arg-type]
        .serial_number(serial)
        .not_valid_before(START)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)  # type: ignore[arg-type]
    )


def _ca_exts(b: x509.CertificateBuilder, path_len: int | None) -> x509.CertificateBuilder:
    usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    return b.add_extension(x509.BasicConstraints(True, path_len), critical=True).add_extension(
        usage, critical=True
    )


@pytest.mark.parametrize("kind", sorted(CLASSIC))
def test_encoder_matches_cryptography(kind: str) -> None:
    """Same fields in, same TBSCertificate out (and the same certificate where signatures are
    deterministic); not_after in 2055 exercises GeneralizedTime."""
    key = pki.generate_key("rsa", bits=2048) if kind == "rsa" else pki.generate_key(kind)
    late = dt.datetime(2055, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    ca = pki.self_signed_ca(key, CA_DN, serial=0x80, not_before=START, not_after=late, path_len=1)
    want = _ca_exts(_reference_builder(CA_DN, CA_DN, key.public_key(), 0x80, late), 1)
    want_ca = want.sign(key, CLASSIC[kind])  # type: ignore[arg-type]
    assert ca.tbs_certificate_bytes == want_ca.tbs_certificate_bytes
    ee_key = ec.generate_private_key(ec.SECP256R1())
    sans = ["moon.strongswan.org", "192.168.0.1", "C=CH, CN=dir"]
    ee = pki.issue_certificate(
        ca,
        key,
        ee_key,
        MOON_DN,
        san=sans,
        flags=["serverAuth", "ikeIntermediate"],
        serial=12345678901234567890,
        not_before=START,
        not_after=START.replace(year=2030),
        ca=True,
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())  # type: ignore[arg-type]
    ref = (
        _reference_builder(
            MOON_DN, CA_DN, ee_key.public_key(), 12345678901234567890, START.replace(year=2030)
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .add_extension(x509.SubjectAlternativeName([pki.parse_san(s) for s in sans]), False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ObjectIdentifier("1.3.6.1.5.5.8.2.2")]
            ),
            critical=False,
        )
    )
    want_ee = _ca_exts(ref, None).sign(key, CLASSIC[kind])  # type: ignore[arg-type]
    assert ee.tbs_certificate_bytes == want_ee.tbs_certificate_bytes
    if kind == "ed25519" or isinstance(key, rsa.RSAPrivateKey):  # deterministic signatures
        assert ee == want_ee and ca == want_ca
    assert verify_chain(ee, [ca], now=NOW) == [ee, ca]
    assert spki_der(ee_key) == cert_spki_der(ee)
