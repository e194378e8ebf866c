"""IMAP4rev2 (RFC 9051) beside IMAP4rev1 over real sockets: both advertised, rev2 switched on per
session by ENABLE IMAP4rev2, and then the differences of RFC 9051 Appendix E: no \\Recent (and
BAD for the keys that name it), ESEARCH for every SEARCH, SELECT's LIST response, \\NonExistent
levels in LIST, $Junk and $NotJunk; a rev1 session beside it sees none of that."""

from __future__ import annotations

import re

import pytest

from support.imap import Raw, crlf, shared_imapd
from support.site import deliver

shared = shared_imapd("imap-ext-rev2")


@pytest.fixture
def account(shared):
    server = shared.account()
    for n in (1, 2, 3):
        flags = "S" if n == 2 else ""
        deliver(
            server.maildir(),
            b"Subject: m%d\n\nbody\n" % n,
            subdir="cur",
            name=f"{n}.M{n}P7.r2:2,{flags}",
        )
    server.claim_recent()  # 1 to 3 are old; only the message below is \Recent
    deliver(server.maildir(), b"Subject: new\n\nbody\n", subdir="new", name="4.M4P7.r2")
    return server


def rev2(client: Raw) -> Raw:
    assert client.ok("ENABLE IMAP4rev2") == [b"* ENABLED IMAP4rev2\r\n"]
    return client


def test_both_advertised_and_enable(account):
    client = account.raw()
    capabilities = client.ok("CAPABILITY")[0].split()
    assert capabilities[2:4] == [b"IMAP4rev1", b"IMAP4rev2"]
    assert client.status("ENABLE IMAP4rev2") == b"BAD"  # not before login
    client.ok(f'LOGIN {account.user} "{account.passwords[account.user]}"')
    rev2(client)
    assert client.ok("ENABLE IMAP4rev2 CONDSTORE") == [b"* ENABLED CONDSTORE\r\n"]  # once only


def test_select_and_fetch_in_rev2(account):
    client = rev2(account.raw_login())
    lines = client.ok("SELECT INBOX")
    assert (
        lines[0]
        == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded $Junk $NotJunk)\r\n"
    )
    assert b"$Junk $NotJunk" in lines[1] and lines[1].startswith(b"* OK [PERMANENTFLAGS (")
    assert b"* 4 EXISTS\r\n" in lines
    assert b'* LIST (\\HasNoChildren) "." INBOX\r\n' in lines
    assert not [line for line in lines if b"RECENT" in line or b"UNSEEN" in line]
    # Message 4 was new: \Recent for this session under rev1, never shown under rev2.
    assert client.ok("FETCH 4 (FLAGS)") == [b"* 4 FETCH (FLAGS ())\r\n"]
    client.ok("STORE 4 +FLAGS ($Junk)")
    assert client.ok("FETCH 4 (FLAGS)") == [b"* 4 FETCH (FLAGS ($Junk))\r\n"]
    deliver(account.maildir(), b"Subject: later\n\nbody\n", subdir="new", name="5.M5P7.r2")
    assert client.ok("NOOP") == [b"* 5 EXISTS\r\n"]  # and no RECENT
    assert client.ok("FETCH 5 (FLAGS)") == [b"* 5 FETCH (FLAGS ())\r\n"]


