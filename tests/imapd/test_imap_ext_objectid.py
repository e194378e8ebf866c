"""OBJECTID (RFC 8474), SAVEDATE (RFC 8514) and STATUS=SIZE (RFC 8438) over real sockets:
MAILBOXID through CREATE, SELECT, STATUS and LIST-STATUS, kept by RENAME and new after DELETE;
EMAILID kept by COPY and MOVE; THREADID shared by a thread in every folder; SEARCH on both; the
save date of deliveries, APPENDs and copies; the size of a mailbox."""

from __future__ import annotations

import datetime
import os
import re
import time

import pytest

from support.imap import crlf, shared_imapd
from support.site import deliver

shared = shared_imapd("imap-ext-objectid")

ROOT = b"Message-ID: <root@t>\nSubject: start\n\nfirst\n"
REPLY = b"Message-ID: <r1@t>\nIn-Reply-To: <root@t>\nSubject: Re: start\n\nsecond\n"
DEEP = b"Message-ID: <r2@t>\nReferences: <root@t> <r1@t>\nSubject: Re: start\n\nthird\n"
LONE = b"Subject: no ids at all\n\nfourth\n"


@pytest.fixture
def account(shared):
    server = shared.account()
    for n, raw in enumerate((ROOT, REPLY, DEEP, LONE), 1):
        deliver(server.maildir(), raw, subdir="cur", name=f"{1500000000 + n}.M{n}P3.oid:2,")
    return server


def stamp(date_time: bytes) -> float:
    """An IMAP date-time as seconds since the epoch."""
    return datetime.datetime.strptime(
        date_time.decode().strip(), "%d-%b-%Y %H:%M:%S %z"
    ).timestamp()


def mailbox_id(lines: list[bytes]) -> str:
    found = re.search(rb"MAILBOXID \((F[0-9a-f]+)\)", b"".join(lines))
    assert found, lines
    return found.group(1).decode()


def ids(client, seqs: str = "1:*") -> dict[int, tuple[str, str]]:
    """sequence number -> (EMAILID, THREADID)."""
    out = {}
    for line in client.ok(f"FETCH {seqs} (EMAILID THREADID)"):
        found = re.match(rb"\* (\d+) FETCH \(EMAILID \((M\w+)\) THREADID \((T\w+)\)\)", line)
        assert found, line
        out[int(found.group(1))] = (found.group(2).decode(), found.group(3).decode())
    return out


def test_mailboxid_lives_with_the_mailbox(account):
    client = account.raw_login()
    _lines, done = client.cmd("CREATE foo")
    created = mailbox_id([done])
    assert re.fullmatch(r"F[0-9a-f]{24}", created)
    _lines, done = client.cmd("CREATE bar")
    assert mailbox_id([done]) != created
    assert client.status("CREATE foo") == b"NO"
    assert mailbox_id(client.ok("STATUS foo (MAILBOXID)")) == created
    assert mailbox_id(client.ok("SELECT foo")) == created
    assert mailbox_id(client.ok('LIST "" "foo" RETURN (STATUS (MAILBOXID))')) == created
    client.ok("UNSELECT")
    client.ok("RENAME foo renamed")
    assert mailbox_id(client.ok("STATUS renamed (MAILBOXID)")) == created
    client.ok("DELETE renamed")
    _lines, done = client.cmd("CREATE renamed")
    assert mailbox_id([done]) != created  # a new mailbox under an old name: a new id
    # INBOX keeps its id when renamed; the mailbox that gets its messages is a new one.
    inbox = mailbox_id(client.ok("STATUS INBOX (MAILBOXID)"))
    client.ok("RENAME INBOX old-inbox")
    assert mailbox_id(client.ok("STATUS INBOX (MAILBOXID)")) == inbox
    assert mailbox_id(client.ok("STATUS old-inbox (MAILBOXID)")) != inbox
    # A mailbox another program made gets one when first asked, the same for every session.
    other = account.maildir() / ".made-elsewhere"
    for sub in ("cur", "new", "tmp"):
        (other / sub).mkdir(parents=True)
    ids_seen = {mailbox_id(account.raw_login().ok("STATUS made-elsewhere (MAILBOXID)"))}
    ids_seen.add(mailbox_id(client.ok("EXAMINE made-elsewhere")))
    assert len(ids_seen) == 1


