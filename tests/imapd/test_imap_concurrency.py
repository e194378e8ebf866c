"""Two sessions on one mailbox (RFC 3501 5.2, 5.5, 7.4.1): flag changes, expunges, appends and
new mail delivered into new/ are reported at the next command that may carry them, EXPUNGE never
during FETCH, STORE or SEARCH, sequence numbers stay consistent, and \\Recent goes to exactly one
session."""

from __future__ import annotations

import os
import re
import time

import pytest

from support.daemons import wait_for
from support.imap import Raw, crlf, message_files, shared_imapd
from support.site import deliver

shared = shared_imapd("imap-concurrency", "idle_keepalive = 0\n")


@pytest.fixture
def account(shared):
    """The module's server, logging in as a user of this test alone."""
    return shared.account()


def body(n: int) -> bytes:
    return f"From: x@example.org\nSubject: message {n}\n\nbody {n}\n".encode()


@pytest.fixture
def pair(account):
    """A server and two sessions A and B with INBOX selected, holding four messages that an
    earlier session saw (so they are not \\Recent)."""
    server = account
    maildir = server.maildir()
    for n in range(1, 5):
        deliver(maildir, body(n), subdir="cur", name=f"{1700000000 + n}.M{n}P1.host:2,")
    server.claim_recent()
    a, b = server.raw_select(), server.raw_select()
    return server, a, b


def uid_map(client: Raw) -> list[tuple[int, int]]:
    lines = client.ok("FETCH 1:* (UID)")
    return [
        (int(m.group(1)), int(m.group(2)))
        for line in lines
        if (m := re.match(rb"\* (\d+) FETCH \(UID (\d+)\)", line))
    ]


def test_flag_changes_reach_the_other_session(pair):
    server, a, b = pair
    assert a.ok("STORE 1 +FLAGS (\\Flagged)") == [b"* 1 FETCH (FLAGS (\\Flagged))\r\n"]
    assert b.ok("NOOP") == [b"* 1 FETCH (FLAGS (\\Flagged))\r\n"]
    assert b.ok("NOOP") == []  # reported once
    assert a.ok("NOOP") == []  # a session is not told about its own change again
    # A change made by another program (renaming the file, as mutt does) is reported too.
    path = next(p for p in message_files(server.path) if p.name.startswith("1700000003"))
    os.rename(path, path.with_name(path.name + "S"))
    for client in (a, b):
        assert client.ok("NOOP") == [b"* 3 FETCH (FLAGS (\\Seen))\r\n"]
    a.ok("STORE 2 +FLAGS.SILENT (\\Answered)")
    lines = b.ok("FETCH 2 (FLAGS)")  # never stale (the change may be announced first)
    assert set(lines) == {b"* 2 FETCH (FLAGS (\\Answered))\r\n"}
    assert b.ok("NOOP") == []


def quiet(maildir, seconds: float = 1.2) -> None:
    """Wait until nothing in the folder changed for `seconds` (servers trust mtimes then)."""

    def still() -> bool:
        newest = max(os.stat(maildir / sub).st_mtime for sub in ("cur", "new"))
        newest = max([newest, *(p.stat().st_mtime for p in maildir.glob("maildaemons-*"))])
        return time.time() - newest > seconds

    wait_for(still, timeout=10, interval=0.1, what="a quiet folder")


def test_changes_after_a_quiet_spell_are_seen(pair):
    server, a, b = pair
    maildir = server.maildir()
    quiet(maildir)
    assert b.ok("NOOP") == []  # remembers a folder that has been still for a while
    path = next(p for p in message_files(maildir) if p.name.startswith("1700000002"))
    os.rename(path, path.with_name(path.name + "F"))  # another program flags it
    assert b.ok("NOOP") == [b"* 2 FETCH (FLAGS (\\Flagged))\r\n"]
    quiet(maildir)
    assert b.ok("NOOP") == []
    deliver(maildir, body(5))
    assert b.ok("NOOP") == [b"* 5 EXISTS\r\n", b"* 1 RECENT\r\n"]
    quiet(maildir)
    assert b.ok("NOOP") == []
    os.unlink(next(p for p in message_files(maildir) if p.name.startswith("1700000001")))
    assert b.ok("NOOP") == [b"* 1 EXPUNGE\r\n"]
    quiet(maildir)
    # A hears it all at once, numbered as it goes: message 2 is message 1 after the EXPUNGE.
    assert a.ok("NOOP") == [
        b"* 1 EXPUNGE\r\n",
        b"* 1 FETCH (FLAGS (\\Flagged))\r\n",
        b"* 4 EXISTS\r\n",
        b"* 0 RECENT\r\n",
    ]


