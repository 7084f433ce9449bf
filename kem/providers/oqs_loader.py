"""Find liboqs and import liboqs-python without its side effects.

liboqs-python 0.16.0.1 (oqs/oqs.py), at import time:
  * adds a StreamHandler(stdout) at INFO to logger "oqs.oqs" and logs a faulthandler line;
  * loads ``liboqs`` via ctypes.util.find_library, then $OQS_INSTALL_PATH (or ~/_oqs) + /lib
    and /lib64 ``liboqs.so``; if that fails it *git-clones and builds liboqs* (after a 5 s
    countdown) and raises SystemExit when that fails;
  * warns (UserWarning) when liboqs's major.minor differs from its own version, while its
    ctypes OQS_KEM struct layout is that of its own version.
So: locate and dlopen the library ourselves first, never import oqs unless that worked, require
matching major.minor, and strip the stdout handler / capture the warning.

Where liboqs is looked for: $OQS_INSTALL_PATH when set (liboqs-python's own variable), else the
cache scripts/liboqs.sh builds into (cache_prefix(); /var/cache/pqike as root), else ~/_oqs.
A liboqs found in the cache is handed to liboqs-python through OQS_INSTALL_PATH while it imports.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

HINT = "BIKE/HQC/FrodoKEM/Kyber need it"
LIBOQS_VERSION = "0.16.0"  # what scripts/liboqs.sh builds: liboqs-python 0.16.0.1 wants it
SYSTEM_CACHE = Path("/var/cache/pqike")  # root's cache, beside the strongSwan root
BUILD_HINT = "build it with scripts/liboqs.sh (make test does) or set OQS_INSTALL_PATH"


@dataclass(frozen=True)
class OqsStatus:
    module: ModuleType | None
    reason: str | None  # why liboqs is unavailable
    version: str = ""  # liboqs C library version
    python_version: str = ""  # liboqs-python version
    library: str = ""  # path we found
    notes: tuple[str, ...] = ()  # captured warnings etc.


_lock = threading.Lock()
_status: OqsStatus | None = None


def cache_prefix() -> Path:
    """Where scripts/liboqs.sh installs liboqs when OQS_INSTALL_PATH is unset (its --prefix)."""
    name = f"liboqs-{LIBOQS_VERSION}"
    if os.geteuid() == 0:
        return SYSTEM_CACHE / name
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pqike" / name


def search_path() -> list[tuple[Path, str]]:
    """The install prefixes looked at, in order, each with how it was chosen (for messages)."""
    if "OQS_INSTALL_PATH" in os.environ:
        return [(Path(os.environ["OQS_INSTALL_PATH"]), "OQS_INSTALL_PATH")]
    found = [(cache_prefix(), "cache"), (SYSTEM_CACHE / f"liboqs-{LIBOQS_VERSION}", "cache")]
    found.append((Path.home() / "_oqs", "default"))
    return [d for i, d in enumerate(found) if d[0] not in [p for p, _ in found[:i]]]


def _library_in(root: Path) -> tuple[Path | None, list[str]]:
    """``root``'s lib/liboqs.so (or lib64/), else None and the versioned files seen instead."""
    others: list[str] = []
    for sub in ("lib", "lib64"):
        path = root / sub / "liboqs.so"
        if path.exists():
            return path, []
        others += sorted(p.name for p in (root / sub).glob("liboqs.so.*"))
    return None, others


def install_dir() -> tuple[Path, str]:
    """The liboqs install prefix pqike uses (the first of search_path() holding a liboqs.so,
    else the first searched), and how it was chosen."""
    candidates = search_path()
    for root, how in candidates:
        if _library_in(root)[0] is not None:
            return root, how
    return candidates[0]


def _shown(root: Path, how: str) -> str:
    if how == "default":
        return "~/_oqs"
    return f"{root} ({how})" if how == "OQS_INSTALL_PATH" else str(root)


def find_library() -> tuple[Path | None, str]:
    """The liboqs.so liboqs-python will load (via install_dir()), or (None, reason)."""
    candidates = search_path()
    for root, how in candidates:
        path, others = _library_in(root)
        if path is not None:
            return path, ""
        if others:
            return None, (
                f"liboqs in {_shown(root, how)} has {', '.join(others)} but no liboqs.so, "
                f"which liboqs-python loads; {HINT}"
            )
    where = " or ".join(_shown(root, how) for root, how in candidates)
    hint = "" if candidates[0][1] == "OQS_INSTALL_PATH" else f": {BUILD_HINT}"
    return None, f"liboqs not found in {where}{hint}; {HINT}"


@contextmanager
def _install_path_env(root: Path) -> Iterator[None]:
    """OQS_INSTALL_PATH=root while liboqs-python imports: it only looks there and in ~/_oqs,
    and would otherwise try to download and build liboqs."""
    before = os.environ.get("OQS_INSTALL_PATH")
    os.environ["OQS_INSTALL_PATH"] = str(root)
    try:
        yield
    finally:
        if before is None:
            del os.environ["OQS_INSTALL_PATH"]
        else:
            os.environ["OQS_INSTALL_PATH"] = before


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _probe() -> OqsStatus:
    try:
        py_version = importlib.metadata.version("liboqs-python")
    except importlib.metadata.PackageNotFoundError:
        return OqsStatus(None, f"liboqs-python not installed (pip install 'pqike[oqs]'); {HINT}")
    path, reason = find_library()
    if path is None:
        return OqsStatus(None, reason, python_version=py_version)
    try:
        lib = ctypes.CDLL(str(path))
        lib.OQS_version.restype = ctypes.c_char_p
        c_version = lib.OQS_version().decode()
    except (OSError, AttributeError) as exc:
        return OqsStatus(None, f"cannot load {path}: {exc}", python_version=py_version)
    if _major_minor(c_version) != _major_minor(py_version):
        return OqsStatus(
            None,
            f"liboqs {c_version} at {path} does not match liboqs-python {py_version} "
            "(its ctypes structs follow its own version)",
            c_version,
            py_version,
            str(path),
        )
    if "oqs.oqs" not in sys.modules and (mod := sys.modules.get("oqs")) is not None:
        return OqsStatus(None, f"another module named 'oqs' is loaded ({mod!r})")

    oqs_logger = logging.getLogger("oqs.oqs")
    mute = _MuteFilter()
    oqs_logger.addFilter(mute)
    try:
        with warnings.catch_warnings(record=True) as caught, _install_path_env(path.parent.parent):
            warnings.simplefilter("always")
            import oqs
    except BaseException as exc:  # SystemExit from its auto-install path, too
        if isinstance(exc, KeyboardInterrupt):
            raise
        return OqsStatus(
            None, f"importing liboqs-python failed: {exc!r}", c_version, py_version, str(path)
        )
    finally:
        oqs_logger.removeFilter(mute)
        for handler in list(oqs_logger.handlers):
            if isinstance(handler, logging.StreamHandler) and handler.stream in (
                sys.stdout,
                sys.__stdout__,
            ):
                oqs_logger.removeHandler(handler)
    notes = tuple(str(w.message) for w in caught)
    loaded = oqs.oqs_version()
    if loaded != c_version:
        # find_library() found another liboqs first (system-wide); sizes come from that one.
        notes += (f"liboqs-python loaded liboqs {loaded}, not {c_version} from {path}",)
    return OqsStatus(oqs, None, loaded, py_version, str(path), notes)


class _MuteFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


def load() -> OqsStatus:
    """Probe once (thread-safe); later calls return the cached status."""
    global _status
    with _lock:
        if _status is None:
            _status = _probe()
        return _status
