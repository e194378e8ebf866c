"""imapd over raw sockets: exact transcripts with bare-LF lines as netcat sends them, synchronizing
and LITERAL+ literals, pipelined batches, and every kind of bad input (each gets BAD or NO with a
clear text, the session goes on, no traceback, no changed mailbox)."""

from __future__ import annotations

import base64
import datetime
import imaplib
import re
import time

import pytest

from support.daemons import sessions_running, wait_for
from support.imap import Raw, crlf, folders, message_files, shared_imapd, tree
from support.site import deliver

MESSAGE = b"From: a@example.org\nSubject: raw\n\nhello raw\n"
MAX_LITERAL = 65536


shared = shared_imapd("imap-raw", f"max_literal = {MAX_LITERAL}\n", prefix="user", password="pw")


@pytest.fixture
def server(shared):
    """The module's server, as a user of this test alone (`userNNN`, password `pw`) whose INBOX
    holds two messages (one new, one seen) and Sent a third."""
    account = shared.account()
    client = account.raw_login()  # creates the default folders
    client.ok("LOGOUT")
    maildir = account.maildir()
    deliver(maildir, MESSAGE, name="1700000001.M1P1.host")
    deliver(maildir, MESSAGE, subdir="cur", name="1700000002.M2P2.host:2,S")
    deliver(maildir / ".Sent", MESSAGE)
    return account


# -- transcripts ------------------------------------------------------------------------------


def test_bare_lf_transcript(server):
    client = server.raw()
    client.send(b"a1 CAPABILITY\n")
    capability = client.line()
    assert capability.startswith(b"* CAPABILITY IMAP4rev1 ") and capability.endswith(b"\r\n")
    assert client.line() == b"a1 OK Capability completed\r\n"
    client.send(b"a2 NOOP\n")
    assert client.line() == b"a2 OK NOOP completed\r\n"
    client.send(b"a3 LOGIN %s pw\n" % server.user.encode())
    assert re.fullmatch(rb"a3 OK \[CAPABILITY IMAP4rev1 [^\]]*\] Logged in\r\n", client.line())
    client.send(b"a4 SELECT INBOX\n")
    lines, done = client.until_tagged("a4")
    assert done == b"a4 OK [READ-WRITE] SELECT completed\r\n"
    text = b"".join(lines)
    # Both are new to IMAP (one in new/, one put in cur/ by another program): \\Recent here.
    assert b"* 2 EXISTS\r\n" in text and b"* 2 RECENT\r\n" in text
    assert b"* OK [UNSEEN 1] " in text
    assert re.search(rb"\* OK \[UIDVALIDITY \d+\] ", text)
    assert b"* OK [UIDNEXT 3] " in text
    assert re.search(rb"\* OK \[PERMANENTFLAGS \([^)]*\\\*\)\] ", text)
    assert re.search(rb"\* FLAGS \(\\Answered \\Flagged \\Deleted \\Seen \\Draft[^)]*\)\r\n", text)
    client.send(b"a5 FETCH 1:* (UID FLAGS RFC822.SIZE)\n")
    size = len(crlf(MESSAGE))
    assert client.line() == b"* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE %d)\r\n" % size
    assert client.line() == b"* 2 FETCH (UID 2 FLAGS (\\Seen \\Recent) RFC822.SIZE %d)\r\n" % size
    assert client.line() == b"a5 OK FETCH completed\r\n"
    client.send(b"a6 FETCH 1 BODY[]\n")
    wire = crlf(MESSAGE)
    assert client.line() == (
        b"* 1 FETCH (BODY[] {%d}\r\n" % len(wire) + wire + b" FLAGS (\\Seen \\Recent))\r\n"
    )
    assert client.line() == b"a6 OK FETCH completed\r\n"
    client.send(b"a7 LOGOUT\n")
    assert client.line().startswith(b"* BYE ")
    assert client.line() == b"a7 OK Logout completed\r\n"
    assert client.closed()


