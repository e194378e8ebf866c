"""One Maildir folder as IMAP sees it: messages with UIDs, flags, keywords, MODSEQs and \\Recent.

A `Mailbox` keeps the folder's table (common/store/uidlist.py: UIDs, MODSEQs, file names) in
memory for the life of the session and brings it up to date at each `sync()` for what changed
only: new records in the change log (other sessions of ours), and a listing of new/ or cur/ when
that directory's mtime says someone changed it that the log does not account for (an MTA, POP3,
Dovecot, a mail client on the server). New files get the next UIDs, vanished ones are expunged,
renamed ones (a flag change by anyone) get a new MODSEQ, each written to the change log under
the folder's lock. A session polls before answering each command (`poll()`: a few stat() calls
when nothing moved) and takes what changed (`drain_changes()`) to report EXISTS, EXPUNGE and
FETCH FLAGS without comparing the whole folder.

An mtime is trusted only once it is MTIME_TRUST_AGE old: a second change within the same mtime
tick would not show. Our own changes (renames, deliveries, unlinks) move the mtime we know when
nothing else moved it first, but leave it unverified, so the directory is listed once more after
it settles: a change by someone else in the same tick is seen at most a second late. A listing
of settled directories that confirmed the table stamps the folder (`maildaemons-listed`: the
table's UID space and version, the two mtimes); the next session that reads the same table and
finds the same mtimes (through open(2), as an NFS client asks the server) lists neither.

Flags are the file-name letters of common/store/flags.py; keyword names live in the folder's
`dovecot-keywords` (common/store/keywords.py), the format Dovecot uses, so both servers read each
other's keywords. Message content never changes: flags are renames, COPY is a hard link, MOVE is a
rename, all atomic per message.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import os
import re
import time
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import common.store.maildir as maildir
import common.store.memory as memory
from common.store.atomic import LockBusy, LockUnwritable, atomic_write, fsync_dir
from common.store.errors import MailboxNotFound, MailboxReadOnly, MessageGone, StoreError
from common.store.flags import INFO, SEEN, letters_of, system_letters, with_letters
from common.store.keywords import Keywords
from common.store.maildir import MessageFile
from common.store.msgcache import MessageCache
from common.store.objectid import mailbox_id, name_time
from common.store.uidlist import UID_OF, Entry, Transaction, UidList, UidStore, split_location

__all__ = ["Entry", "Mailbox", "Snapshot"]

# A directory changed within this many seconds may change again within the same mtime tick.
MTIME_TRUST_AGE = 1.0
SUBDIRS = ("new", "cur")
ARRIVAL = "arrival"  # the cache's field of arrival times (msgcache.FIELDS)
# A value derived from a set of messages (Mailbox.remember_for), disposable: one file a kind.
DERIVED_PREFIX = "maildaemons-set-"
DERIVED_MAGIC = "maildaemons-set 1"
# The stamp of the last listing that confirmed the table (Mailbox._note_listed), disposable.
LISTED_FILE = "maildaemons-listed"
LISTED_MAGIC = "maildaemons-listed 1"
LISTED_MIN = 1000  # messages in a folder for which the stamp is read and written


@dataclass
class Snapshot:
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    entries: list[Entry] = field(default_factory=list)
    first_recent: int = 1  # the uidlist's: UIDs from here up no session has claimed

    def is_recent(self, entry: Entry) -> bool:
        """\\Recent as the holder of this snapshot sees it: claimed by it, or claimed by no
        session yet (RFC 3501 2.3.2)."""
        return entry.claimed or self.unclaimed(entry)

    def unclaimed(self, entry: Entry) -> bool:
        """Claimed by no session yet: \\Recent to the first that claims it."""
        return entry.subdir == "new" or entry.uid >= self.first_recent


class DirState:
    """What we know of new/ or cur/: the mtime our table matches, and whether a listing taken
    after that mtime had settled confirmed it."""

    __slots__ = ("mtime", "verified")

    def __init__(self) -> None:
        self.mtime: int | None = None
        self.verified = False


def settled(mtime: int, now: int | None = None) -> bool:
    return (now if now is not None else time.time_ns()) - mtime >= MTIME_TRUST_AGE * 1e9


class Mailbox:
    """A folder's messages as a sequence of UIDs, kept in step with the directory."""

    def __init__(self, path: Path, name: str = "") -> None:
        self.path = path
        self.name = name  # the folder's name in its tree (FolderTree.open gives it)
        self.uids = UidStore(path)
        self.keywords = Keywords(path)
        self.cache = MessageCache(path)
        self.table: UidList | None = None
        self._dirs = {sub: DirState() for sub in SUBDIRS}
        self._dir_paths = {sub: f"{path}/{sub}" for sub in SUBDIRS}  # stat()ed every command
        # renamed by set_letters, not yet in the log: uid -> (entry, MODSEQ then, its location)
        self._unrecorded: dict[int, tuple[Entry, int, str]] = {}
        self._space_of: tuple[int, str] | None = None
        self._space_text = ""
        # The folder's files cannot be written (see _go_read_only): its table lives in memory.
        self.read_only = False
        self._listed = ""  # the stamp of a confirmed listing last read or written

    # -- keeping the table in step -------------------------------------------------------------

    def poll(self, claim_recent: bool = False) -> Snapshot | None:
        """The folder now, or None when nothing moved since the last sync (a few stat() calls):
        a big folder is not looked at again for every command."""
        if self.table is not None and not self._moved():
            return None
        return self.sync(claim_recent)

    def resync(self, claim_recent: bool = False) -> Snapshot:
        """The folder now, whatever the stamps say."""
        return self.sync(claim_recent)

    def sync(self, claim_recent: bool = False) -> Snapshot:
        """The folder now. Messages no session has claimed yet (the uidlist's first recent UID
        and up, and any file still in new/) are \\Recent in the snapshot; with `claim_recent`
        (a read-write SELECT) this caller claims them, for itself alone: they are \\Recent only
        in this snapshot, and files in new/ move to cur/."""
        if self.read_only:
            return self._sync_in_memory()
        if self.table is None and not os.access(self.path, os.W_OK):
            # A read-only mount, or no write permission: found before anything is tried (the
            # lock below would find it too, but not when nothing needs writing).
            self._go_read_only(self.uids.load())
            return self.snapshot()
        loaded = self.table is None
        intact = self._catch_up()
        if not intact:
            # No readable uidlist: the folder starts over, from a full listing.
            self._dirs = {sub: DirState() for sub in SUBDIRS}
        elif loaded and self._worth_stamping():
            self._trust_listed()
        empty = self.table is None or not self.table.entries
        listing = self._look()
        if (
            not intact
            or self._unrecorded
            or listing.differs(self._require_table())
            or (claim_recent and self._unclaimed(listing))
        ):
            try:
                self._record(listing, claim_recent)
            except LockUnwritable:
                self._go_read_only(self.table if intact else None)
                return self.snapshot()
        if listing.listed and self._worth_stamping():
            self._note_listed()
        big = self.table is not None and len(self.table.entries) > memory.BIG_WORK
        if big and (loaded or empty or listing.size() > memory.BIG_WORK):
            del listing
            if empty:
                self._reread()
            memory.release()  # what loading or listing a big folder used, back to the system
        return self.snapshot()

    # -- a folder that cannot be written -------------------------------------------------------

    def _go_read_only(self, stored: UidList | None) -> None:
        """The uidlist cannot be written (a read-only mount, no write permission): serve the
        folder from a table kept in memory for this session. Its UIDs are the stored uidlist's
        when that knows every message; else they are derived, the same way by every session:
        UIDVALIDITY from the newest mtime of new/ and cur/ (which moves whenever a message comes
        or goes), and UIDs 1, 2, ... in delivery order. Nothing is \\Recent but what is still
        in new/, which no session can claim. Changes made meanwhile by others (an administrator)
        get UIDs in memory, for this session only."""
        listing = Listing()
        now = time.time_ns()
        for sub in SUBDIRS:
            mtime = self._mtime(sub)
            listing.listed[sub] = set(maildir.list_names(self.path, sub))
            self._dirs[sub].mtime, self._dirs[sub].verified = mtime, settled(mtime, now)
        table = stored
        if table is not None:
            news, gone = listing.diff(table)
            renamed = {e.key for e in gone}
            if any(split_location(n)[1].split(":", 1)[0] not in renamed for n in news):
                table = None  # messages it does not know: its UIDs cannot be completed alike
        if table is None:
            table = UidList(self._derived_uidvalidity(stored), first_recent=1)
        self.table, self.read_only = table, True
        self._unrecorded.clear()
        self._reconcile(Transaction(table), listing)
        table.first_recent = table.uidnext
        table.drain()

    def _derived_uidvalidity(self, stored: UidList | None) -> int:
        newest = max(self._mtime(sub) for sub in SUBDIRS) // 1_000_000_000
        value = newest & 0xFFFFFFFF or 1
        if stored is not None and value == stored.uidvalidity:
            value = (value + 1) & 0xFFFFFFFF or 1  # never the stored one with other UIDs
        return value

    def _sync_in_memory(self) -> Snapshot:
        """sync() of a read-only folder: what changed is applied to the table in memory."""
        listing = self._look()
        table = self._require_table()
        if listing.differs(table):
            self._reconcile(Transaction(table), listing)
            table.first_recent = table.uidnext
        return self.snapshot()

    def _reread(self) -> None:
        """Read the table again from the base just written: the first sync of a big folder made
        its entries among much short-lived work, spread over memory that cannot be given back
        while they live; read at once, after the first ones are gone, they sit together.
        Nobody holds them yet (the table was empty), so they may be replaced."""
        claimed = array("I", (e.uid for e in self._require_table().entries if e.claimed))
        self.table = None  # freed before the new one is made
        memory.release()
        fresh = self.uids.load()
        if fresh is None:  # gone meanwhile: snapshot() says so, the next sync starts again
            self._dirs = {sub: DirState() for sub in SUBDIRS}
            return
        with memory.paused_gc():
            for uid in claimed:
                entry = fresh.find(uid)
                if entry is not None:
                    entry.claimed = True
        self.table = fresh  # (the entries are new to any holder: above the UIDs it knew)

    def snapshot(self) -> Snapshot:
        table = self._require_table()
        return Snapshot(
            table.uidvalidity,
            table.uidnext,
            table.highestmodseq,
            list(table.entries),
            table.first_recent,
        )

    def highestmodseq(self) -> int:
        """The table's HIGHESTMODSEQ as of the last sync or own change."""
        return self._require_table().highestmodseq

    def drain_changes(self) -> tuple[set[int], set[int]]:
        """(UIDs whose file name or MODSEQ changed, UIDs expunged) since the last call: what a
        session reports, without comparing the whole folder. New messages are those above the
        highest UID it knew."""
        if self.table is None:
            return set(), set()
        return self.table.drain()

    def _moved(self) -> bool:
        if self._unrecorded or self.uids.changed():
            return True
        now = time.time_ns()
        for sub, state in self._dirs.items():
            mtime = self._mtime(sub)
            if mtime != state.mtime or (not state.verified and settled(mtime, now)):
                return True
        return False

    def _require_table(self) -> UidList:
        if self.table is None:
            raise StoreError(f"{self.path}: no uidlist")
        return self.table

    def _catch_up(self) -> bool:
        """Bring the table up to date with the files; False when the folder has no readable
        uidlist (the next transaction starts one, or imports Dovecot's)."""
        if self.table is None:
            self.table = self.uids.load()
            return self.table is not None
        return self.uids.refresh(self.table)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Transaction]:
        """Under the lock, the table caught up; what the caller records is written at the end
        (on an error the store reads the files again next time). MailboxReadOnly when the
        folder cannot be written: its table is the session's own (_go_read_only)."""
        if self.read_only:
            raise MailboxReadOnly(f"{self.path} cannot be written")
        with self.uids.update(self.table) as tx:
            self.table = tx.table
            yield tx
            self._record_unrecorded(tx)

    def _record_unrecorded(self, tx: Transaction) -> None:
        for pending in self._unrecorded.values():
            self._record_rename(tx, *pending)
        self._unrecorded.clear()

    def _record_rename(self, tx: Transaction, entry: Entry, modseq: int, location: str) -> None:
        """Under the lock, our rename of `entry`'s file to `location` into the log with a new
        MODSEQ, unless another session listed the directory between the rename and the lock and
        recorded it (its MODSEQ stands: a second one would report the same change twice).
        Catching up with the log may also have taken the entry back to a name another session
        recorded before our rename (its record came later than our rename, its file earlier):
        while our file is there, it is where the message is."""
        if tx.table.find(entry.uid) is not entry:
            return  # expunged meanwhile
        if entry.location != location:
            if self._exists(location):
                tx.table.move(entry, *split_location(location))
                tx.touch(entry)
        elif entry.modseq == modseq:
            tx.touch(entry)

    # -- listing the directories -----------------------------------------------------------

    def _mtime(self, sub: str) -> int:
        try:
            return os.stat(self._dir_paths[sub]).st_mtime_ns
        except FileNotFoundError:
            raise MailboxNotFound(str(self.path)) from None

    def _look(self) -> Listing:
        """List new/ and cur/ where their mtimes say the table may be behind."""
        listing = Listing()
        table = self.table
        now = time.time_ns()
        for sub in SUBDIRS:
            state = self._dirs[sub]
            mtime = self._mtime(sub)
            fresh = state.verified or not settled(mtime, now)
            if table is not None and mtime == state.mtime and fresh:
                continue
            listing.listed[sub] = set(maildir.list_names(self.path, sub))
            state.mtime, state.verified = mtime, settled(mtime, now)
        return listing

    # -- what a listing confirmed, for the next session ---------------------------------------

    def _listed_text(self) -> str:
        """The stamp of a confirmed listing: the table's UID space and version, and the mtimes
        of new/ and cur/ that a listing taken after they had settled found it matching."""
        mtimes = " ".join(str(self._dirs[sub].mtime) for sub in SUBDIRS)
        version = " ".join(map(str, self._version()))
        return f"{LISTED_MAGIC} {self._space()} {version} {mtimes}\n"

    def _worth_stamping(self) -> bool:
        """Whether the stamp of a confirmed listing pays: listing a small folder costs less
        than reading (or writing) the stamp."""
        return self.table is not None and len(self.table.entries) >= LISTED_MIN

    def _note_listed(self) -> None:
        """After a listing: when both directories are confirmed as the table has them (their
        mtimes settled before they were listed, and unchanged since), stamp the folder so that
        the next session need not list them again. Only a hint: a stamp of another table, or
        a directory changed since, is not trusted."""
        if self.read_only:
            return
        states = self._dirs.values()
        if not all(state.verified for state in states):
            return
        if any(self._mtime(sub) != self._dirs[sub].mtime for sub in SUBDIRS):
            return
        text = self._listed_text()
        if text != self._listed:
            with contextlib.suppress(OSError):
                atomic_write(self.path / LISTED_FILE, text.encode("ascii"), fsync=False)
                self._listed = text

    def _trust_listed(self) -> None:
        """At a session's first sync, the table just read: the directories the stamp of an
        earlier listing vouches for (the same table, the same mtimes, looked at through
        open(2), which an NFS client checks with the server) are not listed again."""
        try:
            stamp = maildir.read_file(self.path / LISTED_FILE).decode("ascii")
        except (OSError, UnicodeDecodeError):
            return
        parts, expected = stamp.split(), self._listed_text().split()
        mtimes = parts[-len(SUBDIRS) :]
        if parts[: -len(SUBDIRS)] != expected[: -len(SUBDIRS)] or len(parts) != len(expected):
            return  # another table (or UID space), or not a stamp
        if not all(mtime.isdigit() for mtime in mtimes):
            return
        self._listed = stamp
        for sub, mtime in zip(SUBDIRS, map(int, mtimes), strict=True):
            if maildir.dir_mtime(self.path, sub) == mtime:
                self._dirs[sub].mtime, self._dirs[sub].verified = mtime, True

    def _unclaimed(self, listing: Listing) -> bool:
        """Whether anything waits for a claim: UIDs from the first recent one up, or files in
        new/ (listed now, or known to be there)."""
        table = self._require_table()
        return (
            table.first_recent < table.uidnext
            or bool(table.in_new)
            or bool(listing.listed.get("new"))
        )

    def _claim(self, tx: Transaction, listing: Listing) -> None:
        """Under the lock, the table reconciled: take every unclaimed message for this
        session. Both ways a message can be unclaimed change only under this lock (the first
        recent UID moves up, a file leaves new/ for cur/), so no two sessions claim one."""
        table = tx.table
        first = tx.claim_recent()
        for entry in table.entries[bisect.bisect_left(table.entries, first, key=UID_OF) :]:
            entry.claimed = True
        waiting = [table.by_location[location] for location in table.in_new]
        if not waiting:
            return
        with self._own_change(SUBDIRS), maildir.dir_fds(self.path, SUBDIRS) as (new, cur):
            rename = os.rename
            for entry in waiting:
                # Maildir's convention: a mail reader that has seen a message moves it to cur/.
                name = entry.name
                target = name if INFO in name else name + INFO
                try:
                    rename(name, target, src_dir_fd=new, dst_dir_fd=cur)
                except FileNotFoundError:
                    continue  # gone meanwhile (the next sync expunges it), or moved by mutt
                tx.move(entry, "cur", target)
                entry.claimed = True

    @contextlib.contextmanager
    def _own_change(self, subs: Iterable[str]) -> Iterator[None]:
        """Around our own change of `subs`: when nobody else moved a directory first, its new
        mtime is ours and the table (updated by the caller) matches it; unverified, so it is
        listed once more when it settles (another change in the same tick would not show)."""
        before = {sub: self._mtime(sub) for sub in subs}
        try:
            yield
        finally:
            for sub, mtime in before.items():
                state = self._dirs[sub]
                if state.mtime == mtime:
                    with contextlib.suppress(MailboxNotFound):
                        state.mtime, state.verified = self._mtime(sub), False

    # -- recording what the listing found --------------------------------------------------

    def _record(self, listing: Listing, claim_recent: bool = False) -> None:
        before = self._version()
        with self._transaction() as tx, memory.paused_gc():
            # Another process wrote between our listing and the lock: files the listing shows
            # may have moved on since (expunged, moved to another folder) and must not be
            # given UIDs again.
            listing.stale = self._version() != before
            self._reconcile(tx, listing)
            if claim_recent:
                self._claim(tx, listing)

    def _version(self) -> tuple[int, int, int]:
        """What moves when anyone records a change (a folder without a table: a new one's)."""
        table = self.table
        return (
            (1, 1, 0) if table is None else (table.highestmodseq, table.uidnext, len(table.entries))
        )

    def _reconcile(self, tx: Transaction, listing: Listing) -> None:
        """Under the lock, the table caught up with the log: give new files their UIDs (in
        delivery order), record renames (a new MODSEQ when the letters changed), expunge files
        that are gone; each only when the table does not have it already."""
        news, gone = listing.diff(tx.table)
        if gone:
            gone = self._confirm_gone(tx, gone, news)
        if news and listing.stale:
            news = [location for location in news if self._exists(location)]
        if news:
            self._record_news(tx, news)
        if gone:
            tx.expunge(e.uid for e in gone)

    def _confirm_gone(self, tx: Transaction, gone: list[Entry], news: list[str]) -> list[Entry]:
        """The entries whose files are really gone. A file renamed while the directory was
        listed may be missing from the listing under both names (readdir(3)), so a vanished
        file is only given up after a second listing; a new file with the key of a vanished
        one is that message renamed (a flag change by another program)."""
        by_key = {e.key: e for e in gone}
        news_left = []
        for location in news:
            sub, name = split_location(location)
            key = name.split(":", 1)[0]
            entry = by_key.get(key)
            if entry is None:
                news_left.append(location)
            elif self._exists(location):
                del by_key[key]
                tx.move(entry, sub, name)
            # else the listing is older than the table, which the lock brought up to date: the
            # file moved on since (claimed out of new/ by another session); the second listing
            # below finds it where it is
        news[:] = news_left
        if not by_key:
            return []
        subs = ("new", "cur") if any(e.subdir == "new" for e in by_key.values()) else ("cur",)
        present: set[str] = set()
        for sub in subs:
            names = maildir.list_names(self.path, sub)
            present |= set(names) if sub == "cur" else {"new/" + n for n in names}
        on_disk = {  # key -> location, for the files the table does not know
            split_location(loc)[1].split(":", 1)[0]: loc
            for loc in present.difference(tx.table.by_location)
        }
        confirmed: list[Entry] = []
        for key, entry in by_key.items():
            if entry.location in present:
                continue  # missed by the first listing only
            found = on_disk.get(key)
            if found is not None:
                tx.move(entry, *split_location(found))
                if found in news:
                    news.remove(found)
            else:
                confirmed.append(entry)
        return confirmed

    def _record_news(self, tx: Transaction, news: list[str]) -> None:
        """UIDs for the files the table does not know, in delivery order. A file may show in
        both new/ and cur/ when it was moved while they were listed, and another file may carry
        the key of a known message (a rename the listing missed the old name of, or a copy of
        the file): a key is one message, under one UID."""
        table = tx.table
        first: dict[str, str] = {}  # key -> location, and the keys found twice or more:
        again: dict[str, list[str]] = {}
        for location in news:
            key = location.split(":", 1)[0].removeprefix("new/")
            seen = first.setdefault(key, location)
            if seen is not location:
                again.setdefault(key, [seen]).append(location)
        for key, locations in again.items():
            present = [loc for loc in locations if self._exists(loc)]
            present.sort(key=lambda loc: loc.startswith("new/"))  # cur/ first
            if present:
                first[key] = present[0]
            else:
                del first[key]  # gone again meanwhile
        for key, location in in_delivery_order(first):
            sub, name = split_location(location)
            known = entry_of(table, key)
            if known is not None:
                if not self._exists(known.location) and self._exists(location):
                    tx.move(known, sub, name)  # renamed: the listing missed the old name
                continue  # the same key twice: a duplicate, not a second message
            tx.add(sub, name)

    def _exists(self, location: str) -> bool:
        sub, name = split_location(location)
        return os.path.lexists(self.path / sub / name)

    # -- messages ------------------------------------------------------------------------------

    def read(self, entry: Entry) -> bytes:
        """The stored bytes (LF line ends); follows renames by other sessions (maildir.follow):
        MessageGone when the message was expunged meanwhile."""
        try:
            return maildir.read_file(f"{self.path}/{entry.subdir}/{entry.name}")
        except OSError:
            return maildir.read_message(self.path, entry.file)  # moved, or an error to raise

    def read_header(self, entry: Entry) -> bytes:
        """The message up to and including its blank line, reading no more of a large one;
        MessageGone as read()."""
        return maildir.read_header(self.path, entry.file)

    def save_caches(self) -> None:
        """Write the derived cache (sizes, envelopes, search fields) if this session added to
        it, for the messages the folder has now."""
        if self.table is not None:
            self.cache.save(self._space(), map(UID_OF, self.table.entries))

    # -- values derived from a set of messages -------------------------------------------------

    def derived_for(self, kind: str, entries: list[Entry]) -> bytes | None:
        """A value derived from exactly these messages (kind: a name of letters, digits and
        dashes), as remember_for() kept it; None when it was kept for another set, another UID
        space, or not at all. Such a value depends on the messages' contents only (a THREAD
        of them, by UID), which never change."""
        try:
            data = maildir.read_file(self.path / f"{DERIVED_PREFIX}{kind}")
        except OSError:
            return None
        head, newline, value = data.partition(b"\n")
        if not newline or head != self._derived_head(entries):
            return None
        return value

    def remember_for(self, kind: str, entries: list[Entry], value: bytes) -> None:
        """Keep one value derived from these messages (the last one of its kind): disposable,
        replaced by atomic rename, never fsynced."""
        with contextlib.suppress(OSError):
            data = (self._derived_head(entries), b"\n", value)
            atomic_write(self.path / f"{DERIVED_PREFIX}{kind}", data, fsync=False)

    def _derived_head(self, entries: list[Entry]) -> bytes:
        uids = array("I", map(UID_OF, entries))
        digest = hashlib.blake2b(uids.tobytes(), digest_size=16).hexdigest()
        return f"{DERIVED_MAGIC} {self._space()} {len(uids)} {digest}".encode("ascii")

    def size(self, entry: Entry, data: bytes | None = None) -> int:
        """RFC822.SIZE: the CRLF size, from `,W=` in the name, the cache, or the file (`data`
        when the caller has read it already and known_size() said None)."""
        size = self.known_size(entry) if data is None else None
        if size is None:
            size = maildir.crlf_size(data if data is not None else self.read(entry))
            self.cache.put_size(self._space(), entry.uid, size)
        return size

    def sizes(self, entries: list[Entry]) -> list[int | None]:
        """size() of each of `entries` (in UID order), the cache's column when it has them all;
        None for a message expunged since the listing (whose size could not be read)."""
        cached = self.cache.sizes(self._space(), array("I", map(UID_OF, entries)))
        found: list[int | None] = []
        for entry, size in zip(entries, cached, strict=True):
            if size is None:
                try:
                    size = self.size(entry)
                except MessageGone:
                    size = None
            found.append(size)
        return found

    def known_size(self, entry: Entry) -> int | None:
        """The CRLF size when it is known without reading the file."""
        size = maildir.name_size(entry.name, "W")
        if size is None:
            size = self.cache.size(self._space(), entry.uid)
        return size

    def _space(self) -> str:
        """The UID space of the cache: UIDVALIDITY and the uidlist's lineage."""
        table = self._require_table()
        if self._space_of != (table.uidvalidity, table.lineage):
            self._space_of = (table.uidvalidity, table.lineage)
            self._space_text = f"{table.uidvalidity}.{table.lineage}"
        return self._space_text

    def summary(self, entry: Entry) -> tuple[int | None, bytes | None]:
        """(RFC822.SIZE, cached ENVELOPE) of a message, either None when not known without
        reading it: one lookup for what a FETCH of a big folder asks of every message."""
        size, envelope = self.cache.summary(self._space(), entry.uid)
        if size is None and "," in entry.name:
            size = maildir.name_size(entry.name, "W")
        return size, envelope

    def remember_all(self, entry: Entry, size: int | None, values: dict[str, bytes]) -> None:
        """Keep in the cache what was derived from a message (msgcache.FIELDS) and its size."""
        self.cache.put_many(self._space(), entry.uid, size, values)

    def cached_column(self, entries: list[Entry], field: str) -> list[bytes | None]:
        """cached() of each of `entries` (in UID order), in one walk of the cache."""
        return self.cache.column(self._space(), array("I", map(UID_OF, entries)), field)

    def cached_ranks(self, entries: list[Entry], field: str) -> array[int] | None:
        """The ranks of a sort field's values (msgcache.RANKED) for `entries` (in UID order),
        None unless the cache has them all (SORT then compares the values)."""
        return self.cache.ranks(self._space(), array("I", map(UID_OF, entries)), field)

    def cached_order(self, entries: list[Entry], field: str) -> array[int] | None:
        """`entries` (in UID order) in the order of a sort field's values, as places in
        `entries` (msgcache.ORDERED), None unless the cache has it for exactly these."""
        return self.cache.order(self._space(), array("I", map(UID_OF, entries)), field)

    def cached(self, entry: Entry, field: str) -> bytes | None:
        """A value derived from the message (msgcache.FIELDS), if the cache has it."""
        return self.cache.get(self._space(), entry.uid, field)

    def remember(self, entry: Entry, field: str, value: bytes) -> None:
        self.cache.put(self._space(), entry.uid, field, value)

    def internal_date(self, entry: Entry) -> float:
        """INTERNALDATE is the file's mtime (set from APPEND's date-time), as Dovecot does;
        MessageGone as read()."""
        try:
            return os.lstat(f"{self.path}/{entry.subdir}/{entry.name}").st_mtime
        except OSError:
            return maildir.modification_time(self.path, entry.file)

    def arrival(self, entry: Entry) -> int:
        """INTERNALDATE in whole seconds, as SORT ARRIVAL orders by it (RFC 5256 3): from the
        cache (a message file's mtime is set when it is placed and never changes after), else
        from the file, then cached. A message that is gone is given now, not cached."""
        value = self.cached(entry, ARRIVAL)
        if value is not None and value.isdigit():
            return int(value)
        return self._arrivals([entry])[0]

    def arrivals(self, entries: list[Entry]) -> list[int]:
        """arrival() of each of `entries` (in UID order), the cache's column in one read."""
        found = [
            int(value) if value is not None and value.isdigit() else -1
            for value in self.cached_column(entries, ARRIVAL)
        ]
        if -1 in found:
            missing = [i for i, seconds in enumerate(found) if seconds == -1]
            for i, seconds in zip(
                missing, self._arrivals([entries[i] for i in missing]), strict=True
            ):
                found[i] = seconds
        return found

    def _arrivals(self, entries: list[Entry]) -> list[int]:
        """The mtimes of the files, in seconds, cached; a stat(2) by name in the directory."""
        found = []
        with maildir.dir_fds(self.path, SUBDIRS) as (new, cur):
            for entry in entries:
                try:
                    at = cur if entry.subdir == "cur" else new
                    info = os.stat(entry.name, dir_fd=at, follow_symlinks=False)
                except FileNotFoundError:
                    try:
                        found.append(int(self.internal_date(entry)))  # moved: followed
                    except StoreError:
                        found.append(int(time.time()))  # gone: it goes at the next EXPUNGE
                    continue
                seconds = int(info.st_mtime)
                if seconds >= 0:  # (before 1970: read again each time)
                    self.remember(entry, ARRIVAL, b"%d" % seconds)
                found.append(seconds)
        return found

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
        """Rename the file so its info carries `letters`; False when it vanished. What the
        caller changed (the letters added to and taken from the entry's) is applied to the
        letters the file has when it is renamed: a flag another session set or cleared since
        this one looked (it renamed the file, maildir.follow finds it) is kept, not undone.
        The change reaches the change log at `commit_flags` (or the next sync)."""
        wanted, known = set(letters), set(entry.letters)
        if wanted == known and entry.subdir == "cur":
            return True
        added, taken = wanted - known, known - wanted
        placed: list[str] = []

        def rename(path: str) -> None:
            now = set(letters_of(os.path.basename(path)))
            target = with_letters(entry.key, "".join((now | added) - taken))
            destination = f"{self.path}/cur/{target}"
            if path != destination:
                os.rename(path, destination)
            placed.append(target)

        source = entry.file
        try:
            with self._own_change({source.subdir, "cur"}):
                maildir.follow(self.path, source, rename, writes=True)
        except MessageGone:
            return False
        self._relocate(entry, "cur", placed[-1])
        return True

    def _relocate(self, entry: Entry, subdir: str, name: str) -> None:
        table = self.table
        if table is not None and table.find(entry.uid) is entry:
            table.move(entry, subdir, name)
            self._unrecorded[entry.uid] = (entry, entry.modseq, entry.location)
        else:
            entry.subdir, entry.name = subdir, name

    def commit_flags(self, entries: list[Entry]) -> int:
        """Record the new flags of `entries` (renamed by set_letters) in the change log, each with
        a new MODSEQ; returns the new HIGHESTMODSEQ."""
        with self._transaction() as tx:
            for entry in entries:
                pending = self._unrecorded.pop(entry.uid, None)
                if pending is not None and pending[0] is entry:
                    self._record_rename(tx, *pending)
            return tx.table.highestmodseq

    def append(self, data: bytes, letters: str, internal_date: float | None) -> tuple[int, int]:
        """Deliver a message (tmp/ then rename into cur/); returns (uidvalidity, uid)."""
        with self._own_change(("cur",)):
            message = maildir.deliver(self.path, data, letters, subdir="cur", mtime=internal_date)
        return self._assign_or_withdraw([message])[0]

    def append_all(self, messages: list[tuple[bytes, str, float | None]]) -> tuple[int, list[int]]:
        """Deliver several messages (data, letters, internal date) all or none, in order;
        returns (uidvalidity, their UIDs). See maildir.deliver_all."""
        if not messages:
            raise ValueError("nothing to append")
        with self._own_change(("cur",)):
            placed = maildir.deliver_all(self.path, messages)
        assigned = self._assign_or_withdraw(placed)
        return assigned[0][0], [uid for _validity, uid in assigned]

    def _assign_or_withdraw(self, placed: list[MessageFile]) -> list[tuple[int, int]]:
        """_assign, and when the UIDs cannot be recorded (no room for the change log, the lock
        busy), the messages just placed are taken out again: an APPEND that fails has stored
        nothing, so a client that tries again does not store a message twice."""
        try:
            return self._assign(placed)
        except BaseException:
            with self._own_change(("cur",)):
                for message in placed:
                    with contextlib.suppress(OSError):
                        os.unlink(self.path / message.relpath)
            raise

    def _assign(self, messages: list[MessageFile]) -> list[tuple[int, int]]:
        """Give freshly placed files their UIDs now, in order, so APPENDUID/COPYUID can name
        them."""
        self._catch_up()
        result = []
        with self._transaction() as tx:
            table = tx.table
            for message in messages:
                location = message.name if message.subdir == "cur" else "new/" + message.name
                entry = table.by_location.get(location)
                if entry is None:
                    # Another session may have given it its UID already, and renamed it since
                    # (a flag change): a key is one message, under one UID.
                    entry = entry_of(table, message.key) or tx.add(message.subdir, message.name)
                result.append((table.uidvalidity, entry.uid))
        return result

    def copy_in(self, source: Mailbox, entries: list[Entry], move: bool = False) -> list[int]:
        """COPY (hard link, else a copy through tmp/) or MOVE (rename) into this folder.

        Returns the new UIDs in the order of `entries`. Each message is placed atomically: a crash
        leaves it in the source, or (for a copy) in both, never half-written and never nowhere."""
        placed: list[MessageFile] = []
        moved: list[Entry] = []
        try:
            with self._own_change(("cur",)), source._own_change(SUBDIRS if move else ()):
                for entry in entries:
                    placed.append(self._place(source, entry, move))
                    moved.append(entry)
        except StoreError:
            # A COPY that fails leaves the target as it was (RFC 3501 6.4.7): the copies
            # already made go. A MOVE keeps what it moved: each of those messages is in
            # exactly one folder, as the docstring promises.
            if not move:
                for message in placed:
                    with contextlib.suppress(OSError):
                        os.unlink(self.path / message.relpath)
            raise
        finally:
            if move and moved:
                source._forget(moved)
        fsync_dir(self.path / "cur")
        # A failed COPY leaves the target as it was; the messages of a MOVE have left the
        # source already, so they stay where they are (the next sync gives them their UIDs).
        assign = self._assign if move else self._assign_or_withdraw
        return [uid for _validity, uid in assign(placed)]

    def _forget(self, entries: list[Entry]) -> None:
        """Record as expunged the messages moved out of this folder by MOVE."""
        if self.table is None:
            return
        with self._transaction() as tx:
            tx.expunge(e.uid for e in entries if tx.table.find(e.uid) is e)

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
        dst = self.path / "cur" / name

        def place(src: str) -> None:
            if move:
                os.rename(src, dst)
            else:
                self._link_or_copy(Path(src), dst, base)

        # MessageGone (a StoreError) when the source was expunged meanwhile.
        maildir.follow(source.path, entry.file, place, writes=True)
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
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.utime(tmp, (src.stat().st_mtime, src.stat().st_mtime))
            os.rename(tmp, dst)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # a full disk: no half copy left in tmp/
            raise

    def expunge(self, entries: list[Entry]) -> list[Entry]:
        """Remove the files and their records; returns the entries actually removed."""
        removed = []
        with self._own_change(SUBDIRS):
            for entry in entries:
                failed = maildir.remove_messages(self.path, [entry.file])
                if not failed:
                    removed.append(entry)
        if removed:
            # The files are gone whatever happens next: when the change log cannot take the
            # record (no room, the lock stuck), the next listing of the folder finds them gone
            # and records it, so the expunge is not refused for that.
            with contextlib.suppress(StoreError, LockBusy, OSError):
                self._forget(removed)
        return removed

    def expunged_at(self, uids: set[int]) -> int | None:
        """The lowest MODSEQ at which any of `uids` was expunged, if the tombstones know it."""
        if self.table is None:
            self._catch_up()
        if self.table is None:
            return None
        found = [
            modseq
            for modseq, low, high in self.table.tombstones
            if any(low <= uid <= high for uid in uids)
        ]
        return min(found, default=None)

    def vanished_since(self, modseq: int) -> list[tuple[int, int]] | None:
        """UID ranges expunged after `modseq` (QRESYNC), or None when that is no longer known."""
        if self.table is None:
            self._catch_up()
        if self.table is None:
            return []
        return self.table.vanished_since(modseq)

    def counts(self) -> tuple[int, int, int]:
        """(messages, recent, unseen) without claiming anything: for STATUS (messages this
        session claimed are \\Recent for it alone: the caller adds those)."""
        snap = self.sync()
        entries = snap.entries
        recent = sum(1 for e in entries if snap.unclaimed(e))
        unseen = sum(1 for e in entries if SEEN not in e.letters)
        return len(entries), recent, unseen

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


