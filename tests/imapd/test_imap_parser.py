"""Unit tests for imapd.parser: parametrized tables of wire bytes to Command or ParseError."""

from __future__ import annotations

import datetime
import random

import pytest

from imapd.commands import COMMANDS
from imapd.parser import (
    MAX_DEPTH,
    And,
    AppendArgs,
    AuthenticateArgs,
    BodySection,
    Command,
    CompressArgs,
    CopyArgs,
    CreateArgs,
    EnableArgs,
    ExpungeArgs,
    FetchArgs,
    IdArgs,
    Key,
    ListArgs,
    LoginArgs,
    MailboxArgs,
    Not,
    Or,
    ParseError,
    QResync,
    QuotaArgs,
    RenameArgs,
    SearchArgs,
    SelectArgs,
    SeqSet,
    StatusArgs,
    StoreArgs,
    UndecodableName,
    decode_mutf7,
    encode_mailbox,
    encode_mutf7,
    literal_at_end,
    parse_command,
    parse_date,
    parse_date_time,
    parse_sasl_response,
    tag_of,
)


def parse(raw: bytes) -> Command:
    """The parser over imapd's own command table."""
    return parse_command(raw, COMMANDS)


S = SeqSet.parse


def flag(name: str) -> Key:
    return Key("FLAG", text=name)


def cmd(name: str, args: object = None, uid: bool = False, tag: str = "a") -> Command:
    return Command(tag, name, args, uid)  # type: ignore[arg-type]


def tz(hours: int, minutes: int = 0) -> datetime.timezone:
    return datetime.timezone(datetime.timedelta(hours=hours, minutes=minutes))


# -- valid commands ---------------------------------------------------------------------------

SIMPLE = [
    (b"a1 NOOP", Command("a1", "NOOP", None)),
    (b"A001 capability", Command("A001", "CAPABILITY", None)),
    (b"a LOGOUT", cmd("LOGOUT")),
    (b"a check", cmd("CHECK")),
    (b"a CLOSE", cmd("CLOSE")),
    (b"a UNSELECT", cmd("UNSELECT")),
    (b"a IDLE", cmd("IDLE")),
    (b"a NAMESPACE", cmd("NAMESPACE")),
    (b"a1 NOOP   ", Command("a1", "NOOP", None)),
    (b"a1   noop", Command("a1", "NOOP", None)),
    (b"a.b-c_1]x NOOP", Command("a.b-c_1]x", "NOOP", None)),
    (b"#!$&'~|} NOOP", Command("#!$&'~|}", "NOOP", None)),
]

LOGIN = [
    (b"a LOGIN bob secret", cmd("LOGIN", LoginArgs("bob", "secret"))),
    (b'a LOGIN "bob smith" "p\\"w\\\\d"', cmd("LOGIN", LoginArgs("bob smith", 'p"w\\d'))),
    (b"a LOGIN {3}\r\nbob {2}\r\npw", cmd("LOGIN", LoginArgs("bob", "pw"))),
    (b"a LOGIN {3+}\nbob {2+}\npw", cmd("LOGIN", LoginArgs("bob", "pw"))),
    (b"a LOGIN {4}\r\nb ob {0}\r\n", cmd("LOGIN", LoginArgs("b ob", ""))),
    (b'a LOGIN "j\xc3\xb6rg" x', cmd("LOGIN", LoginArgs("j\u00f6rg", "x"))),
    (b'a LOGIN NIL ""', cmd("LOGIN", LoginArgs("NIL", ""))),
    (b"a LOGIN bob]x p[w", cmd("LOGIN", LoginArgs("bob]x", "p[w"))),
    (b"a AUTHENTICATE plain", cmd("AUTHENTICATE", AuthenticateArgs("PLAIN"))),
    (
        b"a AUTHENTICATE PLAIN AGJvYgBwdw==",
        cmd("AUTHENTICATE", AuthenticateArgs("PLAIN", b"\0bob\0pw")),
    ),
    (b"a AUTHENTICATE PLAIN =", cmd("AUTHENTICATE", AuthenticateArgs("PLAIN", b""))),
    (b"a AUTHENTICATE CRAM-MD5", cmd("AUTHENTICATE", AuthenticateArgs("CRAM-MD5"))),
]

MAILBOXES = [
    (b"a SELECT inbox", cmd("SELECT", SelectArgs("INBOX"))),
    (b'a EXAMINE "Sent Items"', cmd("EXAMINE", SelectArgs("Sent Items"))),
    (b"a SELECT INBOX.Sub", cmd("SELECT", SelectArgs("INBOX.Sub"))),
    (b"a SELECT inbox.sub", cmd("SELECT", SelectArgs("inbox.sub"))),
    (b"a SELECT &AMk-t&AOk-", cmd("SELECT", SelectArgs("\u00c9t\u00e9"))),
    (b"a SELECT Tom&-Jerry", cmd("SELECT", SelectArgs("Tom&Jerry"))),
    (b"a SELECT {5}\r\nInBoX", cmd("SELECT", SelectArgs("INBOX"))),
    (b'a SELECT "a\\\\b"', cmd("SELECT", SelectArgs("a\\b"))),
    (b"a SELECT INBOX (CONDSTORE)", cmd("SELECT", SelectArgs("INBOX", condstore=True))),
    (
        b"a SELECT INBOX (QRESYNC (67890007 90060115194045000))",
        cmd("SELECT", SelectArgs("INBOX", qresync=QResync(67890007, 90060115194045000))),
    ),
    (
        b"a SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))",
        cmd(
            "SELECT",
            SelectArgs("INBOX", qresync=QResync(67890007, 90060115194045000, S("41:211,214:541"))),
        ),
    ),
    (
        b"a SELECT INBOX (QRESYNC (1 2 41:50 (1:10 41:50)))",
        cmd(
            "SELECT",
            SelectArgs("INBOX", qresync=QResync(1, 2, S("41:50"), (S("1:10"), S("41:50")))),
        ),
    ),
    (
        b"a EXAMINE INBOX (CONDSTORE QRESYNC (1 0 (1,3 5,9)))",
        cmd(
            "EXAMINE",
            SelectArgs("INBOX", True, QResync(1, 0, None, (S("1,3"), S("5,9")))),
        ),
    ),
    (b"a CREATE Archive", cmd("CREATE", CreateArgs("Archive"))),
    (b"a CREATE Sent (USE (\\sent))", cmd("CREATE", CreateArgs("Sent", ("\\Sent",)))),
    (
        b"a CREATE X (USE (\\Junk \\TRASH \\Foo))",
        cmd("CREATE", CreateArgs("X", ("\\Junk", "\\Trash", "\\Foo"))),
    ),
    (b"a CREATE X (USE ())", cmd("CREATE", CreateArgs("X"))),
    (b"a DELETE old", cmd("DELETE", MailboxArgs("old"))),
    (b'a RENAME "A B" C', cmd("RENAME", RenameArgs("A B", "C"))),
    (b"a RENAME INBOX Old", cmd("RENAME", RenameArgs("INBOX", "Old"))),
    (b"a SUBSCRIBE INBOX.x", cmd("SUBSCRIBE", MailboxArgs("INBOX.x"))),
    (b"a UNSUBSCRIBE {3+}\r\nfoo", cmd("UNSUBSCRIBE", MailboxArgs("foo"))),
    (b"a GETQUOTAROOT inbox", cmd("GETQUOTAROOT", MailboxArgs("INBOX"))),
    (b'a GETQUOTA ""', cmd("GETQUOTA", QuotaArgs(""))),
    (b'a GETQUOTA "User quota"', cmd("GETQUOTA", QuotaArgs("User quota"))),
    (
        b"a STATUS INBOX (MESSAGES UIDNEXT uidvalidity UNSEEN RECENT HIGHESTMODSEQ)",
        cmd(
            "STATUS",
            StatusArgs(
                "INBOX",
                ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "RECENT", "HIGHESTMODSEQ"),
            ),
        ),
    ),
    (b"a STATUS Sent (MESSAGES MESSAGES)", cmd("STATUS", StatusArgs("Sent", ("MESSAGES",)))),
]

