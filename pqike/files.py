"""Files that hold secrets (private keys; logs, which hold keys at level 4).

They are created mode 0600 whatever existed before and never written through a symbolic
link: a link planted at the path (even a dangling one) would otherwise make us create or
overwrite a file of the attacker's choosing, readable where the attacker wants it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["PRIVATE_MODE", "open_private", "write_atomic"]

PRIVATE_MODE = 0o600


def _refuse_symlink(path: str | os.PathLike[str]) -> OSError:
    return OSError(errno.ELOOP, "is a symbolic link, refusing to write through it", str(path))


def open_private(path: str | os.PathLike[str], *, append: bool = False) -> int:
    """A descriptor open for writing on ``path``, mode 0600, the file truncated unless
    ``append``. An existing file's mode is forced to 0600 on the descriptor itself (no race
    with a rename); a symbolic link is refused. For files that grow (logs); whole files are
    better written with ``write_atomic``, which also leaves no descriptor others opened
    earlier pointing at the new content.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    flags |= os.O_APPEND if append else os.O_TRUNC
    try:
        fd = os.open(path, flags, PRIVATE_MODE)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _refuse_symlink(path) from None
        raise
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != PRIVATE_MODE:
            os.fchmod(fd, PRIVATE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = PRIVATE_MODE) -> None:
    """Write ``data`` to a new file next to ``path`` and rename it over ``path``.

    The new inode is created 0600 by mkstemp (O_EXCL, so never through a link) and gets
    ``mode`` before it holds anything; an existing file's mode, owner and hard links do not
    matter, and a reader never sees half a file. A symbolic link at ``path`` is refused
    rather than silently replaced: the operator meant something by it.
    """
    target = Path(path)
    if target.is_symlink():
        raise _refuse_symlink(target)
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if mode != PRIVATE_MODE:
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
