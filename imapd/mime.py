"""The structure of one message: header fields and the lazy MIME part tree.

RFC 5322 2.1-2.2 (header and body, fields, folding) and RFC 2046 5.1 (multipart bodies,
boundary delimiters, the multipart/digest default), as IMAP4rev1 numbers and describes parts
(RFC 3501 6.4.5, 7.4.2). Content-* values are parsed in `imapd.mimefields`, text is decoded in
`imapd.mimetext`.

Header text is kept as "octet strings": bytes decoded as latin-1, so each character is exactly
one octet and 8-bit header bytes come out again unchanged when a value is written back to the
client (ENVELOPE and BODYSTRUCTURE pass header bytes through; only SEARCH decodes them).

Deliberate differences from Dovecot: Content-* fields count without a MIME-Version field (as
in Python's email and most clients), and boundaries match exactly (RFC 2046 5.1.1: "--"
boundary, then "--" or only whitespace), where Dovecot accepts any line that starts with one.

Nothing here raises on malformed input: every parser returns a best-effort value.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from imapd.mimefields import OPAQUE, ContentType, parse_content_type

# Nesting deeper than this (multiparts and message/rfc822 together) is treated as an opaque
# application/octet-stream leaf: it bounds recursion on hostile input (Dovecot also caps it).
MAX_DEPTH = 64
# A multipart with more parts than this keeps the rest inside its last part.
MAX_PARTS = 10_000

_FIELD_SPLIT = re.compile(rb"\n(?![ \t])")  # a line end not followed by a continuation line
_LINE_END = re.compile(rb"\r?\n")


class Field(NamedTuple):
    """One header field (RFC 5322 2.2): its upper-case name and its raw text as in the message,
    folding included, without the final line break. A line that is not a field has a name
    that matches no real field name (it is never looked up, and HEADER.FIELDS.NOT keeps it)."""

    name: str
    raw: bytes

    @property
    def value(self) -> str:
        """The unfolded value (RFC 5322 2.2.3: each CRLF removed, the WSP after it kept), as an
        octet string with surrounding whitespace stripped."""
        data = self.raw[self.raw.find(b":") + 1 :]
        if b"\n" in data:
            data = data.replace(b"\r\n", b"").replace(b"\n", b"")
        return data.strip(b" \t\r").decode("latin-1")

    @property
    def lines(self) -> bytes:
        """The field's lines, each ending in CRLF (normalised only when the message is not)."""
        text = self.raw[:-1] if self.raw.endswith(b"\r") else self.raw
        if b"\n" in text and text.count(b"\n") != text.count(b"\r\n"):
            text = _LINE_END.sub(b"\r\n", text)
        return text + b"\r\n"


# Field(name, raw) without the NamedTuple __new__ wrapper: parse_fields is on ENVELOPE's hot path.
_new_field = tuple.__new__


# --- header block (RFC 5322 2.1, 2.2) ---------------------------------------------------


def split_header(buf: bytes, start: int, end: int) -> tuple[int, bool]:
    """Return (offset of the body, whether a blank line ended the header) for the entity that
    occupies buf[start:end]. Without a blank line the whole entity is header (RFC 3501 6.4.5:
    "a message which has no body and no blank line"). Bare LF is tolerated."""
    if buf.startswith(b"\r\n", start) and start + 2 <= end:
        return start + 2, True
    if buf.startswith(b"\n", start) and start < end:
        return start + 1, True
    crlf = buf.find(b"\n\r\n", start, end)
    lf = buf.find(b"\n\n", start, crlf if crlf >= 0 else end)
    if lf >= 0:
        return lf + 2, True
    if crlf >= 0:
        return crlf + 3, True
    return end, False


def parse_fields(block: bytes) -> list[Field]:
    """Split a header block (without its blank line) into fields: a line and its continuation
    lines, those starting with WSP, make one field. Names are not validated here: an invalid
    one (spaces, 8-bit, missing colon) can never equal a field name anyone asks for."""
    fields: list[Field] = []
    for chunk in _FIELD_SPLIT.split(block):
        if chunk and chunk != b"\r":
            colon = chunk.find(b":")
            name = chunk[:colon].rstrip(b" \t").decode("latin-1").upper() if colon > 0 else ""
            fields.append(_new_field(Field, (name, chunk)))
    return fields


# --- the part tree (RFC 2046 5.1) --------------------------------------------------------


