"""Issue 7: imapgw, the 4711 purpose-string gateway of seed 000.

Unit tests of the purpose string (parse, mask, read with its 1024-byte limit, IMAP quoting), then
end to end against our running imapd with seeded Maildirs: each purpose sent whole, byte by byte
and split across writes, compared byte for byte with the same commands sent straight to imapd for a
twin user (what a CGI sees is the seed's shape: banner, the server's response bytes, close); a 5,000
message mailbox; every error case as one `NO <reason>` line; the password never in the log;
50 concurrent clients; TERM with sessions open; and the daemon-mode start-up contract.

A scripted fake IMAP server stands in where our imapd cannot: one that never answers (timeouts),
one that records the exact commands the gateway sends, one that hangs up mid-conversation.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from docopt import docopt

from common import service, turns
from common.stats import query as stats_query
from imapd.gateway import main as gw_main
from imapd.gateway.client import command_arg, wait_readable
from imapd.gateway.purpose import MAX_PURPOSE, Purpose, masked, parse_purpose, read_purpose
from imapd.gateway.replies import EMPTY_MAILBOX, GatewayError
from imapd.gateway.session import Gateway
from support.clients import LineClient
from support.daemons import (
    BIN,
    Daemon,
    DaemonFactory,
    child_pids,
    ended_sessions,
    free_port,
    is_zombie,
    new_session,
    pooled,
    port_open,
    session_ended,
    session_log,
    session_tokens,
    sessions_running,
    wait_for,
)
from support.site import MailSite

BANNER = b"OK IMAP daemon client ready (DMIS Rulez!)...\n"
PASSWORD = "Sekr3t#Pw0rd"  # bob's: it holds a '#', the field separator
USERS = {"alice": "pw", "carol": "pw", "bob": PASSWORD}
BIG_BODY = b"".join(
    b"line %05d of a long message body, beyond the seed's 64 KiB buffer\r\n" % i
    for i in range(2000)
)
MESSAGES = [
    (
        b"From: Bob <bob@example.com>\r\nTo: alice@example.com\r\nSubject: first one\r\n"
        b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\n"
        b"Hello Alice.\r\nSecond line.\r\n"
    ),
    # The seed stopped reading at the first "OK FETCH": this body holds it, and a tagged line.
    (
        b"From: Carol <carol@example.net>\r\nSubject: tricky body\r\n"
        b"Date: Tue, 02 Jan 2024 11:30:00 +0100\r\n\r\n"
        b"This body says OK FETCH early.\r\n3 OK FETCH completed\r\n"
        b"* 9 FETCH (FLAGS ())\r\nEnd.\r\n"
    ),
    (
        b"From: Dave <dave@example.org>\r\nSubject: big one\r\n"
        b"Date: Wed, 03 Jan 2024 12:00:00 +0000\r\n\r\n" + BIG_BODY
    ),
]
HEADERS_FETCH = b"(body[header.fields (from subject date)])"
NO_LINE = re.compile(rb"NO [^\r\n]+\n")
NO_LINE_FOR_HOST = b"NO IMAP host '192.0.2.9' not allowed\n"
TIMEOUT = 60.0


# -- helpers -----------------------------------------------------------------------------------


def seed_maildir(path: Path, messages: list[bytes], sub: str = "new") -> None:
    """Write messages straight into new/ or cur/ with fixed names, so twins are identical."""
    for name in ("cur", "new", "tmp"):
        (path / name).mkdir(parents=True, exist_ok=True)
    for number, data in enumerate(messages, 1):
        suffix = ":2," if sub == "cur" else ""
        (path / sub / f"{1700000000 + number}.M{number}P1.testhost{suffix}").write_bytes(data)


def recv_all(sock: socket.socket, buf: bytes = b"") -> bytes:
    """Everything until the gateway closes."""
    chunks = [buf]
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def pieces(data: bytes, mode: str) -> list[bytes]:
    """The purpose string whole, byte by byte, or split mid-field with the `$` on its own."""
    if mode == "whole":
        return [data]
    if mode == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    third = len(data) // 3
    return [data[:third], data[third : 2 * third], data[2 * third : -1], data[-1:]]


def connect(port: int) -> tuple[socket.socket, bytes]:
    """A CGI client that has read the banner line; returns the socket and anything after it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = LineClient(sock)
    assert client.line() == BANNER
    return sock, client.buf


def ask(port: int, data: bytes, mode: str = "whole") -> bytes:
    """Send a purpose string as a CGI does; returns all the gateway wrote after the banner."""
    sock, rest = connect(port)
    with sock:
        for piece in pieces(data, mode):
            sock.sendall(piece)
            if mode != "whole":
                time.sleep(0.002)  # pacing only: lets each piece leave as its own segment
        return recv_all(sock, rest)


def purpose(
    what: str,
    msgnum: int | str = 0,
    user: str = "alice",
    mailbox: str = "",
    host: str = "127.0.0.1",
    password: str | None = None,
) -> bytes:
    password = USERS.get(user, "pw") if password is None else password
    return f"{what}#{msgnum}#{host}#{user}#{password}#{mailbox}$".encode()


def fetch_numbers(data: bytes) -> list[int]:
    return [int(n) for n in re.findall(rb"^\* (\d+) FETCH ", data, re.M)]


