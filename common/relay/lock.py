"""The relay lock: vpopmail's exclusive fcntl lock on all of open-smtp.lock (get_write_lock()).

Taken as an open file description lock (common/store/filelock.py): it conflicts with vpopmail's
fcntl lock and also excludes another session of the same pool worker, which a process-wide
`lockf` would not.

Both writers, the daemons' login hook and clearopensmtp, take it before they touch open-smtp or
tcp.smtp.cdb, so they never interleave with each other or with a vpopmail on the same files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

from common import turns
from common.relay.errors import LockBusyError, LockOpenError
from common.relay.files import FILE_MODE, new_file_owner
from common.store.filelock import try_lock_exclusive

LOCK_POLL = 0.02  # fcntl has no timed wait: poll a non-blocking lock this often


@contextlib.contextmanager
def relay_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold vpopmail's lock: an exclusive lock on all of open-smtp.lock.

    Waits up to `timeout` seconds (0: one try), then raises LockBusyError. The lock belongs to the
    open file and goes when the descriptor is closed or the process dies, so a killed holder never
    leaves it stuck.
    """
    try:
        fd = _open_lock_file(path)
    except OSError as exc:
        raise LockOpenError(f"cannot open lock file {path}: {exc.strerror}") from None
    try:
        _acquire(fd, path, timeout)
        yield
    finally:
        os.close(fd)


def _open_lock_file(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.fchmod(fd, FILE_MODE)
        owner = new_file_owner(path)
        if owner is not None:
            os.fchown(fd, *owner)
    except OSError:
        os.close(fd)
        raise
    return fd


def _acquire(fd: int, path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            try_lock_exclusive(fd)
            return
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise LockOpenError(f"cannot lock {path}: {exc.strerror}") from None
        if time.monotonic() >= deadline:
            raise LockBusyError(f"{path} is still locked by another process after {timeout:g}s")
        turns.sleep(LOCK_POLL)
