"""QRESYNC (RFC 7162 3.2) over real sockets: ENABLE QRESYNC, SELECT/EXAMINE ... (QRESYNC ...)
with VANISHED (EARLIER) and the changed flags, known UIDs and sequence-match data, VANISHED
instead of EXPUNGE, HIGHESTMODSEQ after EXPUNGE, UID FETCH (CHANGEDSINCE n VANISHED), [CLOSED],
expunges by other programs, tombstones that were dropped, and the BAD cases."""

from __future__ import annotations

import re

import pytest

from common.store.uidlist import UIDLIST
from support.imap import shared_imapd
from support.site import deliver

shared = shared_imapd("imap-ext-qresync")


@pytest.fixture
def account(shared):
    """INBOX with 10 messages, UIDs 1-10."""
    server = shared.account()
    maildir = server.maildir()
    for n in range(1, 11):
        deliver(
            maildir,
            f"Subject: q{n}\n\nbody {n}\n".encode(),
            subdir="cur",
            name=f"{1700000000 + n}.M{n}P10.qr:2,",
        )
    return server


def state(client) -> tuple[int, int]:
    """(UIDVALIDITY, HIGHESTMODSEQ) as a client caches them."""
    text = b"".join(client.ok("STATUS INBOX (UIDVALIDITY HIGHESTMODSEQ)"))
    found = re.search(rb"UIDVALIDITY (\d+) HIGHESTMODSEQ (\d+)", text)
    assert found, text
    return int(found.group(1)), int(found.group(2))


def qresync_client(account):
    client = account.raw_login()
    assert client.ok("ENABLE QRESYNC") == [b"* ENABLED QRESYNC\r\n"]
    return client


