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
from pathlib import Path
from typing import Any

import msgspec

from pqike.config.checks import check
from pqike.config.credentials import Credentials, load_credentials
from pqike.config.decode import Context, decode_named, decode_secrets, decode_struct
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


def load_config(path: str | os.PathLike[str], *, require_files: bool = True) -> Config:
    """Load, validate and return a Config; raise ConfigError naming file, key and problem.

    ``require_files``: read every certificate, key and CA file now and refuse the config if
    one cannot be used (every such problem is reported, not only the first); the Config then
    carries them (``credentials``). Off only to inspect a config before ``pqike pki``
    generated its credentials (``list-conns``/``list-certs --config``); IKE_AUTH then fails.
    """
    root = Path(path)
    files = _files(root)
    daemon = Daemon()
    connections: dict[str, Connection] = {}
    pools: dict[str, Pool] = {}
    authorities: dict[str, Authority] = {}
    ike: dict[str, IkeSecret] = {}
    ppk: dict[str, PpkSecret] = {}
    private: dict[str, PrivateKey] = {}
    origin: dict[str, str] = {}  # "connections.home" -> file that defined it

    for i, file in enumerate(files):
        raw = _read(file)
        ctx = Context(str(file), file.parent.resolve())
        for key in raw:
            if key not in _SECTIONS:
                close = difflib.get_close_matches(key, _SECTIONS, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ctx.error(key, f"unknown key '{key}'{hint}")
        if "daemon" in raw:
            if i > 0:
                raise ctx.error("daemon", f"daemon settings belong in {files[0].name}")
            daemon = decode_struct(raw["daemon"], Daemon, "daemon", ctx)
        parts: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        if "connections" in raw:
            parts.append(
                (
                    "connections",
                    connections,
                    decode_named(raw["connections"], Connection, "connections", ctx),
                )
            )
        if "pools" in raw:
            parts.append(("pools", pools, decode_named(raw["pools"], Pool, "pools", ctx)))
        if "authorities" in raw:
            parts.append(
                (
                    "authorities",
                    authorities,
                    decode_named(raw["authorities"], Authority, "authorities", ctx),
                )
            )
        if "secrets" in raw:
            s = decode_secrets(raw["secrets"], "secrets", ctx)
            parts += [("secrets", ike, s.ike), ("secrets", ppk, s.ppk)]
            parts.append(("secrets", private, s.private))
        for section, target, items in parts:
            for name, item in items.items():
                kp = f"{section}.{name}"
                if kp in origin:
                    raise ctx.error(kp, f"'{name}' is already defined in {origin[kp]}")
                origin[kp] = str(file)
                target[name] = item

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
            raise ConfigError(file_of(keypath), keypath, message)
        warnings.append(ConfigWarning(file_of(keypath), keypath, message))
    credentials = Credentials()
    if require_files:
        credentials, problems = load_credentials(config, str(files[0].parent.resolve()))
        if problems:
            raise ConfigError.all_of([ConfigError(file_of(kp), kp, m) for kp, m in problems])
    return msgspec.structs.replace(config, warnings=tuple(warnings), credentials=credentials)
