"""IDLE (RFC 2177) over real sockets: what is pushed while a client idles (deliveries into new/
and cur/, flag changes and expunges by other sessions and by other programs), in the authenticated
and the selected state, how IDLE ends (DONE in any case, anything else, the timeout), the
keepalive, and bad input around it.

The time from a change to its push is measured and shown in pytest's closing summary (not
asserted: tests never assert on wall-clock speed); waits poll until a deadline.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from pathlib import Path

import pytest

from support.daemons import wait_for
from support.figures import note
from support.imap import TIMEOUT, Raw, shared_imapd, start_imapd
from support.site import deliver

PUSH_DEADLINE = 10.0  # generous: a loaded test machine must not fail a test
LATENCY_TITLE = "IDLE push latency (change made -> untagged response read)"


class Latency:
    """Records how long each push took (change made -> untagged response read); the figures go
    to the run's closing summary: for reading, never asserted (tests do not assert on speed)."""

    def __init__(self) -> None:
        self.figures: dict[str, list[float]] = {}

    def pushed(self, client: Raw, label: str, started: float, pattern: bytes) -> bytes:
        """The next pushed line, which must match `pattern`; its latency goes under `label`."""
        client.sock.settimeout(PUSH_DEADLINE)
        try:
            line = client.line()
        finally:
            client.sock.settimeout(TIMEOUT)
        self.record(label, time.monotonic() - started)
        assert re.fullmatch(pattern, line), (label, line)
        return line

    def record(self, label: str, seconds: float) -> None:
        self.figures.setdefault(label, []).append(seconds)

    def report(self, test: str) -> str:
        lines = [f"{test}, seconds:"]
        for label, values in sorted(self.figures.items()):
            lines.append(
                f"  {label:<36} n={len(values):<3} "
                f"median={statistics.median(values):.3f} max={max(values):.3f}"
            )
        return "\n".join(lines)


@pytest.fixture
def latency(request):
    """A Latency whose figures go to the closing summary, in a section of their own."""
    recorder = Latency()
    yield recorder
    if recorder.figures:
        note(LATENCY_TITLE, recorder.report(request.node.name))


shared = shared_imapd("imap-idle", "idle_keepalive = 0\n")


@pytest.fixture
def account(shared):
    return shared.account()


def body(n: int) -> bytes:
    head = f"From: x@example.org\nSubject: idle {n}\nMessage-ID: <idle{n}@example.org>\n"
    return f"{head}\n{n}\n".encode()


def seeded(server, count: int = 3) -> Path:
    maildir = server.maildir()
    for n in range(1, count + 1):
        deliver(maildir, body(n), subdir="cur", name=f"{1700000000 + n}.M{n}P9.idle:2,")
    return maildir


def start_idle(client: Raw, tag: str = "i1") -> None:
    client.send(f"{tag} IDLE\r\n".encode())
    assert client.line() == b"+ idling\r\n"


def test_idle_pushes_every_kind_of_change_and_ends_on_done(account, latency):
    server = account
    maildir = seeded(server)
    idler, other = server.raw_select(), server.raw_select()
    start_idle(idler)

    # Another session's flag change.
    started = time.monotonic()
    other.ok("STORE 1 +FLAGS (\\Flagged)")
    latency.pushed(
        idler, "flag change by a session", started, rb"\* 1 FETCH \(FLAGS \(\\Flagged\)\)\r\n"
    )
    # An MTA delivering into new/.
    started = time.monotonic()
    deliver(maildir, body(4))
    latency.pushed(idler, "delivery into new/", started, rb"\* 4 EXISTS\r\n")
    assert idler.line() == b"* 1 RECENT\r\n"
    # A program putting a message straight into cur/ (another server, or mutt saving a copy).
    started = time.monotonic()
    deliver(maildir, body(5), subdir="cur", name="1700000099.M5P9.idle:2,S")
    latency.pushed(idler, "file placed in cur/", started, rb"\* 5 EXISTS\r\n")
    assert idler.line() == b"* 1 RECENT\r\n"
    # A flag change by another program: a rename of the file's info, as mutt does.
    path = next((maildir / "cur").glob("1700000002.*"))
    started = time.monotonic()
    os.rename(path, path.with_name(path.name.split(":", 1)[0] + ":2,S"))
    latency.pushed(idler, "flag change by rename", started, rb"\* 2 FETCH \(FLAGS \(\\Seen\)\)\r\n")
    # An expunge by another session, then one by another program (unlink).
    started = time.monotonic()
    other.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
    latency.pushed(
        idler, "flag change by a session", started, rb"\* 3 FETCH \(FLAGS \(\\Deleted\)\)\r\n"
    )
    started = time.monotonic()
    other.ok("EXPUNGE")
    latency.pushed(idler, "expunge by a session", started, rb"\* 3 EXPUNGE\r\n")
    path = next((maildir / "cur").glob("1700000001.*"))
    started = time.monotonic()
    path.unlink()
    latency.pushed(idler, "expunge by unlink", started, rb"\* 1 EXPUNGE\r\n")
    # DONE in any case ends IDLE; the session goes on and agrees with the other one.
    idler.send(b"dOnE\r\n")
    assert idler.line() == b"i1 OK IDLE terminated\r\n"
    assert uid_view(idler) == uid_view(other)
    assert [uid for _seq, uid, _flags in uid_view(idler)] == [2, 4, 5]


