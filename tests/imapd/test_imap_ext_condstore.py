"""CONDSTORE (RFC 7162 3.1) over real sockets: MODSEQ per message persisted with the UIDs,
HIGHESTMODSEQ in SELECT and STATUS, every CONDSTORE enabling command, MODSEQ in FETCH responses
(solicited and not) once enabled, FETCH (CHANGEDSINCE), STORE (UNCHANGEDSINCE) with [MODIFIED],
SEARCH MODSEQ, and bad values."""

from __future__ import annotations

import re

import pytest

from support.imap import shared_imapd, start_imapd
from support.site import deliver

shared = shared_imapd("imap-ext-condstore")


@pytest.fixture
def account(shared):
    server = shared.account()
    maildir = server.maildir()
    for n in range(1, 5):
        deliver(
            maildir,
            f"Subject: c{n}\n\nbody {n}\n".encode(),
            subdir="cur",
            name=f"{1700000000 + n}.M{n}P8.cs:2,",
        )
    server.claim_recent()
    return server


def modseqs(lines: list[bytes]) -> dict[int, int]:
    """sequence number -> MODSEQ of FETCH responses."""
    out = {}
    for line in lines:
        found = re.match(rb"\* (\d+) FETCH \(.*MODSEQ \((\d+)\)", line)
        if found:
            out[int(found.group(1))] = int(found.group(2))
    return out


def highest(lines: list[bytes]) -> int:
    for line in lines:
        found = re.search(rb"HIGHESTMODSEQ (\d+)", line)
        if found:
            return int(found.group(1))
    raise AssertionError(f"no HIGHESTMODSEQ in {lines}")


def test_select_condstore_and_status_highestmodseq(account):
    client = account.raw_login()
    lines = client.ok("SELECT INBOX (CONDSTORE)")
    start = highest(lines)
    assert client.ok("FETCH 1:* (FLAGS)") == [
        f"* {n} FETCH (FLAGS () MODSEQ ({m}))\r\n".encode()
        for n, m in modseqs(client.ok("FETCH 1:* (MODSEQ)")).items()
    ]
    lines = client.ok("STORE 2 +FLAGS (\\Seen)")
    changed = modseqs(lines)[2]
    assert changed > start
    assert lines == [f"* 2 FETCH (FLAGS (\\Seen) MODSEQ ({changed}))\r\n".encode()]
    assert client.ok("STATUS INBOX (HIGHESTMODSEQ MESSAGES)") == [
        f"* STATUS INBOX (HIGHESTMODSEQ {changed} MESSAGES 4)\r\n".encode()
    ]
    # EXAMINE (CONDSTORE) too; read-only, same values.
    lines = client.ok("EXAMINE INBOX (CONDSTORE)")
    assert highest(lines) == changed
    assert client.status("SELECT INBOX (BOGUS)") == b"BAD"


def test_modseqs_persist_with_the_uids_across_restarts(daemons, site):
    server = start_imapd(daemons, site)
    maildir = server.maildir()
    for n in range(1, 4):
        deliver(
            maildir,
            f"Subject: p{n}\n\nbody\n".encode(),
            subdir="cur",
            name=f"{1700000000 + n}.M{n}P8.persist:2,",
        )
    server.claim_recent()  # \\Recent lasts one session; this test is about what persists
    client = server.raw_login()
    client.ok("SELECT INBOX (CONDSTORE)")
    client.ok("STORE 2 +FLAGS (\\Flagged)")
    before = client.ok("UID FETCH 1:* (MODSEQ FLAGS)")
    top = highest(client.ok("STATUS INBOX (HIGHESTMODSEQ)"))
    client.ok("LOGOUT")
    server.daemon.stop()
    again = start_imapd(daemons, site)
    client = again.raw_login()
    client.ok("ENABLE CONDSTORE")
    assert highest(client.ok("SELECT INBOX")) == top
    assert client.ok("UID FETCH 1:* (MODSEQ FLAGS)") == before


@pytest.mark.parametrize(
    "enabler",
    [
        "FETCH 1 (MODSEQ)",
        "FETCH 1 (FLAGS) (CHANGEDSINCE 1)",
        "SEARCH MODSEQ 1",
        "STORE 1 (UNCHANGEDSINCE 99999) +FLAGS (\\Answered)",
        "STATUS INBOX (HIGHESTMODSEQ)",
        "ENABLE CONDSTORE",
    ],
)
def test_every_enabling_command_turns_on_modseq_in_unsolicited_fetch(account, enabler):
    client, other = account.raw_select(), account.raw_select()
    other.ok("STORE 3 +FLAGS (\\Flagged)")
    assert client.ok("NOOP") == [b"* 3 FETCH (FLAGS (\\Flagged))\r\n"]  # not enabled yet
    lines = client.ok(enabler)
    # The first enabling command with a mailbox selected reports its HIGHESTMODSEQ.
    assert any(re.fullmatch(rb"\* OK \[HIGHESTMODSEQ \d+\] .*\r\n", line) for line in lines), lines
    other.ok("STORE 4 +FLAGS (\\Flagged)")
    lines = client.ok("NOOP")
    assert len(lines) == 1 and re.fullmatch(
        rb"\* 4 FETCH \(UID 4 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)\r\n", lines[0]
    ), lines
    # Solicited FETCH responses carry MODSEQ too, asked for or not.
    assert re.fullmatch(rb"\* 1 FETCH \(UID 1 MODSEQ \(\d+\)\)\r\n", client.ok("FETCH 1 UID")[0])