LISTS = [
    (b'a LIST "" *', cmd("LIST", ListArgs("", ("*",)))),
    (b'a LIST "" ""', cmd("LIST", ListArgs("", ("",)))),
    (b"a LIST INBOX. %", cmd("LIST", ListArgs("INBOX.", ("%",)))),
    (b"a LIST inbox %", cmd("LIST", ListArgs("INBOX", ("%",)))),
    (b'a LIST "" INBOX.%]', cmd("LIST", ListArgs("", ("INBOX.%]",)))),
    (b'a LIST "" &AMk-*', cmd("LIST", ListArgs("", ("\u00c9*",)))),
    (
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"',
        cmd("LIST", ListArgs("", ("%",), ("SUBSCRIBED", "RECURSIVEMATCH"), extended=True)),
    ),
    (
        b'a LIST (special-use) "" *',
        cmd("LIST", ListArgs("", ("*",), ("SPECIAL-USE",), extended=True)),
    ),
    (
        b'a LIST "" ("INBOX" "Sent*") RETURN (CHILDREN)',
        cmd("LIST", ListArgs("", ("INBOX", "Sent*"), (), ("CHILDREN",), extended=True)),
    ),
    (
        b'a LIST "" % RETURN (STATUS (MESSAGES UNSEEN) SPECIAL-USE)',
        cmd(
            "LIST",
            ListArgs(
                "", ("%",), (), ("STATUS", "SPECIAL-USE"), ("MESSAGES", "UNSEEN"), extended=True
            ),
        ),
    ),
    (
        b'a LIST (REMOTE SUBSCRIBED) "" % RETURN (SUBSCRIBED)',
        cmd("LIST", ListArgs("", ("%",), ("REMOTE", "SUBSCRIBED"), ("SUBSCRIBED",), (), True)),
    ),
    (b'a LIST () "" %', cmd("LIST", ListArgs("", ("%",), extended=True))),
    (b'a LIST "" % RETURN ()', cmd("LIST", ListArgs("", ("%",), extended=True))),
    (b'a LSUB "" *', cmd("LSUB", ListArgs("", ("*",)))),
    (b"a LSUB INBOX. {1}\r\n%", cmd("LSUB", ListArgs("INBOX.", ("%",)))),
]

APPENDS = [
    (
        b"a1 APPEND INBOX (\\Seen) {5}\r\nhello",
        Command("a1", "APPEND", AppendArgs("INBOX", ("\\Seen",), None, b"hello")),
    ),
    (
        b'a APPEND Drafts (\\draft $Label1) " 7-Feb-1994 21:52:25 -0800" {3+}\r\nabc',
        cmd(
            "APPEND",
            AppendArgs(
                "Drafts",
                ("\\Draft", "$Label1"),
                datetime.datetime(1994, 2, 7, 21, 52, 25, tzinfo=tz(-8)),
                b"abc",
            ),
        ),
    ),
    (
        b'a APPEND INBOX "07-Feb-1994 21:52:25 +0130" {0}\r\n',
        cmd(
            "APPEND",
            AppendArgs(
                "INBOX", (), datetime.datetime(1994, 2, 7, 21, 52, 25, tzinfo=tz(1, 30)), b""
            ),
        ),
    ),
    (b"a APPEND INBOX {5}\nhe\r\nl", cmd("APPEND", AppendArgs("INBOX", (), None, b"he\r\nl"))),
    (b"a APPEND INBOX () {1}\r\nx", cmd("APPEND", AppendArgs("INBOX", (), None, b"x"))),
    (
        b"a APPEND {4}\r\nSent (\\Seen \\seen) {2}\r\n\r\n",
        cmd("APPEND", AppendArgs("Sent", ("\\Seen",), None, b"\r\n")),
    ),
]

MESSAGES = [
    (b"a EXPUNGE", cmd("EXPUNGE", ExpungeArgs())),
    (b"a UID EXPUNGE 3:5,7", cmd("EXPUNGE", ExpungeArgs(S("3:5,7")), uid=True)),
    (b"a COPY 2:4 MEETING", cmd("COPY", CopyArgs(S("2:4"), "MEETING"))),
    (b"a UID COPY 1:* Trash", cmd("COPY", CopyArgs(S("1:*"), "Trash"), uid=True)),
    (b"a MOVE 1 Archive", cmd("MOVE", CopyArgs(S("1"), "Archive"))),
    (b'a uid move 5,7 "Junk"', cmd("MOVE", CopyArgs(S("5,7"), "Junk"), uid=True)),
    (
        b"a STORE 2:4 +FLAGS (\\Deleted)",
        cmd("STORE", StoreArgs(S("2:4"), "+", False, ("\\Deleted",))),
    ),
    (
        b"a STORE 1 FLAGS.SILENT \\seen \\FLAGGED kw",
        cmd("STORE", StoreArgs(S("1"), "", True, ("\\Seen", "\\Flagged", "kw"))),
    ),
    (b"a UID STORE 1:* -flags ()", cmd("STORE", StoreArgs(S("1:*"), "-", False, ()), uid=True)),
    (
        b"a STORE 1 (UNCHANGEDSINCE 12345) +FLAGS.SILENT ($Junk)",
        cmd("STORE", StoreArgs(S("1"), "+", True, ("$Junk",), 12345)),
    ),
    (b"a STORE 1 FLAGS (\\Seen \\Seen)", cmd("STORE", StoreArgs(S("1"), "", False, ("\\Seen",)))),
    (
        b"a STORE 1 (UNCHANGEDSINCE 0) -FLAGS \\Answered",
        cmd("STORE", StoreArgs(S("1"), "-", False, ("\\Answered",), 0)),
    ),
]