def test_synchronizing_literals(server):
    client = server.raw()
    client.send(b"s1 LOGIN {7}\r\n")
    assert client.line().startswith(b"+ ")
    client.send(server.user.encode() + b" {2}\r\n")
    assert client.line().startswith(b"+ ")
    client.send(b"pw\r\n")
    assert client.line().startswith(b"s1 OK ")
    wire = crlf(MESSAGE)
    client.send(b's2 APPEND INBOX (\\Flagged) "05-Jun-2024 10:11:12 +0200" {%d}\n' % len(wire))
    assert client.line().startswith(b"+ ")
    client.send(wire + b"\n")
    assert re.fullmatch(rb"s2 OK \[APPENDUID \d+ 3\] APPEND completed\r\n", client.line())
    client.send(b"s3 SELECT {5}\r\n")
    assert client.line().startswith(b"+ ")
    client.send(b"INBOX\r\n")
    _lines, done = client.until_tagged("s3")
    assert done.startswith(b"s3 OK")
    lines = client.ok("FETCH 3 (FLAGS INTERNALDATE)")
    found = re.fullmatch(
        rb'\* 3 FETCH \(FLAGS \(\\Flagged \\Recent\) (INTERNALDATE "[^"]+")\)\r\n', lines[0]
    )
    assert found, lines
    when = datetime.datetime(2024, 6, 5, 8, 11, 12, tzinfo=datetime.UTC)
    assert time.mktime(imaplib.Internaldate2tuple(found.group(1))) == when.timestamp()
    client.ok("LOGOUT")
    assert len(message_files(server.path)) == 3


def test_literal_plus(server):
    client = server.raw()
    client.send(b"p1 LOGIN {7+}\r\n%s {2+}\r\npw\r\n" % server.user.encode())
    assert client.line().startswith(b"p1 OK ")
    wire = crlf(MESSAGE)
    client.send(b"p2 APPEND INBOX {%d+}\r\n" % len(wire) + wire + b"\r\n")
    assert client.line().startswith(b"p2 OK [APPENDUID ")
    client.send(b"p3 CREATE {7+}\nFolder1\n")  # LF after the literal's announcement too
    assert re.fullmatch(rb"p3 OK \[MAILBOXID \(F\w+\)\] CREATE completed\r\n", client.line())
    client.send(b"p4 APPEND Folder1 (\\Seen) {0+}\r\n\r\n")  # an empty message is refused
    assert client.line().startswith(b"p4 NO ")
    client.ok("LOGOUT")
    assert len(message_files(server.path)) == 3
    assert message_files(server.path / ".Folder1") == []


def test_pipelined_batch_answered_in_order(server):
    client = server.raw()
    wire = crlf(MESSAGE)
    batch = (
        b"b1 LOGIN %s pw\r\n" % server.user.encode() + b"b2 SELECT INBOX\n"
        b"b3 APPEND INBOX {%d+}\r\n" % len(wire) + wire + b"\r\n"
        b"b4 NOOP\r\n"
        b"b5 FETCH 1:* (UID)\r\n"
        b"b6 STORE 1 +FLAGS (\\Deleted)\r\n"
        b"b7 BOGUS\r\n"
        b"b8 SEARCH DELETED\r\n"
        b"b9 UID SEARCH UNDELETED\r\n"
        b"b10 EXPUNGE\r\n"
        b"b11 FETCH 1:* (UID)\r\n"
        b"b12 STATUS INBOX (MESSAGES)\r\n"
        b"b13 LOGOUT\r\n"
    )
    client.send(batch)
    tags = []
    everything = []
    while True:
        line = client.line()
        everything.append(line)
        if not line.startswith(b"* "):
            tags.append(line.split(b" ")[0].decode())
        if line.startswith(b"b13 "):
            break
    assert tags == [f"b{n}" for n in range(1, 14)]
    text = b"".join(everything)
    assert b"b7 BAD " in text
    assert b"* 3 EXISTS\r\n" in text
    assert b"* SEARCH 1\r\n" in text and b"* SEARCH 2 3\r\n" in text
    assert b"* 1 EXPUNGE\r\n" in text
    assert b"* 1 FETCH (UID 2)\r\n* 2 FETCH (UID 3)\r\nb11 OK" in text
    assert b"* STATUS INBOX (MESSAGES 2)\r\n" in text
    assert client.closed()
    assert len(message_files(server.path)) == 2


