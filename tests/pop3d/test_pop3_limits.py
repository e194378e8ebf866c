"""pop3d limits and abuse: line length, idle timeout, max_children, max_per_address, the delay
after a failed login and its fail2ban line, unknown commands, binary junk, over-long lines and too
many bad commands. After each abuse the master still serves a fresh, normal session."""

from __future__ import annotations

import base64
import hashlib
import random
import re
import socket
import time

import pytest

from support.clients import LineClient
from support.daemons import wait_for
from support.site import deliver

FAIL2BAN = re.compile(r"pop3 auth failed for user (\S+) from (\S+)$")


def test_command_line_length(pop3d, site):
    server = pop3d()
    deliver(site.maildir("alice"), b"Subject: x\n\ny\n")
    client = server.raw_login()
    client.send(b"NOOP" + b" " * 251 + b"\r\n")  # 255 octets before the CRLF
    assert client.line() == b"+OK\r\n"
    client.send(b"NOOP" + b" " * 252 + b"\r\n")
    assert client.line() == b"-ERR Line too long\r\n"
    client.send(b"RETR " + b"1" * 300 + b"\r\nSTAT\r\n")
    assert client.line() == b"-ERR Line too long\r\n"
    assert client.line() == b"+OK 1 17\r\n", "the session goes on"
    client.send(b"X" * (1024 * 1024) + b"\r\nSTAT\nQUIT\r\n")
    assert client.line() == b"-ERR Line too long\r\n"
    assert client.line() == b"+OK 1 17\r\n"
    assert client.line().startswith(b"+OK")
    assert client.closed()
    server.assert_serving()


def test_max_line_from_config(pop3d):
    server = pop3d("[pop3d]\nmax_line = 20\n")
    client = server.raw()
    client.send(b"USER alice\r\nUSER " + b"a" * 20 + b"\r\n")
    assert client.line() == b"+OK\r\n"
    assert client.line() == b"-ERR Line too long\r\n"


def test_sasl_responses_may_exceed_max_line_but_not_the_hard_cap(pop3d):
    server = pop3d()
    client = server.raw()
    long_response = base64.b64encode(b"\0alice\0" + b"p" * 400)
    client.send(b"AUTH PLAIN\r\n")
    assert client.line() == b"+ \r\n"
    client.send(long_response + b"\r\n")
    assert client.line() == b"-ERR [AUTH] Invalid credentials\r\n"
    client.send(b"AUTH PLAIN\r\n")
    assert client.line() == b"+ \r\n"
    client.send(b"A" * 20000 + b"\r\n")
    assert client.line() == b"-ERR Line too long\r\n"
    client.send(b"AUTH LOGIN\r\n")
    client.line()
    client.send(b"QUFB" * 5000 + b"\r\n")
    assert client.line() == b"-ERR Line too long\r\n"
    client.send(b"USER alice\r\nPASS secret\r\n")
    assert client.line() == b"+OK\r\n"
    assert client.line().startswith(b"+OK Logged in"), "the session went on"
    assert "Traceback" not in server.daemon.log()


def test_idle_timeout(pop3d, site):
    server = pop3d("[pop3d]\nidle_timeout = 1\n")
    path = deliver(site.maildir("alice"), b"Subject: x\n\ny\n")
    client = server.raw()
    assert client.line() == b"-ERR Idle timeout, closing connection\r\n"
    assert client.closed()
    client = server.raw_login()
    client.send(b"DELE 1\r\n")
    assert client.line() == b"+OK Message 1 deleted\r\n"
    assert client.line() == b"-ERR Idle timeout, closing connection\r\n"
    assert client.closed()
    assert path.exists(), "a timed-out session never reaches UPDATE"
    assert "closing: idle timeout" in server.daemon.log()


def test_max_children(pop3d):
    server = pop3d("max_children = 2\n")
    server.wait_idle()
    first, second = server.raw(), server.raw()
    refused = LineClient(server.daemon.connect())
    assert refused.line() == b"-ERR [SYS/TEMP] Too many connections, try again later\r\n"
    assert refused.closed()
    assert "refused 127.0.0.1: children limit reached" in server.daemon.log()
    first.send(b"QUIT\r\n")
    assert first.line().startswith(b"+OK")

    def greeted() -> bool:
        client = LineClient(server.daemon.connect())
        line = client.line()
        client.close()
        return line.startswith(b"+OK")

    wait_for(greeted, what="a free child slot")
    second.send(b"QUIT\r\n")
    second.line()
    server.wait_idle()
    server.assert_serving()


def test_max_per_address(pop3d):
    server = pop3d("max_per_address = 2\n")
    server.wait_idle()
    clients = [server.raw(), server.raw()]
    refused = LineClient(server.daemon.connect())
    assert refused.line() == (
        b"-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n"
    )
    assert refused.closed()
    other = server.raw(source="127.0.0.2")  # another address still gets in
    other.send(b"USER probe\r\nPASS probe\r\nQUIT\r\n")
    assert other.line() == b"+OK\r\n"
    assert other.line().startswith(b"+OK Logged in")
    for client in clients:
        client.close()

    def greeted() -> bool:
        client = LineClient(server.daemon.connect())
        line = client.line()
        client.close()
        return line.startswith(b"+OK")

    wait_for(greeted, what="the address count to drop")
    server.wait_idle()
    server.assert_serving()


