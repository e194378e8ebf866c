"""Per-folder UID list: UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and one record per message, kept as a
base file and an append-only change log beside it, so a flag change costs one appended line.

`maildaemons-uidlist` (the base) is replaced only by atomic rename (common/store/atomic.py). It
holds the messages as columns, so that a 100,000-message folder is read by splitting a few lines
rather than by parsing 100,000 of them:

    M2 V<uidvalidity> N<uidnext> H<highestmodseq> R<first recent> G<generation> I<lineage>
       C<count>[ E<horizon>]
    U <uid> <uid> ...                  every UID, ascending
    Q <modseq> <modseq> ...            the MODSEQ of each, in the same order
    X <uid> <field>[ <field>...]       per-message fields, for the messages that have some
    - <modseq> <low uid>[:<high uid>]  tombstones
    L
    <location>                         one line per message, in the same order

`maildaemons-uidlist.log` (the change log) holds what changed since the base was written:

    L1 G<generation>
    <crc> A <uid> <modseq>[ <field>...] :<location>     a message got its UID
    <crc> F <uid> <modseq> :<location>                  its flags changed (new name, new MODSEQ)
    <crc> R <uid> :<location>                           it moved, same flags (new/ -> cur/)
    <crc> X <modseq> <uid set>                          expunged (a tombstone)
    <crc> K <uid>                                       \\Recent claimed below this UID

`location` is the file name in cur/, or `new/<name>` for a file still in new/: the name as last
seen, so a flag change made by any program (a rename) is noticed and gets a new MODSEQ (RFC 7162).
The message's identity, its key, is the name up to ':' and never changes. `field`s are an upper-
case letter and a value without spaces, kept as they are by this version (room for per-message
data such as a save date); a log record's location always follows " :".

Every change is made under the NFS-safe link lock on the base (`locked`): catch up with the log,
change, append the records in one write (fsynced when they give out UIDs or expunge, so a UID
handed to a client is never handed out again after a crash; a lost flag record only costs a MODSEQ,
the flags themselves live in the file names). `<crc>` is the CRC-32 of the rest of the line in hex:
a reader stops at the first line that is torn (no newline: a writer killed mid-write) or damaged,
and the next writer cuts the log back to there before appending. Records are idempotent (a MODSEQ
not above the highest one applied, a UID already there, are skipped), so a duplicate does no harm.
When the log outgrows a share of the base, the writer compacts: a new base with a new random
generation, then an empty log of that generation. A log whose generation is not the base's is
stale (a compaction killed between its two renames) and ignored: the base holds all of it.

`R` is the lowest UID no session has claimed as \\Recent yet (RFC 3501 2.3.2): every message
from it up to UIDNEXT is new to IMAP, whichever directory it is in and however it came (delivery,
APPEND, COPY, MOVE). The first read-write session that syncs them claims them under the lock and
moves R to UIDNEXT (a `K` record), so each message is \\Recent in exactly one session, as
Dovecot's index does it. A file without R (an older one) means that nothing is left to claim.

Lines starting `- ` are tombstones for QRESYNC (RFC 7162 3.2): the UIDs expunged at a MODSEQ, so
a client can learn which of its UIDs vanished since the MODSEQ it last saw. At most MAX_TOMBSTONES
are kept; when older ones are dropped, `E<horizon>` says up to which MODSEQ the list is no longer
complete (`vanished_since` then answers None and the caller falls back to "every UID that is not
here").

UIDs are strictly ascending and never reused; UIDVALIDITY stays the same for the life of the
folder. Version 1 files (`M1`, one `<uid> <modseq> <flags> <key>` line per message, no log) are
read and rewritten as version 2 at the first change; a version 1 reader takes a version 2 file for
a damaged one and starts a new UIDVALIDITY, which is safe. A folder that Dovecot served keeps
Dovecot's UIDs: when our file is missing, `dovecot-uidlist` (versions 1 and 3) is imported once.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import operator
import os
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import common.store.memory as memory
from common.store.atomic import LockBusy, atomic_write, locked
from common.store.errors import StoreError
from common.store.flags import letters_of
from common.store.maildir import MessageFile, read_to_end

UIDLIST = "maildaemons-uidlist"
UIDLIST_LOG = "maildaemons-uidlist.log"
DOVECOT_UIDLIST = "dovecot-uidlist"
HEADER_TAG = "M2"
OLD_HEADER_TAG = "M1"
LOG_TAG = "L1"
TOMBSTONE_TAG = "-"
NEW_PREFIX = "new/"
MAX_TOMBSTONES = 5000
# The log is compacted into a new base once it is larger than both of these.
COMPACT_MIN_BYTES = 256 * 1024
COMPACT_SHARE = 4  # ... and than base size / COMPACT_SHARE
BULK_RECORDS = 5000  # a transaction with more records than this writes a new base at once


class Entry:
    """One message: its UID and MODSEQ, and where its file is (the name carries the flags).

    The objects of a folder's table are shared with whoever holds a snapshot of it and are
    changed in place when the folder changes (`UidList` below); the key and the letters are
    derived from the name, which keeps a 100,000-message folder small in memory."""

    __slots__ = ("claimed", "extra", "modseq", "name", "subdir", "uid")

    def __init__(
        self,
        uid: int,
        modseq: int,
        subdir: str,
        name: str,
        recent: bool = False,
        extra: str = "",
    ) -> None:
        self.uid = uid
        self.modseq = modseq
        self.subdir = subdir
        self.name = name
        self.claimed = recent  # moved out of new/ by this session
        self.extra = extra  # record fields this version keeps without knowing them

    def __repr__(self) -> str:
        return f"Entry({self.uid}, {self.modseq}, {self.subdir!r}, {self.name!r})"

    @property
    def recent(self) -> bool:
        """\\Recent here: claimed by this session, or still in new/ (claimed by nobody)."""
        return self.claimed or self.subdir == "new"

    @property
    def key(self) -> str:
        """The stable identity: the name up to ':' (qmail's and Courier's UIDL)."""
        return self.name.split(":", 1)[0]

    @property
    def letters(self) -> str:
        return letters_of(self.name)

    @property
    def file(self) -> MessageFile:
        return MessageFile(self.subdir, self.name)

    @property
    def location(self) -> str:
        return self.name if self.subdir == "cur" else NEW_PREFIX + self.name

    def follow(self, fresh: Entry) -> None:
        """Take the file name and MODSEQ of the same message in a newer snapshot."""
        self.subdir, self.name, self.modseq = fresh.subdir, fresh.name, fresh.modseq


def add_key(index: dict[int, Entry | list[Entry]], entry: Entry) -> None:
    code = hash(entry.key)
    there = index.setdefault(code, entry)
    if there is not entry:
        if isinstance(there, list):
            there.append(entry)
        else:
            index[code] = [there, entry]  # two keys, one hash: both kept


def split_location(location: str) -> tuple[str, str]:
    if location.startswith(NEW_PREFIX):
        return "new", location[len(NEW_PREFIX) :]
    return "cur", location


def uid_key(entry: Entry) -> int:
    return entry.uid


UID_OF = operator.attrgetter("uid")
MODSEQ_OF = operator.attrgetter("modseq")
LOCATION_OF = operator.attrgetter("location")


class UidList:
    """A folder's table: the header values, the entries in UID order, tombstones.

    `entries` is sorted by UID; `by_location` maps each entry's location (see the module
    docstring) to it. What changed since the holder last asked (`drain`) is collected in
    `touched` (UIDs whose name or MODSEQ changed) and `expunged`."""

    def __init__(
        self,
        uidvalidity: int,
        uidnext: int = 1,
        highestmodseq: int = 1,
        horizon: int = 0,
        generation: str = "",
        lineage: str = "",
        first_recent: int = 1,
    ) -> None:
        self.uidvalidity = uidvalidity
        self.uidnext = uidnext
        self.highestmodseq = highestmodseq
        self.horizon = horizon
        self.first_recent = first_recent  # UIDs from here on are \Recent to the first claimer
        self.generation = generation  # "" for a version 1 file or one not yet written
        # Names this assignment of UIDs: a new one whenever the folder's UIDs start over (a new
        # table, an import, a damaged file), kept by every compaction. With UIDVALIDITY it tells
        # a derived cache whether its UIDs still name the same messages.
        self.lineage = lineage or os.urandom(6).hex()
        # (modseq, low uid, high uid) of expunged UIDs, oldest first; see the module docstring.
        self.tombstones: list[tuple[int, int, int]] = []
        self.entries: list[Entry] = []
        self.by_location: dict[str, Entry] = {}
        self.in_new: set[str] = set()  # locations of the entries in new/
        self._by_key: dict[int, Entry | list[Entry]] | None = None  # see with_key()
        self.touched: set[int] = set()
        self.expunged: set[int] = set()

    # -- the entries ------------------------------------------------------------------------

    def find(self, uid: int) -> Entry | None:
        index = bisect.bisect_left(self.entries, uid, key=uid_key)
        if index < len(self.entries) and self.entries[index].uid == uid:
            return self.entries[index]
        return None

    def add(self, entry: Entry) -> None:
        if not self.entries or entry.uid > self.entries[-1].uid:
            self.entries.append(entry)
        else:
            bisect.insort(self.entries, entry, key=uid_key)
        self._index(entry)

    def move(self, entry: Entry, subdir: str, name: str) -> None:
        """The entry's file is now `subdir/name` (its flags changed when the letters did)."""
        self._unindex(entry)
        if letters_of(entry.name) != letters_of(name):
            self.touched.add(entry.uid)
        entry.subdir, entry.name = subdir, name
        self._index(entry)

    def remove(self, uids: Iterable[int]) -> list[Entry]:
        """Drop the entries of `uids` (those that are here); returns them."""
        wanted = set(uids)
        if len(wanted) < 64:
            gone = []
            for uid in sorted(wanted):
                index = bisect.bisect_left(self.entries, uid, key=uid_key)
                if index < len(self.entries) and self.entries[index].uid == uid:
                    gone.append(self.entries.pop(index))
        else:
            gone = [e for e in self.entries if e.uid in wanted]
            if gone:
                self.entries = [e for e in self.entries if e.uid not in wanted]
        for entry in gone:
            self._unindex(entry)
            self.expunged.add(entry.uid)
            self.touched.discard(entry.uid)
        return gone

    def merge(self, fresh: UidList) -> None:
        """Become `fresh` (the files read again after another process rewrote them), keeping
        the Entry objects of messages still here, so holders of a snapshot see the changes."""
        self.uidvalidity, self.uidnext = fresh.uidvalidity, fresh.uidnext
        self.highestmodseq, self.horizon = fresh.highestmodseq, fresh.horizon
        self.generation, self.tombstones = fresh.generation, fresh.tombstones
        self.lineage, self.first_recent = fresh.lineage, fresh.first_recent
        old = {e.uid: e for e in self.entries}
        entries = []
        for entry in fresh.entries:
            mine = old.pop(entry.uid, None)
            if mine is None:
                mine = entry
                self.touched.add(entry.uid)
            elif (mine.subdir, mine.name, mine.modseq) != (entry.subdir, entry.name, entry.modseq):
                if mine.modseq != entry.modseq or mine.letters != entry.letters:
                    self.touched.add(entry.uid)
                mine.subdir, mine.name, mine.modseq = entry.subdir, entry.name, entry.modseq
            mine.extra = entry.extra
            entries.append(mine)
        self.entries = entries
        self.by_location = {e.location: e for e in entries}
        self.in_new = {e.location for e in entries if e.subdir == "new"}
        self._by_key = None
        self.expunged |= old.keys()
        self.touched -= old.keys()

    def with_key(self, key: str) -> Entry | None:
        """The entry of a key. The index (the key's hash -> entry, no key strings kept) is built
        on first use, when a file appears that no rename explains, then kept up to date by every
        change of the table."""
        if self._by_key is None:
            self._by_key = {}
            for entry in self.entries:
                add_key(self._by_key, entry)
        found = self._by_key.get(hash(key))
        if isinstance(found, list):
            return next((e for e in found if e.key == key), None)
        return found if found is not None and found.key == key else None

    def _index(self, entry: Entry) -> None:
        location = entry.location
        self.by_location[location] = entry
        if entry.subdir == "new":
            self.in_new.add(location)
        if self._by_key is not None:
            add_key(self._by_key, entry)

    def _unindex(self, entry: Entry) -> None:
        location = entry.location
        if self.by_location.get(location) is entry:
            del self.by_location[location]
        self.in_new.discard(location)
        if self._by_key is not None:
            code = hash(entry.key)
            there = self._by_key.get(code)
            if there is entry:
                del self._by_key[code]
            elif isinstance(there, list) and entry in there:
                there.remove(entry)

    def drain(self) -> tuple[set[int], set[int]]:
        """(touched, expunged) since the last drain, and start collecting afresh."""
        touched, expunged = self.touched, self.expunged
        self.touched, self.expunged = set(), set()
        return touched, expunged

    # -- MODSEQs and tombstones ------------------------------------------------------------

    def next_modseq(self) -> int:
        self.highestmodseq += 1
        return self.highestmodseq

    def bury(self, uids: Iterable[int], modseq: int | None = None) -> int:
        """Record `uids` as expunged at `modseq` (a new one by default), which is returned."""
        if modseq is None:
            modseq = self.next_modseq()
        for low, high in uid_ranges(uids):
            self.tombstones.append((modseq, low, high))
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

    # -- the files ---------------------------------------------------------------------------

    def serialize(self) -> list[bytes]:
        """The base file of this table (version 2, see the module docstring), in a few large
        pieces rather than one string per message."""
        entries = self.entries
        head = (
            f"{HEADER_TAG} V{self.uidvalidity} N{self.uidnext} H{self.highestmodseq} "
            f"R{self.first_recent} G{self.generation} I{self.lineage} C{len(entries)}"
            + (f" E{self.horizon}" if self.horizon else "")
        )
        uids = " ".join(map(str, map(UID_OF, entries)))
        modseqs = " ".join(map(str, map(MODSEQ_OF, entries)))
        lines = [f"{head}\nU {uids}\nQ {modseqs}\n".replace(" \n", "\n")]
        lines.extend(f"X {e.uid} {e.extra}\n" for e in entries if e.extra)
        for modseq, low, high in self.tombstones:
            span = str(low) if low == high else f"{low}:{high}"
            lines.append(f"{TOMBSTONE_TAG} {modseq} {span}\n")
        lines.append("L\n")
        pieces = [piece.encode("utf-8", "surrogateescape") for piece in lines]
        if entries:
            locations = "\n".join(map(LOCATION_OF, entries)) + "\n"
            pieces.append(locations.encode("utf-8", "surrogateescape"))
        return pieces

    def apply(self, record: str) -> None:
        """One change-log record (without its CRC); unknown kinds are skipped, duplicates too."""
        kind, _, rest = record.partition(" ")
        if kind == "A":
            head, _, location = rest.partition(" :")
            uid_text, modseq_text, *fields = head.split(" ")
            uid, modseq = int(uid_text), int(modseq_text)
            if modseq <= self.highestmodseq or self.find(uid) is not None:
                return
            subdir, name = split_location(location)
            self.add(Entry(uid, modseq, subdir, name, extra=" ".join(fields)))
            self.touched.add(uid)
            self.uidnext = max(self.uidnext, uid + 1)
            self.highestmodseq = max(self.highestmodseq, modseq)
        elif kind == "F":
            head, _, location = rest.partition(" :")
            uid_text, modseq_text = head.split(" ")[:2]
            modseq = int(modseq_text)
            if modseq <= self.highestmodseq:
                return
            self.highestmodseq = modseq
            entry = self.find(int(uid_text))
            if entry is not None:
                entry.modseq = modseq
                self.touched.add(entry.uid)
                self.move(entry, *split_location(location))
        elif kind == "R":
            head, _, location = rest.partition(" :")
            entry = self.find(int(head.split(" ")[0]))
            if entry is not None and entry.location != location:
                self.move(entry, *split_location(location))
        elif kind == "K":
            self.first_recent = max(self.first_recent, int(rest.split(" ")[0]))
        elif kind == "X":
            modseq_text, span = rest.split(" ")[:2]
            modseq = int(modseq_text)
            if modseq <= self.highestmodseq:
                return
            self.highestmodseq = modseq
            uids = parse_uid_set(span)
            self.remove(uids)
            self.bury(uids, modseq)


