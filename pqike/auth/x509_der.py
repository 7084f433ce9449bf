"""X.509 certificates encoded by pqike itself, for every key type, Falcon included.

cryptography's CertificateBuilder accepts neither a Falcon subject key nor a Falcon signer
(liboqs keys it cannot represent), so the RFC 5280 §4.1 structure is written here in DER
(pqike.auth._der). Names and extension values come from cryptography's encoders
(``Name.public_bytes()``, ``ExtensionType.public_bytes()``), which do not depend on key
types. The signature is made through the RFC 7427 scheme registry, so the certificate's
AlgorithmIdentifier is the one IKE AUTH carries (strongSwan builds both with
signature_params_build(); Falcon: OID 1.3.9999.3.x, parameters absent, the liboqs signature
over the TBSCertificate DER as the BIT STRING). The result is read back with cryptography,
which parses certificates whatever their algorithms.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from pqike.auth import _der
from pqike.auth.errors import CertificateError
from pqike.auth.keys import PrivateKey
from pqike.auth.schemes import SignatureScheme

__all__ = ["TbsCertificate", "sign_certificate"]

X509_V3 = 2  # Version ::= INTEGER { v1(0), v2(1), v3(2) }
MAX_SERIAL_OCTETS = 20  # RFC 5280 §4.1.2.2


@dataclass(frozen=True, slots=True)
class TbsCertificate:
    """The to-be-signed part of a v3 certificate; ``spki`` is DER SubjectPublicKeyInfo and
    ``extensions`` are (value, critical) in encoding order."""

    serial_number: int
    issuer: x509.Name
    subject: x509.Name
    not_before: dt.datetime
    not_after: dt.datetime
    spki: bytes
    extensions: tuple[tuple[x509.ExtensionType, bool], ...] = ()

    def encode(self, signature_algorithm: bytes) -> bytes:
        """DER TBSCertificate with ``signature_algorithm`` (a DER AlgorithmIdentifier)."""
        serial = _der.encode_uint(self.serial_number)
        if self.serial_number <= 0 or len(serial) - 2 > MAX_SERIAL_OCTETS:
            raise CertificateError(f"invalid certificate serial number {self.serial_number}")
        validity = _der.encode_time(self.not_before) + _der.encode_time(self.not_after)
        body = (
            _der.tlv(0xA0, _der.encode_uint(X509_V3))
            + serial
            + signature_algorithm
            + self.issuer.public_bytes()
            + _der.tlv(_der.SEQUENCE, validity)
            + self.subject.public_bytes()
            + self.spki
        )
        if self.extensions:
            body += _der.tlv(0xA3, _der.tlv(_der.SEQUENCE, self._extensions()))
        return _der.tlv(_der.SEQUENCE, body)

    def _extensions(self) -> bytes:
        seen: set[str] = set()
        out = b""
        for value, critical in self.extensions:
            oid = value.oid.dotted_string
            if oid in seen:  # RFC 5280 §4.2: at most one instance of an extension
                raise CertificateError(f"extension {oid} given twice")
            seen.add(oid)
            out += _der.tlv(
                _der.SEQUENCE,
                _der.encode_oid(oid)
                + (_der.encode_bool(True) if critical else b"")  # DEFAULT FALSE is omitted
                + _der.tlv(_der.OCTET_STRING, value.public_bytes()),
            )
        return out


def sign_certificate(
    tbs: TbsCertificate, signer: PrivateKey, scheme: SignatureScheme
) -> x509.Certificate:
    """Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }."""
    tbs_der = tbs.encode(scheme.algorithm_identifier)
    signature = scheme.sign(signer, tbs_der)
    der = _der.tlv(
        _der.SEQUENCE, tbs_der + scheme.algorithm_identifier + _der.bit_string(signature)
    )
    return x509.load_der_x509_certificate(der)