ALL_ITEMS = ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE")
FETCHES = [
    (b"a FETCH 1 ALL", cmd("FETCH", FetchArgs(S("1"), ALL_ITEMS))),
    (b"a FETCH 1 fast", cmd("FETCH", FetchArgs(S("1"), ALL_ITEMS[:3]))),
    (b"a FETCH 1 FULL", cmd("FETCH", FetchArgs(S("1"), (*ALL_ITEMS, "BODY")))),
    (b"a FETCH 1:* (FLAGS)", cmd("FETCH", FetchArgs(S("1:*"), ("FLAGS",)))),
    (b"a FETCH 1:* flags", cmd("FETCH", FetchArgs(S("1:*"), ("FLAGS",)))),
    (b"a UID FETCH 1:* (FLAGS)", cmd("FETCH", FetchArgs(S("1:*"), ("UID", "FLAGS")), uid=True)),
    (b"a UID FETCH 1 (FLAGS UID)", cmd("FETCH", FetchArgs(S("1"), ("FLAGS", "UID")), uid=True)),
    (b"a UID FETCH 1 ALL", cmd("FETCH", FetchArgs(S("1"), ("UID", *ALL_ITEMS)), uid=True)),
    (b"a FETCH 2 BODY[]", cmd("FETCH", FetchArgs(S("2"), (BodySection(),)))),
    (
        b"a FETCH 2 body.peek[1.2.MIME]<10.20>",
        cmd("FETCH", FetchArgs(S("2"), (BodySection(True, (1, 2), "MIME", (), (10, 20)),))),
    ),
    (
        b"a FETCH 2 (RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT ENVELOPE BODYSTRUCTURE "
        b"INTERNALDATE BODY MODSEQ UID FLAGS)",
        cmd(
            "FETCH",
            FetchArgs(
                S("2"),
                (
                    "RFC822",
                    "RFC822.HEADER",
                    "RFC822.SIZE",
                    "RFC822.TEXT",
                    "ENVELOPE",
                    "BODYSTRUCTURE",
                    "INTERNALDATE",
                    "BODY",
                    "MODSEQ",
                    "UID",
                    "FLAGS",
                ),
            ),
        ),
    ),
    (
        b"a FETCH 2 BODY[HEADER.FIELDS.NOT (X-Foo Received)]",
        cmd(
            "FETCH",
            FetchArgs(
                S("2"),
                (
                    BodySection(
                        False,
                        (),
                        "HEADER.FIELDS.NOT",
                        ("X-FOO", "RECEIVED"),
                        spelled="X-Foo Received",
                    ),
                ),
            ),
        ),
    ),
    (
        b"a FETCH 2 (BODY[1.TEXT] BODY.PEEK[3.header] BODY[TEXT] BODY[4.2.1])",
        cmd(
            "FETCH",
            FetchArgs(
                S("2"),
                (
                    BodySection(False, (1,), "TEXT"),
                    BodySection(True, (3,), "HEADER"),
                    BodySection(False, (), "TEXT"),
                    BodySection(False, (4, 2, 1)),
                ),
            ),
        ),
    ),
    (
        b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)",
        cmd("FETCH", FetchArgs(S("1:*"), ("UID", "FLAGS", "MODSEQ"), 12345), uid=True),
    ),
    (
        b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
        cmd("FETCH", FetchArgs(S("1:*"), ("UID", "FLAGS", "MODSEQ"), 12345, True), uid=True),
    ),
    (
        b"a FETCH 1 (BODY.PEEK[1] BODY[1] FLAGS FLAGS)",
        cmd("FETCH", FetchArgs(S("1"), (BodySection(False, (1,)), "FLAGS"))),
    ),
    (
        b"a FETCH 1 BODY[HEADER.FIELDS ({4}\r\nDate)]",
        cmd(
            "FETCH",
            FetchArgs(
                S("1"), (BodySection(False, (), "HEADER.FIELDS", ("DATE",), spelled='"Date"'),)
            ),
        ),
    ),
    (
        b"a FETCH 5:3,*,7 BODY.PEEK[]<0.4294967295>",
        cmd(
            "FETCH",
            FetchArgs(S("5:3,*,7"), (BodySection(True, partial=(0, 4294967295)),)),
        ),
    ),
]

