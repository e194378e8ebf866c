"""What a big command derives of many messages, derived on a second CPU: RFC822.SIZE and
ENVELOPE for a first FETCH of a big folder, the sort facts for its first SORT or THREAD.

The first `UID FETCH 1:* (... RFC822.SIZE ENVELOPE)` of a folder of 100,000 messages that no
session has looked at must read every file and parse every header. When a FETCH is about to do
that for many messages, `Prefetch` forks a helper process that derives three messages of every
five of the FETCH (reads the file through the store, counts its CRLF size, parses its header
into the ENVELOPE and the fields SEARCH looks at) and sends the values through a pipe, while the
session derives the others and writes every response and the cache itself, in order. The
helper never touches the client's connection or any file but the messages it reads; it ends
with os._exit when its part is done, and is killed and reaped whatever happens to the FETCH. In
a process that runs other threads (fork would copy them stopped, locks and all), nothing is
forked and the session does all the work, as it does for a small FETCH.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import struct
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

from common.store import Entry, StoreError

# Fewer cache misses than this in a FETCH: not worth a process.
MIN_MISSES = 2000
# The helper's messages: these places of every SHARE_OF. The session also writes every
# response and the cache, so with two CPUs free the two finish together when the helper
# derives three messages of five.
SHARE = (1, 2, 4)
SHARE_OF = 5
# How many of the first messages are looked up to judge the misses.
PROBE = 64
_HEAD = struct.Struct("<III")  # uid, number of values (GONE: the message is gone), bytes
GONE = 0xFFFFFFFF

Values = tuple[bytes, ...]  # what the helper derives of one message
Work = Callable[[Entry], Values]  # ... and how: StoreError when the message is gone


class Prefetch:
    """The helper for the messages at the SHARE places of `entries`; `get(entry)` gives their
    values in order (None: derive it here after all)."""

    def __init__(self, work: Work, entries: list[Entry], close: int) -> None:
        self.pid = 0
        self.stream: BinaryIO | None = None
        self.entries = [e for i, e in enumerate(entries) if i % SHARE_OF in SHARE]
        self.next = 0
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # the helper
            os.close(reader)
            _helper(work, self.entries, writer, close)
        os.close(writer)
        self.pid = pid
        self.stream = os.fdopen(reader, "rb", buffering=1 << 16)

    def mine(self, index: int) -> bool:
        """Whether the message at `index` of the FETCH is the helper's."""
        return index % SHARE_OF in SHARE and self.stream is not None

    def get(self, entry: Entry) -> Values | None:
        """The helper's values for `entry` (the next of its messages), None when it failed;
        StoreError when the message is gone."""
        if self.stream is None or self.next >= len(self.entries):
            return None
        if self.entries[self.next] is not entry:
            raise RuntimeError("prefetch out of step")
        self.next += 1
        head = self.stream.read(_HEAD.size)
        if len(head) != _HEAD.size:
            self.close()  # the helper died: the rest is derived here
            return None
        uid, count, size = _HEAD.unpack(head)
        if uid != entry.uid:
            self.close()
            return None
        if count == GONE:
            raise StoreError(f"message {uid} is gone")
        data = self.stream.read(4 * count + size)
        if len(data) != 4 * count + size:
            self.close()
            return None
        values, at = [], 4 * count
        for (length,) in struct.iter_unpack("<I", data[:at]):
            values.append(data[at : at + length])
            at += length
        return tuple(values)

    def close(self) -> None:
        if self.stream is not None:
            with contextlib.suppress(OSError):
                self.stream.close()
            self.stream = None
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = 0


def _send(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextlib.contextmanager
def prefetching(
    work: Work,
    entries: list[Entry],
    misses: Callable[[Entry], bool],
    close: int,
) -> Iterator[Prefetch | None]:
    """A Prefetch when the command has enough cache misses and forking is safe, else None."""
    probe = entries[:PROBE]
    missed = sum(1 for e in probe if misses(e))
    many = len(entries) * missed // max(1, len(probe)) >= MIN_MISSES
    if not many or threading.active_count() > 1:
        yield None
        return
    helper = Prefetch(work, entries, close)
    try:
        yield helper
    finally:
        helper.close()


def _helper(work: Work, entries: list[Entry], writer: int, close: int) -> None:
    """In the forked helper: derive, send, exit; never return. The work reads messages and
    computes; it writes nothing (the session's open files are shared with the helper)."""
    status = 0
    try:
        gc.disable()  # a collection would touch every object and copy the session's memory
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)
        with contextlib.suppress(ValueError, OSError):
            signal.set_wakeup_fd(-1)
        if close >= 0:
            with contextlib.suppress(OSError):
                os.close(close)  # the client's connection is the session's alone
        # One write per message, so the session has each as soon as it is derived.
        for entry in entries:
            try:
                values = work(entry)
            except StoreError:
                _send(writer, _HEAD.pack(entry.uid, GONE, 0))
                continue
            lengths = struct.pack(f"<{len(values)}I", *map(len, values))
            head = _HEAD.pack(entry.uid, len(values), sum(map(len, values)))
            _send(writer, b"".join((head, lengths, *values)))
    except BaseException:
        status = 1
    finally:
        os._exit(status)