def changes(account, modseq_after: bool = True) -> None:
    """Another session: flags on 2 and 4, expunges 5 and 7."""
    other = account.raw_select()
    other.ok("STORE 2,4 +FLAGS.SILENT (\\Flagged)")
    other.ok("STORE 5,7 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    other.ok("LOGOUT")


def test_select_qresync_reports_what_changed(account):
    client = qresync_client(account)
    validity, modseq = state(client)
    changes(account)
    lines = client.ok(f"SELECT INBOX (QRESYNC ({validity} {modseq}))")
    assert b"* 8 EXISTS\r\n" in lines
    vanished = lines.index(b"* VANISHED (EARLIER) 5,7\r\n")
    fetched = [line for line in lines if b"FETCH" in line]
    assert len(fetched) == 2 and all(lines.index(f) > vanished for f in fetched)
    assert re.fullmatch(
        rb"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)\r\n", fetched[0]
    ), fetched
    assert re.fullmatch(
        rb"\* 4 FETCH \(UID 4 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)\r\n", fetched[1]
    ), fetched
    # With the known UIDs, only those are reported on; EXAMINE works the same way.
    lines = client.ok(f"EXAMINE INBOX (QRESYNC ({validity} {modseq} 1:4))")
    assert lines[0] == b"* OK [CLOSED] Previous mailbox closed\r\n"
    assert not any(b"VANISHED" in line for line in lines)
    assert len([line for line in lines if b"FETCH" in line]) == 2
    lines = client.ok(f"EXAMINE INBOX (QRESYNC ({validity} {modseq} 5:10))")
    assert b"* VANISHED (EARLIER) 5,7\r\n" in lines
    assert not any(b"FETCH" in line for line in lines)
    # Nothing changed since the current HIGHESTMODSEQ: nothing to say.
    _validity, now = state(client)
    lines = client.ok(f"SELECT INBOX (QRESYNC ({validity} {now}))")
    assert not any(b"VANISHED" in line or b"FETCH" in line for line in lines)
    # Another UIDVALIDITY: the client's cache is void; a plain SELECT.
    lines = client.ok(f"SELECT INBOX (QRESYNC ({validity + 1} {modseq}))")
    assert not any(b"VANISHED" in line or b"FETCH" in line for line in lines)


def test_vanished_replaces_expunge_and_expunge_reports_highestmodseq(account):
    client = qresync_client(account)
    client.ok("SELECT INBOX")
    other = account.raw_select()
    other.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    assert client.ok("NOOP") == [b"* VANISHED 3\r\n"]
    client.ok("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    lines, done = client.cmd("EXPUNGE")
    assert lines == [b"* VANISHED 1:2\r\n"]
    top = int(
        re.fullmatch(rb"t\d+ OK \[HIGHESTMODSEQ (\d+)\] EXPUNGE completed\r\n", done).group(1)
    )  # type: ignore[union-attr]
    assert state(client)[1] == top
    client.ok("UID STORE 9:10 +FLAGS.SILENT (\\Deleted)")
    lines, done = client.cmd("UID EXPUNGE 10")
    assert lines == [b"* VANISHED 10\r\n"]
    assert re.fullmatch(rb"t\d+ OK \[HIGHESTMODSEQ \d+\] EXPUNGE completed\r\n", done), done
    # Nothing expunged: no HIGHESTMODSEQ needed. CLOSE never sends it (RFC 7162 3.2.8).
    lines, done = client.cmd("UID EXPUNGE 4")
    assert lines == [] and re.fullmatch(rb"t\d+ OK EXPUNGE completed\r\n", done), done
    lines, done = client.cmd("CLOSE")
    assert lines == [] and re.fullmatch(rb"t\d+ OK CLOSE completed\r\n", done), done
    # A session without QRESYNC still gets EXPUNGE responses.
    assert other.ok("NOOP") == [
        b"* 9 EXPUNGE\r\n",
        b"* 8 EXPUNGE\r\n",
        b"* 2 EXPUNGE\r\n",
        b"* 1 EXPUNGE\r\n",
    ]  # 10 and 9 (CLOSE), 2 and 1


def test_uid_fetch_vanished(account):
    client = qresync_client(account)
    client.ok("SELECT INBOX")
    _validity, modseq = state(client)
    changes(account)
    lines = client.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    # The VANISHED (EARLIER) comes first; 5 and 7 are still in this session's view (not yet
    # reported), so they are left to the VANISHED that follows the FETCHes.
    assert [line for line in lines if b"FETCH" in line][0].startswith(b"* 2 FETCH (UID 2 ")
    assert lines[-1] == b"* VANISHED 5,7\r\n"
    lines = client.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    assert lines[0] == b"* VANISHED (EARLIER) 5,7\r\n"
    assert [re.search(rb"UID (\d+)", line).group(1) for line in lines[1:]] == [b"2", b"4"]  # type: ignore[union-attr]
    lines = client.ok(f"UID FETCH 6:8 (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    assert lines == [b"* VANISHED (EARLIER) 7\r\n"]


def test_expunges_by_other_programs_are_vanished_too(account):
    client = qresync_client(account)
    validity, modseq = state(client)
    for path in sorted((account.path / "cur").iterdir())[:2]:  # UIDs 1 and 2, removed by mutt
        path.unlink()
    lines = client.ok(f"SELECT INBOX (QRESYNC ({validity} {modseq}))")
    assert b"* VANISHED (EARLIER) 1:2\r\n" in lines
    assert state(client)[1] > modseq  # the expunge took a MODSEQ of its own


def test_dropped_tombstones_fall_back_to_every_missing_uid(account):
    """When the tombstones that old are gone (the uidlist keeps a bounded number), the answer
    is every UID of the range that is not here, narrowed by the sequence-match data."""
    client = qresync_client(account)
    validity, start = state(client)
    changes(account)  # 5 and 7 expunged
    client.ok("SELECT INBOX")
    client.ok("UID STORE 9 +FLAGS.SILENT (\\Deleted)")
    client.ok("EXPUNGE")  # 9 expunged
    client.ok("UNSELECT")
    # Forget every tombstone up to now, as a long-lived folder would.
    path = account.path / UIDLIST
    lines = path.read_text().splitlines()
    _validity, now = state(client)
    head = lines[0] + f" E{now}"
    path.write_text(
        "\n".join([head] + [line for line in lines[1:] if not line.startswith("- ")]) + "\n"
    )
    lines = client.ok(f"SELECT INBOX (QRESYNC ({validity} {start}))")
    assert b"* VANISHED (EARLIER) 5,7,9\r\n" in lines
    # Sequence-match data: the client knew 1->1, 4->4, 6->6 (6 is now message 5: mismatch),
    # so nothing below UID 4 can have vanished unseen.
    lines = client.ok(f"SELECT INBOX (QRESYNC ({validity} {start} 1:10 (1,4,6 1,4,6)))")
    assert b"* VANISHED (EARLIER) 5,7,9\r\n" in lines
    # The client knew 4->4 and 5->6 (it saw 5 go): both hold, so only what is above 6.
    lines = client.ok(f"SELECT INBOX (QRESYNC ({validity} {start} 1:10 (4,5 4,6)))")
    assert b"* VANISHED (EARLIER) 7,9\r\n" in lines
    # After new tombstones, exact answers again from the new horizon on.
    client.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    client.ok("EXPUNGE")
    lines = client.ok(f"SELECT INBOX (QRESYNC ({validity} {now}))")
    assert b"* VANISHED (EARLIER) 1\r\n" in lines


def test_qresync_bad_cases(account):
    client = account.raw_login()
    validity, modseq = state(client)
    # Without ENABLE QRESYNC: the SELECT parameter and the FETCH modifier are BAD.
    assert client.status(f"SELECT INBOX (QRESYNC ({validity} {modseq}))") == b"BAD"
    client.ok("SELECT INBOX")
    assert client.status(f"UID FETCH 1:* FLAGS (CHANGEDSINCE {modseq} VANISHED)") == b"BAD"
    client.ok("ENABLE QRESYNC")
    # VANISHED needs UID FETCH and CHANGEDSINCE; the QRESYNC list needs its two numbers.
    assert client.status(f"FETCH 1:* FLAGS (CHANGEDSINCE {modseq} VANISHED)") == b"BAD"
    assert client.status("UID FETCH 1:* FLAGS (VANISHED)") == b"BAD"
    assert client.status(f"SELECT INBOX (QRESYNC ({validity}))") == b"BAD"
    assert client.status(f"SELECT INBOX (QRESYNC (0 {modseq}))") == b"BAD"
    assert client.status(f"SELECT INBOX (QRESYNC ({validity} {modseq} 1:*))") == b"BAD"
    client.alive()
    lines, done = client.cmd(f"SELECT Nowhere (QRESYNC ({validity} {modseq}))")
    assert lines == [b"* OK [CLOSED] Previous mailbox closed\r\n"]
    assert re.match(rb"t\d+ NO \[NONEXISTENT\] ", done)
    assert client.status("FETCH 1 FLAGS") == b"BAD"  # nothing selected after a failed SELECT


def test_expunges_held_back_lower_the_highestmodseq(account):
    """A FETCH may not report another session's expunge (RFC 3501 7.4.1) but may report newer
    MODSEQs: it then says HIGHESTMODSEQ below the expunge's, so a client that resynchronizes
    from what it saw still learns of the expunge (RFC 7162 6)."""
    client = qresync_client(account)
    client.ok("SELECT INBOX")
    validity, _modseq = state(client)
    other = account.raw_select()
    other.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    other.ok("STORE 4 +FLAGS.SILENT (\\Seen)")  # a change newer than the expunge
    lines = client.ok("FETCH 1:* (FLAGS)")
    assert not any(b"VANISHED" in line for line in lines)
    newest = max(int(m.group(1)) for line in lines if (m := re.search(rb"MODSEQ \((\d+)\)", line)))
    held = [
        int(m.group(1))
        for line in lines
        if (m := re.fullmatch(rb"\* OK \[HIGHESTMODSEQ (\d+)\] Expunges pending\r\n", line))
    ]
    assert len(held) == 1 and held[0] < newest, lines
    # Reconnecting from that value: the expunge is there.
    again = qresync_client(account)
    assert b"* VANISHED (EARLIER) 3\r\n" in again.ok(
        f"SELECT INBOX (QRESYNC ({validity} {held[0]}))"
    )
    # Once reported, nothing is held back any more.
    assert client.ok("NOOP") == [b"* VANISHED 3\r\n"]
    assert not any(b"HIGHESTMODSEQ" in line for line in client.ok("FETCH 1:* (FLAGS)"))
