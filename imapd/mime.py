"""MIME plumbing for one message: header fields, Content-* values and the lazy part tree.

Implements what IMAP4rev1 (RFC 3501 6.4.5, 7.4.2) needs to see inside a message:
RFC 5322 2.2 (header fields, folding), RFC 2045 5 and 6 (Content-Type, Content-Transfer-Encoding),
RFC 2046 5.1 (multipart bodies, boundaries, the multipart/digest default), RFC 2183
(Content-Disposition), RFC 2231 (parameter continuations and charsets) and RFC 2047 (encoded
words, decoded for SEARCH only).

Header text is kept as "octet strings": bytes decoded as latin-1, so each character is exactly
one octet and 8-bit header bytes come out again unchanged when a value is written back to the
client (ENVELOPE and BODYSTRUCTURE pass header bytes through; only SEARCH decodes them).

Nothing here raises on malformed input: every parser returns a best-effort value.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

# Nesting deeper than this (multiparts and message/rfc822 together) is treated as an opaque
# application/octet-stream leaf: it bounds recursion on hostile input (Dovecot also caps it).
MAX_DEPTH = 64
# A multipart with more parts than this keeps the rest inside its last part.
MAX_PARTS = 10_000

_FIELD_SPLIT = re.compile(rb"\n(?![ \t])")  # a line end not followed by a continuation line
_LINE_END = re.compile(rb"\r?\n")
_MIME_ATOM = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"  # RFC 2045 5.1 token
_TOKEN = re.compile(_MIME_ATOM)
_CTYPE = re.compile(f"({_MIME_ATOM})[ \t]*/[ \t]*({_MIME_ATOM})")
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")
_SECTION = re.compile(r"(.+)\*([0-9]{1,3})")  # RFC 2231 3: name*N
_CHARSET_NAME = re.compile(r"[A-Za-z0-9_.:+\-]{1,40}")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
_QP_HEADER_ESC = re.compile(rb"=([0-9A-Fa-f]{2})")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


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


class ContentType(NamedTuple):
    """Content-Type (RFC 2045 5.1): upper-case type and subtype, parameters with lower-case
    names in header order (RFC 2231 sections already joined)."""

    type: str
    subtype: str
    params: list[tuple[str, str]]


# Field(name, raw) without the NamedTuple __new__ wrapper: parse_fields is on ENVELOPE's hot path.
_new_field = tuple.__new__
DEFAULT_TEXT = ContentType("TEXT", "PLAIN", [("charset", "us-ascii")])  # RFC 2045 5.2
DEFAULT_DIGEST = ContentType("MESSAGE", "RFC822", [])  # RFC 2046 5.1.5
OPAQUE = ContentType("APPLICATION", "OCTET-STREAM", [])


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


# --- Content-* values (RFC 2045, 2183, 2231) --------------------------------------------


def strip_comments(text: str) -> str:
    """Remove RFC 5322 comments (innermost first, so nesting works) and surrounding WSP."""
    if "(" not in text:
        return text.strip(" \t")
    for _ in range(32):  # bounded: pathological nesting stays as it is
        stripped = _COMMENT.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    return text.strip(" \t")


def parse_content_type(value: str | None, in_digest: bool) -> ContentType:
    """Parse Content-Type (RFC 2045 5.1); absent or invalid gives the default (RFC 2045 5.2,
    RFC 2046 5.1.5). A text type without a charset gets ("charset" "us-ascii") appended."""
    default = DEFAULT_DIGEST if in_digest else DEFAULT_TEXT
    if value is None:
        return default
    head, _, rest = value.partition(";")
    m = _CTYPE.fullmatch(strip_comments(head))
    if m is None:
        return default
    ctype, subtype = m.group(1).upper(), m.group(2).upper()
    params = parse_params(";" + rest if rest else "")
    if ctype == "TEXT" and not any(name == "charset" for name, _ in params):
        params.append(("charset", "us-ascii"))
    return ContentType(ctype, subtype, params)


def parse_disposition(value: str | None) -> tuple[str, list[tuple[str, str]]] | None:
    """Parse Content-Disposition (RFC 2183 2): (type as written, parameters), None if absent."""
    if value is None:
        return None
    head, _, rest = value.partition(";")
    kind = strip_comments(head)
    if not kind or not _TOKEN.fullmatch(kind):
        return None
    return kind, parse_params(";" + rest if rest else "")


def parse_language(value: str | None) -> list[str]:
    """Content-Language (RFC 3282): the comma-separated language tags."""
    if value is None:
        return []
    return [tag for tag in (strip_comments(t) for t in value.split(",")) if tag]


def parse_encoding(value: str | None) -> str:
    """Content-Transfer-Encoding (RFC 2045 6.1), upper-case; absent or invalid is "7BIT"."""
    if value is None:
        return "7BIT"
    token = strip_comments(value)
    return token.upper() if _TOKEN.fullmatch(token) else "7BIT"


def parse_params(text: str) -> list[tuple[str, str]]:
    """Parse `; name=value` parameters (RFC 2045 5.1) and join RFC 2231 sections."""
    raw: list[tuple[str, str]] = []
    pos, size = 0, len(text)
    while pos < size:
        semi = text.find(";", pos)
        if semi < 0:
            break
        pos, pair = _read_param(text, semi + 1)
        if pair is not None:
            raw.append(pair)
    return _join_rfc2231(raw)


def _read_param(text: str, pos: int) -> tuple[int, tuple[str, str] | None]:
    """Read one `name=value` after a ";"; return (offset after it, pair or None)."""
    eq = text.find("=", pos)
    semi = text.find(";", pos)
    if eq < 0 or 0 <= semi < eq:
        return (semi if semi >= 0 else len(text)), None
    name = strip_comments(text[pos:eq]).lower()
    pos = eq + 1
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    if pos < len(text) and text[pos] == '"':
        value, pos = _read_quoted(text, pos + 1)
    else:
        end = text.find(";", pos)
        end = len(text) if end < 0 else end
        value, pos = strip_comments(text[pos:end]), end
    if not name or not _TOKEN.fullmatch(name.rstrip("*")):
        return pos, None
    return pos, (name, value)


def _read_quoted(text: str, pos: int) -> tuple[str, int]:
    """Read a quoted-string body starting after its opening quote; unescape quoted-pairs."""
    out: list[str] = []
    size = len(text)
    while pos < size:
        char = text[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\" and pos + 1 < size:
            pos += 1
            char = text[pos]
        out.append(char)
        pos += 1
    return "".join(out), pos


def _join_rfc2231(raw: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Join `name*0*=` ... sections and decode `charset'lang'%XX` values (RFC 2231 3, 4).
    An extended value wins over a plain one of the same name; the first position is kept."""
    order: list[str] = []
    plain: dict[str, str] = {}
    sections: dict[str, dict[int, tuple[str, bool]]] = {}
    for name, value in raw:
        encoded = name.endswith("*")
        stem = name[:-1] if encoded else name
        m = _SECTION.fullmatch(stem)
        if m is None and not encoded:
            if name not in plain:
                plain[name] = value
                if name not in order:
                    order.append(name)
            continue
        base, index = (m.group(1), int(m.group(2))) if m else (stem, 0)
        sections.setdefault(base, {}).setdefault(index, (value, encoded))
        if base not in order:
            order.append(base)
    return [(name, _rfc2231_value(sections[name]) if name in sections else plain[name])
            for name in order]


