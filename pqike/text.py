"""Peer-controlled text made safe for a log line or a terminal.

Identities, certificate subjects and anything else a peer chooses reach our logs and the
CLI. Printed raw, a newline forges a whole log line and an escape sequence drives the
operator's terminal. ``printable`` escapes every non-printable character and the backslash
(``\\xNN`` for ASCII, ``\\uNNNN`` beyond), so the text stays readable, nothing is lost and
an escaped sequence cannot be mistaken for one the peer sent. Bytes that are not UTF-8 come
out as ``\\xNN`` of the byte.
"""

from __future__ import annotations

__all__ = ["one_line", "printable", "printable_bytes"]

# Python's "surrogateescape" maps an undecodable byte 0xNN to the lone surrogate U+DCNN.
_SURROGATE_LO, _SURROGATE_HI = 0xDC80, 0xDCFF


def _escape(ch: str) -> str:
    # \xNN is ASCII or a byte that was not UTF-8, \uNNNN/\UNNNNNNNN a character: unambiguous
    code = ord(ch)
    if _SURROGATE_LO <= code <= _SURROGATE_HI:
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with non-printable characters (control, line and paragraph separators,
    format characters such as bidi overrides) and the backslash escaped."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escape(c) if c == "\\" or not c.isprintable() else c for c in text)


def printable_bytes(data: bytes) -> str:
    """Peer bytes meant as UTF-8 text (FQDN, RFC822, DN values), escaped like ``printable``."""
    return printable(data.decode("utf-8", "surrogateescape"))


def one_line(text: str) -> str:
    """A formatted log message that cannot span lines: control characters are escaped, the
    backslash is not (peer text in it was escaped by ``printable`` already)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)
