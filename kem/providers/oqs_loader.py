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
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import logging
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

HINT = "BIKE/HQC/FrodoKEM/Kyber need it"


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


def install_dir() -> tuple[Path, str]:
    """The directory liboqs-python searches, and how it was chosen (for messages)."""
    if "OQS_INSTALL_PATH" in os.environ:
        return Path(os.environ["OQS_INSTALL_PATH"]), "OQS_INSTALL_PATH"
    return Path.home() / "_oqs", "default"


def find_library() -> tuple[Path | None, str]:
    """The liboqs.so liboqs-python would load from the install dir, or (None, reason)."""
    root, how = install_dir()
    shown = f"{root} ({how})" if how != "default" else "~/_oqs (set OQS_INSTALL_PATH)"
    others: list[str] = []
    for sub in ("lib", "lib64"):
        path = root / sub / "liboqs.so"
        if path.exists():
            return path, ""
        others += sorted(p.name for p in (root / sub).glob("liboqs.so.*"))
    if others:
        return None, (
            f"liboqs in {shown} has {', '.join(others)} but no liboqs.so, which "
            f"liboqs-python loads; {HINT}"
        )
    return None, f"liboqs not found in {shown}; {HINT}"


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
        with warnings.catch_warnings(record=True) as caught:
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