def test_a_new_keyword_is_announced_to_every_session(pair):
    _server, a, b = pair
    lines = a.ok("STORE 1 +FLAGS (Fresh)")  # announced before the FETCH that shows it
    assert re.fullmatch(rb"\* FLAGS \(\\Answered .*\bFresh\)\r\n", lines[0])
    assert re.fullmatch(rb"\* OK \[PERMANENTFLAGS \(.* Fresh \\\*\)\] .*\r\n", lines[1])
    assert lines[2] == b"* 1 FETCH (FLAGS (Fresh))\r\n"
    lines = b.ok("NOOP")
    assert lines[0].startswith(b"* FLAGS (") and b"Fresh" in lines[0]
    assert lines[2] == b"* 1 FETCH (FLAGS (Fresh))\r\n"
    assert a.ok("NOOP") == [] and b.ok("NOOP") == []


def test_store_never_undoes_a_change_it_has_not_seen(pair):
    _server, a, b = pair
    a.ok("STORE 4 +FLAGS (\\Flagged $Work)")
    lines = b.ok("STORE 4 +FLAGS (\\Seen)")  # B was not told about A's change yet
    assert lines[-1] == b"* 4 FETCH (FLAGS (\\Flagged \\Seen $Work))\r\n"
    a.ok("STORE 4 -FLAGS (\\Flagged)")
    lines = b.ok("STORE 4 -FLAGS ($Work)")
    assert lines[-1] == b"* 4 FETCH (FLAGS (\\Seen))\r\n"
    assert a.ok("FETCH 4 FLAGS")[-1] == b"* 4 FETCH (FLAGS (\\Seen))\r\n"


def test_expunge_waits_for_a_command_that_may_carry_it(pair):
    _server, a, b = pair
    a.ok("STORE 2 +FLAGS (\\Deleted)")
    assert a.ok("EXPUNGE") == [b"* 2 EXPUNGE\r\n"]
    # B still counts four messages: FETCH, STORE and SEARCH must not send EXPUNGE.
    lines, done = b.cmd("FETCH 1:4 (UID)")
    assert not any(b"EXPUNGE" in line for line in lines)
    assert b"* 1 FETCH (UID 1)\r\n" in lines and b"* 4 FETCH (UID 4)\r\n" in lines
    assert done.split(b" ")[1] == b"OK"
    lines = b.ok("STORE 3 +FLAGS (\\Seen)")  # still message 3 = UID 3 for B
    assert lines[0] == b"* 3 FETCH (FLAGS (\\Seen))\r\n"
    assert not any(b"EXPUNGE" in line for line in lines)
    lines = b.ok("SEARCH SEEN")
    assert lines == [b"* SEARCH 3\r\n"]
    lines, done = b.cmd("FETCH 2 (BODY.PEEK[TEXT])")  # the expunged one: data or a NO, no EXPUNGE
    assert not any(b"EXPUNGE" in line for line in lines)
    assert done.split(b" ")[1] in (b"OK", b"NO")
    # NOOP may carry it: now B's numbers shift, and only now.
    assert b.ok("NOOP") == [b"* 2 EXPUNGE\r\n"]
    lines = a.ok("NOOP")
    assert lines == [b"* 2 FETCH (FLAGS (\\Seen))\r\n"]  # B's STORE, in A's numbering
    assert uid_map(b) == [(1, 1), (2, 3), (3, 4)] == uid_map(a)


