"""msmpd against hostile clients, over real sockets: binary junk, a 1 MiB line, NUL bytes, a
half-closed connection, a slowloris; user names that must never become paths in ADD, DELE, LIST
and LOGS; passwords in the wrong places. After each, the mail base and the users file are what
they were, and a normal session works. `ADD` stores a hash, never the password."""

from __future__ import annotations

import socket
import time

import pytest

from common.users import verify_password
from support.clients import LineClient
from support.hostile import (
    HOSTILE_NAMES,
    attacks,
    mail_snapshot,
    read_until_closed,
    slowloris,
)
from support.site import deliver

ADMIN, ADMIN_PW = "admin", "adm1n pw"
SECRET = "Zq-never-in-a-log"
ATTACKS = attacks(b"USER admin")


@pytest.fixture
def msmpd(daemons, site):
    deliver(site.maildir("alice"), b"Subject: kept\n\nbody\n")
    (site.root / "users").write_text("alice:{PLAIN}alice-pw\n")

    def start(extra: str = ""):
        return daemons.start(
            "msmpd",
            "-L",
            "127.0.0.1",
            "-a",
            f"{ADMIN}:{ADMIN_PW}",
            *site.common_args(),
            "--users",
            str(site.root / "users"),
            config=site.config(extra),
        )

    return start


def admin(daemon) -> LineClient:
    client = LineClient(daemon.connect())
    assert client.line().startswith(b"+OK")
    client.send(f"USER {ADMIN}\r\nPASS {ADMIN_PW}\r\n".encode())
    assert client.line() == b"+OK\r\n" and client.line() == b"+OK Logged in\r\n"
    return client


def assert_serving(daemon) -> None:
    assert daemon.proc.poll() is None, daemon.log()
    client = admin(daemon)
    client.send(b"LIST\r\n")
    assert client.until(b".\r\n").startswith(b"+OK")
    client.close()
    assert "Traceback" not in daemon.log()


def state(site) -> tuple[dict[str, bytes], str, list[str]]:
    return (
        mail_snapshot(site.mail),
        (site.root / "users").read_text(),
        sorted(p.name for p in site.root.iterdir()),
    )


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_changes_nothing_and_the_daemon_serves_on(msmpd, site, attack):
    daemon = msmpd()
    before = state(site)
    for _ in range(3):
        client = LineClient(daemon.connect())
        client.line()
        ATTACKS[attack](client.sock)
        client.close()
    assert state(site) == before
    assert_serving(daemon)


def test_slowloris_is_cut_by_the_idle_timeout(msmpd, site):
    daemon = msmpd("[msmpd]\nidle_timeout = 2\n")
    client = LineClient(daemon.connect())
    client.line()
    started = time.monotonic()
    received = slowloris(client.sock, b"USER admin" + b"x" * 100, interval=0.4, budget=12)
    assert received == b"-ERR Idle timeout, closing connection\r\n"
    assert time.monotonic() - started < 12
    assert_serving(daemon)


def test_hostile_names_in_add_dele_list_logs(msmpd, site):
    daemon = msmpd()
    before = state(site)
    for name in HOSTILE_NAMES:
        raw = name.encode()
        if b" " in raw or len(raw) > 400:
            continue
        client = admin(daemon)
        for verb in (b"ADD %s pw", b"DELE %s", b"LIST %s", b"LOGS %s"):
            client.send(verb.replace(b"%s", raw) + b"\r\n")
            reply = client.line()
            assert reply.startswith(b"-ERR"), (name, verb, reply)
        client.send(b"QUIT\r\n")
        client.close()
    assert state(site) == before
    assert_serving(daemon)


def test_add_stores_a_hash_and_passwords_never_reach_the_log(msmpd, site):
    daemon = msmpd()
    client = admin(daemon)
    client.send(f"ADD bob {SECRET}-added\r\n".encode())
    assert client.line() == b"+OK Added user\r\n"
    client.close()
    entry = (site.root / "users").read_text().splitlines()[-1]
    name, stored = entry.split(":", 1)
    assert name == "bob" and stored.startswith("{ARGON2ID}$argon2id$")
    assert verify_password(stored, f"{SECRET}-added") and SECRET not in entry
    sessions = [
        f"USER admin\r\nPASS {SECRET}-1\r\n",  # a failed login
        f"PASS {SECRET}-2\r\n",  # PASS before USER
        f"USER admin\r\nPASS {ADMIN_PW}\r\nPASS {SECRET}-3\r\n",  # PASS once logged in
        f"USER admin\r\nPASS {ADMIN_PW}\r\nADD\t{SECRET}-4\r\nADD a b {SECRET}-5\r\n",
        f"USER admin\r\nPASS {ADMIN_PW}\r\nADD bob {SECRET}-6\x01\r\n",  # a control character
        f"USER {SECRET}-x y\r\nPASS\r\n" + "Z" * 600 + f"{SECRET}-7\r\n",
    ]
    for text in sessions:
        sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
        sock.sendall(text.encode())
        sock.shutdown(socket.SHUT_WR)
        read_until_closed(sock)
        sock.close()
    log = daemon.log()
    assert "msmp auth failed" in log and "added user bob" in log
    assert SECRET not in log
    assert_serving(daemon)
