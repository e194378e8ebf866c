"""Reader and writer for D. J. Bernstein's cdb ("constant database") format.

tcpserver (ucspi-tcp) reads its access rules from a cdb that `tcprules` compiles; the relay support
(`common/relay/`, seed 002, vpopmail's `open_smtp_relay()`) rebuilds that file on every new
relay client. The format is small and fixed (https://cr.yp.to/cdb/cdb.txt):

- a 2048-byte header of 256 (position, slot count) pairs, one per hash table;
- the records, each `klen`, `dlen` (little-endian u32), key, data;
- the 256 hash tables, each slot a (hash, record position) pair, empty slots zero.

The writer places slots exactly as djb's `cdb_make` does (a table's records in insertion order,
linear probing from `(hash >> 8) % slots`), so for the same records it writes the same bytes as
`tcprules`; the tests compare the two byte for byte. We keep our own ~100 lines rather than add a
dependency: the available PyPI packages are unmaintained or C extensions, and this lets the relay
code control where the bytes go (a temporary file it fsyncs and renames).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

HEADER_SIZE = 2048
TABLES = 256
MAX_SIZE = 0xFFFFFFFF  # positions are u32: a cdb cannot grow past 4 GiB

_PAIR = struct.Struct("<II")


class CdbError(Exception):
    """A cdb that cannot be written (too big) or read (truncated, inconsistent)."""


def cdb_hash(key: bytes) -> int:
    """djb's hash: h = 5381; h = ((h << 5) + h) ^ c, kept to 32 bits."""
    h = 5381
    for c in key:
        h = (((h << 5) + h) & 0xFFFFFFFF) ^ c
    return h


class CdbWriter:
    """Writes a cdb to a binary file positioned at its start; call `add()` then `finish()`."""

    def __init__(self, fp: BinaryIO) -> None:
        self._fp = fp
        self._pos = HEADER_SIZE
        self._records: list[tuple[int, int]] = []  # (hash, position), in insertion order
        # The header is only known at the end: reserve its space now, fill it in finish().
        fp.write(b"\0" * HEADER_SIZE)

    def add(self, key: bytes, data: bytes) -> None:
        """Append one record; duplicate keys are kept (a lookup returns the first)."""
        size = _PAIR.size + len(key) + len(data)
        self._check_room(size)
        self._fp.write(_PAIR.pack(len(key), len(data)))
        self._fp.write(key)
        self._fp.write(data)
        self._records.append((cdb_hash(key), self._pos))
        self._pos += size

    def finish(self) -> None:
        """Write the hash tables and the header; the caller flushes, fsyncs and closes."""
        buckets: list[list[tuple[int, int]]] = [[] for _ in range(TABLES)]
        for h, pos in self._records:
            buckets[h & 0xFF].append((h, pos))
        header = bytearray()
        for bucket in buckets:
            slots = 2 * len(bucket)
            header += _PAIR.pack(self._pos, slots)
            table = _place(bucket, slots)
            self._check_room(len(table))
            self._fp.write(table)
            self._pos += len(table)
        self._fp.seek(0)
        self._fp.write(bytes(header))
        self._fp.seek(self._pos)

    def _check_room(self, size: int) -> None:
        if self._pos + size > MAX_SIZE:
            raise CdbError("cdb would exceed 4 GiB")


def _place(bucket: list[tuple[int, int]], slots: int) -> bytes:
    """One hash table: each record at (hash >> 8) % slots, moving on to the next free slot."""
    table = [(0, 0)] * slots
    for h, pos in bucket:
        where = (h >> 8) % slots
        while table[where][1]:  # position 0 is the header, so 0 marks a free slot
            where = (where + 1) % slots
        table[where] = (h, pos)
    return b"".join(_PAIR.pack(h, pos) for h, pos in table)


def write_cdb(fp: BinaryIO, records: list[tuple[bytes, bytes]]) -> None:
    """Write `records` (in order) as a complete cdb to `fp`."""
    writer = CdbWriter(fp)
    for key, data in records:
        writer.add(key, data)
    writer.finish()


class CdbReader:
    """Lookups in a cdb held in memory (rule databases are small)."""

    def __init__(self, data: bytes) -> None:
        if len(data) < HEADER_SIZE:
            raise CdbError(f"cdb truncated: {len(data)} bytes, header needs {HEADER_SIZE}")
        self._data = data

    @classmethod
    def from_file(cls, path: Path) -> CdbReader:
        return cls(path.read_bytes())

    def get(self, key: bytes) -> bytes | None:
        """The first record's data for `key`, or None."""
        for data in self.get_all(key):
            return data
        return None

    def get_all(self, key: bytes) -> Iterator[bytes]:
        """Every record's data for `key`, in insertion order (as cdb_findnext walks them)."""
        h = cdb_hash(key)
        table_pos, slots = self._pair(8 * (h & 0xFF))
        if not slots:
            return
        start = (h >> 8) % slots
        for i in range(slots):
            slot_hash, pos = self._pair(table_pos + 8 * ((start + i) % slots))
            if not pos:
                return
            if slot_hash == h:
                record_key, data = self._record(pos)
                if record_key == key:
                    yield data

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every record in file order (records end where the first hash table starts)."""
        end, _ = self._pair(0)
        pos = HEADER_SIZE
        while pos < end:
            key, data = self._record(pos)
            pos += _PAIR.size + len(key) + len(data)
            yield key, data

    def _pair(self, pos: int) -> tuple[int, int]:
        if pos + _PAIR.size > len(self._data):
            raise CdbError(f"cdb truncated: pointer {pos} past end {len(self._data)}")
        first, second = _PAIR.unpack_from(self._data, pos)
        return int(first), int(second)

    def _record(self, pos: int) -> tuple[bytes, bytes]:
        klen, dlen = self._pair(pos)
        start = pos + _PAIR.size
        if start + klen + dlen > len(self._data):
            raise CdbError(f"cdb truncated: record at {pos} runs past the end")
        return self._data[start : start + klen], self._data[start + klen : start + klen + dlen]