def test_authenticate_plain_continuations(server):
    client = server.raw()
    client.send(b"x1 AUTHENTICATE PLAIN\r\n")
    assert client.line() == b"+ \r\n"
    client.send(b"*\r\n")
    assert client.line().startswith(b"x1 BAD ")
    client.send(b"x2 AUTHENTICATE PLAIN\r\n")
    assert client.line() == b"+ \r\n"
    client.send(b"not base64!\r\n")
    assert client.line().startswith(b"x2 BAD ")
    client.send(b"x3 AUTHENTICATE PLAIN\r\n")
    client.line()
    client.send(b"A" * 100_000 + b"\r\n")
    assert client.line().startswith(b"x3 BAD ")
    client.send(b"x4 AUTHENTICATE KERBEROS_V4\r\n")
    assert client.line().startswith(b"x4 NO ")
    wrong = base64.b64encode(b"\0%s\0wrong" % server.user.encode())
    client.send(b"x5 AUTHENTICATE PLAIN %s\r\n" % wrong)
    assert client.line().startswith(b"x5 NO [AUTHENTICATIONFAILED] ")
    client.send(b"x6 AUTHENTICATE PLAIN\r\n")
    client.line()
    client.send(base64.b64encode(b"\0%s\0pw" % server.user.encode()) + b"\r\n")
    assert client.line().startswith(b"x6 OK ")
    client.ok("LOGOUT")
    server.assert_healthy()


# -- bad input --------------------------------------------------------------------------------

SELECTED_BAD = [
    # (command, status, words the text must contain)
    (b"FETCH 1 (FLAGS", b"BAD", b""),
    (b"FETCH 1 FLAGS)", b"BAD", b""),
    (b"FETCH 1 (FLAGS (UID))", b"BAD", b""),
    (b"SEARCH (SEEN", b"BAD", b""),
    (b"SEARCH SEEN)", b"BAD", b""),
    (b"SEARCH ((((", b"BAD", b""),
    (b"SEARCH " + b"(" * 200 + b"ALL" + b")" * 200, b"BAD", b""),
    (b"SEARCH " + b"NOT " * 5001 + b"ALL", b"OK", b""),  # deep but valid: NOT NOT x is x
    (b"SEARCH OR SEEN", b"BAD", b""),
    (b"FETCH 0 FLAGS", b"BAD", b"sequence"),
    (b"FETCH 1:x FLAGS", b"BAD", b"sequence"),
    (b"FETCH 3 FLAGS", b"BAD", b"sequence"),
    (b"FETCH 1:3 FLAGS", b"BAD", b"sequence"),
    (b"FETCH -1 FLAGS", b"BAD", b""),
    (b"FETCH 1,,2 FLAGS", b"BAD", b"sequence"),
    (b"FETCH 4294967296 FLAGS", b"BAD", b""),
    (b"FETCH 99999999999999999999 FLAGS", b"BAD", b""),
    (b"STORE 5 +FLAGS (\\Seen)", b"BAD", b"sequence"),
    (b"COPY 0 Sent", b"BAD", b""),
    (b"UID FETCH 0 FLAGS", b"BAD", b""),
    (b"UID FETCH 1:abc FLAGS", b"BAD", b""),
    (b"UID STORE * FLAGS", b"BAD", b""),
    (b"FETCH 1 BODY[1.0]", b"BAD", b""),
    (b"FETCH 1 BODY[HEADER.FIELDS]", b"BAD", b""),
    (b"FETCH 1 BODY[HEADER.FIELDS ()]", b"BAD", b""),
    (b"FETCH 1 BODY[TEXTY]", b"BAD", b""),
    (b"FETCH 1 BODY[]<5.0>", b"BAD", b""),
    (b"FETCH 1 BODY[]<5>", b"BAD", b""),
    (b"FETCH 1 (FLAGS BODY[TEXT]<-1.2>)", b"BAD", b""),
    (b"FETCH 1 NOTANITEM", b"BAD", b""),
    (b"FETCH 1 (ALL)", b"BAD", b""),
    (b"FETCH 1", b"BAD", b""),
    (b"SEARCH NOTAKEY", b"BAD", b""),
    (b"SEARCH BEFORE 32-Jan-2024", b"BAD", b"date"),
    (b"SEARCH SINCE yesterday", b"BAD", b"date"),
    (b"SEARCH LARGER abc", b"BAD", b""),
    (b"SEARCH UID x", b"BAD", b""),
    (b"SEARCH", b"BAD", b""),
    (b"STORE 1 FLAGS", b"BAD", b""),
    (b"STORE 1 +FLAGS.LOUD (\\Seen)", b"BAD", b""),
    (b"STORE 1 FLAGS (\\Recent)", b"BAD", b"Recent"),
    (b"STORE 1 FLAGS (bad]flag)", b"BAD", b""),
    (b"SELECT", b"BAD", b""),
    (b"LOGIN alice pw", b"BAD", b"not allowed"),
    (b"AUTHENTICATE PLAIN", b"BAD", b"not allowed"),
    (b"FOO", b"BAD", b"Unknown command"),
    (b"UID FOO 1", b"BAD", b"Unknown"),
    (b"UID", b"BAD", b""),
    (b"X-NONSENSE arg", b"BAD", b"Unknown command"),
    (b"FETCH 1 FL\xc3\xa4GS", b"BAD", b""),
    (b"NOOP\x00", b"BAD", b""),
    (b"NOOP extra", b"BAD", b""),
    (b"CHECK now", b"BAD", b""),
    (b"STATUS INBOX (MESSAGES", b"BAD", b""),
    (b"STATUS INBOX (FRUIT)", b"BAD", b""),
    (b"STATUS INBOX ()", b"BAD", b""),
    (b'LIST "" "unterminated', b"BAD", b""),
    (b'LIST ""', b"BAD", b""),
    (b"LOGOUT now", b"BAD", b""),
]

