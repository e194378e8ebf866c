"""mbsync (isync) with a default-style configuration against imapd: only what a user must write
(host, port, user, password, no TLS on loopback, the stores with the subfolder style that nested
folders need, and one channel); everything else is
mbsync's default: its authentication choice, pipelining, COMPRESS=DEFLATE when advertised,
UIDPLUS for what it stores, Expunge None. Synced both ways, twice over, nothing lost or
duplicated. (test_mbsync.py runs a tuned configuration with deletions; CONDSTORE is used by
mbsync from 1.5 on, when advertised; the Debian 1.4 here does not.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from common.store import maildir
from support.sync import (
    PASSWORD,
    USER,
    assert_in_step,
    deliver_local,
    find_local,
    imap_login,
    message,
    seeded,
    set_local_flags,
    uid_of,
)

pytestmark = [
    pytest.mark.client,
    pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed"),
]

RUN_TIMEOUT = 60


class DefaultMbsync:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.local = root / "local"
        self.local.mkdir()
        self.rc = root / "mbsyncrc"
        self.rc.write_text(
            f"IMAPAccount server\nHost 127.0.0.1\nPort {port}\nUser {USER}\nPass {PASSWORD}\n"
            "SSLType None\n\n"
            "IMAPStore remote\nAccount server\n\n"
            f"MaildirStore local\nPath {self.local}/\nInbox {self.local}/INBOX\n"
            "SubFolders Verbatim\n\n"  # needed for the nested folder (Work.2024) at all
            "Channel mail\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nSyncState *\n"
        )
        self.rc.chmod(0o600)
        self.runs = 0

    def run(self) -> str:
        self.runs += 1
        proc = subprocess.run(
            ["mbsync", "-c", str(self.rc), "-D", "-a"],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
            env={**os.environ, "HOME": str(self.root)},
        )
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, (
            f"mbsync run {self.runs} exited {proc.returncode}\n{log[-4000:]}"
        )
        return log


def test_mbsync_default_configuration_both_ways_twice(server, tmp_path: Path) -> None:
    daemon, root = server
    sync = DefaultMbsync(tmp_path, daemon.port)
    local = sync.local
    deliver_local(local / "INBOX", message("l1@example.org", "local one"), "S")
    deliver_local(local / "Local", message("x1@example.org", "local folder"), "F")

    # Run 1: everything meets, over a compressed link; what mbsync stores on the server it
    # finds again by the APPENDUID it was given (UIDPLUS).
    log = sync.run()
    assert "COMPRESS DEFLATE" in log and "APPENDUID" in log
    expected = seeded()
    expected["INBOX"]["l1@example.org"] = "S"
    expected["Local"] = {"x1@example.org": "F"}
    assert_in_step(root, local, expected, log)

    # Run 2: changes on both sides, new mail on both sides (the server's by an MTA as well as
    # by APPEND), flags both ways.
    set_local_flags(find_local(local, "INBOX", "s1@example.org"), "RS")
    deliver_local(local / "Work", message("l2@example.org", "local two"))
    maildir.deliver(root, message("mta1@example.org", "by the MTA"))
    client = imap_login(daemon.port)
    try:
        assert client.select("INBOX")[0] == "OK"
        assert (
            client.uid("STORE", uid_of(client, "s3@example.org"), "-FLAGS", "(\\Seen)")[0] == "OK"
        )
        assert (
            client.append(
                "Local",
                "(\\Draft)",
                None,
                message("s4@example.org", "server four").replace(b"\n", b"\r\n"),
            )[0]
            == "OK"
        )
    finally:
        client.logout()
    log = sync.run()
    expected["INBOX"].update(
        {"s1@example.org": "RS", "s3@example.org": "F", "mta1@example.org": ""}
    )
    expected["Work"]["l2@example.org"] = ""
    expected["Local"]["s4@example.org"] = "D"
    assert_in_step(root, local, expected, log)

    # Run 3 with nothing changed: nothing is lost, duplicated or re-flagged.
    log = sync.run()
    assert_in_step(root, local, expected, log)