def uid_ranges(uids: Iterable[int]) -> list[tuple[int, int]]:
    ordered = sorted(set(uids))
    ranges: list[tuple[int, int]] = []
    for uid in ordered:
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], uid)
        else:
            ranges.append((uid, uid))
    return ranges


def format_uid_set(uids: Iterable[int]) -> str:
    return ",".join(str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in uid_ranges(uids))


def parse_uid_set(text: str) -> list[int]:
    uids: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        first, last = int(low), int(high or low)
        if first < 1 or last < first:
            raise ValueError("bad UID set")
        uids.extend(range(first, last + 1))
    return uids


# -- reading the base -------------------------------------------------------------------------

_TOMBSTONE = re.compile(r"^- (\d+) (\d+)(?::(\d+))?$")


def parse(data: bytes) -> UidList | None:
    """Our base file, version 2 or 1; None when the file is not ours or is damaged (then the
    folder starts over with a new UIDVALIDITY)."""
    text = data.decode("utf-8", "surrogateescape")
    head, _, body = text.partition("\n")
    fields = head.split()
    if not fields or fields[0] not in (HEADER_TAG, OLD_HEADER_TAG):
        return None
    values = {item[0]: item[1:] for item in fields[1:] if item}
    try:
        result = UidList(
            int(values["V"]),
            int(values["N"]),
            int(values.get("H", "1")),
            horizon=int(values.get("E", "0")),
            generation=values.get("G", "") if fields[0] == HEADER_TAG else "",
            # A file without one (version 1) has had its UIDs since before lineages: "0".
            lineage=values.get("I", "0"),
            first_recent=int(values.get("R", values["N"])),
        )
        if fields[0] == OLD_HEADER_TAG:
            _parse_v1(body, result)
        else:
            _parse_v2(body, result, int(values["C"]))
    except (KeyError, ValueError, IndexError):
        return None
    return result