AUTH_BAD = [
    (b"CREATE ..", b"NO", b"mailbox name"),
    (b"CREATE a..b", b"NO", b"mailbox name"),
    (b"CREATE .hidden", b"NO", b"mailbox name"),
    (b"CREATE trailing..", b"NO", b"mailbox name"),
    (b'CREATE "a/b"', b"NO", b"mailbox name"),
    (b'CREATE "../escape"', b"NO", b"mailbox name"),
    (b'CREATE "a\\\\b"', b"NO", b"mailbox name"),
    (b'CREATE "tab\tname"', b"NO|BAD", b""),
    (b'CREATE "bell\x07"', b"NO|BAD", b""),
    (b"CREATE {3+}\r\na\x00b", b"NO|BAD", b""),
    (b"CREATE {3+}\r\na\nb", b"NO|BAD", b""),
    (b'CREATE "' + b"x" * 300 + b'"', b"NO", b"mailbox name"),
    (b"CREATE f\xe4o", b"BAD", b""),
    (b'CREATE "f\xe4o"', b"BAD|NO", b""),
    (b"CREATE INBOX", b"NO", b""),
    (b"CREATE inbox", b"NO", b""),
    (b'SELECT "../bob"', b"NO", b""),
    (b'SELECT ".."', b"NO", b""),
    (b'EXAMINE "/etc"', b"NO", b""),
    (b"SELECT Nonexistent", b"NO", b"does not exist"),
    (b'DELETE ".."', b"NO", b""),
    (b"DELETE INBOX", b"NO", b""),
    (b"DELETE Nonexistent", b"NO", b""),
    (b'RENAME Sent "a/b"', b"NO", b"mailbox name"),
    (b'RENAME Sent ".."', b"NO", b"mailbox name"),
    (b"RENAME Sent Sent", b"NO", b""),
    (b"RENAME Sent Sent.Child", b"NO", b""),
    (b"RENAME Sent Drafts", b"NO", b"exists"),
    (b"RENAME Nonexistent Other", b"NO", b""),
    (b'STATUS "a/../b" (MESSAGES)', b"NO", b""),
    (b'SUBSCRIBE "x/y"', b"NO", b""),
    (b'APPEND "../x" {3+}\r\nabc', b"NO", b""),
    (b"APPEND Nonexistent {3+}\r\nabc", b"NO", b"TRYCREATE"),
    (b'APPEND INBOX "31-Feb-2024 00:00:00 +0000" {3+}\r\nabc', b"BAD", b""),
    (b"APPEND INBOX (\\Seen {3+}\r\nabc", b"BAD", b""),
    (b"APPEND INBOX", b"BAD", b""),
    (b'APPEND INBOX "abc"', b"BAD", b""),
    (b"FETCH 1 FLAGS", b"BAD", b"not allowed"),
    (b"STORE 1 +FLAGS (\\Seen)", b"BAD", b"not allowed"),
    (b"EXPUNGE", b"BAD", b"not allowed"),
    (b"CLOSE", b"BAD", b"not allowed"),
    (b"CHECK", b"BAD", b"not allowed"),
    (b"SEARCH ALL", b"BAD", b"not allowed"),
    (b"COPY 1 Sent", b"BAD", b"not allowed"),
    (b"UID FETCH 1 FLAGS", b"BAD", b"not allowed"),
    (b"LOGIN alice pw", b"BAD", b"not allowed"),
]

