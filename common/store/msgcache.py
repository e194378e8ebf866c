"""A disposable per-folder cache of what is costly to derive from a message: its ENVELOPE and
BODYSTRUCTURE as rendered by the IMAP server (opaque bytes here), keyed by the Maildir key.

A message's content never changes in a Maildir, so an entry stays right for the message's life.
The cache is derived data (DESIGN.md "Storage"): it may be deleted at any time and is rebuilt; a
damaged file reads as empty. It is written by atomic rename at the end of a session, pruned to
the messages that still exist, so it never grows without bound.

File `maildaemons-cache`: a header line, then for each message one line
`<key> <field> <length>` followed by exactly <length> bytes and a newline (values may hold CRLF).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from common.store.atomic import atomic_write

CACHE_FILE = "maildaemons-cache"
# Version 2: a message without a final line end is no longer given one (common/store/maildir.py
# to_crlf), which changes the last part's size in BODYSTRUCTURE; version 1 files are rebuilt.
HEADER = b"maildaemons-cache 2\n"
MAX_VALUE = 1 << 20


class MessageCache:
    """key -> {field: bytes}, loaded on first use, saved when changed."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / CACHE_FILE
        self._entries: dict[str, dict[str, bytes]] | None = None
        self.dirty = False

    def get(self, key: str, field: str) -> bytes | None:
        return self._load().get(key, {}).get(field)

    def put(self, key: str, field: str, value: bytes) -> None:
        if len(value) > MAX_VALUE:
            return
        self._load().setdefault(key, {})[field] = value
        self.dirty = True

    def save(self, keep: set[str] | None = None) -> None:
        """Write the cache if it changed; with `keep`, forget messages that are gone."""
        if self._entries is None:
            return
        if keep is not None:
            stale = [k for k in self._entries if k not in keep]
            for key in stale:
                del self._entries[key]
            self.dirty = self.dirty or bool(stale)
        if not self.dirty:
            return
        with contextlib.suppress(OSError):
            atomic_write(self.path, serialize(self._entries), fsync=False)
        self.dirty = False

    def _load(self) -> dict[str, dict[str, bytes]]:
        if self._entries is None:
            try:
                self._entries = parse(self.path.read_bytes())
            except OSError:
                self._entries = {}
        return self._entries


def serialize(entries: dict[str, dict[str, bytes]]) -> bytes:
    parts = [HEADER]
    for key, fields in entries.items():
        encoded = key.encode("utf-8", "surrogateescape")
        for field, value in fields.items():
            parts.append(b"%s %s %d\n" % (encoded, field.encode(), len(value)))
            parts.append(value)
            parts.append(b"\n")
    return b"".join(parts)


def parse(data: bytes) -> dict[str, dict[str, bytes]]:
    """The entries of a cache file; whatever is damaged is simply not there."""
    entries: dict[str, dict[str, bytes]] = {}
    if not data.startswith(HEADER):
        return entries
    pos = len(HEADER)
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            break
        fields = data[pos:end].rsplit(b" ", 2)  # a key may hold spaces; field and size do not
        if len(fields) != 3 or not fields[2].isdigit():
            break
        size = int(fields[2])
        value = data[end + 1 : end + 1 + size]
        if len(value) != size or data[end + 1 + size : end + 2 + size] != b"\n":
            break
        key = fields[0].decode("utf-8", "surrogateescape")
        entries.setdefault(key, {})[fields[1].decode("ascii", "replace")] = value
        pos = end + 2 + size
    return entries