class RawImap:
    """The test's IMAP client for the twin transcript: raw response bytes, literals by length."""

    def __init__(self, port: int) -> None:
        self.io = LineClient(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
        assert self.io.line().startswith(b"* OK")

    def command(self, tag: str, text: bytes) -> bytes:
        self.io.send(tag.encode() + b" " + text + b"\r\n")
        out = b""
        continuation = False
        while True:
            line = self.io.line()
            out += line
            literal = re.search(rb"\{(\d+)\}\r\n$", line)
            if literal:
                out += self.exact(int(literal.group(1)))
                continuation = True
                continue
            if not continuation and line.startswith(tag.encode() + b" "):
                return out
            continuation = False

    def exact(self, size: int) -> bytes:
        while len(self.io.buf) < size:
            chunk = self.io.sock.recv(65536)
            if not chunk:
                raise EOFError("closed inside a literal")
            self.io.buf += chunk
        data, self.io.buf = self.io.buf[:size], self.io.buf[size:]
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.command("9", b"LOGOUT")
        self.io.close()


def twin_transcript(
    port: int, user: str, what: str, msgnum: int, count: int = len(MESSAGES)
) -> bytes:
    """What the gateway should return, from the seed's own commands sent straight to imapd."""
    imap = RawImap(port)
    try:
        assert imap.command("1", f"LOGIN {user} pw".encode()).startswith(b"1 OK")
        assert b"2 OK" in imap.command("2", b"SELECT INBOX")
        if what == "headers":
            return imap.command("3", f"FETCH 1:{count} ".encode() + HEADERS_FETCH)
        if what == "body":
            return imap.command("3", f"FETCH {msgnum} body[TEXT]".encode())
        return imap.command("3", f"STORE {msgnum} +FLAGS (\\Deleted)".encode()) + imap.command(
            "4", b"EXPUNGE"
        )
    finally:
        imap.close()


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists() or is_zombie(pid)


# -- a scripted fake IMAP server ---------------------------------------------------------------


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


# A literal that holds what looks like the tagged end must not end the response.
FAKE_FETCH = (
    b"* 1 FETCH (BODY[HEADER.FIELDS (FROM SUBJECT DATE)] "
    + literal(b"Subject: one\r\n3 OK FETCH completed\r\n\r\n")
    + b")\r\n"
    b"* 2 FETCH (BODY[HEADER.FIELDS (FROM SUBJECT DATE)] "
    + literal(b"Subject: two\r\n\r\n")
    + b" FLAGS (\\Seen))\r\n"
    b"3 OK FETCH completed\r\n"
)


@dataclass
class FakeImap:
    """A loopback IMAP server with scripted replies, recording every command line it gets.

    `greeting=None` never says a word (a server that accepts and hangs); a reply of None hangs up.
    """

    greeting: bytes | None = b"* OK fake IMAP ready\r\n"
    replies: dict[str, Callable[[str], bytes | None]] = field(default_factory=dict)
    commands: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def reply(self, verb: str, tag: str) -> bytes | None:
        if verb in self.replies:
            return self.replies[verb](tag)
        if verb == "SELECT":
            return f"* 2 EXISTS\r\n* 0 RECENT\r\n{tag} OK [READ-WRITE] SELECT done\r\n".encode()
        if verb == "FETCH":
            return FAKE_FETCH
        if verb == "LOGOUT":
            return f"* BYE bye\r\n{tag} OK LOGOUT completed\r\n".encode()
        return f"{tag} OK {verb} completed\r\n".encode()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT)
        if self.greeting is None:
            return  # hold the connection open and never answer
        io = LineClient(conn)
        with contextlib.suppress(OSError, EOFError):
            conn.sendall(self.greeting)
            while True:
                line = io.line()
                self.commands.append(line)
                tag, _, rest = line.decode().partition(" ")
                answer = self.reply(rest.split(" ", 1)[0].strip().upper(), tag)
                if answer is None:
                    break
                conn.sendall(answer)
        conn.close()

    def close(self) -> None:
        self.listener.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.close()


@pytest.fixture
def fake_imap() -> Iterator[Callable[..., FakeImap]]:
    made: list[FakeImap] = []

    def make(**kwargs: object) -> FakeImap:
        server = FakeImap(**kwargs)  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


# -- the running stack: imapd with seeded Maildirs, and gateways in front of it ---------------

MODES = ("whole", "bytes", "split")
PURPOSES = (("headers", 0), ("body", 2), ("delete", 2))
# Each end-to-end purpose test has its own user and twin (same messages, same file names), so
# one imapd serves them all: "aheaderswhole" goes through the gateway, "theaderswhole" direct.
PAIRS = [(f"a{what}{mode}", f"t{what}{mode}") for what, _ in PURPOSES for mode in MODES]


def imapd_config(site: MailSite) -> str:
    # Every gateway client comes from the web server's one address, and so does every
    # gateway connection to imapd: the per-address limits must allow the test's 50.
    return site.config("max_per_address = 200\n")


def start_gateway(
    factory: DaemonFactory,
    site: MailSite,
    imap_port: int,
    *flags: str,
    section: str = "imap_timeout = 30\n",
) -> Daemon:
    """A gateway whose start-up probe (the factory's connect) has ended and been reaped, so a
    test can tell its own sessions' children apart."""
    gw = factory.start(
        "imapgw",
        "-l",
        "127.0.0.1",
        "--imap-port",
        str(imap_port),
        "--state-dir",
        str(site.state),
        *flags,
        config=site.config("max_per_address = 200\n[imapgw]\n" + section),
    )
    wait_for(lambda: ended_sessions(gw), what="the start-up probe's session over")
    return gw


@dataclass
class Stack:
    factory: DaemonFactory
    site: MailSite
    imapd: Daemon
    gw: Daemon