class Entity:
    """One MIME entity of a message: a header and a body, both slices of the message buffer.

    The top-level message is an Entity too. Fields, content type, sub-parts and the message
    inside a message/rfc822 part are all parsed on first use and then cached.
    """

    __slots__ = (
        "_children",
        "_ctype",
        "_fields",
        "_first",
        "_inner",
        "body_start",
        "buf",
        "depth",
        "end",
        "has_blank",
        "in_digest",
        "start",
    )

    def __init__(
        self, buf: bytes, start: int, end: int, depth: int = 0, in_digest: bool = False
    ) -> None:
        self.buf, self.start, self.end = buf, start, end
        self.depth, self.in_digest = depth, in_digest
        self.body_start, self.has_blank = split_header(buf, start, end)
        self._fields: list[Field] | None = None
        self._first: dict[str, Field] | None = None
        self._ctype: ContentType | None = None
        self._children: list[Entity] | None = None
        self._inner: Entity | None = None

    @property
    def fields(self) -> list[Field]:
        """The header fields, in order."""
        if self._fields is None:
            end = self.body_start
            if self.has_blank:
                end -= 2 if self.buf[end - 2 : end] == b"\r\n" else 1
            self._fields = parse_fields(self.buf[self.start : max(end, self.start)])
        return self._fields

    def first(self, name: str) -> str | None:
        """Value of the first field called `name` (upper-case), None when absent."""
        if self._first is None:
            self._first = {f.name: f for f in reversed(self.fields)}
        field = self._first.get(name)
        return None if field is None else field.value

    def header_bytes(self) -> bytes:
        """The header including its blank line, as in the message."""
        return self.buf[self.start : self.body_start]

    def body_bytes(self) -> bytes:
        """The body after the blank line, as in the message."""
        return self.buf[self.body_start : self.end]

    @property
    def size(self) -> int:
        """Body size in octets (RFC 3501 body-fld-octets)."""
        return self.end - self.body_start

    @property
    def lines(self) -> int:
        """Body size in text lines (RFC 3501 body-fld-lines): the number of line ends, as
        Dovecot and Cyrus count; a last line without CRLF is not counted."""
        return self.buf.count(b"\n", self.body_start, self.end)

    @property
    def content_type(self) -> ContentType:
        """The parsed Content-Type with the RFC 2045/2046 defaults applied."""
        if self._ctype is None:
            ctype = parse_content_type(self.first("CONTENT-TYPE"), self.in_digest)
            if self.depth >= MAX_DEPTH and ctype.type in ("MULTIPART", "MESSAGE"):
                ctype = OPAQUE
            self._ctype = ctype
        return self._ctype

    @property
    def is_multipart(self) -> bool:
        """True for multipart/* (RFC 2046 5.1)."""
        return self.content_type.type == "MULTIPART"

    @property
    def is_message(self) -> bool:
        """True for message/rfc822, whose body is a whole message (RFC 2046 5.2.1)."""
        ctype = self.content_type
        return ctype.type == "MESSAGE" and ctype.subtype == "RFC822"

    @property
    def children(self) -> list[Entity]:
        """The body parts of a multipart. A multipart in which no part can be found gets one
        empty text/plain part, since IMAP cannot express a multipart without parts."""
        if self._children is None:
            self._children = self._split() if self.is_multipart else []
        return self._children

    @property
    def inner(self) -> Entity:
        """The encapsulated message of a message/rfc822 part (its body as an Entity)."""
        if self._inner is None:
            self._inner = Entity(self.buf, self.body_start, self.end, self.depth + 1)
        return self._inner

    def _split(self) -> list[Entity]:
        """Cut the body at its boundary delimiter lines (RFC 2046 5.1.1)."""
        boundary = dict(self.content_type.params).get("boundary", "")
        digest = self.content_type.subtype == "DIGEST"
        spans = find_parts(self.buf, self.body_start, self.end, boundary) if boundary else []
        parts = [Entity(self.buf, s, e, self.depth + 1, digest) for s, e in spans]
        return parts or [Entity(self.buf, self.end, self.end, self.depth + 1)]


def find_parts(buf: bytes, start: int, end: int, boundary: str) -> list[tuple[int, int]]:
    """Return the (start, end) of each body part between boundary delimiter lines.

    The CRLF before a delimiter belongs to the delimiter (RFC 2046 5.1.1). A delimiter line is
    "--" boundary, then optional "--" (the close delimiter, after which anything may follow on
    the line) or else only transport padding (LWSP). A missing close delimiter ends the last
    part at the end of the body. Matching is exact, so an outer boundary that is a prefix of an
    inner one does not cut the inner part.
    """
    if start >= end:
        return []
    delim = re.compile(
        rb"\n--"
        + re.escape(boundary.encode("latin-1", "replace"))
        + rb"(?:(--)[^\n]*|[ \t]*)(?=\r?\n|\Z)"
    )
    spans: list[tuple[int, int]] = []
    part_start = -1
    pos = start - 1  # the body always follows a LF, so a first-line delimiter is "\n--b"
    while len(spans) < MAX_PARTS:
        m = delim.search(buf, pos, end)
        if m is None:
            break
        if part_start >= 0:
            cut = m.start() - (1 if buf[m.start() - 1 : m.start()] == b"\r" else 0)
            spans.append((part_start, max(part_start, cut)))
        if m.group(1):
            return spans
        line_end = buf.find(b"\n", m.end(), end)
        part_start = end if line_end < 0 else line_end + 1
        pos = part_start - 1
    if part_start >= 0:
        spans.append((part_start, end))
    return spans
