"""Hypothesis strategies for IMAP commands, from the grammar's own pieces: every command name,
atoms, quoted strings with escapes, literals that tell the truth or lie, lists, sequence sets,
fetch items, search keys, and per-command templates whose every place is mostly valid and
sometimes anything (the IMAP fuzz tests: the parser and the session)."""

from __future__ import annotations

import re

from hypothesis import strategies as st

from imapd.commands import COMMANDS

TAG = re.compile(rb"[!#$&',-\[\]^-z|}~]+")
NAMES = sorted(COMMANDS) + ["UID FETCH", "UID STORE", "UID SEARCH", "UID COPY", "UID EXPUNGE"]
ATOMS = [
    "1",
    "1:*",
    "*",
    "2,4:7",
    "4294967295",
    "4294967296",
    "0",
    "NIL",
    "INBOX",
    "\\Seen",
    "\\Deleted",
    "$Forwarded",
    "FLAGS",
    "+FLAGS.SILENT",
    "BODY[]",
    "BODY.PEEK[HEADER]",
    "BODY[1.2.MIME]<0.100>",
    "BINARY[1]",
    "ENVELOPE",
    "BODYSTRUCTURE",
    "RFC822.SIZE",
    "UID",
    "MODSEQ",
    "ALL",
    "FAST",
    "FULL",
    "CHARSET",
    "UTF-8",
    "SINCE",
    "1-Feb-1994",
    "99-Foo-2020",
    "OR",
    "NOT",
    "HEADER",
    "LARGER",
    "UNCHANGEDSINCE",
    "CHANGEDSINCE",
    "VANISHED",
    "RETURN",
    "MIN",
    "MAX",
    "COUNT",
    "SAVE",
    "$",
    "CONDSTORE",
    "QRESYNC",
    "PLAIN",
    "LOGIN",
    "DEFLATE",
    "MESSAGES",
    "UIDNEXT",
    "UNSEEN",
    "SPECIAL-USE",
    "SUBSCRIBED",
    "%",
    "&AKM-",
    "&-",
    "&Jjo",
    "(",
    ")",
    "[",
    "]",
    "<",
    ">",
    "{",
    "}",
    "\\",
    '"',
    "~",
    "\x00",
    "\x7f",
    "\xff",
]
QUOTED = st.text(max_size=12).map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"')


def literal(data: bytes, claimed: int, plus: bool) -> bytes:
    """`{n}` or `{n+}` CRLF and the octets, whose count may differ from the claim."""
    return b"{%d%s}\r\n" % (claimed, b"+" if plus else b"") + data


LITERALS = st.builds(
    literal,
    st.binary(max_size=12),
    st.integers(min_value=0, max_value=20),
    st.booleans(),
) | st.binary(max_size=12).map(lambda d: literal(d, len(d), False))
TOKENS = st.one_of(
    st.sampled_from(ATOMS).map(str.encode),
    QUOTED.map(lambda q: q.encode("utf-8", "surrogateescape")),
    LITERALS,
    st.text(max_size=8).map(lambda t: t.encode("utf-8", "surrogateescape")),
    st.binary(max_size=8),
)


@st.composite
def args(draw: st.DrawFn) -> bytes:
    """Tokens with spaces, and now and then a parenthesised or bracketed group of them."""
    out = []
    for _ in range(draw(st.integers(0, 8))):
        piece = draw(TOKENS)
        wrap = draw(st.sampled_from([None, None, None, b"()", b"[]"]))
        out.append(wrap[:1] + piece + wrap[1:] if wrap else piece)
    joiner = draw(st.sampled_from([b" ", b" ", b"", b"  "]))
    return joiner.join(out)


def slot(*valid: str) -> st.SearchStrategy[bytes]:
    """Mostly a valid value for this place in the grammar, sometimes anything."""
    good = st.sampled_from(valid).map(lambda v: v.encode("utf-8", "surrogateescape"))
    return st.one_of(*[good] * 8, TOKENS)


