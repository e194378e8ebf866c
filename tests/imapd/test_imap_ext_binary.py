"""BINARY (RFC 3516) over real sockets: FETCH BINARY[] and BINARY.PEEK[] decode base64 and
quoted-printable, literal8 when the data holds NUL, partials, BINARY.SIZE, NO [UNKNOWN-CTE],
\\Seen, and APPEND of `~{n}` literals whose binary parts come back octet for octet."""

from __future__ import annotations

import base64
import re

import pytest

from support.imap import Raw, shared_imapd
from support.site import deliver

shared = shared_imapd("imap-ext-binary")

PAYLOAD = bytes(range(256)) * 3 + b"\r\n\n\r\x00end"
MIXED = (
    b"From: a@example.com\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nh=C3=A9llo=\r\nworld\r\n"
    b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n")
    + b"--XX\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
    b"begin 644 x\r\n"
    b"--XX\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: inner\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n"
    b"--XX\r\nContent-Type: text/plain\r\n\r\nplain 7bit\r\n"
    b"--XX--\r\n"
)
SINGLE = b"Subject: single\r\nContent-Transfer-Encoding: base64\r\n\r\nAGJpbgBhcnk=\r\n"


def literal_data(line: bytes) -> bytes:
    """The data of the first literal or literal8 in a response line."""
    found = re.search(rb"~?\{(\d+)\}\r\n", line)
    assert found, line
    return line[found.end() : found.end() + int(found.group(1))]


@pytest.fixture
def client(shared) -> Raw:
    server = shared.account()
    for n, raw in enumerate((MIXED, SINGLE), 1):
        deliver(
            server.maildir(), raw.replace(b"\r\n", b"\n"), subdir="cur", name=f"{n}.M{n}P1.b:2,"
        )
    server.claim_recent()  # flags here are about \Seen alone
    return server.raw_select()


def test_decoded_sections(client):
    lines = client.ok("FETCH 1 (BINARY.PEEK[1])")
    assert lines == ["* 1 FETCH (BINARY[1] {11}\r\nhélloworld)\r\n".encode()]
    # NUL in the data: a literal8, the octets exactly as before encoding.
    line = client.ok("FETCH 1 (BINARY.PEEK[2])")[0]
    assert line.startswith(b"* 1 FETCH (BINARY[2] ~{%d}\r\n" % len(PAYLOAD))
    assert literal_data(line) == PAYLOAD
    line = client.ok("FETCH 1 (BINARY.PEEK[2]<257.10>)")[0]  # no NUL in this window
    assert line == b"* 1 FETCH (BINARY[2]<257> {10}\r\n" + PAYLOAD[257:267] + b")\r\n"
    # A message/rfc822 part is given as it is; its own body decodes through its number.
    assert literal_data(client.ok("FETCH 1 (BINARY.PEEK[4])")[0]).startswith(b"Subject: inner")
    assert client.ok("FETCH 1 (BINARY.PEEK[4.1])") == [b"* 1 FETCH (BINARY[4.1] {5}\r\nhello)\r\n"]
    assert client.ok("FETCH 1 (BINARY.PEEK[5])") == [
        b"* 1 FETCH (BINARY[5] {10}\r\nplain 7bit)\r\n"
    ]
    assert client.ok("FETCH 1 (BINARY.PEEK[9])") == [b"* 1 FETCH (BINARY[9] {0}\r\n)\r\n"]
    # The whole of a single-part message: body decoded, its encoding field saying so.
    line = client.ok("FETCH 2 (BINARY.PEEK[])")[0]
    assert literal_data(line) == (
        b"Subject: single\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00bin\x00ary"
    )
    assert literal_data(client.ok("FETCH 2 (BINARY.PEEK[1])")[0]) == b"\x00bin\x00ary"


def test_sizes(client):
    assert client.ok("FETCH 1:2 (BINARY.SIZE[1] BINARY.SIZE[2])") == [
        b"* 1 FETCH (BINARY.SIZE[1] 11 BINARY.SIZE[2] %d)\r\n" % len(PAYLOAD),
        b"* 2 FETCH (BINARY.SIZE[1] 8 BINARY.SIZE[2] 0)\r\n",
    ]
    # BINARY.SIZE never sets \\Seen.
    assert client.ok("FETCH 1 (FLAGS)") == [b"* 1 FETCH (FLAGS ())\r\n"]


def test_unknown_encoding_and_bad_sections(client):
    _lines, done = client.cmd("FETCH 1 (BINARY.PEEK[3])")
    assert done.split(b" ", 2)[1:] == [
        b"NO",
        b"[UNKNOWN-CTE] Unknown Content-Transfer-Encoding\r\n",
    ]
    _lines, done = client.cmd("FETCH 1 (BINARY.SIZE[3])")
    assert b"NO [UNKNOWN-CTE]" in done
    for bad in ("BINARY[1.MIME]", "BINARY[TEXT]", "BINARY.SIZE[1]<0.2>", "BINARY[0]", "BINARY"):
        assert client.status(f"FETCH 1 ({bad})") == b"BAD", bad
    client.alive()


def test_binary_sets_seen_unless_peek(client):
    client.ok("FETCH 2 (BINARY.PEEK[1])")
    assert client.ok("FETCH 2 (FLAGS)") == [b"* 2 FETCH (FLAGS ())\r\n"]
    lines = client.ok("FETCH 2 (BINARY[1])")
    assert lines[0].endswith(b" FLAGS (\\Seen))\r\n"), lines
    client.ok("EXAMINE INBOX")
    client.ok("FETCH 1 (BINARY[1])")  # read-only: no \\Seen
    assert client.ok("FETCH 1 (FLAGS)") == [b"* 1 FETCH (FLAGS ())\r\n"]


def test_append_literal8_keeps_binary_parts_exact(shared):
    server = shared.account()
    client = server.raw_select()
    message = (
        b"From: a@x\r\nSubject: bin\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=YY\r\n\r\n"
        b"--YY\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--YY\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
        b"\r\n" + PAYLOAD + b"\r\n--YY--\r\n"
    )
    # A synchronizing literal8: the server invites it with "+".
    client.send(b"a1 APPEND INBOX ~{%d}\r\n" % len(message))
    assert client.raw_line().startswith(b"+ ")
    client.send(message + b"\r\n")
    _lines, done = client.until_tagged("a1")
    assert done.startswith(b"a1 OK [APPENDUID ")
    # A non-synchronizing one, and a plain message sent as a literal8: stored as it is.
    plain = b"Subject: plain\r\n\r\nno binary here\r\n"
    client.send(b"a2 APPEND INBOX ~{%d+}\r\n%s\r\n" % (len(plain), plain))
    _lines, done = client.until_tagged("a2")
    assert done.startswith(b"a2 OK [APPENDUID ")
    client.ok("NOOP")
    line = client.ok("FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])")[0]
    assert literal_data(line) == PAYLOAD
    assert line.endswith(b" BINARY.SIZE[2] %d)\r\n" % len(PAYLOAD))
    # What a client without BINARY sees: the part in base64, its header saying so.
    mime = literal_data(client.ok("FETCH 1 (BODY.PEEK[2.MIME])")[0])
    assert mime == (
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    body = literal_data(client.ok("FETCH 1 (BODY.PEEK[2])")[0])
    assert base64.b64decode(body) == PAYLOAD
    assert literal_data(client.ok("FETCH 2 (BODY.PEEK[])")[0]) == plain
    assert literal_data(client.ok("FETCH 1 (BINARY.PEEK[1])")[0]) == b"hello"
