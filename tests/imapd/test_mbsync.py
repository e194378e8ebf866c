"""A real IMAP client against a running imapd: mbsync (Debian package isync) syncing a local
Maildir with the server both ways, with flags and deletions, over several runs.

After every run both sides must hold the same messages (by Message-ID, each exactly once) with the
same flags, and what was deleted on one side must be gone from both. On failure the assertion
shows the IMAP exchange from `mbsync -D` (commands and responses, passwords masked by mbsync).
The helpers it shares with the other real-client tests are in tests/support/sync.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from common.store import maildir
from common.store.mailbox import Mailbox
from support.sync import (
    PASSWORD,
    USER,
    assert_in_step,
    comparable,
    deliver_local,
    exchange,
    find_local,
    imap_login,
    message,
    message_id,
    seeded,
    set_local_flags,
    uid_of,
)

pytestmark = [
    pytest.mark.client,
    pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed"),
]

RUN_TIMEOUT = 60


class Mbsync:
    """A generated mbsyncrc for one channel (all folders, both ways) and the runs made with it."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.local = root / "local"
        self.local.mkdir()
        self.rc = root / "mbsyncrc"
        self.rc.write_text(
            "IMAPAccount server\nHost 127.0.0.1\n"
            f"Port {port}\nUser {USER}\nPass {PASSWORD}\n"
            "SSLType None\nAuthMechs LOGIN\nTimeout 20\nPipelineDepth 10\n\n"
            "IMAPStore remote\nAccount server\n\n"
            f"MaildirStore local\nPath {self.local}/\nInbox {self.local}/INBOX\n"
            "SubFolders Verbatim\n\n"
            "Channel mail\nFar :remote:\nNear :local:\nPatterns *\n"
            "Sync All\nCreate Both\nRemove None\nExpunge Both\nSyncState *\nCopyArrivalDate yes\n"
        )
        self.rc.chmod(0o600)
        self.runs = 0

    def run(self) -> str:
        self.runs += 1
        log_path = self.root / f"mbsync-{self.runs}.log"
        with open(log_path, "w") as out:
            proc = subprocess.run(
                ["mbsync", "-c", str(self.rc), "-D", "-a"],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=RUN_TIMEOUT,
                check=False,
                env={**os.environ, "HOME": str(self.root)},
            )
        log = log_path.read_text(errors="replace")
        assert proc.returncode == 0, (
            f"mbsync run {self.runs} exited {proc.returncode}\n{exchange(log)}"
        )
        return log


def test_mbsync_both_ways_with_flags_and_deletions(server, tmp_path: Path) -> None:
    daemon, root = server
    sync = Mbsync(tmp_path, daemon.port)
    local = sync.local
    deliver_local(local / "INBOX", message("l1@example.org", "local one"), "S")
    deliver_local(local / "INBOX", message("l2@example.org", "local two"))
    deliver_local(local / "Local", message("x1@example.org", "local folder"), "F")

    # Run 1: everything meets; new folders are created on the other side.
    log = sync.run()
    expected = seeded()
    expected["INBOX"].update({"l1@example.org": "S", "l2@example.org": ""})
    expected["Local"] = {"x1@example.org": "F"}
    assert_in_step(root, local, expected, log)

    # Changes on both sides: flags, deletions, new mail.
    set_local_flags(find_local(local, "INBOX", "s1@example.org"), "RS")
    find_local(local, "INBOX", "l2@example.org").unlink()
    deliver_local(local / "Work", message("l3@example.org", "local three"))
    client = imap_login(daemon.port)
    try:
        assert client.select("INBOX")[0] == "OK"
        assert (
            client.uid("STORE", uid_of(client, "s3@example.org"), "-FLAGS", "(\\Seen)")[0] == "OK"
        )
        assert (
            client.uid("STORE", uid_of(client, "l1@example.org"), "+FLAGS", "(\\Deleted)")[0]
            == "OK"
        )
        assert client.expunge()[0] == "OK"
        assert (
            client.append(
                "Local",
                "(\\Seen \\Draft)",
                None,
                message("s4@example.org", "server four").replace(b"\n", b"\r\n"),
            )[0]
            == "OK"
        )
    finally:
        client.logout()

    # Run 2: the changes cross over.
    log = sync.run()
    expected["INBOX"].update({"s1@example.org": "RS", "s3@example.org": "F"})
    del expected["INBOX"]["l1@example.org"], expected["INBOX"]["l2@example.org"]
    expected["Work"]["l3@example.org"] = ""
    expected["Local"]["s4@example.org"] = "DS"
    assert_in_step(root, local, expected, log)

    # Run 3 with nothing changed: nothing is lost, duplicated or re-flagged.
    log = sync.run()
    assert_in_step(root, local, expected, log)

    # Run 4: a deletion made on the server side by another program (not through IMAP) and a
    # flag set locally on a message that came from the server are both carried over.
    doomed = next(
        e
        for e in Mailbox(root / ".Work").sync().entries
        if b"<w1@example.org>" in Mailbox(root / ".Work").read(e)
    )
    os.unlink(root / ".Work" / doomed.subdir / doomed.name)
    set_local_flags(find_local(local, "Local", "s4@example.org"), "DFS")
    log = sync.run()
    del expected["Work"]["w1@example.org"]
    expected["Local"]["s4@example.org"] = "DFS"
    assert_in_step(root, local, expected, log)


