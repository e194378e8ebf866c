"""A mail store whose files and directories cannot be written (an archive on a read-only mount, a
volume whose permissions forbid writing) is served read-only, not refused: SELECT answers
`[READ-ONLY]` with every message fetchable, byte for byte; STORE and EXPUNGE get `NO
[READ-ONLY]`, APPEND, COPY into it, CREATE, DELETE and RENAME `NO [NOPERM]`; POP3 lists and
RETRs everything and answers DELE with `-ERR`. The store is not changed by a single byte.

The uidlist cannot be written, so the UIDs live in memory for the session (common/store/
mailbox.py `_go_read_only`): the stored uidlist's when it knows every message, else derived the
same way by every session (UIDVALIDITY from the folders' mtimes, UIDs in delivery order), so two
sessions, or one after a restart, agree.

Two ways to make a store unwritable, both as the daemons would meet them: a read-only bind mount
(`mount --bind -o ro`, EROFS; when this machine allows no mount, the permissions way stands in),
and `chmod -R a-w` with the daemons running as an unprivileged user (`user = nobody`; EACCES).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.daemons import DaemonFactory
from support.imap import crlf
from support.mailstore import INBOX
from support.reliability import Account, Rig, fetch_ids, pop_wire
from support.site import MailSite

USER, GROUP = "nobody", "nogroup"
ROOT = os.geteuid() == 0


def can_mount() -> bool:
    if not ROOT or shutil.which("mount") is None:
        return False
    probe = Path(tempfile.mkdtemp(prefix="maildaemons-mount-"))
    try:
        done = subprocess.run(
            ["mount", "--bind", "-o", "ro", str(probe), str(probe)], capture_output=True
        )
        if done.returncode != 0:
            return False
        subprocess.run(["umount", str(probe)], check=True)
        return True
    finally:
        probe.rmdir()


def chown_tree(path: Path, uid: int, gid: int) -> None:
    for directory, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(os.path.join(directory, name), uid, gid)
    os.chown(path, uid, gid)


def chmod_tree(path: Path, writable: bool) -> None:
    for directory, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            target = Path(directory) / name
            mode = target.stat().st_mode & 0o777
            target.chmod(mode | 0o200 if writable else mode & ~0o222)
    mode = path.stat().st_mode & 0o777
    path.chmod(mode | 0o200 if writable else mode & ~0o222)


class ReadOnly:
    """Makes one user's Maildir unwritable to the daemons, and writable again."""

    def __init__(self, way: str, site: MailSite) -> None:
        self.way = way if way != "mount" or can_mount() else "permissions"
        self.site = site
        self.target: Path | None = None

    def extra(self) -> str:
        """The daemons' config: an unprivileged user when permissions do the work as root."""
        return f"user = {USER}\ngroup = {GROUP}\n" if self.way == "permissions" and ROOT else ""

    def prepare(self) -> None:
        """A site the unprivileged user can reach and write, as its own would be."""
        if not self.extra():
            return
        uid, gid = pwd.getpwnam(USER).pw_uid, grp.getgrnam(GROUP).gr_gid
        for path in (self.site.root, self.site.mail):
            path.chmod(0o755)
        for path in (self.site.state, self.site.run, self.site.mail):
            chown_tree(path, uid, gid)
        for name in ("users", "admins"):
            os.chown(self.site.root / name, uid, gid)

    def own(self, maildir: Path) -> None:
        """The Maildir made by the test (as root) becomes the daemons' user's, as an MTA that
        delivers as that user would have made it."""
        if self.extra():
            uid, gid = pwd.getpwnam(USER).pw_uid, grp.getgrnam(GROUP).gr_gid
            chown_tree(maildir, uid, gid)

    def apply(self, maildir: Path) -> None:
        self.target = maildir
        self.own(maildir)
        if self.way == "mount":
            subprocess.run(["mount", "--bind", "-o", "ro", str(maildir), str(maildir)], check=True)
        else:
            chmod_tree(maildir, writable=False)

    def undo(self) -> None:
        if self.target is None:
            return
        if self.way == "mount":
            subprocess.run(["umount", str(self.target)], check=False)
        else:
            chmod_tree(self.target, writable=True)
        self.target = None


@pytest.fixture(params=["mount", "permissions"])
def readonly_rig(request: pytest.FixtureRequest) -> Iterator[tuple[Rig, ReadOnly]]:
    root = Path(tempfile.mkdtemp(prefix="maildaemons-ro-", dir="/tmp"))
    site = MailSite.create(root)
    factory = DaemonFactory(root)
    way = ReadOnly(request.param, site)
    try:
        way.prepare()
        yield Rig(factory, site, way.extra(), accounts=3), way
    finally:
        way.undo()
        factory.stop_all()
        shutil.rmtree(root, ignore_errors=True)


