"""A real IMAP client against a running imapd: mbsync (Debian package isync) syncing a local
Maildir with the server both ways, with flags and deletions, over several runs.

After every run both sides must hold the same messages (by Message-ID, each exactly once) with the
same flags, and what was deleted on one side must be gone from both. On failure the assertion
shows the IMAP exchange from `mbsync -D` (commands and responses, passwords masked by mbsync).
"""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from common.store import maildir
from common.store.folders import DEFAULT_FOLDERS, FolderTree
from common.store.mailbox import Mailbox
from common.utf7 import decode_mutf7

pytestmark = [
    pytest.mark.client,
    pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed"),
]

USER, PASSWORD = "alice", "pw"
RUN_TIMEOUT = 60
UTF7_FOLDER = "Entwürfe & Co"
_TUID = re.compile(rb"^X-TUID: [^\n]*\n", re.MULTILINE)
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([^>]+)>", re.IGNORECASE | re.MULTILINE)
State = dict[str, dict[str, str]]  # folder -> Message-ID -> sorted flag letters


def message(mid: str, subject: str) -> bytes:
    return (
        f"From: sender@example.org\nTo: alice@example.org\nSubject: {subject}\n"
        f"Message-ID: <{mid}>\nDate: Mon, 01 Jan 2024 10:00:00 +0000\n\n"
        f"Body of {mid}.\n.\n..dots\nend\n"
    ).encode()


def message_id(data: bytes) -> str:
    found = _MESSAGE_ID.search(data)
    assert found, f"no Message-ID in {data[:200]!r}"
    return found.group(1).decode()


def comparable(letters: str) -> str:
    """Flags both sides keep: Draft, Flagged, Replied, Seen (no keywords, no \\Deleted left)."""
    return "".join(sorted(set(letters) & set("DFRS")))


def normalized(data: bytes) -> bytes:
    """Content as both sides must agree on it: LF line ends, one final line end, and without
    the `X-TUID:` header mbsync adds to the copies it stores to find them again."""
    data = _TUID.sub(b"", data.replace(b"\r\n", b"\n"), count=1)
    return data.rstrip(b"\n") + b"\n"


def server_state(root: Path, contents: dict[str, bytes] | None = None) -> State:
    """Every server folder read through the store, as imapd serves it (names decoded)."""
    tree = FolderTree(root)
    state: State = {}
    for name in tree.names():
        box = Mailbox(tree.path(name))
        seen: dict[str, str] = {}
        for entry in box.sync().entries:
            data = box.read(entry)
            mid = message_id(data)
            assert mid not in seen, f"server {name}: {mid} twice"
            seen[mid] = comparable(entry.letters)
            if contents is not None:
                contents[f"{name}/{mid}"] = normalized(data)
        state[name] = seen
    return state


def local_state(base: Path, contents: dict[str, bytes] | None = None) -> State:
    """The local Maildir tree as the client keeps it (INBOX at base/INBOX, other folders under
    base with '/' or '.' between levels; names on disk in modified UTF-7, decoded here)."""
    state: State = {}
    for folder in sorted(p for p in base.rglob("cur") if p.is_dir()):
        path = folder.parent
        name = decode_mutf7(path.relative_to(base).as_posix().replace("/", ".").encode())
        seen: dict[str, str] = {}
        for message_file in maildir.list_messages(path):
            data = (path / message_file.relpath).read_bytes()
            mid = message_id(data)
            assert mid not in seen, f"local {name}: {mid} twice"
            seen[mid] = comparable(message_file.letters)
            if contents is not None:
                contents[f"{name}/{mid}"] = normalized(data)
        state[name] = seen
    return state


def exchange(log: str) -> str:
    """The IMAP lines of an `mbsync -D` log: commands sent (>>>) and the server's responses."""
    lines = [
        line
        for line in log.splitlines()
        if re.match(r"^[FN]: (>>> |\* |\d+ (OK|NO|BAD)|\+ )", line)
        or "Error" in line
        or "error" in line
        or line.startswith(("IMAP ", "Maildir "))
    ]
    return "\n".join(lines[-150:])


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


def deliver_local(folder: Path, data: bytes, letters: str = "") -> None:
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    name = f"{maildir.unique_name()}"
    (folder / "tmp" / name).write_bytes(data)
    if letters:
        os.rename(folder / "tmp" / name, folder / "cur" / f"{name}:2,{letters}")
    else:
        os.rename(folder / "tmp" / name, folder / "new" / name)