def test_fetch_changedsince(account):
    client = account.raw_select()
    base = highest(client.ok("STATUS INBOX (HIGHESTMODSEQ)"))
    client.ok("STORE 2,4 +FLAGS.SILENT (\\Seen)")
    lines = client.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {base})")
    assert sorted(modseqs(lines)) == [2, 4]
    assert all(b"\\Seen" in line for line in lines)
    lines = client.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {base})")
    assert [re.search(rb"UID (\d+)", line).group(1) for line in lines] == [b"2", b"4"]  # type: ignore[union-attr]
    assert client.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {max(modseqs(lines).values())})") == []
    # CHANGEDSINCE with a bad value is BAD, and the session goes on.
    for bad in ("abc", "-1", "9223372036854775808", "99999999999999999999", ""):
        assert client.status(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {bad})") == b"BAD", bad
    assert client.status("FETCH 1:* (FLAGS) (CHANGEDSINCE)") == b"BAD"
    assert client.status("FETCH 1:* (FLAGS) (CHANGEDSINCE 1 CHANGEDSINCE)") == b"BAD"
    assert client.status("FETCH 1:* (FLAGS) (BOGUS 1)") == b"BAD"
    client.alive()
    imapc = account.client()
    imapc.select_folder("INBOX")
    found = imapc.fetch("1:*", ["FLAGS"], modifiers=[f"CHANGEDSINCE {base}"])
    assert sorted(found) == [2, 4] and all(b"MODSEQ" in f for f in found.values())
    imapc.logout()


def test_store_unchangedsince(account):
    client = account.raw_select()
    client.ok("ENABLE CONDSTORE")
    mods = modseqs(client.ok("FETCH 1:* (MODSEQ)"))
    other = account.raw_select()
    other.ok("STORE 2 +FLAGS (\\Flagged)")  # 2 changes under the first session
    limit = max(mods.values())
    lines, done = client.cmd(f"STORE 1:4 (UNCHANGEDSINCE {limit}) +FLAGS.SILENT (\\Answered)")
    assert re.fullmatch(rb"t\d+ OK \[MODIFIED 2\] Conditional STORE failed\r\n", done), done
    # First the other session's change (unsolicited, with UID and MODSEQ); then, .SILENT or
    # not, each message changed with its new MODSEQ (RFC 7162 3.1.3).
    assert re.fullmatch(
        rb"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)\r\n", lines[0]
    ), lines
    assert sorted(modseqs(lines[1:])) == [1, 3, 4]
    assert all(b"\\Answered" in line for line in lines[1:])
    lines = client.ok("FETCH 2 (FLAGS)")
    assert b"\\Answered" not in lines[-1] and b"\\Flagged" in lines[-1]
    # UID STORE names UIDs in MODIFIED; UNCHANGEDSINCE 0 fails for every message.
    lines, done = client.cmd("UID STORE 1,3 (UNCHANGEDSINCE 0) -FLAGS (\\Answered)")
    assert re.fullmatch(rb"t\d+ OK \[MODIFIED 1,3\] Conditional STORE failed\r\n", done), done
    assert b"\\Answered" in client.ok("FETCH 1 (FLAGS)")[0]
    assert client.status("STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)") == b"BAD"
    assert client.status("STORE 1 (UNCHANGEDSINCE) +FLAGS (\\Seen)") == b"BAD"
    client.alive()


def test_search_modseq(account):
    client = account.raw_select()
    base = highest(client.ok("STATUS INBOX (HIGHESTMODSEQ)"))
    lines = client.ok("STORE 3 +FLAGS (\\Seen)")
    top = modseqs(lines)[3]
    assert client.ok(f"SEARCH MODSEQ {base + 1}") == [f"* SEARCH 3 (MODSEQ {top})\r\n".encode()]
    assert client.ok(f'UID SEARCH MODSEQ "/flags/\\\\seen" all {base + 1}') == [
        f"* SEARCH 3 (MODSEQ {top})\r\n".encode()
    ]
    assert client.ok(f"SEARCH MODSEQ {top + 1}") == [b"* SEARCH\r\n"]
    assert client.status("SEARCH MODSEQ x") == b"BAD"
    assert client.status('SEARCH MODSEQ "/flags/x" bogus 5') == b"BAD"
    imapc = account.client()
    imapc.select_folder("INBOX")
    found = imapc.search(["MODSEQ", str(base + 1)])
    assert list(found) == [3] and found.modseq == top
    imapc.logout()
