"""The messages of APPEND beyond RFC 3501's one literal: several of them (MULTIAPPEND, RFC 3502
6.3.11), literal8 (BINARY, RFC 3516 4.3), CATENATE (RFC 4469 5) and a message with UTF-8 headers
(UTF8=ACCEPT, RFC 6855 4). Import the public names from `imapd.parser`.

    append         = "APPEND" SP mailbox 1*append-message
    append-message = SP [flag-list SP] [date-time SP] append-data
    append-data    = literal / literal8 / "CATENATE" SP "(" cat-part *(SP cat-part) ")"
                     / utf8-literal
    cat-part       = "TEXT" SP (literal / literal8) / "URL" SP astring / utf8-literal
    utf8-literal   = "UTF8" SP "(" literal8 ")"

A utf8-literal may also hold a plain literal (lenient: the octets are the same). Whether the
session may use it (after ENABLE UTF8=ACCEPT only) is the handler's check.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from imapd.parser_base import ParseError, Reader, parse_date_time
from imapd.parser_binary import read_literal8

__all__ = ["AppendMessage", "CatPart", "parse_append_message", "starts_append_message"]


@dataclass(frozen=True, slots=True)
class CatPart:
    """One part of a CATENATE: ``kind`` is "TEXT" or "UTF8" (``value`` the octets) or "URL"
    (``value`` the URL as sent)."""

    kind: str
    value: bytes


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of an APPEND: the literal's octets, or the parts to join (CATENATE);
    ``utf8`` when the message came as a utf8-literal."""

    flags: tuple[str, ...]
    internal_date: datetime.datetime | None
    data: bytes = b""
    catenate: tuple[CatPart, ...] | None = None
    utf8: bool = False

    @property
    def uses_utf8(self) -> bool:
        """Whether the message or one of its CATENATE parts is a utf8-literal (RFC 6855 4)."""
        return self.utf8 or any(part.kind == "UTF8" for part in self.catenate or ())


def starts_append_message(reader: Reader) -> bool:
    """Whether another append-message follows (after its SP): flags, a date, a literal,
    CATENATE or UTF8; anything else is not part of APPEND."""
    byte = reader.peek()
    if byte in (0x28, 0x22, 0x7B, 0x7E):
        return True
    return _next_word(reader) in (b"CATENATE", b"UTF8")


def _next_word(reader: Reader) -> bytes:
    end = reader.pos
    while end < reader.size and reader.data[end] not in (0x20, 0x28):
        end += 1
    return reader.data[reader.pos : end].upper()


def parse_append_message(reader: Reader) -> AppendMessage:
    flags: tuple[str, ...] = ()
    internal_date = None
    if reader.peek() == 0x28:
        flags = reader.flag_list()
        reader.sp()
    if reader.peek() == 0x22:
        internal_date = parse_date_time(reader.quoted())
        reader.sp()
    if reader.peek() in (0x7B, 0x7E):
        return AppendMessage(flags, internal_date, _literal(reader))
    word = _next_word(reader)
    if word == b"UTF8":
        return AppendMessage(flags, internal_date, _utf8_literal(reader), utf8=True)
    if word != b"CATENATE":
        raise ParseError(None, "APPEND needs the message as a literal")
    reader.keyword()
    reader.sp()
    parts = []
    for _ in reader.paren_list():
        kind = reader.keyword()
        if kind == "UTF8":
            parts.append(CatPart(kind, _utf8_literal(reader, keyword_read=True)))
            continue
        reader.sp()
        if kind == "TEXT":
            parts.append(CatPart(kind, _literal(reader)))
        elif kind == "URL":
            parts.append(CatPart(kind, reader.astring()))
        else:
            raise ParseError(None, "Expected TEXT, URL or UTF8")
    if not parts:
        raise ParseError(None, "Empty CATENATE")
    return AppendMessage(flags, internal_date, catenate=tuple(parts))


def _utf8_literal(reader: Reader, keyword_read: bool = False) -> bytes:
    """utf8-literal = "UTF8" SP "(" literal8 ")" (RFC 6855 4)."""
    if not keyword_read:
        reader.keyword()
    reader.sp()
    reader.expect(0x28, "(")
    data = _literal(reader)
    reader.expect(0x29, ")")
    return data


def _literal(reader: Reader) -> bytes:
    if reader.peek() == 0x7E:
        return read_literal8(reader)
    if reader.peek() != 0x7B:
        raise ParseError(None, "Expected a literal")
    return reader.literal()
