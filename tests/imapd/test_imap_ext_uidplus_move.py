"""UIDPLUS (RFC 4315: APPENDUID, COPYUID, UID EXPUNGE) and MOVE (RFC 6851: MOVE, UID MOVE) over
real sockets with raw transcripts, imaplib and imapclient; a MOVE whose child is killed midway
loses and doubles nothing."""

from __future__ import annotations

import os
import re
import signal

import pytest

from common.store.folders import FolderTree
from common.store.mailbox import Mailbox
from support.daemons import child_pids, wait_for
from support.figures import note
from support.imap import crlf, shared_imapd
from support.site import deliver

shared = shared_imapd("imap-ext-uidplus")


@pytest.fixture
def account(shared):
    return shared.account()


def message(mid: str) -> bytes:
    return f"From: x@example.org\nSubject: {mid}\nMessage-ID: <{mid}>\n\nbody {mid}\n".encode()


def seeded(server, count: int, folders: tuple[str, ...] = ("Archive",)) -> None:
    maildir = server.maildir()
    for n in range(1, count + 1):
        deliver(
            maildir,
            message(f"m{n}@example.org"),
            subdir="cur",
            name=f"{1700000000 + n}.M{n}P5.uidplus:2,",
        )
    tree = FolderTree(maildir)
    for name in folders:
        tree.create(name)


