"""Races between sessions on one mailbox (issue 17): a message renamed (flags changed, moved out of
new/) or expunged by one session while another reads it.

Every file-level read in the store follows renames in a bounded loop (common/store/maildir.py
`follow`) and a message that vanished is a typed `MessageGone`: POP3 answers `-ERR` for that
message and the session goes on with its other messages and deletions; IMAP FETCH leaves its data
out and ends in `NO [EXPUNGEISSUED]` (RFC 2180 4.1.2, imapd/commands/fetch.py), the EXPUNGE
following at the next command that may carry it. Never an "internal error", never a dropped
connection. The storms run for a bounded time (STORM_SECONDS; bench/soak.py runs them longer)."""

from __future__ import annotations

import re

from support.mailstore import INBOX
from support.reliability import Account, Rig, pop_wire
from support.storm import STORM_SECONDS, Storm


def test_pop3_retr_of_a_message_flagged_then_expunged_by_imap(account: Account, rig: Rig) -> None:
    ids = [account.deliver() for _ in range(4)]
    pop = account.pop()
    imap = account.select()  # claims the new mail: every file moves from new/ to cur/
    imap.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
    imap.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
    imap.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    imap.ok("EXPUNGE")
    account.ledger.removed(ids[1])

    pop.send(b"DELE 4\r\n")
    assert pop.line() == b"+OK Message 4 deleted\r\n"
    for command in (b"RETR 2\r\n", b"TOP 2 0\r\n"):
        pop.send(command)
        assert pop.line() == b"-ERR Message 2 was removed by another session\r\n"
    pop.send(b"RETR 1\r\n")  # renamed twice since the listing: followed
    assert pop.line().startswith(b"+OK ")
    assert pop.until(b".\r\n") == pop_wire(account.ledger.messages[ids[0]])
    pop.send(b"RETR 3\r\n")
    assert pop.line().startswith(b"+OK ")
    assert pop.until(b".\r\n") == pop_wire(account.ledger.messages[ids[2]])
    pop.send(b"LIST\r\n")
    assert pop.until(b".\r\n").count(b"\r\n") == 5  # +OK, 1 2 3 (4 is deleted), "."
    account.ledger.maybe_gone(ids[3])
    pop.send(b"QUIT\r\n")
    assert pop.line().startswith(b"+OK ")
    account.ledger.removed(ids[3])
    assert imap.ok("NOOP") == [b"* 3 EXPUNGE\r\n"]
    imap.ok("LOGOUT")
    account.check()
    rig.assert_healthy()


def test_pop3_login_lists_only_what_is_there(account: Account) -> None:
    """A message expunged between the maildrop's listing and the reading of its size (no
    `,W=` in its name, nothing cached) is not listed, and the login succeeds."""
    ids = [account.deliver() for _ in range(3)]
    imap = account.select()
    imap.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    imap.ok("EXPUNGE")
    account.ledger.removed(ids[1])
    pop = account.pop()
    pop.send(b"UIDL\r\n")
    assert pop.until(b".\r\n").count(b"\r\n") == 4
    pop.send(b"QUIT\r\n")
    assert pop.line().startswith(b"+OK ")
    imap.ok("LOGOUT")
    account.check()


def test_imap_fetch_of_a_message_another_session_expunged(account: Account, rig: Rig) -> None:
    ids = [account.deliver() for _ in range(3)]
    a = account.select()
    b = account.select()
    b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    account.ledger.removed(ids[1])
    lines, done = a.cmd("FETCH 1:3 (UID BODY.PEEK[] INTERNALDATE)")
    assert [int(line.split(b" ")[1]) for line in lines] == [1, 3]
    assert not any(b"EXPUNGE" in line for line in lines)  # never during FETCH (RFC 3501 7.4.1)
    assert re.match(rb"t\d+ NO \[EXPUNGEISSUED\] ", done), done
    for item in ("INTERNALDATE", "BODY.PEEK[HEADER]", "RFC822.TEXT"):
        _lines, done = a.cmd(f"FETCH 2 ({item})")
        assert re.match(rb"t\d+ NO \[EXPUNGEISSUED\] ", done), (item, done)
    assert a.ok("NOOP") == [b"* 2 EXPUNGE\r\n"]
    assert len(a.ok("FETCH 1:2 (BODY.PEEK[])")) == 2
    for client in (a, b):
        client.ok("LOGOUT")
    account.check()
    rig.assert_healthy()


def test_a_copy_of_a_message_renamed_meanwhile_is_made(account: Account) -> None:
    """COPY follows a flag change made by another session since this one listed the message."""
    ident = account.deliver()
    a = account.select()
    a.ok("CREATE Kept")
    b = account.select()
    b.ok("STORE 1 +FLAGS.SILENT (\\Answered)")
    a.ok("COPY 1 Kept")
    account.ledger.stored(ident, "Kept")
    for client in (a, b):
        client.ok("LOGOUT")
    account.check()


def test_storm_of_imap_sessions_and_pop3_on_one_mailbox(account: Account, rig: Rig) -> None:
    """Ten IMAP sessions flag, expunge, append and fetch in one mailbox while a POP3 session
    RETRs and DELEs and an MTA delivers into new/: no session ends but by LOGOUT or QUIT,
    every reply is one the client's own command or a concurrent expunge explains, and the
    folder ends as the clients were told."""
    for _ in range(30):
        account.deliver()
    storm = Storm(account, imap_sessions=10, pop3=True, deliveries=True)
    figures = storm.run(STORM_SECONDS)
    assert storm.errors == [], (storm.errors[:10], rig.trouble())
    assert figures["imap commands"] > 0 and figures["pop3 retrs"] > 0
    account.check()
    rig.assert_healthy()
    assert account.ledger.present(INBOX), "the storm left no message at all"
