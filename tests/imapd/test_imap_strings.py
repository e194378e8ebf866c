"""imapd/strings.py, the one IMAP quoting (RFC 3501 4.3, 9), and common.logs.escaped()."""

from __future__ import annotations

import pytest

from common.logs import escaped, printable
from imapd.strings import MAX_QUOTED, astring, literal, quoted, string


def test_quoted_escapes_only_backslash_and_quote() -> None:
    assert quoted(b'a "b" \\c') == b'"a \\"b\\" \\\\c"'
    assert quoted(b"") == b'""'


def test_literal() -> None:
    assert literal(b"two\r\nlines") == b"{10}\r\ntwo\r\nlines"


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (None, b"NIL"),
        ("", b'""'),
        ("tab\tok", b'"tab\tok"'),
        ("caf\u00e9", b"{5}\r\ncaf\xc3\xa9"),  # 8-bit: only a literal carries it
        (b"cr\rlf", b"{5}\r\ncr\rlf"),
        (b"nul\x00", b"{4}\r\nnul\x00"),
    ],
)
def test_string(value: bytes | str | None, wire: bytes) -> None:
    assert string(value) == wire


def test_string_length_limit() -> None:
    long = b"x" * MAX_QUOTED
    assert string(long) == literal(long)
    assert string(long[:-1]) == quoted(long[:-1])
    assert string(long, limit=None) == quoted(long)


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("a[b", b'"a[b"'),  # sent bare only what every reader takes for an atom
        ("x}", b'"x}"'),
        ("p\u00e4ss", b'"p\xc3\xa4ss"'),  # one piece, no literal: UTF-8 in the quoted string
    ],
)
def test_astring(value: str, wire: bytes) -> None:
    assert astring(value) == wire


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\x00b"])
def test_astring_refuses_what_no_quoted_string_carries(value: str) -> None:
    with pytest.raises(ValueError, match="CR, LF and NUL"):
        astring(value)


def test_escaped_keeps_spaces_and_shows_controls() -> None:
    assert escaped("a b\r\n\x00\t\u200b") == "a b\\r\\n\\x00\\t\\u200b"
    assert printable("a b\r\n") == "a?b??"  # one value: no spaces at all