def test_copy_of_a_message_expunged_meanwhile(pair):
    _server, a, b = pair
    b.ok("CREATE Target")
    a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    a.ok("EXPUNGE")
    lines, done = b.cmd("COPY 1:3 Target")  # B still counts 4: its message 2 is gone
    assert done.split(b" ", 1)[1].startswith(b"NO [EXPUNGEISSUED] ")
    assert b.ok("STATUS Target (MESSAGES)")[-1] == b"* STATUS Target (MESSAGES 0)\r\n"
    b.ok("NOOP")
    b.ok("COPY 1:3 Target")
    assert b.ok("STATUS Target (MESSAGES)")[-1] == b"* STATUS Target (MESSAGES 3)\r\n"


def test_uid_commands_may_carry_expunge(pair):
    _server, a, b = pair
    a.ok("STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    a.ok("EXPUNGE")
    lines = b.ok("UID FETCH 4 (UID)")
    assert lines[0] == b"* 4 FETCH (UID 4)\r\n"
    assert lines[1:] in (
        [b"* 3 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n"],
        [b"* 1 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"],
    )
    assert b.ok("FETCH 1:* (UID)") == [b"* 1 FETCH (UID 2)\r\n", b"* 2 FETCH (UID 4)\r\n"]


def test_close_of_one_session_expunges_for_the_other(pair):
    _server, a, b = pair
    a.ok("STORE 4 +FLAGS.SILENT (\\Deleted)")
    assert a.ok("CLOSE") == []
    assert (
        b.ok("NOOP") == [b"* 4 FETCH (FLAGS (\\Deleted))\r\n", b"* 4 EXPUNGE\r\n"]
        or b.ok("NOOP") == []
    )
    assert uid_map(b) == [(1, 1), (2, 2), (3, 3)]


def test_append_and_copy_by_another_session(pair):
    server, a, b = pair
    wire = crlf(body(5))
    # The appending session is told at once, and is the first to see the message: it is
    # \\Recent there (RFC 3501 6.3.11), and only there.
    assert a.ok(b"APPEND INBOX (\\Seen) {%d+}\r\n" % len(wire) + wire) == [
        b"* 5 EXISTS\r\n",
        b"* 1 RECENT\r\n",
    ]
    assert b.ok("NOOP") == [b"* 5 EXISTS\r\n", b"* 0 RECENT\r\n"]
    assert a.ok("NOOP") == []
    assert a.ok("FETCH 5 (FLAGS)") == [b"* 5 FETCH (FLAGS (\\Seen \\Recent))\r\n"]
    c = server.raw_login()
    c.ok("CREATE Other")
    c.ok("SELECT Other")
    c.ok(b"APPEND Other {%d+}\r\n" % len(wire) + wire)
    c.ok("COPY 1 INBOX")  # a copy is \\Recent too (RFC 3501 6.4.7): B asks first
    assert b.ok("NOOP") == [b"* 6 EXISTS\r\n", b"* 1 RECENT\r\n"]
    assert b.ok("FETCH 6 (UID FLAGS)") == [b"* 6 FETCH (UID 6 FLAGS (\\Recent))\r\n"]
    assert a.ok("NOOP") == [b"* 6 EXISTS\r\n", b"* 1 RECENT\r\n"]
    assert uid_map(a) == uid_map(b)


def test_delivery_into_new_is_recent_in_exactly_one_session(pair):
    server, a, b = pair
    maildir = server.maildir()
    for round_number in range(5, 15):
        deliver(maildir, body(round_number))
        # Both sessions ask at once, so that their claims on new/ race.
        a.send(b"r NOOP\r\n")
        b.send(b"r NOOP\r\n")
        lines_a, _ = a.until_tagged("r")
        lines_b, _ = b.until_tagged("r")
        assert b"* %d EXISTS\r\n" % round_number in lines_a
        assert b"* %d EXISTS\r\n" % round_number in lines_b
    flags_a = a.ok("FETCH 5:14 (FLAGS)")
    flags_b = b.ok("FETCH 5:14 (FLAGS)")
    for line_a, line_b in zip(flags_a, flags_b, strict=True):
        assert (b"\\Recent" in line_a) != (b"\\Recent" in line_b), (line_a, line_b)
    found_a = a.ok("SEARCH RECENT")[0].split()[2:]
    found_b = b.ok("SEARCH RECENT")[0].split()[2:]
    assert sorted(int(n) for n in found_a + found_b) == list(range(5, 15))
    assert os.listdir(maildir / "new") == []
    # A third session, and the same ones after a new SELECT, see no \Recent at all.
    c = server.raw_select()
    assert c.ok("SEARCH RECENT") == [b"* SEARCH\r\n"]


def test_recent_count_in_select_and_status(account):
    server = account
    maildir = server.maildir()
    for n in range(3):
        deliver(maildir, body(n))
    watcher = server.raw_login()
    assert watcher.ok("STATUS INBOX (RECENT MESSAGES)") == [
        b"* STATUS INBOX (RECENT 3 MESSAGES 3)\r\n"
    ]
    first = server.raw_login()
    lines = first.ok("SELECT INBOX")
    assert b"* 3 RECENT\r\n" in lines
    assert first.ok("STATUS INBOX (RECENT)") == [b"* STATUS INBOX (RECENT 3)\r\n"]
    assert watcher.ok("STATUS INBOX (RECENT MESSAGES)") == [
        b"* STATUS INBOX (RECENT 0 MESSAGES 3)\r\n"
    ]
    second = server.raw_login()
    assert b"* 0 RECENT\r\n" in second.ok("EXAMINE INBOX")


def test_idle_pushes_changes(pair):
    server, a, b = pair
    b.send(b"i1 IDLE\r\n")
    assert b.line().startswith(b"+ ")
    a.ok("STORE 1 +FLAGS (\\Seen)")
    assert b.line() == b"* 1 FETCH (FLAGS (\\Seen))\r\n"
    deliver(server.maildir(), body(5))
    assert b.line() == b"* 5 EXISTS\r\n"
    assert b.line() == b"* 1 RECENT\r\n"
    a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    a.ok("EXPUNGE")
    line = b.line()
    if line.startswith(b"* 2 FETCH"):  # IDLE looked between the two (as a watcher will)
        assert line == b"* 2 FETCH (FLAGS (\\Deleted))\r\n"
        line = b.line()
    assert line == b"* 2 EXPUNGE\r\n"
    b.send(b"DONE\r\n")
    assert b.line() == b"i1 OK IDLE terminated\r\n"
    assert uid_map(a) == uid_map(b)


def test_mailbox_deleted_under_a_session(pair):
    server, a, b = pair
    c = server.raw_login()
    c.ok("CREATE Doomed")
    a.ok("SELECT Doomed")
    c.ok("DELETE Doomed")
    a.send(b"n1 NOOP\r\n")
    assert a.line() == b"* BYE [ALERT] The selected mailbox was deleted\r\n"
    assert a.closed()
    c.ok("CREATE Doomed")
    idler = server.raw_select("Doomed")
    idler.send(b"i1 IDLE\r\n")
    assert idler.line().startswith(b"+ ")
    c.ok("DELETE Doomed")
    assert idler.line() == b"* BYE [ALERT] The selected mailbox was deleted\r\n"
    assert idler.closed()
    b.alive()
    server.assert_healthy()


def test_many_sessions_append_at_once_uids_stay_unique(account):
    server = account
    clients = [server.raw_login() for _ in range(4)]
    wire = crlf(body(0))
    for client in clients:
        client.send(
            b"".join(
                b"a%d APPEND INBOX {%d+}\r\n" % (n, len(wire)) + wire + b"\r\n" for n in range(10)
            )
        )
    uids = []
    for client in clients:
        for n in range(10):
            _lines, done = client.until_tagged(f"a{n}")
            found = re.match(rb"a\d+ OK \[APPENDUID \d+ (\d+)\]", done)
            assert found, done
            uids.append(int(found.group(1)))
    assert sorted(uids) == list(range(1, 41))
    checker = server.raw_select()
    assert [uid for _seq, uid in uid_map(checker)] == list(range(1, 41))
    assert len(message_files(server.path)) == 40
