"""imapd against hostile clients, over real sockets: binary junk, a 1 MiB line, NUL bytes,
half-closed connections mid-command and mid-literal, literals that lie, a slowloris; literals that
announce more than they send or more than the limit, with the child's memory measured; user and
mailbox names that must never become paths, in every command that takes one; links planted in a
maildir; passwords in the wrong places. After each, the mail is byte for byte what it was and a
normal session works."""

from __future__ import annotations

import base64
import os
import socket
import time

import pytest

from support.daemons import pooled, session_process
from support.hostile import (
    HOSTILE_NAMES,
    MIB,
    SECRET_FILE,
    attacks,
    half_close,
    mail_snapshot,
    read_until_closed,
    session_child,
    slowloris,
    vm_rss_kib,
)
from support.imap import IMAP_USERS, start_imapd
from support.site import deliver

SECRET = "Zq-never-in-a-log"
MAX_LITERAL = 16 * MIB
ATTACKS = {
    **attacks(b"a LOGIN alice pw"),
    "literal cut short": lambda s: half_close(s, b"a LOGIN {10+}\r\nalice"),
    "append cut short": lambda s: half_close(
        s, b"a LOGIN alice pw\r\nb APPEND INBOX {100+}\r\nSubject: half\r\n\r\n"
    ),
    "literal longer than told": lambda s: half_close(
        s, b"a LOGIN alice pw\r\nb APPEND INBOX {3+}\r\nSubject: x\r\n\r\nbody\r\n"
    ),
    "endless literals": lambda s: half_close(s, b"a LOGIN {1+}\r\na {1+}\r\nb" * 2000),
}


@pytest.fixture
def imap(daemons, site):
    """imapd with alice's and bob's mail in cur/ (no \\Recent to claim: nothing moves by
    itself), a secret outside the mail base, and the limits of these tests."""
    for user in ("alice", "bob"):
        for n in range(3):
            deliver(site.maildir(user), f"Subject: {user} {n}\n\nbody\n".encode(), subdir="cur")
    (site.root / "outside").mkdir()
    (site.root / "outside" / "secret").write_bytes(SECRET_FILE)

    def start(extra: str = "", users: dict[str, str] | None = None):
        server = start_imapd(daemons, site, f"max_literal = {MAX_LITERAL}\n" + extra, users)
        # Each account as after its first session (default folders made, \Recent claimed):
        # what an attack must leave exactly as it was.
        for user in ("alice", "bob"):
            if user in server.passwords:
                server.claim_recent(user=user)
        return server

    return start


def outside_the_mail_base(site) -> list[str]:
    return sorted(p.name for p in site.root.iterdir())


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_changes_no_mail_and_the_daemon_serves_on(imap, site, attack):
    server = imap()
    before, around = mail_snapshot(site.mail), outside_the_mail_base(site)
    for _ in range(3):
        client = server.raw()
        ATTACKS[attack](client.sock)
        client.close()
    assert mail_snapshot(site.mail) == before
    assert outside_the_mail_base(site) == around
    server.assert_healthy()


def test_slowloris_is_cut_by_the_idle_timeout(imap, site):
    server = imap("idle_timeout = 2\nidle_keepalive = 0\n")
    client = server.raw()
    started = time.monotonic()
    received = slowloris(client.sock, b"a LOGIN alice " + b"x" * 100, interval=0.4, budget=12)
    assert received == b"* BYE Autologout; idle for too long\r\n"
    assert time.monotonic() - started < 12
    server.assert_healthy()


def test_literals_cost_no_memory_beyond_what_arrived(imap, site):
    """A literal announcing max_literal that sends 2 MiB and stalls holds about 2 MiB in the
    child; one announcing more than the limit, non-synchronizing, is read and dropped in chunks
    (32 MiB sent: the child grows by a few MiB at most); a synchronizing one is refused unread."""
    server = imap()
    client = server.raw_login("alice")
    client.ok("NOOP")
    child = serving(server, "alice")
    base = vm_rss_kib(child)
    client.send(b"b APPEND INBOX {%d}\r\n" % MAX_LITERAL)
    assert client.line().startswith(b"+ ")
    client.send(b"x" * (2 * MIB))
    time.sleep(0.5)  # let the child take it in: memory, not time, is what is measured
    grown = vm_rss_kib(child) - base
    assert grown < 8 * 1024, f"{grown} KiB for 2 MiB received"
    client.close()

    client = server.raw_login("bob")
    client.ok("NOOP")
    child = serving(server, "bob")
    base = vm_rss_kib(child)
    client.send(b"c APPEND INBOX {%d}\r\n" % (10 * MAX_LITERAL))
    assert client.line() == b"c NO [TOOBIG] Message too large\r\n"
    client.send(b"d APPEND INBOX {%d+}\r\n" % (64 * MAX_LITERAL))
    chunk = b"y" * MIB
    for _ in range(32):
        client.send(chunk)
    time.sleep(0.5)
    grown = vm_rss_kib(child) - base
    assert grown < 8 * 1024, f"{grown} KiB for a refused literal"
    client.close()
    server.assert_healthy()


