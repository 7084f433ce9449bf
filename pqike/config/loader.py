"""load_config(): files -> one validated, immutable Config (or one ConfigError).

Layout: ``load_config(dir)`` reads ``dir/pqike.toml`` and then ``dir/conf.d/*.toml`` in name
order; ``load_config(file)`` reads just that file. Every file may hold ``connections``,
``pools``, ``authorities`` and ``secrets``; a name may be defined only once across files.
``daemon`` settings live in the main file only. Relative paths are resolved against the
directory of the file that names them.

Loading is pure: nothing global is touched, so a failed reload leaves the running Config
as it was and the daemon simply keeps using it.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from pqike.config.checks import check
from pqike.config.credentials import Credentials, load_credentials
from pqike.config.decode import (
    Context,
    collect_errors,
    decode_named,
    decode_secrets,
    decode_struct,
)
from pqike.config.errors import ConfigError, ConfigWarning
from pqike.config.model import (
    Authority,
    Config,
    Connection,
    Daemon,
    IkeSecret,
    Pool,
    PpkSecret,
    PrivateKey,
    Secrets,
)

__all__ = ["MAIN_FILE", "load_config"]

MAIN_FILE = "pqike.toml"
CONF_D = "conf.d"
_SECTIONS = ("daemon", "connections", "pools", "authorities", "secrets")


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        main = path / MAIN_FILE
        if not main.is_file():
            raise ConfigError(str(path), "", f"no {MAIN_FILE} in this directory")
        return [main, *sorted((path / CONF_D).glob("*.toml"))]
    if not path.exists():
        raise ConfigError(str(path), "", "no such file or directory")
    return [path]


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(str(path), "", f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), "", f"TOML syntax: {e}") from None


@dataclass
class _Sections:
    daemon: Daemon = field(default_factory=Daemon)
    connections: dict[str, Connection] = field(default_factory=dict)
    pools: dict[str, Pool] = field(default_factory=dict)
    authorities: dict[str, Authority] = field(default_factory=dict)
    ike: dict[str, IkeSecret] = field(default_factory=dict)
    ppk: dict[str, PpkSecret] = field(default_factory=dict)
    private: dict[str, PrivateKey] = field(default_factory=dict)


def _merge_file(
    raw: dict[str, Any],
    file: Path,
    i: int,
    files: list[Path],
    errors: list[ConfigError],
    origin: dict[str, str],
    out: _Sections,
) -> None:
    """Decode one file's sections into ``out``; every problem goes to ``errors``."""
    ctx = Context(str(file), file.parent.resolve())
    for key in raw:
        if key not in _SECTIONS:
            close = difflib.get_close_matches(key, _SECTIONS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            errors.append(ctx.error(key, f"unknown key '{key}'{hint}"))
    if "daemon" in raw:
        with collect_errors(errors):
            if i > 0:
                raise ctx.error("daemon", f"daemon settings belong in {files[0].name}")
            out.daemon = decode_struct(raw["daemon"], Daemon, "daemon", ctx)
    parts: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    named: list[tuple[str, dict[str, Any], type[Any]]] = [
        ("connections", out.connections, Connection),
        ("pools", out.pools, Pool),
        ("authorities", out.authorities, Authority),
    ]
    for section, target, cls in named:
        if section in raw:
            with collect_errors(errors):
                parts.append((section, target, decode_named(raw[section], cls, section, ctx)))
    if "secrets" in raw:
        with collect_errors(errors):
            s = decode_secrets(raw["secrets"], "secrets", ctx)
            parts += [("secrets", out.ike, s.ike), ("secrets", out.ppk, s.ppk)]
            parts.append(("secrets", out.private, s.private))
    for section, target, items in parts:
        for name, item in items.items():
            kp = f"{section}.{name}"
            if kp in origin:
                errors.append(ctx.error(kp, f"'{name}' is already defined in {origin[kp]}"))
                continue
            origin[kp] = str(file)
            target[name] = item


def load_config(path: str | os.PathLike[str], *, require_files: bool = True) -> Config:
    """Load, validate and return a Config; raise ConfigError naming file, key and problem.

    ``require_files``: read every certificate, key and CA file now and refuse the config if
    one cannot be used (every such problem is reported, not only the first); the Config then
    carries them (``credentials``). Off only to inspect a config before ``pqike pki``
    generated its credentials (``list-conns``/``list-certs --config``); IKE_AUTH then fails.
    """
    root = Path(path)
    files = _files(root)
    sections = _Sections()
    connections, pools, authorities = sections.connections, sections.pools, sections.authorities
    ike, ppk, private = sections.ike, sections.ppk, sections.private
    origin: dict[str, str] = {}  # "connections.home" -> file that defined it

    errors: list[ConfigError] = []
    for i, file in enumerate(files):
        with collect_errors(errors):
            raw = _read(file)
            _merge_file(raw, file, i, files, errors, origin, sections)
    if errors:
        raise ConfigError.all_of(errors)
    daemon = sections.daemon
    config = Config(
        daemon=daemon,
        connections=connections,
        pools=pools,
        authorities=authorities,
        secrets=Secrets(ike=ike, ppk=ppk, private=private),
        source=str(root),
        files=tuple(str(f) for f in files),
    )
    main = str(files[0])

    def file_of(keypath: str) -> str:
        parts = keypath.split(".")
        return origin.get(".".join(parts[:2]), main)

    warnings: list[ConfigWarning] = []
    for keypath, message, is_error in check(config):
        if is_error:
            errors.append(ConfigError(file_of(keypath), keypath, message))
        else:
            warnings.append(ConfigWarning(file_of(keypath), keypath, message))
    if errors:
        raise ConfigError.all_of(errors)
    credentials = Credentials()
    if require_files:
        credentials, problems = load_credentials(config, str(files[0].parent.resolve()))
        if problems:
            raise ConfigError.all_of([ConfigError(file_of(kp), kp, m) for kp, m in problems])
    return msgspec.structs.replace(config, warnings=tuple(warnings), credentials=credentials)
