"""SEARCH arguments: the search-key tree (RFC 3501 6.4.4, section 9 search-key).

Also ESEARCH ``RETURN (...)`` (RFC 4731 3.1) and the CONDSTORE ``MODSEQ`` key (RFC 7162 3.1.5).
Import the public names from `imapd.parser`.

The tree is normalised so that a handler has few cases: flag keys (ANSWERED, UNSEEN, KEYWORD x,
NEW, OLD...) all become ``Key("FLAG", text=<flag>)`` under ``Not``/``And``; ``Or`` and ``And`` are
n-ary and flattened, ``Not(Not(x))`` is ``x``, and a one-key list is the key itself. NOT and OR
are parsed without recursion, and the resulting tree may be at most ``MAX_DEPTH`` high, so a
recursive matcher is safe.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from imapd.parser_base import (
    ATOM_RE,
    MAX_DEPTH,
    MAX_NUMBER64,
    ParseError,
    Reader,
    SeqSet,
    parse_date,
)

__all__ = [
    "And",
    "Key",
    "Not",
    "Or",
    "ReturnOptions",
    "SearchArgs",
    "SearchNode",
    "parse_return_options",
    "parse_search",
    "parse_search_keys",
]


@dataclass(frozen=True, slots=True)
class Key:
    """One search criterion. ``name`` and the field it uses:

    - ``ALL``: none. ``FLAG``: ``text`` is a canonical system flag (``\\Seen``, ``\\Recent``...)
      or a keyword as sent.
    - ``BCC BODY CC FROM SUBJECT TEXT TO``: ``text``. ``HEADER``: ``header`` (upper-cased field
      name) and ``text`` (may be empty).
    - ``BEFORE ON SINCE`` (internal date), ``SENTBEFORE SENTON SENTSINCE`` and
      ``SAVEDBEFORE SAVEDON SAVEDSINCE`` (save date, RFC 8514): ``date``.
    - ``EMAILID THREADID`` (RFC 8474): ``text`` is the object id.
    - ``LARGER SMALLER``: ``number`` (octets). ``MODSEQ``: ``number`` (RFC 7162 3.1.5; a
      per-metadata entry name, if sent, is dropped: we keep one mod-sequence per message).
    - ``UID``: ``seqset`` of UIDs. ``SEQSET``: ``seqset`` of message sequence numbers.
    """

    name: str
    text: str = ""
    header: str = ""
    number: int = 0
    date: datetime.date | None = None
    seqset: SeqSet | None = None


@dataclass(frozen=True, slots=True)
class And:
    """All of ``items`` (two or more) match."""

    items: tuple[SearchNode, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Any of ``items`` (two or more) matches."""

    items: tuple[SearchNode, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """``item`` does not match."""

    item: SearchNode


SearchNode = Key | And | Or | Not


@dataclass(frozen=True, slots=True)
class SearchArgs:
    """SEARCH / UID SEARCH (RFC 3501 6.4.4; RFC 4731; RFC 7162 3.1.5; RFC 5267 4).

    ``charset`` is upper-cased, None when absent (the command layer answers [BADCHARSET] for
    anything but US-ASCII and UTF-8). ``return_opts`` is None for a classic SEARCH, otherwise the
    ESEARCH options, ``RETURN ()`` read as ``("ALL",)``. ``uses_modseq`` says a MODSEQ key
    appeared (the response then carries ``(MODSEQ n)``). ``partial`` is the range of RETURN
    (PARTIAL low:high) (RFC 5267 4.4), low <= high.
    """

    criteria: SearchNode
    charset: str | None = None
    return_opts: tuple[str, ...] | None = None
    uses_modseq: bool = False
    partial: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class ReturnOptions:
    """search-return-opts (RFC 4731 3.1, RFC 5267 4): upper-cased options, PARTIAL's range."""

    options: tuple[str, ...]
    partial: tuple[int, int] | None = None


FLAG_KEYS = {
    "ANSWERED": "\\Answered",
    "DELETED": "\\Deleted",
    "DRAFT": "\\Draft",
    "FLAGGED": "\\Flagged",
    "RECENT": "\\Recent",
    "SEEN": "\\Seen",
}
UNFLAG_KEYS = {
    "UNANSWERED": "\\Answered",
    "UNDELETED": "\\Deleted",
    "UNDRAFT": "\\Draft",
    "UNFLAGGED": "\\Flagged",
    "UNSEEN": "\\Seen",
}
TEXT_KEYS = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
DATE_KEYS = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"})
DATE_KEYS |= {"SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"}  # RFC 8514 5
OBJECTID_KEYS = frozenset({"EMAILID", "THREADID"})  # RFC 8474 6
ARGUMENT_KEYS = (
    TEXT_KEYS
    | DATE_KEYS
    | OBJECTID_KEYS
    | {
        "HEADER",
        "KEYWORD",
        "LARGER",
        "MODSEQ",
        "SMALLER",
        "UID",
        "UNKEYWORD",
    }
)
RETURN_OPTIONS = frozenset(
    {"MIN", "MAX", "ALL", "COUNT", "SAVE", "UPDATE", "CONTEXT", "PARTIAL"}
)  # RFC 4731 3.1, RFC 5182 2.1, RFC 5267 4
_MODSEQ_ENTRY_TYPES = frozenset({b"PRIV", b"SHARED", b"ALL"})
_OBJECTID_RE = re.compile(rb"[A-Za-z0-9_-]{1,255}")  # RFC 8474 7 objectid

Rated = tuple[SearchNode, int]
"""A node with its height (a Key is 0), carried so the height check costs nothing."""


def parse_search(reader: Reader, uid: bool) -> SearchArgs:
    """search = "SEARCH" [RETURN (...)] [SP "CHARSET" SP astring] 1*(SP search-key)."""
    del uid  # UID SEARCH differs only in what the response reports
    returns = None
    if _next_word_is(reader, b"RETURN"):
        returns = parse_return_options(reader)
        reader.sp()
    charset = None
    if _next_word_is(reader, b"CHARSET"):
        reader.atom()
        reader.sp()
        charset = reader.astring().decode("ascii", "replace").upper()
        reader.sp()
    criteria, uses_modseq = parse_search_keys(reader)
    if returns is None:
        return SearchArgs(criteria, charset, None, uses_modseq)
    return SearchArgs(criteria, charset, returns.options, uses_modseq, returns.partial)


def parse_search_keys(reader: Reader) -> tuple[SearchNode, bool]:
    """1*(SP search-key) after the charset, all of which must match: (the tree, whether a
    MODSEQ key appeared). Shared by SEARCH, SORT and THREAD."""
    parser = _SearchParser(reader)
    keys = [parser.key(0)]
    while reader.try_sp():
        keys.append(parser.key(0))
    return _check(_and(keys))[0], parser.uses_modseq


def _next_word_is(reader: Reader, word: bytes) -> bool:
    match = ATOM_RE.match(reader.data, reader.pos)
    return match is not None and match.group().upper() == word


def parse_return_options(reader: Reader) -> ReturnOptions:
    """search-return-opts = "RETURN" SP "(" [opt *(SP opt)] ")" (RFC 4731 3.1), with UPDATE,
    CONTEXT and PARTIAL low:high (RFC 5267 4.2-4.4); `RETURN ()` means ALL."""
    if reader.keyword() != "RETURN":
        raise ParseError(None, "Expected RETURN")
    reader.sp()
    options: list[str] = []
    partial = None
    for _ in reader.paren_list():
        option = reader.keyword()
        if option not in RETURN_OPTIONS:
            raise ParseError(None, "Unknown RETURN option")
        if option == "PARTIAL":
            if partial is not None:
                raise ParseError(None, "PARTIAL given twice")
            reader.sp()
            partial = _partial_range(reader)
        options.append(option)
    return ReturnOptions(tuple(dict.fromkeys(options)) if options else ("ALL",), partial)


def _partial_range(reader: Reader) -> tuple[int, int]:
    """partial-range = nz-number ":" nz-number (RFC 5267 4.4), either way round."""
    first = reader.nz_number()
    reader.expect(0x3A, ":")
    second = reader.nz_number()
    return (min(first, second), max(first, second))


class _SearchParser:
    """Reads search keys; NOT and OR use an explicit operator stack instead of recursion."""

    __slots__ = ("reader", "uses_modseq")

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.uses_modseq = False

    def key(self, depth: int) -> Rated:
        """One search-key, operators included."""
        pending: list[list[Rated] | None] = []  # None: NOT; a list: OR and its operands so far
        while True:
            node = self._operand(depth, pending)
            if node is None:
                continue
            while pending:
                frame = pending[-1]
                if frame is None:
                    pending.pop()
                    node = _check(_negate(node))
                    continue
                frame.append(node)
                if len(frame) < 2:
                    break
                pending.pop()
                node = _check(_or(frame))
            else:
                return node
            self.reader.sp()

    def _operand(self, depth: int, pending: list[list[Rated] | None]) -> Rated | None:
        """A key, or None after pushing NOT / OR onto ``pending``."""
        reader = self.reader
        byte = reader.peek()
        if byte == 0x28:
            return self._group(depth + 1)
        if 0x30 <= byte <= 0x39 or byte in (0x2A, 0x24):  # a number, "*" or "$" (RFC 5182)
            return Key("SEQSET", seqset=reader.seqset()), 0
        if byte == -1:
            raise ParseError(None, "Missing search key")
        name = reader.keyword()
        if name in ("NOT", "OR"):
            pending.append(None if name == "NOT" else [])
            reader.sp()
            return None
        return self._simple(name)

    def _group(self, depth: int) -> Rated:
        """A parenthesized list of search keys: all must match."""
        if depth > MAX_DEPTH:
            raise ParseError(None, "Search too deeply nested")
        reader = self.reader
        reader.expect(0x28, "(")
        if reader.peek() == 0x29:
            raise ParseError(None, "Empty search list")
        keys = [self.key(depth)]
        while not reader.try_char(0x29):
            if reader.at_end():
                raise ParseError(None, "Unbalanced parentheses")
            reader.sp()
            keys.append(self.key(depth))
        return _check(_and(keys))

    def _simple(self, name: str) -> Rated:
        """A key that is not NOT, OR, a list or a sequence set."""
        flag = FLAG_KEYS.get(name)
        if flag is not None:
            return Key("FLAG", text=flag), 0
        flag = UNFLAG_KEYS.get(name)
        if flag is not None:
            return Not(Key("FLAG", text=flag)), 1
        if name == "ALL":
            return Key("ALL"), 0
        if name == "SAVEDATESUPPORTED":  # RFC 8514 5: every mailbox here has save dates
            return Key("ALL"), 0
        if name == "NEW":
            return And((Key("FLAG", text="\\Recent"), Not(Key("FLAG", text="\\Seen")))), 2
        if name == "OLD":
            return Not(Key("FLAG", text="\\Recent")), 1
        if name not in ARGUMENT_KEYS:
            raise ParseError(None, "Unknown search key")
        self.reader.sp()
        return self._with_argument(name)

    def _with_argument(self, name: str) -> Rated:
        reader = self.reader
        if name in TEXT_KEYS:
            return Key(name, text=self._text()), 0
        if name in DATE_KEYS:
            return Key(name, date=parse_date(reader.astring())), 0
        if name in ("LARGER", "SMALLER"):
            return Key(name, number=reader.number(MAX_NUMBER64)), 0
        if name == "UID":
            return Key("UID", seqset=reader.seqset()), 0
        if name == "HEADER":
            field = reader.astring()
            if not field.isascii():
                raise ParseError(None, "Invalid header field name")
            reader.sp()
            return Key("HEADER", header=field.decode("ascii").upper(), text=self._text()), 0
        if name in ("KEYWORD", "UNKEYWORD"):
            key = Key("FLAG", text=reader.atom().decode("ascii"))
            return (key, 0) if name == "KEYWORD" else (Not(key), 1)
        if name == "MODSEQ":
            return self._modseq(), 0
        if name in OBJECTID_KEYS:
            objectid = reader.atom()
            if _OBJECTID_RE.fullmatch(objectid) is None:
                raise ParseError(None, "Invalid object id")
            return Key(name, text=objectid.decode("ascii")), 0
        raise ParseError(None, "Unknown search key")

    def _text(self) -> str:
        # Every charset we accept is ASCII-compatible; others are refused by the command layer.
        return self.reader.astring().decode("utf-8", "replace")

    def _modseq(self) -> Key:
        """MODSEQ [entry-name entry-type-req] mod-sequence-valzer (RFC 7162 3.1.5)."""
        reader = self.reader
        if reader.peek() == 0x22:
            reader.quoted()
            reader.sp()
            if reader.atom().upper() not in _MODSEQ_ENTRY_TYPES:
                raise ParseError(None, "Invalid MODSEQ entry type")
            reader.sp()
        self.uses_modseq = True
        return Key("MODSEQ", number=reader.number(MAX_NUMBER64))


def _check(rated: Rated) -> Rated:
    if rated[1] > MAX_DEPTH:
        raise ParseError(None, "Search too deeply nested")
    return rated


def _negate(rated: Rated) -> Rated:
    node, height = rated
    if isinstance(node, Not):
        return node.item, height - 1
    return Not(node), height + 1


def _or(operands: list[Rated]) -> Rated:
    items: list[SearchNode] = []
    height = 0
    for node, node_height in operands:
        if isinstance(node, Or):
            items.extend(node.items)
            height = max(height, node_height)
        else:
            items.append(node)
            height = max(height, node_height + 1)
    return Or(tuple(items)), height


def _and(operands: list[Rated]) -> Rated:
    if len(operands) == 1:
        return operands[0]
    items: list[SearchNode] = []
    height = 0
    for node, node_height in operands:
        if isinstance(node, And):
            items.extend(node.items)
            height = max(height, node_height)
        else:
            items.append(node)
            height = max(height, node_height + 1)
    return And(tuple(items)), height
