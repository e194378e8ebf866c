"""A disposable per-folder cache of what is costly to derive from a message: its CRLF size, its
ENVELOPE and BODYSTRUCTURE as rendered by the IMAP server, the header fields SEARCH looks at, the
keys SORT and THREAD order by, its arrival time and the EMAILID (opaque bytes here), by UID.

A message's content never changes in a Maildir, so an entry stays right for the message's life.
The cache is derived data (DESIGN.md "Storage"): it may be deleted at any time and is rebuilt; a
damaged file reads as empty. Its UIDs are those of one UID space, the folder's UIDVALIDITY and
the lineage of its uidlist (common/store/uidlist.py: new whenever the UIDs start over, as when a
damaged uidlist is rebuilt or Dovecot's is imported again): a cache of another space is not
used. It is written by atomic rename at the end of a session, pruned to the messages that still
exist.

File `maildaemons-cache`, version 5, in columns so that a 100,000-message folder is read without
a Python object per message, looked up by bisection, and one field of every message (what SORT
or SEARCH of a whole folder wants) is one read:

    maildaemons-cache 5 V<space> N<rows> D<data offset> F<field>:<block>,<field>:<block>...\\n
    uids      rows x u32, ascending
    sizes     rows x u32, CRLF size (ABSENT: not known)
    lengths   for each field of F in turn: rows x u32 (ABSENT: not cached)
    data      for each field of F in turn, its block (at <block> from the data offset): the
              values of its rows, in row order

Only fields with a value are written. Fields that SORT orders by (RANKED) get two more when the
cache is written: each row's rank among their values, and the rows in their order when every
row has one; numbers of 4 bytes, read as arrays. A field's columns are read when first asked for;
values come through a read window (a FETCH 1:* reads a block front to back, a window at a
time), never by mapping the file: the session's memory stays small whatever the folder's size.
Values new in this session go to an anonymous temporary file, not to memory.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import os
import sys
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, cast

from common.store.atomic import atomic_write

CACHE_FILE = "maildaemons-cache"
# Version 5: the values of each field together (version 4 kept each message's values together,
# and a message without a final line end was given one before: both are rebuilt).
MAGIC = b"maildaemons-cache 5"
FIELDS = (
    "envelope",
    "bodystructure",
    "body",
    "headers",
    "emailid",
    "arrival",
    "sort-sent",
    "sort-subject",
    "sort-from",
    "sort-to",
    "sort-cc",
    "sort-displayfrom",
    "sort-displayto",
    "sort-thread",
    "rank-subject",
    "rank-from",
    "rank-to",
    "rank-cc",
    "rank-displayfrom",
    "rank-displayto",
    "order-subject",
    "order-from",
    "order-to",
    "order-cc",
    "order-displayfrom",
    "order-displayto",
)
# Fields that a SORT orders by, octet by octet: when the cache is written, each row's value of
# one gets its rank among all of them (equal values, equal ranks) in the field beside it, a
# 4-byte number, so that a SORT of a folder the cache knows reads one array and sorts numbers.
# When every row has a value, the rows in the order of their values (equal ones in row order)
# are kept too: a SORT by that field alone of all the rows reads it and sorts nothing.
_SORTED = ("subject", "from", "to", "cc", "displayfrom", "displayto")
RANKED = {f"sort-{name}": f"rank-{name}" for name in _SORTED}
ORDERED = {f"sort-{name}": f"order-{name}" for name in _SORTED}
RANK_SIZE = 4  # a rank is a little-endian u32, 0 for a row without a value
INDEX = {field: index for index, field in enumerate(FIELDS)}
ABSENT = 0xFFFFFFFF
MAX_VALUE = 1 << 20
WINDOW = 256 * 1024
# A field's block up to this size is read at once for a whole column, larger ones a window at
# a time.
WHOLE_BLOCK = 16 << 20
COPY_CHUNK = 1 << 20
# A column of fewer than one row in FEW of the file's is looked up row by row, not read whole.
FEW = 16


class _Window:
    """Reads at offsets of a file that mostly go forward, a window at a time."""

    def __init__(self, fd: int, base: int = 0) -> None:
        self.fd, self.base = fd, base
        self.start = 0
        self.data = b""

    def read(self, offset: int, length: int) -> bytes:
        start = offset - self.start
        if start >= 0 and start + length <= len(self.data):
            return self.data[start : start + length]
        self.data = os.pread(self.fd, max(length, WINDOW), self.base + offset)
        self.start = offset
        if len(self.data) < length:
            raise ValueError("truncated")
        return self.data[:length]


class _Stored:
    """The cache file as it was when first needed: uids and sizes in memory, each field's
    columns once asked for, the values through a window."""

    def __init__(self, handle: IO[bytes], space: str) -> None:
        self.handle = handle
        head = handle.readline(4096)
        parts = head.split()
        if len(parts) != 6 or b" ".join(parts[:2]) != MAGIC:
            raise ValueError("not a cache file")
        values = {p[:1]: p[1:] for p in parts[2:]}
        if values[b"V"].decode("ascii", "replace") != space:
            raise ValueError("another UID space")
        self.rows = int(values[b"N"])
        self.data_start = int(values[b"D"])
        self.blocks: dict[str, tuple[int, int]] = {}  # field -> (its place in F, block offset)
        spec = values[b"F"].decode("ascii")
        for place, item in enumerate(spec.split(",") if spec else []):
            name, _colon, offset = item.partition(":")
            self.blocks[name] = (place, int(offset))
        self.uids = self._column("I", self.rows)
        self.sizes = self._column("I", self.rows)
        self.lengths_at = handle.tell()
        if self.lengths_at + 4 * self.rows * len(self.blocks) > self.data_start:
            raise ValueError("columns overlap the data")
        self._lengths: dict[str, array[int]] = {}
        self._starts: dict[str, array[int]] = {}
        self.window = _Window(handle.fileno(), self.data_start)

    def _column(self, code: str, count: int) -> array[int]:
        column = array(code)
        data = self.handle.read(count * column.itemsize)
        if len(data) != count * column.itemsize:
            raise ValueError("truncated")
        column.frombytes(data)
        return column

    def row(self, uid: int) -> int:
        index = bisect.bisect_left(self.uids, uid)
        if index < len(self.uids) and self.uids[index] == uid:
            return index
        return -1

    def lengths(self, field: str) -> array[int] | None:
        """The field's lengths by row (ABSENT: none), None when the file has no such field."""
        lengths = self._lengths.get(field)
        if lengths is None and field in self.blocks:
            place = self.blocks[field][0]
            size = 4 * self.rows
            data = os.pread(self.handle.fileno(), size, self.lengths_at + place * size)
            if len(data) != size:
                raise ValueError("truncated")
            lengths = self._lengths[field] = array("I")
            lengths.frombytes(data)
        return lengths

    def starts(self, field: str) -> array[int]:
        """Where each row's value starts in the field's block (one more: the block's end)."""
        starts = self._starts.get(field)
        if starts is None:
            lengths = self.lengths(field) or array("I")
            present: Iterable[int] = lengths
            if ABSENT in lengths:
                present = (0 if n == ABSENT else n for n in lengths)
            starts = self._starts[field] = array("Q", itertools.accumulate(present, initial=0))
        return starts

    def value(self, row: int, field: str) -> bytes | None:
        lengths = self.lengths(field)
        if lengths is None or lengths[row] == ABSENT:
            return None
        offset = self.blocks[field][1] + self.starts(field)[row]
        return self.window.read(offset, lengths[row])

    def values(self, field: str) -> list[bytes | None]:
        """The field's value of every row, in row order."""
        lengths = self.lengths(field)
        if lengths is None:
            return [None] * self.rows
        starts = self.starts(field)
        block = self.blocks[field][1]
        if starts[-1] <= WHOLE_BLOCK:
            data = os.pread(self.handle.fileno(), starts[-1], self.data_start + block)
            if len(data) != starts[-1]:
                raise ValueError("truncated")
            if ABSENT not in lengths:  # every row has one: slices made in C
                return list(map(data.__getitem__, map(slice, starts, starts[1:])))
            return [
                None if n == ABSENT else data[s : s + n]
                for s, n in zip(starts, lengths, strict=False)
            ]
        read = self.window.read
        return [
            None if n == ABSENT else read(block + s, n)
            for s, n in zip(starts, lengths, strict=False)
        ]

    def numbers(self, field: str) -> array[int] | None:
        """The field's values as an array when every row has one of 4 bytes (the ranks of a
        RANKED field, 0 for a row without a value)."""
        lengths = self.lengths(field)
        if lengths is None or lengths.count(RANK_SIZE) != self.rows:
            return None
        size = RANK_SIZE * self.rows
        data = os.pread(self.handle.fileno(), size, self.data_start + self.blocks[field][1])
        if len(data) != size:
            raise ValueError("truncated")
        numbers = array("I")
        numbers.frombytes(data)
        if sys.byteorder != "little":
            numbers.byteswap()
        return numbers

    def block(self, field: str) -> Iterator[bytes]:
        """The field's whole block as it is, a chunk at a time."""
        offset = self.data_start + self.blocks[field][1]
        left = self.starts(field)[-1]
        while left:
            data = os.pread(self.handle.fileno(), min(left, COPY_CHUNK), offset)
            if not data:
                raise ValueError("truncated")
            yield data
            offset, left = offset + len(data), left - len(data)