def build_stack(factory: DaemonFactory, site: MailSite) -> Stack:
    users = dict(USERS)
    for user in ("alice", "carol", *(name for pair in PAIRS for name in pair)):
        users[user] = "pw"
        if not (site.mail / user).exists():
            seed_maildir(site.mail / user, MESSAGES)
    seed_maildir(site.mail / "bob", MESSAGES[:1])
    (site.mail / "dora").mkdir()
    users["dora"] = "pw"  # an empty Maildir
    seed_maildir(site.mail / "dora", [])
    flags = [arg for name, pw in users.items() for arg in ("-u", f"{name}:{pw}")]
    imapd = factory.start(
        "imapd", "-l", "127.0.0.1", *site.common_args(), *flags, config=imapd_config(site)
    )
    return Stack(factory, site, imapd, start_gateway(factory, site, imapd.port))


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One imapd and gateway for the module; tests that stop a gateway start their own."""
    root = tmp_path_factory.mktemp("gateway")
    factory = DaemonFactory(root)
    try:
        yield build_stack(factory, MailSite.create(root))
    finally:
        factory.stop_all()


@pytest.fixture
def gateway(daemons: DaemonFactory, site: MailSite) -> Callable[..., Daemon]:
    """start(imap_port, *flags, section=...) -> a gateway of this test's own, stopped after it."""

    def start(imap_port: int, *flags: str, **kwargs: str) -> Daemon:
        return start_gateway(daemons, site, imap_port, *flags, **kwargs)

    return start


# -- unit: the purpose string ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"headers#0#127.0.0.1#alice#pw#", Purpose("headers", "0", "127.0.0.1", "alice", "pw", "")),
        (
            b"body#2#localhost#alice#pw#INBOX",
            Purpose("body", "2", "localhost", "alice", "pw", "INBOX"),
        ),
        (
            b"delete#7#127.0.0.1#bob#p#ss#w#Archive",
            Purpose("delete", "7", "127.0.0.1", "bob", "p#ss#w", "Archive"),
        ),
        (
            b"HEADERS##127.0.0.1#alice#pw#\r\n",
            Purpose("headers", "", "127.0.0.1", "alice", "pw", ""),
        ),
        (b"body#0012#127.0.0.1#alice#pw#", Purpose("body", "12", "127.0.0.1", "alice", "pw", "")),
        (b"body#1#127.0.0.1#alice##", Purpose("body", "1", "127.0.0.1", "alice", "", "")),
    ],
)
def test_parse_purpose(raw: bytes, expected: Purpose) -> None:
    assert parse_purpose(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"list#0#127.0.0.1#alice#pw#", "unknown purpose"),
        (b"#0#127.0.0.1#alice#pw#", "unknown purpose"),
        (b"body#1#127.0.0.1#alice", "missing fields"),
        (b"body#1#127.0.0.1#alice#pw", "missing fields"),
        (b"", "missing fields"),
        (b"body#x#127.0.0.1#alice#pw#", "message number"),
        (b"body##127.0.0.1#alice#pw#", "message number"),
        (b"delete#0#127.0.0.1#alice#pw#", "message number"),
        (b"delete#-1#127.0.0.1#alice#pw#", "message number"),
        (b"body#1.5#127.0.0.1#alice#pw#", "message number"),
        ("body#\u00b2#127.0.0.1#alice#pw#".encode(), "message number"),  # isdigit(), not a number
        ("body#\u0661#127.0.0.1#alice#pw#".encode(), "message number"),  # an Arabic-Indic one
        (b"body#1#127.0.0.1##pw#", "missing user"),
        (b"body#1##alice#pw#", "missing host"),
    ],
)
def test_parse_purpose_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(GatewayError, match=reason):
        parse_purpose(raw)


@pytest.mark.parametrize(
    ("raw", "logged"),
    [
        (b"headers#0#127.0.0.1#alice#pw#INBOX", "headers#0#127.0.0.1#alice#****#INBOX$"),
        (b"body#1#127.0.0.1#bob#Sekr3t#Pw0rd#", "body#1#127.0.0.1#bob#****#$"),
        # A field missing: which one is the password is unknown, so all but the purpose is masked.
        (b"body#1#127.0.0.1#bob#Sekr3t", "body#****$"),
        (b"headers#127.0.0.1#bob#Sekr3t#INBOX", "headers#****$"),
        (b"headers#127.0.0.1#bob#Sekr3t#Pw0rd#INBOX", "headers#****$"),
        (b"headers", "headers$"),
        (b"Sekr3t", "****$"),  # the password alone, or first
        (b"Sekr3t#headers#0", "****#****$"),
        (b"body#1#127.0.0.1#al\r\nice\x00#pw#", "body#1#127.0.0.1#al\\r\\nice\\x00#****#$"),
        # Bytes that are not UTF-8 are logged as \xNN, never as U+FFFD; UTF-8 stays as it is.
        # Junk that is no purpose could be a password sent alone: it is masked like one.
        (b"\xff\xfe\x80junk", "****$"),
        (b"body#1#127.0.0.1#j\xc3\xbcrg\xe9#pw#", "body#1#127.0.0.1#j\u00fcrg\\xe9#****#$"),
    ],
)
def test_masked(raw: bytes, logged: str) -> None:
    assert masked(raw) == logged


def test_masked_is_bounded() -> None:
    assert len(masked(b"headers#0#127.0.0.1#alice#pw#" + b"A" * 5000)) <= MAX_PURPOSE + 1


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("alice", b"alice"),
        ("INBOX", b"INBOX"),
        ("/var/spool/mail/alice", b"/var/spool/mail/alice"),
        ("two words", b'"two words"'),
        ('q"uo\\te', b'"q\\"uo\\\\te"'),
        ("a%b*c(d)", b'"a%b*c(d)"'),
        ("", b'""'),
    ],
)
def test_command_arg(value: str, wire: bytes) -> None:
    assert command_arg(value) == wire


@pytest.mark.parametrize("value", ["alice\r\n9 DELETE INBOX", "a\nb", "a\x00b"])
def test_command_arg_refuses_command_injection(value: str) -> None:
    with pytest.raises(GatewayError, match="invalid characters"):
        command_arg(value)


def feed(chunks: list[bytes], close: bool = False) -> bytes:
    """read_purpose over a socketpair fed `chunks` by a thread."""
    ours, theirs = socket.socketpair()
    ours.settimeout(5)

    def writer() -> None:
        for chunk in chunks:
            theirs.sendall(chunk)
        if close:
            theirs.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        return read_purpose(ours, 5.0)
    finally:
        thread.join(5)
        ours.close()
        theirs.close()


