"""pop3d against hostile clients, over real sockets: binary junk, a 1 MiB line, NUL bytes, a
half-closed connection, a slowloris; user names that must never become paths; links planted in
a maildir; passwords in the wrong places; 1000 silent connections. After each, every mailbox is
byte for byte what it was, nothing appeared outside the mail base, and a normal session works."""

from __future__ import annotations

import base64
import hashlib
import os
import resource
import socket
import time
from pathlib import Path

import pytest

from support.clients import LineClient
from support.daemons import sessions_running, wait_for
from support.hostile import (
    HOSTILE_NAMES,
    SECRET_FILE,
    attacks,
    fd_count,
    mail_snapshot,
    read_until_closed,
    slowloris,
)
from support.pop3 import POP3_USERS
from support.site import deliver

ATTACKS = attacks(b"USER alice")
SECRET = "Zq-never-in-a-log"


@pytest.fixture
def mailsite(site):
    """alice and bob with mail, and a secret file outside the mail base."""
    for user in ("alice", "bob", "probe"):
        for n in range(3):
            deliver(site.maildir(user), f"Subject: {user} {n}\n\n.dot line\nbody\n".encode())
    (site.root / "outside").mkdir()
    (site.root / "outside" / "secret").write_bytes(SECRET_FILE)
    return site


def outside_the_mail_base(site) -> list[str]:
    return sorted(p.name for p in site.root.iterdir())


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_changes_no_mail_and_the_daemon_serves_on(pop3d, mailsite, attack):
    server = pop3d()
    before, around = mail_snapshot(mailsite.mail), outside_the_mail_base(mailsite)
    for _ in range(3):  # again and again, in new sessions
        client = server.raw()
        ATTACKS[attack](client.sock)
        client.close()
    server.wait_idle()
    assert mail_snapshot(mailsite.mail) == before
    assert outside_the_mail_base(mailsite) == around
    server.assert_serving()
    assert "Traceback" not in server.daemon.log()


def test_one_mib_line_is_refused_and_the_session_goes_on(pop3d, mailsite):
    server = pop3d()
    client = server.raw()
    client.send(b"USER " + b"a" * (1 << 20) + b"\r\nUSER alice\r\nPASS secret\r\nSTAT\r\n")
    assert client.line() == b"-ERR Line too long\r\n"
    assert client.line() == b"+OK\r\n"
    assert client.line().startswith(b"+OK Logged in")
    assert client.line().startswith(b"+OK 3 ")


def test_slowloris_is_cut_by_the_idle_timeout(pop3d, mailsite):
    """A byte every 0.4 s never completes a line: the idle timeout bounds the whole line."""
    server = pop3d("[pop3d]\nidle_timeout = 2\n")
    before = mail_snapshot(mailsite.mail)
    client = server.raw()
    started = time.monotonic()
    received = slowloris(client.sock, b"USER alice" + b"x" * 100, interval=0.4, budget=12)
    assert received == b"-ERR Idle timeout, closing connection\r\n"
    assert time.monotonic() - started < 12
    client.close()
    server.wait_idle()
    assert mail_snapshot(mailsite.mail) == before
    server.assert_serving()


def test_hostile_user_names_never_become_paths(pop3d, mailsite):
    """Users whose names are unsafe as paths, with the right password, get no maildrop: the
    store refuses the name, and nothing is made or read outside <mail_base>/<user>."""
    names = [n for n in HOSTILE_NAMES if "\x00" not in n and ":" not in n]
    users = {**POP3_USERS, **{name: "pw" for name in names}}
    server = pop3d(users=users)
    before, around = mail_snapshot(mailsite.mail), outside_the_mail_base(mailsite)
    for name in names:
        client = server.raw()
        client.send(b"AUTH PLAIN\r\n")
        assert client.line() == b"+ \r\n"
        client.send(base64.b64encode(f"\0{name}\0pw".encode()) + b"\r\n")
        reply = client.line()
        assert reply.startswith((b"-ERR [SYS/TEMP]", b"-ERR [AUTH]")), (name, reply)
        if " " not in name and len(name) < 200:
            client.send(f"USER {name}\r\nPASS pw\r\n".encode())
            assert client.line() == b"+OK\r\n"
            assert client.line().startswith(b"-ERR"), name
        client.close()
    for name in ("al\x00ice", "../alice"):  # NUL and a path as USER, APOP and AUTH PLAIN names
        client = server.raw()
        raw = name.encode()
        digest = hashlib.md5(b"x").hexdigest().encode()
        client.send(b"USER " + raw + b"\r\nPASS secret\r\nAPOP " + raw + b" " + digest + b"\r\n")
        assert client.line().startswith((b"+OK", b"-ERR"))
        assert client.line().startswith(b"-ERR")
        client.close()
    server.wait_idle()
    assert mail_snapshot(mailsite.mail) == before
    assert outside_the_mail_base(mailsite) == around
    assert not (mailsite.root / "etc").exists() and not Path("/alice").exists()
    server.assert_serving()


