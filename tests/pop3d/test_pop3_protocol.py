"""pop3d over raw sockets: exact bytes on the wire (CRLF conversion, dot-stuffing, sizes), bare-LF
clients, a whole pipelined batch in one write, netcat, and half-closed sockets."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess

import pytest

from support.daemons import wait_for
from support.pop3 import POP3_USERS
from support.site import deliver

# (stored bytes, the CRLF form sent and counted): written out by hand, not computed. A message
# without a final line end gets none added (as Dovecot): RETR's multi-line response still ends it
# with CRLF before the terminating "." (RFC 1939 3), and that CRLF is framing, not counted.
WIRE_TABLE = [
    (b"", b""),
    (b"Subject: plain\n\nbody\n", b"Subject: plain\r\n\r\nbody\r\n"),
    (b"Subject: no final newline\n\nbody", b"Subject: no final newline\r\n\r\nbody"),
    (b"Subject: crlf on disk\r\n\r\nbody\r\n", b"Subject: crlf on disk\r\n\r\nbody\r\n"),
    (b"Subject: mixed\r\n\nline\r\r\nend\n", b"Subject: mixed\r\n\r\nline\r\r\nend\r\n"),
    (b"Subject: bare cr\n\na\rb\n\r\n", b"Subject: bare cr\r\n\r\na\rb\r\n\r\n"),
    (b"\r", b"\r"),
    (b"ends in bare cr\r", b"ends in bare cr\r"),
    (b"\n\n", b"\r\n\r\n"),
    (b".\n", b".\r\n"),
    (b"S: dots\n\n.\n..\n...\n. x\n.\r\n", b"S: dots\r\n\r\n.\r\n..\r\n...\r\n. x\r\n.\r\n"),
    (b"S: last line a dot\n\n.", b"S: last line a dot\r\n\r\n."),
    (b"S: cr before dot\n\na\r.b\n", b"S: cr before dot\r\n\r\na\r.b\r\n"),
    (b"S: binary\n\n\x00\xff\xfe\x1b[0m\n", b"S: binary\r\n\r\n\x00\xff\xfe\x1b[0m\r\n"),
]

MEGA_LINE = b"S: one very long line\n\n" + b"x" * (1024 * 1024) + b"\n.end\n"
MEGA_WIRE = b"S: one very long line\r\n\r\n" + b"x" * (1024 * 1024) + b"\r\n.end\r\n"


def stuffed(wire: bytes) -> bytes:
    """RFC 1939 section 3 byte-stuffing plus the terminating line; a last line without its
    CRLF gets one."""
    lines = wire.split(b"\r\n")
    if lines[-1] == b"":
        lines.pop()
    return (
        b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
        + b".\r\n"
    )


def test_stuffed_helper_itself():
    assert stuffed(b"") == b".\r\n"
    assert stuffed(b"a\r\n.\r\n..b\r\n") == b"a\r\n..\r\n...b\r\n.\r\n"
    assert stuffed(b"a\r\n.") == b"a\r\n..\r\n.\r\n"


def test_sizes_and_retr_bytes_are_exact(pop3d, site):
    server = pop3d()
    maildir = site.maildir("alice")
    table = [*WIRE_TABLE, (MEGA_LINE, MEGA_WIRE)]
    for data, _ in table:
        deliver(maildir, data)
    client = server.raw_login()
    client.send(b"STAT\r\n")
    assert client.line() == b"+OK %d %d\r\n" % (len(table), sum(len(w) for _, w in table))
    client.send(b"LIST\r\n")
    listing = b"".join(b"%d %d\r\n" % (n, len(w)) for n, (_, w) in enumerate(table, 1))
    assert client.until(b".\r\n") == b"+OK %d messages\r\n" % len(table) + listing + b".\r\n"
    for number, (data, wire) in enumerate(table, 1):
        client.send(b"RETR %d\r\n" % number)
        expected = b"+OK %d octets\r\n" % len(wire) + stuffed(wire)
        assert client.until(b".\r\n") == expected, data[:40]
    client.send(b"QUIT\r\n")
    assert client.line().startswith(b"+OK")


TOP_TABLE = [
    (b"H: 1\n\nb1\n.b2\nb3\n", 2, b"H: 1\r\n\r\nb1\r\n..b2\r\n"),
    (b"H: 1\n\nb1\n.b2\nb3\n", 0, b"H: 1\r\n\r\n"),
    (b"H: 1\nH: 2\n\nb1", 9, b"H: 1\r\nH: 2\r\n\r\nb1\r\n"),
    (b"H: only a header\n", 3, b"H: only a header\r\n"),
    (b".H: dotted\n\n.\n", 1, b"..H: dotted\r\n\r\n..\r\n"),
    (b"\nbody without header\nline 2\n", 1, b"\r\nbody without header\r\n"),
    (b"", 5, b""),
]


def test_top_bytes(pop3d, site):
    server = pop3d()
    maildir = site.maildir("alice")
    for data, _, _ in TOP_TABLE:
        deliver(maildir, data)
    client = server.raw_login()
    for number, (data, lines, expected) in enumerate(TOP_TABLE, 1):
        client.send(b"TOP %d %d\r\n" % (number, lines))
        assert client.until(b".\r\n") == b"+OK\r\n" + expected + b".\r\n", data


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"], ids=["crlf", "bare-lf"])
def test_pipelined_batch_in_one_write(pop3d, site, eol):
    server = pop3d()
    maildir = site.maildir("alice")
    first = deliver(maildir, b"Subject: a\n\nbody a\n")
    second = deliver(maildir, b"Subject: b\n\n.\n")
    commands = [
        b"CAPA",
        b"USER alice",
        b"PASS secret",
        b"STAT",
        b"LIST",
        b"UIDL 2",
        b"RETR 2",
        b"TOP 1 0",
        b"DELE 1",
        b"LIST 1",
        b"RSET",
        b"NOOP",
        b"DELE 1",
        b"QUIT",
    ]
    client = server.raw()
    client.send(eol.join(commands) + eol)
    replies = []
    while True:
        try:
            replies.append(client.line())
        except EOFError:
            break
    text = b"".join(replies)
    capa, _, rest = text.partition(b"\r\n.\r\n")
    assert capa.startswith(b"+OK Capability list follows\r\nTOP\r\n")
    assert rest == (
        b"+OK\r\n"
        b"+OK Logged in, 2 messages (39 octets)\r\n"
        b"+OK 2 39\r\n"
        b"+OK 2 messages\r\n1 22\r\n2 17\r\n.\r\n"
        b"+OK 2 " + second.name.encode() + b"\r\n"
        b"+OK 17 octets\r\nSubject: b\r\n\r\n..\r\n.\r\n"
        b"+OK\r\nSubject: a\r\n\r\n.\r\n"
        b"+OK Message 1 deleted\r\n"
        b"-ERR Message 1 already deleted\r\n"
        b"+OK Maildrop reset\r\n"
        b"+OK\r\n"
        b"+OK Message 1 deleted\r\n"
        b"+OK maildaemons POP3 server signing off (1 messages left)\r\n"
    )
    assert not first.exists() and second.exists()


def test_pipelined_sasl_continuation(pop3d):
    server = pop3d()
    client = server.raw()
    client.send(b"AUTH PLAIN\nAGFsaWNlAHNlY3JldA==\nSTAT\nQUIT\n")
    assert client.line() == b"+ \r\n"
    assert client.line().startswith(b"+OK Logged in")
    assert client.line() == b"+OK 0 0\r\n"
    assert client.line().startswith(b"+OK")
    assert client.closed()


def test_bare_lf_session_line_by_line(pop3d, site):
    server = pop3d()
    deliver(site.maildir("bob"), b"Subject: lf\n\nline\n")
    client = server.raw()
    password = POP3_USERS["bob"].encode()
    for command, reply in [
        (b"USER bob\n", b"+OK\r\n"),
        (b"PASS " + password + b"\n", b"+OK Logged in, 1 messages (21 octets)\r\n"),
        (b"STAT\n", b"+OK 1 21\r\n"),
        (b"LIST 1\n", b"+OK 1 21\r\n"),
        (b"NOOP\n", b"+OK\r\n"),
    ]:
        client.send(command)
        assert client.line() == reply, command
    client.send(b"RETR 1\n")
    assert client.until(b".\r\n") == b"+OK 21 octets\r\nSubject: lf\r\n\r\nline\r\n.\r\n"
    client.send(b"DELE 1\nQUIT\n")
    assert client.line() == b"+OK Message 1 deleted\r\n"
    assert client.line().startswith(b"+OK")
    assert client.closed()
    assert list((site.mail / "bob" / "new").iterdir()) == []


def test_command_split_across_writes(pop3d):
    server = pop3d()
    client = server.raw()
    for piece in (b"US", b"ER al", b"ice\r"):
        client.send(piece)
        client.sock.settimeout(0.05)
        with pytest.raises(TimeoutError):
            client.line()  # no reply before the line is complete
    client.sock.settimeout(10)
    client.send(b"\nPASS sec")
    assert client.line() == b"+OK\r\n"
    client.send(b"ret\r\n")
    assert client.line().startswith(b"+OK Logged in")


@pytest.mark.skipif(shutil.which("nc") is None, reason="netcat-openbsd not installed")
def test_netcat_session(pop3d, site):
    server = pop3d()
    deliver(site.maildir("alice"), b"Subject: nc\n\n.hidden\n")
    script = b"USER alice\nPASS secret\nLIST\nRETR 1\nQUIT\n"
    result = subprocess.run(
        ["nc", "-N", "127.0.0.1", str(server.port)],
        input=script,
        capture_output=True,
        timeout=20,
        check=False,
    )
    lines = result.stdout.split(b"\r\n")
    assert lines[0].startswith(b"+OK maildaemons POP3 server ready")
    assert lines[1:] == [
        b"+OK",
        b"+OK Logged in, 1 messages (24 octets)",
        b"+OK 1 messages",
        b"1 24",
        b".",
        b"+OK 24 octets",
        b"Subject: nc",
        b"",
        b"..hidden",
        b".",
        b"+OK maildaemons POP3 server signing off (1 messages left)",
        b"",
    ]


def test_half_closed_socket_still_gets_every_reply(pop3d, site):
    server = pop3d()
    path = deliver(site.maildir("alice"), b"Subject: x\n\ny\n")
    client = server.raw()
    client.send(b"USER alice\r\nPASS secret\r\nDELE 1\r\nQUIT\r\n")
    client.sock.shutdown(socket.SHUT_WR)
    assert client.line() == b"+OK\r\n"
    assert client.line().startswith(b"+OK Logged in")
    assert client.line() == b"+OK Message 1 deleted\r\n"
    assert client.line() == b"+OK maildaemons POP3 server signing off (0 messages left)\r\n"
    assert client.closed()
    assert not path.exists()


def test_half_closed_without_quit_deletes_nothing(pop3d, site):
    server = pop3d()
    path = deliver(site.maildir("alice"), b"Subject: x\n\ny\n")
    client = server.raw()
    client.send(b"USER alice\r\nPASS secret\r\nDELE 1\r\n")
    client.sock.shutdown(socket.SHUT_WR)
    assert client.line() == b"+OK\r\n"
    assert client.line().startswith(b"+OK Logged in")
    assert client.line() == b"+OK Message 1 deleted\r\n"
    assert client.closed()
    assert path.exists()
    wait_for(lambda: "connection closed by client" in server.daemon.log(), what="session end")
    server.assert_serving()


def test_reset_by_client_mid_retr_loses_nothing(pop3d, site):
    server = pop3d()
    maildir = site.maildir("alice")
    big = deliver(maildir, b"Subject: big\n\n" + b"line\n" * 400_000)
    small = deliver(maildir, b"Subject: small\n\nx\n")
    client = server.raw_login()
    client.send(b"DELE 2\r\nRETR 1\r\n")
    assert client.line() == b"+OK Message 2 deleted\r\n"
    assert client.line().startswith(b"+OK ")
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # RST with most of the message unread
    wait_for(lambda: "connection closed by client" in server.daemon.log(), what="session end")
    assert big.exists() and small.exists()
    server.assert_serving()