def _parse_v2(body: str, result: UidList, count: int) -> None:
    """The columns of a version 2 base: a 100,000-message one in a fraction of a second, by
    splitting and mapping in C instead of a loop over records."""
    uid_line, modseq_line, rest = body.split("\n", 2)
    if not (uid_line.startswith("U") and modseq_line.startswith("Q")):
        raise ValueError("no UID or MODSEQ column")
    uids = list(map(int, uid_line[1:].split()))
    modseqs = list(map(int, modseq_line[1:].split()))
    extras: dict[int, str] = {}
    while not rest.startswith("L\n"):
        line, _, rest = rest.partition("\n")
        if line.startswith("X "):
            uid_text, _, extra = line[2:].partition(" ")
            extras[int(uid_text)] = extra
        elif (m := _TOMBSTONE.match(line)) is not None:
            result.tombstones.append(_tombstone(*m.groups(default="")))
        else:
            raise ValueError("unreadable line")
    locations = rest[2:].split("\n")
    if locations.pop() != "" or not len(uids) == len(modseqs) == len(locations) == count:
        raise ValueError("columns of different lengths")
    if not count:
        return
    if not all(map(operator.lt, uids, uids[1:])):
        raise ValueError("UIDs out of order")
    if uids[-1] >= result.uidnext:
        raise ValueError("UIDNEXT below a UID")
    if "\nnew/" in "\n" + rest[2:]:
        places = list(map(split_location, locations))
        subdirs: Iterable[str] = [p[0] for p in places]
        names: list[str] = [p[1] for p in places]
        result.in_new = {loc for loc in locations if loc.startswith(NEW_PREFIX)}
    else:
        subdirs, names = itertools.repeat("cur"), locations
    entries = list(map(Entry, uids, modseqs, subdirs, names))
    for uid, extra in extras.items():
        index = bisect.bisect_left(uids, uid)
        if index == len(uids) or uids[index] != uid:
            raise ValueError("fields of a message that is not there")
        entries[index].extra = extra
    result.entries = entries
    result.by_location = dict(zip(locations, entries, strict=True))
    if len(result.by_location) != count:
        raise ValueError("a file listed twice")


