"""swanctl.conf -> pqike's TOML configuration (``pqike import-swanctl``).

The parser reads strongSwan's settings syntax (``name { key = value }`` sections, ``#``
comments, double-quoted values with escapes, ``include`` with globs relative to the file
that includes). The mapping is pqike's model itself: pqike's keys are swanctl's names (the
reverse renderer, ``pqike.config.render.to_swanctl_conf``, writes every model field under
its own name), so a key is carried over exactly when the model struct for its section has a
field of that name, converted to that field's type. Everything else is reported, with the
file, line, key path and why, never silently dropped.

swanctl's implicit credentials become explicit: relative ``certs`` are in ``x509/``,
``cacerts`` and ``authorities.*.cacert`` in ``x509ca/``; every key in ``private/`` (and
``rsa/``, ``ecdsa/``, ``pkcs8/``) becomes a ``secrets.private-*`` entry and every CA in
``x509ca/`` a trust anchor (``authorities``), as swanctl --load-all loads them all.
"""

from __future__ import annotations

import glob
import re
import tempfile
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from pqike.config.errors import ConfigError
from pqike.config.loader import MAIN_FILE, load_config
from pqike.config.model import Auth, Authority, Child, Connection, Pool
from pqike.config.toml_writer import dumps
from pqike.files import PRIVATE_MODE, write_atomic

__all__ = [
    "Dropped",
    "Imported",
    "Section",
    "SwanctlSyntaxError",
    "Value",
    "Written",
    "import_swanctl",
    "parse_swanctl",
    "render",
    "write_imported",
]

KEY_DIRS = ("private", "rsa", "ecdsa", "pkcs8")


class SwanctlSyntaxError(ValueError):
    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file, self.line, self.message = file, line, message


@dataclass
class Value:
    text: str
    file: str
    line: int


@dataclass
class Section:
    name: str
    file: str
    line: int
    items: dict[str, Value | Section] = field(default_factory=dict)

    def merge(self, key: str, item: Value | Section) -> None:
        """strongSwan's semantics: a repeated section is merged, a repeated key replaced."""
        old = self.items.get(key)
        if isinstance(old, Section) and isinstance(item, Section):
            for k, v in item.items.items():
                old.merge(k, v)
        else:
            self.items[key] = item


# --- parser ----------------------------------------------------------------------------------

_NAME = re.compile(r"[^\s{}=#\":]+")


class _Scanner:
    def __init__(self, text: str, file: str) -> None:
        self.text, self.file, self.pos = text, file, 0

    @property
    def line(self) -> int:
        return self.text.count("\n", 0, self.pos) + 1

    def error(self, message: str) -> SwanctlSyntaxError:
        return SwanctlSyntaxError(self.file, self.line, message)

    def skip_blank(self) -> None:
        while True:
            m = re.compile(r"\s*(#[^\n]*)?").match(self.text, self.pos)
            assert m is not None
            if m.end() == self.pos:
                return
            self.pos = m.end()

    def at_end(self) -> bool:
        self.skip_blank()
        return self.pos >= len(self.text)

    def peek(self) -> str:
        self.skip_blank()
        return self.text[self.pos : self.pos + 1]

    def name(self) -> str:
        self.skip_blank()
        m = _NAME.match(self.text, self.pos)
        if not m:
            raise self.error(f"expected a name, found {self.text[self.pos : self.pos + 10]!r}")
        self.pos = m.end()
        return m.group()

    def value(self) -> str:
        """After '=': a quoted string (escapes, may span lines) or the rest of the line up
        to a comment or a closing brace, trimmed."""
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1
        if self.text[self.pos : self.pos + 1] == '"':
            return self._quoted()
        m = re.compile(r"[^\n#}]*").match(self.text, self.pos)
        assert m is not None
        self.pos = m.end()
        return m.group().strip()

    def _quoted(self) -> str:
        out: list[str] = []
        self.pos += 1
        escapes = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
        while self.pos < len(self.text):
            c = self.text[self.pos]
            self.pos += 1
            if c == '"':
                return "".join(out)
            if c == "\\" and self.pos < len(self.text):
                nxt = self.text[self.pos]
                self.pos += 1
                out.append(escapes.get(nxt, nxt))
            else:
                out.append(c)
        raise self.error("unterminated string")


def parse_swanctl(path: str | Path, _depth: int = 0) -> Section:
    """Parse a swanctl.conf (following its includes) into a tree of sections."""
    path = Path(path)
    root = Section("", str(path), 0)
    _parse_into(root, path, _depth)
    return root


