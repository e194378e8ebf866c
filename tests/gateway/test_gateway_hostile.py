"""imapgw against hostile clients, over real sockets, with a real imapd behind it: binary junk, a
1 MiB purpose string, NUL bytes, a half-closed connection, a slowloris; purpose strings whose user
or mailbox must never become a path; passwords in malformed purpose strings. After each, the mail
is byte for byte what it was, neither log holds a password, and a normal purpose works."""

from __future__ import annotations

import socket
import time

import pytest

from support.daemons import wait_for
from support.hostile import (
    HOSTILE_NAMES,
    MIB,
    half_close,
    junk,
    mail_snapshot,
    read_until_closed,
    send_all_ignoring_reset,
    slowloris,
)
from support.site import deliver

SECRET = "Zq-never-in-a-log"
BANNER = b"OK IMAP daemon client ready (DMIS Rulez!)...\n"
ATTACKS = {
    "binary junk": lambda s: send_all_ignoring_reset(s, junk(64 * 1024).replace(b"$", b"")),
    "1 MiB purpose": lambda s: send_all_ignoring_reset(s, b"headers#0#" + b"x" * MIB + b"$"),
    "NUL bytes": lambda s: send_all_ignoring_reset(s, b"\x00" * 4096 + b"$"),
    "half-closed": lambda s: half_close(s, b"headers#0#127.0.0.1#alice#pw"),
}


@pytest.fixture
def stack(daemons, site):
    for n in range(3):
        deliver(site.maildir("alice"), f"Subject: kept {n}\n\nbody\n".encode(), subdir="cur")
    config = site.config("max_per_address = 200\n[imapgw]\nidle_timeout = 2\n")
    users = ["-u", "alice:pw"] + [
        arg
        for name in HOSTILE_NAMES
        if ":" not in name and "\x00" not in name
        for arg in ("-u", f"{name}:pw")
    ]
    imapd = daemons.start("imapd", "-l", "127.0.0.1", *site.common_args(), *users, config=config)
    gw = daemons.start("imapgw", "-l", "127.0.0.1", "--imap-port", str(imapd.port), config=config)
    # alice as after her first session (default folders made, \Recent claimed): what the
    # hostile requests must leave exactly as it was.
    assert b" FETCH " in ask(gw, b"headers#0#127.0.0.1#alice#pw#INBOX$")
    return imapd, gw


def ask(gw, data: bytes) -> bytes:
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=15)
    assert sock.recv(len(BANNER)) == BANNER
    send_all_ignoring_reset(sock, data)
    reply = read_until_closed(sock)
    sock.close()
    return reply


def assert_serving(imapd, gw) -> None:
    for daemon in (imapd, gw):
        assert daemon.proc.poll() is None and "Traceback" not in daemon.log(), daemon.log()
    reply = ask(gw, b"headers#0#127.0.0.1#alice#pw#INBOX$")
    assert reply.count(b" FETCH (") == 3 and b"3 OK" in reply, reply


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_changes_no_mail_and_the_gateway_serves_on(stack, site, attack):
    imapd, gw = stack
    before = mail_snapshot(site.mail)
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", gw.port), timeout=15)
        assert sock.recv(len(BANNER)) == BANNER
        ATTACKS[attack](sock)
        reply = read_until_closed(sock)
        assert reply == b"" or (reply.startswith(b"NO ") and reply.count(b"\n") == 1), reply
        sock.close()
    assert mail_snapshot(site.mail) == before
    assert_serving(imapd, gw)


def test_slowloris_is_cut_by_the_idle_timeout(stack, site):
    imapd, gw = stack
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=15)
    assert sock.recv(len(BANNER)) == BANNER
    started = time.monotonic()
    received = slowloris(sock, b"headers#0#127.0.0.1#alice#pw#INBOX", interval=0.4, budget=12)
    assert received == b"NO timed out waiting for the purpose string\n"
    assert time.monotonic() - started < 12
    sock.close()
    assert_serving(imapd, gw)


def test_hostile_users_and_mailboxes_never_become_paths(stack, site):
    imapd, gw = stack
    before = mail_snapshot(site.mail)
    around = sorted(p.name for p in site.root.iterdir())
    for name in HOSTILE_NAMES:
        field = name.replace("#", "").replace("$", "").encode()
        for data in (
            b"headers#0#127.0.0.1#" + field + b"#pw#INBOX$",
            b"headers#0#127.0.0.1#alice#pw#" + field + b"$",
            b"delete#1#127.0.0.1#alice#pw#" + field + b"$",
            b"body#1#127.0.0.1#" + field + b"#pw#" + field + b"$",
        ):
            reply = ask(gw, data)
            assert reply.startswith(b"NO ") or b" FETCH " in reply, (name, data, reply)
    assert mail_snapshot(site.mail) == before
    assert sorted(p.name for p in site.root.iterdir()) == around
    assert_serving(imapd, gw)


def test_passwords_never_reach_either_log(stack, site):
    imapd, gw = stack
    for data in (
        f"headers#0#127.0.0.1#alice#{SECRET}-1#INBOX$",  # a failed login
        f"headers#0#127.0.0.1#alice#{SECRET}-2$",  # the mailbox left out
        f"headers#127.0.0.1#alice#{SECRET}-3#INBOX$",  # the number left out
        f"nosuch#0#127.0.0.1#alice#{SECRET}-4#INBOX$",
        f"headers#0#192.0.2.9#alice#{SECRET}-5#INBOX$",  # a host that is not allowed
        f"headers#0#127.0.0.1#alice#{SECRET}-6\r\n#INBOX$",  # CR LF in the password
        f"{SECRET}-7$",
        f"body#x#127.0.0.1#alice#{SECRET}-8#INBOX$",
        f"headers#0#127.0.0.1#alice#{SECRET}#9#more#INBOX$",
    ):
        ask(gw, data.encode())
    wait_for(lambda: gw.log().count("Command Received: ") >= 9, what="every purpose logged")
    for daemon in (gw, imapd):
        assert SECRET not in daemon.log(), daemon.name
    assert_serving(imapd, gw)