def _parse_v1(body: str, result: UidList) -> None:
    """Version 1: `<uid> <modseq> <flags or -> <key>`; the file names are not known, so each
    entry gets the name its key and flags would have in cur/, and the next listing corrects
    the names that differ (a rename, no new MODSEQ)."""
    entries = []
    for line in body.splitlines():
        if line.startswith(TOMBSTONE_TAG + " "):
            _tag, modseq, span = line.split(" ")
            low, _, high = span.partition(":")
            result.tombstones.append(_tombstone(modseq, low, high))
            continue
        uid, modseq, flags, key = line.split(" ", 3)
        name = f"{key}:2,{'' if flags == '-' else flags}"
        entries.append(Entry(int(uid), int(modseq), "cur", name))
    entries.sort(key=uid_key)
    for entry in entries:
        result.add(entry)
    result.touched.clear()


def _tombstone(modseq: str, low: str, high: str) -> tuple[int, int, int]:
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
    base name (Dovecot cuts it at ':' when writing; we do too, for older files). Entries get the
    name of their key in cur/ without flags; the first listing corrects them."""
    lines = data.decode("utf-8", "surrogateescape").splitlines()
    if not lines:
        return None
    head = lines[0].split()
    found: dict[str, int] = {}
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
            found[key] = uid
            result.uidnext = max(result.uidnext, uid + 1)
    except (IndexError, KeyError, ValueError):
        return None
    for key, uid in sorted(found.items(), key=lambda item: item[1]):
        if result.find(uid) is None:
            result.add(Entry(uid, 1, "cur", key + ":2,"))
    result.touched.clear()
    # Dovecot's sessions saw its messages (its index says which were still \\Recent; we do not
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
        if head[0] in (HEADER_TAG, OLD_HEADER_TAG) and head[1].startswith("V"):
            return int(head[1][1:]) & 0xFFFFFFFF
    return 0


def new_uidvalidity() -> int:
    """Time-based, as most servers do; fits the 32-bit nz-number of RFC 3501."""
    return max(1, int(time.time()) & 0xFFFFFFFF)


# -- the change log ---------------------------------------------------------------------------


def log_line(record: str) -> str:
    """`<crc> <record>\\n`: the CRC-32 of the record's bytes, 8 hex digits."""
    crc = zlib.crc32(record.encode("utf-8", "surrogateescape"))
    return f"{crc:08x} {record}\n"