def entry_of(table: UidList, key: str) -> Entry | None:
    """The table's entry of a message by its key (its identity, whatever its flags)."""
    known = table.with_key(key) if table.entries else None  # an empty table has no keys
    return known if known is not None and table.find(known.uid) is known else None


_TEN_DIGITS_DOT = re.compile(r"\d{10}\.")


def in_delivery_order(first: dict[str, str]) -> list[tuple[str, str]]:
    """(key, location) pairs in maildir.name_order of their names. Names that all start with a
    10-digit time (deliveries from 2001 to 2286) sort as strings, in C, in the same order."""
    names = [location.removeprefix("new/") for location in first.values()]
    pairs = list(zip(names, first.items(), strict=True))
    if all(map(_TEN_DIGITS_DOT.match, names)):
        pairs.sort()
    else:
        pairs.sort(key=lambda pair: maildir.name_order(pair[0]))
    return [pair for _name, pair in pairs]


class Listing:
    """What a sync saw: the names of the files in each directory it listed (`listed`)."""

    __slots__ = ("listed", "stale")

    def __init__(self) -> None:
        self.listed: dict[str, set[str]] = {}
        self.stale = False  # the table moved on after the listing was taken

    def size(self) -> int:
        return sum(len(names) for names in self.listed.values())

    def differs(self, table: UidList) -> bool:
        news, gone = self.diff(table)
        return bool(news or gone)

    def diff(self, table: UidList) -> tuple[list[str], list[Entry]]:
        """(locations of files the table does not know, entries whose file is not there): set
        operations in C, and a walk of the table only when a file it knows is missing."""
        known = table.by_location
        gone: list[Entry] = []
        cur = self.listed.get("cur")
        if cur is not None:
            news = cur.difference(known)
            if len(cur) - len(news) != len(known) - len(table.in_new):
                gone.extend(e for loc, e in known.items() if e.subdir == "cur" and loc not in cur)
        else:
            news = set()
        new = self.listed.get("new")
        if new is not None:
            located = {"new/" + n for n in new}
            news |= located.difference(known)
            gone.extend(known[loc] for loc in table.in_new - located)
        return list(news), gone
