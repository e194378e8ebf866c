"""RFC822.SIZE and ENVELOPE of a big folder's messages, derived on a second CPU.

The first `UID FETCH 1:* (... RFC822.SIZE ENVELOPE)` of a folder of 100,000 messages that no
session has looked at must read every file and parse every header. When a FETCH is about to do
that for many messages, `Prefetch` forks a helper process that derives every second message of
the FETCH (reads the file through the store, counts its CRLF size, parses its header into the
ENVELOPE and the fields SEARCH looks at) and sends the values through a pipe, while the session
derives the others and writes every response and the cache itself, in order. The helper never
touches the client's connection or any file but the messages it reads; it ends with os._exit
when its part is done, and is killed and reaped whatever happens to the FETCH. In a process that
runs other threads (fork would copy them stopped, locks and all), nothing is forked and the
session does all the work, as it does for a small FETCH.
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

from common.store import Entry, StoreError, crlf_size
from imapd.message import envelope_of, known_fields
from imapd.mime import split_header
from imapd.search import searched_headers

# Fewer cache misses than this in a FETCH: not worth a process.
MIN_MISSES = 2000
# How many of the first messages are looked up to judge the misses.
PROBE = 64
_RECORD = struct.Struct("<IIII")  # uid, size, envelope length, headers length
GONE = 0xFFFFFFFF  # size of a message that could not be read

Derived = tuple[int, bytes, bytes]  # size, ENVELOPE, searched headers


def derive(data: bytes) -> Derived:
    """What the cache keeps of a message that a FETCH of sizes and envelopes needs."""
    fields = known_fields(data[: split_header(data, 0, len(data))[0]])
    return crlf_size(data), envelope_of(fields), searched_headers(fields)


class Prefetch:
    """The helper for the messages at odd positions of `entries`; `get(entry)` gives their
    values in order (None: derive it here after all)."""

    def __init__(self, read: Callable[[Entry], bytes], entries: list[Entry], close: int) -> None:
        self.pid = 0
        self.stream: BinaryIO | None = None
        self.entries = entries[1::2]
        self.next = 0
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # the helper
            os.close(reader)
            _helper(read, self.entries, writer, close)
        os.close(writer)
        self.pid = pid
        self.stream = os.fdopen(reader, "rb", buffering=1 << 16)

    def mine(self, index: int) -> bool:
        """Whether the message at `index` of the FETCH is the helper's."""
        return index % 2 == 1 and self.stream is not None

    def get(self, entry: Entry) -> Derived | None:
        """The helper's values for `entry` (the next of its messages), None when it failed."""
        if self.stream is None or self.next >= len(self.entries):
            return None
        if self.entries[self.next] is not entry:
            raise RuntimeError("prefetch out of step")
        self.next += 1
        head = self.stream.read(_RECORD.size)
        if len(head) != _RECORD.size:
            self.close()  # the helper died: the rest is derived here
            return None
        uid, size, envelope_size, headers_size = _RECORD.unpack(head)
        envelope = self.stream.read(envelope_size)
        headers = self.stream.read(headers_size)
        if uid != entry.uid or len(envelope) != envelope_size or len(headers) != headers_size:
            self.close()
            return None
        if size == GONE:
            raise StoreError(f"message {uid} is gone")
        return size, envelope, headers

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
    read: Callable[[Entry], bytes],
    entries: list[Entry],
    misses: Callable[[Entry], bool],
    close: int,
) -> Iterator[Prefetch | None]:
    """A Prefetch when the FETCH has enough cache misses and forking is safe, else None."""
    probe = entries[:PROBE]
    missed = sum(1 for e in probe if misses(e))
    many = len(entries) * missed // max(1, len(probe)) >= MIN_MISSES
    if not many or threading.active_count() > 1:
        yield None
        return
    helper = Prefetch(read, entries, close)
    try:
        yield helper
    finally:
        helper.close()


def _helper(read: Callable[[Entry], bytes], entries: list[Entry], writer: int, close: int) -> None:
    """In the forked helper: derive, send, exit; never return."""
    status = 0
    try:
        gc.disable()  # a collection would touch every object and copy the session's memory
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)
        with contextlib.suppress(ValueError, OSError):
            signal.set_wakeup_fd(-1)
        with contextlib.suppress(OSError):
            os.close(close)  # the client's connection is the session's alone
        # One write per message, so the session has each as soon as it is derived.
        for entry in entries:
            try:
                size, envelope, headers = derive(read(entry))
            except StoreError:
                _send(writer, _RECORD.pack(entry.uid, GONE, 0, 0))
                continue
            head = _RECORD.pack(entry.uid, size, len(envelope), len(headers))
            _send(writer, b"".join((head, envelope, headers)))
    except BaseException:
        status = 1
    finally:
        os._exit(status)