def log_header(generation: str) -> bytes:
    return f"{LOG_TAG} G{generation}\n".encode()


def read_log(data: bytes, start: int) -> tuple[list[str], int]:
    """The records of `data` from offset `start` (a line start) up to the first torn or damaged
    line, and the offset just after the last good one."""
    records = []
    pos = start
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            break
        line = data[pos:end]
        if len(line) < 10 or line[8:9] != b" ":
            break
        record = line[9:]
        try:
            if int(line[:8], 16) != zlib.crc32(record):
                break
        except ValueError:
            break
        records.append(record.decode("utf-8", "surrogateescape"))
        pos = end + 1
    return records, pos


def log_generation(data: bytes) -> tuple[str, int] | None:
    """(generation, offset of the first record) of a log, or None when its header is unreadable
    (a log whose header was never completely written)."""
    end = data.find(b"\n")
    if end < 0:
        return None
    head = data[:end].decode("ascii", "replace").split()
    if len(head) != 2 or head[0] != LOG_TAG or not head[1].startswith("G"):
        return None
    return head[1][1:], end + 1


Stamp = tuple[int, int, int]  # (inode, size, mtime_ns) of a file


def read_whole(path: str, inode: int = 0, offset: int = 0) -> bytes | None:
    """The file from `offset` to its end with plain read(2)s (no buffered file object); None
    when `inode` is given and the file opened is another one."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if inode and info.st_ino != inode:
            return None
        return read_to_end(fd, info.st_size, offset)
    finally:
        os.close(fd)


def file_stamp(path: str | Path) -> Stamp | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def opened_stamp(path: str | Path) -> Stamp | None:
    """file_stamp() as open(2) sees the file: over NFS, stat() may answer from the attribute
    cache for seconds, open() asks the server (close-to-open consistency). Under the lock a
    writer must see what the last writer wrote, from whichever host."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    return (info.st_ino, info.st_size, info.st_mtime_ns)