def everything(maildir: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and directory (None) under a Maildir."""
    found: dict[str, bytes | None] = {}
    for path in sorted(maildir.rglob("*")):
        found[str(path.relative_to(maildir))] = None if path.is_dir() else path.read_bytes()
    return found


def serve_once(account: Account) -> None:
    """A session as before the store became read-only: UIDs given and written, flags set."""
    client = account.select()
    client.ok("STORE 2 +FLAGS (\\Seen)")
    client.ok("LOGOUT")


def uid_lines(client, what: str = "1:*") -> list[bytes]:  # type: ignore[no-untyped-def]
    return [
        line
        for line in client.ok(f"UID FETCH {what} (UID FLAGS)")
        if line.startswith(b"* ") and b"FETCH" in line
    ]


def test_a_read_only_store_is_served_read_only(readonly_rig: tuple[Rig, ReadOnly]) -> None:
    rig, way = readonly_rig
    account = rig.account()
    inbox = [account.deliver() for _ in range(3)]
    way.own(account.maildir)
    serve_once(account)  # INBOX has a uidlist that knows its three messages
    archive = [account.deliver(folder="Archive", size=900 + 300 * n) for n in range(4)]
    (account.folder("Archive") / "maildirfolder").touch()  # never served: no uidlist
    way.apply(account.maildir)
    before = everything(account.maildir)

    client = account.imap()
    lines = client.ok("SELECT INBOX")
    assert b"* 3 EXISTS\r\n" in lines and b"* OK [PERMANENTFLAGS ()] Flags permitted\r\n" in lines
    _lines, done = client.cmd("SELECT INBOX")
    assert re.match(rb"t\d+ OK \[READ-ONLY\] SELECT completed", done), done
    assert uid_lines(client) == [
        b"* 1 FETCH (UID 1 FLAGS ())\r\n",
        b"* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n",
        b"* 3 FETCH (UID 3 FLAGS ())\r\n",
    ], "the stored UIDs and flags"
    for seq, ident in enumerate(inbox, 1):
        body = client.ok(f"FETCH {seq} BODY[]")[0]  # not PEEK: \Seen cannot be stored
        assert crlf(account.ledger.messages[ident]) in body
        assert b"FLAGS" not in body
    refusals = {
        "STORE 1 +FLAGS (\\Flagged)": b"NO [READ-ONLY]",
        "EXPUNGE": b"NO [READ-ONLY]",
        "UID EXPUNGE 1": b"NO [READ-ONLY]",
        "MOVE 1 Archive": b"NO [READ-ONLY]",
        "COPY 1 Archive": b"NO [NOPERM]",
        "APPEND INBOX {5+}\r\nab\r\nc": b"NO [NOPERM]",
        "CREATE New": b"NO [NOPERM]",
        "RENAME Archive Old": b"NO [NOPERM]",
        "DELETE Archive": b"NO [NOPERM]",
    }
    for command, answer in refusals.items():
        _lines, done = client.cmd(command)
        assert done.split(b" ", 1)[1].startswith(answer), (command, done)

    lines = client.ok("SELECT Archive")
    validity = re.search(rb"UIDVALIDITY (\d+)", b"".join(lines))
    assert validity is not None
    assert fetch_ids(client) == dict(enumerate(archive, 1)), "UIDs in delivery order"
    for seq, ident in enumerate(archive, 1):
        assert crlf(account.ledger.messages[ident]) in client.ok(f"FETCH {seq} BODY.PEEK[]")[0]
    assert uid_lines(client) == [
        b"* %d FETCH (UID %d FLAGS (\\Recent))\r\n" % (n, n) for n in range(1, 5)
    ], "messages in new/ stay \\Recent: no session can claim them"
    other = account.imap()  # another session derives the same UIDs
    assert validity.group(0) in b"".join(other.ok("EXAMINE Archive"))
    assert fetch_ids(other) == dict(enumerate(archive, 1))
    for session in (client, other):
        session.ok("LOGOUT")

    pop = account.pop()
    pop.send(b"STAT\r\n")
    assert pop.line().startswith(b"+OK 3 ")
    for number, ident in enumerate(inbox, 1):
        pop.send(b"RETR %d\r\n" % number)
        assert pop.line().startswith(b"+OK ")
        assert pop.until(b".\r\n") == pop_wire(account.ledger.messages[ident])
    pop.send(b"DELE 1\r\n")
    assert pop.line() == b"-ERR Maildrop is read-only: messages cannot be deleted\r\n"
    pop.send(b"QUIT\r\n")
    assert pop.line().startswith(b"+OK ")

    assert everything(account.maildir) == before, "not a byte of the store changed"
    rig.assert_healthy()

    way.undo()  # writable again: served read-write, the stored UIDs as they were
    client = account.imap()
    _lines, done = client.cmd("SELECT INBOX")
    assert b"[READ-WRITE]" in done
    assert uid_lines(client)[1] == b"* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n"
    client.ok("LOGOUT")
    account.check()
    assert account.ledger.present(INBOX) == set(inbox)


def test_derived_uids_survive_a_restart(readonly_rig: tuple[Rig, ReadOnly]) -> None:
    """UIDVALIDITY and UIDs of a folder that never had a uidlist are the same after the daemon
    restarts: derived from the folder, not from the session."""
    rig, way = readonly_rig
    account = rig.account()
    ids = [account.deliver(subdir="cur") for _ in range(5)]
    way.apply(account.maildir)
    client = account.imap()
    first = [line for line in client.ok("EXAMINE INBOX") if b"UIDVALIDITY" in line]
    assert fetch_ids(client) == dict(enumerate(ids, 1))
    client.ok("LOGOUT")
    port = rig.imapd.port
    rig.imapd.stop()
    rig.imapd = rig.start("imapd", port=port)
    client = account.imap()
    assert [line for line in client.ok("SELECT INBOX") if b"UIDVALIDITY" in line] == first
    assert [e.split(b" ")[4] for e in uid_lines(client)] == [b"%d" % n for n in range(1, 6)]
    client.ok("LOGOUT")
    rig.assert_healthy()