NONE = 0xFFFFFFFF  # no value in the spill for this field


class _Fresh:
    """Values derived in this session: columns in memory, the bytes in a temporary file.

    Rows are looked up by bisection while they come in UID order, as a FETCH 1:* brings them,
    and by a dictionary only once one comes out of order. A field has columns only once it has
    a value, as long as the rows up to its last value: a FETCH of sizes and envelopes of
    100,000 messages costs 24 bytes a message, whatever other fields the cache knows."""

    def __init__(self) -> None:
        self.spill: IO[bytes] | None = None
        self.spill_size = 0
        self.uids = array("I")
        self.unordered: dict[int, int] | None = None  # uid -> row, once UIDs came unordered
        self.sizes = array("I")
        # Per field, by row: where the value is in the spill (NONE: none) and its length.
        self.offsets: list[array[int] | None] = [None] * len(FIELDS)
        self.lengths: list[array[int] | None] = [None] * len(FIELDS)
        self.last_uid, self.last_row = -1, -1

    def __bool__(self) -> bool:
        return bool(self.uids)

    def row(self, uid: int) -> int:
        if uid == self.last_uid:  # a FETCH response asks for one message several times
            return self.last_row
        if self.unordered is not None:
            row = self.unordered.get(uid, -1)
        else:
            index = bisect.bisect_left(self.uids, uid)
            row = index if index < len(self.uids) and self.uids[index] == uid else -1
        if row >= 0:
            self.last_uid, self.last_row = uid, row
        return row

    def rows(self) -> dict[int, int]:
        """uid -> row of every row."""
        return {uid: row for row, uid in enumerate(self.uids)}

    def add(self, uid: int) -> int:
        row = self.row(uid)
        if row >= 0:
            return row
        row = len(self.uids)
        self.last_uid, self.last_row = uid, row
        if self.unordered is None and row and uid < self.uids[-1]:
            self.unordered = self.rows()
        if self.unordered is not None:
            self.unordered[uid] = row
        self.uids.append(uid)
        self.sizes.append(ABSENT)
        return row

    def put(self, row: int, values: Iterable[tuple[int, bytes]]) -> None:
        """Values of fields (by index) of one row, written to the spill at once."""
        if self.spill is None:
            self.spill = tempfile.TemporaryFile(prefix="maildaemons-cache.")  # noqa: SIM115
        at, chunks = self.spill_size, []
        for field, value in values:
            size = len(value)
            if size > MAX_VALUE or at + size >= NONE:
                continue  # too big for the cache, or a spill of 4 GB
            offsets, lengths = self.offsets[field], self.lengths[field]
            if offsets is None or lengths is None or len(offsets) != row:
                offsets, lengths = self._columns(field, row)
                offsets[row], lengths[row] = at, size
            else:  # the usual case: the first value of the row just added
                offsets.append(at)
                lengths.append(size)
            chunks.append(value)
            at += size
        # Always at the end: reads use pread, which moves no offset.
        self.spill.write(b"".join(chunks))
        self.spill_size = at

    def _columns(self, field: int, row: int) -> tuple[array[int], array[int]]:
        """The field's columns, long enough for `row`."""
        offsets, lengths = self.offsets[field], self.lengths[field]
        if offsets is None or lengths is None:
            offsets = self.offsets[field] = array("I")
            lengths = self.lengths[field] = array("I")
        missing = row + 1 - len(offsets)
        if missing == 1:  # the usual case: a value for the row just added
            offsets.append(NONE)
            lengths.append(0)
        elif missing > 0:
            offsets.extend(array("I", [NONE]) * missing)
            lengths.extend(array("I", [0]) * missing)
        return offsets, lengths

    def has(self, row: int, field: int) -> bool:
        offsets = self.offsets[field]
        return offsets is not None and row < len(offsets) and offsets[row] != NONE

    def length(self, row: int, field: int) -> int:
        """The length of the value (0 when there is none: ask `has`)."""
        lengths = self.lengths[field]
        return lengths[row] if lengths is not None and row < len(lengths) else 0

    def value(self, row: int, field: int) -> bytes | None:
        offsets = self.offsets[field]
        if offsets is None or row >= len(offsets) or offsets[row] == NONE:
            return None
        length = self.length(row, field)
        if not length or self.spill is None:
            return b""
        self.spill.flush()
        return os.pread(self.spill.fileno(), length, offsets[row])

    def reader(self) -> _Window | None:
        """A window on the spill, for reading many values in order."""
        if self.spill is None:
            return None
        self.spill.flush()
        return _Window(self.spill.fileno())

    def close(self) -> None:
        if self.spill is not None:
            self.spill.close()