UNAUTH_BAD = [
    (b"SELECT INBOX", b"BAD", b"not allowed"),
    (b"EXAMINE INBOX", b"BAD", b"not allowed"),
    (b'LIST "" *', b"BAD", b"not allowed"),
    (b'LSUB "" *', b"BAD", b"not allowed"),
    (b"STATUS INBOX (MESSAGES)", b"BAD", b"not allowed"),
    (b"CREATE Foo", b"BAD", b"not allowed"),
    (b"DELETE Sent", b"BAD", b"not allowed"),
    (b"RENAME Sent Foo", b"BAD", b"not allowed"),
    (b"SUBSCRIBE Sent", b"BAD", b"not allowed"),
    (b"APPEND INBOX {3+}\r\nabc", b"BAD", b"not allowed"),
    (b"FETCH 1 FLAGS", b"BAD", b"not allowed"),
    (b"CLOSE", b"BAD", b"not allowed"),
    (b"LOGIN alice", b"BAD", b""),
    (b"LOGIN alice pw extra", b"BAD", b""),
    (b'LOGIN "alice pw', b"BAD", b""),
    (b"LOGIN al\xffce pw", b"BAD", b""),
    (b"AUTHENTICATE", b"BAD", b""),
    (b"AUTHENTICATE PLAIN !!!!", b"BAD", b""),
]


def run_cases(client: Raw, cases: list[tuple[bytes, bytes, bytes]]) -> list:
    wrong = []
    for command, statuses, words in cases:
        lines, done = client.cmd(command)
        status = done.split(b" ")[1]
        ok = re.fullmatch(statuses, status) is not None and words.lower() in done.lower()
        ok = ok and not any(b"BYE" in line for line in lines)
        if not ok:
            wrong.append((command[:60], done))
        _noop_lines, noop = client.cmd("NOOP")
        if noop.split(b" ")[1] != b"OK":
            wrong.append((command[:60], "session did not go on", noop))
    return wrong


@pytest.mark.parametrize(
    "state, cases",
    [("selected", SELECTED_BAD), ("authenticated", AUTH_BAD), ("not authenticated", UNAUTH_BAD)],
)
def test_bad_input_gets_bad_or_no_and_changes_nothing(server, state, cases):
    root = server.path
    before, folders_before = tree(root), folders(root)
    wrong = []
    for start in range(0, len(cases), 12):  # under the bad-command limit of one session
        if state == "selected":
            client = server.raw_select()
        elif state == "authenticated":
            client = server.raw_login()
        else:
            client = server.raw()
        wrong += run_cases(client, cases[start : start + 12])
        client.ok("LOGOUT")
        client.close()
    assert wrong == [], "\n".join(map(repr, wrong))
    assert tree(root).keys() == before.keys() or state == "selected"  # SELECT claims new/
    assert sorted(tree(root).values()) == sorted(before.values())
    assert folders(root) == folders_before
    server.assert_healthy()


def test_malformed_lines(server):
    client = server.raw()
    client.send(b"\r\n")
    assert client.line().startswith(b"* BAD ")
    client.send(b"   \n")
    assert client.line().startswith(b"* BAD ")
    client.send(b"+ NOOP\r\n")
    assert client.line().startswith(b"* BAD ")
    client.send(b"\xff\xfe NOOP\r\n")
    assert client.line().startswith(b"* BAD ")
    client.send(b"tagonly\r\n")
    assert client.line().startswith(b"tagonly BAD ")
    client.send(b"a" * 100_000 + b"\r\n")  # no tag to be read: untagged
    assert client.line() == b"* BAD Command line too long\r\n"
    # Over-long lines whose tag can be read get a tagged BAD: the client waits for its tag.
    client.send(b"l1 LOGIN " + b"x" * 100_000 + b" pw\r\n")
    assert client.line() == b"l1 BAD Command line too long\r\n"
    client.send(b'l2 LOGIN "' + b"y" * 100_000)
    client.send(b'" pw\r\n')
    assert client.line() == b"l2 BAD Command line too long\r\n"
    client.alive()
    client.send(b"l3 LOGIN {7}\r\n")
    client.line()
    client.send(server.user.encode() + b" " + b"z" * 100_000 + b"\r\n")  # a line, too
    assert client.line() == b"l3 BAD Command line too long\r\n"  # the tag of its first line
    client.alive()
    client.ok(f"LOGIN {server.user} pw")
    client.ok("SELECT INBOX")
    client.send(b"l4 FETCH " + b"1," * 50_000 + b"1 FLAGS\r\n")
    assert client.line() == b"l4 BAD Command line too long\r\n"
    client.alive()
    client.ok("LOGOUT")
    server.assert_healthy()