def mid_by_uid(client, mailbox: str) -> dict[int, str]:
    client.ok(f"EXAMINE {mailbox}")
    lines = client.ok("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    out = {}
    for line in lines:
        uid, mid = re.search(rb"UID (\d+)", line), re.search(rb"<([^>]+)>", line)
        if uid and mid:
            out[int(uid.group(1))] = mid.group(1).decode()
    return out


def expand(text: str) -> list[int]:
    """A sequence set as COPYUID writes it, in its order (ranges ascending or descending)."""
    out: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        first, last = int(low), int(high or low)
        step = 1 if last >= first else -1
        out += range(first, last + step, step)
    return out


# -- UIDPLUS ----------------------------------------------------------------------------------


def test_appenduid_names_the_new_message(account):
    server = account
    seeded(server, 2)
    client = server.raw_login()
    lines, done = client.cmd(
        b"APPEND Archive (\\Seen) {%d+}\r\n" % len(crlf(message("a@x"))) + crlf(message("a@x"))
    )
    validity = int(
        re.search(rb"UIDVALIDITY (\d+)", b"".join(client.ok("STATUS Archive (UIDVALIDITY)"))).group(
            1
        )
    )  # type: ignore[union-attr]
    assert done.split(b" ", 1)[1] == f"OK [APPENDUID {validity} 1] APPEND completed\r\n".encode()
    lines, done = client.cmd(
        b"APPEND Archive {%d+}\r\n" % len(crlf(message("b@x"))) + crlf(message("b@x"))
    )
    assert done.split(b" ", 1)[1].startswith(f"OK [APPENDUID {validity} 2] ".encode())
    assert mid_by_uid(client, "Archive") == {1: "a@x", 2: "b@x"}
    # imaplib and imapclient read it too.
    lib = server.imaplib()
    typ, data = lib.append("Archive", None, None, crlf(message("c@x")))
    assert typ == "OK" and data[0].startswith(f"[APPENDUID {validity} 3]".encode())
    lib.logout()
    imapc = server.client()
    reply = imapc.append("Archive", message("d@x"))
    assert reply.startswith(f"[APPENDUID {validity} 4]".encode())
    imapc.logout()


def test_copyuid_sets_pair_up_in_order(account):
    server = account
    seeded(server, 8)
    client = server.raw_select()
    client.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
    client.ok("EXPUNGE")  # a hole in the UIDs: 1 2 4 5 6 7 8
    lines, done = client.cmd("UID COPY 8,1,4:6 Archive")
    found = re.fullmatch(rb"t\d+ OK \[COPYUID (\d+) ([\d:,]+) ([\d:,]+)\] COPY completed\r\n", done)
    assert found, done
    sources, targets = expand(found.group(2).decode()), expand(found.group(3).decode())
    assert len(sources) == len(targets) == 5
    inbox, archive = mid_by_uid(client, "INBOX"), mid_by_uid(client, "Archive")
    for source, target in zip(sources, targets, strict=True):
        assert inbox[source] == archive[target]
    # Copying into the selected mailbox itself: new messages, new UIDs, announced.
    client.ok("SELECT INBOX")
    lines, done = client.cmd("COPY 1 INBOX")
    assert re.match(rb"t\d+ OK \[COPYUID \d+ 1 9\] ", done), done
    assert b"* 8 EXISTS\r\n" in lines
    # Nothing matched (UIDs that do not exist): OK without COPYUID, nothing copied.
    lines, done = client.cmd("UID COPY 900:999 Archive")
    assert re.match(rb"t\d+ OK COPY completed", done), done


def test_uid_expunge_only_removes_the_named_deleted_messages(account):
    server = account
    seeded(server, 6)
    client = server.raw_select()
    client.ok("STORE 1:4 +FLAGS.SILENT (\\Deleted)")
    other = server.raw_select()
    # UID 5 named but not \Deleted, UIDs 1 and 2 deleted but not named: only 3 and 4 go.
    lines, done = client.cmd("UID EXPUNGE 3:5")
    assert lines == [b"* 4 EXPUNGE\r\n", b"* 3 EXPUNGE\r\n"], lines
    assert re.match(rb"t\d+ OK EXPUNGE completed", done)
    assert other.ok("NOOP")[-2:] == [b"* 4 EXPUNGE\r\n", b"* 3 EXPUNGE\r\n"]
    assert sorted(mid_by_uid(client, "INBOX")) == [1, 2, 5, 6]
    # With imapclient (UID EXPUNGE when given messages).
    imapc = server.client()
    imapc.select_folder("INBOX")
    imapc.expunge([1])
    assert imapc.search(["ALL"]) == [2, 5, 6]
    imapc.logout()
    # UID EXPUNGE in a read-only mailbox, or before SELECT: refused, nothing removed.
    client.ok("EXAMINE INBOX")
    assert client.status("UID EXPUNGE 2") == b"NO"
    client.ok("UNSELECT")
    assert client.status("UID EXPUNGE 2") == b"BAD"
    client.ok("SELECT INBOX")
    assert len(client.ok("UID SEARCH DELETED")[0].split()) == 3  # "* SEARCH 2" still there


# -- MOVE --------------------------------------------------------------------------------------


def test_move_answers_copyuid_before_the_expunges(account):
    server = account
    seeded(server, 5)
    client = server.raw_select()
    before = mid_by_uid(client, "INBOX")
    client.ok("SELECT INBOX")
    lines, done = client.cmd("MOVE 2:3 Archive")
    assert re.fullmatch(rb"\* OK \[COPYUID \d+ 2:3 1:2\] Moved\r\n", lines[0]), lines
    assert lines[1:] == [b"* 3 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"], lines
    assert re.match(rb"t\d+ OK MOVE completed\r\n", done)
    lines, done = client.cmd("UID MOVE 5,1 Archive")
    assert re.fullmatch(rb"\* OK \[COPYUID \d+ 1,5 3:4\] Moved\r\n", lines[0]), lines
    assert lines[1:] == [b"* 3 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n"], lines
    assert mid_by_uid(client, "INBOX") == {4: before[4]}
    assert mid_by_uid(client, "Archive") == {1: before[2], 2: before[3], 3: before[1], 4: before[5]}


def test_uid_move_with_qresync_sends_vanished_and_highestmodseq(account):
    server = account
    seeded(server, 4)
    client = server.raw_login()
    client.ok("ENABLE QRESYNC")
    client.ok("SELECT INBOX")
    lines, done = client.cmd("UID MOVE 2:3 Archive")
    assert re.fullmatch(rb"\* OK \[COPYUID \d+ 2:3 1:2\] Moved\r\n", lines[0]), lines
    assert lines[1:] == [b"* VANISHED 2:3\r\n"], lines
    highest = int(
        re.fullmatch(rb"t\d+ OK \[HIGHESTMODSEQ (\d+)\] MOVE completed\r\n", done).group(1)
    )  # type: ignore[union-attr]
    status = b"".join(client.ok("STATUS INBOX (HIGHESTMODSEQ)"))
    assert f"HIGHESTMODSEQ {highest})".encode() in status


def test_move_errors_leave_every_message_in_place(account):
    server = account
    seeded(server, 3)
    client = server.raw_select()
    lines, done = client.cmd("MOVE 1 Nowhere")
    assert re.match(rb"t\d+ NO \[TRYCREATE\] ", done), done
    lines, done = client.cmd("UID MOVE 1:* Nowhere")
    assert re.match(rb"t\d+ NO \[TRYCREATE\] ", done), done
    assert client.status("MOVE 9 Archive") == b"BAD"  # no message 9
    assert client.status("MOVE 1 ../x") == b"NO"
    client.ok("EXAMINE INBOX")
    lines, done = client.cmd("MOVE 1 Archive")
    assert re.match(rb"t\d+ NO \[READ-ONLY\] ", done), done
    assert sorted(mid_by_uid(client, "INBOX")) == [1, 2, 3]
    assert mid_by_uid(client, "Archive") == {}
    # A message another session expunged meanwhile (not yet reported): nothing moves.
    client.ok("SELECT INBOX")
    other = server.raw_select()
    other.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    lines, done = client.cmd("MOVE 1:3 Archive")
    assert re.match(rb"t\d+ NO \[EXPUNGEISSUED\] ", done), done
    assert mid_by_uid(client, "Archive") == {}
    client.alive()


def test_move_with_imapclient_and_imaplib(account):
    server = account
    seeded(server, 4)
    imapc = server.client()
    imapc.select_folder("INBOX")
    imapc.move([1, 2], "Archive")
    assert imapc.search(["ALL"]) == [3, 4]
    imapc.logout()
    lib = server.imaplib()
    lib.select("INBOX")
    typ, data = lib.uid("MOVE", "3", "Archive")
    assert typ == "OK", data
    assert lib.search(None, "ALL")[1] == [b"1"]
    lib.logout()
    assert len(Mailbox(FolderTree(server.path).path("Archive")).sync().entries) == 3


def test_a_move_killed_midway_loses_and_doubles_nothing(shared):
    """SIGKILL the child while UID MOVE renames a thousand messages: afterwards every message is
    in exactly one of the two folders, UIDs are unique, and both folders serve cleanly."""
    server = shared.account()
    maildir = server.maildir()
    count = 1000
    for n in range(count):
        (maildir / "cur" / f"{1700000000 + n}.M{n}P6.kill:2,S").write_bytes(
            message(f"k{n}@example.org")
        )
    FolderTree(maildir).create("Archive")
    target = maildir / ".Archive" / "cur"
    before = set(child_pids(server.daemon.pid))
    client = server.raw_select()
    child = wait_for(lambda: set(child_pids(server.daemon.pid)) - before, what="the child")
    pid = next(iter(child))
    client.send(b"m1 UID MOVE 1:* Archive\r\n")
    wait_for(lambda: any(target.iterdir()), interval=0.001, what="the move to start")
    os.kill(pid, signal.SIGKILL)
    assert client.closed()
    moved = sum(1 for _ in target.iterdir())
    note("A MOVE killed midway", f"killed the MOVE after {moved} of {count} messages had moved")

    seen: dict[str, str] = {}
    for folder in ("INBOX", "Archive"):
        client = server.raw_select(folder)
        uids = [
            int(m.group(1))
            for line in client.ok("UID SEARCH ALL")
            for m in re.finditer(rb" (\d+)", line)
        ]
        assert len(uids) == len(set(uids))
        for uid, mid in mid_by_uid(client, folder).items():
            assert mid not in seen, f"{mid} in {seen[mid]} and {folder} (UID {uid})"
            seen[mid] = folder
        client.ok("LOGOUT")
    assert sorted(seen) == sorted(f"k{n}@example.org" for n in range(count))
    # The interrupted move can be finished; then everything is in the Archive once.
    client = server.raw_select()
    client.ok("UID MOVE 1:* Archive")
    assert len(mid_by_uid(client, "Archive")) == count
    assert mid_by_uid(client, "INBOX") == {}
    server.assert_healthy()
