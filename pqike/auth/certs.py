"""X.509 for IKEv2: loading, chain verification, IKE ID matching, CERT/CERTREQ data and
swanctl-style summaries.

Certificate signatures are checked through the RFC 7427 scheme registry (schemes.py), so
ML-DSA and Falcon issuers work like RSA/ECDSA/EdDSA ones. Names are shown the way strongSwan
prints them: RDNs in encoding order joined by ", " ("C=CH, O=strongSwan, CN=moon").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pqike.auth import _der
from pqike.auth.errors import AuthError, CertificateError, UnknownAlgorithmIdentifier
from pqike.auth.keys import (
    KeyType,
    PublicKey,
    key_bits,
    key_type,
    load_private_key,
    public_key_from_spki,
    subject_key_identifier,
)
from pqike.auth.schemes import SignatureScheme, scheme_from_algorithm_identifier
from pqike.text import printable, printable_bytes
from pqike.wire.iana import CertEncoding, IdType

__all__ = [
    "MAX_TRUST_PATH_LEN",
    "CertSummary",
    "Identity",
    "TrustStore",
    "build_certreq_data",
    "cert_payload_data",
    "cert_public_key",
    "cert_signature_scheme",
    "cert_spki_der",
    "certreq_hash",
    "dn_string",
    "format_certificate",
    "format_certificates",
    "load_certificate",
    "load_certificate_file",
    "load_certificates",
    "load_private_key",
    "match_identity",
    "name_text",
    "names_equal",
    "parse_cert_payload",
    "parse_certreq_data",
    "parse_dn",
    "summarize_certificate",
    "verify_cert_signature",
    "verify_chain",
]

MAX_TRUST_PATH_LEN = 7  # strongSwan credential_manager.c MAX_TRUST_PATH_LEN
SHA1_LEN = 20

# --- loading ---------------------------------------------------------------------------


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates in a PEM bundle, or the one DER certificate."""
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise CertificateError(f"cannot parse certificate: {exc}") from exc
    return certs


def load_certificate(data: bytes) -> x509.Certificate:
    """One PEM or DER certificate (the first of a PEM bundle)."""
    return load_certificates(data)[0]


def load_certificate_file(path: str | Path) -> x509.Certificate:
    return load_certificate(Path(path).read_bytes())


def cert_payload_data(cert: x509.Certificate) -> tuple[CertEncoding, bytes]:
    """CERT payload encoding and data: X.509 Certificate - Signature (4) = DER."""
    return CertEncoding.X509_SIGNATURE, cert.public_bytes(serialization.Encoding.DER)


def parse_cert_payload(encoding: int, data: bytes) -> x509.Certificate:
    if encoding != CertEncoding.X509_SIGNATURE:
        try:
            name = CertEncoding(encoding).name
        except ValueError:
            name = str(encoding)
        raise CertificateError(f"CERT encoding {name} not supported")
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CertificateError(f"cannot parse X.509 certificate in CERT payload: {exc}") from exc


# --- names ----------------------------------------------------------------------------

_DN_KEYS: dict[str, x509.ObjectIdentifier] = {
    # strongSwan x501rdns short names (identification.c)
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "E": NameOID.EMAIL_ADDRESS,
    "SN": NameOID.SURNAME,
    "G": NameOID.GIVEN_NAME,
    "T": NameOID.TITLE,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "dnQualifier": NameOID.DN_QUALIFIER,
    "pseudonym": NameOID.PSEUDONYM,
    "street": NameOID.STREET_ADDRESS,
    "postalCode": NameOID.POSTAL_CODE,
}
_DN_ALIASES = {"EMAIL": "E", "EMAILADDRESS": "E", "S": "ST", "SERIALNUMBER": "serialNumber"}
_DN_NAMES = {oid.dotted_string: key for key, oid in _DN_KEYS.items()}