def test_literals_that_lie_about_their_length(server):
    before = tree(server.path)
    client = server.raw_login()
    # Announces 10 octets, sends 5: the next command is eaten as literal data.
    client.send(b"y1 APPEND INBOX {10+}\r\nabc\r\n")
    client.send(b"y2 NOOP\r\n")
    lines, done = client.until_tagged("y1")
    assert done.startswith(b"y1 BAD ")
    client.alive()
    # Announces 3, sends 6: the rest is not a command's end.
    client.send(b"y3 APPEND INBOX {3+}\r\nabcdef\r\n")
    _lines, done = client.until_tagged("y3")
    assert done.startswith(b"y3 BAD ")
    client.alive()
    # A synchronizing one that lies: the continuation comes, then too few octets.
    client.send(b"y4 APPEND INBOX {9}\r\n")
    assert client.line().startswith(b"+ ")
    client.send(b"ab\r\ny5 NOOP\r\n")
    _lines, done = client.until_tagged("y4")
    assert done.startswith(b"y4 BAD ")
    client.alive()
    # Not a literal at all: braces with junk.
    for junk in (b"{}", b"{x}", b"{-1}", b"{1+2}", b"{99999999999999999999999}"):
        lines, done = client.cmd(b"APPEND INBOX " + junk)
        assert done.split(b" ")[1] == b"BAD", (junk, done)
        client.alive()
    client.ok("LOGOUT")
    assert tree(server.path) == before
    server.assert_healthy()


def test_literal_larger_than_max_literal(server):
    before = tree(server.path)
    client = server.raw_login()
    client.send(b"z1 APPEND INBOX {%d}\r\n" % (MAX_LITERAL + 1))
    line = client.line()
    assert line == b"z1 NO [TOOBIG] Message too large\r\n"  # and no continuation
    client.alive()
    big = b"x" * (MAX_LITERAL * 3)
    client.send(b"z2 APPEND INBOX {%d+}\r\n" % len(big) + big + b"\r\n")
    assert client.line() == b"z2 NO [TOOBIG] Message too large\r\n"
    client.alive()
    client.send(b"z3 LOGIN {%d+}\r\n" % len(big) + big + b" {3+}\r\n" + big[:3] + b"\r\n")
    assert client.line() == b"z3 BAD [TOOBIG] Literal too large\r\n"
    client.alive()
    small = crlf(MESSAGE)
    client.send(b"z4 APPEND INBOX {%d+}\r\n" % len(small) + small + b"\r\n")
    assert client.line().startswith(b"z4 OK ")
    client.ok("LOGOUT")
    after = tree(server.path)
    assert len(after) == len(before) + 1


def test_hostile_list_patterns_answer_at_once(server):
    client = server.raw_login()
    client.ok("CREATE " + "a" * 60)
    client.ok("CREATE " + ".".join(["b"] * 40))
    for pattern in ("*a" * 30 + "b", "%a" * 30 + "b", "*" * 20_000 + "c", "%" * 20_000 + "."):
        lines, done = client.cmd(f'LIST "" "{pattern}"')  # a backtracking regex took minutes
        assert done.split(b" ")[1] == b"OK" and lines == []
        lines, done = client.cmd(f'LSUB "" "{pattern}"')
        assert done.split(b" ")[1] == b"OK"
    assert len(client.ok('LIST "" "*b*b*b*b*b*b*b*b*b*b*b*b*b*b*b*b*b*b*b*b*b"')) == 20
    client.ok("LOGOUT")