def _parse_into(section: Section, path: Path, depth: int) -> None:
    if depth > 10:
        raise SwanctlSyntaxError(str(path), 0, "includes nested too deeply (a loop?)")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SwanctlSyntaxError(str(path), 0, f"cannot read: {e.strerror}") from None
    s = _Scanner(text, str(path))
    _parse_body(s, section, path, depth, top=True)


def _parse_body(s: _Scanner, section: Section, path: Path, depth: int, *, top: bool) -> None:
    while True:
        if s.at_end():
            if not top:
                raise s.error(f"section '{section.name}' is not closed")
            return
        if s.peek() == "}":
            if top:
                raise s.error("'}' without a section to close")
            s.pos += 1
            return
        line = s.line
        name = s.name()
        if name == "include":
            _include(s, section, path, depth)
            continue
        ref = ""
        if s.peek() == ":":  # `name : template { }` (strongSwan section references)
            s.pos += 1
            ref = s.name()
        nxt = s.peek()
        if nxt == "{":
            s.pos += 1
            child = Section(name, str(path), line)
            if ref:
                child.items[":"] = Value(ref, str(path), line)
            _parse_body(s, child, path, depth, top=False)
            section.merge(name, child)
        elif nxt == "=" and not ref:
            s.pos += 1
            section.merge(name, Value(s.value(), str(path), line))
        else:
            raise s.error(f"expected '=' or '{{' after '{name}'")


def _include(s: _Scanner, section: Section, path: Path, depth: int) -> None:
    pattern = s.value()
    if not pattern:
        raise s.error("include without a file name")
    full = pattern if Path(pattern).is_absolute() else str(path.parent / pattern)
    for match in sorted(glob.glob(full)):
        _parse_into(section, Path(match), depth + 1)


# --- mapping ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dropped:
    """An option that could not be carried over."""

    file: str
    line: int
    keypath: str
    why: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.keypath}: {self.why}"


@dataclass
class Imported:
    tree: dict[str, Any]  # pqike's TOML tree
    dropped: list[Dropped]
    files: dict[str, Path]  # path in the new configuration -> file to copy there


# why pqike has no such option, for the swanctl options operators use most
_WHY = {
    "updown": "pqike runs no updown scripts",
    "ah_proposals": "AH is not supported (ESP only)",
    "aggressive": "IKEv1 only",
    "pull": "IKEv1 only",
    "mediation": "IKE mediation is not supported",
    "hostaccess": "pqike installs no hostaccess policies",
    "ipcomp": "IPComp is not supported",
    "hw_offload": "no hardware offload (kernel or userspace ESP only)",
    "pubkeys": "raw public keys are not supported: use certificates",
    "revocation": "no CRL/OCSP checking",
    "eap_id": "EAP is not supported",
    "xauth_id": "XAuth is not supported (IKEv1)",
    "groups": "group membership checks are not supported",
    "cert_policy": "certificate policy checks are not supported",
}
_AUTH_SIDE = re.compile(r"(local|remote)(?:-?\w+)?")


def _why(key: str) -> str:
    if key.startswith(("mark_", "set_mark_", "if_id_", "label")):
        return "XFRM marks, interface IDs and labels are not supported"
    return _WHY.get(key, "no such option in pqike")


def _fields(cls: type[msgspec.Struct]) -> dict[str, Any]:
    return {f.name: f.type for f in msgspec.structs.fields(cls)}


def _base(tp: Any) -> Any:
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else tp
    return tp


_BOOL = {"yes": True, "true": True, "no": False, "false": False}


def _convert(text: str, tp: Any) -> Any:
    """A swanctl value as the model field's type; ValueError names the problem."""
    base = _base(tp)
    if typing.get_origin(base) is tuple:
        return [item.strip() for item in text.split(",") if item.strip()]
    if base is bool:
        if text.lower() not in _BOOL:
            raise ValueError(f"'{text}' is not yes or no")
        return _BOOL[text.lower()]
    if base is int or (
        typing.get_origin(base) is Literal
        and all(isinstance(a, int) for a in typing.get_args(base))
    ):
        try:
            return int(text)
        except ValueError:
            return text  # a duration ("1h"): pqike parses swanctl's syntax
    return text