def serving(server, user: str) -> int:
    """The process serving the user's newest session: its child (fork model, by its title) or
    its worker (pool model)."""
    if pooled():
        return session_process(server.daemon)
    return session_child(server.daemon.pid, f"imapd: {user} ")


def mailbox_commands(name: bytes) -> list[bytes]:
    """Every command that takes a mailbox name, the name as a literal (it may hold anything)."""
    lit = b"{%d+}\r\n" % len(name) + name
    return [
        b"SELECT " + lit,
        b"EXAMINE " + lit,
        b"CREATE " + lit,
        b"DELETE " + lit,
        b"RENAME " + lit + b" Other",
        b"RENAME INBOX " + lit,
        b"SUBSCRIBE " + lit,
        b"UNSUBSCRIBE " + lit,
        b"STATUS " + lit + b" (MESSAGES)",
        b"APPEND " + lit + b" {6+}\r\nx: y\r\n",
        b"LIST " + lit + b' "*"',
        b'LIST "" ' + lit,
        b'LSUB "" ' + lit,
        b"GETQUOTAROOT " + lit,
        b"COPY 1 " + lit,
        b"MOVE 1 " + lit,
    ]


def test_hostile_mailbox_names_stay_inside_the_users_maildir(imap, site):
    """Refused, or (a look-alike of a slash is just a character) a folder of alice's own: a
    dot-directory right under her maildir. Nothing changes outside it, no message is lost."""
    server = imap()
    alice = site.mail / "alice"
    around = outside_the_mail_base(site)
    before = mail_snapshot(site.mail)
    others = {k: v for k, v in before.items() if not k.startswith("alice/")}
    contents = sorted(v for k, v in before.items() if k.startswith("alice/") and v)
    for name in HOSTILE_NAMES:  # a session each: the refusals count as bad commands
        client = server.raw_login("alice")
        client.ok("SELECT INBOX")
        for command in mailbox_commands(name.encode("utf-8")):
            lines, done = client.cmd(command)
            assert done.split(b" ")[1] in (b"OK", b"NO", b"BAD"), (name, command, done)
        client.ok("LOGOUT")
    after = mail_snapshot(site.mail)
    assert outside_the_mail_base(site) == around
    assert {k: v for k, v in after.items() if not k.startswith("alice/")} == others
    for entry in os.listdir(alice):
        assert (
            entry in ("cur", "new", "tmp") or entry.startswith(".") or not (alice / entry).is_dir()
        )
    copies = [v for k, v in after.items() if k.startswith("alice/") and v]
    assert all(data in copies for data in contents), "a message of alice's was lost"
    assert set(copies) <= set(contents) | {b"x: y\r\n", b"x: y\n"}
    server.assert_healthy()


def test_hostile_user_names_never_become_paths(imap, site):
    names = [n for n in HOSTILE_NAMES if "\x00" not in n and ":" not in n]
    users = {**IMAP_USERS, **{name: "pw" for name in names}}
    server = imap(users=users)
    before, around = mail_snapshot(site.mail), outside_the_mail_base(site)
    for name in names:
        client = server.raw()
        user = name.encode()
        lines, done = client.cmd(b"LOGIN {%d+}\r\n" % len(user) + user + b" pw")
        assert done.split(b" ")[1] == b"NO", (name, done)
        response = base64.b64encode(b"\0" + user + b"\0pw")
        lines, done = client.cmd(b"AUTHENTICATE PLAIN " + response)
        assert done.split(b" ")[1] in (b"NO", b"BAD"), (name, done)
        client.close()
    assert mail_snapshot(site.mail) == before
    assert outside_the_mail_base(site) == around
    server.assert_healthy()


