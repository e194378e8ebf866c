"""Per-folder UID list: UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and one record per message.

File `maildaemons-uidlist` in the folder, changed only under the NFS-safe link lock and replaced by
atomic rename (common/store/atomic.py). Format, one record a line after the header:

    M1 V<uidvalidity> N<uidnext> H<highestmodseq> R<first recent uid>[ E<horizon>]
    <uid> <modseq> <flags or -> <key>
    - <modseq> <low uid>[:<high uid>]


`key` is the Maildir name up to ':' (the message's identity; it never changes) and `flags` the
letters of its `:2,` info as last seen, so a flag change made by any program is noticed and gets a
new MODSEQ (RFC 7162). UIDs are strictly ascending and never reused; UIDVALIDITY stays the same
for the life of the folder. A folder that Dovecot served keeps Dovecot's UIDs: when our file is
missing, `dovecot-uidlist` (versions 1 and 3) is imported once.

`R` is the lowest UID no session has yet claimed as \\Recent (RFC 3501 2.3.2): every message from it
up to UIDNEXT is new to IMAP, whichever directory it is in and however it came (delivery, APPEND,
COPY, MOVE). The first read-write session that syncs them claims them under the lock and moves R
to UIDNEXT, so each message is \\Recent in exactly one session, as Dovecot's index does it. A file
without R (an older one) means that nothing is left to claim.

Lines starting `- ` are tombstones for QRESYNC (RFC 7162 3.2): the UIDs expunged at a MODSEQ, so
a client can learn which of its UIDs vanished since the MODSEQ it last saw. Every expunge takes a
new MODSEQ. At most MAX_TOMBSTONES lines are kept; when older ones are dropped, `E<horizon>` says
up to which MODSEQ the list is no longer complete (`vanished_since` then answers None and the
caller falls back to "every UID that is not here").
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common.store.atomic import LockBusy, atomic_write, locked

UIDLIST = "maildaemons-uidlist"
DOVECOT_UIDLIST = "dovecot-uidlist"
HEADER_TAG = "M1"
TOMBSTONE_TAG = "-"
MAX_TOMBSTONES = 5000


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
    # (modseq, low uid, high uid) of expunged UIDs, oldest first; see the module docstring.
    tombstones: list[tuple[int, int, int]] = field(default_factory=list)
    horizon: int = 0
    first_recent: int = 1  # UIDs from here on are \Recent to the first session to claim them

    def serialize(self) -> bytes:
        head = (
            f"{HEADER_TAG} V{self.uidvalidity} N{self.uidnext} H{self.highestmodseq}"
            f" R{self.first_recent}"
        )
        lines = [head + (f" E{self.horizon}\n" if self.horizon else "\n")]
        for rec in sorted(self.records.values(), key=lambda r: r.uid):
            lines.append(f"{rec.uid} {rec.modseq} {rec.flags or '-'} {rec.key}\n")
        for modseq, low, high in self.tombstones:
            span = str(low) if low == high else f"{low}:{high}"
            lines.append(f"{TOMBSTONE_TAG} {modseq} {span}\n")
        return "".join(lines).encode("utf-8", "surrogateescape")

    def next_modseq(self) -> int:
        self.highestmodseq += 1
        return self.highestmodseq

    def bury(self, uids: list[int]) -> int:
        """Record `uids` as expunged now, under one new MODSEQ (returned)."""
        modseq = self.next_modseq()
        ordered = sorted(set(uids))
        start = 0
        for index in range(1, len(ordered) + 1):
            if index == len(ordered) or ordered[index] != ordered[index - 1] + 1:
                self.tombstones.append((modseq, ordered[start], ordered[index - 1]))
                start = index
        excess = len(self.tombstones) - MAX_TOMBSTONES
        if excess > 0:
            self.horizon = max(self.horizon, *(t[0] for t in self.tombstones[:excess]))
            del self.tombstones[:excess]
        return modseq

    def vanished_since(self, modseq: int) -> list[tuple[int, int]] | None:
        """(low, high) UID ranges expunged at a MODSEQ above `modseq`; None when tombstones that
        old were dropped, so the answer is not known."""
        if modseq < self.horizon:
            return None
        return [(low, high) for seq, low, high in self.tombstones if seq > modseq]


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
        result = UidList(
            int(fields["V"]),
            int(fields["N"]),
            int(fields.get("H", "1")),
            horizon=int(fields.get("E", "0")),
            first_recent=int(fields.get("R", fields["N"])),
        )
        for line in lines[1:]:
            if line.startswith(TOMBSTONE_TAG + " "):
                result.tombstones.append(_tombstone(line))
                continue
            uid, modseq, flags, key = line.split(" ", 3)
            result.records[key] = Record(int(uid), int(modseq), "" if flags == "-" else flags, key)
    except (KeyError, ValueError):
        return None
    return result


def _tombstone(line: str) -> tuple[int, int, int]:
    _tag, modseq, span = line.split(" ")
    low, _, high = span.partition(":")
    values = (int(modseq), int(low), int(high or low))
    if min(values) < 1 or values[1] > values[2]:
        raise ValueError("bad tombstone")
    return values


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
            # v3: the name follows the first field that starts with ':', not the last ':' (a
            # name may keep its `:2,<flags>`); v1: the rest of the line.
            name = _v3_name(rest) if head[0] == "3" else rest.strip()
            key = name.split(":", 1)[0]
            uid = int(uid_text)
            if uid <= 0 or not key or "/" in key:
                return None
            result.records[key] = Record(uid, 1, "", key)
            result.uidnext = max(result.uidnext, uid + 1)
    except (IndexError, KeyError, ValueError):
        return None
    # Dovecot's sessions saw its messages (its index says which were still \Recent; we do not
    # read it): only files it never listed are new here.
    result.first_recent = result.uidnext
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

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_ino, info.st_size)

    @contextlib.contextmanager
    def update(self) -> Iterator[UidList]:
        """Lock, yield the freshest list for changing, write it back atomically."""
        with locked(self.path):
            # The stamp (mtime, inode, size) tells whether another process replaced the file
            # since we read it; each writer's rename brings a new inode.
            current = self.read() or self._initial()
            before = current.serialize()
            try:
                yield current
            except BaseException:
                self._cached, self._stamp = None, None  # our copy was changed and not written
                raise
            data = current.serialize()
            if data != before or not self.path.exists():
                atomic_write(self.path, data, mode=0o600)
                # What we just wrote is what we hold: the next read need not parse it again.
                self._cached, self._stamp = current, self._file_stamp()

    def _initial(self) -> UidList:
        if self.path.exists():
            # Our file is there but damaged. The Dovecot file was imported long ago: importing
            # it again would hand out UIDs we have since given to other messages, under the same
            # UIDVALIDITY. UIDs are lost, so the UIDVALIDITY changes (RFC 3501 2.3.1.1).
            return UidList(max(next_uidvalidity(self.folder), _salvage_uidvalidity(self.path) + 1))
        dovecot = self.folder / DOVECOT_UIDLIST
        with contextlib.suppress(OSError):
            imported = parse_dovecot(dovecot.read_bytes())
            if imported is not None:
                return imported
        return UidList(next_uidvalidity(self.folder))


# A folder deleted (or renamed away) and created again within the same second must not get the
# same time-based UIDVALIDITY with UIDs starting over at 1, or a client's cached UIDs would name
# other messages (RFC 3501 2.3.1.1). The user's Maildir++ root remembers the last value handed
# out, and each new folder gets a larger one, as Dovecot's dovecot-uidvalidity does.
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