class MessageCache:
    """uid -> CRLF size and {field: bytes} for one folder and one UID space (`space`, given with
    every call: a folder whose UIDs started over starts a new cache), loaded on first use, saved
    when changed."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / CACHE_FILE
        self._space: str | None = None  # the values held are for this UID space
        self._stored: _Stored | None = None
        self._opened = False
        self._fresh = _Fresh()

    # -- lookups ---------------------------------------------------------------------------

    def size(self, space: str, uid: int) -> int | None:
        self._use(space)
        row = self._fresh.row(uid)
        if row >= 0 and self._fresh.sizes[row] != ABSENT:
            return self._fresh.sizes[row]
        stored = self._load()
        if stored is not None:
            row = stored.row(uid)
            if row >= 0 and stored.sizes[row] != ABSENT:
                return stored.sizes[row]
        return None

    def sizes(self, space: str, uids: array[int]) -> list[int | None]:
        """size() of each of `uids` (ascending): when they are the stored rows, as they are
        after a login to a folder nobody changed, the stored column as it is."""
        self._use(space)
        stored = self._load()
        if (
            not self._fresh
            and stored is not None
            and stored.uids == uids
            and ABSENT not in stored.sizes
        ):
            return list(stored.sizes)
        return [self.size(space, uid) for uid in uids]

    def column(self, space: str, uids: array[int], field: str) -> list[bytes | None]:
        """get() of each of `uids` (ascending): the stored values of the field in one read, as
        SEARCH or SORT of a whole folder wants them, this session's new ones laid over them."""
        self._use(space)
        stored = self._load()
        try:
            if stored is not None and stored.uids == uids:
                found = stored.values(field)  # the usual case: a folder nobody changed
            else:
                found = self._stored_column(stored, uids, field)
        except (OSError, ValueError):  # replaced and gone (NFS), or damaged: misses
            self._drop()
            found = [None] * len(uids)
        self._overlay(found, uids, FIELDS.index(field))
        return found

    def _overlay(self, found: list[bytes | None], uids: array[int], index: int) -> None:
        """This session's values of a field laid over a column, read through a window (they
        were written in row order, mostly)."""
        fresh = self._fresh
        offsets, lengths, spill = fresh.offsets[index], fresh.lengths[index], fresh.reader()
        if offsets is None or lengths is None or spill is None:
            return
        rows, count, place = fresh.uids, len(uids), 0
        for row, offset in enumerate(offsets):
            if offset == NONE:
                continue
            uid = rows[row]
            # Both go up by UID, mostly in step: look further only when the next place misses.
            if place >= count or uids[place] != uid:
                place = bisect.bisect_left(uids, uid)
                if place == count or uids[place] != uid:
                    continue
            found[place] = spill.read(offset, lengths[row]) if lengths[row] else b""
            place += 1

    def ranks(self, space: str, uids: array[int], field: str) -> array[int] | None:
        """The ranks of the values of a RANKED field for `uids` (ascending), as the cache was
        written; None unless the file has one for each of them and this session derived no
        value of the field (a new value has no rank yet)."""
        self._use(space)
        stored = self._load()
        if stored is None or self._fresh.offsets[INDEX[field]] is not None:
            return None
        try:
            ranks = stored.numbers(RANKED[field])
        except (OSError, ValueError):
            self._drop()
            return None
        if ranks is None or stored.uids == uids:
            return None if ranks is None or 0 in ranks else ranks
        found, row, rows = array("I"), 0, stored.uids
        for uid in uids:
            if row < len(rows) and rows[row] != uid:
                row = bisect.bisect_left(rows, uid, row)
            if row == len(rows) or rows[row] != uid or not ranks[row]:
                return None
            found.append(ranks[row])
            row += 1
        return found

    def order(self, space: str, uids: array[int], field: str) -> array[int] | None:
        """The rows `uids` (ascending) in the order of their values of a RANKED field, equal
        values in row order, as places in `uids`; None unless `uids` are the file's rows,
        each has a value, and this session derived none."""
        self._use(space)
        stored = self._load()
        if stored is None or self._fresh.offsets[INDEX[field]] is not None:
            return None
        try:
            return stored.numbers(ORDERED[field]) if stored.uids == uids else None
        except (OSError, ValueError):
            self._drop()
            return None

    @staticmethod
    def _stored_column(stored: _Stored | None, uids: array[int], field: str) -> list[bytes | None]:
        """The stored values of `uids`, walking the stored rows alongside."""
        if stored is None or field not in stored.blocks:
            return [None] * len(uids)
        if len(uids) * FEW < stored.rows:  # a few messages: each looked up
            return [
                None if (row := stored.row(uid)) < 0 else stored.value(row, field) for uid in uids
            ]
        values = stored.values(field)
        rows = stored.uids
        found: list[bytes | None] = []
        row = 0
        for uid in uids:
            if row < len(rows) and rows[row] != uid:
                row = bisect.bisect_left(rows, uid, row)
            if row < len(rows) and rows[row] == uid:
                found.append(values[row])
                row += 1
            else:
                found.append(None)
        return found

    def get(self, space: str, uid: int, field: str) -> bytes | None:
        index = FIELDS.index(field)
        self._use(space)
        row = self._fresh.row(uid)
        if row >= 0:
            value = self._fresh.value(row, index)
            if value is not None:
                return value
        stored = self._load()
        if stored is None or field not in stored.blocks:
            return None
        row = stored.row(uid)
        if row < 0:
            return None
        try:
            return stored.value(row, field)
        except (OSError, ValueError):  # replaced and gone (NFS), or damaged: a miss
            self._drop()
            return None

    def summary(self, space: str, uid: int) -> tuple[int | None, bytes | None]:
        """(size, envelope) of a message, either None when not cached: one lookup for what a
        FETCH of a big folder asks for every message."""
        self._use(space)
        size: int | None = None
        envelope: bytes | None = None
        fresh = self._fresh
        row = fresh.row(uid) if fresh else -1
        if row >= 0:
            if fresh.sizes[row] != ABSENT:
                size = fresh.sizes[row]
            envelope = fresh.value(row, 0)
        if size is None or envelope is None:
            stored = self._load()
            row = stored.row(uid) if stored is not None else -1
            if stored is not None and row >= 0:
                if size is None and stored.sizes[row] != ABSENT:
                    size = stored.sizes[row]
                if envelope is None:
                    try:
                        envelope = stored.value(row, FIELDS[0])
                    except (OSError, ValueError):
                        self._drop()
        return size, envelope

    def put_many(self, space: str, uid: int, size: int | None, values: dict[str, bytes]) -> None:
        """put_size() and put() of several fields at once."""
        self._use(space)
        row = self._fresh.add(uid)
        if size is not None:
            self._fresh.sizes[row] = size
        self._fresh.put(row, [(INDEX[field], value) for field, value in values.items()])

    def put_size(self, space: str, uid: int, size: int) -> None:
        self._use(space)
        self._fresh.sizes[self._fresh.add(uid)] = size

    def put(self, space: str, uid: int, field: str, value: bytes) -> None:
        self._use(space)
        self._fresh.put(self._fresh.add(uid), [(INDEX[field], value)])

    def _use(self, space: str) -> None:
        """Values for one UID space only: a folder that started over starts a new cache."""
        if self._space != space:
            if self._space is not None:
                self._drop()
                self._fresh.close()
                self._fresh = _Fresh()
            self._space, self._opened = space, False

    def _load(self) -> _Stored | None:
        if not self._opened and self._space is not None:
            self._opened = True
            self._stored = self._open(self._space)
        return self._stored

    def _open(self, space: str) -> _Stored | None:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 (kept open for the session)
        except OSError:
            return None
        try:
            return _Stored(handle, space)
        except (OSError, ValueError, KeyError, IndexError):
            handle.close()
            return None

    def _drop(self) -> None:
        if self._stored is not None:
            with contextlib.suppress(OSError):
                self._stored.handle.close()
        self._stored = None

    # -- saving ----------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return bool(self._fresh)

    def save(self, space: str, keep: Iterable[int]) -> None:
        """Write the cache with this session's new values, if there are any, for the messages
        in `keep` (the UIDs of the folder now); without new values, only when more than a tenth
        of the file is for messages that are gone."""
        self._use(space)
        wanted = array("I", sorted(keep))
        stored = self._load()
        fresh = self._fresh
        if not fresh and (stored is None or _stale(stored.uids, wanted) * 10 <= len(stored.uids)):
            return
        with contextlib.suppress(OSError, ValueError):
            _Writer(self.path, space, _Rows(wanted, stored, fresh), stored, fresh).write()
        self._drop()
        fresh.close()
        self._fresh, self._opened = _Fresh(), False