def dn_string(name: x509.Name) -> str:
    """strongSwan-style DN text: RDNs in encoding order, ", "-separated."""
    parts = []
    for rdn in name.rdns:
        for attr in rdn:
            key = _DN_NAMES.get(attr.oid.dotted_string, attr.oid.dotted_string)
            value = attr.value if isinstance(attr.value, str) else attr.value.hex()
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def _split_unescaped(text: str, sep: str) -> list[str]:
    out, cur, esc = [], [], False
    for ch in text:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def parse_dn(text: str) -> x509.Name:
    """Parse "C=CH, O=strongSwan, CN=moon" (left to right = encoding order, as strongSwan).
    String types are cryptography's defaults (UTF8String; PrintableString for C, IA5String
    for E/DC); DN comparisons here ignore string types anyway."""
    attrs = []
    for part in _split_unescaped(text, ","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise CertificateError(f"invalid DN component {part!r} in {text!r}")
        key = key.strip()
        key = _DN_ALIASES.get(key.upper(), key)
        oid = _DN_KEYS.get(key) or _DN_KEYS.get(key.upper())
        if oid is None:
            try:
                oid = x509.ObjectIdentifier(key)
            except ValueError:
                raise CertificateError(f"unknown DN attribute {key!r}") from None
        value = value.strip()
        try:
            attrs.append(x509.NameAttribute(oid, value))
        except ValueError as exc:
            raise CertificateError(f"invalid DN component {part!r}: {exc}") from None
    if not attrs:
        raise CertificateError(f"empty DN {text!r}")
    return x509.Name(attrs)


def _norm(value: str) -> str:
    return " ".join(value.split()).casefold()


def _name_key(name: x509.Name) -> list[tuple[str, str]]:
    return [
        (a.oid.dotted_string, _norm(a.value if isinstance(a.value, str) else a.value.hex()))
        for rdn in name.rdns
        for a in rdn
    ]


_STRING_CODECS = {
    0x0C: "utf-8",
    0x13: "ascii",
    0x16: "ascii",
    0x14: "latin-1",
    0x1E: "utf-16-be",
    0x1C: "utf-32-be",
    0x1A: "ascii",
}


def _der_name_attrs(der: bytes) -> list[tuple[str, str]]:
    # Decoded here because cryptography has no public loader for a bare DER Name.
    out = []
    for rdn in _der.read_all(_der.read_single(der, _der.SEQUENCE).value):
        if rdn.tag != 0x31:
            raise _der.DerError("RDN is not a SET")
        for atv in _der.read_all(rdn.value):
            oid_tlv, val = _der.read_all(_der.read_single(atv.encoded, _der.SEQUENCE).value)
            codec = _STRING_CODECS.get(val.tag)
            text = val.value.decode(codec, "replace") if codec else val.value.hex()
            out.append((_der.decode_oid(oid_tlv.value), text))
    return out


def _der_name_key(der: bytes) -> list[tuple[str, str]]:
    return [(oid, _norm(value)) for oid, value in _der_name_attrs(der)]


def names_equal(a: x509.Name, b: x509.Name) -> bool:
    """DN equality ignoring string types, case and repeated whitespace (RFC 5280 §7.1,
    simplified)."""
    return _name_key(a) == _name_key(b)


# --- keys and signatures -----------------------------------------------------------------


def _tbs_fields(cert: x509.Certificate) -> list[_der.Tlv]:
    fields_ = _der.read_all(_der.read_single(cert.tbs_certificate_bytes, _der.SEQUENCE).value)
    return fields_[1:] if fields_ and fields_[0].tag == 0xA0 else fields_


def cert_spki_der(cert: x509.Certificate) -> bytes:
    """The SubjectPublicKeyInfo exactly as encoded in the certificate."""
    return _tbs_fields(cert)[5].encoded


def cert_public_key(cert: x509.Certificate) -> PublicKey:
    """The subject public key, Falcon included (cryptography cannot represent those)."""
    try:
        return cert.public_key()  # type: ignore[return-value]
    except (UnsupportedAlgorithm, ValueError):
        try:
            return public_key_from_spki(cert_spki_der(cert))
        except AuthError as exc:
            raise CertificateError(f"certificate {_quoted(cert)}: {exc}") from None


def cert_signature_scheme(cert: x509.Certificate) -> SignatureScheme:
    outer = _der.read_all(
        _der.read_single(cert.public_bytes(serialization.Encoding.DER), _der.SEQUENCE).value
    )
    return scheme_from_algorithm_identifier(outer[1].encoded)


def verify_cert_signature(cert: x509.Certificate, issuer_key: PublicKey) -> bool:
    """Whether ``issuer_key`` signed ``cert`` (any registered scheme, ML-DSA/Falcon too)."""
    try:
        scheme = cert_signature_scheme(cert)
    except UnknownAlgorithmIdentifier:
        return False
    if scheme.key_type is not key_type(issuer_key):
        return False
    return scheme.verify(issuer_key, cert.tbs_certificate_bytes, cert.signature)


def certreq_hash(cert_or_spki: x509.Certificate | bytes) -> bytes:
    """SHA-1 of the DER SubjectPublicKeyInfo (RFC 7296 §3.7; strongSwan KEYID_PUBKEY_INFO_SHA1).
    Used for CERTREQ and shown as 'keyid'."""
    spki = (
        cert_spki_der(cert_or_spki) if isinstance(cert_or_spki, x509.Certificate) else cert_or_spki
    )
    return hashlib.sha1(spki, usedforsecurity=False).digest()


def build_certreq_data(cas: Iterable[x509.Certificate]) -> bytes:
    """CERTREQ data (encoding X509_SIGNATURE): concatenated SHA-1 SPKI hashes, no duplicates."""
    seen: dict[bytes, None] = {}
    for ca in cas:
        seen.setdefault(certreq_hash(ca))
    return b"".join(seen)


def parse_certreq_data(data: bytes) -> list[bytes]:
    if len(data) % SHA1_LEN:
        raise CertificateError(f"CERTREQ data of {len(data)} bytes is not a multiple of {SHA1_LEN}")
    return [data[i : i + SHA1_LEN] for i in range(0, len(data), SHA1_LEN)]


# --- trust and chains --------------------------------------------------------------------


def _fmt_time(t: dt.datetime, utc: bool = True) -> str:
    # strongSwan %T: "Mar 28 09:02:51 UTC 2024" (UTC) or "Mar 28 10:02:51 2024" (local)
    if utc:
        return t.astimezone(dt.UTC).strftime("%b %d %H:%M:%S UTC %Y")
    return t.astimezone().strftime("%b %d %H:%M:%S %Y")


def name_text(name: x509.Name) -> str:
    """``dn_string`` for a log line or an error: a peer's certificate chooses its names."""
    return printable(dn_string(name))


def _quoted(cert: x509.Certificate) -> str:
    return f"'{name_text(cert.subject)}'"


def _ext(cert: x509.Certificate, cls: type) -> x509.Extension | None:
    try:
        return cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    bc = _ext(cert, x509.BasicConstraints)
    return bool(bc and bc.value.ca)


def _ski(cert: x509.Certificate) -> bytes | None:
    ext = _ext(cert, x509.SubjectKeyIdentifier)
    return ext.value.digest if ext else None


def _aki(cert: x509.Certificate) -> bytes | None:
    ext = _ext(cert, x509.AuthorityKeyIdentifier)
    return ext.value.key_identifier if ext else None


def _der_bytes(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass
class TrustStore:
    """Trusted CA certificates (swanctl x509ca/)."""

    cas: list[x509.Certificate] = field(default_factory=list)

    def add(self, cert: x509.Certificate) -> None:
        if all(_der_bytes(cert) != _der_bytes(c) for c in self.cas):
            self.cas.append(cert)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.cas)

    def certreq_data(self) -> bytes:
        return build_certreq_data(self.cas)

    def find_by_certreq_hash(self, digest: bytes) -> x509.Certificate | None:
        return next((c for c in self.cas if certreq_hash(c) == digest), None)

    def cas_for_certreq(self, data: bytes) -> list[x509.Certificate]:
        """The trusted CAs a peer's CERTREQ names, in its order; unknown hashes skipped."""
        found = (self.find_by_certreq_hash(h) for h in parse_certreq_data(data))
        return [c for c in found if c is not None]


def _check_validity(cert: x509.Certificate, now: dt.datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise CertificateError(
            f"certificate {_quoted(cert)} is not valid before "
            f"{_fmt_time(cert.not_valid_before_utc)}"
        )
    if now > cert.not_valid_after_utc:
        raise CertificateError(
            f"certificate {_quoted(cert)} expired on {_fmt_time(cert.not_valid_after_utc)}"
        )


def _issuer_problem(
    child: x509.Certificate, issuer: x509.Certificate, ca_certs_below: int
) -> str | None:
    """Why ``issuer`` cannot have issued ``child`` (None: it did)."""
    try:
        key = cert_public_key(issuer)
    except CertificateError as exc:
        return str(exc)
    if not verify_cert_signature(child, key):
        return f"signature of {_quoted(child)} by {_quoted(issuer)} invalid"
    if not _is_ca(issuer):
        return f"issuer certificate {_quoted(issuer)} of {_quoted(child)} is not a CA"
    ku = _ext(issuer, x509.KeyUsage)
    if ku and not ku.value.key_cert_sign:
        return f"CA certificate {_quoted(issuer)} lacks the keyCertSign key usage"
    bc = _ext(issuer, x509.BasicConstraints)
    if bc and bc.value.path_length is not None and ca_certs_below > bc.value.path_length:
        return (
            f"path length constraint {bc.value.path_length} of {_quoted(issuer)} "
            f"violated by {ca_certs_below} intermediate CA(s)"
        )
    return None


def _candidates(
    child: x509.Certificate, pool: Iterable[x509.Certificate], exclude: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    aki = _aki(child)
    out = []
    for c in pool:
        if not names_equal(c.subject, child.issuer) or any(c is e for e in exclude):
            continue
        ski = _ski(c)
        if aki and ski and aki != ski:  # strongSwan issued_by(): keyid mismatch -> not issuer
            continue
        out.append(c)
    return out


def verify_chain(
    cert: x509.Certificate,
    trusted: TrustStore | Iterable[x509.Certificate],
    intermediates: Iterable[x509.Certificate] = (),
    *,
    now: dt.datetime | None = None,
    max_path_len: int = MAX_TRUST_PATH_LEN,
) -> list[x509.Certificate]:
    """Build and check the path end entity -> ... -> trusted CA; returns it (end entity
    first). Raises CertificateError with the reason. Checks: signatures with the issuer key,
    validity dates of every certificate, CA basicConstraints, keyCertSign if keyUsage is
    present, pathLenConstraint and issuer/subject name chaining. No revocation checks."""
    now = now or dt.datetime.now(dt.UTC)
    anchors = list(trusted)
    pool = list(intermediates)
    anchor_ders = {_der_bytes(c) for c in anchors}
    path = [cert]
    current = cert
    for _ in range(max_path_len + 1):
        _check_validity(current, now)
        if _der_bytes(current) in anchor_ders:
            return path  # trusted as such
        # RFC 5280 pathLenConstraint counts the non-self-issued intermediates below an issuer
        ca_below = sum(1 for c in path[1:] if not names_equal(c.subject, c.issuer))
        issuer, problems = None, []
        for group in (_candidates(current, anchors, path), _candidates(current, pool, path)):
            for candidate in group:
                problem = _issuer_problem(current, candidate, ca_below)
                if problem is None:
                    issuer = candidate
                    break
                problems.append(problem)
            if issuer is not None:
                break
        if issuer is None:
            if problems:
                raise CertificateError(problems[0])
            if names_equal(current.subject, current.issuer):
                raise CertificateError(f"self-signed certificate {_quoted(current)} is not trusted")
            aki = _aki(current)
            hint = f" (authorityKeyIdentifier {_hex(aki)})" if aki else ""
            raise CertificateError(f"no trusted CA for issuer '{name_text(current.issuer)}'{hint}")
        path.append(issuer)
        if _der_bytes(issuer) in anchor_ders:
            _check_validity(issuer, now)
            return path
        current = issuer
    raise CertificateError(f"trust path of {_quoted(cert)} longer than {max_path_len}")


# --- identities --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """An IKE identity: ID type and ID payload data (RFC 7296 §3.5)."""

    id_type: IdType
    data: bytes

    @classmethod
    def from_string(cls, text: str) -> Identity:
        """strongSwan's guessing (identification_create_from_string()): IP address,
        "@#hex" key ID, "@fqdn", "a@b" email, "x=y, ..." DN, else FQDN."""
        text = text.strip()
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            pass
        else:
            kind = IdType.ID_IPV4_ADDR if ip.version == 4 else IdType.ID_IPV6_ADDR
            return cls(kind, ip.packed)
        if text.startswith("@#"):
            return cls(IdType.ID_KEY_ID, bytes.fromhex(text[2:].replace(":", "")))
        if text.startswith("@"):
            return cls(IdType.ID_FQDN, text[1:].encode())
        if "=" in text:
            return cls(IdType.ID_DER_ASN1_DN, parse_dn(text).public_bytes())
        if "@" in text:
            return cls(IdType.ID_RFC822_ADDR, text.encode())
        return cls(IdType.ID_FQDN, text.encode())

    def problem(self) -> str | None:
        """Why the data cannot be what the ID type says (None: it can). An IP address
        identity of the wrong length would otherwise be read as the other family."""
        want = _ADDRESS_ID_LEN.get(self.id_type)
        if want is None or len(self.data) == want:
            return None
        name = IdType(self.id_type).name
        return f"invalid {name} identity ({len(self.data)} bytes, expected {want})"

    def __str__(self) -> str:
        """The identity as charon prints it, safe to log whatever the peer sent."""
        # if/in on module constants, not match: each case pattern reads IdType.X (~120 ns on
        # Python 3.11, EnumType.__getattr__), and the printed IDs are needed per IKE_AUTH
        kind = self.id_type
        if kind in _ADDRESS_IDS:
            if self.problem() is not None:
                return f"(invalid {IdType(kind).name} {self.data.hex()})"
            return str(ipaddress.ip_address(self.data))
        if kind in _NAME_IDS:
            return printable_bytes(self.data)
        if kind == _DN_ID:
            try:
                attrs = _der_name_attrs(self.data)
            except (_der.DerError, ValueError):
                return f"(invalid DN {self.data.hex()})"
            return printable(", ".join(f"{_DN_NAMES.get(o, o)}={v}" for o, v in attrs))
        if kind not in IdType._value2member_map_:
            return f"(unknown ID type {int(kind)} {self.data.hex()})"
        return f"@#{self.data.hex()}"


_ADDRESS_ID_LEN = {IdType.ID_IPV4_ADDR: 4, IdType.ID_IPV6_ADDR: 16}
_ADDRESS_IDS = (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR)
_NAME_IDS = (IdType.ID_FQDN, IdType.ID_RFC822_ADDR)
_DN_ID = IdType.ID_DER_ASN1_DN


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    ext = _ext(cert, x509.SubjectAlternativeName)
    return ext.value if ext else None


def match_identity(cert: x509.Certificate, identity: Identity) -> bool:
    """Whether ``cert`` certifies the IKE ID: FQDN/RFC822/IP against subjectAltNames
    (case-insensitive names), DN against the subject (or a directoryName SAN), KEY_ID against
    the subjectKeyIdentifier or the SHA-1 SPKI/public key hashes. No wildcards."""
    san = _san(cert)
    kind, data = identity.id_type, identity.data
    if kind in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
        want = data.decode("utf-8", "replace").rstrip(".").casefold()
        cls = x509.DNSName if kind == IdType.ID_FQDN else x509.RFC822Name
        return bool(san) and any(
            v.rstrip(".").casefold() == want for v in san.get_values_for_type(cls)
        )
    if kind in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
        try:
            want_ip = ipaddress.ip_address(data)
        except ValueError:
            return False
        return bool(san) and want_ip in san.get_values_for_type(x509.IPAddress)
    if kind == IdType.ID_DER_ASN1_DN:
        try:
            want_dn = _der_name_key(data)
        except (_der.DerError, ValueError):
            return False
        if _name_key(cert.subject) == want_dn:
            return True
        return bool(san) and any(
            _name_key(n) == want_dn for n in san.get_values_for_type(x509.DirectoryName)
        )
    if kind == IdType.ID_KEY_ID:
        spki = cert_spki_der(cert)
        return data in {
            _ski(cert),
            certreq_hash(spki),
            subject_key_identifier(spki),
        }
    return False


# --- summaries ---------------------------------------------------------------------------


def _hex(data: bytes | None) -> str:
    return ":".join(f"{b:02x}" for b in data or b"")


def _serial_bytes(serial: int) -> bytes:
    # DER INTEGER contents, as strongSwan prints them (leading 00 when the top bit is set)
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big")


def _general_name(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DirectoryName):
        return dn_string(name.value)
    if isinstance(name, x509.OtherName):
        return f"{name.type_id.dotted_string}:{name.value.hex()}"
    return str(name.value)


_EKU_FLAGS = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.OCSP_SIGNING: "ocspSigning",
    x509.ObjectIdentifier("1.3.6.1.5.5.8.2.2"): "ikeIntermediate",
}


@dataclass(frozen=True)
class CertSummary:
    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    serial: str  # colon hex, as strongSwan's %#B
    alt_names: tuple[str, ...]
    is_ca: bool
    self_signed: bool
    path_len: int | None
    flags: tuple[str, ...]
    key_type: KeyType
    key_bits: int
    keyid: str  # SHA-1 of SubjectPublicKeyInfo (also the CERTREQ hash)
    subjkey: str  # SHA-1 of the subjectPublicKey bits
    authkey_id: str | None
    subjkey_id: str | None
    signature_scheme: str
    der_size: int
    has_private_key: bool = False


def summarize_certificate(cert: x509.Certificate, *, has_private_key: bool = False) -> CertSummary:
    key = cert_public_key(cert)
    spki = cert_spki_der(cert)
    bc = _ext(cert, x509.BasicConstraints)
    eku = _ext(cert, x509.ExtendedKeyUsage)
    san = _san(cert)
    self_signed = names_equal(cert.subject, cert.issuer)
    flags = (
        (["CA"] if _is_ca(cert) else [])
        + [_EKU_FLAGS[o] for o in (eku.value if eku else []) if o in _EKU_FLAGS]
        + (["self-signed"] if self_signed else [])
    )
    try:
        scheme = cert_signature_scheme(cert).log_name
    except UnknownAlgorithmIdentifier:
        scheme = cert.signature_algorithm_oid.dotted_string
    ski, aki = _ski(cert), _aki(cert)
    return CertSummary(
        subject=dn_string(cert.subject),
        issuer=dn_string(cert.issuer),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=_hex(_serial_bytes(cert.serial_number)),
        alt_names=tuple(_general_name(n) for n in san) if san else (),
        is_ca=_is_ca(cert),
        self_signed=self_signed,
        path_len=bc.value.path_length if bc else None,
        flags=tuple(flags),
        key_type=key_type(key),
        key_bits=key_bits(key),
        keyid=_hex(certreq_hash(spki)),
        subjkey=_hex(subject_key_identifier(spki)),
        authkey_id=_hex(aki) if aki else None,
        subjkey_id=_hex(ski) if ski else None,
        signature_scheme=scheme,
        der_size=len(_der_bytes(cert)),
        has_private_key=has_private_key,
    )


def _delta(a: dt.datetime, b: dt.datetime) -> str:
    # strongSwan %V (time_delta_printf_hook)
    delta = int(abs((a - b).total_seconds()))
    unit = "second"
    if delta > 2 * 86400:
        delta, unit = delta // 86400, "day"
    elif delta > 2 * 3600:
        delta, unit = delta // 3600, "hour"
    elif delta > 2 * 60:
        delta, unit = delta // 60, "minute"
    return f"{delta} {unit}{'' if delta == 1 else 's'}"


def format_certificate(
    cert: x509.Certificate | CertSummary,
    *,
    now: dt.datetime | None = None,
    utc: bool = True,
    detailed: bool = False,
) -> str:
    """One certificate as swanctl --list-certs prints it (certificate_printer.c)."""
    s = cert if isinstance(cert, CertSummary) else summarize_certificate(cert)
    now = now or dt.datetime.now(dt.UTC)
    lines = [f'  subject:  "{s.subject}"', f'  issuer:   "{s.issuer}"']
    before = (
        "ok" if now >= s.not_before else f"not valid yet (valid in {_delta(now, s.not_before)})"
    )
    after = (
        f"expired ({_delta(now, s.not_after)} ago)"
        if now > s.not_after
        else f"ok (expires in {_delta(now, s.not_after)})"
    )
    lines += [
        f"  validity:  not before {_fmt_time(s.not_before, utc)}, {before}",
        f"             not after  {_fmt_time(s.not_after, utc)}, {after}",
        f"  serial:    {s.serial}",
    ]
    if s.alt_names:
        lines.append(f"  altNames:  {', '.join(s.alt_names)}")
    if detailed:
        if s.flags:
            lines.append(f"  flags:     {' '.join(s.flags)}")
        if s.path_len is not None:
            lines.append(f"  pathlen:   {s.path_len}")
        lines.append(f"  signature: {s.signature_scheme}, {s.der_size} bytes DER")
    if s.authkey_id:
        lines.append(f"  authkeyId: {s.authkey_id}")
    if s.subjkey_id:
        lines.append(f"  subjkeyId: {s.subjkey_id}")
    lines.append(
        f"  pubkey:    {s.key_type} {s.key_bits} bits"
        + (", has private key" if s.has_private_key else "")
    )
    lines += [f"  keyid:     {s.keyid}", f"  subjkey:   {s.subjkey}"]
    return "\n".join(lines) + "\n"


def format_certificates(
    certs: Iterable[x509.Certificate | CertSummary],
    *,
    now: dt.datetime | None = None,
    utc: bool = True,
    detailed: bool = False,
) -> str:
    """Several certificates with swanctl's captions (end entity and CA lists)."""
    summaries = [c if isinstance(c, CertSummary) else summarize_certificate(c) for c in certs]
    out = []
    for is_ca, caption in (
        (False, "X.509 End Entity Certificates"),
        (True, "X.509 CA Certificates"),
    ):
        group = [s for s in summaries if s.is_ca == is_ca]
        if group:
            out.append(f"\nList of {caption}\n")
            out += [
                "\n" + format_certificate(s, now=now, utc=utc, detailed=detailed) for s in group
            ]
    return "".join(out)
