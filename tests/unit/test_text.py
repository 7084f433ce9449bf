"""Peer text in logs: escaping that loses nothing and forges nothing, identities that always
print, and a log formatter that never writes more than one line per record."""

from __future__ import annotations

import logging
import re

from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from pqike.auth.certs import Identity, name_text
from pqike.daemon.logtap import format_record
from pqike.log import _Formatter
from pqike.text import one_line, printable, printable_bytes
from pqike.wire.iana import IdType

FORGED = "carol\n12:00:00.000 [IKE] <rw|9> IKE_SA rw[9] established"
HOSTILE = [FORGED, "a\x00b", "\x1b[2J\x1b[31mred", "del\x7f", "cr\rlf\n", "nel\x85ls\u2028"]


def _unescape(text: str) -> bytes:
    """Inverse of printable_bytes: \\xNN is a byte, \\uNNNN / \\UNNNNNNNN a character."""
    out, i = bytearray(), 0
    while i < len(text):
        if text[i] != "\\":
            out += text[i].encode()
            i += 1
            continue
        kind = text[i + 1]
        width = {"x": 2, "u": 4, "U": 8}[kind]
        code = int(text[i + 2 : i + 2 + width], 16)
        out += bytes([code]) if kind == "x" else chr(code).encode()
        i += 2 + width
    return bytes(out)


def test_printable_escapes_controls_and_backslash() -> None:
    assert printable("carol@strongswan.org") == "carol@strongswan.org"
    assert printable("Müller, CN=☃") == "Müller, CN=☃"  # printable Unicode stays
    assert printable(FORGED) == "carol\\x0a12:00:00.000 [IKE] <rw|9> IKE_SA rw[9] established"
    assert printable("a\x00b\x1b[0m\x7f\\") == "a\\x00b\\x1b[0m\\x7f\\x5c"
    assert printable("\x85\u202e\u2028") == "\\u0085\\u202e\\u2028"  # NEL, bidi, LS


def test_printable_bytes_keeps_invalid_utf8_bytes() -> None:
    assert printable_bytes(b"moon\xff\xc2\x85") == "moon\\xff\\u0085"


@given(st.binary(max_size=200))
def test_printable_bytes_is_lossless_and_printable(data: bytes) -> None:
    text = printable_bytes(data)
    assert text.isprintable()
    assert _unescape(text) == data


@given(st.text(max_size=200))
def test_printable_and_one_line_are_single_printable_lines(text: str) -> None:
    assert printable(text).isprintable()
    assert one_line(text).isprintable()
    assert one_line(printable(text)) == printable(text)  # nothing escaped twice


@given(st.integers(0, 255), st.binary(max_size=300))
def test_identity_str_never_raises_and_is_printable(id_type: int, data: bytes) -> None:
    text = str(Identity(id_type, data))  # type: ignore[arg-type]
    assert text.isprintable()


@given(st.sampled_from(list(IdType)), st.binary(max_size=40))
def test_identity_str_for_every_known_type(id_type: IdType, data: bytes) -> None:
    assert str(Identity(id_type, data)).isprintable()


def test_address_identity_of_the_wrong_length_is_invalid_not_the_other_family() -> None:
    v4_as_16 = Identity(IdType.ID_IPV4_ADDR, bytes(range(16)))
    v6_as_4 = Identity(IdType.ID_IPV6_ADDR, bytes([10, 0, 0, 1]))
    assert v4_as_16.problem() == "invalid ID_IPV4_ADDR identity (16 bytes, expected 4)"
    assert v6_as_4.problem() == "invalid ID_IPV6_ADDR identity (4 bytes, expected 16)"
    assert str(v4_as_16) == f"(invalid ID_IPV4_ADDR {bytes(range(16)).hex()})"
    assert str(v6_as_4) == "(invalid ID_IPV6_ADDR 0a000001)"
    assert Identity(IdType.ID_IPV4_ADDR, bytes([10, 0, 0, 1])).problem() is None
    assert str(Identity(IdType.ID_IPV4_ADDR, bytes([10, 0, 0, 1]))) == "10.0.0.1"
    assert Identity(IdType.ID_FQDN, b"").problem() is None


def test_identity_str_per_type_as_charon_prints_it() -> None:
    # the ID type read off the wire may be a plain int: it prints as its IdType would
    assert str(Identity(IdType.ID_IPV6_ADDR, bytes(15) + b"\x01")) == "::1"
    assert str(Identity(IdType.ID_FQDN, b"moon.strongswan.org")) == "moon.strongswan.org"
    assert str(Identity(3, b"carol@strongswan.org")) == "carol@strongswan.org"  # type: ignore[arg-type]
    dn = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "moon")]).public_bytes()
    assert str(Identity(IdType.ID_DER_ASN1_DN, dn)) == "CN=moon"
    assert str(Identity(IdType.ID_DER_ASN1_DN, b"\x30\x03")) == "(invalid DN 3003)"
    assert str(Identity(IdType.ID_KEY_ID, b"\x0a\x0b")) == "@#0a0b"
    assert str(Identity(200, b"\x01")) == "(unknown ID type 200 01)"  # type: ignore[arg-type]


@given(st.text(min_size=1, max_size=16))
def test_dn_values_are_escaped_in_identities_and_certificate_names(value: str) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])
    shown = str(Identity(IdType.ID_DER_ASN1_DN, name.public_bytes()))
    assert shown.isprintable()
    assert shown == f"CN={printable(value)}"
    assert name_text(name) == shown


def _record(msg: str, *args: object) -> logging.LogRecord:
    record = logging.LogRecord("pqike.IKE", 20, __file__, 1, msg, args, None)
    record.sa = "rw|1"
    return record


def test_formatter_writes_one_line_per_record_whatever_the_message() -> None:
    for text in HOSTILE:
        line = _Formatter().format(_record("authentication of '%s' failed", text))
        assert "\n" not in line and "\r" not in line and line.isprintable()
        assert re.match(r"\d\d:\d\d:\d\d\.\d{3} \[IKE\] <rw\|1> authentication of '", line)
        assert format_record(_record("%s", text)).isprintable()  # the CLI's log stream
