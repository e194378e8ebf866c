"""IMAP lexical layer: the error type, sequence sets and the token reader (RFC 3501 section 9).

Pure bytes-to-values code, shared by `imapd.parser` and its helpers; import the public names from
`imapd.parser`. Deliberate leniencies, all harmless to a correct client: a separator may be more
than one space, trailing spaces are ignored, a literal may be announced with a bare LF after it
(netcat clients), quoted strings may carry 8-bit bytes (common UTF-8 practice), and leading zeros
are accepted in plain numbers (never in nz-number).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from common.store import UndecodableName
from imapd.names import decode_mailbox, decode_pattern

__all__ = ["ATOM_RE", "MAX_DEPTH", "ParseError", "Reader", "SeqSet", "UndecodableName"]

MAX_DEPTH = 16
"""Deepest parenthesis nesting (and search-tree height) the parser accepts."""
MAX_NUMBER = 0xFFFFFFFF
"""RFC 3501 number / nz-number: unsigned 32-bit."""
MAX_NUMBER64 = 0x7FFFFFFFFFFFFFFF
"""RFC 7162 mod-sequence-value and RFC 9051 number64: 63-bit."""

# ATOM-CHAR: CHAR minus atom-specials "(" ")" "{" SP CTL "%" "*" DQUOTE "\" "]" (RFC 3501 9).
_ATOM = rb"!#$&'+-\[^-z|}~"
ATOM_RE = re.compile(rb"[" + _ATOM + rb"]+")
_ASTRING_RE = re.compile(rb"[" + _ATOM + rb"\]]+")
_LIST_CHAR_RE = re.compile(rb"[" + _ATOM + rb"\]%*]+")
_SEQSET_RE = re.compile(rb"[" + _ATOM + rb"*]+")
_DIGITS_RE = re.compile(rb"[0-9]+")
_BAD_QUOTED_RE = re.compile(rb"[\x00\r\n]")
_LITERAL_RE = re.compile(rb"\{([0-9]{1,10})(\+?)\}(\r?\n)")

_MONTHS = {
    name: number
    for number, name in enumerate(
        (b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN")
        + (b"JUL", b"AUG", b"SEP", b"OCT", b"NOV", b"DEC"),
        start=1,
    )
}
_DATE_RE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME_RE = re.compile(
    rb"( ?[0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) "
    rb"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"
)

SYSTEM_FLAGS = {
    flag.lower(): flag for flag in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
}


class ParseError(ValueError):
    """A command that cannot be parsed; the session answers ``<tag> BAD <message>``.

    ``tag`` is None when even the tag could not be read (answered ``* BAD``).
    """

    def __init__(self, tag: str | None, message: str) -> None:
        super().__init__(message)
        self.tag = tag
        self.message = message

    def __repr__(self) -> str:
        return f"ParseError({self.tag!r}, {self.message!r})"


SeqRange = tuple[int | None, int | None]


@dataclass(frozen=True, slots=True)
class SeqSet:
    """A sequence-set (RFC 3501 9): ranges as written, ``*`` as None, never empty.

    Both message sequence numbers and UIDs use it; ``max_value`` is the largest number in use
    (the message count, or the highest UID), which ``*`` stands for. ``saved`` is ``$``, the
    messages a SEARCH RETURN (SAVE) saved (RFC 5182 2.1): it has no ranges of its own, so only
    the selected view can say what it holds (imapd/selected.py); the methods here see it empty.
    """

    ranges: tuple[SeqRange, ...]
    saved: bool = False

    @classmethod
    def parse(cls, text: bytes | str) -> SeqSet:
        """Parse ``1``, ``*``, ``3:5``, ``5:3``, ``1:*`` and comma lists; raise ParseError."""
        raw = text.encode("ascii", "replace") if isinstance(text, str) else text
        if raw == b"$":
            return cls((), saved=True)
        ranges: list[SeqRange] = []
        for item in raw.split(b","):
            first, colon, last = item.partition(b":")
            low = _seq_number(first)
            ranges.append((low, _seq_number(last) if colon else low))
        return cls(tuple(ranges))

    @classmethod
    def from_values(cls, values: Iterable[int]) -> SeqSet:
        """The most compact set holding exactly ``values`` (for COPYUID, VANISHED, ESEARCH).

        Raises ValueError when ``values`` is empty or holds a number below 1.
        """
        ordered = sorted(set(values))
        if not ordered or ordered[0] < 1:
            raise ValueError("a sequence set holds one or more positive numbers")
        ranges: list[SeqRange] = []
        start = previous = ordered[0]
        for value in ordered[1:]:
            if value != previous + 1:
                ranges.append((start, previous))
                start = value
            previous = value
        ranges.append((start, previous))
        return cls(tuple(ranges))

    @property
    def has_star(self) -> bool:
        """True when ``*`` appears anywhere in the set."""
        return any(low is None or high is None for low, high in self.ranges)

    def resolve(self, max_value: int) -> tuple[tuple[int, int], ...]:
        """Sorted, merged, inclusive ``(low, high)`` ranges with ``*`` read as ``max_value``.

        Not clipped: for UIDs, ``559:*`` with highest UID 500 is ``500:559`` (RFC 3501 6.4.8).
        """
        spans = sorted(self._span(pair, max_value) for pair in self.ranges)
        merged: list[tuple[int, int]] = []
        for low, high in spans:
            if merged and low <= merged[-1][1] + 1:
                if high > merged[-1][1]:
                    merged[-1] = (merged[-1][0], high)
            else:
                merged.append((low, high))
        return tuple(merged)

    def contains(self, value: int, max_value: int) -> bool:
        """Whether ``value`` is in the set, ``*`` meaning ``max_value``."""
        for pair in self.ranges:
            low, high = self._span(pair, max_value)
            if low <= value <= high:
                return True
        return False

    def iter_values(self, max_value: int) -> Iterator[int]:
        """The numbers in the set that lie in ``1..max_value``, ascending, each once."""
        for low, high in self.resolve(max_value):
            yield from range(max(low, 1), min(high, max_value) + 1)

    def out_of_range(self, max_value: int) -> bool:
        """True when an explicit number exceeds ``max_value`` (bad message sequence numbers)."""
        return any(
            number is not None and number > max_value for pair in self.ranges for number in pair
        )

    @staticmethod
    def _span(pair: SeqRange, max_value: int) -> tuple[int, int]:
        low = max_value if pair[0] is None else pair[0]
        high = max_value if pair[1] is None else pair[1]
        return (low, high) if low <= high else (high, low)

    def __str__(self) -> str:
        if self.saved:
            return "$"
        return ",".join(_range_text(low, high) for low, high in self.ranges)


def _range_text(low: int | None, high: int | None) -> str:
    first = "*" if low is None else str(low)
    if low == high:
        return first
    return first + ":" + ("*" if high is None else str(high))


def _seq_number(text: bytes) -> int | None:
    """seq-number = nz-number / "*" (RFC 3501 9)."""
    if text == b"*":
        return None
    if not text or not text.isdigit() or text[0] == 0x30 or len(text) > 10:
        raise ParseError(None, "Invalid sequence set")
    value = int(text)
    if value > MAX_NUMBER:
        raise ParseError(None, "Invalid sequence set")
    return value


def parse_date(text: bytes) -> datetime.date:
    """date-text = date-day "-" date-month "-" date-year (RFC 3501 9), e.g. ``1-Feb-1994``."""
    match = _DATE_RE.fullmatch(text)
    month = _MONTHS.get(match.group(2).upper()) if match is not None else None
    if match is None or month is None:
        raise ParseError(None, "Invalid date")
    try:
        return datetime.date(int(match.group(3)), month, int(match.group(1)))
    except ValueError:
        raise ParseError(None, "Invalid date") from None


def parse_date_time(text: bytes) -> datetime.datetime:
    """date-time = "dd-Mon-yyyy hh:mm:ss +zzzz", day maybe space-padded (RFC 3501 9)."""
    match = _DATE_TIME_RE.fullmatch(text)
    month = _MONTHS.get(match.group(2).upper()) if match is not None else None
    if match is None or month is None:
        raise ParseError(None, "Invalid date-time")
    day, _, year, hour, minute, second, sign, zone_h, zone_m = match.groups()
    try:
        offset = datetime.timedelta(hours=int(zone_h), minutes=int(zone_m))
        if int(zone_m) >= 60:
            raise ValueError("zone minutes")
        zone = datetime.timezone(-offset if sign == b"-" else offset)
        return datetime.datetime(
            int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=zone
        )
    except ValueError:
        raise ParseError(None, "Invalid date-time") from None


def parse_flag(token: bytes) -> str:
    """One storable flag (RFC 3501 2.3.2): canonical system flag or a keyword atom."""
    if token[:1] != b"\\":
        if ATOM_RE.fullmatch(token) is None:
            raise ParseError(None, "Invalid flag")
        return token.decode("ascii")
    name = token.decode("ascii", "replace").lower()
    flag = SYSTEM_FLAGS.get(name)
    if flag is not None:
        return flag
    if name == "\\recent":
        raise ParseError(None, "\\Recent cannot be set by a client")
    raise ParseError(None, "Invalid system flag")


def _unexpected(byte: int) -> str:
    """Why a byte cannot stand where a separator belongs."""
    if byte == 0x29:
        return "Unexpected )"
    if byte < 0x20 or byte >= 0x7F:
        return "Invalid character"
    return "Expected a space"


class Reader:
    """A cursor over one assembled command; every method raises ParseError(None, ...) on error.

    ``utf8_names``: mailbox names are UTF-8, not modified UTF-7 (imapd/names.py). ``denormalized``
    collects (name, name as sent) for each UTF-8 name that normalizing changed.
    """

    __slots__ = ("data", "denormalized", "pos", "size", "utf8_names")

    def __init__(self, data: bytes, pos: int = 0, utf8_names: bool = False) -> None:
        self.data = data
        self.pos = pos
        self.size = len(data)
        self.utf8_names = utf8_names
        self.denormalized: list[tuple[str, str]] = []

    # -- structure -------------------------------------------------------------------------

    def at_end(self) -> bool:
        """True when only trailing spaces remain."""
        data, pos, size = self.data, self.pos, self.size
        while pos < size and data[pos] == 0x20:
            pos += 1
        return pos >= size

    def peek(self) -> int:
        """The next byte, or -1 at the end."""
        return self.data[self.pos] if self.pos < self.size else -1

    def sp(self) -> None:
        """One separator: at least one SP (several tolerated)."""
        data, pos = self.data, self.pos
        if pos >= self.size:
            raise ParseError(None, "Missing argument")
        byte = data[pos]
        if byte != 0x20:
            raise ParseError(None, _unexpected(byte))
        pos += 1
        while pos < self.size and data[pos] == 0x20:
            pos += 1
        if pos >= self.size:
            raise ParseError(None, "Missing argument")
        self.pos = pos

    def try_sp(self) -> bool:
        """Consume a separator if another token follows it; False at the end of the command."""
        if self.at_end():
            self.pos = self.size
            return False
        self.sp()
        return True

    def end(self) -> None:
        """Require the end of the command."""
        if not self.at_end():
            raise ParseError(None, "Unexpected extra arguments")
        self.pos = self.size

    def expect(self, byte: int, what: str) -> None:
        """Consume one expected byte such as "(" or ")"."""
        if self.pos >= self.size:
            raise ParseError(None, "Missing argument")
        if self.data[self.pos] != byte:
            raise ParseError(None, f"Expected {what}")
        self.pos += 1

    def try_char(self, byte: int) -> bool:
        """Consume ``byte`` if it comes next."""
        if self.pos < self.size and self.data[self.pos] == byte:
            self.pos += 1
            return True
        return False

    def paren_list(self) -> Iterator[None]:
        """Walk "(" item *(SP item) ")": yields once per item; the caller reads each item.

        Empty lists are allowed here; callers that need items check for themselves.
        """
        self.expect(0x28, "(")
        if self.try_char(0x29):
            return
        while True:
            yield None
            if self.try_char(0x29):
                return
            if self.at_end():
                raise ParseError(None, "Unbalanced parentheses")
            self.sp()

    # -- tokens ----------------------------------------------------------------------------

    def _match(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        match = pattern.match(self.data, self.pos)
        if match is None:
            if self.pos >= self.size:
                raise ParseError(None, "Missing argument")
            raise ParseError(None, f"Invalid character in {what}")
        self.pos = match.end()
        return match.group()

    def atom(self) -> bytes:
        """atom = 1*ATOM-CHAR."""
        return self._match(ATOM_RE, "atom")

    def keyword(self) -> str:
        """An atom read case-insensitively, upper-cased (command names, options, keys)."""
        return self._match(ATOM_RE, "atom").decode("ascii").upper()

    def astring(self) -> bytes:
        """astring = 1*ASTRING-CHAR / string."""
        byte = self.peek()
        if byte == 0x22 or byte == 0x7B:
            return self.string()
        return self._match(_ASTRING_RE, "atom")

    def list_mailbox(self) -> bytes:
        """list-mailbox = 1*list-char / string (RFC 3501 9): astring plus the wildcards."""
        byte = self.peek()
        if byte == 0x22 or byte == 0x7B:
            return self.string()
        return self._match(_LIST_CHAR_RE, "mailbox pattern")

    def string(self) -> bytes:
        """string = quoted / literal."""
        byte = self.peek()
        if byte == 0x22:
            return self.quoted()
        if byte == 0x7B:
            return self.literal()
        if byte == -1:
            raise ParseError(None, "Missing argument")
        raise ParseError(None, "Expected a string")

    def nstring(self) -> bytes | None:
        """nstring = string / nil."""
        if self.peek() in (0x22, 0x7B):
            return self.string()
        if self.atom().upper() != b"NIL":
            raise ParseError(None, "Expected a string or NIL")
        return None

    def quoted(self) -> bytes:
        """quoted = DQUOTE *QUOTED-CHAR DQUOTE, with only \\\\ and \\" as escapes."""
        data, start = self.data, self.pos + 1
        end = data.find(b'"', start)
        if end < 0:
            raise ParseError(None, "Unterminated quoted string")
        value = data[start:end]
        if 0x5C in value:
            return self._quoted_escaped(start)
        if _BAD_QUOTED_RE.search(value) is not None:
            raise ParseError(None, "Invalid character in quoted string")
        self.pos = end + 1
        return value

    def _quoted_escaped(self, start: int) -> bytes:
        data, out, pos = self.data, bytearray(), start
        while pos < self.size:
            byte = data[pos]
            if byte == 0x22:
                self.pos = pos + 1
                return bytes(out)
            if byte == 0x5C:
                pos += 1
                if pos >= self.size or data[pos] not in (0x22, 0x5C):
                    raise ParseError(None, "Invalid escape in quoted string")
                byte = data[pos]
            elif byte in (0x00, 0x0D, 0x0A):
                raise ParseError(None, "Invalid character in quoted string")
            out.append(byte)
            pos += 1
        raise ParseError(None, "Unterminated quoted string")

    def literal(self) -> bytes:
        """literal = "{" number ["+"] "}" CRLF *CHAR8 (RFC 3501 9, RFC 7888); LF alone accepted."""
        match = _LITERAL_RE.match(self.data, self.pos)
        if match is None:
            raise ParseError(None, "Invalid literal")
        size = int(match.group(1))
        start = match.end()
        if start + size > self.size:
            raise ParseError(None, "Literal data shorter than announced")
        self.pos = start + size
        return self.data[start : self.pos]

    def number(self, limit: int = MAX_NUMBER) -> int:
        """number = 1*DIGIT, at most ``limit``."""
        digits = self._match(_DIGITS_RE, "number")
        if len(digits) > 19 or int(digits) > limit:
            raise ParseError(None, "Number out of range")
        return int(digits)

    def nz_number(self, limit: int = MAX_NUMBER) -> int:
        """nz-number = digit-nz *DIGIT."""
        start = self.pos
        value = self.number(limit)
        if value == 0 or self.data[start] == 0x30:
            raise ParseError(None, "Expected a non-zero number")
        return value

    def seqset(self) -> SeqSet:
        """sequence-set (RFC 3501 9)."""
        return SeqSet.parse(self._match(_SEQSET_RE, "sequence set"))

    # -- typed values ----------------------------------------------------------------------

    def mailbox(self) -> str:
        """mailbox = "INBOX" / astring, decoded from modified UTF-7 or UTF-8 (imapd/names.py)."""
        try:
            name, supplied = decode_mailbox(self.astring(), self.utf8_names)
        except ValueError as exc:
            raise ParseError(None, str(exc)) from None
        if supplied is not None:
            self.denormalized.append((name, supplied))
        return name

    def pattern(self) -> str:
        """list-mailbox, decoded as a mailbox name is (imapd/names.py), not INBOX-folded."""
        try:
            return decode_pattern(self.list_mailbox(), self.utf8_names)
        except ValueError as exc:
            raise ParseError(None, str(exc)) from None

    def flag_list(self) -> tuple[str, ...]:
        """flag-list = "(" [flag *(SP flag)] ")", deduplicated in order."""
        flags: list[str] = []
        for _ in self.paren_list():
            flags.append(self.flag())
        return tuple(dict.fromkeys(flags))

    def flag(self) -> str:
        """flag = system flag / keyword; \\Recent and unknown \\-flags are refused."""
        start = self.pos
        self.try_char(0x5C)
        if self.peek() == 0x2A:  # "\*" belongs to PERMANENTFLAGS responses only
            raise ParseError(None, "Invalid flag")
        self.atom()
        return parse_flag(self.data[start : self.pos])

    def utf8(self, raw: bytes, what: str) -> str:
        """Decode client text as UTF-8, refusing invalid bytes."""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(None, f"Invalid UTF-8 in {what}") from None