def test_a_broken_store_gets_a_clean_no(server):
    """Faults injected in the store: an unreadable uidlist, an unreadable subscriptions file. The
    client gets NO (or the change later), never a goodbye; nothing is lost."""
    before = tree(server.path)
    selected = server.raw_select()
    client = server.raw_login()
    sent_uidlist = server.path / ".Sent" / "maildaemons-uidlist"
    sent_uidlist.unlink(missing_ok=True)
    sent_uidlist.mkdir()
    lines, done = client.cmd("SELECT Sent")
    assert done.split(b" ", 1)[1].startswith(b"NO [SERVERBUG] ")
    lines, done = client.cmd("STATUS Sent (MESSAGES UIDNEXT)")
    assert done.split(b" ", 1)[1].startswith(b"NO ")
    wire = crlf(MESSAGE)
    lines, done = client.cmd(b"APPEND Sent {%d+}\r\n" % len(wire) + wire)
    assert done.split(b" ", 1)[1].startswith(b"NO ")
    inbox_uidlist = server.path / "maildaemons-uidlist"
    inbox_uidlist.unlink()
    inbox_uidlist.mkdir()
    selected.alive()  # the change waits, the session goes on
    lines, done = selected.cmd("FETCH 1 (FLAGS)")
    assert done.split(b" ")[1] in (b"OK", b"NO")
    subscriptions = server.path / "subscriptions"
    subscriptions.unlink()
    subscriptions.mkdir()
    lines, done = client.cmd('LSUB "" "*"')
    assert done.split(b" ", 1)[1].startswith(b"NO ")
    lines, done = client.cmd('LIST "" "*"')
    assert done.split(b" ", 1)[1].startswith(b"NO ")
    for path in (sent_uidlist, inbox_uidlist, subscriptions):
        path.rmdir()
    client.ok("SELECT Sent")
    selected.alive()
    assert selected.ok("UID FETCH 1:* (UID)")
    for client_ in (client, selected):
        client_.ok("LOGOUT")
    after = tree(server.path)
    assert sorted(after.values()) == sorted(before.values())
    assert "internal error" not in server.log()


def test_commands_made_of_endless_literals_are_refused(server):
    client = server.raw_login()
    line = b"x" * 60_000 + b" {0+}\r\n"
    client.send(b"w1 NOOP {0+}\r\n" + line * 30 + b"\r\n")  # 1.8 MB of "lines"
    assert client.line() == b"w1 BAD [TOOBIG] Literal too large\r\n"
    client.alive()
    big = b"y" * (MAX_LITERAL + 1)
    client.send(b"w2 LOGIN {1+}\r\nx {%d+}\r\n" % len(big) + big + b"\r\n")
    assert client.line() == b"w2 BAD [TOOBIG] Literal too large\r\n"  # the command's own tag
    client.alive()
    client.ok("LOGOUT")


def test_big_sequence_sets(server):
    client = server.raw_login()
    wire = crlf(MESSAGE)
    client.send(
        b"".join(
            b"a%d APPEND INBOX {%d+}\r\n" % (n, len(wire)) + wire + b"\r\n" for n in range(100)
        )
    )
    for n in range(100):
        assert client.until_tagged(f"a{n}")[1].startswith(b"a%d OK" % n)
    client.ok("SELECT INBOX")  # 102 messages, UIDs 1 to 102
    odd = ",".join(str(n) for n in range(1, 20_000, 2))
    lines = client.ok(f"UID FETCH {odd} (UID)")
    assert [int(re.search(rb"UID (\d+)", x).group(1)) for x in lines] == list(range(1, 103, 2))
    lines = client.ok(f"UID SEARCH UID {odd}")
    assert lines == [b"* SEARCH " + " ".join(map(str, range(1, 103, 2))).encode() + b"\r\n"]
    lines = client.ok("SEARCH " + ",".join(str(n) for n in range(102, 0, -3)))
    assert lines == [b"* SEARCH " + " ".join(map(str, range(3, 103, 3))).encode() + b"\r\n"]
    lines = client.ok(f"UID SEARCH NOT UID {odd}")
    assert lines == [b"* SEARCH " + " ".join(map(str, range(2, 103, 2))).encode() + b"\r\n"]
    client.ok("LOGOUT")


def test_too_many_bad_commands_end_the_session(server):
    client = server.raw()
    client.send(b"".join(b"b%d BOGUS\r\n" % n for n in range(40)))
    seen = b""
    while True:
        try:
            seen += client.line()
        except (EOFError, ConnectionResetError):
            break
    assert seen.count(b" BAD ") >= 10
    assert b"* BYE " in seen
    server.assert_healthy()


def test_children_end_after_bad_sessions(server):
    pid = server.daemon.pid
    for payload in (
        b"a LOGIN {5}\r\n",
        b"a APPEND INBOX {100+}\r\nabc",
        b"\xff" * 1000,
        b"x" * 70_000,
    ):
        client = server.raw()
        client.send(payload)
        client.close()
    wait_for(lambda: sessions_running(pid) == 0, what="every session gone")
    server.assert_healthy()