class _Rows:
    """The rows of a cache being written: every wanted UID with something cached, and where
    each comes from (its row in the stored file and among the fresh values, -1: none)."""

    def __init__(self, wanted: array[int], stored: _Stored | None, fresh: _Fresh) -> None:
        old_uids = stored.uids if stored is not None else array("I")
        fresh_rows = fresh.rows()
        self.uids = array("I")
        self.old = array("i")
        self.new = array("i")
        if old_uids == wanted:  # a folder nobody changed: every stored row, in place
            self.uids, self.old = array("I", wanted), array("i", range(len(wanted)))
            self.new = array("i", [fresh_rows.get(uid, -1) for uid in wanted])
        else:
            self._merge(wanted, old_uids, fresh_rows)
        self.same = old_uids == self.uids  # each stored row is the row of that number

    def _merge(self, wanted: array[int], old_uids: array[int], fresh_rows: dict[int, int]) -> None:
        at = 0
        for uid in wanted:
            if at < len(old_uids) and old_uids[at] < uid:
                at = bisect.bisect_left(old_uids, uid, at)
            old = at if at < len(old_uids) and old_uids[at] == uid else -1
            new = fresh_rows.get(uid, -1)
            if old < 0 and new < 0:
                continue
            self.uids.append(uid)
            self.old.append(old)
            self.new.append(new)

    def sizes(self, stored: _Stored | None, fresh: _Fresh) -> array[int]:
        sizes = array("I")
        old_sizes = stored.sizes if stored is not None else array("I")
        for old, new in zip(self.old, self.new, strict=True):
            size = fresh.sizes[new] if new >= 0 else ABSENT
            if size == ABSENT and old >= 0:
                size = old_sizes[old]
            sizes.append(size)
        return sizes