SEARCHES = [
    (b"a SEARCH ALL", cmd("SEARCH", SearchArgs(Key("ALL")))),
    (
        b'a SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
        cmd(
            "SEARCH",
            SearchArgs(
                And(
                    (
                        flag("\\Flagged"),
                        Key("SINCE", date=datetime.date(1994, 2, 1)),
                        Not(Key("FROM", text="Smith")),
                    )
                )
            ),
        ),
    ),
    (
        b"a SEARCH OR SEEN UNSEEN",
        cmd("SEARCH", SearchArgs(Or((flag("\\Seen"), Not(flag("\\Seen")))))),
    ),
    (
        b"a SEARCH NEW",
        cmd("SEARCH", SearchArgs(And((flag("\\Recent"), Not(flag("\\Seen")))))),
    ),
    (b"a SEARCH OLD", cmd("SEARCH", SearchArgs(Not(flag("\\Recent"))))),
    (
        b"a SEARCH 1:3,5 UID 7:*",
        cmd(
            "SEARCH",
            SearchArgs(And((Key("SEQSET", seqset=S("1:3,5")), Key("UID", seqset=S("7:*"))))),
        ),
    ),
    (
        b"a SEARCH (FROM a TO b) (CC c BCC d)",
        cmd(
            "SEARCH",
            SearchArgs(
                And(
                    (
                        Key("FROM", text="a"),
                        Key("TO", text="b"),
                        Key("CC", text="c"),
                        Key("BCC", text="d"),
                    )
                )
            ),
        ),
    ),
    (
        b"a SEARCH CHARSET utf-8 SUBJECT {2}\r\n\xc3\xa9",
        cmd("SEARCH", SearchArgs(Key("SUBJECT", text="\u00e9"), "UTF-8")),
    ),
    (
        b'a SEARCH CHARSET "ISO-8859-1" TEXT x',
        cmd("SEARCH", SearchArgs(Key("TEXT", text="x"), "ISO-8859-1")),
    ),
    (
        b"a SEARCH HEADER Message-ID <x@y>",
        cmd("SEARCH", SearchArgs(Key("HEADER", header="MESSAGE-ID", text="<x@y>"))),
    ),
    (
        b'a SEARCH HEADER X-Spam ""',
        cmd("SEARCH", SearchArgs(Key("HEADER", header="X-SPAM"))),
    ),
    (
        b"a SEARCH LARGER 1000 SMALLER 5000",
        cmd(
            "SEARCH",
            SearchArgs(And((Key("LARGER", number=1000), Key("SMALLER", number=5000)))),
        ),
    ),
    (
        b"a SEARCH KEYWORD $Forwarded UNKEYWORD Junk",
        cmd("SEARCH", SearchArgs(And((flag("$Forwarded"), Not(flag("Junk")))))),
    ),
    (
        b'a SEARCH BEFORE "1-Jan-2020" ON 31-dec-1999 SENTBEFORE 2-Mar-2001 SENTON 3-Apr-2002 '
        b"SENTSINCE 04-May-2003",
        cmd(
            "SEARCH",
            SearchArgs(
                And(
                    (
                        Key("BEFORE", date=datetime.date(2020, 1, 1)),
                        Key("ON", date=datetime.date(1999, 12, 31)),
                        Key("SENTBEFORE", date=datetime.date(2001, 3, 2)),
                        Key("SENTON", date=datetime.date(2002, 4, 3)),
                        Key("SENTSINCE", date=datetime.date(2003, 5, 4)),
                    )
                )
            ),
        ),
    ),
    (
        b"a SEARCH BODY x TEXT y ANSWERED DELETED DRAFT RECENT UNANSWERED UNDELETED UNDRAFT "
        b"UNFLAGGED",
        cmd(
            "SEARCH",
            SearchArgs(
                And(
                    (
                        Key("BODY", text="x"),
                        Key("TEXT", text="y"),
                        flag("\\Answered"),
                        flag("\\Deleted"),
                        flag("\\Draft"),
                        flag("\\Recent"),
                        Not(flag("\\Answered")),
                        Not(flag("\\Deleted")),
                        Not(flag("\\Draft")),
                        Not(flag("\\Flagged")),
                    )
                )
            ),
        ),
    ),
    (
        b"a SEARCH RETURN (MIN MAX) UNSEEN",
        cmd("SEARCH", SearchArgs(Not(flag("\\Seen")), None, ("MIN", "MAX"))),
    ),
    (b"a SEARCH RETURN () ALL", cmd("SEARCH", SearchArgs(Key("ALL"), None, ("ALL",)))),
    (
        b"a UID SEARCH RETURN (count) CHARSET US-ASCII MODSEQ 620162338",
        cmd(
            "SEARCH",
            SearchArgs(Key("MODSEQ", number=620162338), "US-ASCII", ("COUNT",), True),
            uid=True,
        ),
    ),
    (
        b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338',
        cmd("SEARCH", SearchArgs(Key("MODSEQ", number=620162338), uses_modseq=True)),
    ),
    (b"a SEARCH NOT NOT SEEN", cmd("SEARCH", SearchArgs(flag("\\Seen")))),
    (
        b"a SEARCH OR OR FROM a FROM b FROM c",
        cmd(
            "SEARCH",
            SearchArgs(Or((Key("FROM", text="a"), Key("FROM", text="b"), Key("FROM", text="c")))),
        ),
    ),
    (
        b"a SEARCH OR FROM a OR FROM b FROM c",
        cmd(
            "SEARCH",
            SearchArgs(Or((Key("FROM", text="a"), Key("FROM", text="b"), Key("FROM", text="c")))),
        ),
    ),
    (b"a SEARCH (SEEN)", cmd("SEARCH", SearchArgs(flag("\\Seen")))),
    (
        b"a SEARCH NOT (SEEN FLAGGED) *",
        cmd(
            "SEARCH",
            SearchArgs(
                And(
                    (
                        Not(And((flag("\\Seen"), flag("\\Flagged")))),
                        Key("SEQSET", seqset=S("*")),
                    )
                )
            ),
        ),
    ),
    (
        b"a SEARCH OR (SEEN FLAGGED) NOT OR DRAFT DELETED",
        cmd(
            "SEARCH",
            SearchArgs(
                Or(
                    (
                        And((flag("\\Seen"), flag("\\Flagged"))),
                        Not(Or((flag("\\Draft"), flag("\\Deleted")))),
                    )
                )
            ),
        ),
    ),
]

OTHERS = [
    (b"a ID NIL", cmd("ID", IdArgs(None))),
    (
        b'a ID ("name" "Thunderbird" "version" NIL)',
        cmd("ID", IdArgs((("name", "Thunderbird"), ("version", None)))),
    ),
    (b"a ID ()", cmd("ID", IdArgs(()))),
    (b'a ID ("os" {5}\r\nLinux)', cmd("ID", IdArgs((("os", "Linux"),)))),
    (b"a ENABLE CONDSTORE qresync", cmd("ENABLE", EnableArgs(("CONDSTORE", "QRESYNC")))),
    (b"a ENABLE UTF8=ACCEPT", cmd("ENABLE", EnableArgs(("UTF8=ACCEPT",)))),
    (b"a COMPRESS deflate", cmd("COMPRESS", CompressArgs("DEFLATE"))),
]

VALID = SIMPLE + LOGIN + MAILBOXES + LISTS + APPENDS + MESSAGES + FETCHES + SEARCHES + OTHERS


@pytest.mark.parametrize(("raw", "expected"), VALID, ids=[repr(raw)[:60] for raw, _ in VALID])
def test_valid_command(raw: bytes, expected: Command) -> None:
    assert parse(raw) == expected


# -- errors: (raw bytes, expected tag, part of the message) ----------------------------------

