"""What the tests of real IMAP clients (mbsync, offlineimap) share: the messages they sync, the
state of both sides read back (folder -> Message-ID -> flags) and compared byte for byte, the
server side they start from, and small imaplib and local-Maildir helpers. The `server` fixture
(tests/imapd/conftest.py) seeds a Maildir with `seed_server` and starts imapd on it."""

from __future__ import annotations

import imaplib
import os
import re
from collections.abc import Callable
from pathlib import Path

from common.store import maildir
from common.store.folders import DEFAULT_FOLDERS, FolderTree
from common.store.mailbox import Mailbox
from common.utf7 import decode_mutf7

USER, PASSWORD = "alice", "pw"
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


def seed_server(root: Path) -> None:
    """The server side the clients meet: INBOX, Work, a nested folder and a folder whose
    name is modified UTF-7, with flags and awkward content (`seeded()` is what it holds)."""
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
