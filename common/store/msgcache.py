"""A disposable per-folder cache of what is costly to derive from a message: its CRLF size, its
ENVELOPE and BODYSTRUCTURE as rendered by the IMAP server, the header fields SEARCH looks at, the
keys SORT and THREAD order by and the EMAILID (opaque bytes here), by UID.

A message's content never changes in a Maildir, so an entry stays right for the message's life.
The cache is derived data (DESIGN.md "Storage"): it may be deleted at any time and is rebuilt; a
damaged file reads as empty. Its UIDs are those of one UID space, the folder's UIDVALIDITY and
the lineage of its uidlist (common/store/uidlist.py: new whenever the UIDs start over, as when a
damaged uidlist is rebuilt or Dovecot's is imported again): a cache of another space is not
used. It is written by atomic rename at the end of a session, pruned to the messages that still
exist.

File `maildaemons-cache`, version 4, columns so that a 100,000-message folder is read without a
Python object per message and looked up by bisection:

    maildaemons-cache 4 V<space> N<rows> D<data offset> F<field>,<field>...\\n
    uids      rows x u32, ascending
    sizes     rows x u32, CRLF size (ABSENT: not known)
    offsets   rows x u64, where the row's values start in the data
    lengths   rows x fields x u32 (ABSENT: not cached)
    data      each row's values, in field order, rows in UID order

Values come from the data area through a read window (a FETCH 1:* reads it front to back, a
window at a time), never by mapping the file: the session's memory stays small whatever the
folder's size. Values new in this session go to an anonymous temporary file, not to memory.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import tempfile
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import IO

CACHE_FILE = "maildaemons-cache"
# Version 4: a message without a final line end is no longer given one (common/store/maildir.py
# to_crlf), which changes its size and its last part's in BODYSTRUCTURE; older files are rebuilt.
MAGIC = b"maildaemons-cache 4"
FIELDS = ("envelope", "bodystructure", "body", "headers", "sortkeys", "emailid")
ABSENT = 0xFFFFFFFF
MAX_VALUE = 1 << 20
WINDOW = 256 * 1024


class _Stored:
    """The cache file as it was when first needed: its columns in memory, its data read through
    a window."""

    def __init__(self, handle: IO[bytes], space: str) -> None:
        self.handle = handle
        head = handle.readline(4096)
        parts = head.split()
        if len(parts) != 6 or b" ".join(parts[:2]) != MAGIC:
            raise ValueError("not a cache file")
        values = {p[:1]: p[1:] for p in parts[2:]}
        if values[b"V"].decode("ascii", "replace") != space:
            raise ValueError("another UID space")
        rows = int(values[b"N"])
        self.data_start = int(values[b"D"])
        self.fields = values[b"F"].decode("ascii").split(",")
        self.width = len(self.fields)
        self.uids = self._column("I", rows)
        self.sizes = self._column("I", rows)
        self.offsets = self._column("Q", rows)
        self.lengths = self._column("I", rows * self.width)
        if handle.tell() > self.data_start:
            raise ValueError("columns overlap the data")
        self.window_start = 0
        self.window = b""

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

    def value(self, row: int, field: int) -> bytes | None:
        base = row * self.width
        length = self.lengths[base + field]
        if length == ABSENT:
            return None
        offset = self.offsets[row] + sum(
            n for n in self.lengths[base : base + field] if n != ABSENT
        )
        return self.read(offset, length)

    def read(self, offset: int, length: int) -> bytes:
        start = offset - self.window_start
        if start >= 0 and start + length <= len(self.window):
            return self.window[start : start + length]
        self.window = os.pread(self.handle.fileno(), max(length, WINDOW), self.data_start + offset)
        self.window_start = offset
        if len(self.window) < length:
            raise ValueError("truncated")
        return self.window[:length]


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

    def add(self, uid: int) -> int:
        row = self.row(uid)
        if row >= 0:
            return row
        row = len(self.uids)
        self.last_uid, self.last_row = uid, row
        if self.unordered is None and row and uid < self.uids[-1]:
            self.unordered = {u: r for r, u in enumerate(self.uids)}
        if self.unordered is not None:
            self.unordered[uid] = row
        self.uids.append(uid)
        self.sizes.append(ABSENT)
        return row

    def put(self, row: int, field: int, value: bytes) -> None:
        if self.spill is None:
            self.spill = tempfile.TemporaryFile(prefix="maildaemons-cache.")  # noqa: SIM115
        if self.spill_size + len(value) >= NONE:
            return  # a spill of 4 GB: this value is not cached
        self.spill.write(value)  # always at the end: reads use pread, which moves no offset
        offsets, lengths = self._columns(field, row)
        offsets[row] = self.spill_size
        lengths[row] = len(value)
        self.spill_size += len(value)

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
        """get() of each of `uids` (ascending): one walk along the stored rows and a read of
        their data front to back, as SEARCH of a whole folder wants it."""
        self._use(space)
        index = FIELDS.index(field)
        stored = self._load()
        fresh = self._fresh
        position = stored.fields.index(field) if stored and field in stored.fields else -1
        found: list[bytes | None] = []
        row = 0
        for uid in uids:
            value = None
            if fresh:
                new = fresh.row(uid)
                if new >= 0:
                    value = fresh.value(new, index)
            if value is None and stored is not None and position >= 0:
                rows = stored.uids
                if row >= len(rows) or rows[row] != uid:
                    row = bisect.bisect_left(rows, uid, row)
                if row < len(rows) and rows[row] == uid:
                    try:
                        value = stored.value(row, position)
                    except (OSError, ValueError):  # replaced and gone, or damaged
                        self._drop()
                        stored = None
                    row += 1
            found.append(value)
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
        if stored is None or field not in stored.fields:
            return None
        row = stored.row(uid)
        if row < 0:
            return None
        try:
            return stored.value(row, stored.fields.index(field))
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
                if envelope is None and stored.fields[0] == FIELDS[0]:
                    try:
                        envelope = stored.value(row, 0)
                    except (OSError, ValueError):
                        self._drop()
        return size, envelope

    def put_many(self, space: str, uid: int, size: int | None, values: dict[str, bytes]) -> None:
        """put_size() and put() of several fields at once."""
        self._use(space)
        row = self._fresh.add(uid)
        if size is not None:
            self._fresh.sizes[row] = size
        for field, value in values.items():
            if len(value) <= MAX_VALUE:
                self._fresh.put(row, FIELDS.index(field), value)

    def put_size(self, space: str, uid: int, size: int) -> None:
        self._use(space)
        self._fresh.sizes[self._fresh.add(uid)] = size

    def put(self, space: str, uid: int, field: str, value: bytes) -> None:
        if len(value) > MAX_VALUE:
            return
        self._use(space)
        self._fresh.put(self._fresh.add(uid), FIELDS.index(field), value)

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
            self._write(space, wanted, stored, fresh)
        self._drop()
        fresh.close()
        self._fresh, self._opened = _Fresh(), False

    def _write(self, space: str, wanted: array[int], stored: _Stored | None, fresh: _Fresh) -> None:
        rows = _merge_rows(wanted, stored, fresh)
        uids, sizes = array("I"), array("I")
        offsets, lengths = array("Q"), array("I")
        total = 0
        for row in rows:
            uids.append(row.uid)
            sizes.append(row.size)
            offsets.append(total)
            lengths.extend(row.lengths)
            total += sum(n for n in row.lengths if n != ABSENT)
        fields = ",".join(FIELDS).encode()
        head = b"%s V%s N%d D%%020d F%s\n" % (MAGIC, space.encode("ascii"), len(rows), fields)
        data_start = len(head % 0) + len(rows) * (4 * 2 + 8 + 4 * len(FIELDS))
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as out:
                out.write(head % data_start)
                for column in (uids, sizes, offsets, lengths):
                    out.write(column.tobytes())
                for row in rows:
                    for index, length in enumerate(row.lengths):
                        if length != ABSENT and length:
                            out.write(row.value(index, stored, fresh))
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class _Row:
    """One message in a cache being written: where its values come from."""

    __slots__ = ("lengths", "new", "old", "size", "uid")

    def __init__(self, uid: int, old: int, new: int, size: int) -> None:
        self.uid, self.old, self.new, self.size = uid, old, new, size
        self.lengths: list[int] = []

    def value(self, index: int, stored: _Stored | None, fresh: _Fresh) -> bytes:
        if self.new >= 0:
            value = fresh.value(self.new, index)
            if value is not None:
                return value
        if stored is None or self.old < 0:
            raise ValueError("a cached value went missing")
        value = stored.value(self.old, stored.fields.index(FIELDS[index]))
        if value is None:
            raise ValueError("a cached value went missing")
        return value


def _merge_rows(wanted: array[int], stored: _Stored | None, fresh: _Fresh) -> list[_Row]:
    """A row for every wanted UID with something cached, the fresh values taking precedence
    field by field."""
    rows: list[_Row] = []
    width = len(FIELDS)
    for uid in wanted:
        new = fresh.row(uid)
        old = stored.row(uid) if stored is not None else -1
        if new < 0 and old < 0:
            continue
        size = fresh.sizes[new] if new >= 0 else ABSENT
        if size == ABSENT and old >= 0 and stored is not None:
            size = stored.sizes[old]
        row = _Row(uid, old, new, size)
        for index in range(width):
            length = ABSENT
            if new >= 0 and fresh.has(new, index):
                length = fresh.length(new, index)
            elif old >= 0 and stored is not None and FIELDS[index] in stored.fields:
                length = stored.lengths[old * stored.width + stored.fields.index(FIELDS[index])]
            row.lengths.append(length)
        rows.append(row)
    return rows


def _stale(stored: array[int], wanted: array[int]) -> int:
    """How many of the stored UIDs are not wanted: the rows a save would drop."""
    if stored == wanted:  # the usual case, compared in C
        return 0
    return len(set(stored).difference(wanted))
