"""TOML tables -> model structs, with errors that carry the key path.

msgspec does the leaf type checks; this walker does what its error paths can't: name the
dict key (connection, child, pool) that holds a bad value, suggest the key an operator
meant, and apply the swanctl syntaxes (durations, comma lists, relative paths).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from pqike.config.errors import ConfigError
from pqike.config.model import (
    Duration,
    FieldError,
    FilePath,
    Hint,
    IkeSecret,
    Items,
    PpkSecret,
    PrivateKey,
    Secrets,
)
from pqike.config.values import parse_duration, split_list

__all__ = [
    "Context",
    "collect_errors",
    "decode_named",
    "decode_secrets",
    "decode_struct",
    "keypath_join",
]

S = TypeVar("S", bound=msgspec.Struct)
Shared = TypeVar("Shared", bound=IkeSecret)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class Context:
    file: str
    base_dir: Path

    def error(self, keypath: str, message: str) -> ConfigError:
        return ConfigError(self.file, keypath, message)


def keypath_join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _did_you_mean(key: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    if typing.get_origin(tp) is typing.Annotated:
        args = typing.get_args(tp)
        return args[0], list(args[1:])
    return tp, []


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _literal_values(tp: Any) -> tuple[Any, ...] | None:
    """Allowed values if ``tp`` is a Literal (or Literal | None)."""
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            values = _literal_values(arg)
            if values is not None:
                return values
    return None


def _struct_fields(cls: type[msgspec.Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    return {f.name: f for f in msgspec.structs.fields(cls)}


def decode_named(raw: Any, cls: type[S], keypath: str, ctx: Context) -> dict[str, S]:
    """A table of named sections (connections, children, pools)."""
    if not isinstance(raw, dict):
        raise ctx.error(keypath, f"expected a table of named sections, got {_tname(raw)}")
    out: dict[str, S] = {}
    errors: list[ConfigError] = []
    for name, value in raw.items():
        if not _NAME.fullmatch(name):
            errors.append(
                ctx.error(
                    keypath_join(keypath, name),
                    f"invalid name '{name}' (letters, digits, '_' and '-' only)",
                )
            )
            continue
        with collect_errors(errors):
            out[name] = decode_struct(value, cls, keypath_join(keypath, name), ctx)
    if errors:
        raise ConfigError.all_of(errors)
    return out


@contextlib.contextmanager
def collect_errors(errors: list[ConfigError]) -> Iterator[None]:
    """Go on after a bad value: every problem of a load is reported at once."""
    try:
        yield
    except ConfigError as e:
        errors.extend(e.errors)


def decode_struct(raw: Any, cls: type[S], keypath: str, ctx: Context) -> S:
    if not isinstance(raw, dict):
        raise ctx.error(keypath, f"expected a table, got {_tname(raw)}")
    fields = _struct_fields(cls)
    kwargs: dict[str, Any] = {}
    errors: list[ConfigError] = []
    for key, value in raw.items():
        kp = keypath_join(keypath, key)
        if key not in fields:
            errors.append(ctx.error(kp, f"unknown key '{key}'{_did_you_mean(key, fields)}"))
            continue
        with collect_errors(errors):
            kwargs[key] = _decode_value(value, fields[key].type, kp, ctx)
    for name, f in fields.items():
        if name not in raw and f.required:
            errors.append(ctx.error(keypath_join(keypath, name), f"missing required key '{name}'"))
    if errors:
        raise ConfigError.all_of(errors)
    try:
        return cls(**kwargs)
    except FieldError as e:
        raise ctx.error(keypath_join(keypath, e.field), e.message) from None


def _decode_value(value: Any, tp: Any, kp: str, ctx: Context) -> Any:
    base, markers = _unwrap(tp)
    if _is_struct(base):
        return decode_struct(value, base, kp, ctx)
    if typing.get_origin(base) is dict:
        return decode_named(value, typing.get_args(base)[1], kp, ctx)

    is_list = typing.get_origin(base) is tuple
    checks = [m.check for m in markers if isinstance(m, Items)]
    if any(isinstance(m, Duration) for m in markers):
        try:
            return parse_duration(value)
        except ValueError as e:
            raise ctx.error(kp, str(e)) from None
    if is_list:
        try:
            items = split_list(value)
        except ValueError as e:
            raise ctx.error(kp, str(e)) from None
        for i, item in enumerate(items):
            for check in checks:
                try:
                    check(item)
                except ValueError as e:
                    raise ctx.error(f"{kp}[{i}]", str(e)) from None
        if any(isinstance(m, FilePath) for m in markers):
            items = [_resolve(item, ctx) for item in items]
        return tuple(items)

    allowed = _literal_values(base)
    if allowed is not None and isinstance(value, bool) and ("yes" if value else "no") in allowed:
        value = "yes" if value else "no"  # `fragmentation = true` reads as swanctl's yes
    if isinstance(value, str) and value.lower() in _SWANCTL_BOOL and _takes_bool(base):
        value = _SWANCTL_BOOL[value.lower()]  # swanctl's `mobike = no`
    try:
        result = msgspec.convert(value, tp, strict=True)
    except msgspec.ValidationError as e:
        hint = "".join(f"; {m.text}" for m in markers if isinstance(m, Hint))
        if allowed is not None:
            choices = ", ".join(repr(a) for a in allowed)
            raise ctx.error(
                kp, f"invalid value {value!r} (expected one of {choices}{hint})"
            ) from None
        msg = re.sub(r" - at `\$[^`]*`$", "", str(e))
        raise ctx.error(kp, f"{msg}{hint}") from None
    for check in checks:
        try:
            check(result)
        except ValueError as e:
            raise ctx.error(kp, str(e)) from None
    if isinstance(result, str) and any(isinstance(m, FilePath) for m in markers):
        result = _resolve(result, ctx)
    return result


_SWANCTL_BOOL = {"yes": True, "no": False, "true": True, "false": False}
# where swanctl looks for a bare file name: certificates, CA certificates, private keys
SWANCTL_DIRS = ("x509", "x509ca", "private", "rsa", "ecdsa", "pkcs8")


def _takes_bool(tp: Any) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return bool in typing.get_args(tp)
    return tp is bool


def _resolve(path: str, ctx: Context) -> str:
    # lexically, never following symbolic links: a link where a key or log file is to be
    # written must still be seen (and refused) when the file is opened (pqike.files)
    p = Path(path).expanduser()
    if p.is_absolute():
        return str(p)
    here = Path(os.path.normpath(ctx.base_dir / p))
    if len(p.parts) == 1 and not here.exists():
        # a bare name, as swanctl.conf gives them: swanctl's directories next to the config
        for sub in SWANCTL_DIRS:
            if (ctx.base_dir / sub / p).exists():
                return str(ctx.base_dir / sub / p)
    return str(here)


def _tname(value: Any) -> str:
    return {
        dict: "table",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "float",
    }.get(type(value), type(value).__name__)


_ID_KEY = re.compile(r"id([-_]?[A-Za-z0-9_-]+)?")


def decode_secrets(raw: Any, keypath: str, ctx: Context) -> Secrets:
    """``secrets.ike<suffix>`` and ``secrets.ppk<suffix>`` (``id``/``id-N`` + ``secret``), and
    ``secrets.private<suffix>``."""
    if not isinstance(raw, dict):
        raise ctx.error(keypath, f"expected a table, got {_tname(raw)}")
    ike: dict[str, IkeSecret] = {}
    ppk: dict[str, PpkSecret] = {}
    private: dict[str, PrivateKey] = {}
    errors: list[ConfigError] = []
    for name, table in raw.items():
        with collect_errors(errors):
            _decode_secret(name, table, keypath_join(keypath, name), ctx, ike, ppk, private)
    if errors:
        raise ConfigError.all_of(errors)
    return Secrets(ike=ike, ppk=ppk, private=private)


def _decode_secret(
    name: str,
    table: Any,
    kp: str,
    ctx: Context,
    ike: dict[str, IkeSecret],
    ppk: dict[str, PpkSecret],
    private: dict[str, PrivateKey],
) -> None:
    if not _NAME.fullmatch(name):
        raise ctx.error(kp, f"invalid name '{name}' (letters, digits, '_' and '-' only)")
    if name.startswith("ike"):
        ike[name] = _shared_secret(table, IkeSecret, kp, ctx)
    elif name.startswith("ppk"):
        ppk[name] = _shared_secret(table, PpkSecret, kp, ctx)
        if not ppk[name].ids:
            # charon would load it and never find it: it is looked up by PPK_ID
            raise ctx.error(kp, "a PPK needs an 'id' (the PPK_ID it is known by)")
    elif name.startswith("private"):
        private[name] = decode_struct(table, PrivateKey, kp, ctx)
    else:
        raise ctx.error(
            kp,
            f"unknown secret type '{name}' (sections are named ike<suffix>, ppk<suffix> "
            "or private<suffix>)",
        )


def _shared_secret(table: Any, cls: type[Shared], kp: str, ctx: Context) -> Shared:
    """``secret`` plus ``id`` / ``id-<suffix>`` keys (secrets.ike<suffix>, ppk<suffix>)."""
    if not isinstance(table, dict):
        raise ctx.error(kp, f"expected a table, got {_tname(table)}")
    ids: list[str] = []
    secret = None
    for key, value in table.items():
        if key == "secret":
            secret = value
        elif _ID_KEY.fullmatch(key):
            if not isinstance(value, str) or not value.strip():
                raise ctx.error(keypath_join(kp, key), "identity must be a non-empty string")
            ids.append(value.strip())
        else:
            hint = _did_you_mean(key, ["secret", "id"])
            raise ctx.error(
                keypath_join(kp, key),
                f"unknown key '{key}'{hint} (expected 'secret' and 'id' / 'id-<suffix>')",
            )
    if not isinstance(secret, str) or not secret:
        raise ctx.error(
            keypath_join(kp, "secret"),
            "missing required key 'secret'"
            if secret is None
            else "secret must be a non-empty string",
        )
    s = cls(secret=secret, ids=tuple(ids))
    try:
        s.value()
    except ValueError as e:
        raise ctx.error(keypath_join(kp, "secret"), str(e)) from None
    return s
