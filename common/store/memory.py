"""Memory for big folders: no garbage collection while a table is built, and freed memory given
back to the system after work on a big folder.

Building the table of a 100,000-message folder creates 100,000 objects that live for the
session; the cyclic garbage collector, which runs every few hundred new objects, would look at
them again and again while they are made (a third of the time of reading the table). They hold
no cycles: `paused_gc()` keeps the collector out while they are made.

A session that read or synced a 100,000-message folder frees most of what the work allocated,
but the C library keeps the freed pages for later: the session's memory (PSS) stays where the
work peaked. `release()` asks glibc to return them (malloc_trim(3)); elsewhere it does nothing.
It is called after such work only: it walks the heap, a few milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
from collections.abc import Callable, Iterator

# Work on more messages than this is followed by a release().
BIG_WORK = 20_000


def _find_trim() -> Callable[[int], int] | None:
    with contextlib.suppress(OSError, AttributeError):
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
        return trim
    return None


_trim = _find_trim()


def release() -> None:
    """Return freed heap pages to the system (glibc), or nothing."""
    if _trim is not None:
        _trim(0)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection in the block (reference counting still frees at once)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