def test_read_purpose_any_segmentation() -> None:
    data = purpose("body", 2, mailbox="INBOX")
    for mode in ("whole", "bytes", "split"):
        assert feed(pieces(data, mode)) == data[:-1]
    assert feed([b"headers#0#h#u#p#$\r\n"]) == b"headers#0#h#u#p#", "bytes after $ are ignored"


def test_read_purpose_limit_is_1024_bytes_with_the_dollar() -> None:
    exact = b"headers#0#127.0.0.1#alice#pw#" + b"m" * (MAX_PURPOSE - 30) + b"$"
    assert len(exact) == MAX_PURPOSE
    assert feed([exact]) == exact[:-1]
    with pytest.raises(GatewayError, match="too long"):
        feed([exact[:-1] + b"m$"])
    with pytest.raises(GatewayError, match="too long"):
        feed([b"x" * 5000])


def test_read_purpose_eof_without_dollar() -> None:
    with pytest.raises(GatewayError, match=r"closed before"):
        feed([b"headers#0#127.0.0.1"], close=True)


def test_defaults_and_flags(tmp_path: Path) -> None:
    conf = tmp_path / "empty.conf"
    conf.write_text("")
    args = docopt(gw_main.__doc__, argv=["-c", str(conf)])
    settings = service.load_settings(gw_main.PROTOCOL, args)
    assert settings.get_int("port") == 4711
    assert settings.get_int("imap_port") == 143
    assert settings.get("imap_host_allow").split() == ["127.0.0.1", "localhost"]
    assert not settings.get_bool("join_mailbox_user")
    args = docopt(
        gw_main.__doc__,
        argv=[
            "-c",
            str(conf),
            "-p",
            "4712",
            "-l",
            "::1",
            "--imap-port",
            "1143",
            "--imap-host-allow",
            "a,b",
            "--join-mailbox-user",
        ],
    )
    settings = service.load_settings(gw_main.PROTOCOL, args)
    assert settings.get_int("port") == 4712
    assert settings.listen_addresses() == ["::1"]
    assert settings.get_int("imap_port") == 1143
    assert settings.get_bool("join_mailbox_user")
    gw = Gateway(settings, None)  # type: ignore[arg-type]
    assert gw.allowed_host("A") and gw.allowed_host("b") and not gw.allowed_host("127.0.0.1")
    assert gw.mailbox_name(parse_purpose(b"headers#0#a#bob#pw#/var/mail")) == "/var/mail/bob"


def test_mailbox_name_is_an_imap_name(tmp_path: Path) -> None:
    conf = tmp_path / "empty.conf"
    conf.write_text("")
    settings = service.load_settings(
        gw_main.PROTOCOL, docopt(gw_main.__doc__, argv=["-c", str(conf)])
    )
    gw = Gateway(settings, None)  # type: ignore[arg-type]
    assert gw.mailbox_name(parse_purpose(b"headers#0#a#bob#pw#")) == "INBOX"
    assert gw.mailbox_name(parse_purpose(b"headers#0#a#bob#pw#Archive")) == "Archive"


# -- end to end: each purpose, however the purpose string arrives ------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("what", "msgnum"), PURPOSES)
def test_purpose_end_to_end(shared: Stack, what: str, msgnum: int, mode: str) -> None:
    """The CGI sees the banner, then exactly what imapd answers the seed's commands, then EOF."""
    user, twin = f"a{what}{mode}", f"t{what}{mode}"
    got = ask(
        shared.gw.port,
        purpose(what, msgnum, user=user, mailbox="INBOX" if mode == "split" else ""),
        mode,
    )
    assert got == twin_transcript(shared.imapd.port, twin, what, msgnum)
    if what == "headers":
        assert fetch_numbers(got) == [1, 2, 3]
        assert got.endswith(b"\r\n3 OK FETCH completed\r\n")
        for message in MESSAGES:
            head = message.split(b"\r\n\r\n")[0].split(b"\r\n")
            wanted = [h for h in head if h.split(b":")[0] in (b"From", b"Subject", b"Date")]
            assert b"\r\n".join(wanted) + b"\r\n\r\n" in got
    elif what == "body":
        body = MESSAGES[1].split(b"\r\n\r\n", 1)[1]
        assert got.startswith(b"* 2 FETCH (")
        assert b"BODY[TEXT] {%d}\r\n" % len(body) + body in got
        assert got.endswith(b"\r\n3 OK FETCH completed\r\n")
    else:
        assert re.fullmatch(
            rb"\* 2 FETCH \(FLAGS \([^)]*\\Deleted[^)]*\)\)\r\n3 OK [^\r\n]*\r\n"
            rb"\* 2 EXPUNGE\r\n4 OK [^\r\n]*\r\n",
            got,
        ), got
        left = sorted(p.name.split(".")[0] for p in (shared.site.mail / user).glob("*/17*"))
        assert left == ["1700000001", "1700000003"]
        after = ask(shared.gw.port, purpose("headers", user=user))
        assert fetch_numbers(after) == [1, 2]
        assert b"Subject: tricky body" not in after


def test_big_body_is_returned_whole(shared: Stack) -> None:
    got = ask(shared.gw.port, purpose("body", 3, user="carol"))
    assert len(BIG_BODY) > 65535
    assert got.startswith(b"* 3 FETCH (")
    assert b"BODY[TEXT] {%d}\r\n" % len(BIG_BODY) + BIG_BODY in got
    assert got.endswith(b"\r\n3 OK FETCH completed\r\n")


def test_headers_of_empty_mailbox(shared: Stack) -> None:
    assert ask(shared.gw.port, purpose("headers", user="dora")) == EMPTY_MAILBOX
    assert NO_LINE.fullmatch(ask(shared.gw.port, purpose("body", 1, user="dora")))


