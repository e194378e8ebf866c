"""UNAUTHENTICATE (RFC 8437) over real sockets: back to the not-authenticated state without an
expunge, everything the login brought forgotten (the selected mailbox, ENABLE, update contexts),
what the connection has kept (COMPRESS), and a login as another user on the same connection."""

from __future__ import annotations

import re
import zlib

import pytest

from support.imap import SHARED_PASSWORD, Raw, shared_imapd
from support.site import deliver

shared = shared_imapd("imap-ext-unauth")


@pytest.fixture
def account(shared):
    server = shared.account()
    for n in (1, 2):
        deliver(
            server.maildir(), b"Subject: m%d\n\nbody\n" % n, subdir="cur", name=f"{n}.M{n}P2.u:2,"
        )
    server.claim_recent()  # the flags here are about the login, not \Recent
    return server


def test_rfc_8437_example_and_another_login(shared, account):
    client = account.raw_login()
    client.ok("ENABLE CONDSTORE")
    client.ok("SELECT INBOX")
    client.ok("STORE 1 +FLAGS (\\Deleted)")
    client.ok("SEARCH RETURN (UPDATE) SEEN")
    assert client.ok("UNAUTHENTICATE") == []
    for command in ("SELECT INBOX", "FETCH 1 (FLAGS)", "STATUS INBOX (UIDNEXT)", "UNAUTHENTICATE"):
        assert client.status(command) == b"BAD", command
    assert client.status('CANCELUPDATE "t5"') == b"BAD"
    other = shared.account()
    deliver(other.maildir(), b"Subject: theirs\n\n.\n", subdir="cur", name="9.M9P2.u:2,")
    _lines, done = client.cmd(f'LOGIN {other.user} "{SHARED_PASSWORD}"')
    assert done.startswith(b"t") and b" OK [CAPABILITY " in done and b" UNAUTHENTICATE" in done
    lines = client.ok("SELECT INBOX")
    assert b"* 1 EXISTS\r\n" in lines
    # CONDSTORE is off; the message is new to this account: \Recent in its first session.
    assert client.ok("FETCH 1 (FLAGS)") == [b"* 1 FETCH (FLAGS (\\Recent))\r\n"]
    client.ok("UNAUTHENTICATE")
    client.ok(f'LOGIN {account.user} "{SHARED_PASSWORD}"')
    client.ok("SELECT INBOX")
    # Nothing was expunged: the \Deleted message is still there.
    assert client.ok("FETCH 1:* (FLAGS)") == [
        b"* 1 FETCH (FLAGS (\\Deleted))\r\n",
        b"* 2 FETCH (FLAGS ())\r\n",
    ]
    assert re.search(rb"\bUNAUTHENTICATE\b", client.ok("CAPABILITY")[0])


def test_failed_logins_are_still_counted(account):
    client = account.raw_login()
    client.ok("UNAUTHENTICATE")
    assert client.status(f"LOGIN {account.user} wrong") == b"NO"
    client.ok(f'LOGIN {account.user} "{SHARED_PASSWORD}"')
    client.ok("UNAUTHENTICATE")
    client.ok("LOGOUT")


class Deflated(Raw):
    def __init__(self, raw: Raw) -> None:
        super().__init__(raw.sock)
        self.counter = raw.counter
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        self.buf = self.inflate.decompress(raw.buf)

    def send(self, data: bytes) -> None:
        self.sock.sendall(self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH))

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += self.inflate.decompress(chunk)


def test_compression_outlives_the_login(account):
    client = account.raw_login()
    client.ok("COMPRESS DEFLATE")
    client = Deflated(client)
    client.ok("UNAUTHENTICATE")
    client.ok(f'LOGIN {account.user} "{SHARED_PASSWORD}"')
    assert b"COMPRESS=DEFLATE" not in client.ok("CAPABILITY")[0]
    assert b"* 2 EXISTS\r\n" in client.ok("SELECT INBOX")