ERRORS = [
    # the line and the tag
    (b"", None, "Empty"),
    (b"   ", None, "Empty"),
    (b"* NOOP", None, "tag"),
    (b"+ NOOP", None, "tag"),
    (b"a+b NOOP", None, "tag"),
    (b"( NOOP", None, "tag"),
    (b"{1} NOOP", None, "tag"),
    (b"a%b NOOP", None, "tag"),
    (b"a\x01 NOOP", None, "tag"),
    (b"a\x7f NOOP", None, "tag"),
    (b"\xff\xfe NOOP", None, "tag"),
    (b'"a" NOOP', None, "tag"),
    (b"a\\b NOOP", None, "tag"),
    (b" a NOOP", None, "tag"),
    (b"\x00\x01\x02", None, "tag"),
    (b"a1", "a1", "Missing command"),
    (b"a1 ", "a1", "Missing command"),
    (b"a1 FOO", "a1", "Unknown command"),
    (b"a1 \x00\x01", "a1", "Unknown command"),
    (b"a1 (NOOP)", "a1", "Unknown command"),
    (b"a1 UID NOOP", "a1", "Unknown UID command"),
    (b"a1 UID", "a1", "Missing"),
    (b"a1 NOOP extra", "a1", "extra"),
    (b"a1 CAPABILITY (", "a1", "extra"),
    # LOGIN, AUTHENTICATE, strings and literals
    (b"a LOGIN", "a", "Missing"),
    (b"a LOGIN bob", "a", "Missing"),
    (b"a LOGIN bob pw extra", "a", "extra"),
    (b'a LOGIN "bob pw', "a", "Unterminated"),
    (b'a LOGIN "b\\ob" pw', "a", "escape"),
    (b'a LOGIN "b\x00b" pw', "a", "quoted"),
    (b"a LOGIN bob {5}\r\npw", "a", "shorter"),
    (b"a LOGIN {3} bob pw", "a", "literal"),
    (b"a LOGIN {3}\rbob pw", "a", "literal"),
    (b"a LOGIN {x}\r\nbob pw", "a", "literal"),
    (b"a LOGIN {99999999999}\r\nx y", "a", "literal"),
    (b"a LOGIN b\xc3\xa9b pw", "a", "Invalid character"),
    (b"a LOGIN \xc3\xa9 pw", "a", "atom"),
    (b"a LOGIN {2}\r\n\xff\xfe pw", "a", "UTF-8"),
    (b"a LOGIN bob(x pw", "a", "space"),
    (b"a AUTHENTICATE", "a", "Missing"),
    (b"a AUTHENTICATE PLAIN !!!!", "a", "base64"),
    (b"a AUTHENTICATE PLAIN AGJvYgBwdw=", "a", "base64"),
    (b"a AUTHENTICATE PLAIN AGJv YgBw", "a", "extra"),
    # mailboxes
    (b"a SELECT", "a", "Missing"),
    (b"a SELECT INBOX (FOO)", "a", "Unknown SELECT parameter"),
    (b"a SELECT INBOX (CONDSTORE", "a", "Unbalanced"),
    (b"a SELECT INBOX (QRESYNC (0 5))", "a", "non-zero"),
    (b"a SELECT INBOX (QRESYNC (1 5 1:*))", "a", "*"),
    (b"a SELECT INBOX (QRESYNC (1 5 1:3 (1 *)))", "a", "*"),
    (b"a SELECT INBOX (QRESYNC (1))", "a", "Unexpected )"),
    (b"a SELECT INBOX (QRESYNC (1 ", "a", "Missing"),
    (b"a SELECT a*b", "a", "space"),
    (b"a CREATE X (USE (Sent))", "a", "special-use"),
    (b"a CREATE X (FOO (x))", "a", "CREATE parameter"),
    (b"a CREATE X (USE (\\Sent)", "a", "Unbalanced"),
    (b"a RENAME a", "a", "Missing"),
    (b"a DELETE", "a", "Missing"),
    (b"a DELETE a b", "a", "extra"),
    (b"a SUBSCRIBE %", "a", "atom"),
    (b"a GETQUOTA", "a", "Missing"),
    # LIST / LSUB / STATUS
    (b"a LIST *", "a", "atom"),
    (b'a LIST ""', "a", "Missing"),
    (b'a LIST (RECURSIVEMATCH) "" *', "a", "RECURSIVEMATCH"),
    (b'a LIST (FOO) "" *', "a", "selection option"),
    (b'a LIST "" * RETURN (FOO)', "a", "return option"),
    (b'a LIST "" * RETURN (STATUS (FOO))', "a", "STATUS item"),
    (b'a LIST "" * FOO (x)', "a", "extra"),
    (b'a LIST "" ()', "a", "Empty"),
    (b'a LIST "" ("a" "b"', "a", "Unbalanced"),
    (b'a LSUB "" * RETURN (CHILDREN)', "a", "extra"),
    (b"a STATUS INBOX ()", "a", "Empty"),
    (b"a STATUS INBOX (FOO)", "a", "Unknown STATUS item"),
    (b"a STATUS INBOX MESSAGES", "a", "Expected ("),
    (b"a STATUS INBOX", "a", "Missing"),
    # APPEND, flags and date-time
    (b"a APPEND INBOX", "a", "Missing"),
    (b'a APPEND INBOX "x" {1}\r\nx', "a", "date-time"),
    (b"a APPEND INBOX (\\Recent) {1}\r\nx", "a", "Recent"),
    (b"a APPEND INBOX (\\Foo) {1}\r\nx", "a", "system flag"),
    (b'a APPEND INBOX "31-Feb-2020 00:00:00 +0000" {1}\r\nx', "a", "date-time"),
    (b'a APPEND INBOX "1-Jan-2020 25:00:00 +0000" {1}\r\nx', "a", "date-time"),
    (b'a APPEND INBOX "1-Jan-2020 10:00:00 +2500" {1}\r\nx', "a", "date-time"),
    (b'a APPEND INBOX "1-Jan-2020 10:00:00 +0075" {1}\r\nx', "a", "date-time"),
    (b'a APPEND INBOX "1-Jan-2020 10:00:00" {1}\r\nx', "a", "date-time"),
    (b'a APPEND INBOX "1-Foo-2020 10:00:00 +0000" {1}\r\nx', "a", "date-time"),
    (b"a APPEND INBOX {1}\r\nx extra", "a", "extra"),
    (b"a APPEND INBOX hello", "a", "literal"),
    (b'a APPEND INBOX "hello"', "a", "date-time"),
    (b"a APPEND INBOX {3}\r\nab", "a", "shorter"),
    (b"a APPEND INBOX ~3}\r\nabc", "a", "literal"),
    (b"a APPEND INBOX (\\Seen {1}\r\nx", "a", "atom"),
    # sequence sets
    (b"a FETCH 0 FLAGS", "a", "sequence set"),
    (b"a FETCH 1: FLAGS", "a", "sequence set"),
    (b"a FETCH :3 FLAGS", "a", "sequence set"),
    (b"a FETCH a:b FLAGS", "a", "sequence set"),
    (b"a FETCH 1,,2 FLAGS", "a", "sequence set"),
    (b"a FETCH 1, FLAGS", "a", "sequence set"),
    (b"a FETCH 1:2:3 FLAGS", "a", "sequence set"),
    (b"a FETCH 01 FLAGS", "a", "sequence set"),
    (b"a FETCH 4294967296 FLAGS", "a", "sequence set"),
    (b"a FETCH ** FLAGS", "a", "sequence set"),
    (b'a FETCH "1" FLAGS', "a", "sequence set"),
    (b"a COPY 0 INBOX", "a", "sequence set"),
    (b"a UID EXPUNGE", "a", "Missing"),
    (b"a EXPUNGE 1", "a", "extra"),
    # FETCH items
    (b"a FETCH 1", "a", "Missing"),
    (b"a FETCH 1 ()", "a", "Empty"),
    (b"a FETCH 1 (FLAGS", "a", "Unbalanced"),
    (b"a FETCH 1 FLAGS)", "a", "Unexpected )"),
    (b"a FETCH 1 (FLAGS))", "a", "Unexpected )"),
    (b"a FETCH 1 (ALL)", "a", "Unknown FETCH item"),
    (b"a FETCH 1 ((FLAGS))", "a", "Invalid FETCH item"),
    (b"a FETCH 1 FOO", "a", "Unknown FETCH item"),
    (b"a FETCH 1 BODY.PEEK", "a", "Unknown FETCH item"),
    (b"a FETCH 1 BODY[MIME]", "a", "body section"),
    (b"a FETCH 1 BODY[1.0]", "a", "part number"),
    (b"a FETCH 1 BODY[1.]", "a", "body section"),
    (b"a FETCH 1 BODY[FOO]", "a", "body section"),
    (b"a FETCH 1 BODY[TEXT.1]", "a", "body section"),
    (b"a FETCH 1 BODY[HEADER.FIELDS]", "a", "Expected a space"),
    (b"a FETCH 1 BODY[HEADER.FIELDS ()]", "a", "Empty"),
    (b"a FETCH 1 BODY[HEADER.FIELDS (a:b)]", "a", "header field"),
    (b"a FETCH 1 BODY[HEADER (DATE)]", "a", "Expected ]"),
    (b"a FETCH 1 BODY[", "a", "Missing"),
    (b"a FETCH 1 BODY[]<0.0>", "a", "non-zero"),
    (b"a FETCH 1 BODY[]<5>", "a", "Expected ."),
    (b"a FETCH 1 BODY[]<5.1", "a", "Missing"),
    (b"a FETCH 1 FLAGS (VANISHED)", "a", "VANISHED"),
    (b"a FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)", "a", "VANISHED"),
    (b"a UID FETCH 1 (FLAGS) (VANISHED)", "a", "VANISHED"),
    (b"a FETCH 1 (FLAGS) (FOO)", "a", "FETCH modifier"),
    (b"a FETCH 1 (FLAGS) (CHANGEDSINCE x)", "a", "number"),
    (b"a FETCH 1 (FLAGS) (CHANGEDSINCE 9223372036854775808)", "a", "range"),
    # STORE
    (b"a STORE 1 FLAGS", "a", "Missing"),
    (b"a STORE 1 +FLAGS (\\Recent)", "a", "Recent"),
    (b"a STORE 1 XFLAGS (\\Seen)", "a", "FLAGS"),
    (b"a STORE 1 FLAGS.LOUD (\\Seen)", "a", "FLAGS"),
    (b"a STORE 1 FLAGS (\\*)", "a", "flag"),
    (b"a STORE 1 FLAGS (\\Unknown)", "a", "system flag"),
    (b"a STORE 1 (FOO 1) FLAGS ()", "a", "STORE modifier"),
    (b"a STORE 1 FLAGS (a b", "a", "Unbalanced"),
    (b"a STORE 1 FLAGS (k\xe9)", "a", "character"),
    (b"a STORE 1 FLAGS (\\)", "a", "atom"),
    # SEARCH
    (b"a SEARCH", "a", "Missing"),
    (b"a SEARCH FOO", "a", "Unknown search key"),
    (b"a SEARCH ()", "a", "Empty search list"),
    (b"a SEARCH (SEEN", "a", "Unbalanced"),
    (b"a SEARCH SEEN)", "a", "Unexpected )"),
    (b"a SEARCH OR SEEN", "a", "Missing"),
    (b"a SEARCH NOT", "a", "Missing"),
    (b"a SEARCH NOT ", "a", "Missing"),
    (b"a SEARCH FROM", "a", "Missing"),
    (b"a SEARCH SINCE 30-Feb-2020", "a", "date"),
    (b"a SEARCH SINCE 1-Foo-2020", "a", "date"),
    (b"a SEARCH SINCE 2020-01-01", "a", "date"),
    (b"a SEARCH SINCE 1-Jan-20", "a", "date"),
    (b"a SEARCH LARGER x", "a", "number"),
    (b"a SEARCH UID 0", "a", "sequence set"),
    (b"a SEARCH RETURN (FOO) ALL", "a", "RETURN option"),
    (b"a SEARCH RETURN (MIN)", "a", "Missing"),
    (b"a SEARCH CHARSET", "a", "Missing"),
    (b"a SEARCH CHARSET UTF-8", "a", "Missing"),
    (b"a SEARCH KEYWORD \\Seen", "a", "atom"),
    (b'a SEARCH MODSEQ "/flags/x" bogus 5', "a", "MODSEQ"),
    (b"a SEARCH " + b"(" * (MAX_DEPTH + 1) + b"ALL" + b")" * (MAX_DEPTH + 1), "a", "deeply"),
    (b"a SEARCH " + b"NOT OR ALL " * (MAX_DEPTH + 1) + b"ALL", "a", "deeply"),
    # ID, ENABLE, COMPRESS
    (b"a ID", "a", "Missing"),
    (b"a ID foo", "a", "NIL"),
    (b'a ID ("name")', "a", "Unexpected )"),
    (b'a ID ("a" "b"', "a", "Unbalanced"),
    (b"a ID NIL x", "a", "extra"),
    (b"a ENABLE", "a", "Missing"),
    (b"a ENABLE (X)", "a", "atom"),
    (b"a COMPRESS", "a", "Missing"),
    (b"a COMPRESS DEFLATE x", "a", "extra"),
]


