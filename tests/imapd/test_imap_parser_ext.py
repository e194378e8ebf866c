"""Parser tables for the extension commands of issue 16: SORT (RFC 5256, RFC 5957), ESORT and
the RETURN options of RFC 5267 (PARTIAL, UPDATE, CONTEXT), THREAD and CANCELUPDATE."""

from __future__ import annotations

import datetime

import pytest

from imapd.commands import COMMANDS
from imapd.parser import (
    And,
    AppendArgs,
    BinarySection,
    CancelUpdateArgs,
    Command,
    FetchArgs,
    Key,
    Not,
    ParseError,
    SearchArgs,
    SeqSet,
    SortArgs,
    SortKey,
    ThreadArgs,
    parse_command,
)
from imapd.parser_search import ReturnOptions


def parse(raw: bytes) -> Command:
    return parse_command(raw, COMMANDS)


def cmd(name: str, args: object, uid: bool = False) -> Command:
    return Command("a", name, args, uid)  # type: ignore[arg-type]


SEEN = Key("FLAG", text="\\Seen")

VALID = [
    (
        b"a SORT (SUBJECT) UTF-8 ALL",
        cmd("SORT", SortArgs((SortKey("SUBJECT"),), "UTF-8", Key("ALL"))),
    ),
    (
        b"a UID SORT (reverse date FROM Size) us-ascii UNSEEN 1:5",
        cmd(
            "SORT",
            SortArgs(
                (SortKey("DATE", True), SortKey("FROM"), SortKey("SIZE")),
                "US-ASCII",
                And((Not(SEEN), Key("SEQSET", seqset=SeqSet.parse("1:5")))),
            ),
            uid=True,
        ),
    ),
    (
        b"a SORT (DISPLAYFROM REVERSE DISPLAYTO ARRIVAL CC TO) UTF-8 ALL",
        cmd(
            "SORT",
            SortArgs(
                (
                    SortKey("DISPLAYFROM"),
                    SortKey("DISPLAYTO", True),
                    SortKey("ARRIVAL"),
                    SortKey("CC"),
                    SortKey("TO"),
                ),
                "UTF-8",
                Key("ALL"),
            ),
        ),
    ),
    (
        b"a SORT RETURN (MIN COUNT) (DATE) UTF-8 MODSEQ 5",
        cmd(
            "SORT",
            SortArgs(
                (SortKey("DATE"),),
                "UTF-8",
                Key("MODSEQ", number=5),
                ReturnOptions(("MIN", "COUNT")),
                True,
            ),
        ),
    ),
    (
        b"a SORT RETURN (PARTIAL 10:1 UPDATE) (DATE) UTF-8 ALL",
        cmd(
            "SORT",
            SortArgs(
                (SortKey("DATE"),),
                "UTF-8",
                Key("ALL"),
                ReturnOptions(("PARTIAL", "UPDATE"), (1, 10)),
            ),
        ),
    ),
    (
        b"a SORT RETURN () (DATE) UTF-8 ALL",
        cmd("SORT", SortArgs((SortKey("DATE"),), "UTF-8", Key("ALL"), ReturnOptions(("ALL",)))),
    ),
    (
        b"a SEARCH RETURN (UPDATE CONTEXT PARTIAL 1:100) SEEN",
        cmd("SEARCH", SearchArgs(SEEN, None, ("UPDATE", "CONTEXT", "PARTIAL"), False, (1, 100))),
    ),
    (
        b"a THREAD REFERENCES UTF-8 SINCE 5-MAR-2000",
        cmd(
            "THREAD",
            ThreadArgs("REFERENCES", "UTF-8", Key("SINCE", date=datetime.date(2000, 3, 5))),
        ),
    ),
    (
        b'a UID THREAD orderedsubject "utf-8" TEXT gewp',
        cmd("THREAD", ThreadArgs("ORDEREDSUBJECT", "UTF-8", Key("TEXT", text="gewp")), uid=True),
    ),
    (b"a THREAD FOO UTF-8 ALL", cmd("THREAD", ThreadArgs("FOO", "UTF-8", Key("ALL")))),
    (b'a CANCELUPDATE "a1"', cmd("CANCELUPDATE", CancelUpdateArgs(("a1",)))),
    # SEARCHRES (RFC 5182)
    (
        b"a SEARCH RETURN (SAVE MIN) $",
        cmd(
            "SEARCH",
            SearchArgs(Key("SEQSET", seqset=SeqSet((), saved=True)), None, ("SAVE", "MIN")),
        ),
    ),
    (
        b"a UID FETCH $ (FLAGS)",
        cmd("FETCH", FetchArgs(SeqSet((), saved=True), ("UID", "FLAGS")), uid=True),
    ),
    # BINARY (RFC 3516)
    (
        b"a FETCH 1 (BINARY[1.2] BINARY.PEEK[]<0.100> BINARY.SIZE[3])",
        cmd(
            "FETCH",
            FetchArgs(
                SeqSet.parse("1"),
                (
                    BinarySection(False, (1, 2)),
                    BinarySection(True, (), (0, 100)),
                    BinarySection(False, (3,), None, True),
                ),
            ),
        ),
    ),
    (
        b"a FETCH 1 (BINARY.PEEK[2] BINARY[2])",  # one answer: BINARY[2]
        cmd("FETCH", FetchArgs(SeqSet.parse("1"), (BinarySection(False, (2,)),))),
    ),
    (
        b"a FETCH 1 binary.peek[1]",
        cmd("FETCH", FetchArgs(SeqSet.parse("1"), (BinarySection(True, (1,)),))),
    ),
    (
        b"a APPEND INBOX ~{3}\r\na\x00b",
        cmd("APPEND", AppendArgs("INBOX", (), None, b"a\x00b")),
    ),
    (
        b"a APPEND INBOX (\\Seen) ~{2+}\r\n\r\n",
        cmd("APPEND", AppendArgs("INBOX", ("\\Seen",), None, b"\r\n")),
    ),
    (
        b'a CANCELUPDATE "a1" "b\\"2" "a1"',
        cmd("CANCELUPDATE", CancelUpdateArgs(("a1", 'b"2'))),
    ),
]