def test_planted_links_are_never_served(imap, site):
    alice = site.mail / "alice"
    secret = site.root / "outside" / "secret"
    (alice / "cur" / "1600000000.evil:2,").symlink_to(secret)
    elsewhere = site.root / "outside" / "maildir"
    for sub in ("cur", "new", "tmp"):
        (elsewhere / sub).mkdir(parents=True)
    deliver(elsewhere, b"Subject: not alice's\n\nsecret mail\n", subdir="cur")
    (alice / ".Evil").symlink_to(elsewhere)
    outside_before = mail_snapshot(site.root / "outside")
    server = imap()
    client = server.raw_login("alice")
    lines = client.ok('LIST "" "*"')
    assert not any(b"Evil" in line for line in lines)
    lines = client.ok("SELECT INBOX")
    assert b"* 3 EXISTS\r\n" in lines
    fetched = b"".join(client.ok("FETCH 1:* (BODY.PEEK[] RFC822.SIZE)"))
    assert SECRET_FILE not in fetched and fetched.count(b" FETCH ") == 3
    for command in (
        "SELECT Evil",
        "STATUS Evil (MESSAGES)",
        "CREATE Evil",
        "DELETE Evil",
        "RENAME Evil Good",
        "SUBSCRIBE Evil",
        "COPY 1 Evil",
        "APPEND Evil {6+}\r\nx: y\r\n",
    ):
        lines, done = client.cmd(command)
        assert done.split(b" ")[1] in (b"NO", b"BAD"), (command, done)
    client.ok("LOGOUT")
    assert mail_snapshot(site.root / "outside") == outside_before
    server.assert_healthy()


def test_passwords_never_reach_the_log(imap, site):
    server = imap()
    sessions = [
        f'a LOGIN alice "{SECRET}-1"\r\n',  # a failed login
        f"a LOGIN alice {SECRET}-2 extra\r\n",  # the wrong arity
        f"a LOGIN {SECRET}-3\r\n",
        f"a LOGIN alice {{{len(SECRET) + 2}+}}\r\n{SECRET}-4\r\n",  # in a literal
        f"a AUTHENTICATE PLAIN {SECRET}-5!!\r\n",  # garbage, not base64
        "a AUTHENTICATE PLAIN "
        + base64.b64encode(f"\0alice\0{SECRET}-6".encode()).decode()
        + "\r\n",
        "a AUTHENTICATE PLAIN " + base64.b64encode(f"{SECRET}-7".encode()).decode() + "\r\n",
        f"a AUTHENTICATE PLAIN\r\n{SECRET}-8 garbage\r\n",
        "a AUTHENTICATE LOGIN\r\n" + base64.b64encode(b"alice").decode() + f"\r\n{SECRET}-9\r\n",
        f'a LOGIN alice pw\r\nb LOGIN alice "{SECRET}-10"\r\nc SELECT "{SECRET}-11"\r\n',
        f'a ID ("name" "x")\r\nb {SECRET}-12 LOGIN\r\n',
    ]
    for text in sessions:
        client = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        client.sendall(text.encode())
        client.shutdown(socket.SHUT_WR)
        read_until_closed(client)
        client.close()
    log = server.log()
    assert "imap auth failed" in log
    assert SECRET not in log
    server.assert_healthy()


def test_max_auth_failures_closes_the_connection(imap, site):
    server = imap("max_auth_failures = 2\n")
    client = server.raw()
    lines, done = client.cmd("LOGIN alice no")
    assert done.startswith(b"t1 NO [AUTHENTICATIONFAILED]")
    client.send(b"t2 LOGIN alice no\r\n")
    assert client.line() == b"* NO Too many failed logins\r\n"
    assert client.line().startswith(b"* BYE ")
    assert client.closed()


def test_before_login_literals_are_small_and_commands_arrive_whole(imap, site):
    """A client nobody knows gets no large literal: a synchronizing one is refused unread, a
    non-synchronizing one ends the session unread; a LOGIN trickled through a literal is cut
    by the idle timeout like a line."""
    server = imap("idle_timeout = 2\nidle_keepalive = 0\n")
    client = server.raw()
    client.send(b"a LOGIN alice {9000}\r\n")
    assert client.line() == b"a BAD [TOOBIG] Literal too large\r\n"
    lines, done = client.cmd(b"LOGIN alice {2+}\r\npw")  # a small one is fine
    assert done.startswith(b"t1 OK ")
    client.close()
    client = server.raw()
    client.send(b"b LOGIN alice {%d+}\r\n" % (4 * MIB) + b"p" * MIB)
    assert client.line() == b"b BAD [TOOBIG] Literal too large\r\n"
    assert client.line() == b"* BYE Literal too large\r\n"
    assert client.closed()
    client = server.raw()
    client.send(b"c LOGIN alice {50}\r\n")
    assert client.line().startswith(b"+ ")
    started = time.monotonic()
    received = slowloris(client.sock, b"p" * 50, interval=0.4, budget=12)
    assert received == b"* BYE Autologout; idle for too long\r\n"
    assert time.monotonic() - started < 12
    server.assert_healthy()