@pytest.mark.parametrize(
    ("raw", "tag", "message"), ERRORS, ids=[repr(raw)[:60] for raw, _, _ in ERRORS]
)
def test_parse_error(raw: bytes, tag: str | None, message: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse(raw)
    assert caught.value.tag == tag
    assert message.lower() in caught.value.message.lower()
    assert str(caught.value) == caught.value.message


@pytest.mark.parametrize(
    "name",
    [b"&Jjo", b"&AGE", b"&AEE-", b"&2D3-", b"&AMl-", b'"caf\xc3\xa9"', b'"a\tb"', b"a&b"],
)
def test_a_name_that_is_not_modified_utf7_parses_and_names_nothing(name: bytes) -> None:
    """Well-formed commands: the handler answers NO (as Dovecot), LIST and LSUB match nothing."""
    for command in (b"a SELECT ", b"a DELETE ", b"a STATUS "):
        args = parse(command + name + (b" (MESSAGES)" if b"STATUS" in command else b"")).args
        assert isinstance(args.mailbox, UndecodableName)  # type: ignore[union-attr]
    assert isinstance(parse(b"a RENAME x " + name).args.new, UndecodableName)  # type: ignore[union-attr]
    assert parse(b'a LIST "" ' + name).args == ListArgs("", ())
    assert parse(b'a LIST "" (' + name + b" %)").args == ListArgs("", ("%",), extended=True)
    assert parse(b"a LIST " + name + b" *").args == ListArgs("", ())
    assert parse(b'a LSUB "" ' + name).args == ListArgs("", ())


# -- search trees -------------------------------------------------------------------------------


def test_search_nesting_at_the_limit() -> None:
    raw = b"a SEARCH " + b"(" * MAX_DEPTH + b"ALL" + b")" * MAX_DEPTH
    assert parse(raw).args == SearchArgs(Key("ALL"))


def test_search_long_or_chain_is_flat() -> None:
    raw = b"a SEARCH " + b"OR " * 500 + b" ".join(b"%d" % n for n in range(1, 502))
    criteria = parse(raw).args.criteria  # type: ignore[union-attr]
    assert isinstance(criteria, Or)
    assert len(criteria.items) == 501


def test_search_right_nested_or_chain_is_flat() -> None:
    raw = b"a SEARCH " + b"OR SEEN " * 500 + b"DRAFT"
    criteria = parse(raw).args.criteria  # type: ignore[union-attr]
    assert isinstance(criteria, Or)
    assert len(criteria.items) == 501


def test_search_many_nots_cancel() -> None:
    raw = b"a SEARCH " + b"NOT " * 1001 + b"SEEN"
    assert parse(raw).args == SearchArgs(Not(flag("\\Seen")))


# -- sequence sets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ranges", "resolved"),
    [
        ("1", ((1, 1),), ((1, 1),)),
        ("*", ((None, None),), ((10, 10),)),
        ("1:*", ((1, None),), ((1, 10),)),
        ("5:3", ((5, 3),), ((3, 5),)),
        ("*:4", ((None, 4),), ((4, 10),)),
        ("3,5:7", ((3, 3), (5, 7)), ((3, 3), (5, 7))),
        ("7,1:3,2,4", ((7, 7), (1, 3), (2, 2), (4, 4)), ((1, 4), (7, 7))),
        ("15:*", ((15, None),), ((10, 15),)),
        ("4294967295", ((4294967295, 4294967295),), ((4294967295, 4294967295),)),
    ],
)
def test_seqset_parse_and_resolve(text: str, ranges: tuple, resolved: tuple) -> None:
    seqset = SeqSet.parse(text)
    assert seqset.ranges == ranges
    assert seqset.resolve(10) == resolved
    assert str(seqset) == text


