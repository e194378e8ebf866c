"""The messages of APPEND beyond RFC 3501's one literal: several of them (MULTIAPPEND, RFC 3502
6.3.11), literal8 (BINARY, RFC 3516 4.3) and CATENATE (RFC 4469 5). Import the public names
from `imapd.parser`.

    append         = "APPEND" SP mailbox 1*append-message
    append-message = SP [flag-list SP] [date-time SP] append-data
    append-data    = literal / literal8 / "CATENATE" SP "(" cat-part *(SP cat-part) ")"
    cat-part       = "TEXT" SP (literal / literal8) / "URL" SP astring
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from imapd.parser_base import ParseError, Reader, parse_date_time
from imapd.parser_binary import read_literal8

__all__ = ["AppendMessage", "CatPart", "parse_append_message", "starts_append_message"]


@dataclass(frozen=True, slots=True)
class CatPart:
    """One part of a CATENATE: ``kind`` is "TEXT" (``value`` the octets) or "URL" (``value``
    the URL as sent)."""

    kind: str
    value: bytes


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of an APPEND: the literal's octets, or the parts to join (CATENATE)."""

    flags: tuple[str, ...]
    internal_date: datetime.datetime | None
    data: bytes = b""
    catenate: tuple[CatPart, ...] | None = None


def starts_append_message(reader: Reader) -> bool:
    """Whether another append-message follows (after its SP): flags, a date, a literal or
    CATENATE; anything else is not part of APPEND."""
    byte = reader.peek()
    if byte in (0x28, 0x22, 0x7B, 0x7E):
        return True
    return reader.data[reader.pos : reader.pos + 8].upper() == b"CATENATE"


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
    if reader.data[reader.pos : reader.pos + 8].upper() != b"CATENATE":
        raise ParseError(None, "APPEND needs the message as a literal")
    reader.keyword()
    reader.sp()
    parts = []
    for _ in reader.paren_list():
        kind = reader.keyword()
        reader.sp()
        if kind == "TEXT":
            parts.append(CatPart(kind, _literal(reader)))
        elif kind == "URL":
            parts.append(CatPart(kind, reader.astring()))
        else:
            raise ParseError(None, "Expected TEXT or URL")
    if not parts:
        raise ParseError(None, "Empty CATENATE")
    return AppendMessage(flags, internal_date, catenate=tuple(parts))


def _literal(reader: Reader) -> bytes:
    if reader.peek() == 0x7E:
        return read_literal8(reader)
    if reader.peek() != 0x7B:
        raise ParseError(None, "Expected a literal")
    return reader.literal()
