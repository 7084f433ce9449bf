"""Key and certificate generation, like strongSwan's ``pki`` (--gen, --pub, --self, --issue,
--print). Plain functions plus a click group ``pki`` for the CLI.

Falcon: keys can be generated (liboqs) and used for IKE signatures and loaded from/verified
in certificates made elsewhere, but pqike cannot *issue* Falcon certificates — cryptography's
CertificateBuilder accepts neither a Falcon subject key nor a Falcon signer, and splicing
both into DER by hand would need an ASN.1 library that is not a pqike dependency.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from pqike.auth.certs import (
    cert_public_key,
    format_certificate,
    load_certificate,
    parse_dn,
    summarize_certificate,
)
from pqike.auth.errors import AuthError
from pqike.auth.keys import (
    FalconPrivateKey,
    FalconPublicKey,
    KeyType,
    PrivateKey,
    PublicKey,
    generate_private_key,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_of,
    public_key_pem,
)

__all__ = [
    "KEY_KINDS",
    "certificate_pem",
    "generate_key",
    "issue_certificate",
    "parse_san",
    "pki",
    "self_signed_ca",
    "write_pem",
]

DEFAULT_CA_LIFETIME_DAYS = 3652  # pki --self --ca in the strongSwan docs; pki's own default is 1095
DEFAULT_LIFETIME_DAYS = 1095  # strongSwan pki --issue/--self default

KEY_KINDS: dict[str, tuple[KeyType, dict[str, object]]] = {
    "mldsa44": (KeyType.ML_DSA_44, {}),
    "mldsa65": (KeyType.ML_DSA_65, {}),
    "mldsa87": (KeyType.ML_DSA_87, {}),
    "falcon512": (KeyType.FALCON_512, {}),
    "falcon1024": (KeyType.FALCON_1024, {}),
    "ed25519": (KeyType.ED25519, {}),
    "ed448": (KeyType.ED448, {}),
    "ecdsa": (KeyType.ECDSA, {"curve": ec.SECP256R1()}),
    "ecdsa-p256": (KeyType.ECDSA, {"curve": ec.SECP256R1()}),
    "ecdsa-p384": (KeyType.ECDSA, {"curve": ec.SECP384R1()}),
    "ecdsa-p521": (KeyType.ECDSA, {"curve": ec.SECP521R1()}),
    "rsa": (KeyType.RSA, {}),
}

_FLAGS = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "ikeIntermediate": x509.ObjectIdentifier("1.3.6.1.5.5.8.2.2"),  # RFC 4945
    "ocspSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}


def generate_key(kind: str, *, bits: int | None = None) -> PrivateKey:
    """kind: one of KEY_KINDS; ``bits`` for RSA (default 3072) or ECDSA (256/384/521)."""
    try:
        kt, opts = KEY_KINDS[kind.lower()]
    except KeyError:
        raise AuthError(f"unknown key type {kind!r} (one of {', '.join(KEY_KINDS)})") from None
    if kt is KeyType.ECDSA and bits:
        curves = {256: ec.SECP256R1(), 384: ec.SECP384R1(), 521: ec.SECP521R1()}
        if bits not in curves:
            raise AuthError(f"ECDSA keys are 256, 384 or 521 bits, not {bits}")
        opts = {"curve": curves[bits]}
    return generate_private_key(
        kt, bits=bits if kt is KeyType.RSA else None, curve=opts.get("curve")
    )  # type: ignore[arg-type]


def parse_san(text: str) -> x509.GeneralName:
    """A subjectAltName as strongSwan's --san: IP address, "a@b" email, "x=y,.." DN, else DNS
    ("@host" forces DNS). Prefixes "dns:", "email:", "ip:" are accepted too."""
    kind, sep, rest = text.partition(":")
    if sep and kind.lower() in ("dns", "email", "ip"):
        return {
            "dns": x509.DNSName,
            "email": x509.RFC822Name,
            "ip": lambda v: x509.IPAddress(ipaddress.ip_address(v)),
        }[kind.lower()](rest)
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    if text.startswith("@"):
        return x509.DNSName(text[1:])
    if "=" in text:
        return x509.DirectoryName(parse_dn(text))
    if "@" in text:
        return x509.RFC822Name(text)
    return x509.DNSName(text)


def _signature_hash(signer: PrivateKey) -> hashes.HashAlgorithm | None:
    if isinstance(signer, FalconPrivateKey):
        raise AuthError(
            "Falcon CAs are not supported: cryptography cannot sign certificates with Falcon"
        )
    if isinstance(signer, rsa.RSAPrivateKey):
        return hashes.SHA256()  # PKCS#1 v1.5, as pki without --rsa-padding pss
    if isinstance(signer, ec.EllipticCurvePrivateKey):
        return {256: hashes.SHA256(), 384: hashes.SHA384()}.get(
            signer.curve.key_size, hashes.SHA512()
        )
    return None  # EdDSA, ML-DSA: the algorithm fixes the hash (pure)


def _subject_key(key: PrivateKey | PublicKey) -> PublicKey:
    pub = public_key_of(key)
    if isinstance(pub, FalconPublicKey):
        raise AuthError(
            "certificates for Falcon keys are not supported: cryptography cannot "
            "encode a Falcon SubjectPublicKeyInfo"
        )
    return pub


def _validity(
    not_before: dt.datetime | None, lifetime_days: int, not_after: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    start = not_before or dt.datetime.now(dt.UTC).replace(microsecond=0)
    return start, not_after or start + dt.timedelta(days=lifetime_days)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    pub: PublicKey,
    serial: int | None,
    validity: tuple[dt.datetime, dt.datetime],
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(pub)  # type: ignore[arg-type]
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
    )  # type: ignore[arg-type]


def _ca_extensions(b: x509.CertificateBuilder, path_len: int | None) -> x509.CertificateBuilder:
    return b.add_extension(
        x509.BasicConstraints(ca=True, path_length=path_len), critical=True
    ).add_extension(
        x509.KeyUsage(
            digital_signature=False,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )


def self_signed_ca(
    key: PrivateKey,
    dn: str | x509.Name,
    *,
    lifetime_days: int = DEFAULT_CA_LIFETIME_DAYS,
    path_len: int | None = None,
    serial: int | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    """A self-signed CA certificate (pki --self --ca)."""
    name = parse_dn(dn) if isinstance(dn, str) else dn
    b = _builder(
        name, name, _subject_key(key), serial, _validity(not_before, lifetime_days, not_after)
    )
    return _ca_extensions(b, path_len).sign(key, _signature_hash(key))  # type: ignore[arg-type]


def issue_certificate(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    subject_key: PrivateKey | PublicKey,
    dn: str | x509.Name,
    *,
    san: Iterable[str | x509.GeneralName] = (),
    lifetime_days: int = DEFAULT_LIFETIME_DAYS,
    ca: bool = False,
    path_len: int | None = None,
    flags: Iterable[str] = (),
    serial: int | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    """A certificate signed by the CA (pki --issue). ``flags``: serverAuth, clientAuth,
    ikeIntermediate, ocspSigning (extendedKeyUsage)."""
    name = parse_dn(dn) if isinstance(dn, str) else dn
    pub = _subject_key(subject_key)
    b = _builder(
        name, ca_cert.subject, pub, serial, _validity(not_before, lifetime_days, not_after)
    )
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]
    b = b.add_extension(aki, critical=False)
    names = [n if isinstance(n, x509.GeneralName) else parse_san(n) for n in san]
    if names:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    usages = []
    for flag in flags:
        if flag not in _FLAGS:
            raise AuthError(f"unknown flag {flag!r} (one of {', '.join(_FLAGS)})")
        usages.append(_FLAGS[flag])
    if usages:
        b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if ca:
        b = _ca_extensions(b, path_len)
    return b.sign(ca_key, _signature_hash(ca_key))  # type: ignore[arg-type]


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_pem(path: str | Path, data: bytes, *, private: bool = False) -> None:
    """Write a PEM file; private keys are created with mode 0600."""
    path = Path(path)
    if private:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _load_any_key(data: bytes) -> PrivateKey | PublicKey:
    try:
        return load_private_key(data)
    except AuthError:
        return load_public_key(data)


# --- click group -------------------------------------------------------------------------


def _emit(data: bytes, outfile: str | None, private: bool = False) -> None:
    if outfile:
        write_pem(outfile, data, private=private)
    else:
        click.echo(data.decode(), nl=False)


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group(name="pki")
def pki() -> None:
    """Generate keys and certificates (like strongSwan's pki)."""


@pki.command("gen")
@click.option(
    "--type", "kind", type=click.Choice(sorted(KEY_KINDS)), default="mldsa65", show_default=True
)
@click.option("--size", type=int, help="RSA modulus bits or ECDSA curve size")
@click.option("--outfile", type=click.Path(dir_okay=False), help="default: stdout")
def gen_cmd(kind: str, size: int | None, outfile: str | None) -> None:
    """Generate a private key (PEM, PKCS#8)."""
    try:
        _emit(private_key_pem(generate_key(kind, bits=size)), outfile, private=True)
    except AuthError as exc:
        raise _fail(exc) from exc


@pki.command("pub")
@click.option("--in", "infile", type=click.File("rb"), required=True)
@click.option("--outfile", type=click.Path(dir_okay=False))
def pub_cmd(infile: click.utils.LazyFile, outfile: str | None) -> None:
    """Extract the public key of a private key or certificate."""
    data = infile.read()
    try:
        key = (
            cert_public_key(load_certificate(data))
            if b"CERTIFICATE" in data
            else _load_any_key(data)
        )
        _emit(public_key_pem(key), outfile)  # type: ignore[arg-type]
    except (AuthError, ValueError) as exc:
        raise _fail(exc) from exc


@pki.command("self")
@click.option("--in", "infile", type=click.File("rb"), required=True, help="private key")
@click.option("--dn", required=True, help='e.g. "C=CH, O=strongSwan, CN=Root CA"')
@click.option(
    "--lifetime", type=int, default=DEFAULT_CA_LIFETIME_DAYS, show_default=True, help="days"
)
@click.option("--pathlen", type=int)
@click.option("--outfile", type=click.Path(dir_okay=False))
def self_cmd(
    infile: click.utils.LazyFile, dn: str, lifetime: int, pathlen: int | None, outfile: str | None
) -> None:
    """Create a self-signed CA certificate (always a CA, as pki --self --ca)."""
    try:
        cert = self_signed_ca(
            load_private_key(infile.read()), dn, lifetime_days=lifetime, path_len=pathlen
        )
        _emit(certificate_pem(cert), outfile)
    except AuthError as exc:
        raise _fail(exc) from exc


@pki.command("issue")
@click.option("--cacert", type=click.File("rb"), required=True)
@click.option("--cakey", type=click.File("rb"), required=True)
@click.option(
    "--in", "infile", type=click.File("rb"), required=True, help="subject private or public key"
)
@click.option("--dn", required=True)
@click.option("--san", multiple=True, help="subjectAltName (repeatable)")
@click.option("--flag", "flags", multiple=True, type=click.Choice(sorted(_FLAGS)))
@click.option("--ca", is_flag=True, help="issue an intermediate CA certificate")
@click.option("--pathlen", type=int)
@click.option("--lifetime", type=int, default=DEFAULT_LIFETIME_DAYS, show_default=True, help="days")
@click.option("--outfile", type=click.Path(dir_okay=False))
def issue_cmd(
    cacert: click.utils.LazyFile,
    cakey: click.utils.LazyFile,
    infile: click.utils.LazyFile,
    dn: str,
    san: tuple[str, ...],
    flags: tuple[str, ...],
    ca: bool,
    pathlen: int | None,
    lifetime: int,
    outfile: str | None,
) -> None:
    """Issue a certificate signed by a CA."""
    try:
        cert = issue_certificate(
            load_certificate(cacert.read()),
            load_private_key(cakey.read()),
            _load_any_key(infile.read()),
            dn,
            san=san,
            flags=flags,
            ca=ca,
            path_len=pathlen,
            lifetime_days=lifetime,
        )
        _emit(certificate_pem(cert), outfile)
    except AuthError as exc:
        raise _fail(exc) from exc


@pki.command("print")
@click.option("--in", "infile", type=click.File("rb"), required=True)
@click.option("--utc/--local", default=True, show_default=True)
def print_cmd(infile: click.utils.LazyFile, utc: bool) -> None:
    """Show a certificate like swanctl --list-certs."""
    try:
        click.echo(
            format_certificate(
                summarize_certificate(load_certificate(infile.read())), utc=utc, detailed=True
            ),
            nl=False,
        )
    except AuthError as exc:
        raise _fail(exc) from exc


# --- a whole test/demo PKI -----------------------------------------------------------------

DEMO_CA_DN = "C=CH, O=Cyber, CN=Cyber Root CA"


def create_peer_pki(
    directories: dict[str, tuple[str | Path, str]],
    *,
    kind: str = "mldsa87",
    ca_kind: str | None = None,
    ca_dn: str = DEMO_CA_DN,
) -> None:
    """A CA and one end-entity certificate per peer, in the swanctl layout the shipped
    configs use: ``x509ca/caCert.pem``, ``x509/<name>Cert.pem``, ``private/<name>Key.pem``.

    ``directories`` maps a peer name (carol) to (its config directory, its identity); the
    identity becomes the CN and a SAN (email if it contains '@', else DNS).
    """
    ca_key = generate_key(ca_kind or kind)
    ca = self_signed_ca(ca_key, ca_dn)
    for name, (directory, identity) in directories.items():
        d = Path(directory)
        for sub in ("x509", "x509ca", "private"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        key = generate_key(kind)
        cert = issue_certificate(
            ca, ca_key, key, f"C=CH, O=Cyber, CN={identity}", san=[parse_san(identity)]
        )
        write_pem(d / "x509ca" / "caCert.pem", certificate_pem(ca))
        write_pem(d / "x509" / f"{name}Cert.pem", certificate_pem(cert))
        write_pem(d / "private" / f"{name}Key.pem", private_key_pem(key), private=True)
