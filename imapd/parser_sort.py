"""SORT and THREAD arguments (RFC 5256 4, RFC 5957 5, ESORT of RFC 5267 3), and CANCELUPDATE
(RFC 5267 4.6). Import the public names from `imapd.parser`.

    sort    = ["UID" SP] "SORT" [SP search-return-opts] SP sort-criteria SP search-criteria
    thread  = ["UID" SP] "THREAD" SP thread-alg SP search-criteria
    sort-criteria = "(" sort-criterion *(SP sort-criterion) ")"
    sort-criterion = ["REVERSE" SP] sort-key
    search-criteria = charset 1*(SP search-key)
    cancelupdate = "CANCELUPDATE" 1*(SP quoted)
"""

from __future__ import annotations

from dataclasses import dataclass

from imapd.parser_base import ParseError, Reader
from imapd.parser_search import (
    ReturnOptions,
    SearchNode,
    parse_return_options,
    parse_search_keys,
)

__all__ = [
    "CancelUpdateArgs",
    "SortArgs",
    "SortKey",
    "ThreadArgs",
    "parse_cancelupdate",
    "parse_sort",
    "parse_thread",
]

SORT_KEYS = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
"""RFC 5256 3 and RFC 5957 4."""
THREAD_ALGORITHMS = frozenset({"ORDEREDSUBJECT", "REFERENCES"})


@dataclass(frozen=True, slots=True)
class SortKey:
    """One sort criterion: its key name, upper-cased, and whether REVERSE came before it."""

    name: str
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class SortArgs:
    """SORT / UID SORT. ``returns`` is None for a classic SORT, else the ESORT options."""

    program: tuple[SortKey, ...]
    charset: str
    criteria: SearchNode
    returns: ReturnOptions | None = None
    uses_modseq: bool = False


@dataclass(frozen=True, slots=True)
class ThreadArgs:
    """THREAD / UID THREAD: the algorithm upper-cased (the handler checks it is one it has)."""

    algorithm: str
    charset: str
    criteria: SearchNode
    uses_modseq: bool = False


@dataclass(frozen=True, slots=True)
class CancelUpdateArgs:
    """CANCELUPDATE with the tags of the searches whose updates end."""

    tags: tuple[str, ...]


def parse_sort(reader: Reader, uid: bool) -> SortArgs:
    reader.sp()
    returns = None
    if reader.peek() != 0x28:
        returns = parse_return_options(reader)
        reader.sp()
    program = _sort_program(reader)
    reader.sp()
    charset = _charset(reader)
    criteria, uses_modseq = parse_search_keys(reader)
    reader.end()
    return SortArgs(program, charset, criteria, returns, uses_modseq)


def _sort_program(reader: Reader) -> tuple[SortKey, ...]:
    keys: list[SortKey] = []
    for _ in reader.paren_list():
        name = reader.keyword()
        reverse = name == "REVERSE"
        if reverse:
            reader.sp()
            name = reader.keyword()
        if name not in SORT_KEYS:
            raise ParseError(None, "Unknown sort criterion")
        keys.append(SortKey(name, reverse))
    if not keys:
        raise ParseError(None, "Empty sort criteria")
    return tuple(keys)


def parse_thread(reader: Reader, uid: bool) -> ThreadArgs:
    reader.sp()
    algorithm = reader.keyword()
    reader.sp()
    charset = _charset(reader)
    criteria, uses_modseq = parse_search_keys(reader)
    reader.end()
    return ThreadArgs(algorithm, charset, criteria, uses_modseq)


def _charset(reader: Reader) -> str:
    """The charset, which SORT and THREAD require (RFC 5256 4), then the separator."""
    charset = reader.astring().decode("ascii", "replace").upper()
    reader.sp()
    return charset


def parse_cancelupdate(reader: Reader, uid: bool) -> CancelUpdateArgs:
    reader.sp()
    tags = [_quoted_tag(reader)]
    while reader.try_sp():
        tags.append(_quoted_tag(reader))
    return CancelUpdateArgs(tuple(dict.fromkeys(tags)))


def _quoted_tag(reader: Reader) -> str:
    if reader.peek() != 0x22:
        raise ParseError(None, "Expected a quoted tag")
    return reader.quoted().decode("utf-8", "replace")
