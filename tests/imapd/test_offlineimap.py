"""A real IMAP client against a running imapd: offlineimap (Debian package offlineimap3) syncing
an account both ways, with flags, deletions and new folders, over several runs.

The same checks as tests/imapd/test_mbsync.py (the helpers both use are in tests/support/sync.py):
after every run both sides hold the same messages, each exactly once, with the same flags. On
failure the assertion shows the IMAP exchange from `offlineimap -d imap`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from common.store.mailbox import Mailbox
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
    pytest.mark.skipif(shutil.which("offlineimap") is None, reason="offlineimap not installed"),
]

RUN_TIMEOUT = 60


def exchange(log: str) -> str:
    """The IMAP lines of an `offlineimap -d imap` log, plus its errors and warnings."""
    lines = [
        line
        for line in log.splitlines()
        if " writer > " in line
        or " reader < " in line
        or "ERROR" in line
        or "WARNING" in line
        or "Traceback" in line
    ]
    return "\n".join(lines[-150:])


class OfflineImap:
    """A generated offlineimaprc (one account, Maildir <-> IMAP) and the runs made with it."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.local = root / "local"
        self.local.mkdir()
        self.rc = root / "offlineimaprc"
        self.rc.write_text(
            f"[general]\naccounts = test\nmetadata = {root / 'metadata'}\nui = basic\n"
            "maxsyncaccounts = 1\n\n"
            "[Account test]\nlocalrepository = local\nremoterepository = remote\n\n"
            f"[Repository local]\ntype = Maildir\nlocalfolders = {self.local}\nsep = .\n\n"
            f"[Repository remote]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {port}\n"
            f"remoteuser = {USER}\nremotepass = {PASSWORD}\nssl = no\nstarttls = no\n"
            "auth_mechanisms = LOGIN\nmaxconnections = 1\nholdconnectionopen = no\n"
            "timeout = 20\n"
        )
        self.rc.chmod(0o600)
        self.runs = 0

    def run(self) -> str:
        self.runs += 1
        log_path = self.root / f"offlineimap-{self.runs}.log"
        proc = subprocess.run(
            [
                "offlineimap",
                "-c",
                str(self.rc),
                "-o",
                "-1",
                "-u",
                "basic",
                "-d",
                "imap",
                "-l",
                str(log_path),
            ],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
            env={**os.environ, "HOME": str(self.root)},
        )
        log = (log_path.read_text(errors="replace") if log_path.exists() else "") + proc.stdout
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "ERROR" not in output, (
            f"offlineimap run {self.runs} exited {proc.returncode}\n{output[-3000:]}\n"
            f"{exchange(log)}"
        )
        return log


def test_offlineimap_both_ways_with_flags_and_deletions(server, tmp_path: Path) -> None:
    daemon, root = server
    sync = OfflineImap(tmp_path, daemon.port)
    local = sync.local

    # Run 1: the server's account comes down, folders and flags included.
    log = sync.run()
    expected = seeded()
    assert_in_step(root, local, expected, log, exchange)

    # Changes on both sides: flags, deletions, new mail, a new local folder.
    set_local_flags(find_local(local, "INBOX", "s1@example.org"), "RS")
    find_local(local, "INBOX", "s2@example.org").unlink()
    deliver_local(local / "INBOX", message("l1@example.org", "local one"), "S")
    deliver_local(local / "Work", message("l2@example.org", "local two"))
    deliver_local(local / "Local", message("x1@example.org", "local folder"), "F")
    client = imap_login(daemon.port)
    try:
        assert client.select("Work")[0] == "OK"
        assert (
            client.uid("STORE", uid_of(client, "w2@example.org"), "+FLAGS", "(\\Flagged)")[0]
            == "OK"
        )
        assert (
            client.uid("STORE", uid_of(client, "w1@example.org"), "+FLAGS", "(\\Deleted)")[0]
            == "OK"
        )
        assert client.expunge()[0] == "OK"
        assert (
            client.append(
                "INBOX",
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
    expected["INBOX"].update(
        {"s1@example.org": "RS", "l1@example.org": "S", "s4@example.org": "DS"}
    )
    del expected["INBOX"]["s2@example.org"]
    expected["Work"] = {"w2@example.org": "FRS", "l2@example.org": ""}
    expected["Local"] = {"x1@example.org": "F"}
    assert_in_step(root, local, expected, log, exchange)

    # Run 3 with nothing changed: nothing is lost, duplicated or re-flagged.
    log = sync.run()
    assert_in_step(root, local, expected, log, exchange)

    # Run 4: flags changed on the server by another program (a rename of the file's info) and
    # a local deletion of a message that came up from this side.
    inbox = Mailbox(root)
    target = next(e for e in inbox.sync().entries if b"<s3@example.org>" in inbox.read(e))
    os.rename(root / target.subdir / target.name, root / "cur" / f"{target.key}:2,RS")
    find_local(local, "Work", "l2@example.org").unlink()
    log = sync.run()
    expected["INBOX"]["s3@example.org"] = "RS"
    del expected["Work"]["l2@example.org"]
    assert_in_step(root, local, expected, log, exchange)

    # Run 5: another client files messages on the server: UID MOVE and UID COPY.
    client = imap_login(daemon.port)
    try:
        assert client.select("INBOX")[0] == "OK"
        assert client.uid("MOVE", uid_of(client, "s1@example.org"), "Archive")[0] == "OK"
        assert client.uid("COPY", uid_of(client, "l1@example.org"), "Work.2024")[0] == "OK"
    finally:
        client.logout()
    log = sync.run()
    expected["Archive"]["s1@example.org"] = expected["INBOX"].pop("s1@example.org")
    expected["Work.2024"]["l1@example.org"] = expected["INBOX"]["l1@example.org"]
    assert_in_step(root, local, expected, log, exchange)
