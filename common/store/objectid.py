"""What the store keeps and derives for IMAP OBJECTID (RFC 8474) and SAVEDATE (RFC 8514).

MAILBOXID: a random id in the folder's own file `maildaemons-mailboxid`, made when the folder is
created (or, for a folder another program made, when first asked for). The file lives inside
the folder's directory, so RENAME carries it along and DELETE removes it with the folder; a
folder created again under the same name gets a new one. It is written to a temporary file and
linked into place, so two sessions asking at once for a folder that has none agree on one.
The folder's mailbox cache and uidlist may be deleted; this file may not (a new one is a new
MAILBOXID, which tells clients to forget what they knew of the mailbox).

The save date of a message is when it was placed in its folder: the time at the start of its
Maildir name, which every delivery, APPEND, COPY and MOVE writes (maildir(5) names begin with
the seconds, and `M<usec>` may follow); a name without it gives the file's mtime.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

from common.store.maildir import read_file

MAILBOXID_FILE = "maildaemons-mailboxid"
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
_NAME_TIME_RE = re.compile(r"([1-9][0-9]{8,11})\.(?:[^.]*?M([0-9]{1,6})(?![0-9]))?")


def mailbox_id(folder: Path) -> str:
    """The folder's MAILBOXID, made now if it has none."""
    path = folder / MAILBOXID_FILE
    current = _read(path)
    if current is not None:
        return current
    return create_mailbox_id(folder)


def create_mailbox_id(folder: Path) -> str:
    """Give a folder an id unless it has one already; returns the one it has then. A damaged
    file is replaced (the folder's old id is lost with it)."""
    path = folder / MAILBOXID_FILE
    tmp = folder / f".{MAILBOXID_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        tmp.write_text("F" + secrets.token_hex(12) + "\n", encoding="ascii")
        with contextlib.suppress(FileExistsError):  # another session was first: its id counts
            os.link(tmp, path)
        current = _read(path)
        if current is None:
            os.replace(tmp, path)
            current = _read(path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    if current is None:
        raise OSError(f"unreadable {path}")
    return current


def _read(path: Path) -> str | None:
    try:
        text = read_file(path).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _ID_RE.fullmatch(text) else None


def name_time(key: str) -> float | None:
    """The time a Maildir name starts with, with its microseconds when it has `M<usec>`."""
    found = _NAME_TIME_RE.match(key)
    if found is None:
        return None
    seconds = int(found.group(1))
    micro = found.group(2)
    return seconds + (int(micro) / 1_000_000 if micro else 0.0)
