"""The certificates and private keys a configuration names, read when it is loaded.

Reading them with the configuration means a file that cannot be used refuses it, at start
and at a reload (which then changes nothing), with the file and the reason, instead of
failing IKE_AUTHs later; and IKE_AUTH signs with what was checked, not with whatever the
file holds by then (as charon, which loads credentials once, at ``swanctl --load-creds``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from cryptography import x509

    from pqike.auth.keys import PrivateKey
    from pqike.config.model import Config

__all__ = ["Credentials", "Problem", "load_credentials"]

Problem = tuple[str, str]  # keypath, message
T = TypeVar("T")
_MAX_FILE = 1 << 20  # a PEM bundle of ML-DSA-87 certificates is a few tens of KB


@dataclass(frozen=True, repr=False)
class Credentials:
    """Certificates (the first of each file) and private keys, by absolute path."""

    certs: Mapping[str, x509.Certificate] = field(default_factory=dict)
    keys: Mapping[str, PrivateKey] = field(default_factory=dict)

    def __repr__(self) -> str:  # never the key objects, not even their addresses
        return f"Credentials({len(self.certs)} certificates, {len(self.keys)} private keys)"

    def key_for(self, cert: x509.Certificate) -> PrivateKey | None:
        """The private key whose public key is the certificate's (charon's lookup)."""
        want = _cert_spki(cert)
        if want is None:
            return None
        return next((k for k in self.keys.values() if _key_spki(k) == want), None)


class _Unusable(Exception):
    """Why a file cannot be used; the message follows the file's path."""


def _read(path: str) -> bytes:
    """The file's bytes; a directory, FIFO or device (which could block) is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise _Unusable(f"cannot read: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _Unusable("not a regular file")
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(_MAX_FILE + 1)
        except OSError as e:
            raise _Unusable(f"cannot read: {e.strerror}") from None
    if len(data) > _MAX_FILE:
        raise _Unusable(f"larger than {_MAX_FILE} bytes")
    return data


def _certificate(path: str) -> x509.Certificate:
    from pqike.auth.certs import load_certificate
    from pqike.auth.errors import AuthError

    data = _read(path)
    try:
        return load_certificate(data)
    except (AuthError, ValueError):
        raise _Unusable("not a PEM or DER X.509 certificate") from None


def _private_key(path: str, password: bytes | None) -> PrivateKey:
    from pqike.auth.errors import AuthError
    from pqike.auth.keys import load_private_key

    data = _read(path)
    try:
        return load_private_key(data, password)
    except TypeError:  # cryptography: a passphrase for a plain key, or none for an encrypted one
        if password is None:
            raise _Unusable(
                "encrypted private key, and no secrets.private<suffix> entry gives its passphrase"
            ) from None
        return _private_key(path, None)
    except (AuthError, ValueError) as e:
        if password is not None and "password" in str(e).lower():
            raise _Unusable("wrong passphrase in secrets.private") from None
        raise _Unusable("not a PEM or DER private key") from None


def _cert_spki(cert: x509.Certificate) -> bytes | None:
    from pqike.auth.certs import cert_spki_der

    try:
        return cert_spki_der(cert)
    except Exception:  # a key type cryptography cannot encode: no match check
        return None


def _key_spki(key: PrivateKey) -> bytes | None:
    from pqike.auth.keys import public_key_of, spki_der

    try:
        return spki_der(public_key_of(key))
    except Exception:
        return None


def _certificate_files(config: Config) -> Iterator[tuple[str, str]]:
    for name, conn in config.connections.items():
        for side, auth in (("local", conn.local), ("remote", conn.remote)):
            for key in ("certs", "cacerts"):
                for i, path in enumerate(getattr(auth, key)):
                    yield f"connections.{name}.{side}.{key}[{i}]", path
    for name, authority in config.authorities.items():
        yield f"authorities.{name}.cacert", authority.cacert


def _key_files(config: Config) -> Iterator[tuple[str, str]]:
    for name, conn in config.connections.items():
        if conn.local.key:
            yield f"connections.{name}.local.key", conn.local.key
    for name, private in config.secrets.private.items():
        yield f"secrets.{name}.file", private.file


def _match_problems(
    config: Config, creds: Credentials, show: Callable[[str], str]
) -> Iterator[Problem]:
    """Each local certificate's private key is there and is the certificate's."""
    for name, conn in config.connections.items():
        if conn.local.auth != "pubkey" or not conn.local.certs:
            continue
        cert_path = conn.local.certs[0]
        cert = creds.certs.get(cert_path)
        if cert is None or _cert_spki(cert) is None:
            continue  # nothing to compare
        if conn.local.key:
            key = creds.keys.get(conn.local.key)
            if key is not None and _key_spki(key) not in (None, _cert_spki(cert)):
                yield (
                    f"connections.{name}.local.key",
                    f"{show(conn.local.key)}: not the private key of certificate {show(cert_path)}",
                )
        elif creds.key_for(cert) is None:
            yield (
                f"connections.{name}.local.certs[0]",
                f"{show(cert_path)}: no secrets.private<suffix> key belongs to this certificate",
            )


def _load_each(
    files: Iterator[tuple[str, str]], read: Callable[[str], T], show: Callable[[str], str]
) -> tuple[dict[str, T], list[Problem]]:
    """Read each named file once; a bad file is reported at every key that names it."""
    loaded: dict[str, T] = {}
    failed: dict[str, str] = {}
    problems: list[Problem] = []
    for keypath, path in files:
        if path in loaded:
            continue
        if path not in failed:
            try:
                loaded[path] = read(path)
                continue
            except _Unusable as e:
                failed[path] = str(e)
        problems.append((keypath, f"{show(path)}: {failed[path]}"))
    return loaded, problems


def load_credentials(config: Config, base: str | None = None) -> tuple[Credentials, list[Problem]]:
    """Read every certificate and key file the config names; every problem, not the first.
    Paths under ``base`` (the config's directory) are shown relative to it, as written."""

    def show(path: str) -> str:
        if base is not None and os.path.commonpath([base, path]) == base:
            return os.path.relpath(path, base)
        return path

    passwords = {
        p.file: p.secret.encode() for p in config.secrets.private.values() if p.secret is not None
    }
    certs, problems = _load_each(_certificate_files(config), _certificate, show)
    keys, key_problems = _load_each(
        _key_files(config), lambda path: _private_key(path, passwords.get(path)), show
    )
    creds = Credentials(certs=certs, keys=keys)
    if problems or key_problems:  # a key that did not load would also "not match"
        return creds, [*problems, *key_problems]
    return creds, list(_match_problems(config, creds, show))