MAILBOX = st.one_of(
    slot("INBOX", "Sent", '"a b"', "&AKM-", "a.b", '"../x"', '"/etc"', '".."', '"a\\\\b"'),
    st.text("abc.&-/", min_size=1, max_size=10).map(lambda t: literal(t.encode(), len(t), True)),
)
SEQ = slot("1", "1:*", "*", "2,4:7", "$", "1:4294967295", "0", "5:3")
FLAGS = slot("(\\Seen)", "(\\Seen \\Deleted)", "()", "(\\Recent)", "($Junk foo)", "(\\Foo")
ITEMS = slot(
    "FLAGS",
    "(UID FLAGS)",
    "ALL",
    "BODY.PEEK[HEADER.FIELDS (FROM TO)]",
    "BODY[1.2]<0.5>",
    "(BODYSTRUCTURE ENVELOPE RFC822.SIZE)",
    "BINARY.PEEK[1]",
    "(FLAGS) (CHANGEDSINCE 1)",
    "BODY[HEADER.FIELDS ()]",
    "BODY[0]",
    "BODY[1.TEXT]<5.0>",
)
KEYS = slot(
    "ALL",
    "UNSEEN",
    "OR SEEN FLAGGED",
    'NOT (FROM "x")',
    "SINCE 1-Jan-2020",
    "LARGER 10",
    "HEADER Subject hi",
    "UID 1:*",
    "RETURN (MIN MAX COUNT) ALL",
    "CHARSET UTF-8 TEXT x",
    "MODSEQ 5",
    "KEYWORD $x",
    "(",
)
TEMPLATES: dict[str, list[st.SearchStrategy[bytes]]] = {
    "LOGIN": [slot("alice", '"pw x"'), slot("pw", '"p\\"w"')],
    "AUTHENTICATE": [slot("PLAIN", "LOGIN", "XOAUTH2"), slot("AGFsaWNlAHB3", "=", "!!", "")],
    "SELECT": [MAILBOX, slot("", "(CONDSTORE)", "(QRESYNC (1 2 1:5))")],
    "EXAMINE": [MAILBOX],
    "CREATE": [MAILBOX, slot("", "(USE (\\Sent))", "(USE (\\Bogus))")],
    "DELETE": [MAILBOX],
    "RENAME": [MAILBOX, MAILBOX],
    "SUBSCRIBE": [MAILBOX],
    "UNSUBSCRIBE": [MAILBOX],
    "LIST": [slot('""', "INBOX"), slot("*", "%", '"a*%b"', '(SUBSCRIBED) "" *')],
    "LSUB": [slot('""'), slot("*", "%")],
    "STATUS": [MAILBOX, slot("(MESSAGES UNSEEN)", "(UIDNEXT HIGHESTMODSEQ)", "()", "(FOO)")],
    "APPEND": [MAILBOX, FLAGS, slot('"01-Jan-2020 00:00:00 +0000"', ""), LITERALS],
    "FETCH": [SEQ, ITEMS],
    "STORE": [SEQ, slot("FLAGS", "+FLAGS.SILENT", "-FLAGS", "(UNCHANGEDSINCE 3) FLAGS"), FLAGS],
    "COPY": [SEQ, MAILBOX],
    "MOVE": [SEQ, MAILBOX],
    "SEARCH": [KEYS, KEYS],
    "EXPUNGE": [slot("", "1:*")],
    "ID": [slot("NIL", '("name" "x")', '("a" NIL "b")', "(")],
    "ENABLE": [slot("CONDSTORE", "QRESYNC UTF8=ACCEPT", "")],
    "GETQUOTA": [slot('""', "x")],
    "GETQUOTAROOT": [MAILBOX],
    "SETQUOTA": [slot('""'), slot("(STORAGE 10)", "()", "(STORAGE)")],
    "COMPRESS": [slot("DEFLATE", "GZIP")],
}


@st.composite
def plausible(draw: st.DrawFn) -> bytes:
    """A command of the table with its arguments from TEMPLATES (UID in front where allowed)."""
    name = draw(st.sampled_from(sorted(COMMANDS)))
    parts = [draw(piece) for piece in TEMPLATES.get(name, [])]
    prefix = (
        b"UID "
        if draw(st.booleans()) and name in ("FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE")
        else b""
    )
    words = [w for w in parts if w]
    return b"t1 " + prefix + name.encode() + b"".join(b" " + w for w in words)


COMMAND_BYTES = st.one_of(
    plausible(),
    plausible(),
    st.builds(
        lambda tag, name, rest: tag + b" " + name.encode() + (b" " + rest if rest else b""),
        st.sampled_from([b"a", b"A1", b"*", b"+", b"tag}", b"t{1}", b"\xff", b""]),
        st.sampled_from(NAMES) | st.text(max_size=6),
        args(),
    ),
    st.binary(max_size=200),
)
