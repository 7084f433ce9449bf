"""The one exception a bad configuration raises, and the warnings a loadable one carries."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

__all__ = ["ConfigError", "ConfigWarning"]


class ConfigError(Exception):
    """A configuration that cannot be used: which file, which key, what is wrong.

    ``keypath`` is dotted with list indices, e.g.
    ``connections.home.children.net.esp_proposals[0]``; empty for file-level problems
    (unreadable file, TOML syntax).
    """

    def __init__(self, file: str, keypath: str, message: str) -> None:
        self.file = file
        self.keypath = keypath
        self.message = message
        self.errors: tuple[ConfigError, ...] = (self,)
        where = f"{file}: {keypath}" if keypath else file
        super().__init__(f"{where}: {message}")

    @classmethod
    def all_of(cls, errors: Sequence[ConfigError]) -> ConfigError:
        """Every problem of one load as one exception: the first one's file, keypath and
        message, and every problem on its own line in str()."""
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        combined = cls(first.file, first.keypath, first.message)
        combined.errors = tuple(errors)
        combined.args = ("\n".join(str(e) for e in errors),)
        return combined


class ConfigWarning(msgspec.Struct, frozen=True):
    """Loadable but probably not what the operator wants (weak PSK, oversized IKE_SA_INIT)."""

    file: str
    keypath: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.keypath}" if self.keypath else self.file
        return f"{where}: {self.message}"
