"""COMPRESS=DEFLATE (RFC 4978) over real sockets: raw DEFLATE both ways from right after the
tagged OK, literals both ways, IDLE, pipelining and data sent before the OK arrived, a second
COMPRESS, unknown mechanisms, and a client whose compressed data is garbage."""

from __future__ import annotations

import re
import zlib

import pytest

from support.daemons import wait_for
from support.imap import Raw, crlf, shared_imapd
from support.site import deliver

shared = shared_imapd("imap-ext-compress", "idle_keepalive = 0\n")


@pytest.fixture
def account(shared):
    return shared.account()


class Deflated(Raw):
    """A Raw client that compresses what it sends and decompresses what it reads, once on."""

    def __init__(self, raw: Raw) -> None:
        super().__init__(raw.sock)
        self.counter = raw.counter
        self.wire = b""  # compressed bytes received
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        self.buf = self.inflate.decompress(raw.buf)

    def send(self, data: bytes) -> None:
        self.sock.sendall(self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH))

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed; buffered {self.buf[:200]!r}")
        self.wire += chunk
        self.buf += self.inflate.decompress(chunk)


def compressed(client: Raw) -> Deflated:
    lines, done = client.cmd("COMPRESS DEFLATE")
    assert lines == [] and re.fullmatch(rb"t\d+ OK DEFLATE active\r\n", done), done
    return Deflated(client)


def test_compressed_session_with_literals_both_ways(account):
    maildir = account.maildir()
    body = b"Subject: big\n\n" + b"All work and no play makes a dull message.\n" * 4000
    deliver(maildir, body, subdir="cur", name="1700000000.M1P12.z:2,")
    client = compressed(account.raw_login())
    assert re.fullmatch(
        rb"t\d+ OK \[READ-WRITE\] SELECT completed\r\n", client.cmd("SELECT INBOX")[1]
    )
    lines = client.ok("FETCH 1 (RFC822.SIZE BODY.PEEK[])")
    wire = crlf(body)
    assert lines == [
        b"* 1 FETCH (RFC822.SIZE %d BODY[] {%d}\r\n%s)\r\n" % (len(wire), len(wire), wire)
    ]
    assert len(client.wire) < len(wire) // 10  # it really is compressed on the wire
    # A literal from the client: synchronizing (the `+` arrives compressed) and LITERAL+.
    client.send(b"a1 APPEND INBOX {%d}\r\n" % len(wire))
    assert client.line() == b"+ Ready for literal data\r\n"
    client.send(wire + b"\r\n")
    lines, done = client.until_tagged("a1")
    assert lines == [b"* 2 EXISTS\r\n", b"* 2 RECENT\r\n"]
    assert re.match(rb"a1 OK \[APPENDUID \d+ 2\] ", done)
    client.ok(b"APPEND INBOX {%d+}\r\n" % len(wire) + wire)
    assert client.ok("STATUS INBOX (MESSAGES)") == [b"* STATUS INBOX (MESSAGES 3)\r\n"]
    # COMPRESS=DEFLATE is no longer advertised, and a second COMPRESS is refused.
    assert b"COMPRESS=DEFLATE" not in client.ok("CAPABILITY")[0]
    lines, done = client.cmd("COMPRESS DEFLATE")
    assert re.fullmatch(rb"t\d+ NO \[COMPRESSIONACTIVE\] DEFLATE is active already\r\n", done)
    client.ok("LOGOUT")
    assert client.closed()


def test_idle_and_pipelining_through_compression(account):
    maildir = account.maildir()
    raw = account.raw_login()
    # The client compresses right after sending COMPRESS, before the OK is read: the server
    # must take those bytes as compressed data.
    raw.send(b"c1 COMPRESS DEFLATE\r\n")
    client = Deflated(raw)
    client.send(b"c2 SELECT INBOX\r\nc3 NOOP\r\n")
    assert raw.buf == b""
    assert re.fullmatch(rb"c1 OK DEFLATE active\r\n", _uncompressed_line(client))
    _lines, done = client.until_tagged("c3")
    assert done == b"c3 OK NOOP completed\r\n"
    client.send(b"i1 IDLE\r\n")
    assert client.line() == b"+ idling\r\n"
    deliver(maildir, b"Subject: pushed\n\nbody\n")
    assert client.line() == b"* 1 EXISTS\r\n"
    assert client.line() == b"* 1 RECENT\r\n"
    client.send(b"DONE\r\n")
    assert client.line() == b"i1 OK IDLE terminated\r\n"
    client.counter = 3
    client.alive()


def _uncompressed_line(client: Deflated) -> bytes:
    """The tagged OK of COMPRESS, which the server sends before compressing."""
    while b"\n" not in client.wire:
        chunk = client.sock.recv(65536)
        if not chunk:
            raise EOFError("closed")
        client.wire += chunk
    line, _, rest = client.wire.partition(b"\n")
    client.wire = rest
    client.buf += client.inflate.decompress(rest)
    return line + b"\n"


def test_bad_compress_commands(account):
    client = account.raw()
    assert client.status("COMPRESS DEFLATE") == b"BAD"  # not before login
    client.ok(f'LOGIN {account.user} "{account.passwords[account.user]}"')
    assert client.status("COMPRESS GZIP") == b"BAD"
    assert client.status("COMPRESS") == b"BAD"
    assert client.status("COMPRESS DEFLATE extra") == b"BAD"
    client.alive()


def test_garbage_compressed_data_ends_the_session_cleanly(account):
    client = compressed(account.raw_login())
    client.sock.sendall(b"\xff\xfe this is not deflate \x00\x01\x02\r\n")
    assert client.closed()
    wait_for(lambda: "bad compressed data" in account.log(), what="the log line")
    account.assert_healthy()


def test_a_line_that_inflates_enormously_is_cut_by_the_line_limit(account):
    """Ten megabytes of one line in a few kilobytes on the wire: refused as an over-long line
    (the limits apply to what the data inflates to), and the session goes on."""
    client = compressed(account.raw_login())
    client.send(b"a1 NOOP " + b"x" * 10_000_000 + b"\r\n")
    assert client.line() == b"a1 BAD Command line too long\r\n"
    client.alive()
