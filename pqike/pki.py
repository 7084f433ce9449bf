"""Key and certificate generation, like strongSwan's ``pki`` (--gen, --pub, --self, --issue,
--print, --verify). Plain functions plus a click group ``pki`` for the CLI.

Certificates are encoded by pqike.auth.x509_der for every key type, so Falcon keys (liboqs,
which cryptography's CertificateBuilder cannot take) can be subjects and CAs alike, in the
encoding pq-strongswan's ``pki`` writes and reads.
"""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import os
import stat
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from pqike.auth.certs import (
    cert_public_key,
    cert_spki_der,
    format_certificate,
    load_certificate,
    load_certificates,
    names_equal,
    parse_dn,
    summarize_certificate,
    verify_cert_signature,
    verify_chain,
)
from pqike.auth.errors import AuthError, CertificateError
from pqike.auth.keys import (
    KeyType,
    PrivateKey,
    PublicKey,
    generate_private_key,
    key_type,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_pem,
    spki_der,
    subject_key_identifier,
)
from pqike.auth.schemes import SCHEMES, SignatureScheme, default_scheme
from pqike.auth.x509_der import TbsCertificate, sign_certificate
from pqike.files import PRIVATE_MODE, write_atomic

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
PUBLIC_MODE = 0o644  # certificates and public keys

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


def _certificate_scheme(signer: PrivateKey) -> SignatureScheme:
    """pki's defaults: RSA PKCS#1 v1.5 with SHA-256 (no --rsa-padding pss), ECDSA with its
    curve's hash; EdDSA, ML-DSA and Falcon sign the TBSCertificate as it is."""
    if key_type(signer) is KeyType.RSA:
        return SCHEMES["RSA_EMSA_PKCS1_SHA2_256"]
    return default_scheme(signer)


def _validity(
    not_before: dt.datetime | None, lifetime_days: int, not_after: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    start = not_before or dt.datetime.now(dt.UTC).replace(microsecond=0)
    return start, not_after or start + dt.timedelta(days=lifetime_days)


def _ca_extensions(path_len: int | None) -> list[tuple[x509.ExtensionType, bool]]:
    usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return [(x509.BasicConstraints(ca=True, path_length=path_len), True), (usage, True)]


def _issue(
    subject: x509.Name,
    issuer: x509.Name,
    spki: bytes,
    signer: PrivateKey,
    serial: int | None,
    validity: tuple[dt.datetime, dt.datetime],
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    ski = x509.SubjectKeyIdentifier(subject_key_identifier(spki))
    tbs = TbsCertificate(
        serial or x509.random_serial_number(),
        issuer,
        subject,
        *validity,
        spki,
        ((ski, False), *extensions),
    )
    return sign_certificate(tbs, signer, _certificate_scheme(signer))


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
    validity = _validity(not_before, lifetime_days, not_after)
    return _issue(name, name, spki_der(key), key, serial, validity, _ca_extensions(path_len))


def _extended_key_usage(flags: Iterable[str]) -> list[tuple[x509.ExtensionType, bool]]:
    usages = []
    for flag in flags:
        if flag not in _FLAGS:
            raise AuthError(f"unknown flag {flag!r} (one of {', '.join(_FLAGS)})")
        usages.append(_FLAGS[flag])
    return [(x509.ExtendedKeyUsage(usages), False)] if usages else []


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
    ca_spki = cert_spki_der(ca_cert)
    if spki_der(ca_key) != ca_spki:  # as pki --issue: nothing the CA cannot vouch for
        raise AuthError("CA private key does not match CA certificate")
    try:
        key_id = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        key_id = subject_key_identifier(ca_spki)
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.AuthorityKeyIdentifier(key_id, None, None), False)
    ]
    names = [n if isinstance(n, x509.GeneralName) else parse_san(n) for n in san]
    if names:
        extensions.append((x509.SubjectAlternativeName(names), False))
    extensions += _extended_key_usage(flags)
    if ca:
        extensions += _ca_extensions(path_len)
    validity = _validity(not_before, lifetime_days, not_after)
    return _issue(
        name, ca_cert.subject, spki_der(subject_key), ca_key, serial, validity, extensions
    )


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_pem(path: str | Path, data: bytes, *, private: bool = False) -> None:
    """Write a PEM file as a new file renamed over ``path`` (never through a symbolic link):
    mode 0600 for private keys whatever the old file's mode was, 0644 otherwise."""
    write_atomic(path, data, PRIVATE_MODE if private else PUBLIC_MODE)


def _load_any_key(data: bytes) -> PrivateKey | PublicKey:
    try:
        return load_private_key(data)
    except AuthError:
        return load_public_key(data)


# --- click group -------------------------------------------------------------------------


def _emit(data: bytes, outfile: str | None, private: bool = False) -> None:
    if outfile:
        try:
            write_pem(outfile, data, private=private)
        except OSError as e:
            raise click.ClickException(f"{e.filename or outfile}: {e.strerror or e}") from None
        return
    if private:
        _warn_if_readable(sys.stdout)
    click.echo(data.decode(), nl=False)


def _warn_if_readable(stream: IO[str]) -> None:
    """``pki gen > key.pem``: the shell created key.pem with its umask (often 0644) before
    we run. strongSwan's pki writes keys to stdout too, so warn rather than refuse."""
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return  # not a real file (a pipe wrapper, a test runner's buffer)
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
        click.echo(
            f"warning: the private key goes to a file with mode "
            f"{stat.S_IMODE(st.st_mode):04o} that others may read; use --outfile (0600) "
            f"or chmod 600 it",
            err=True,
        )


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


