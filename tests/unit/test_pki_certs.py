"""CA -> moon/carol ML-DSA-87 chain: verification, each failure reason, IKE ID matching,
CERT/CERTREQ data, swanctl-style summaries, and the IKE_AUTH size order."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pqike import pki
from pqike.auth.certs import (
    Identity,
    TrustStore,
    build_certreq_data,
    cert_payload_data,
    cert_public_key,
    cert_signature_scheme,
    certreq_hash,
    dn_string,
    format_certificate,
    format_certificates,
    load_certificate,
    load_certificates,
    match_identity,
    parse_cert_payload,
    parse_certreq_data,
    parse_dn,
    summarize_certificate,
    verify_chain,
)
from pqike.auth.errors import AuthError, CertificateError
from pqike.auth.payload import sign_auth_data
from pqike.auth.schemes import default_scheme
from pqike.wire.iana import CertEncoding, IdType

CA_DN = "C=CH, O=strongSwan Project, CN=strongSwan Root CA"
MOON_DN = "C=CH, O=strongSwan Project, CN=moon.strongswan.org"
CAROL_DN = "C=CH, O=strongSwan Project, CN=carol@strongswan.org"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass
class Pki:
    ca_key: object
    ca: x509.Certificate
    moon_key: object
    moon: x509.Certificate
    carol_key: object
    carol: x509.Certificate


@pytest.fixture(scope="module")
def env() -> Pki:
    ca_key = pki.generate_key("mldsa87")
    ca = pki.self_signed_ca(ca_key, CA_DN, not_before=START)
    moon_key = pki.generate_key("mldsa87")
    moon = pki.issue_certificate(
        ca,
        ca_key,
        moon_key,
        MOON_DN,
        not_before=START,
        san=["moon.strongswan.org", "192.168.0.1", "fec0::1"],
        flags=["serverAuth"],
    )
    carol_key = pki.generate_key("mldsa87")
    carol = pki.issue_certificate(
        ca, ca_key, carol_key.public_key(), CAROL_DN, not_before=START, san=["carol@strongswan.org"]
    )
    return Pki(ca_key, ca, moon_key, moon, carol_key, carol)


def test_chain_ok(env: Pki) -> None:
    assert verify_chain(env.moon, [env.ca], now=NOW) == [env.moon, env.ca]
    assert verify_chain(env.carol, TrustStore([env.ca]), now=NOW) == [env.carol, env.ca]
    assert cert_signature_scheme(env.moon).name == "ML_DSA_87"
    assert verify_chain(env.ca, [env.ca], now=NOW) == [env.ca]


def test_wrong_ca(env: Pki) -> None:
    other_key = pki.generate_key("mldsa44")
    other = pki.self_signed_ca(other_key, "C=CH, O=Other, CN=Other CA", not_before=START)
    with pytest.raises(
        CertificateError, match=f"^no trusted CA for issuer '{CA_DN}' \\(authorityKeyIdentifier "
    ):
        verify_chain(env.moon, [other], now=NOW)
    # same name, different key: the keyid mismatch rules it out, as in strongSwan
    twin = pki.self_signed_ca(other_key, CA_DN, not_before=START)
    with pytest.raises(CertificateError, match="no trusted CA for issuer"):
        verify_chain(env.moon, [twin], now=NOW)


def test_wrong_ca_without_key_identifiers(env: Pki) -> None:
    # No SKI/AKI: the name matches, so the signature check is what fails.
    def bare(key: object, subject: str, issuer: str, signer: object) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(parse_dn(subject))
            .issuer_name(parse_dn(issuer))
            .public_key(key.public_key())  # type: ignore[attr-defined]
            .serial_number(7)
            .not_valid_before(START)
            .not_valid_after(START.replace(year=2030))
        )
        if subject == issuer:
            b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        return b.sign(signer, None)  # type: ignore[arg-type]

    leaf = bare(env.moon_key, MOON_DN, CA_DN, env.ca_key)
    impostor_key = pki.generate_key("mldsa87")
    impostor = bare(impostor_key, CA_DN, CA_DN, impostor_key)
    with pytest.raises(CertificateError, match=f"^signature of '{MOON_DN}' by '{CA_DN}' invalid$"):
        verify_chain(leaf, [impostor], now=NOW)
    assert verify_chain(leaf, [env.ca], now=NOW) == [leaf, env.ca]


def test_bad_signature(env: Pki) -> None:
    der = bytearray(env.moon.public_bytes(serialization.Encoding.DER))
    der[-10] ^= 0x40  # inside the ML-DSA signature BIT STRING
    tampered = x509.load_der_x509_certificate(bytes(der))
    with pytest.raises(CertificateError, match=f"^signature of '{MOON_DN}' by '{CA_DN}' invalid$"):
        verify_chain(tampered, [env.ca], now=NOW)


def test_expired_and_not_yet_valid(env: Pki) -> None:
    old = pki.issue_certificate(
        env.ca,
        env.ca_key,
        env.carol_key,
        CAROL_DN,
        not_before=START,
        not_after=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
    )
    with pytest.raises(
        CertificateError, match=f"^certificate '{CAROL_DN}' expired on Mar 01 00:00:00 UTC 2026$"
    ):
        verify_chain(old, [env.ca], now=NOW)
    future = pki.issue_certificate(
        env.ca,
        env.ca_key,
        env.carol_key,
        CAROL_DN,
        not_before=dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
    )
    with pytest.raises(CertificateError, match="is not valid before Jan 01 00:00:00 UTC 2027"):
        verify_chain(future, [env.ca], now=NOW)
    # an expired trust anchor fails too (the leaf outliving its CA is not checked)
    long = pki.issue_certificate(
        env.ca,
        env.ca_key,
        env.carol_key,
        CAROL_DN,
        not_before=START,
        not_after=dt.datetime(2040, 1, 1, tzinfo=dt.UTC),
    )
    with pytest.raises(
        CertificateError, match=f"^certificate '{CA_DN}' expired on Jan 01 00:00:00 UTC 2036$"
    ):
        verify_chain(long, [env.ca], now=dt.datetime(2037, 1, 1, tzinfo=dt.UTC))


def test_issuer_not_a_ca(env: Pki) -> None:
    fake = pki.issue_certificate(
        env.carol, env.carol_key, pki.generate_key("ed25519"), "C=CH, CN=dave", not_before=START
    )
    with pytest.raises(
        CertificateError, match=f"^issuer certificate '{CAROL_DN}' of 'C=CH, CN=dave' is not a CA$"
    ):
        verify_chain(fake, [env.ca], [env.carol], now=NOW)
    with pytest.raises(CertificateError, match="is not a CA"):
        verify_chain(fake, [env.carol], now=NOW)


def test_intermediate_and_path_length(env: Pki) -> None:
    root_key = pki.generate_key("mldsa65")
    root0 = pki.self_signed_ca(root_key, "C=CH, CN=Root pathlen 0", path_len=0, not_before=START)
    sub_key = pki.generate_key("ecdsa-p384")
    sub = pki.issue_certificate(
        root0, root_key, sub_key, "C=CH, CN=Sub CA", ca=True, not_before=START
    )
    leaf = pki.issue_certificate(
        sub,
        sub_key,
        pki.generate_key("ed25519"),
        "C=CH, CN=sun",
        san=["sun.strongswan.org"],
        not_before=START,
    )
    assert verify_chain(sub, [root0], now=NOW) == [sub, root0]
    with pytest.raises(
        CertificateError, match=r"^path length constraint 0 of 'C=CH, CN=Root pathlen 0' violated"
    ):
        verify_chain(leaf, [root0], [sub], now=NOW)
    root1 = pki.self_signed_ca(root_key, "C=CH, CN=Root pathlen 0", path_len=1, not_before=START)
    assert verify_chain(leaf, [root1], [sub], now=NOW) == [leaf, sub, root1]
    with pytest.raises(CertificateError, match="no trusted CA for issuer 'C=CH, CN=Sub CA'"):
        verify_chain(leaf, [root1], now=NOW)  # intermediate not supplied


def test_self_signed_untrusted(env: Pki) -> None:
    with pytest.raises(
        CertificateError, match=f"^self-signed certificate '{CA_DN}' is not trusted$"
    ):
        verify_chain(env.ca, [], now=NOW)


def test_identity_matching(env: Pki) -> None:
    moon, carol = env.moon, env.carol
    assert match_identity(moon, Identity.from_string("moon.strongswan.org"))
    assert match_identity(moon, Identity.from_string("@MOON.strongswan.org."))
    assert match_identity(moon, Identity.from_string("192.168.0.1"))
    assert match_identity(moon, Identity.from_string("fec0::1"))
    assert not match_identity(moon, Identity.from_string("192.168.0.2"))
    assert not match_identity(moon, Identity.from_string("sun.strongswan.org"))
    assert match_identity(moon, Identity.from_string(MOON_DN))
    assert match_identity(
        moon, Identity.from_string("c=ch,  o=STRONGSWAN project, cn=moon.strongswan.org")
    )  # case/space-insensitive
    assert not match_identity(moon, Identity.from_string(CAROL_DN))
    assert match_identity(carol, Identity.from_string("carol@strongswan.org"))
    assert not match_identity(moon, Identity.from_string("carol@strongswan.org"))
    ski = moon.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert match_identity(moon, Identity(IdType.ID_KEY_ID, ski))
    assert match_identity(moon, Identity(IdType.ID_DER_ASN1_DN, moon.subject.public_bytes()))
    assert not match_identity(moon, Identity(IdType.ID_DER_ASN1_DN, b"\x30\x03garbage"))


def test_identity_strings() -> None:
    assert Identity.from_string("10.1.0.1") == Identity(IdType.ID_IPV4_ADDR, bytes([10, 1, 0, 1]))
    assert Identity.from_string("@#0a0b").id_type is IdType.ID_KEY_ID
    assert Identity.from_string("carol@strongswan.org").id_type is IdType.ID_RFC822_ADDR
    dn = Identity.from_string(MOON_DN)
    assert dn.id_type is IdType.ID_DER_ASN1_DN and str(dn) == MOON_DN
    assert str(Identity.from_string("fec0::1")) == "fec0::1"
    assert dn_string(parse_dn(MOON_DN)) == MOON_DN
    with pytest.raises(CertificateError):
        parse_dn("C=CH, garbage")


def test_cert_payload(env: Pki) -> None:
    enc, data = cert_payload_data(env.moon)
    assert enc == CertEncoding.X509_SIGNATURE == 4
    assert data == env.moon.public_bytes(serialization.Encoding.DER)
    assert parse_cert_payload(4, data) == env.moon
    with pytest.raises(CertificateError, match="CERT encoding HASH_URL_X509_CERT not supported"):
        parse_cert_payload(CertEncoding.HASH_URL_X509_CERT, data)
    pem = env.moon.public_bytes(serialization.Encoding.PEM)
    assert load_certificate(data) == load_certificate(pem) == env.moon
    ca_pem = env.ca.public_bytes(serialization.Encoding.PEM)
    assert load_certificates(pem + ca_pem) == [env.moon, env.ca]
    with pytest.raises(CertificateError):
        load_certificate(b"\x30\x00")


def test_certreq(env: Pki) -> None:
    other = pki.self_signed_ca(pki.generate_key("ed25519"), "CN=Other CA", not_before=START)
    spki = env.ca.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert certreq_hash(env.ca) == hashlib.sha1(spki).digest()
    data = build_certreq_data([env.ca, other, env.ca])
    assert len(data) == 40 and parse_certreq_data(data)[0] == hashlib.sha1(spki).digest()
    store = TrustStore([other])
    store.add(env.ca)
    store.add(env.ca)
    assert len(store.cas) == 2 and store.certreq_data() == build_certreq_data([other, env.ca])
    assert store.cas_for_certreq(data) == [env.ca, other]  # duplicates were dropped
    assert store.cas_for_certreq(b"\x00" * 20 + certreq_hash(other)) == [other]
    assert store.find_by_certreq_hash(certreq_hash(env.moon)) is None
    with pytest.raises(CertificateError, match="not a multiple of 20"):
        parse_certreq_data(b"\x00" * 21)


def test_summary_like_swanctl(env: Pki) -> None:
    s = summarize_certificate(env.moon, has_private_key=True)
    assert (s.subject, s.issuer) == (MOON_DN, CA_DN)
    assert s.alt_names == ("moon.strongswan.org", "192.168.0.1", "fec0::1")
    assert (s.key_type.value, s.key_bits) == ("ML_DSA_87", 20736)
    assert s.keyid == ":".join(f"{b:02x}" for b in certreq_hash(env.moon))
    assert s.flags == ("serverAuth",) and not s.is_ca
    text = format_certificate(s, now=NOW)
    assert f'  subject:  "{MOON_DN}"\n  issuer:   "{CA_DN}"\n' in text
    assert "  validity:  not before Jan 01 00:00:00 UTC 2026, ok\n" in text
    assert "             not after  Dec 31 00:00:00 UTC 2028, ok (expires in 944 days)\n" in text
    assert "  altNames:  moon.strongswan.org, 192.168.0.1, fec0::1\n" in text
    assert "  pubkey:    ML_DSA_87 20736 bits, has private key\n" in text
    later = format_certificate(env.moon, now=dt.datetime(2029, 1, 5, tzinfo=dt.UTC))
    assert "ok\n             not after  Dec 31 00:00:00 UTC 2028, expired (5 days ago)" in later
    both = format_certificates([env.ca, env.moon], now=NOW, detailed=True)
    assert both.index("List of X.509 End Entity Certificates") < both.index(
        "List of X.509 CA Certificates"
    )
    assert "  flags:     CA self-signed\n" in both


def test_ca_key_must_match_ca_certificate(env: Pki) -> None:
    """As pki --issue: a key that is not the CA certificate's signs nothing in its name."""
    with pytest.raises(AuthError, match=r"^CA private key does not match CA certificate$"):
        pki.issue_certificate(env.ca, env.moon_key, env.carol_key, "CN=x")


def test_ike_auth_size_order(env: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    """What an ML-DSA-87 IKE_AUTH carries: CERT + AUTH (+ headers, IDs, SA, TS)."""
    cert_der = cert_payload_data(env.moon)[1]
    auth = sign_auth_data(env.moon_key, b"octets", default_scheme(env.moon_key))
    assert len(auth) == 1 + 13 + 4627  # ML-DSA-87 signatures are fixed-size
    moon_pub = env.moon_key.public_key()  # type: ignore[attr-defined]
    assert cert_public_key(env.moon).public_bytes_raw() == moon_pub.public_bytes_raw()  # type: ignore[union-attr]
    with capsys.disabled():
        print(
            f"\nML-DSA-87 moon cert {len(cert_der)} B DER (CERT payload {5 + len(cert_der)}), "
            f"AUTH payload {4 + len(auth)}, CA cert "
            f"{len(cert_payload_data(env.ca)[1])} B"
        )