def _rfc2231_value(parts: dict[int, tuple[str, bool]]) -> str:
    """Decode joined RFC 2231 sections into an octet string holding UTF-8 (or the raw octets
    when no known charset is named)."""
    charset: str | None = None
    data = bytearray()
    first = min(parts)
    for index in sorted(parts):
        value, encoded = parts[index]
        if index == first and encoded and value.count("'") >= 2:
            charset, _lang, value = value.split("'", 2)
        if encoded:
            data += unquote_to_bytes(value.encode("latin-1"))
        else:
            data += value.encode("latin-1")
    if not charset:
        return bytes(data).decode("latin-1")
    return to_octets(decode_text(bytes(data), charset))


# --- text decoding (RFC 2045 6.7, 6.8; RFC 2047) ----------------------------------------


def to_octets(text: str) -> str:
    """Unicode text to an octet string of its UTF-8 encoding."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


@functools.lru_cache(maxsize=64)
def _codec(charset: str | None) -> str:
    """A usable text codec for a MIME charset name; unknown or non-text ones become UTF-8
    (a superset of the US-ASCII default that also reads 8-bit text mislabelled as ASCII)."""
    if not charset or not _CHARSET_NAME.fullmatch(charset):
        return "utf-8"
    try:
        info = codecs.lookup(charset)
    except LookupError:
        return "utf-8"
    if info.name == "ascii" or not getattr(info, "_is_text_encoding", True):
        return "utf-8"
    return info.name


def decode_text(data: bytes, charset: str | None) -> str:
    """Decode bytes in a MIME charset, replacing what does not decode; never raises."""
    try:
        return data.decode(_codec(charset), "replace")
    except (LookupError, ValueError, TypeError):  # idna/punycode raise whatever "errors" says
        return data.decode("utf-8", "replace")


def decode_transfer(data: bytes, encoding: str) -> bytes:
    """Undo a Content-Transfer-Encoding (RFC 2045 6.7, 6.8) leniently."""
    if encoding == "BASE64":
        return decode_base64(data)
    if encoding == "QUOTED-PRINTABLE":
        return binascii.a2b_qp(data)
    return data


def decode_base64(data: bytes) -> bytes:
    """Decode base64, ignoring characters outside the alphabet and bad padding (RFC 2045 6.8)."""
    try:
        return binascii.a2b_base64(data)
    except (binascii.Error, ValueError):
        pass
    clean = _NOT_BASE64.sub(b"", data)
    clean = clean[: len(clean) - 1] if len(clean) % 4 == 1 else clean
    try:
        return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
    except (binascii.Error, ValueError):
        return b""


def header_text(value: str) -> str:
    """A header value (octet string) as Unicode: raw 8-bit read as UTF-8 (else windows-1252),
    then RFC 2047 encoded words decoded; whitespace between adjacent words dropped (6.2)."""
    raw = value.encode("latin-1", "replace")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", "replace")
    if "=?" not in text:
        return text
    return _decode_words(text)


def _decode_words(text: str) -> str:
    """Decode RFC 2047 encoded words; runs of words in one charset are decoded together so that
    a character split across two words survives."""
    out: list[str] = []
    run: bytearray = bytearray()
    run_charset: str | None = None
    pos = 0
    for m in _ENCODED_WORD.finditer(text):
        gap = text[pos : m.start()]
        charset = m.group(1).split("*", 1)[0]  # RFC 2231 5: charset*language
        adjacent = run_charset is not None and not gap.strip(" \t\r\n")
        if not adjacent or charset.lower() != run_charset:
            if run_charset is not None:
                out.append(decode_text(bytes(run), run_charset))
            run, run_charset = bytearray(), charset.lower()
            if not adjacent:
                out.append(gap)
        run += _word_bytes(m.group(2), m.group(3))
        pos = m.end()
    if run_charset is not None:
        out.append(decode_text(bytes(run), run_charset))
    out.append(text[pos:])
    return "".join(out)


def _word_bytes(kind: str, payload: str) -> bytes:
    """The octets of one encoded word's text, "B" or "Q" encoding (RFC 2047 4)."""
    data = payload.encode("latin-1", "replace")
    if kind in "Bb":
        return decode_base64(data)
    data = data.replace(b"_", b" ")
    return _QP_HEADER_ESC.sub(lambda m: bytes([int(m.group(1), 16)]), data)


# --- the part tree (RFC 2046 5.1) --------------------------------------------------------


class Entity:
    """One MIME entity of a message: a header and a body, both slices of the message buffer.

    The top-level message is an Entity too. Fields, content type, sub-parts and the message
    inside a message/rfc822 part are all parsed on first use and then cached.
    """

    __slots__ = ("_children", "_ctype", "_fields", "_first", "_inner", "body_start", "buf",
                 "depth", "end", "has_blank", "in_digest", "start")

    def __init__(self, buf: bytes, start: int, end: int, depth: int = 0,
                 in_digest: bool = False) -> None:
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
        return None if field is None or not name else field.value

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
    delim = re.compile(rb"\n--" + re.escape(boundary.encode("latin-1", "replace"))
                       + rb"(?:(--)[^\n]*|[ \t]*)(?=\r?\n|\Z)")
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
