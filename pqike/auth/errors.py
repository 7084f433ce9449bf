"""Typed errors of the authentication layer; ``str(exc)`` is the user-facing reason."""

from __future__ import annotations


class AuthError(Exception):
    """Base class for authentication and PKI failures."""


class LiboqsUnavailable(AuthError):
    """A Falcon operation was requested but liboqs cannot be used (reason in the message)."""


class KeyMismatch(AuthError):
    """A key of the wrong type was handed to a signature scheme or auth method."""


class AuthDataError(AuthError):
    """Malformed AUTH payload data (RFC 7427 method 14)."""


class TruncatedAuthData(AuthDataError):
    pass


class UnknownAlgorithmIdentifier(AuthDataError):
    pass


class SchemeNotAllowed(AuthDataError):
    """The scheme's hash was not announced in SIGNATURE_HASH_ALGORITHMS."""


class NoCommonScheme(AuthError):
    """No signature scheme for our key uses a hash the peer announced."""


class CertificateError(AuthError):
    """Loading, chain or identity check failed."""