def test_search_answers_esearch(account):
    client = rev2(account.raw_select())
    tag = f"t{client.counter + 1}"
    assert client.ok("SEARCH UNSEEN") == [f'* ESEARCH (TAG "{tag}") ALL 1,3:4\r\n'.encode()]
    tag = f"t{client.counter + 1}"
    assert client.ok("UID SEARCH SEEN") == [f'* ESEARCH (TAG "{tag}") UID ALL 2\r\n'.encode()]
    tag = f"t{client.counter + 1}"
    assert client.ok("SEARCH SUBJECT nothing") == [f'* ESEARCH (TAG "{tag}")\r\n'.encode()]
    tag = f"t{client.counter + 1}"
    assert client.ok("SEARCH RETURN (COUNT) ALL") == [
        f'* ESEARCH (TAG "{tag}") COUNT 4\r\n'.encode()
    ]
    lines = client.ok("SEARCH MODSEQ 1")
    assert re.fullmatch(rb'\* ESEARCH \(TAG "t\d+"\) ALL 1:4 MODSEQ \d+\r\n', lines[-1]), lines
    for bad in (
        "SEARCH RECENT",
        "SEARCH NEW",
        "SEARCH OLD",
        "SEARCH OR SEEN NOT RECENT",
        "SORT (DATE) UTF-8 NEW",
        "THREAD REFERENCES UTF-8 OLD",
        "STATUS INBOX (RECENT)",
        'LIST "" % RETURN (STATUS (RECENT))',
    ):
        assert client.status(bad) == b"BAD", bad
    # SEARCHRES is part of rev2.
    assert client.ok("SEARCH RETURN (SAVE) SEEN") == []
    lines = client.ok("FETCH $ (UID)")
    assert len(lines) == 1 and lines[0].startswith(b"* 2 FETCH (UID 2 ")  # and MODSEQ, enabled
    client.alive()


def test_list_in_rev2(account):
    # A folder another program made, under a level that is no folder of its own.
    for sub in ("cur", "new", "tmp"):
        (account.path / ".lvl.child" / sub).mkdir(parents=True)
    rev1 = account.raw_login()
    assert rev1.ok('LIST "" lvl*') == [
        b'* LIST (\\Noselect \\HasChildren) "." lvl\r\n',
        b'* LIST (\\HasNoChildren) "." lvl.child\r\n',
    ]
    client = rev2(account.raw_login())
    assert client.ok('LIST "" lvl*') == [
        b'* LIST (\\NonExistent \\HasChildren) "." lvl\r\n',
        b'* LIST (\\HasNoChildren) "." lvl.child\r\n',
    ]
    assert client.ok('LIST "" ""') == [b'* LIST (\\Noselect) "." ""\r\n']


def test_rev1_beside_rev2_is_unchanged(account):
    rev1 = account.raw_login()
    newer = rev2(account.raw_login())
    lines = rev1.ok("SELECT INBOX")
    assert b"* 1 RECENT\r\n" in lines and b"$Junk" not in lines[0]
    assert re.search(rb"\* OK \[UNSEEN 1\]", b"".join(lines))
    assert rev1.ok("SEARCH UNSEEN") == [b"* SEARCH 1 3 4\r\n"]
    assert rev1.ok("FETCH 4 (FLAGS)") == [b"* 4 FETCH (FLAGS (\\Recent))\r\n"]
    assert rev1.ok("SEARCH RECENT") == [b"* SEARCH 4\r\n"]
    newer.ok("EXAMINE INBOX")
    assert newer.ok("FETCH 4 (FLAGS)") == [b"* 4 FETCH (FLAGS ())\r\n"]
    # ENABLE while a mailbox is selected: from then on.
    rev1.ok("ENABLE IMAP4rev2")
    assert rev1.ok("FETCH 4 (FLAGS)") == [b"* 4 FETCH (FLAGS ())\r\n"]
    # UNAUTHENTICATE forgets it with the rest of the login.
    rev1.ok("UNAUTHENTICATE")
    rev1.ok(f'LOGIN {account.user} "{account.passwords[account.user]}"')
    rev1.ok("SELECT INBOX")
    assert rev1.ok("SEARCH SEEN") == [b"* SEARCH 2\r\n"]


def test_literal_minus_in_rev2(account):
    client = rev2(account.raw_login())
    message = crlf(b"Subject: lit\n\n" + b"y" * 3000 + b"\n")
    client.send(b"x1 APPEND INBOX {%d+}\r\n%s\r\n" % (len(message), message))
    _lines, done = client.until_tagged("x1")
    assert done.startswith(b"x1 OK [APPENDUID ")