def test_mbsync_many_messages_and_mail_arriving_meanwhile(server, tmp_path: Path) -> None:
    """Hundreds of messages, long UID sets in STORE/FETCH, and an MTA delivering into
    the server's INBOX between and during runs: every message ends up once on each side."""
    daemon, root = server
    sync = Mbsync(tmp_path, daemon.port)
    local = sync.local
    expected = seeded()
    for number in range(150):
        mid = f"bulk{number}@example.org"
        (root / "new" / f"{1700000000 + number}.M{number}P7.mta").write_bytes(
            message(mid, f"bulk {number}")
        )
        expected["INBOX"][mid] = ""
    for number in range(100):
        mid = f"near{number}@example.org"
        deliver_local(local / "INBOX", message(mid, f"near {number}"), "S" if number % 2 else "")
        expected["INBOX"][mid] = "S" if number % 2 else ""
    log = sync.run()
    assert_in_step(root, local, expected, log)

    # Flags and deletions over long UID sets from an IMAP client, deletions and flags locally.
    client = imap_login(daemon.port)
    try:
        assert client.select("INBOX")[0] == "OK"
        typ, data = client.uid("SEARCH", "ALL")
        all_uids = data[0].split()
        answered = b",".join(all_uids[::3])
        deleted = b",".join(all_uids[1::11])
        assert client.uid("STORE", answered, "+FLAGS.SILENT", "(\\Answered)")[0] == "OK"
        assert client.uid("STORE", deleted, "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
        changed = answered + b"," + deleted
        typ, data = client.uid("FETCH", changed, "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        assert typ == "OK"
        mids = {
            re.search(rb"UID (\d+)", item[0]).group(1): message_id(item[1])  # type: ignore[union-attr]
            for item in data
            if isinstance(item, tuple)
        }
        typ, data = client.uid("FETCH", changed, "(FLAGS)")
        assert typ == "OK" and len(mids) == len(set(all_uids[::3]) | set(all_uids[1::11]))
        for line in data:
            assert isinstance(line, bytes)
            mid = mids[re.search(rb"UID (\d+)", line).group(1)]  # type: ignore[union-attr]
            if b"\\Deleted" in line:
                expected["INBOX"].pop(mid)
            else:
                assert b"\\Answered" in line, line
                expected["INBOX"][mid] = comparable(expected["INBOX"][mid] + "R")
        assert client.expunge()[0] == "OK"
    finally:
        client.logout()
    for number in range(0, 150, 7):
        mid = f"bulk{number}@example.org"
        if mid in expected["INBOX"]:
            find_local(local, "INBOX", mid).unlink()
            del expected["INBOX"][mid]
    for number in range(0, 100, 5):
        mid = f"near{number}@example.org"
        if mid in expected["INBOX"]:
            path = find_local(local, "INBOX", mid)
            set_local_flags(path, comparable(maildir.MessageFile("cur", path.name).letters + "F"))
            # Both sides changed some of these (R on the server): mbsync merges the changes.
            expected["INBOX"][mid] = comparable(expected["INBOX"][mid] + "F")
    # An MTA delivers while mbsync runs; whatever the run missed, the next one brings.
    arrivals = [f"late{number}@example.org" for number in range(30)]
    with subprocess.Popen(
        ["mbsync", "-c", str(sync.rc), "-a", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as proc:
        for number, mid in enumerate(arrivals):
            maildir.deliver(root, message(mid, f"late {number}"))
            expected["INBOX"][mid] = ""
        _, errors = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, errors.decode(errors="replace")
    log = sync.run()
    assert_in_step(root, local, expected, log)
    log = sync.run()
    assert_in_step(root, local, expected, log)