@pytest.mark.parametrize(("raw", "expected"), VALID, ids=[repr(r)[:60] for r, _ in VALID])
def test_valid(raw: bytes, expected: Command) -> None:
    assert parse(raw) == expected


ERRORS = [
    (b"a SORT", "Missing"),
    (b"a SORT (SUBJECT)", "Missing"),
    (b"a SORT (SUBJECT) UTF-8", "Missing"),
    (b"a SORT () UTF-8 ALL", "Empty sort criteria"),
    (b"a SORT (FOO) UTF-8 ALL", "Unknown sort criterion"),
    (b"a SORT (REVERSE) UTF-8 ALL", "Unexpected )"),
    (b"a SORT (REVERSE REVERSE DATE) UTF-8 ALL", "Unknown sort criterion"),
    (b"a SORT SUBJECT UTF-8 ALL", "Expected RETURN"),
    (b"a SORT RETURN (FOO) (DATE) UTF-8 ALL", "Unknown RETURN option"),
    (b"a SORT (DATE) UTF-8 ALL extra(", "Unknown search key"),
    (b"a SEARCH RETURN (PARTIAL) ALL", "Unexpected )"),
    (b"a SEARCH RETURN (PARTIAL 0:5) ALL", "non-zero"),
    (b"a SEARCH RETURN (PARTIAL 1) ALL", "Expected :"),
    (b"a SEARCH RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL", "twice"),
    (b"a THREAD REFERENCES", "Missing"),
    (b"a THREAD REFERENCES UTF-8", "Missing"),
    (b"a THREAD (REFERENCES) UTF-8 ALL", "atom"),
    (b"a CANCELUPDATE", "Missing"),
    (b"a CANCELUPDATE a1", "Expected a quoted tag"),
    (b"a FETCH $,1 FLAGS", "Invalid sequence set"),
    (b"a FETCH 1:$ FLAGS", "Invalid sequence set"),
    (b"a SELECT INBOX (QRESYNC (1 1 $))", '"$" is not allowed'),
    (b"a FETCH 1 BINARY[1.MIME]", "Invalid binary section"),
    (b"a FETCH 1 BINARY[TEXT]", "Expected ]"),
    (b"a FETCH 1 BINARY[0]", "Invalid binary section"),
    (b"a FETCH 1 BINARY[1..2]", "Invalid binary section"),
    (b"a FETCH 1 BINARY", "Missing"),
    (b"a FETCH 1 BINARY.SIZE", "Missing"),
    (b"a FETCH 1 (BINARY.PEEK)", "Expected ["),
    (b"a FETCH 1 BINARY.SIZE[1]<0.5>", "no partial"),
    (b"a FETCH 1 BINARY[1]<5>", "Expected ."),
    (b"a APPEND INBOX ~{5}\r\nabc", "shorter"),
    (b"a APPEND INBOX ~5\r\nabc", "literal8"),
    (b"a LOGIN ~{1}\r\na b", "Expected a space"),  # literal8 only where RFC 3516 allows it
]


@pytest.mark.parametrize(("raw", "message"), ERRORS, ids=[repr(r)[:60] for r, _ in ERRORS])
def test_error(raw: bytes, message: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse(raw)
    assert caught.value.tag == "a"
    assert message in caught.value.message
