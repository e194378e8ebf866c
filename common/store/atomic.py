"""Atomic replacement of shared files and the NFS-safe lock around read-modify-write.

Every shared file (users, admins, uidlists, runtime state, stats state) is changed the same way:
take the link lock (`lockfile.LinkLockFile`, which works over NFS), write a temporary file next to
the target, fsync it, rename it over the target, fsync the directory. Readers never lock: a rename
is atomic, so they see the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import lockfile
from lockfile.linklockfile import LinkLockFile

LOCK_TIMEOUT = 10.0


class LockBusy(Exception):
    """Another process held the lock for longer than we were willing to wait."""


@contextlib.contextmanager
def locked(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the link lock `<path>.lock` for the duration of the block."""
    lock = LinkLockFile(str(path), timeout=timeout)
    try:
        if not _acquire(lock, timeout):
            break_if_stale(lock, path)
            if not _acquire(lock, timeout):
                raise LockBusy(f"{path} is locked by another process")
    except lockfile.LockFailed as exc:
        raise LockBusy(f"cannot lock {path}: {exc}") from None
    try:
        yield
    finally:
        with contextlib.suppress(lockfile.NotLocked, lockfile.NotMyLock, OSError):
            lock.release()


def _acquire(lock: LinkLockFile, timeout: float) -> bool:
    """Try link(2) until `timeout`, backing off from 1 ms to 20 ms between tries.

    Not `LinkLockFile.acquire(timeout)`: it sleeps timeout/10 (1 s) between tries, so every
    contended uidlist update would cost a waiter a second. One try per call (timeout=0 raises
    AlreadyLocked at once) and our own short back-off."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            lock.acquire(timeout=0)
            return True
        except lockfile.AlreadyLocked:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def break_if_stale(lock: LinkLockFile, path: Path, max_age: float = 300.0) -> None:
    """A lock older than max_age belongs to a process that died holding it (SIGKILL)."""
    try:
        age = time.time() - os.stat(lock.lock_file).st_mtime
    except OSError:
        return
    if age > max_age:
        with contextlib.suppress(OSError):
            lock.break_lock()


def atomic_write(
    path: Path, data: bytes | Iterable[bytes], mode: int = 0o600, fsync: bool = True
) -> None:
    """Replace `path` with `data` (bytes, or pieces of them): temp file in the same directory,
    fsync, rename, fsync dir."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                handle.writelines(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename durable: a crash after this keeps the new name."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
