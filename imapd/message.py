"""One message as IMAP4rev1 sees it: ENVELOPE, BODY, BODYSTRUCTURE, BODY[section] and the
SEARCH predicates that look inside a message (RFC 3501 6.4.4, 6.4.5, 7.4.2).

`MessageView` is lazy: creating one costs nothing, ENVELOPE reads only the header block, and the
MIME tree is built on the first call that needs it and cached (`imapd.mime.Entity`). Nothing
here raises on malformed input; a broken message gets a best-effort answer.

`section()` returns None for a part that does not exist (e.g. BODY[3] of a two-part message,
BODY[1.HEADER] when part 1 is not message/rfc822, BODY[MIME] without a part number). The FETCH
handler then answers with an empty string (`BODY[3] ""`), as Dovecot does: RFC 3501 6.4.5
defines no error for it, and clients expect the item in the response.

Choices where RFC 3501 is silent: a message that is not multipart has part 1 = its body and
1.MIME = its whole header; type and subtype are upper-case, parameter names lower-case; a text
part without a charset gets ("charset" "us-ascii") (RFC 2045 5.2, as Dovecot); body-fld-lines
counts line ends; a message/rfc822 part is parsed as a message whatever its transfer encoding
claims; SEARCH matching uses Unicode full case folding (str.casefold).
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Sequence

from imapd.envelope import (
    ENVELOPE_FIELDS,
    imap_string,
    list_text,
    nstring,
    render_envelope,
)
from imapd.mime import MAX_DEPTH, Entity
from imapd.mimefields import parse_disposition, parse_encoding, parse_language
from imapd.mimetext import decode_text, decode_transfer, header_text

_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 2.2
_LINE_BREAKS = re.compile(rb"\r?\n|\r\Z")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
# RFC 5322 3.3 date (with obsolete 2-digit years and "-" separators), then asctime() order.
_DATE = re.compile(r"(\d{1,2})[\s-]+([A-Za-z]{3})[A-Za-z]*\.?[\s-]+(\d{2,4})(?!\d)")
_ASCTIME = re.compile(
    r"([A-Za-z]{3})[A-Za-z]*\s+(\d{1,2})\s+(?:\d{1,2}:\d{2}(?::\d{2})?\s+)?"
    r"(?:[A-Za-z]{1,5}\s+)?(\d{4})(?!\d)"
)


class MessageView:
    """Read-only, lazily parsed view of one message in CRLF form (RFC 3501 2.3.4-2.3.6)."""

    __slots__ = ("_body_texts", "_envelope", "_header_texts", "_root", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw if isinstance(raw, bytes) else bytes(raw)
        self._root: Entity | None = None
        self._envelope: bytes | None = None
        self._body_texts: list[str] | None = None
        self._header_texts: str | None = None

    @property
    def root(self) -> Entity:
        """The message as a MIME entity; the header split happens here, once."""
        if self._root is None:
            self._root = Entity(self.raw, 0, len(self.raw))
        return self._root

    # --- FETCH ----------------------------------------------------------------------------

    def envelope(self) -> bytes:
        """ENVELOPE (RFC 3501 7.4.2), parenthesised. Reads the header block only."""
        if self._envelope is None:
            self._envelope = entity_envelope(self.root)
        return self._envelope

    def body(self) -> bytes:
        """BODY: the body structure without extension data (RFC 3501 7.4.2)."""
        return render_structure(self.root, extended=False)

    def bodystructure(self) -> bytes:
        """BODYSTRUCTURE: the body structure with extension data (RFC 3501 7.4.2)."""
        return render_structure(self.root, extended=True)

    def header_bytes(self) -> bytes:
        """RFC822.HEADER / BODY[HEADER]: the header including the blank line, if there is one."""
        return self.root.header_bytes()

    def text_bytes(self) -> bytes:
        """RFC822.TEXT / BODY[TEXT]: everything after the blank line."""
        return self.root.body_bytes()

    def section(
        self, parts: tuple[int, ...], text: str, fields: tuple[str, ...] = ()
    ) -> bytes | None:
        """The content of BODY[section] (RFC 3501 6.4.5), None when the part does not exist.

        `parts` () is the whole message; `text` is "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT,
        TEXT or MIME; `fields` are the field names of HEADER.FIELDS(.NOT).
        """
        if not parts:
            if text == "":
                return self.raw
            return _message_section(self.root, text, fields)
        node = find_part(self.root, parts)
        if node is None:
            return None
        if text == "":
            return node.body_bytes()
        if text == "MIME":
            return node.header_bytes()
        if node.is_message:
            return _message_section(node.inner, text, fields)
        return None

    # --- SEARCH ---------------------------------------------------------------------------

    def header_values(self, name: str) -> list[str]:
        """Every value of header field `name`, unfolded and RFC 2047-decoded, for SEARCH
        FROM/TO/CC/BCC/SUBJECT/HEADER (RFC 3501 6.4.4)."""
        if not _FIELD_NAME.fullmatch(name):  # so that no junk line can ever match
            return []
        wanted = name.upper()
        return [header_text(f.value) for f in self.root.fields if f.name == wanted]

    def sent_date(self) -> datetime.date | None:
        """The date of the Date: field in its own time zone, for SENTBEFORE/SENTON/SENTSINCE
        (RFC 3501 6.4.4 "disregarding time and timezone"); None when absent or unreadable."""
        return parse_date(self.root.first("DATE"))

    def body_contains(self, needle: str) -> bool:
        """SEARCH BODY (RFC 3501 6.4.4): case-insensitive substring of the decoded text parts
        (transfer encoding undone, charset decoded), including the header and text of any
        encapsulated message; non-text parts are not searched."""
        if not needle:
            return True
        folded = needle.casefold()
        return any(folded in text for text in self._texts())

    def text_contains(self, needle: str) -> bool:
        """SEARCH TEXT (RFC 3501 6.4.4): in the decoded header or in the body."""
        if self._header_texts is None:
            self._header_texts = _decoded_header(self.root).casefold()
        return needle.casefold() in self._header_texts or self.body_contains(needle)

    def _texts(self) -> list[str]:
        """The casefolded decoded text of the body, computed once."""
        if self._body_texts is None:
            texts: list[str] = []
            _collect_texts(self.root, texts)
            self._body_texts = [t.casefold() for t in texts]
        return self._body_texts


# --- the header fields of ENVELOPE and SEARCH, straight from the stored bytes ------------------

# The fields ENVELOPE shows and SEARCH FROM/TO/CC/BCC/SUBJECT looks at: a field starts a line,
# its name is matched case-insensitively (blanks may precede the colon), continuation lines start
# with a blank (RFC 5322 2.2, 2.2.3), as parse_fields splits them.
KNOWN_FIELDS = (
    "DATE",
    "SUBJECT",
    "FROM",
    "SENDER",
    "REPLY-TO",
    "TO",
    "CC",
    "BCC",
    "IN-REPLY-TO",
    "MESSAGE-ID",
)


class FieldScanner:
    """The values of some header fields in a header block, straight from the stored bytes."""

    def __init__(self, names: tuple[str, ...]) -> None:
        # Matched in "\n" + the lower-cased header: a pattern that starts with a literal is
        # searched for fast, where a case-insensitive one anchored at line starts is tried at
        # every offset.
        self.pattern = re.compile(
            rb"\n(" + b"|".join(n.lower().encode() for n in names) + rb")[ \t]*:"
            rb"([^\n]*(?:\n[ \t][^\n]*)*)"
        )
        self.names = {n.lower().encode(): n for n in names}

    def __call__(self, header: bytes) -> dict[str, list[str]]:
        """The values of the fields in a header block (LF or CRLF line ends), in order, each as
        `Field.value` has it (unfolded, stripped, an octet string), without splitting the
        whole header into fields."""
        found: dict[str, list[str]] = {}
        names = self.names
        for m in self.pattern.finditer(b"\n" + header.lower()):
            start, end = m.span(2)
            data = header[start - 1 : end - 1]  # the value as written, not lower-cased
            if b"\n" in data:
                data = data.replace(b"\r\n", b"").replace(b"\n", b"")
            value = data.strip(b" \t\r").decode("latin-1")
            found.setdefault(names[m.group(1)], []).append(value)
        return found


# What ENVELOPE and the SEARCH cache need of a header (SORT makes its own, imapd/sorting.py).
known_fields = FieldScanner(KNOWN_FIELDS)


def entity_envelope(entity: Entity) -> bytes:
    """ENVELOPE of a message or of a message/rfc822 part, from its parsed header."""
    first = entity.first
    return render_envelope(
        {name: [value] for name in ENVELOPE_FIELDS if (value := first(name)) is not None}
    )


def envelope_of(fields: dict[str, list[str]]) -> bytes:
    """ENVELOPE (RFC 3501 7.4.2) from known_fields(): the same bytes as MessageView.envelope()."""
    return render_envelope(fields)


# --- BODY[section] (RFC 3501 6.4.5) ------------------------------------------------------------


def section_parts(entity: Entity) -> list[Entity]:
    """The parts numbered inside `entity`: a multipart's body parts; for a message/rfc822 part
    those of the encapsulated message; a message that is not multipart has only part 1, its
    own body (RFC 3501 6.4.5)."""
    if entity.is_multipart:
        return entity.children
    if entity.is_message:
        inner = entity.inner
        return inner.children if inner.is_multipart else [inner]
    return []


def find_part(root: Entity, parts: tuple[int, ...]) -> Entity | None:
    """Follow part numbers from the top-level message; None if any step does not exist."""
    candidates = root.children if root.is_multipart else [root]
    node: Entity | None = None
    for number in parts:
        if node is not None:
            candidates = section_parts(node)
        if not 1 <= number <= len(candidates):
            return None
        node = candidates[number - 1]
    return node


def _message_section(message: Entity, text: str, fields: tuple[str, ...]) -> bytes | None:
    """HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT or TEXT of a (possibly encapsulated) message.
    Field subsets keep the original order and lines, then the blank line, which is omitted
    only when the message has none (RFC 3501 6.4.5)."""
    if text == "HEADER":
        return message.header_bytes()
    if text == "TEXT":
        return message.body_bytes()
    if text not in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return None
    names = {name.upper() for name in fields}
    keep = text == "HEADER.FIELDS"
    chosen = b"".join(f.lines for f in message.fields if (f.name in names) == keep)
    return chosen + b"\r\n" if message.has_blank else chosen


# --- BODY / BODYSTRUCTURE (RFC 3501 7.4.2) ------------------------------------------------------


def render_structure(entity: Entity, extended: bool) -> bytes:
    """The parenthesised body structure of an entity; `extended` adds extension data."""
    if entity.is_multipart:
        return _render_multipart(entity, extended)
    ctype = entity.content_type
    items = [
        imap_string(ctype.type),
        imap_string(ctype.subtype),
        _params(ctype.params),
        nstring(entity.first("CONTENT-ID")),
        nstring(entity.first("CONTENT-DESCRIPTION")),
        imap_string(parse_encoding(entity.first("CONTENT-TRANSFER-ENCODING"))),
        b"%d" % entity.size,
    ]
    if entity.is_message:
        inner = entity.inner
        items += [
            entity_envelope(inner),
            render_structure(inner, extended),
            b"%d" % entity.lines,
        ]
    elif ctype.type == "TEXT":
        items.append(b"%d" % entity.lines)
    if extended:
        items.append(nstring(entity.first("CONTENT-MD5")))
        items += _common_extensions(entity)
    return b"(" + b" ".join(items) + b")"


def _render_multipart(entity: Entity, extended: bool) -> bytes:
    """body-type-mpart: the parts back to back, the subtype, then params, disposition,
    language and location (body-ext-mpart)."""
    out = b"".join(render_structure(child, extended) for child in entity.children)
    out += b" " + imap_string(entity.content_type.subtype)
    if extended:
        out += b" " + b" ".join([_params(entity.content_type.params), *_common_extensions(entity)])
    return b"(" + out + b")"


def _common_extensions(entity: Entity) -> list[bytes]:
    """body-fld-dsp, body-fld-lang and body-fld-loc."""
    disposition = parse_disposition(entity.first("CONTENT-DISPOSITION"))
    dsp = (
        b"(" + imap_string(disposition[0]) + b" " + _params(disposition[1]) + b")"
        if disposition
        else b"NIL"
    )
    langs = parse_language(entity.first("CONTENT-LANGUAGE"))
    if len(langs) > 1:
        lang = b"(" + b" ".join(imap_string(tag) for tag in langs) + b")"
    else:
        lang = nstring(langs[0] if langs else None)
    return [dsp, lang, nstring(entity.first("CONTENT-LOCATION"))]


def _params(params: Sequence[tuple[str, str]]) -> bytes:
    """body-fld-param: ("name" "value" ...) or NIL."""
    if not params:
        return b"NIL"
    return b"(" + b" ".join(imap_string(n) + b" " + imap_string(v) for n, v in params) + b")"


# --- SEARCH helpers (RFC 3501 6.4.4) -------------------------------------------------------------


def _collect_texts(entity: Entity, out: list[str]) -> None:
    """Append the decoded text of every text part under `entity` (its body, not its header)."""
    if entity.depth > MAX_DEPTH:
        return
    if entity.is_multipart:
        for child in entity.children:
            _collect_texts(child, out)
    elif entity.is_message:
        out.append(_decoded_header(entity.inner))
        _collect_texts(entity.inner, out)
    elif entity.content_type.type == "TEXT":
        encoding = parse_encoding(entity.first("CONTENT-TRANSFER-ENCODING"))
        charset = dict(entity.content_type.params).get("charset")
        out.append(decode_text(decode_transfer(entity.body_bytes(), encoding), charset))


def _decoded_header(entity: Entity) -> str:
    """A header as searchable text: one "Name: decoded value" line per field."""
    return "\n".join(
        header_text(_LINE_BREAKS.sub(b"", f.raw).decode("latin-1")) for f in entity.fields
    )


def parse_date(value: str | None) -> datetime.date | None:
    """The calendar date of an RFC 5322 3.3 date-time as written (its own zone); accepts the
    obsolete forms of 4.3 (2-digit years) and asctime() order. None when unreadable."""
    if not value:
        return None
    m = _DATE.search(value)
    if m is not None:
        day, month, year = m.group(1), m.group(2), m.group(3)
    else:
        m = _ASCTIME.search(value)
        if m is None:
            return None
        month, day, year = m.group(1), m.group(2), m.group(3)
    number = _MONTHS.get(month.lower())
    if number is None:
        return None
    full_year = int(year)
    if len(year) == 2:  # RFC 5322 4.3: 00-49 is 20xx, 50-99 is 19xx
        full_year += 2000 if full_year < 50 else 1900
    elif len(year) == 3:
        full_year += 1900
    try:
        return datetime.date(full_year, number, int(day))
    except ValueError:
        return None


@functools.lru_cache(maxsize=256)
def canonical_addresses(value: str) -> str:
    """An address field's value as SEARCH FROM/TO/CC/BCC also matches it (RFC 3501 6.4.4): its
    address list written out canonically (imapd.envelope.addresses_text), encoded words decoded,
    so that display names, group syntax, comments and the `<local@domain>` form are all found.
    Cached: a folder's messages share a few senders and recipients."""
    text = list_text(value)
    return text if text.isascii() and "=?" not in text else header_text(text)
