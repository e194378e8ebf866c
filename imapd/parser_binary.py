"""BINARY (RFC 3516 4.1, 4.3, 9): the FETCH items BINARY[...], BINARY.PEEK[...] and
BINARY.SIZE[...], and literal8 (`~{n}`), the form a message with binary content is appended
in. Import the public names from `imapd.parser`.

    fetch-att =/ "BINARY" [".PEEK"] section-binary [partial] / "BINARY.SIZE" section-binary
    section-binary = "[" [section-part] "]"
    literal8 = "~{" number ["+"] "}" CRLF *OCTET
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imapd.parser_base import ParseError, Reader

__all__ = ["BINARY_ITEMS", "BinarySection", "parse_binary_section", "read_literal8"]

BINARY_ITEMS = frozenset({"BINARY", "BINARY.PEEK", "BINARY.SIZE"})
_PARTS_RE = re.compile(rb"[0-9.]*")
_LITERAL8_RE = re.compile(rb"~\{([0-9]{1,10})(\+?)\}(\r?\n)")


@dataclass(frozen=True, slots=True)
class BinarySection:
    """``BINARY[parts]<partial>``, ``BINARY.PEEK[...]`` or ``BINARY.SIZE[parts]``.

    ``parts`` are the part numbers (``()`` for the whole message); ``partial`` is
    ``(start, count)``; ``size`` marks BINARY.SIZE, which never sets \\Seen.
    """

    peek: bool = False
    parts: tuple[int, ...] = ()
    partial: tuple[int, int] | None = None
    size: bool = False

    @property
    def label(self) -> str:
        """The name the response echoes: ``BINARY[1.2]<0>`` or ``BINARY.SIZE[1.2]``."""
        section = ".".join(str(part) for part in self.parts)
        if self.size:
            return f"BINARY.SIZE[{section}]"
        suffix = "" if self.partial is None else f"<{self.partial[0]}>"
        return f"BINARY[{section}]{suffix}"


def parse_binary_section(reader: Reader, name: str) -> BinarySection:
    """The section (and partial) after BINARY, BINARY.PEEK or BINARY.SIZE."""
    reader.expect(0x5B, "[")
    match = _PARTS_RE.match(reader.data, reader.pos)
    spec = match.group() if match is not None else b""
    reader.pos += len(spec)
    parts = _section_part(spec)
    reader.expect(0x5D, "]")
    partial = None
    if reader.peek() == 0x3C:
        if name == "BINARY.SIZE":
            raise ParseError(None, "BINARY.SIZE takes no partial")
        partial = _partial(reader)
    return BinarySection(name == "BINARY.PEEK", parts, partial, name == "BINARY.SIZE")


def _section_part(spec: bytes) -> tuple[int, ...]:
    """section-part = nz-number *("." nz-number): only part numbers (no HEADER, TEXT, MIME)."""
    if not spec:
        return ()
    parts = []
    for piece in spec.split(b"."):
        if not piece or piece[0] == 0x30 or len(piece) > 10 or int(piece) > 0xFFFFFFFF:
            raise ParseError(None, "Invalid binary section")
        parts.append(int(piece))
    return tuple(parts)


def _partial(reader: Reader) -> tuple[int, int]:
    """partial = "<" number "." nz-number ">"."""
    reader.expect(0x3C, "<")
    start = reader.number()
    reader.expect(0x2E, ".")
    count = reader.nz_number()
    reader.expect(0x3E, ">")
    return start, count


def read_literal8(reader: Reader) -> bytes:
    """literal8 (RFC 3516 4.3): its octets, which may hold NUL."""
    match = _LITERAL8_RE.match(reader.data, reader.pos)
    if match is None:
        raise ParseError(None, "Invalid literal8")
    start = match.end()
    size = int(match.group(1))
    if start + size > reader.size:
        raise ParseError(None, "Literal data shorter than announced")
    reader.pos = start + size
    return reader.data[start : reader.pos]
