"""FETCH arguments: data items, body sections, partials, modifiers.

RFC 3501 6.4.5 and section 9 (fetch, fetch-att, section, partial), RFC 7162 3.1.4.1/3.2.4
(MODSEQ, CHANGEDSINCE, VANISHED). Import the public names from `imapd.parser`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imapd.parser_base import MAX_NUMBER64, ParseError, Reader, SeqSet
from imapd.parser_binary import BINARY_ITEMS, BinarySection, parse_binary_section
from imapd.strings import quoted

__all__ = ["BodySection", "FetchArgs", "FetchItem", "parse_fetch"]

SIMPLE_ITEMS = frozenset(
    {
        "BODY",
        "BODYSTRUCTURE",
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "MODSEQ",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "UID",
        "EMAILID",  # RFC 8474 5.1
        "THREADID",  # RFC 8474 5.2
        "SAVEDATE",  # RFC 8514 4
    }
)
"""FETCH items without a section; they appear in ``FetchArgs.items`` as these strings."""

MACROS: dict[str, tuple[str, ...]] = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
"""RFC 3501 6.4.5 macros, valid only on their own (never inside a list)."""

SECTION_TEXTS = frozenset({"", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"})

_ITEM_NAME_RE = re.compile(rb"[A-Za-z0-9.]+")
_SECTION_SPEC_RE = re.compile(rb"[A-Za-z0-9.]*")
# RFC 5322 2.2 ftext: printable US-ASCII except ":".
_FIELD_NAME_RE = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
_ATOM_TEXT_RE = re.compile(r"[!#$&'+-\[^-z|}~]+")


@dataclass(frozen=True, slots=True)
class BodySection:
    """``BODY[section]<partial>`` or ``BODY.PEEK[...]`` (RFC 3501 6.4.5).

    ``parts`` are the part numbers (``()`` for the whole message); ``text`` is one of
    ``SECTION_TEXTS``; ``fields`` are the upper-cased HEADER.FIELDS(.NOT) names and ``spelled``
    the list as the client wrote it (echoed in the response); ``partial`` is ``(start, count)``.
    """

    peek: bool = False
    parts: tuple[int, ...] = ()
    text: str = ""
    fields: tuple[str, ...] = ()
    partial: tuple[int, int] | None = None
    spelled: str = ""

    @property
    def section(self) -> str:
        """The section spec between the brackets, e.g. ``1.2.HEADER.FIELDS (FROM SUBJECT)``."""
        spec = ".".join(str(part) for part in self.parts)
        if self.text:
            spec = f"{spec}.{self.text}" if spec else self.text
        if self.fields:
            spelled = self.spelled or " ".join(_field_text(name) for name in self.fields)
            spec += f" ({spelled})"
        return spec

    @property
    def label(self) -> str:
        """The name the FETCH response echoes: ``BODY[1.2]<0>`` (origin only, RFC 3501 7.4.2)."""
        suffix = "" if self.partial is None else f"<{self.partial[0]}>"
        return f"BODY[{self.section}]{suffix}"


FetchItem = str | BodySection | BinarySection
"""A FETCH data item: one of ``SIMPLE_ITEMS``, a ``BodySection`` or a ``BinarySection``."""


@dataclass(frozen=True, slots=True)
class FetchArgs:
    """FETCH / UID FETCH (RFC 3501 6.4.5, 6.4.8; RFC 7162 3.1.4.1, 3.2.4).

    ``items`` has macros expanded and duplicates removed. UID FETCH always includes ``UID``
    (RFC 3501 6.4.8) and CHANGEDSINCE adds ``MODSEQ`` (RFC 7162 3.1.4.1): both are added here.
    """

    seqset: SeqSet
    items: tuple[FetchItem, ...]
    changedsince: int | None = None
    vanished: bool = False

    @property
    def marks_seen(self) -> bool:
        """True when the fetch sets \\Seen: BODY[...] or BINARY[...] without PEEK, RFC822 or
        RFC822.TEXT."""
        for item in self.items:
            if isinstance(item, BinarySection):
                if not (item.peek or item.size):
                    return True
            elif isinstance(item, BodySection):
                if not item.peek:
                    return True
            elif item in ("RFC822", "RFC822.TEXT"):
                return True
        return False


def _field_text(name: str) -> str:
    """A header field name as an astring for the response label."""
    if _ATOM_TEXT_RE.fullmatch(name) is not None:
        return name
    return quoted(name.encode()).decode()


def parse_fetch(reader: Reader, uid: bool) -> FetchArgs:
    """fetch = "FETCH" SP sequence-set SP (macro / fetch-att / "(" fetch-att ... ")") [mods]."""
    seqset = reader.seqset()
    reader.sp()
    if reader.peek() == 0x28:
        items: list[FetchItem] = []
        for _ in reader.paren_list():
            items.append(_fetch_att(reader))
        if not items:
            raise ParseError(None, "Empty FETCH item list")
    else:
        items = _single_att_or_macro(reader)
    changedsince, vanished = None, False
    if reader.try_sp():
        changedsince, vanished = _fetch_modifiers(reader, uid)
    reader.end()
    if uid and "UID" not in items:
        items.insert(0, "UID")
    if changedsince is not None and "MODSEQ" not in items:
        items.append("MODSEQ")
    return FetchArgs(seqset, _dedupe(items), changedsince, vanished)


def _single_att_or_macro(reader: Reader) -> list[FetchItem]:
    start = reader.pos
    match = _ITEM_NAME_RE.match(reader.data, start)
    if match is not None:
        macro = MACROS.get(match.group().decode("ascii").upper())
        if macro is not None and reader.data[match.end() : match.end() + 1] != b"[":
            reader.pos = match.end()
            return list(macro)
    return [_fetch_att(reader)]


def _fetch_att(reader: Reader) -> FetchItem:
    """fetch-att (RFC 3501 9)."""
    match = _ITEM_NAME_RE.match(reader.data, reader.pos)
    if match is None:
        raise ParseError(None, "Missing FETCH item" if reader.at_end() else "Invalid FETCH item")
    reader.pos = match.end()
    name = match.group().decode("ascii").upper()
    if reader.peek() == 0x5B and name in ("BODY", "BODY.PEEK"):
        return _body_section(reader, peek=name == "BODY.PEEK")
    if name in BINARY_ITEMS:  # RFC 3516 (imapd/parser_binary.py)
        return parse_binary_section(reader, name)
    if name not in SIMPLE_ITEMS:
        raise ParseError(None, "Unknown FETCH item")
    return name


def _body_section(reader: Reader, peek: bool) -> BodySection:
    """section = "[" [section-spec] "]" [partial] (RFC 3501 9)."""
    reader.expect(0x5B, "[")
    match = _SECTION_SPEC_RE.match(reader.data, reader.pos)
    spec = match.group() if match is not None else b""
    reader.pos += len(spec)
    parts, text = _section_spec(spec.decode("ascii").upper())
    fields: tuple[str, ...] = ()
    spelled = ""
    if text.startswith("HEADER.FIELDS"):
        reader.sp()
        fields, spelled = _header_list(reader)
    reader.expect(0x5D, "]")
    partial = _partial(reader) if reader.peek() == 0x3C else None
    return BodySection(peek, parts, text, fields, partial, spelled)


def _section_spec(spec: str) -> tuple[tuple[int, ...], str]:
    """Split ``1.2.HEADER`` into part numbers and the section text; validate both."""
    if not spec:
        return (), ""
    pieces = spec.split(".")
    parts: list[int] = []
    while pieces and pieces[0].isdigit():
        piece = pieces.pop(0)
        if piece[0] == "0" or len(piece) > 10 or int(piece) > 0xFFFFFFFF:
            raise ParseError(None, "Invalid section part number")
        parts.append(int(piece))
    text = ".".join(pieces)
    if (pieces and not text) or text not in SECTION_TEXTS or (text == "MIME" and not parts):
        raise ParseError(None, "Invalid body section")
    return tuple(parts), text


def _header_list(reader: Reader) -> tuple[tuple[str, ...], str]:
    """header-list = "(" header-fld-name *(SP header-fld-name) ")": the names upper-cased
    without repeats, and the list as sent for the response (RFC 3501 7.4.2 echoes the section
    spec: each name in its case and in its place, repeats kept, a string quoted)."""
    names: list[str] = []
    spelled: list[str] = []
    for _ in reader.paren_list():
        is_string = reader.peek() in (0x22, 0x7B)
        raw = reader.astring()
        if _FIELD_NAME_RE.fullmatch(raw) is None:
            raise ParseError(None, "Invalid header field name")
        name = raw.decode("ascii")
        names.append(name.upper())
        spelled.append(quoted(raw).decode() if is_string else name)
    if not names:
        raise ParseError(None, "Empty header field list")
    return tuple(dict.fromkeys(names)), " ".join(spelled)


def _partial(reader: Reader) -> tuple[int, int]:
    """partial = "<" number "." nz-number ">"."""
    reader.expect(0x3C, "<")
    start = reader.number()
    reader.expect(0x2E, ".")
    count = reader.nz_number()
    reader.expect(0x3E, ">")
    return start, count


def _fetch_modifiers(reader: Reader, uid: bool) -> tuple[int | None, bool]:
    """fetch-modifiers: (CHANGEDSINCE n [VANISHED]) (RFC 4466 2.4, RFC 7162 3.1.4.1, 3.2.6)."""
    changedsince: int | None = None
    vanished = False
    for _ in reader.paren_list():
        name = reader.keyword()
        if name == "CHANGEDSINCE":
            reader.sp()
            # Deliberately lenient: RFC 7162 wants mod-sequence-value (>= 1); 0 means "all".
            changedsince = reader.number(MAX_NUMBER64)
        elif name == "VANISHED":
            vanished = True
        else:
            raise ParseError(None, "Unknown FETCH modifier")
    if vanished and not (uid and changedsince is not None):
        # RFC 7162 3.2.6: VANISHED needs UID FETCH and CHANGEDSINCE, else tagged BAD.
        raise ParseError(None, "VANISHED requires UID FETCH with CHANGEDSINCE")
    return changedsince, vanished


def _dedupe(items: list[FetchItem]) -> tuple[FetchItem, ...]:
    """Drop repeated items; BODY[x] beats BODY.PEEK[x] because both answer as BODY[x]."""
    chosen: dict[str, FetchItem] = {}
    for item in items:
        key = item.label if isinstance(item, BodySection | BinarySection) else item
        old = chosen.get(key)
        if old is None or _upgrades(old, item):
            chosen[key] = item
    return tuple(chosen.values())


def _upgrades(old: FetchItem, new: FetchItem) -> bool:
    if isinstance(old, BodySection) and isinstance(new, BodySection):
        return old.peek > new.peek
    if isinstance(old, BinarySection) and isinstance(new, BinarySection):
        return old.peek > new.peek
    return False