class _Writer:
    """One cache file written from the stored values and this session's new ones (the new
    taking precedence, field by field), by atomic rename."""

    def __init__(
        self, path: Path, space: str, rows: _Rows, stored: _Stored | None, fresh: _Fresh
    ) -> None:
        self.path, self.space, self.rows = path, space, rows
        self.stored, self.fresh = stored, fresh
        self.spill = fresh.reader()
        self.computed: dict[str, array[int]] = {}  # rank or order field -> its values by row
        self.dropped: set[str] = set()  # fields not to write

    def write(self) -> None:
        self.computed = self._ranks()
        fields = []  # (name, lengths) of each field some row has
        for index in range(len(FIELDS)):
            field = self._lengths(index)
            if field is not None:
                fields.append(field)
        blocks, total = [], 0
        for name, lengths in fields:
            blocks.append(f"{name}:{total}")
            total += sum(n for n in lengths if n != ABSENT)
        count = len(self.rows.uids)
        head = b"%s V%s N%d D%%020d F%s\n" % (
            MAGIC,
            self.space.encode("ascii"),
            count,
            ",".join(blocks).encode("ascii"),
        )
        data_start = len(head % 0) + count * 4 * (2 + len(fields))
        # Made new beside the file (never through a link, a name per thread), then renamed
        # over it; no fsync: the cache is derived data, and a torn one reads as empty.
        atomic_write(self.path, self._pieces(head % data_start, fields), fsync=False)

    def _pieces(self, head: bytes, fields: list[tuple[str, array[int]]]) -> Iterator[bytes]:
        yield head
        yield self.rows.uids.tobytes()
        yield self.rows.sizes(self.stored, self.fresh).tobytes()
        for _name, lengths in fields:
            yield lengths.tobytes()
        for name, _lengths in fields:
            yield from self._block(name)

    def _ranks(self) -> dict[str, array[int]]:
        """The rank fields to write (their values in row order, 0: none): anew for RANKED
        fields this session gave values or whose ranks the file lacks; else the file's, with
        none for rows new to it."""
        computed = {}
        stored = self.stored
        for field, rank_field in RANKED.items():
            new = self.fresh.offsets[INDEX[field]] is not None
            old = stored.numbers(rank_field) if stored is not None else None
            if new or (old is None and stored is not None and field in stored.blocks):
                ranks = computed[rank_field] = ranks_of(self._row_values(INDEX[field]))
                if 0 not in ranks:  # every row has a value: their order too
                    order = sorted(range(len(ranks)), key=ranks.__getitem__)
                    computed[ORDERED[field]] = array("I", order)
            elif old is not None and not self.rows.same:
                computed[rank_field] = array("I", (old[o] if o >= 0 else 0 for o in self.rows.old))
            if ORDERED[field] not in computed and not self.rows.same:
                self.dropped.add(ORDERED[field])  # an order of other rows
        return computed

    def _row_values(self, index: int) -> list[bytes | None]:
        """The field's value of each row (None: none)."""
        name, fresh, spill = FIELDS[index], self.fresh, self.spill
        old_values = self.stored.values(name) if self.stored is not None else None
        offsets, lengths = fresh.offsets[index], fresh.lengths[index]
        found: list[bytes | None] = []
        for row_old, row_new in zip(self.rows.old, self.rows.new, strict=True):
            if (
                offsets is not None
                and lengths is not None
                and 0 <= row_new < len(offsets)
                and offsets[row_new] != NONE
                and spill is not None
            ):
                found.append(spill.read(offsets[row_new], lengths[row_new]))
            elif row_old >= 0 and old_values is not None:
                found.append(old_values[row_old])
            else:
                found.append(None)
        return found

    def _lengths(self, index: int) -> tuple[str, array[int]] | None:
        """The field's lengths by row, None when no row has a value."""
        name = FIELDS[index]
        if name in self.dropped:
            return None
        if name in self.computed:
            numbers = self.computed[name]
            if name in RANKED.values() and numbers.count(0) == len(numbers):
                return None
            return name, array("I", [RANK_SIZE]) * len(numbers)
        fresh = self.fresh
        old = self.stored.lengths(name) if self.stored is not None else None
        if fresh.offsets[index] is None:
            if old is None:
                return None
            if self.rows.same:
                return name, array("I", old)
            return name, array("I", (ABSENT if o < 0 else old[o] for o in self.rows.old))
        lengths = array("I")
        for row_old, row_new in zip(self.rows.old, self.rows.new, strict=True):
            if row_new >= 0 and fresh.has(row_new, index):
                lengths.append(fresh.length(row_new, index))
            elif row_old >= 0 and old is not None:
                lengths.append(old[row_old])
            else:
                lengths.append(ABSENT)
        if lengths.count(ABSENT) == len(lengths):
            return None
        return name, lengths

    def _block(self, name: str) -> Iterator[bytes]:
        """The field's values of every row that has one, in row order."""
        if name in self.computed:
            ranks = self.computed[name]
            if sys.byteorder != "little":
                ranks = array("I", ranks)
                ranks.byteswap()
            yield ranks.tobytes()
            return
        index = FIELDS.index(name)
        stored, fresh = self.stored, self.fresh
        if fresh.offsets[index] is None and self.rows.same and stored is not None:
            yield from stored.block(name)  # nothing new and nothing gone: the block as it is
            return
        yield from self._values(index)

    def _values(self, index: int) -> Iterator[bytes]:
        name = FIELDS[index]
        stored, fresh, spill = self.stored, self.fresh, self.spill
        old_lengths = stored.lengths(name) if stored is not None else None
        offsets, lengths = fresh.offsets[index], fresh.lengths[index]
        for row_old, row_new in zip(self.rows.old, self.rows.new, strict=True):
            if (
                row_new >= 0
                and offsets is not None
                and lengths is not None
                and row_new < len(offsets)
                and offsets[row_new] != NONE
            ):
                if lengths[row_new] and spill is not None:
                    yield spill.read(offsets[row_new], lengths[row_new])
            elif row_old >= 0 and stored is not None and old_lengths is not None:
                value = stored.value(row_old, name)
                if value is not None:
                    yield value


def ranks_of(values: list[bytes | None]) -> array[int]:
    """Each value's rank among them, 1 for the least, equal for equal values (0 for None)."""
    present = [i for i, value in enumerate(values) if value is not None]
    present.sort(key=cast(list[bytes], values).__getitem__)  # (only the present ones)
    ranks = array("I", [0]) * len(values)
    rank, last = 0, None
    for i in present:
        if rank == 0 or values[i] != last:
            rank, last = rank + 1, values[i]
        ranks[i] = rank
    return ranks


def _stale(stored: array[int], wanted: array[int]) -> int:
    """How many of the stored UIDs are not wanted: the rows a save would drop."""
    if stored == wanted:  # the usual case, compared in C
        return 0
    return len(set(stored).difference(wanted))
