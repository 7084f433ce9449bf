"""The certificates a configuration names, summarised for ``list-certs``.

Used by the daemon (its running config) and by ``pqike list-certs --config DIR``. Files
that cannot be read are reported as problems, never as errors: listing must work while
``pqike pki`` has not generated everything yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pqike.config import Config

__all__ = ["certificate_files", "list_certificates"]


def certificate_files(config: Config) -> list[str]:
    """Every certificate file of the config, end entities first, without duplicates."""
    files: list[str] = []
    for conn in config.connections.values():
        files += conn.local.certs
        files += conn.remote.certs
    for conn in config.connections.values():
        files += conn.local.cacerts
        files += conn.remote.cacerts
    files += [a.cacert for a in config.authorities.values()]
    seen: set[str] = set()
    return [f for f in files if not (f in seen or seen.add(f))]


def _key_files(config: Config) -> list[tuple[str, bytes | None]]:
    out: list[tuple[str, bytes | None]] = [
        (p.file, p.secret.encode() if p.secret else None) for p in config.secrets.private.values()
    ]
    out += [(c.local.key, None) for c in config.connections.values() if c.local.key]
    return out


def _private_spkis(config: Config, problems: list[str]) -> set[bytes]:
    from pqike.auth.keys import load_private_key, public_key_of, spki_der

    spkis: set[bytes] = set()
    seen: set[str] = set()
    for path, password in _key_files(config):
        if path in seen:
            continue
        seen.add(path)
        try:
            key = load_private_key(Path(path).read_bytes(), password)
            spkis.add(spki_der(public_key_of(key)))
        except OSError as e:
            problems.append(f"{path}: cannot read private key: {e.strerror}")
        except Exception as e:  # AuthError, unsupported key types, liboqs missing
            problems.append(f"{path}: {e}")
    return spkis


def list_certificates(config: Config) -> dict[str, Any]:
    """``{"certs": [CertSummary...], "text": swanctl-like text, "problems": [str...]}``."""
    from pqike.auth.certs import (
        cert_spki_der,
        format_certificates,
        load_certificate_file,
        summarize_certificate,
    )

    problems: list[str] = []
    spkis = _private_spkis(config, problems)
    summaries = []
    seen: set[bytes] = set()
    for path in certificate_files(config):
        try:
            cert = load_certificate_file(path)
        except OSError as e:
            problems.append(f"{path}: cannot read certificate: {e.strerror}")
            continue
        except Exception as e:
            problems.append(f"{path}: {e}")
            continue
        tbs = cert.tbs_certificate_bytes  # the same certificate named by two connections
        if tbs in seen:
            continue
        seen.add(tbs)
        try:
            summaries.append(
                summarize_certificate(cert, has_private_key=cert_spki_der(cert) in spkis)
            )
        except Exception as e:
            problems.append(f"{path}: {e}")
    return {
        "certs": summaries,
        "text": format_certificates(summaries),
        "problems": problems,
    }
