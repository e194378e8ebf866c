"""Per-folder UID list: UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and one record per message.

File `maildaemons-uidlist` in the folder, changed only under the NFS-safe link lock and replaced by
atomic rename (common/atomic.py). Format, one record a line after the header:

    M1 V<uidvalidity> N<uidnext> H<highestmodseq>
    <uid> <modseq> <flags or -> <key>

`key` is the Maildir name up to ':' (the message's identity; it never changes) and `flags` the
letters of its `:2,` info as last seen, so a flag change made by any program is noticed and gets a
new MODSEQ (RFC 7162). UIDs are strictly ascending and never reused; UIDVALIDITY stays the same
for the life of the folder. A folder that Dovecot served keeps Dovecot's UIDs: when our file is
missing, `dovecot-uidlist` (versions 1 and 3) is imported once.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.atomic import LockBusy, atomic_write, locked

UIDLIST = "maildaemons-uidlist"
DOVECOT_UIDLIST = "dovecot-uidlist"
HEADER_TAG = "M1"


@dataclass(slots=True)
class Record:
    uid: int
    modseq: int
    flags: str
    key: str


@dataclass
class UidList:
    """The parsed file; `records` maps key to Record."""

    uidvalidity: int
    uidnext: int = 1
    highestmodseq: int = 1
    records: dict[str, Record] = field(default_factory=dict)

    def serialize(self) -> bytes:
        lines = [f"{HEADER_TAG} V{self.uidvalidity} N{self.uidnext} H{self.highestmodseq}\n"]
        for rec in sorted(self.records.values(), key=lambda r: r.uid):
            lines.append(f"{rec.uid} {rec.modseq} {rec.flags or '-'} {rec.key}\n")
        return "".join(lines).encode("utf-8", "surrogateescape")

    def next_modseq(self) -> int:
        self.highestmodseq += 1
        return self.highestmodseq


def parse(data: bytes) -> UidList | None:
    """Our format; None when the file is not ours or is damaged (then it is rebuilt)."""
    lines = data.decode("utf-8", "surrogateescape").splitlines()
    if not lines:
        return None
    head = lines[0].split()
    if not head or head[0] != HEADER_TAG:
        return None
    fields = {item[0]: item[1:] for item in head[1:] if item}
    try:
        result = UidList(int(fields["V"]), int(fields["N"]), int(fields.get("H", "1")))
        for line in lines[1:]:
            uid, modseq, flags, key = line.split(" ", 3)
            result.records[key] = Record(int(uid), int(modseq), "" if flags == "-" else flags, key)
    except (KeyError, ValueError):
        return None
    return result


def parse_dovecot(data: bytes) -> UidList | None:
    """Dovecot's dovecot-uidlist: v3 `3 V<validity> N<next> G<guid> ...` then
    `<uid>[ <ext field>...] :<name>`, or v1 (Courier's) `1 <validity> <next>` then `<uid> <name>`.

    As in Dovecot's maildir-uidlist.c: header fields are a letter and a value in any order;
    record extension fields (an upper-case letter and a value, e.g. `W1234`, `GGUID`) come first
    and the file name is everything after the first field that starts with ':'. The name is the
    base name (Dovecot cuts it at ':' when writing; we do too, for older files)."""
    lines = data.decode("utf-8", "surrogateescape").splitlines()
    if not lines:
        return None
    head = lines[0].split()
    try:
        if head[0] == "3":
            fields = {item[0]: item[1:] for item in head[1:] if item}
            result = UidList(int(fields["V"]), int(fields["N"]))
        elif head[0] == "1":
            result = UidList(int(head[1]), int(head[2]))
        else:
            return None
        for line in lines[1:]:
            if not line.strip():
                continue
            uid_text, _, rest = line.partition(" ")
            # FIX: the name was taken after the *last* ':' of the line, so a name that kept its
            # `:2,<flags>` gave the key "2,S", and a line without ':' used its last field.
            name = _v3_name(rest) if head[0] == "3" else rest.strip()
            key = name.split(":", 1)[0]
            uid = int(uid_text)
            if uid <= 0 or not key or "/" in key:
                return None
            result.records[key] = Record(uid, 1, "", key)
            result.uidnext = max(result.uidnext, uid + 1)
    except (IndexError, KeyError, ValueError):
        return None
    return result


def _v3_name(rest: str) -> str:
    """The file name of a v3 record: skip extension fields up to the one starting with ':'."""
    rest = rest.lstrip(" ")
    while rest and not rest.startswith(":"):
        _, _, rest = rest.partition(" ")
        rest = rest.lstrip(" ")
    if not rest:
        raise ValueError("record without a file name")
    return rest[1:]


def _salvage_uidvalidity(path: Path) -> int:
    """The UIDVALIDITY in a damaged file's header, when it can still be read, else 0."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        head = path.read_bytes().split(b"\n", 1)[0].decode("ascii").split()
        if head[0] == HEADER_TAG and head[1].startswith("V"):
            return int(head[1][1:]) & 0xFFFFFFFF
    return 0


def new_uidvalidity() -> int:
    """Time-based, as most servers do; fits the 32-bit nz-number of RFC 3501."""
    return max(1, int(time.time()) & 0xFFFFFFFF)


class UidStore:
    """Reads the folder's uidlist (cached by file identity) and changes it under the lock."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / UIDLIST
        self._stamp: tuple[int, int, int] | None = None
        self._cached: UidList | None = None

    def read(self) -> UidList | None:
        """The current list, or None when the folder has none yet."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        stamp = (info.st_mtime_ns, info.st_ino, info.st_size)
        if stamp != self._stamp or self._cached is None:
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                return None
            self._cached, self._stamp = parse(data), stamp
        return self._cached

    @contextlib.contextmanager
    def update(self):  # type: ignore[no-untyped-def]
        """Lock, yield the freshest list for changing, write it back atomically."""
        with locked(self.path):
            self._stamp = None
            current = self.read() or self._initial()
            before = current.serialize()
            yield current
            data = current.serialize()
            if data != before or not self.path.exists():
                atomic_write(self.path, data, mode=0o600)
                self._cached, self._stamp = current, None

    def _initial(self) -> UidList:
        if self.path.exists():
            # FIX: our file is there but damaged. The Dovecot file was imported long ago:
            # importing it again handed out UIDs we had since given to other messages, under the
            # same UIDVALIDITY. UIDs are lost, so the UIDVALIDITY changes (RFC 3501 2.3.1.1).
            return UidList(max(next_uidvalidity(self.folder), _salvage_uidvalidity(self.path) + 1))
        dovecot = self.folder / DOVECOT_UIDLIST
        with contextlib.suppress(OSError):
            imported = parse_dovecot(dovecot.read_bytes())
            if imported is not None:
                return imported
        return UidList(next_uidvalidity(self.folder))


# FIX (imapd): a folder deleted (or renamed away) and created again within the same second got
# the same time-based UIDVALIDITY with UIDs starting over at 1, so a client's cached UIDs named
# other messages (RFC 3501 2.3.1.1). The user's Maildir++ root now remembers the last value
# handed out, and each new folder gets a larger one, as Dovecot's dovecot-uidvalidity does.
UIDVALIDITY_FILE = "maildaemons-uidvalidity"


def next_uidvalidity(folder: Path) -> int:
    """A UIDVALIDITY larger than any this user's folders got before (and at least the time)."""
    root = folder.parent if folder.name.startswith(".") else folder  # Maildir++ `.Name`
    path = root / UIDVALIDITY_FILE
    try:
        with locked(path):
            try:
                last = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                last = 0
            value = max(new_uidvalidity(), last + 1) & 0xFFFFFFFF or 1
            atomic_write(path, f"{value}\n".encode(), mode=0o600)
            return value
    except (OSError, LockBusy):  # an unwritable or stuck root: the time, as before
        return new_uidvalidity()