def find_local(base: Path, folder: str, mid: str) -> Path:
    for path in (base / folder / "cur").iterdir():
        if f"<{mid}>".encode() in path.read_bytes():
            return path
    for path in (base / folder / "new").iterdir():
        if f"<{mid}>".encode() in path.read_bytes():
            return path
    raise AssertionError(f"{mid} not in local {folder}")


def set_local_flags(path: Path, letters: str) -> None:
    base = path.name.split(":", 1)[0]
    os.rename(path, path.parent.parent / "cur" / f"{base}:2,{letters}")


def differences(found: dict[str, str] | None, wanted: dict[str, str]) -> str:
    """What is missing, extra or flagged differently (found vs wanted), briefly."""
    if found is None:
        return "folder missing"
    missing = sorted(set(wanted) - set(found))
    extra = sorted(set(found) - set(wanted))
    flags = sorted(
        f"{m}: {found[m]!r} not {wanted[m]!r}"
        for m in set(found) & set(wanted)
        if found[m] != wanted[m]
    )
    return (
        f"missing {missing[:10]} ({len(missing)}), extra {extra[:10]} ({len(extra)}), "
        f"flags {flags[:10]} ({len(flags)})"
    )


def assert_in_step(
    root: Path, local: Path, expected: State, log: str, exchange: Callable[[str], str] = exchange
) -> None:
    """Both sides hold exactly `expected` (folder -> Message-ID -> flags), byte for byte alike."""
    far_contents: dict[str, bytes] = {}
    near_contents: dict[str, bytes] = {}
    server, near = server_state(root, far_contents), local_state(local, near_contents)
    detail = f"\nIMAP exchange of the last run:\n{exchange(log)}"
    for name, messages in expected.items():
        assert server.get(name) == messages, (
            f"server {name}: {differences(server.get(name), messages)}{detail}"
        )
        assert near.get(name) == messages, (
            f"local {name}: {differences(near.get(name), messages)}{detail}"
        )
    assert set(server) == set(near) == set(expected), (
        f"folders: server {sorted(server)}, local {sorted(near)}{detail}"
    )
    for key, data in far_contents.items():
        assert near_contents[key] == data, f"{key} differs: {near_contents[key][:300]!r}{detail}"


@pytest.fixture
def server(daemons, site):
    root = site.mail / USER
    tree = FolderTree(root)
    tree.ensure_inbox(DEFAULT_FOLDERS)
    tree.create("Work")
    inbox, work = Mailbox(root), Mailbox(tree.path("Work"))
    maildir.deliver(root, message("s1@example.org", "server one"))
    inbox.append(message("s2@example.org", "server two"), "S", None)
    inbox.append(message("s3@example.org", "server three"), "FS", None)
    work.append(message("w1@example.org", "work one"), "", None)
    work.append(message("w2@example.org", "work two"), "RS", None)
    # Awkward content: 8-bit text, a big attachment-like body, no final newline.
    big = message("big@example.org", "big").replace(
        b"end\n", ("Grüße, naïve café\n".encode() + b"x" * 76 + b"\n") * 3000 + b"end"
    )
    inbox.append(big, "", None)
    maildir.deliver(root, message("nonl@example.org", "no final newline").rstrip(b"\n"))
    # A nested folder and a name that is modified UTF-7 on the wire and on disk.
    for name, mid in (("Work.2024", "w3@example.org"), (UTF7_FOLDER, "u1@example.org")):
        tree.create(name)
        tree.subscribe(name, True)
        Mailbox(tree.path(name)).append(message(mid, name), "S", None)
    daemon = daemons.start(
        "imapd",
        "-l",
        "127.0.0.1",
        *site.common_args(),
        "-u",
        f"{USER}:{PASSWORD}",
        config=site.config(),
    )
    return daemon, root


def seeded() -> State:
    """What the `server` fixture put on the server."""
    state: State = {name: {} for name in DEFAULT_FOLDERS}
    state["INBOX"] = {
        "s1@example.org": "",
        "s2@example.org": "S",
        "s3@example.org": "FS",
        "big@example.org": "",
        "nonl@example.org": "",
    }
    state["Work"] = {"w1@example.org": "", "w2@example.org": "RS"}
    state["Work.2024"] = {"w3@example.org": "S"}
    state[UTF7_FOLDER] = {"u1@example.org": "S"}
    return state


def imap_login(port: int) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    client.login(USER, PASSWORD)
    return client


def uid_of(client: imaplib.IMAP4, mid: str) -> bytes:
    typ, data = client.uid("SEARCH", "HEADER", "Message-ID", mid)
    assert typ == "OK" and data[0], f"{mid}: {typ} {data}"
    return data[0].split()[0]


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