def test_auth_failure_delay_is_applied(pop3d):
    server = pop3d("[pop3d]\nauth_failure_delay = 1\n")
    client = server.raw()
    client.send(b"USER alice\r\n")
    assert client.line() == b"+OK\r\n"
    started = time.monotonic()
    client.send(b"PASS wrong\r\n")
    assert client.line() == b"-ERR [AUTH] Invalid credentials\r\n"
    assert time.monotonic() - started >= 0.9
    started = time.monotonic()
    client.send(b"AUTH PLAIN " + base64.b64encode(b"\0nobody\0x") + b"\r\n")
    assert client.line() == b"-ERR [AUTH] Invalid credentials\r\n"
    assert time.monotonic() - started >= 0.9


def test_one_fail2ban_line_per_failed_login_and_no_passwords(pop3d):
    server = pop3d()
    secret = "Zq9-never-log-me"
    plain = base64.b64encode(f"\0bob\0{secret}-plain".encode())
    attempts = [
        ("alice", [b"USER alice", f"PASS {secret}-pass".encode()]),
        ("nosuchuser", [b"USER nosuchuser", f"PASS {secret}-unknown".encode()]),
        ("alice", [b"APOP alice " + hashlib.md5(secret.encode()).hexdigest().encode()]),
        ("bob", [b"AUTH PLAIN " + plain]),
        (
            "carol",
            [
                b"AUTH LOGIN",
                base64.b64encode(b"carol"),
                base64.b64encode(f"{secret}-login".encode()),
            ],
        ),
        ("we?ird", [b"USER we\x1bird", f"PASS {secret}-weird".encode()]),
    ]
    for _, lines in attempts:
        client = server.raw()
        client.send(b"\r\n".join(lines) + b"\r\n")
        assert client.until(b"-ERR [AUTH] Invalid credentials\r\n")
        client.close()
    server.login("alice").quit()
    wait_for(lambda: server.daemon.log().count("auth failed") == len(attempts), what="log lines")
    log = server.daemon.log()
    failures = [FAIL2BAN.search(line) for line in log.splitlines() if "auth failed" in line]
    assert [(m.group(1), m.group(2)) for m in failures] == [
        (user, "127.0.0.1") for user, _ in attempts
    ]
    assert secret not in log
    assert plain.decode() not in log
    assert "secret" not in log, "nor the good password"


def test_unknown_commands_and_binary_junk(pop3d, site):
    server = pop3d()
    rng = random.Random(1939)
    client = server.raw()
    junk_lines = [
        b"\x00",
        b"\xff\xfe\xfd",
        b"\x00USER alice",
        b"HELO there",
        b"\x1b[2J",
        b"USER\x00alice",
    ]
    junk_lines += [
        bytes(rng.randrange(256) for _ in range(200)).replace(b"\n", b"") for _ in range(5)
    ]
    for junk in junk_lines:
        client.send(junk + b"\r\n")
        assert client.line().startswith(b"-ERR "), junk
    client.send(bytes(rng.randrange(256) for _ in range(100_000)).replace(b"\n", b"") + b"\n")
    assert client.line() == b"-ERR Line too long\r\n"
    client.send(b"USER alice\r\nPASS secret\r\nSTAT\r\n")
    assert client.line() == b"+OK\r\n"
    assert client.line().startswith(b"+OK Logged in")
    assert client.line() == b"+OK 0 0\r\n"
    client.send(b"RETR \xff\x00\r\nDELE \x00\r\nTOP 1 \xff\r\nQUIT\r\n")
    assert [client.line()[:4] for _ in range(3)] == [b"-ERR"] * 3
    assert client.line().startswith(b"+OK")
    assert "Traceback" not in server.daemon.log()
    server.assert_serving()


@pytest.mark.parametrize("authorized", [False, True])
def test_too_many_bad_commands_close_cleanly(pop3d, authorized):
    server = pop3d()
    client = server.raw_login() if authorized else server.raw()
    client.send(b"BOGUS\r\n" * 10 + b"STAT 1 2 3\r\n" * 9 + b"\xff\r\n")
    replies = [client.line() for _ in range(20)]
    assert all(r.startswith(b"-ERR ") for r in replies[:19])
    assert replies[19] == b"-ERR Too many bad commands, closing connection\r\n"
    assert client.closed()
    server.assert_serving()


def test_abrupt_disconnects_do_not_hurt_the_master(pop3d, site):
    server = pop3d()
    deliver(site.maildir("alice"), b"Subject: x\n\ny\n")
    for payload in (
        b"",
        b"USER alice\r\n",
        b"USER alice\r\nPASS secret\r\nRETR 1\r\n",
        b"AUTH PLAIN\r\n",
        b"\xff" * 5000,
    ):
        sock = server.daemon.connect()
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    server.assert_serving()
    assert "Traceback" not in server.daemon.log()