def uid_view(client: Raw) -> list[tuple[int, int, str]]:
    """(sequence number, UID, flags but \\Recent) of every message, after pending updates."""
    client.ok("NOOP")
    lines = client.ok("FETCH 1:* (UID FLAGS)")
    out = []
    for line in lines:
        found = re.match(rb"\* (\d+) FETCH \(UID (\d+) FLAGS \(([^)]*)\)\)", line)
        if found:
            flags = " ".join(f for f in found.group(3).decode().split() if f != "\\Recent")
            out.append((int(found.group(1)), int(found.group(2)), flags))
    return out


def test_idle_in_the_authenticated_state(account):
    client = account.raw_login()
    start_idle(client)
    client.send(b"DONE\r\n")
    assert client.line() == b"i1 OK IDLE terminated\r\n"
    client.ok("SELECT INBOX")
    client.ok("UNSELECT")
    start_idle(client, "i2")
    client.send(b"done\r\n")
    assert client.line() == b"i2 OK IDLE terminated\r\n"


def test_anything_but_done_ends_idle_with_bad_and_the_session_goes_on(account):
    server = account
    seeded(server, 1)
    client = server.raw_select()
    start_idle(client)
    client.send(b"a2 NOOP\r\n")  # a command instead of DONE
    assert client.line() == b"i1 BAD Expected DONE\r\n"
    client.alive()
    # A command with a non-synchronizing literal: its octets must not become commands.
    start_idle(client, "i2")
    client.send(b"a3 APPEND INBOX {8+}\r\nx NOOP\r\n\r\n")
    assert client.line() == b"i2 BAD Expected DONE\r\n"
    assert client.ok("STATUS INBOX (MESSAGES)") == [b"* STATUS INBOX (MESSAGES 1)\r\n"]
    # DONE when no IDLE is running.
    client.send(b"DONE\r\n")
    assert client.line() == b"* BAD DONE without IDLE\r\n"
    client.alive()
    # IDLE before login is not allowed; the session goes on.
    fresh = server.raw()
    assert fresh.status("IDLE") == b"BAD"
    fresh.ok(f'LOGIN {server.user} "{server.passwords[server.user]}"')


def test_idle_with_imapclient(account, latency):
    server = account
    maildir = seeded(server, 2)
    client = server.client()
    client.select_folder("INBOX")
    client.idle()
    started = time.monotonic()
    deliver(maildir, body(3))
    responses: list = []
    deadline = time.monotonic() + PUSH_DEADLINE
    while not any(r[1] == b"EXISTS" for r in responses) and time.monotonic() < deadline:
        responses += client.idle_check(timeout=1)
    latency.record("delivery into new/ (imapclient)", time.monotonic() - started)
    assert (3, b"EXISTS") in responses
    text, _ = client.idle_done()
    assert text == b"IDLE terminated"
    assert client.search(["ALL"]) == [1, 2, 3]
    client.logout()


def test_idle_reports_vanished_once_qresync_is_enabled(account, latency):
    server = account
    seeded(server, 3)
    idler, other = server.raw_login(), server.raw_select()
    assert idler.ok("ENABLE QRESYNC") == [b"* ENABLED QRESYNC\r\n"]
    idler.ok("SELECT INBOX")
    start_idle(idler)
    started = time.monotonic()
    other.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    latency.pushed(
        idler,
        "flag change by a session (QRESYNC)",
        started,
        rb"\* 2 FETCH \(UID 2 FLAGS \(\\Deleted\) MODSEQ \(\d+\)\)\r\n",
    )
    started = time.monotonic()
    other.ok("EXPUNGE")
    latency.pushed(idler, "expunge by a session (QRESYNC)", started, rb"\* VANISHED 2\r\n")
    idler.send(b"DONE\r\n")
    assert idler.line() == b"i1 OK IDLE terminated\r\n"


def test_keepalive_and_the_idle_timeout(daemons, site):
    """`* OK Still here` at the configured interval; the keepalive does not extend the IDLE:
    the idle timeout ends it with BYE all the same."""
    server = start_imapd(daemons, site, "idle_keepalive = 0.3\nidle_timeout = 3\n")
    client = server.raw_select()
    start_idle(client)
    started = time.monotonic()
    lines = []
    client.sock.settimeout(PUSH_DEADLINE)
    while not lines or lines[-1].startswith(b"* OK"):
        lines.append(client.line())
    assert lines[0] == b"* OK Still here\r\n", lines
    assert len(lines) >= 3, lines
    assert lines[-1] == b"* BYE Autologout; idle for too long\r\n", lines
    assert time.monotonic() - started >= 2.5  # the keepalives did not reset the timeout
    assert client.closed()
    wait_for(lambda: "session end" in server.log(), what="the session to end")
    server.assert_healthy()


def test_term_during_idle_says_goodbye(daemons, site):
    server = start_imapd(daemons, site, "idle_keepalive = 0\n")
    idler, authenticated = server.raw_select(), server.raw_login()
    start_idle(idler)
    start_idle(authenticated)
    assert server.daemon.stop() == 0
    for client in (idler, authenticated):
        assert client.line() == b"* BYE [ALERT] Server shutting down, try again later\r\n"
        assert client.closed()