def test_emailid_and_threadid(account):
    client = account.raw_select()
    found = ids(client)
    emailids = [found[n][0] for n in (1, 2, 3, 4)]
    assert len(set(emailids)) == 4
    # One thread for the root and both replies, another for the message without any ids.
    assert found[1][1] == found[2][1] == found[3][1] != found[4][1]
    client.ok("CREATE Other")
    client.ok("COPY 1:2 Other")
    client.ok("MOVE 3 Other")
    client.ok("SELECT Other")
    moved = ids(client)
    assert [moved[n] for n in (1, 2, 3)] == [found[1], found[2], found[3]]
    # An identical message delivered anew has the same content, so the same EMAILID.
    deliver(account.maildir() / ".Other", ROOT, subdir="cur", name="1600000000.M9P3.oid:2,")
    client.ok("NOOP")
    assert ids(client, "4")[4] == found[1]
    assert client.ok(f"SEARCH EMAILID {found[1][0]}") == [b"* SEARCH 1 4\r\n"]
    assert client.ok(f"UID SEARCH THREADID {found[1][1]}") == [b"* SEARCH 1 2 3 4\r\n"]
    assert client.ok("SEARCH EMAILID Mnothing") == [b"* SEARCH\r\n"]
    for bad in (
        "SEARCH EMAILID",
        "SEARCH EMAILID (x)",
        'SEARCH THREADID "a b"',
        "SEARCH EMAILID a.b",
    ):
        assert client.status(bad) == b"BAD", bad
    assert client.ok("FETCH 1 (UID EMAILID)") == [
        f"* 1 FETCH (UID 1 EMAILID ({found[1][0]}))\r\n".encode()
    ]


def test_savedate(account):
    client = account.raw_select()
    # Delivered with names from 2017: that is when they were saved.
    line = client.ok("FETCH 1 (SAVEDATE)")[0]
    assert stamp(re.search(rb'SAVEDATE "([^"]+)"', line).group(1)) == 1500000001  # type: ignore[union-attr]
    # A copy is saved now; its INTERNALDATE is the original's.
    client.ok("CREATE Copies")
    client.ok("COPY 1 Copies")
    client.ok("SELECT Copies")
    today = time.strftime("%d-%b-%Y")
    assert client.ok(f"SEARCH SAVEDON {today}") == [b"* SEARCH 1\r\n"]
    assert client.ok("SEARCH SAVEDBEFORE 1-Jan-2017") == [b"* SEARCH\r\n"]
    assert client.ok("SEARCH SAVEDSINCE 1-Jan-2017 SAVEDATESUPPORTED") == [b"* SEARCH 1\r\n"]
    client.ok("SELECT INBOX")
    assert client.ok("SEARCH SAVEDBEFORE 1-Jan-2018") == [b"* SEARCH 1 2 3 4\r\n"]
    day = time.strftime("%d-%b-%Y", time.localtime(1500000002))
    assert client.ok(f"SEARCH SAVEDON {day}") == [b"* SEARCH 1 2 3 4\r\n"]
    # A name that does not start with the time: the INTERNALDATE stands in.
    path = deliver(account.maildir(), LONE, subdir="cur", name="odd-name:2,")
    os.utime(path, (1_000_000_000, 1_000_000_000))
    client.ok("NOOP")
    line = client.ok("FETCH 5 (SAVEDATE INTERNALDATE)")[0]
    dates = re.findall(rb'"([^"]+)"', line)
    assert len(dates) == 2 and dates[0] == dates[1]
    assert client.status("SEARCH SAVEDON 31-Feb-2020") == b"BAD"


def test_status_size(account):
    client = account.raw_login()
    expected = sum(len(crlf(raw)) for raw in (ROOT, REPLY, DEEP, LONE))
    assert client.ok("STATUS INBOX (SIZE MESSAGES)") == [
        f"* STATUS INBOX (SIZE {expected} MESSAGES 4)\r\n".encode()
    ]
    client.ok("CREATE Empty")
    assert client.ok("STATUS Empty (SIZE)") == [b"* STATUS Empty (SIZE 0)\r\n"]
    assert f"SIZE {expected}".encode() in b"".join(
        client.ok('LIST "" "INBOX" RETURN (STATUS (SIZE))')
    )