def test_planted_links_are_never_served(pop3d, mailsite):
    alice = mailsite.mail / "alice"
    secret = mailsite.root / "outside" / "secret"
    (alice / "cur" / "1600000000.evil:2,").symlink_to(secret)
    (alice / "new" / "1600000001.evil").symlink_to(secret)
    bob = mailsite.mail / "bob"
    os.rename(bob / "cur", bob / "cur.real")
    (bob / "cur").symlink_to(mailsite.root / "outside")
    server = pop3d()
    client = server.raw_login("alice")
    client.send(b"STAT\r\nUIDL\r\n")
    assert client.line().startswith(b"+OK 3 ")
    listing = client.until(b".\r\n")
    assert b"evil" not in listing and listing.count(b"\r\n") == 5
    for n in (1, 2, 3):
        client.send(f"RETR {n}\r\n".encode())
        assert SECRET_FILE not in client.until(b".\r\n")
    client.send(b"RETR 4\r\nQUIT\r\n")
    assert client.line() == b"-ERR No such message\r\n"
    client.close()
    client = server.raw()
    client.send(b"USER bob\r\nPASS b0b has spaces\r\n")
    assert client.line() == b"+OK\r\n"
    assert client.line().startswith(b"-ERR [SYS/TEMP]")  # refused, not served
    client.close()
    assert secret.read_bytes() == SECRET_FILE
    assert "Traceback" not in server.daemon.log()


def test_passwords_never_reach_the_log(pop3d, mailsite):
    server = pop3d()
    lines = [
        f"USER alice\r\nPASS {SECRET}-1\r\n",  # a failed login
        f"PASS {SECRET}-2\r\n",  # PASS before USER
        # in TRANSACTION
        f"USER alice\r\nPASS secret\r\nPASS {SECRET}-3\r\nUSER {SECRET}-x\r\nQUIT\r\n",
        f"AUTH PLAIN {SECRET}-4!!!\r\n",  # malformed base64
        "AUTH PLAIN " + base64.b64encode(f"\0alice\0{SECRET}-5".encode()).decode() + "\r\n",
        "AUTH PLAIN " + base64.b64encode(f"{SECRET}-6".encode()).decode() + "\r\n",  # no NULs
        "AUTH LOGIN\r\n" + base64.b64encode(b"alice").decode() + f"\r\n{SECRET}-7\r\n",
        f"APOP alice {SECRET}-8\r\n",
        f"PASS\r\nPASS  {SECRET}-9  \r\nUSER alice {SECRET}-10\r\n",  # wrong arity
        f"NOOP {SECRET}-11\r\n" + "x" * 300 + f"{SECRET}-12\r\n",
    ]
    for text in lines:
        client = LineClient(server.daemon.connect())
        client.send(text.encode())
        client.sock.shutdown(socket.SHUT_WR)
        read_until_closed(client.sock)
        client.close()
    server.wait_idle()
    assert SECRET not in server.daemon.log()
    assert "auth failed" in server.daemon.log()


def test_max_auth_failures_closes_the_connection(pop3d, mailsite):
    server = pop3d("max_auth_failures = 2\n")
    client = server.raw()
    client.send(b"USER alice\r\nPASS no\r\nUSER alice\r\nPASS no\r\nUSER alice\r\n")
    assert client.line() == b"+OK\r\n"
    assert client.line() == b"-ERR [AUTH] Invalid credentials\r\n"
    assert client.line() == b"+OK\r\n"
    assert client.line() == b"-ERR [AUTH] Too many failed logins, closing connection\r\n"
    assert client.closed()
    assert server.daemon.log().count("pop3 auth failed for user alice from 127.0.0.1") == 2


def test_a_thousand_silent_connections(pop3d, mailsite):
    """1000 connections opened and left silent: the master's descriptors stay as they were (the
    sessions past max_per_address are refused and closed), and a client from another address is
    served at once. The test raises its own RLIMIT_NOFILE for its 1000 sockets."""
    count = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < count + 200:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {count + 200}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, count + 200), hard))
    server = pop3d("max_per_address = 20\nmax_children = 100\n")
    server.wait_idle()
    master = server.daemon.pid
    fds_before = fd_count(master)
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=30))
        wait_for(lambda: sessions_running(master) == 20, timeout=60, what="20 sessions held")
        wait_for(
            lambda: server.daemon.log().count("refused 127.0.0.1: address limit") == count - 20,
            timeout=60,
            what="every other connection refused",
        )
        assert fd_count(master) <= fds_before + 2, os.listdir(f"/proc/{master}/fd")
        other = server.raw(source="127.0.0.2")
        other.send(b"USER probe\r\nPASS probe\r\nSTAT\r\nQUIT\r\n")
        assert other.line() == b"+OK\r\n"
        assert other.line().startswith(b"+OK Logged in")
        other.close()
    finally:
        for sock in socks:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    server.wait_idle()
    assert fd_count(master) <= fds_before + 2
    server.assert_serving()