def test_headers_of_5000_messages(daemons: DaemonFactory, site: MailSite) -> None:
    """More than the seed's 64 KiB buffer held: all 5,000 FETCH responses, through the end."""
    count = 5000
    seed_maildir(
        site.mail / "alice",
        [
            b"From: Sender %d <s%d@example.com>\r\nSubject: message %d\r\n"
            b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\nBody %d\r\n" % (i, i, i, i)
            for i in range(1, count + 1)
        ],
        sub="cur",
    )
    imapd = daemons.start(
        "imapd", "-l", "127.0.0.1", *site.common_args(), "-u", "alice:pw", config=imapd_config(site)
    )
    gw = start_gateway(daemons, site, imapd.port)
    got = ask(gw.port, purpose("headers"))
    assert len(got) > 65535
    assert fetch_numbers(got) == list(range(1, count + 1))
    subjects = sorted(int(n) for n in re.findall(rb"Subject: message (\d+)\r\n", got))
    assert subjects == list(range(1, count + 1))
    assert got.endswith(b"\r\n3 OK FETCH completed\r\n")
    assert got.count(b"3 OK FETCH completed") == 1
    received = [line for line in gw.log().splitlines() if "IMAP Message Received" in line]
    assert received and max(len(line) for line in received) < 2000, "log lines are bounded"


# -- end to end: errors, one line each, then close ---------------------------------------------


ERRORS = [
    ("unknown purpose", b"list#0#127.0.0.1#alice#pw#INBOX$", "unknown purpose"),
    ("missing fields", b"body#1#127.0.0.1#alice$", "missing fields"),
    ("missing user", b"body#1#127.0.0.1##pw#$", "missing user"),
    ("missing host", b"body#1##alice#pw#$", "missing host"),
    ("no $ in 1024 bytes", b"headers#0#127.0.0.1#alice#pw#" + b"x" * 2000, "too long"),
    ("$ after 1024 bytes", b"headers#0#127.0.0.1#alice#pw#" + b"x" * 1000 + b"$", "too long"),
    ("non-numeric msgnum", purpose("body", "two"), "message number"),
    ("zero msgnum", purpose("delete", 0), "message number"),
    ("unicode digit msgnum", purpose("body", "\u00b2"), "message number"),
    ("host not allowed", purpose("headers", host="192.0.2.1"), "not allowed"),
    ("host name not allowed", purpose("headers", host="imap.example.com"), "not allowed"),
    ("host with port", purpose("headers", host="127.0.0.1:25"), "not allowed"),
    ("login refused", purpose("headers", password="wrong"), "login refused"),
    ("unknown user", purpose("headers", user="nobody"), "login refused"),
    ("mailbox missing", purpose("headers", mailbox="Nope"), "mailbox missing"),
    ("body missing", purpose("body", 99), "message 99 does not exist"),
    ("delete missing", purpose("delete", 4), "message 4 does not exist"),
    ("command injection", purpose("headers", user="alice\r\n9 DELETE INBOX"), "invalid characters"),
]