class Transaction:
    """Changes to a folder's table under its lock; each one is applied to the table at once and
    written to the change log (or a new base) when the transaction ends without error."""

    def __init__(self, table: UidList) -> None:
        self.table = table
        self.records: list[str] = []
        self.changed = False
        self.rewrite = False  # too many records: write a new base instead of appending them
        self.durable = False  # a record gives out UIDs or expunges: fsync the log

    def _record(self, record: str) -> None:
        self.changed = True
        if self.rewrite:
            return
        self.records.append(record)
        if len(self.records) > BULK_RECORDS:
            self.rewrite, self.records = True, []

    def add(self, subdir: str, name: str, extra: str = "") -> Entry:
        """A new message: the next UID, a new MODSEQ; `extra`, per-message fields (see the module
        docstring: an upper-case letter and a value each, separated by spaces)."""
        table = self.table
        entry = Entry(table.uidnext, table.next_modseq(), subdir, name, extra=extra)
        table.uidnext += 1
        table.add(entry)
        table.touched.add(entry.uid)
        fields = f" {extra}" if extra else ""
        self._record(f"A {entry.uid} {entry.modseq}{fields} :{entry.location}")
        self.durable = True
        return entry

    def move(self, entry: Entry, subdir: str, name: str) -> None:
        """The message's file is now `subdir/name`: a new MODSEQ when its letters changed."""
        if (entry.subdir, entry.name) == (subdir, name):
            return
        changed = letters_of(entry.name) != letters_of(name)
        self.table.move(entry, subdir, name)
        if changed:
            entry.modseq = self.table.next_modseq()
            self._record(f"F {entry.uid} {entry.modseq} :{entry.location}")
        else:
            self._record(f"R {entry.uid} :{entry.location}")

    def touch(self, entry: Entry) -> None:
        """The entry's file was renamed to new flags already (its name is the new one): a new
        MODSEQ."""
        entry.modseq = self.table.next_modseq()
        self.table.touched.add(entry.uid)
        self._record(f"F {entry.uid} {entry.modseq} :{entry.location}")

    def claim_recent(self) -> int:
        """Take every message not yet claimed as \\Recent (UIDs from the table's first recent
        UID up): returns that UID, the lowest of the claim. Not fsynced: a claim lost in a power
        cut makes the messages \\Recent once more, no worse."""
        table = self.table
        first = table.first_recent
        if first < table.uidnext:
            table.first_recent = table.uidnext
            self._record(f"K {table.uidnext}")
        return first

    def expunge(self, uids: Iterable[int]) -> list[Entry]:
        gone = self.table.remove(uids)
        if gone:
            removed = [e.uid for e in gone]
            modseq = self.table.bury(removed)
            self._record(f"X {modseq} {format_uid_set(removed)}")
            self.durable = True
        return gone


