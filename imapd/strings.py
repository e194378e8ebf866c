"""IMAP strings on the wire (RFC 3501 4.1-4.3, 9): atoms, quoted strings and literals.

The one place that quotes for IMAP: the server's responses and message structures, mailbox names
and fetch labels, and the 4711 gateway's commands to its IMAP server. A leaf module (it imports
nothing from imapd), so the gateway can quote without importing the server.
"""

from __future__ import annotations

import re

# What a value we send bare may hold: ATOM-CHAR less "[" and "}", the cautious choice for a value
# of unknown content. Callers that know theirs (a mailbox name) test with the parser's ATOM_RE.
SEND_ATOM_RE = re.compile(rb"[!#$&'+-Z^-z|~]+")
# QUOTED-CHAR of 7 bits: every CHAR but CR and LF, NUL excluded (CHAR8 excludes it).
_QUOTABLE_RE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*")
_NEVER_QUOTED_RE = re.compile(rb"[\x00\r\n]")
MAX_QUOTED = 1024  # longer strings go as literals


def quoted(data: bytes) -> bytes:
    """A quoted string: DQUOTE, the bytes with only `\\` and `"` escaped, DQUOTE."""
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(data: bytes) -> bytes:
    """A literal: `{size}` CRLF and the bytes as they are."""
    return b"{%d}\r\n" % len(data) + data


def string(value: bytes | str | None, limit: int | None = MAX_QUOTED) -> bytes:
    """nstring for a response: NIL for None, a quoted string when quoting can carry the bytes
    and they are fewer than `limit` (None: any number), else a literal. A str goes as UTF-8."""
    if value is None:
        return b"NIL"
    data = value.encode("utf-8") if isinstance(value, str) else value
    if (limit is None or len(data) < limit) and _QUOTABLE_RE.fullmatch(data):
        return quoted(data)
    return literal(data)


def astring(value: str) -> bytes:
    """An astring argument for a command sent in one piece: an atom when it can be, else a
    quoted string, its UTF-8 bytes as they are (servers, ours too, take 8-bit bytes there).

    A command sent in one piece has no literal, so CR, LF and NUL cannot be sent: ValueError.
    """
    data = value.encode("utf-8")
    if SEND_ATOM_RE.fullmatch(data):
        return data
    if _NEVER_QUOTED_RE.search(data):
        raise ValueError("CR, LF and NUL cannot be sent in a quoted string")
    return quoted(data)