@pytest.mark.parametrize(("data", "reason"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_error_is_one_no_line(shared: Stack, data: bytes, reason: str) -> None:
    got = ask(shared.gw.port, data)
    assert NO_LINE.fullmatch(got), got
    assert reason.encode() in got
    assert b"#pw#" not in got


def test_errors_change_no_mail(shared: Stack) -> None:
    ask(shared.gw.port, purpose("delete", 4, user="carol"))
    ask(shared.gw.port, purpose("delete", "x", user="carol"))
    ask(shared.gw.port, purpose("delete", 1, user="carol", password="wrong"))
    assert len(list((shared.site.mail / "carol").glob("*/17*"))) == len(MESSAGES)


def test_imap_server_unreachable(gateway: Callable[..., Daemon]) -> None:
    gw = gateway(free_port())  # nothing listens there
    assert ask(gw.port, purpose("headers")) == b"NO IMAP server unreachable\n"


def test_imap_server_timing_out(
    gateway: Callable[..., Daemon], fake_imap: Callable[..., FakeImap]
) -> None:
    silent = fake_imap(greeting=None)
    gw = gateway(silent.port, section="imap_timeout = 0.5\n")
    assert ask(gw.port, purpose("headers", host="localhost")) == b"NO IMAP server timed out\n"
    assert silent.conns, "the gateway did connect"
    wait_for(lambda: not sessions_running(gw.pid), timeout=TIMEOUT, what="the session over")


def test_imap_server_hangs_up(
    gateway: Callable[..., Daemon], fake_imap: Callable[..., FakeImap]
) -> None:
    rude = fake_imap(replies={"SELECT": lambda tag: None})
    gw = gateway(rude.port)
    assert ask(gw.port, purpose("headers")) == b"NO IMAP server closed the connection\n"
    bye = fake_imap(greeting=b"* BYE go away\r\n")
    gw = gateway(bye.port)
    assert ask(gw.port, purpose("headers")) == b"NO IMAP server refused the connection\n"


def test_client_gives_up(shared: Stack) -> None:
    """A CGI that hangs up before `$` costs one child (one session of a worker), which ends;
    the gateway goes on."""
    before = session_tokens(shared.gw)
    sock, _ = connect(shared.gw.port)
    token = new_session(shared.gw, before)
    sock.sendall(b"headers#0#127.0.0.1#ali")
    sock.close()
    wait_for(lambda: session_ended(shared.gw, token), timeout=TIMEOUT, what="the session over")
    assert fetch_numbers(ask(shared.gw.port, purpose("headers", user="carol"))) == [1, 2, 3]


def test_trailing_newline_after_dollar(shared: Stack) -> None:
    """Bytes after the `$` (a CGI ending its line) are ignored; left unread they must not reset
    the connection, which would throw away the reply still in the gateway's send buffer."""
    before = session_tokens(shared.gw)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the reply waits in the gateway
    sock.settimeout(TIMEOUT)
    with sock:
        sock.connect(("127.0.0.1", shared.gw.port))
        token = new_session(shared.gw, before)
        sock.sendall(purpose("body", 3, user="carol"))
        wait_for(
            lambda: "Command Received" in session_log(shared.gw, token), what="the purpose read"
        )
        sock.sendall(b"\r\n")
        sock.shutdown(socket.SHUT_WR)
        wait_for(
            lambda: session_ended(shared.gw, token),
            timeout=TIMEOUT,
            what="the session gone before the client reads",
        )
        got = recv_all(sock)
    assert got.startswith(BANNER + b"* 3 FETCH (")
    assert BIG_BODY in got and got.endswith(b"\r\n3 OK FETCH completed\r\n")


def test_busy_reply(gateway: Callable[..., Daemon], fake_imap: Callable[..., FakeImap]) -> None:
    gw = gateway(fake_imap().port, section="max_children = 1\n")
    first, _ = connect(gw.port)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=TIMEOUT) as second:
        assert recv_all(second) == b"NO too many connections, try again later\n"
    first.sendall(purpose("headers"))
    assert recv_all(first) == FAKE_FETCH
    first.close()


def test_no_reset_when_the_client_sent_more(shared: Stack) -> None:
    """Input the gateway never read must not turn its close into a reset that loses the reply."""
    before = session_tokens(shared.gw)
    sock, rest = connect(shared.gw.port)
    token = new_session(shared.gw, before)
    with sock:
        sock.sendall(b"x" * 3000)
        sock.shutdown(socket.SHUT_WR)
        wait_for(
            lambda: session_ended(shared.gw, token),
            timeout=TIMEOUT,
            what="the session gone before the client reads",
        )
        assert recv_all(sock, rest) == b"NO purpose string too long or not terminated by $\n"


# -- end to end: the exact commands (fake server) ----------------------------------------------


def test_seed_commands_and_literals(
    gateway: Callable[..., Daemon], fake_imap: Callable[..., FakeImap]
) -> None:
    """The seed's command sequence; a literal holding '3 OK FETCH' does not end the response."""
    fake = fake_imap()
    gw = gateway(fake.port)
    assert ask(gw.port, purpose("headers", password="two words")) == FAKE_FETCH
    assert fake.commands == [
        b'1 LOGIN alice "two words"\r\n',
        b"2 SELECT INBOX\r\n",
        b"3 FETCH 1:2 " + HEADERS_FETCH + b"\r\n",
        b"4 LOGOUT\r\n",
    ]


def test_join_mailbox_user(
    gateway: Callable[..., Daemon], fake_imap: Callable[..., FakeImap]
) -> None:
    fake = fake_imap()
    gw = gateway(fake.port, "--join-mailbox-user")
    ask(gw.port, purpose("body", 1, mailbox="/var/spool/mail"))
    assert fake.commands[1:3] == [
        b"2 SELECT /var/spool/mail/alice\r\n",
        b"3 FETCH 1 body[TEXT]\r\n",
    ]


def test_imap_host_allow_flag(
    gateway: Callable[..., Daemon], fake_imap: Callable[..., FakeImap]
) -> None:
    fake = fake_imap()
    gw = gateway(fake.port, "--imap-host-allow", "127.0.0.2,localhost")
    assert ask(gw.port, purpose("headers", host="LocalHost")) == FAKE_FETCH
    assert b"not allowed" in ask(gw.port, purpose("headers", host="127.0.0.1"))
    assert len(fake.commands) == 4, "nothing was sent for the refused host"


def test_non_ascii_mailbox_is_modified_utf7(
    gateway: Callable[..., Daemon], fake_imap: Callable[..., FakeImap]
) -> None:
    fake = fake_imap()
    gw = gateway(fake.port)
    ask(gw.port, purpose("headers", mailbox="Entw\u00fcrfe"))
    ask(gw.port, purpose("headers", mailbox="Tom & Jerry"))
    selects = [c for c in fake.commands if b" SELECT " in c]
    assert selects == [b"2 SELECT Entw&APw-rfe\r\n", b'2 SELECT "Tom & Jerry"\r\n']


def test_result_survives_a_failed_logout(
    gateway: Callable[..., Daemon], fake_imap: Callable[..., FakeImap]
) -> None:
    fake = fake_imap(replies={"LOGOUT": lambda tag: None})
    gw = gateway(fake.port)
    assert ask(gw.port, purpose("headers")) == FAKE_FETCH


def test_delete_sends_store_expunge_logout(
    gateway: Callable[..., Daemon], fake_imap: Callable[..., FakeImap]
) -> None:
    fake = fake_imap(
        replies={
            "STORE": lambda tag: (
                f"* 2 FETCH (FLAGS (\\Deleted))\r\n{tag} OK STORE done\r\n".encode()
            ),
            "EXPUNGE": lambda tag: f"* 2 EXPUNGE\r\n{tag} OK EXPUNGE done\r\n".encode(),
        }
    )
    gw = gateway(fake.port)
    got = ask(gw.port, purpose("delete", 2))
    assert got == (
        b"* 2 FETCH (FLAGS (\\Deleted))\r\n3 OK STORE done\r\n* 2 EXPUNGE\r\n4 OK EXPUNGE done\r\n"
    )
    assert fake.commands[2:] == [
        b"3 STORE 2 +FLAGS (\\Deleted)\r\n",
        b"4 EXPUNGE\r\n",
        b"5 LOGOUT\r\n",
    ]


def test_peek_leaves_flags_alone(
    gateway: Callable[..., Daemon], fake_imap: Callable[..., FakeImap]
) -> None:
    """peek = yes fetches with BODY.PEEK[...]; by default the seed's BODY[...] (sets \\Seen)."""
    fake = fake_imap()
    peeking = gateway(fake.port, section="peek = yes\n")
    ask(peeking.port, purpose("headers"))
    ask(peeking.port, purpose("body", 1))
    fetches = [c for c in fake.commands if b" FETCH " in c]
    assert fetches == [
        b"3 FETCH 1:2 (body.peek[header.fields (from subject date)])\r\n",
        b"3 FETCH 1 body.peek[TEXT]\r\n",
    ]


def test_headers_marks_read_unless_peek(
    daemons: DaemonFactory, site: MailSite, gateway: Callable[..., Daemon]
) -> None:
    """What a mail client finds after the gateway showed the mailbox: with the seed's default
    every message is \\Seen, with peek = yes none is."""
    for user in ("seen", "peeked"):
        seed_maildir(site.mail / user, MESSAGES[:2])
    imapd = daemons.start(
        "imapd", "-l", "127.0.0.1", "-u", "seen:pw", "-u", "peeked:pw", config=site.config()
    )
    plain, peeking = gateway(imapd.port), gateway(imapd.port, section="peek = yes\n")
    assert fetch_numbers(ask(plain.port, purpose("headers", user="seen"))) == [1, 2]
    assert fetch_numbers(ask(peeking.port, purpose("headers", user="peeked"))) == [1, 2]

    def flags(user: str) -> list[str]:
        names = [p.name for sub in ("new", "cur") for p in (site.mail / user / sub).iterdir()]
        return sorted(name.partition(":2,")[2] for name in names)

    assert flags("seen") == ["S", "S"]
    assert "S" not in "".join(flags("peeked"))


def test_gateway_bytes_reach_mailstatd(
    daemons: DaemonFactory, site: MailSite, gateway: Callable[..., Daemon]
) -> None:
    """Every session's bytes with its client are counted: msmp STAT and mailstatd --dump."""
    conf = site.root / "stats.conf"
    conf.write_text(site.config())
    daemons.start("mailstatd", config=site.config(), wait=False)
    wait_for(lambda: stats_query.ping(site.run / "mailstatd.sock", timeout=0.5), what="mailstatd")
    seed_maildir(site.mail / "alice", MESSAGES[:1])
    imapd = daemons.start("imapd", "-l", "127.0.0.1", "-u", "alice:pw", config=site.config())
    gw = gateway(imapd.port)
    before = stats_query.stat(site.run / "mailstatd.sock")["protocols"]["imapgw"]["bytes"]
    request = purpose("headers")
    reply = ask(gw.port, request)
    assert fetch_numbers(reply) == [1]
    refused = purpose("headers", host="192.0.2.9")
    assert ask(gw.port, refused).startswith(b"NO ")
    sent = len(request) + len(refused) + 2 * len(BANNER) + len(reply) + len(NO_LINE_FOR_HOST)
    expected = before + sent

    def counted() -> int:
        figures = stats_query.stat(site.run / "mailstatd.sock")
        return int(figures["protocols"]["imapgw"]["bytes"])

    wait_for(lambda: counted() == expected, what=f"{expected} bytes counted for imapgw")
    dump = subprocess.run(
        [str(BIN / "mailstatd"), "--dump"],
        env={**os.environ, "MAILDAEMONS_CONF": str(conf)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert dump.returncode == 0, dump.stderr
    assert json.loads(dump.stdout)["protocols"]["imapgw"]["bytes"] == expected
    msmpd = daemons.start("msmpd", "-L", "127.0.0.1", "-a", "admin:pw", config=site.config())
    stat = subprocess.run(
        [str(BIN / "msmp"), "-P", str(msmpd.port), "STAT"],
        env={**os.environ, "MSMP_USER": "admin", "MSMP_PASSWORD": "pw"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert stat.returncode == 0, stat.stderr
    assert re.search(rf"^imapgw: \d+ connections, .*, {expected} bytes,", stat.stdout, re.M)


def test_undecodable_bytes_are_logged_escaped(
    shared: Stack, gateway: Callable[..., Daemon]
) -> None:
    gw = gateway(shared.imapd.port)
    raw = b"headers#0#127.0.0.1#\xfe\xff\x00garbage\x80#pw#INBOX$"
    assert ask(gw.port, raw).startswith(b"NO ")
    wait_for(lambda: "Command Received: " in gw.log(), what="the purpose string logged")
    log = gw.log()
    expected = "Command Received: headers#0#127.0.0.1#\\xfe\\xff\\x00garbage\\x80#****#INBOX$"
    assert expected in log
    assert "\ufffd" not in log


# -- end to end: logging -----------------------------------------------------------------------


def test_log_lines_and_no_password(shared: Stack, gateway: Callable[..., Daemon]) -> None:
    gw = gateway(shared.imapd.port)
    before = session_tokens(gw)
    sock, _ = connect(gw.port)
    token = new_session(gw, before)
    sock.sendall(purpose("headers", user="bob", mailbox="INBOX"))
    assert fetch_numbers(recv_all(sock)) == [1]
    sock.close()
    wait_for(lambda: session_ended(gw, token), timeout=TIMEOUT, what="the session over")
    for data in (
        purpose("body", 1, user="bob"),
        purpose("delete", 9, user="bob"),
        purpose("headers", user="bob", password="Wr0ng#" + PASSWORD),
        purpose("nosuch", user="bob"),
        f"headers#127.0.0.1#bob#{PASSWORD}#INBOX$".encode(),  # msgnum left out
        b"headers#0#127.0.0.1#bob#Sekr3t$",  # mailbox left out
        purpose("headers", user="bob", host="192.0.2.9"),
    ):
        assert ask(gw.port, data)
    log = gw.log()
    assert "Command Received: headers#0#127.0.0.1#bob#****#INBOX$" in log
    assert "IMAP Message Received = * OK" in log
    assert log.count("Command Received: ") == 8
    for secret in (PASSWORD, "Sekr3t", "Pw0rd", "Wr0ng"):
        assert secret not in log
    wait_for(lambda: ended_sessions(gw) >= 9, timeout=TIMEOUT, what="every session over")


# -- end to end: concurrency and signals -------------------------------------------------------


def test_fifty_concurrent_clients(shared: Stack) -> None:
    gw = shared.gw
    before = session_tokens(gw)
    clients = [connect(gw.port) for _ in range(50)]  # each holds a child (a session of a worker)
    kids = wait_for(
        lambda: len(new := session_tokens(gw) - before) == 50 and new, what="fifty sessions"
    )
    results: dict[int, bytes] = {}

    def run(index: int, sock: socket.socket) -> None:
        what = ("headers", 0) if index % 2 else ("body", 1)
        sock.sendall(purpose(*what, user="carol"))
        results[index] = recv_all(sock)
        sock.close()

    threads = [threading.Thread(target=run, args=(i, s)) for i, (s, _) in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert len(results) == 50
    for index, got in results.items():
        assert got.endswith(b"\r\n3 OK FETCH completed\r\n"), got[:200]
        # Untagged FLAGS updates from the other sessions (RFC 3501 7.4.2) may come along too.
        answered = [int(n) for n in re.findall(rb"^\* (\d+) FETCH \([^\r\n]*BODY\[", got, re.M)]
        assert answered == ([1, 2, 3] if index % 2 else [1])
    for kid in kids:
        wait_for(lambda k=kid: session_ended(gw, k), timeout=TIMEOUT, what=f"session {kid} over")
        if not pooled():
            wait_for(lambda k=kid: gone(k), what=f"child {kid} gone")


def test_term_with_sessions_open(
    gateway: Callable[..., Daemon], fake_imap: Callable[..., FakeImap]
) -> None:
    """TERM: a client still sending and one waiting on a silent IMAP server each get one NO
    line; the master reaps both, exits 0 and leaves no child behind."""
    silent = fake_imap(greeting=None)
    gw = gateway(silent.port)
    before = session_tokens(gw)
    idle, _ = connect(gw.port)
    idle.sendall(b"headers#0#127.0")
    busy, _ = connect(gw.port)
    busy.sendall(purpose("headers"))
    wait_for(lambda: silent.conns, what="the gateway connected to the silent server")
    kids = session_tokens(gw) - before
    assert len(kids) == 2
    workers = child_pids(gw.pid)  # the session children, or the workers
    assert gw.stop() == 0
    for sock in (idle, busy):
        got = recv_all(sock)
        assert got == b"NO server shutting down, try again later\n", got
        sock.close()
    log = gw.log()
    for kid in kids:
        assert session_ended(gw, kid)
    for pid in workers:
        assert f"Dead Child pid: {pid}\n" in log
        wait_for(lambda k=pid: gone(k), timeout=TIMEOUT, what=f"child {pid} gone")
    assert "killing" not in log, "both finished within the grace period"
    assert not port_open(gw.port)
    assert log.rstrip().endswith("stopped")


def test_daemon_mode(shared: Stack, tmp_path: Path) -> None:
    """Without -f: the launcher exits 0 once ready, the pidfile names the daemon, which logs to
    the configured file as the seed did; TERM stops it and removes the pidfile."""
    logfile = tmp_path / "imapgw.log"
    pidfile = tmp_path / "imapgw.pid"
    conf = tmp_path / "imapgw.conf"
    conf.write_text(shared.site.config(f"[imapgw]\nlog = {logfile}\n"))
    port = free_port()
    cmd = [
        str(BIN / "imapgw"),
        "-c",
        str(conf),
        "-l",
        "127.0.0.1",
        "-p",
        str(port),
        "--imap-port",
        str(shared.imapd.port),
        "--pidfile",
        str(pidfile),
    ]
    done = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    pid = int(pidfile.read_text())
    try:
        assert not gone(pid)
        assert pid not in child_pids(os.getpid()), "double fork: not our child"
        assert port_open(port)
        again = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, cwd=tmp_path)
        assert again.returncode == 1
        assert b"already running" in again.stderr
        assert fetch_numbers(ask(port, purpose("headers", user="bob"))) == [1]
        wait_for(
            lambda: logfile.read_text().count("Dead Child pid: ") >= 2,
            timeout=TIMEOUT,
            what="Dead Child lines in the log file",
        )
        log = logfile.read_text()
        assert "Command Received: headers#0#127.0.0.1#bob#****#$" in log
        assert "IMAP Message Received = " in log
        assert PASSWORD not in log
        os.kill(pid, signal.SIGTERM)
        wait_for(
            lambda: gone(pid) and not pidfile.exists(),
            timeout=TIMEOUT,
            what="daemon gone and pidfile removed",
        )
        assert not port_open(port)
        assert logfile.read_text().rstrip().endswith("stopped")
    finally:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_waiting_for_the_imap_server_lets_a_workers_other_sessions_run():
    # Pool model: the gateway waits in its own poll(), not LineIO's; the turn goes meanwhile.
    shared = turns.Turns(wait=30.0)
    ours, theirs = socket.socketpair()
    ran = threading.Event()

    def other_session() -> None:
        turns.sit(shared)
        ran.set()
        turns.leave()

    turns.sit(shared)
    try:
        other = threading.Thread(target=other_session, daemon=True)
        other.start()
        assert not ran.wait(0.05)  # this session holds the turn
        assert not wait_readable(ours, None, 0.5)  # the server says nothing for 0.5 s
        assert ran.is_set()
        other.join(10)
        assert turns.current().held  # type: ignore[union-attr]
    finally:
        turns.leave()
        ours.close()
        theirs.close()
