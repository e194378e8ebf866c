"""One Maildir folder as IMAP sees it: messages with UIDs, flags, keywords, MODSEQs and \\Recent.

`Mailbox.sync()` reconciles the directory with the uidlist (common/store/uidlist.py): new files get
the next UIDs, vanished ones are dropped, flag changes made by anyone get a new MODSEQ. A session
polls it before answering each command (`Mailbox.poll()`, which skips the work while the folder's
change stamp stays the same) and compares snapshots to report EXISTS, EXPUNGE and FETCH FLAGS.

Flags are the file-name letters of common/store/flags.py; keyword names live in the folder's
`dovecot-keywords` (common/store/keywords.py), the format Dovecot uses, so both servers read each
other's keywords. Message content never changes: flags are renames, COPY is a hard link, MOVE is a
rename, all atomic per message.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import common.store.maildir as maildir
from common.store.atomic import fsync_dir
from common.store.errors import MailboxNotFound, StoreError
from common.store.flags import INFO, SEEN, letters_of, system_letters, with_letters
from common.store.keywords import Keywords
from common.store.maildir import MessageFile, SizeCache
from common.store.msgcache import MessageCache
from common.store.objectid import mailbox_id, name_time
from common.store.uidlist import Record, UidList, UidStore

# A directory changed within this many seconds may change again within the same mtime tick.
MTIME_TRUST_AGE = 1.0
# What changes whenever anyone changes the folder (Mailbox.change_stamp).
Stamp = tuple[int, int, int, int, int]


@dataclass(slots=True)
class Entry:
    """A message in a snapshot, ordered by UID."""

    uid: int
    key: str
    subdir: str
    name: str
    modseq: int
    recent: bool = False

    @property
    def letters(self) -> str:
        return letters_of(self.name)

    @property
    def file(self) -> MessageFile:
        return MessageFile(self.subdir, self.name)

    def follow(self, fresh: Entry) -> None:
        """Take the file name and MODSEQ of the same message in a newer snapshot."""
        self.subdir, self.name, self.modseq = fresh.subdir, fresh.name, fresh.modseq


@dataclass
class Snapshot:
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    entries: list[Entry] = field(default_factory=list)


class Mailbox:
    """A folder's messages as a sequence of UIDs, kept in step with the directory."""

    def __init__(self, path: Path, name: str = "") -> None:
        self.path = path
        self.name = name  # the folder's name in its tree (FolderTree.open gives it)
        self.uids = UidStore(path)
        self.keywords = Keywords(path)
        self.sizes = SizeCache(path)
        self.cache = MessageCache(path)
        self._dir_stamp: tuple[int, int] | None = None  # None: list at the next scan
        self._stamp_settled = False
        self._locations: dict[str, tuple[str, str]] = {}
        self._polled: Stamp | None = None  # change stamp at the last poll

    # -- reading the directory -------------------------------------------------------------

    def scan(self) -> dict[str, tuple[str, str]]:
        """key -> (subdir, name) for every message file; skips the listing when nothing moved.

        A directory changed less than MTIME_TRUST_AGE ago may change again within the same
        mtime tick unseen: a listing taken then is trusted only until the directory settles,
        and taken once more after that, so such a change is seen at most a second late."""
        stamp, settled = self._stamp()
        if stamp == self._dir_stamp and (self._stamp_settled or not settled):
            return self._locations
        locations: dict[str, tuple[str, str]] = {}
        for message in maildir.list_messages(self.path):
            locations[message.key] = (message.subdir, message.name)
        self._locations, self._dir_stamp, self._stamp_settled = locations, stamp, settled
        return locations

    def _stamp(self) -> tuple[tuple[int, int], bool]:
        """(mtimes of new/ and cur/, whether both are older than MTIME_TRUST_AGE)."""
        try:
            new = os.stat(self.path / "new").st_mtime_ns
            cur = os.stat(self.path / "cur").st_mtime_ns
        except FileNotFoundError:
            raise MailboxNotFound(str(self.path)) from None
        return (new, cur), time.time_ns() - max(new, cur) >= MTIME_TRUST_AGE * 1e9

    def _moved_by_us(self, key: str, subdir: str, name: str) -> None:
        """Our own rename, applied to the cached listing instead of listing the folder again."""
        if self._dir_stamp is None or key not in self._locations:
            return
        self._locations[key] = (subdir, name)
        self._dir_stamp, self._stamp_settled = self._stamp()

    def change_stamp(self) -> Stamp | None:
        """What changes whenever anyone changes the folder: the mtimes of new/ and cur/
        (deliveries, flag renames, expunges) and the uidlist's identity. None when something
        changed within the last MTIME_TRUST_AGE seconds, since a second change within one mtime
        tick would not show."""
        try:
            new = os.stat(self.path / "new").st_mtime_ns
            cur = os.stat(self.path / "cur").st_mtime_ns
            uids = os.stat(self.uids.path)
        except OSError:
            return None
        newest = max(new, cur, uids.st_mtime_ns)
        if time.time_ns() - newest < MTIME_TRUST_AGE * 1e9:
            return None
        return (new, cur, uids.st_mtime_ns, uids.st_ino, uids.st_size)

    def poll(self, claim_recent: bool = False) -> Snapshot | None:
        """The folder now, or None when its change stamp is the same as at the last poll: nothing
        moved, and a big folder need not be listed again for every command."""
        stamp = self.change_stamp()
        if stamp is not None and stamp == self._polled:
            return None
        self._polled = stamp
        return self.sync(claim_recent)

    def resync(self, claim_recent: bool = False) -> Snapshot:
        """The folder now, whatever its stamp says; the next poll compares with the stamp taken
        before this sync, so it misses no change made during it."""
        self._polled = self.change_stamp()
        return self.sync(claim_recent)

    def sync(self, claim_recent: bool = False) -> Snapshot:
        """The folder now. Messages no session has claimed yet (the uidlist's first recent UID
        and up, and any file still in new/) are \\Recent in the snapshot; with `claim_recent`
        (a read-write SELECT) this caller claims them, for itself alone: they are \\Recent only
        in this snapshot, and files in new/ move to cur/."""
        locations = self.scan()
        current = self.uids.read()
        claimed: set[str] | None = None
        if (
            current is None
            or self._needs_update(current, locations)
            or (claim_recent and self._unclaimed(current, locations))
        ):
            with self.uids.update() as current:
                # List the directory again under the lock: `locations` was read before it,
                # and another session may since have added files and given them UIDs;
                # reconciling with the older listing would drop those records and give the
                # files a second UID at the next sync.
                locations = self._locked_scan(current)
                self._reconcile(current, locations)
                if claim_recent:
                    claimed = self._claim(current, locations)
        elif claim_recent:
            claimed = set()
        return self._snapshot(current, locations, claimed)

    def _locked_scan(self, current: UidList) -> dict[str, tuple[str, str]]:
        """The listing to reconcile with, taken under the uidlist lock.

        readdir(3) may miss a file renamed within the directory while it lists (a flag change
        by another program), so a record whose file seems gone is only dropped when a second
        listing misses it too: a missed file would otherwise come back with a new UID."""
        locations = self.scan()
        if any(key not in locations for key in current.records):
            self._dir_stamp = None
            locations = {**locations, **self.scan()}
        return locations

    @staticmethod
    def _unclaimed(current: UidList, locations: dict[str, tuple[str, str]]) -> bool:
        return current.first_recent < current.uidnext or any(
            subdir == "new" for subdir, _name in locations.values()
        )

    def _claim(self, current: UidList, locations: dict[str, tuple[str, str]]) -> set[str]:
        """Under the uidlist lock: take every unclaimed message for the caller. Both ways a
        message can be unclaimed change only under this lock (the mark moves up, the file
        leaves new/), so no two sessions ever claim the same message."""
        claimed = {
            key
            for key, record in current.records.items()
            if record.uid >= current.first_recent and key in locations
        }
        current.first_recent = current.uidnext
        for key, (subdir, name) in list(locations.items()):
            if subdir != "new":
                continue
            # Maildir's convention: a mail reader that has seen a message moves it to cur/.
            target = name if INFO in name else name + INFO
            try:
                os.rename(self.path / "new" / name, self.path / "cur" / target)
            except FileNotFoundError:
                continue  # gone meanwhile (the next sync drops its record), or moved by mutt
            locations[key] = ("cur", target)
            claimed.add(key)
            self._dir_stamp = None
        return claimed

    @staticmethod
    def _needs_update(current: UidList, locations: dict[str, tuple[str, str]]) -> bool:
        if len(current.records) != len(locations):
            return True
        for key, (_subdir, name) in locations.items():
            record = current.records.get(key)
            if record is None or record.flags != letters_of(name):
                return True
        return False

    def _reconcile(self, current: UidList, locations: dict[str, tuple[str, str]]) -> None:
        gone = [k for k in current.records if k not in locations]
        if gone:
            # Removed by another program (or moved out by MOVE): an expunge, with its own
            # MODSEQ and tombstones, as an EXPUNGE by a session would be (RFC 7162 3.2.7).
            current.bury([current.records.pop(key).uid for key in gone])
        fresh = sorted(
            (k for k in locations if k not in current.records),
            key=lambda k: maildir.sort_key(MessageFile(*locations[k])),
        )
        for key in fresh:
            current.records[key] = Record(
                current.uidnext, current.next_modseq(), letters_of(locations[key][1]), key
            )
            current.uidnext += 1
        for key, (_subdir, name) in locations.items():
            record = current.records[key]
            if record.flags != letters_of(name):
                record.flags, record.modseq = letters_of(name), current.next_modseq()

    @staticmethod
    def _snapshot(
        current: UidList, locations: dict[str, tuple[str, str]], claimed: set[str] | None
    ) -> Snapshot:
        """Entries by UID; \\Recent is what this caller claimed, or without a claim what is
        still unclaimed."""
        entries = []
        for key, record in current.records.items():
            where = locations.get(key)
            if where is None:
                continue
            if claimed is None:
                recent = record.uid >= current.first_recent or where[0] == "new"
            else:
                recent = key in claimed
            entries.append(Entry(record.uid, key, where[0], where[1], record.modseq, recent))
        entries.sort(key=lambda e: e.uid)
        return Snapshot(current.uidvalidity, current.uidnext, current.highestmodseq, entries)

    # -- messages ------------------------------------------------------------------------------

    def read(self, entry: Entry) -> bytes:
        """The stored bytes (LF line ends); follows a rename by another session."""
        message = entry.file
        data = maildir.read_message(self.path, message)
        entry.subdir, entry.name = message.subdir, message.name
        return data

    def read_header(self, entry: Entry) -> bytes:
        """The message up to and including its blank line, reading no more of a large one."""
        return maildir.read_header(self.path, entry.file)

    def save_caches(self, keep: set[str] | None = None) -> None:
        """Write the derived caches (sizes, envelopes) if they changed, forgetting messages that
        are no longer in `keep`."""
        if keep is not None:
            self.sizes.keep_only(keep)
        self.sizes.save()
        self.cache.save(keep)

    def size(self, entry: Entry) -> int:
        return self.sizes.get(self.path, entry.file)

    def internal_date(self, entry: Entry) -> float:
        """INTERNALDATE is the file's mtime (set from APPEND's date-time), as Dovecot does."""
        try:
            return os.stat(self.path / entry.subdir / entry.name).st_mtime
        except FileNotFoundError:
            moved = maildir.find_by_key(self.path, entry.key)
            if moved is None:
                return time.time()
            entry.subdir, entry.name = moved.subdir, moved.name
            return os.stat(self.path / moved.relpath).st_mtime

    def save_date(self, entry: Entry) -> float:
        """When the message was placed in this folder (SAVEDATE, RFC 8514): the time its
        Maildir name starts with, else INTERNALDATE (common/store/objectid.py)."""
        found = name_time(entry.key)
        return found if found is not None else self.internal_date(entry)

    def mailbox_id(self) -> str:
        """The folder's MAILBOXID (RFC 8474), which survives RENAME (common/store/objectid.py)."""
        try:
            return mailbox_id(self.path)
        except OSError as exc:
            raise StoreError(f"cannot give {self.path} an id: {exc}") from None

    def set_letters(self, entry: Entry, letters: str) -> bool:
        """Rename the file so its info carries exactly `letters`; False when it vanished."""
        wanted = "".join(sorted(set(letters)))
        if entry.letters == wanted and entry.subdir == "cur":
            return True
        target = with_letters(entry.key, wanted)
        for _attempt in range(3):
            try:
                os.rename(self.path / entry.subdir / entry.name, self.path / "cur" / target)
            except FileNotFoundError:
                moved = maildir.find_by_key(self.path, entry.key)
                if moved is None:
                    return False
                entry.subdir, entry.name = moved.subdir, moved.name
                continue
            entry.subdir, entry.name = "cur", target
            self._moved_by_us(entry.key, "cur", target)
            return True
        return False

    def commit_flags(self, entries: list[Entry]) -> int:
        """Record the new flags of `entries` in the uidlist; returns the new HIGHESTMODSEQ."""
        with self.uids.update() as current:
            for entry in entries:
                record = current.records.get(entry.key)
                if record is not None and record.flags != entry.letters:
                    record.flags, record.modseq = entry.letters, current.next_modseq()
                    entry.modseq = record.modseq
            return current.highestmodseq

    def append(self, data: bytes, letters: str, internal_date: float | None) -> tuple[int, int]:
        """Deliver a message (tmp/ then rename into cur/); returns (uidvalidity, uid)."""
        message = maildir.deliver(self.path, data, letters, subdir="cur", mtime=internal_date)
        return self._assign([message])[0]

    def append_all(self, messages: list[tuple[bytes, str, float | None]]) -> tuple[int, list[int]]:
        """Deliver several messages (data, letters, internal date) all or none, in order;
        returns (uidvalidity, their UIDs). See maildir.deliver_all."""
        if not messages:
            raise ValueError("nothing to append")
        placed = maildir.deliver_all(self.path, messages)
        assigned = self._assign(placed)
        return assigned[0][0], [uid for _validity, uid in assigned]

    def _assign(self, messages: list[MessageFile]) -> list[tuple[int, int]]:
        """Give freshly placed files their UIDs now, in order, so APPENDUID/COPYUID can name
        them."""
        result = []
        with self.uids.update() as current:
            for message in messages:
                record = current.records.get(message.key)
                if record is None:
                    record = Record(
                        current.uidnext, current.next_modseq(), message.letters, message.key
                    )
                    current.records[message.key] = record
                    current.uidnext += 1
                result.append((current.uidvalidity, record.uid))
        self._dir_stamp = None
        return result

    def copy_in(self, source: Mailbox, entries: list[Entry], move: bool = False) -> list[int]:
        """COPY (hard link, else a copy through tmp/) or MOVE (rename) into this folder.

        Returns the new UIDs in the order of `entries`. Each message is placed atomically: a crash
        leaves it in the source, or (for a copy) in both, never half-written and never nowhere."""
        placed: list[MessageFile] = []
        try:
            for entry in entries:
                placed.append(self._place(source, entry, move))
        except StoreError:
            # A COPY that fails leaves the target as it was (RFC 3501 6.4.7): the copies
            # already made go. A MOVE keeps what it moved: each of those messages is in
            # exactly one folder, as the docstring promises.
            if not move:
                for message in placed:
                    with contextlib.suppress(OSError):
                        os.unlink(self.path / message.relpath)
            raise
        fsync_dir(self.path / "cur")
        return [uid for _validity, uid in self._assign(placed)]

    def _place(self, source: Mailbox, entry: Entry, move: bool) -> MessageFile:
        base = maildir.unique_name()
        size_tags = "".join(
            f",{kind}={value}"
            for kind in ("S", "W")
            if (value := entry.file.stored_size(kind)) is not None
        )
        keywords = source.keywords.decode(entry.letters)
        letters = system_letters(entry.letters) + self.keywords.letters_for(keywords, create=True)
        name = with_letters(base + size_tags, letters)
        src = source.path / entry.subdir / entry.name
        dst = self.path / "cur" / name
        try:
            if move:
                os.rename(src, dst)
            else:
                self._link_or_copy(src, dst, base)
        except FileNotFoundError:
            moved = maildir.find_by_key(source.path, entry.key)
            if moved is None:
                raise StoreError(f"message {entry.key} vanished") from None
            entry.subdir, entry.name = moved.subdir, moved.name
            return self._place(source, entry, move)
        except OSError as exc:
            raise StoreError(f"cannot copy {entry.key}: {exc.strerror}") from None
        return MessageFile("cur", name)

    def _link_or_copy(self, src: Path, dst: Path, base: str) -> None:
        try:
            os.link(src, dst)
            return
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
        tmp = self.path / "tmp" / base
        data = src.read_bytes()
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.utime(tmp, (src.stat().st_mtime, src.stat().st_mtime))
        os.rename(tmp, dst)

    def expunge(self, entries: list[Entry]) -> list[Entry]:
        """Remove the files and their records; returns the entries actually removed."""
        removed = []
        for entry in entries:
            failed = maildir.remove_messages(self.path, [entry.file])
            if not failed:
                removed.append(entry)
        if removed:
            with self.uids.update() as current:
                uids = [current.records.pop(e.key).uid for e in removed if e.key in current.records]
                if uids:
                    current.bury(uids)
            self._dir_stamp = None
        return removed

    def expunged_at(self, uids: set[int]) -> int | None:
        """The lowest MODSEQ at which any of `uids` was expunged, if the tombstones know it."""
        current = self.uids.read()
        if current is None:
            return None
        found = [
            modseq
            for modseq, low, high in current.tombstones
            if any(low <= uid <= high for uid in uids)
        ]
        return min(found, default=None)

    def vanished_since(self, modseq: int) -> list[tuple[int, int]] | None:
        """UID ranges expunged after `modseq` (QRESYNC), or None when that is no longer known."""
        current = self.uids.read()
        if current is None:
            return []
        return current.vanished_since(modseq)

    def counts(self) -> tuple[int, int, int]:
        """(messages, recent, unseen) without claiming anything: for STATUS. A file the
        uidlist does not know yet is unclaimed, hence \\Recent."""
        locations = self.scan()
        current = self.uids.read()
        records = current.records if current is not None else {}
        first_recent = current.first_recent if current is not None else 1
        recent = 0
        for key, (subdir, _name) in locations.items():
            record = records.get(key)
            if subdir == "new" or record is None or record.uid >= first_recent:
                recent += 1
        unseen = sum(1 for _, name in locations.values() if SEEN not in letters_of(name))
        return len(locations), recent, unseen

    def reclaimable_size(self, entries: list[Entry]) -> int:
        """The octets an expunge of `entries` would free: the sizes of their files that no other
        folder shares (COPY makes hard links, and those stay)."""
        total = 0
        for entry in entries:
            with contextlib.suppress(OSError):
                info = os.stat(self.path / entry.subdir / entry.name)
                if info.st_nlink == 1:
                    total += info.st_size
        return total