class _Mapper:
    def __init__(self, source_dir: Path, relative: bool) -> None:
        self.dir = source_dir
        self.relative = relative  # paths relative to the new config (files are copied)
        self.dropped: list[Dropped] = []
        self.files: dict[str, Path] = {}

    def drop(self, item: Value | Section, keypath: str, why: str) -> None:
        self.dropped.append(Dropped(item.file, item.line, keypath, why))

    def path(self, name: str, subdir: str) -> str:
        """swanctl's relative credential paths are relative to its subdirectory."""
        if Path(name).is_absolute():
            return name
        rel = f"{subdir}/{name}"
        self.files[rel] = self.dir / subdir / name
        return rel if self.relative else str(self.dir / subdir / name)

    def struct(self, sec: Section, cls: type[msgspec.Struct], kp: str) -> dict[str, Any]:
        """The keys of ``sec`` that ``cls`` has, converted; the others reported."""
        fields = _fields(cls)
        out: dict[str, Any] = {}
        for key, item in sec.items.items():
            where = f"{kp}.{key}"
            if key == ":":
                self.drop(sec, kp, "section references (name : template) are not supported")
            elif isinstance(item, Section) or key not in fields:
                self.drop(item, where, _why(key))
            else:
                try:
                    out[key] = _convert(item.text, fields[key])
                except ValueError as e:
                    self.drop(item, where, str(e))
        return out

    def connection(self, sec: Section, kp: str) -> dict[str, Any]:
        plain = Section(sec.name, sec.file, sec.line)
        rounds: dict[str, Section] = {}
        out: dict[str, Any] = {}
        for key, item in sec.items.items():
            m = _AUTH_SIDE.fullmatch(key)
            if isinstance(item, Section) and m:
                side = m.group(1)
                if side in rounds:
                    why = "more than one authentication round (RFC 4739) is not supported"
                    self.drop(item, f"{kp}.{key}", why)
                else:
                    rounds[side] = item
                    out[side] = self.auth(item, f"{kp}.{key}")
            elif isinstance(item, Section) and key == "children":
                out["children"] = {
                    name: self.struct(child, Child, f"{kp}.children.{name}")
                    for name, child in item.items.items()
                    if self._is_section(child, f"{kp}.children.{name}")
                }
            else:
                plain.items[key] = item
        scalars = self.struct(plain, Connection, kp)
        for key in ("local", "remote", "children"):
            scalars.pop(key, None)
        if scalars.get("mobike") is True:
            self.drop(sec.items["mobike"], f"{kp}.mobike", "MOBIKE (RFC 4555) is not supported")
            scalars["mobike"] = False
        if scalars.get("version") == 0:
            scalars.pop("version")  # "any": pqike speaks IKEv2
        elif scalars.get("version") == 1:
            self.drop(sec.items["version"], f"{kp}.version", "IKEv1 is not supported")
            scalars.pop("version")
        return {**scalars, **out}

    def _is_section(self, item: Value | Section, kp: str) -> bool:
        if isinstance(item, Section):
            return True
        self.drop(item, kp, "expected a section")
        return False

    def auth(self, sec: Section, kp: str) -> dict[str, Any]:
        out = self.struct(sec, Auth, kp)
        method = out.get("auth", "pubkey")
        if method not in ("pubkey", "psk"):
            self.drop(
                sec.items["auth"], f"{kp}.auth", f"authentication '{method}' is not supported"
            )
            out.pop("auth")
        out["certs"] = [self.path(c, "x509") for c in out.get("certs", [])]
        out["cacerts"] = [self.path(c, "x509ca") for c in out.get("cacerts", [])]
        return {k: v for k, v in out.items() if v != []}

    def secrets(self, sec: Section, kp: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, item in sec.items.items():
            where = f"{kp}.{name}"
            if not self._is_section(item, where):
                continue
            assert isinstance(item, Section)
            if name.startswith(("ike", "ppk")):
                table: dict[str, Any] = {}
                for key, v in item.items.items():
                    if isinstance(v, Value) and (key == "secret" or key.startswith("id")):
                        table[key] = v.text
                    else:
                        self.drop(v, f"{where}.{key}", _why(key))
                out[name] = table
            elif name.startswith("private") and isinstance(item.items.get("file"), Value):
                file = item.items["file"]
                assert isinstance(file, Value)
                out[name] = {"file": self.path(file.text, "private")}
                if isinstance(item.items.get("secret"), Value):
                    out[name]["secret"] = item.items["secret"].text  # type: ignore[union-attr]
            else:
                why = "only ike, ppk and private secrets are supported (EAP, XAuth, tokens not)"
                self.drop(item, where, why)
        return out

    def implicit_credentials(self, tree: dict[str, Any]) -> None:
        """What swanctl --load-all loads without being told: every private key and CA."""
        secrets = tree.setdefault("secrets", {})
        named = {s["file"] for k, s in secrets.items() if k.startswith("private")}
        for sub in KEY_DIRS:
            for f in sorted((self.dir / sub).glob("*")):
                if f.is_file():
                    path = self.path(f.name, sub)
                    if path not in named:
                        secrets[f"private-{sub}-{_slug(f.stem)}"] = {"file": path}
        authorities = tree.setdefault("authorities", {})
        anchors = {a.get("cacert") for a in authorities.values()}
        for f in sorted((self.dir / "x509ca").glob("*")):
            path = self.path(f.name, "x509ca")
            if f.is_file() and path not in anchors:
                authorities[f"x509ca-{_slug(f.stem)}"] = {"cacert": path}
        for f in sorted((self.dir / "x509").glob("*")):
            if f.is_file():
                self.path(f.name, "x509")  # copied: certs may name it
        for key in ("secrets", "authorities"):
            if not tree[key]:
                del tree[key]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def import_swanctl(path: str | Path, *, relative: bool = True) -> Imported:
    """Convert a swanctl.conf (and the credential directories next to it).

    ``relative``: credential paths relative to the new configuration (``Imported.files``
    says what to copy where), else absolute paths into the swanctl directory.
    """
    path = Path(path)
    root = parse_swanctl(path)
    m = _Mapper(path.parent.resolve(), relative)
    tree: dict[str, Any] = {}
    for key, item in root.items.items():
        if not m._is_section(item, key):
            continue
        assert isinstance(item, Section)
        sections = {n: s for n, s in item.items.items() if m._is_section(s, f"{key}.{n}")}
        if key == "connections":
            tree[key] = {n: m.connection(s, f"{key}.{n}") for n, s in sections.items()}  # type: ignore[arg-type]
        elif key == "pools":
            tree[key] = {n: m.struct(s, Pool, f"{key}.{n}") for n, s in sections.items()}  # type: ignore[arg-type]
            for name, pool in tree[key].items():
                if isinstance(pool.get("addrs"), str) and "," in pool["addrs"]:
                    first = pool["addrs"].split(",")[0].strip()
                    m.drop(
                        sections[name], f"pools.{name}.addrs", f"one range per pool: kept {first}"
                    )
                    pool["addrs"] = first
        elif key == "authorities":
            tree[key] = {}
            for n, s in sections.items():
                auth = m.struct(s, Authority, f"{key}.{n}")  # type: ignore[arg-type]
                if "cacert" in auth:
                    auth["cacert"] = m.path(auth["cacert"], "x509ca")
                    tree[key][n] = auth
        elif key == "secrets":
            tree[key] = m.secrets(item, key)
        else:
            m.drop(
                item, key, "not a swanctl.conf section (connections, pools, authorities, secrets)"
            )
    m.implicit_credentials(tree)
    files = {rel: src for rel, src in m.files.items() if src.is_file()}
    for rel, src in m.files.items():
        if not src.is_file() and relative:
            m.dropped.append(Dropped(str(path), 0, rel, f"{src} does not exist: nothing to copy"))
    return Imported(tree, m.dropped, files)


# --- writing ---------------------------------------------------------------------------------


@dataclass
class Written:
    toml: str
    dropped: list[Dropped]
    copied: list[str]
    error: str | None  # why the result does not load (every problem, one a line)


def render(imported: Imported, source: str) -> str:
    head = [f"# converted from {source} by pqike import-swanctl"]
    if imported.dropped:
        head.append("# not carried over:")
        head += [f"#   {d}" for d in imported.dropped]
    return "\n".join(head) + "\n\n" + dumps(imported.tree)


def write_imported(file: str | Path, out_dir: str | Path | None, *, force: bool = False) -> Written:
    """Convert ``file``; with ``out_dir``, write pqike.toml there (0600: it holds the PSKs)
    and copy the credentials it names (keys 0600), then load the result as the daemon
    would. Without, load the TOML (absolute paths) from a temporary directory."""
    imported = import_swanctl(file, relative=out_dir is not None)
    text = render(imported, str(file))
    copied: list[str] = []
    if out_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / MAIN_FILE).write_text(text)
            error = _load_error(Path(tmp))
        if error is not None:  # name the input, not a file that is gone
            error = error.replace(str(Path(tmp) / MAIN_FILE), f"{file} (converted)")
        return Written(text, imported.dropped, copied, error)
    out = Path(out_dir)
    if (out / MAIN_FILE).exists() and not force:
        raise FileExistsError(f"{out / MAIN_FILE} exists (--force overwrites it)")
    out.mkdir(parents=True, exist_ok=True)
    for rel, src in imported.files.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        private = rel.split("/", 1)[0] in KEY_DIRS
        write_atomic(target, src.read_bytes(), PRIVATE_MODE if private else 0o644)
        copied.append(rel)
    write_atomic(out / MAIN_FILE, text.encode())
    return Written(text, imported.dropped, copied, _load_error(out))


def _load_error(directory: Path) -> str | None:
    try:
        load_config(directory)
    except ConfigError as e:
        return str(e)
    return None