def _check_self_signed(cert: x509.Certificate) -> None:
    if not names_equal(cert.subject, cert.issuer):
        raise CertificateError("no CA certificate given and the certificate is not self-signed")
    if not verify_cert_signature(cert, cert_public_key(cert)):
        raise CertificateError("signature of the self-signed certificate is invalid")


@pki.command("verify")
@click.option("--in", "infile", type=click.File("rb"), required=True)
@click.option(
    "--cacert",
    "cacerts",
    type=click.File("rb"),
    multiple=True,
    help="trusted CA certificate(s) (repeatable); without one, --in must be self-signed",
)
def verify_cmd(infile: click.utils.LazyFile, cacerts: tuple[click.utils.LazyFile, ...]) -> None:
    """Verify a certificate's trust chain and lifetimes (like pki --verify; no revocation)."""
    try:
        cert = load_certificate(infile.read())
        anchors = [ca for f in cacerts for ca in load_certificates(f.read())]
        if not anchors:
            _check_self_signed(cert)
        verify_chain(cert, anchors or [cert])
    except AuthError as exc:
        raise click.ClickException(f"certificate untrusted: {exc}") from exc
    click.echo("certificate trusted, lifetimes valid")


# --- a whole test/demo PKI -----------------------------------------------------------------

DEMO_CA_DN = "C=CH, O=Cyber, CN=Cyber Root CA"


def create_peer_pki(
    directories: dict[str, tuple[str | Path, str]],
    *,
    kind: str = "mldsa87",
    ca_kind: str | None = None,
    ca_dn: str = DEMO_CA_DN,
    ca_dir: str | Path | None = None,
) -> None:
    """A CA and one end-entity certificate per peer, in the swanctl layout the shipped
    configs use: ``x509ca/caCert.pem``, ``x509/<name>Cert.pem``, ``private/<name>Key.pem``.

    ``directories`` maps a peer name (carol) to (its config directory, its identity); the
    identity becomes the CN and a SAN (email if it contains '@', else DNS). With ``ca_dir``
    the CA (``caCert.pem``, ``caKey.pem`` 0600) is kept there and reused when it exists, so
    that peers added later are issued by the same CA; without it the CA key is discarded.
    """
    ca, ca_key = _peer_ca(ca_dir, ca_kind or kind, ca_dn)
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


def _peer_ca(ca_dir: str | Path | None, kind: str, dn: str) -> tuple[x509.Certificate, PrivateKey]:
    """The CA of ``create_peer_pki``: loaded from ``ca_dir`` if it holds one, else new."""
    if ca_dir is not None:
        cert_path, key_path = Path(ca_dir) / "caCert.pem", Path(ca_dir) / "caKey.pem"
        if cert_path.exists() and key_path.exists():
            return load_certificate(cert_path.read_bytes()), load_private_key(key_path.read_bytes())
    ca_key = generate_key(kind)
    ca = self_signed_ca(ca_key, dn)
    if ca_dir is not None:
        Path(ca_dir).mkdir(parents=True, exist_ok=True)
        write_pem(cert_path, certificate_pem(ca))
        write_pem(key_path, private_key_pem(ca_key), private=True)
    return ca, ca_key


def _peer_argument(text: str) -> tuple[str, tuple[Path, str]]:
    """``DIR=IDENTITY`` of ``pki peers``: the peer's name is the directory's last part."""
    directory, sep, identity = text.partition("=")
    if not sep or not directory or not identity:
        raise click.BadParameter(f"{text!r}: expected DIR=IDENTITY, e.g. configs/gw=gw.example.org")
    path = Path(directory)
    return path.resolve().name, (path, identity)


@pki.command("peers")
@click.option(
    "--type", "kind", type=click.Choice(sorted(KEY_KINDS)), default="mldsa65", show_default=True
)
@click.option(
    "--ca-dir",
    type=click.Path(file_okay=False),
    help="keep the CA here (caCert.pem, caKey.pem 0600) and reuse it when it exists",
)
@click.option("--ca-dn", default=DEMO_CA_DN, show_default=True)
@click.argument("peers", nargs=-1, required=True, metavar="DIR=IDENTITY...")
def peers_cmd(kind: str, ca_dir: str | None, ca_dn: str, peers: tuple[str, ...]) -> None:
    """A CA and a certificate and key for each peer, in each peer's config directory.

    DIR=IDENTITY writes DIR/x509ca/caCert.pem, DIR/x509/<name>Cert.pem and
    DIR/private/<name>Key.pem (0600), <name> being DIR's last part; IDENTITY (an FQDN or
    user@FQDN) is the certificate's CN and subjectAltName.
    """
    directories = dict(_peer_argument(p) for p in peers)
    try:
        create_peer_pki(directories, kind=kind, ca_dn=ca_dn, ca_dir=ca_dir)
    except (AuthError, ValueError) as exc:
        raise _fail(exc) from exc
    except OSError as e:
        raise click.ClickException(f"{e.filename}: {e.strerror or e}") from None
    for name, (directory, identity) in directories.items():
        click.echo(f"{name}: {identity} -> {directory}/x509/{name}Cert.pem")