def test_seqset_contains_and_iter() -> None:
    seqset = SeqSet.parse("2,5:3,9:*")
    assert [n for n in range(1, 13) if seqset.contains(n, 10)] == [2, 3, 4, 5, 9, 10]
    assert list(seqset.iter_values(10)) == [2, 3, 4, 5, 9, 10]
    assert list(seqset.iter_values(4)) == [2, 3, 4]
    assert list(SeqSet.parse("1:4294967295").iter_values(3)) == [1, 2, 3]
    assert list(SeqSet.parse("1:*").iter_values(0)) == []
    assert SeqSet.parse("559:*").contains(500, 500)


def test_seqset_out_of_range_and_star() -> None:
    assert SeqSet.parse("1:11").out_of_range(10)
    assert not SeqSet.parse("1:*,10").out_of_range(10)
    assert SeqSet.parse("1,*").has_star
    assert not SeqSet.parse("1:3").has_star


def test_seqset_from_values() -> None:
    assert str(SeqSet.from_values([5, 1, 2, 3, 9, 10, 2])) == "1:3,5,9:10"
    assert str(SeqSet.from_values([7])) == "7"
    assert str(SeqSet.from_values(range(1, 100001))) == "1:100000"
    for bad in ([], [0, 1], [-3]):
        with pytest.raises(ValueError):
            SeqSet.from_values(bad)


@pytest.mark.parametrize(
    "text", ["", "0", "1:", ":", "a", "1:0", "-1", "1.5", "00", "1 2", "\u00e9", "4294967296"]
)
def test_seqset_invalid(text: str) -> None:
    with pytest.raises(ParseError):
        SeqSet.parse(text)


# -- body section labels ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "label"),
    [
        (b"BODY[]", "BODY[]"),
        (b"BODY.PEEK[]<0.100>", "BODY[]<0>"),
        (b"body[1.2]<5.10>", "BODY[1.2]<5>"),
        # RFC 3501 7.4.2: the field list comes back as sent (case, repeats, strings quoted).
        (b"BODY[header.fields (From Subject)]", "BODY[HEADER.FIELDS (From Subject)]"),
        (b"BODY[HEADER.FIELDS (FROM FROM)]", "BODY[HEADER.FIELDS (FROM FROM)]"),
        (b"BODY[HEADER.FIELDS (from From)]", "BODY[HEADER.FIELDS (from From)]"),
        (
            b'BODY[HEADER.FIELDS (to "Cc" {4}\r\nX-Y1)]',
            'BODY[HEADER.FIELDS (to "Cc" "X-Y1")]',
        ),
        (b"BODY.PEEK[2.HEADER.FIELDS.NOT (X-A)]", "BODY[2.HEADER.FIELDS.NOT (X-A)]"),
        (b"BODY[3.mime]", "BODY[3.MIME]"),
        (b"BODY[TEXT]", "BODY[TEXT]"),
        (b'BODY[HEADER.FIELDS ("X%Y")]', 'BODY[HEADER.FIELDS ("X%Y")]'),
    ],
)
def test_body_section_label(item: bytes, label: str) -> None:
    args = parse(b"a FETCH 1 " + item).args
    assert isinstance(args, FetchArgs)
    (section,) = args.items
    assert isinstance(section, BodySection)
    assert section.label == label