class UidStore:
    """The files of one folder's table: loads them, follows the change log, writes changes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / UIDLIST
        self.log_path = folder / UIDLIST_LOG
        # The same as str: every command stats both, and a str spares pathlib's conversions.
        self._base_file = str(self.path)
        self._log_file = str(self.log_path)
        self._base: Stamp | None = None  # of the base the table was loaded from
        self._log: Stamp | None = None  # of the log as far as it was applied
        self._log_offset = 0  # where the next record starts
        self._log_ok = False  # the log belongs to the loaded base

    # -- reading -----------------------------------------------------------------------------

    def load(self) -> UidList | None:
        """The table as the files say now; None when the folder has no uidlist yet, or a
        damaged one."""
        for _attempt in range(10):
            base = file_stamp(self._base_file)
            if base is None:
                self._base = None
                return None
            try:
                data = read_whole(self._base_file)
            except FileNotFoundError:
                continue
            if data is None:
                continue
            with memory.paused_gc():
                table = parse(data)
            if table is None:
                self._base = None
                return None
            self._base, self._log, self._log_offset, self._log_ok = base, None, 0, False
            # Read the log after the base; if the base was replaced meanwhile, the log may
            # belong to the new one: start again.
            if self._follow_log(table) and file_stamp(self._base_file) == base:
                table.touched.clear()
                return table
        raise LockBusy(f"{self.path} keeps changing")

    def changed(self) -> bool:
        """Whether the files moved since the table was loaded or last caught up."""
        return file_stamp(self._base_file) != self._base or file_stamp(self._log_file) != self._log

    def refresh(self, table: UidList, locked: bool = False) -> bool:
        """Bring `table` up to date in place: the new log records, or everything again when the
        base was replaced (another process compacted). False when the folder's uidlist is gone
        or damaged (the table is left as it was). `locked`: under the lock, where the files are
        looked at as open(2) sees them (see opened_stamp)."""
        stamp_of = opened_stamp if locked else file_stamp
        same_base = self._base is not None and stamp_of(self._base_file) == self._base
        if same_base and self._follow_log(table, stamp_of):
            return True
        fresh = self.load()
        if fresh is None:
            return False
        table.merge(fresh)
        return True

    def _follow_log(
        self, table: UidList, stamp_of: Callable[[str], Stamp | None] = file_stamp
    ) -> bool:
        """Apply the log records not applied yet; False when the log was replaced under us (then
        the base was too, and the caller loads again)."""
        stamp = stamp_of(self._log_file)
        if stamp is None or not table.generation:
            self._log, self._log_ok = stamp, False
            return True
        if not self._log_ok and stamp == self._log:
            return True  # the same stale log as before
        # A stale log may turn into this base's own: a reader can come between the two renames
        # of a compaction (new base, old log), and the new log follows without the base moving.
        if self._log_ok and self._log is not None:
            if stamp == self._log:
                return True
            if stamp[0] != self._log[0] or stamp[1] < self._log_offset:
                return False
        try:
            data = read_whole(self._log_file, stamp[0], self._log_offset if self._log_ok else 0)
        except FileNotFoundError:
            return False
        if data is None:
            return False  # replaced since the stamp was taken
        start = 0
        if not self._log_ok:
            header = log_generation(data)
            if header is None or header[0] != table.generation:
                self._log, self._log_ok = stamp, False  # stale: the base has all of it
                return True
            start = header[1]
            self._log_offset = 0
        records, end = read_log(data, start)
        for record in records:
            # A record this version cannot read is skipped, as an unknown kind is: stopping
            # there would have the next writer cut off all that follows.
            with contextlib.suppress(ValueError, IndexError):
                table.apply(record)
        self._log_offset += end
        self._log, self._log_ok = stamp, True
        return True

    # -- writing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def update(self, table: UidList | None) -> Iterator[Transaction]:
        """Lock, bring `table` up to date (or load the folder's, or start one), yield a
        transaction on it (the caller keeps `transaction.table`), write what it recorded."""
        with locked(self.path):
            if table is None:
                table = self.load() or self._initial()
            elif not self.refresh(table, locked=True):
                table.merge(self._initial())  # the uidlist vanished or was damaged
            transaction = Transaction(table)
            try:
                yield transaction
                if transaction.changed or not self._base:
                    self._commit(transaction)
            except BaseException:
                self._base = None  # the table was changed and not written: load it again
                raise

    def _commit(self, transaction: Transaction) -> None:
        table = transaction.table
        base_size = self._base[1] if self._base else 0
        added = sum(len(r) + 10 for r in transaction.records)
        if (
            transaction.rewrite
            or not self._base
            or not table.generation
            or not self._log_ok
            or self._log_offset + added > max(COMPACT_MIN_BYTES, base_size // COMPACT_SHARE)
        ):
            self.compact(table)
            return
        text = "".join(log_line(r) for r in transaction.records)
        self._append(text.encode("utf-8", "surrogateescape"), transaction.durable)

    def _append(self, text: bytes, durable: bool) -> None:
        fd = os.open(self.log_path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            if size != self._log_offset:
                tail = os.pread(fd, size - self._log_offset, self._log_offset)
                if size < self._log_offset or read_log(tail, 0)[0]:
                    # Records this process has not read, though it caught up under the lock:
                    # never cut those off (the table is read again, the change fails).
                    raise StoreError(f"{self.log_path} changed under the lock")
                # A torn or damaged tail (a writer killed mid-write): cut it off first, or the
                # next record would be glued to it and lost.
                os.ftruncate(fd, self._log_offset)
            os.lseek(fd, self._log_offset, os.SEEK_SET)
            written = 0
            while written < len(text):
                written += os.write(fd, text[written:])
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        self._log_offset += len(text)
        self._log = file_stamp(self.log_path)

    def compact(self, table: UidList) -> None:
        """Write the whole table as a new base of a new generation, then an empty log of it
        (under the lock). Killed between the two renames, the old log is stale and ignored."""
        table.generation = os.urandom(6).hex()
        atomic_write(self.path, table.serialize(), mode=0o600)
        self._base = file_stamp(self.path)
        header = log_header(table.generation)
        atomic_write(self.log_path, header, mode=0o600)
        self._log = file_stamp(self.log_path)
        self._log_offset, self._log_ok = len(header), True

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