@pytest.mark.parametrize(
    ("items", "marks_seen"),
    [
        (b"(FLAGS BODY.PEEK[])", False),
        (b"(BODY[TEXT])", True),
        (b"RFC822", True),
        (b"RFC822.TEXT", True),
        (b"(RFC822.HEADER RFC822.SIZE)", False),
        (b"FULL", False),
    ],
)
def test_fetch_marks_seen(items: bytes, marks_seen: bool) -> None:
    args = parse(b"a FETCH 1 " + items).args
    assert isinstance(args, FetchArgs)
    assert args.marks_seen is marks_seen


# -- modified UTF-7 and mailbox encoding ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("Tom & Jerry", b"Tom &- Jerry"),
        ("~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("\u00c9t\u00e9", b"&AMk-t&AOk-"),
        ("\U0001f600", b"&2D3eAA-"),
        ("a\tb", b"a&AAk-b"),
        ("", b""),
    ],
)
def test_mutf7_round_trip(text: str, wire: bytes) -> None:
    assert encode_mutf7(text) == wire
    assert decode_mutf7(wire) == text


@pytest.mark.parametrize(
    "wire", [b"&", b"&-x&", b"&AGE", b"&AEE-", b"&2D0-", b"&AM/-", b"&AMl-", b"\xc3\xa9", b"\x01"]
)
def test_mutf7_invalid(wire: bytes) -> None:
    with pytest.raises(ValueError, match="UTF-7"):
        decode_mutf7(wire)


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("Sent Items", b'"Sent Items"'),
        ("", b'""'),
        ('a"b\\c', b'"a\\"b\\\\c"'),
        ("50%", b'"50%"'),
        ("x]", b'"x]"'),
        ("\u00c9t\u00e9", b"&AMk-t&AOk-"),
    ],
)
def test_encode_mailbox(name: str, wire: bytes) -> None:
    assert encode_mailbox(name) == wire
    assert parse(b"a SELECT " + wire).args == SelectArgs(name or "")


# -- literals, SASL, dates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"a1 APPEND INBOX {5}", (5, False)),
        (b"a2 LOGIN {3+}", (3, True)),
        (b"a LOGIN {0}", (0, False)),
        (b"a SEARCH TEXT {99999999999999}", (99999999999999, False)),
        (b"a SEARCH TEXT {" + b"9" * 40 + b"}", (10**18, False)),
        (b"a NOOP", None),
        (b"a LOGIN {}", None),
        (b"a LOGIN {+}", None),
        (b"a LOGIN {3a}", None),
        (b"a LOGIN {-3}", None),
        (b"a LOGIN 3}", None),
        (b"a LOGIN {3} ", None),
        (b"", None),
        # Only where a token starts: after SP or "(" (or "~", literal8), never in a quoted string.
        (b"a SELECT foo{5}", None),
        (b"a SELECT {5}", (5, False)),
        (b"a FETCH 1 BODY[HEADER.FIELDS ({4}", (4, False)),
        (b"a APPEND INBOX ~{7}", (7, False)),
        (b"a APPEND INBOX x~{7}", None),
        (b'a SELECT "foo {5}', None),
        (b'a SELECT "foo\\\\" {5}', (5, False)),
        (b'a SELECT "fo\\"o {5}', None),
        (b'a LOGIN "user" {5}', (5, False)),
        (b"{5}", None),
    ],
)
def test_literal_at_end(line: bytes, expected: tuple[int, bool] | None) -> None:
    assert literal_at_end(line) == expected


@pytest.mark.parametrize(
    ("head", "tag"),
    [
        (b"a1 NOOP xxxx", "a1"),
        (b"l4 FETCH 1,1,1", "l4"),
        (b"x]y LOGIN", "x]y"),
        (b"aaaaaaaa", None),  # the start of an over-long tag: no space, no tag
        (b"+ NOOP", None),
        (b"\xff NOOP", None),
        (b" NOOP", None),
        (b"", None),
    ],
)
def test_tag_of(head: bytes, tag: str | None) -> None:
    """The tag of a line that is too long to be read whole, for its tagged BAD."""
    assert tag_of(head) == tag


def test_parse_sasl_response() -> None:
    assert parse_sasl_response(b"AGJvYgBwdw==") == b"\0bob\0pw"
    assert parse_sasl_response(b"") == b""
    assert parse_sasl_response(b"*") is None
    for bad in (b"AGJvYgBwdw=", b"!!!!", b"AG Jv"):
        with pytest.raises(ParseError) as caught:
            parse_sasl_response(bad)
        assert caught.value.tag is None


def test_dates() -> None:
    assert parse_date(b"1-Feb-1994") == datetime.date(1994, 2, 1)
    assert parse_date(b"29-feb-2024") == datetime.date(2024, 2, 29)
    assert parse_date_time(b"17-Jul-1996 02:44:25 -0700") == datetime.datetime(
        1996, 7, 17, 2, 44, 25, tzinfo=tz(-7)
    )
    for bad in (b"29-Feb-2023", b"1-Feb-94", b"001-Feb-1994", b"1 Feb 1994"):
        with pytest.raises(ParseError):
            parse_date(bad)


def test_results_are_frozen_and_hashable() -> None:
    command = parse(b"a UID FETCH 1:* (FLAGS BODY.PEEK[HEADER])")
    assert hash(command) == hash(parse(b"a UID FETCH 1:* (FLAGS BODY.PEEK[HEADER])"))
    with pytest.raises(AttributeError):
        command.tag = "b"  # type: ignore[misc]


# -- fuzzing: only Command or ParseError, ever --------------------------------------------------

_ALPHABET = b' ()[]{}<>"\\*%+-.:,0123456789\r\nAaBFLHXYZ\x00\x7f\xff'


def _check_total(raw: bytes) -> None:
    try:
        result = parse(raw)
    except ParseError as error:
        assert error.tag is None or isinstance(error.tag, str)
        assert error.message
    else:
        assert isinstance(result, Command)


def _mutate(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(4)
        pos = rng.randint(0, len(data))
        if choice == 0 and data:
            del data[min(pos, len(data) - 1)]
        elif choice == 1:
            data[pos:pos] = bytes([rng.choice(_ALPHABET)])
        elif choice == 2 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        else:
            data = data[:pos]
    return bytes(data)


def test_fuzz_random_bytes() -> None:
    rng = random.Random(3501)
    for _ in range(3000):
        size = rng.randint(0, 48)
        _check_total(bytes(rng.randrange(256) for _ in range(size)))
        _check_total(b"a " + bytes(rng.choice(_ALPHABET) for _ in range(size)))


def test_fuzz_mutated_commands() -> None:
    rng = random.Random(7888)
    seeds = [raw for raw, _ in VALID] + [raw for raw, _, _ in ERRORS]
    for _ in range(20000):
        _check_total(_mutate(rng, rng.choice(seeds)))
