"""Atomic replacement of shared files and the NFS-safe lock around read-modify-write.

Every shared file (users, admins, uidlists, runtime state, stats state) is changed the same way:
take the link lock (`lockfile.LinkLockFile`, which works over NFS), write a temporary file next to
the target, fsync it, rename it over the target, fsync the directory. Readers never lock: a rename
is atomic, so they see the old file or the new one, never half of one.

A lock names its holder (`<host> <pid> <unique file>` in the lock file): a waiter on the same
host breaks the lock of a process that died holding it (SIGKILL) at once instead of after
STALE_AGE, under a second link lock so that two waiters never both break it (the second would
break the lock the first has just taken). Holders on other hosts (NFS) are known dead by the age
of their lock only. Host names must be unique among the hosts sharing a mail store, as Maildir's
file names already require.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import lockfile
from lockfile.linklockfile import LinkLockFile

from common import turns
from common.store.errors import MailboxReadOnly, StoreFull, no_space, read_only

LOCK_TIMEOUT = 10.0
STALE_AGE = 300.0  # a lock older than this is stale whoever holds it
BREAKER_AGE = 10.0  # the lock that guards breaking is held for microseconds
DEAD_CHECK = 0.2  # after waiting this long, a waiter looks whether the holder is alive
HOST = socket.gethostname()


class LockBusy(Exception):
    """Another process held the lock for longer than we were willing to wait."""


class LockUnwritable(LockBusy, MailboxReadOnly):
    """The lock cannot be made at all: its directory cannot be written (a read-only store)."""


class LockNoSpace(LockBusy, StoreFull):
    """The lock cannot be made: no space left for the file that names its holder."""


@contextlib.contextmanager
def locked(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the link lock `<path>.lock` for the duration of the block."""
    lock = LinkLockFile(str(path), timeout=timeout)
    # The package names its link by host, pid and the low 32 bits of the thread ident, which can
    # repeat between threads of one process (pool model): the kernel's thread id cannot.
    lock.unique_name = f"{lock.unique_name}-{threading.get_native_id()}"
    try:
        if not _acquire(lock, timeout):
            break_if_stale(lock, path)
            if not _acquire(lock, timeout):
                raise LockBusy(f"{path} is locked by another process")
    except OSError as exc:
        if read_only(exc):
            raise LockUnwritable(f"cannot lock {path}: {exc.strerror}") from None
        if no_space(exc):
            raise LockNoSpace(f"cannot lock {path}: {exc.strerror}") from None
        raise LockBusy(f"cannot lock {path}: {exc.strerror}") from None
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
    start = time.monotonic()
    deadline = start + timeout
    next_check = start + DEAD_CHECK
    delay = 0.001
    while True:
        if _try_lock(lock):
            return True
        now = time.monotonic()
        if now >= deadline:
            return False
        if now >= next_check:
            break_if_dead(lock)
            next_check = now + DEAD_CHECK
        turns.sleep(delay)
        delay = min(delay * 2, 0.02)


def _try_lock(lock: LinkLockFile) -> bool:
    """One try of LinkLockFile.acquire: link(2) the unique file to the lock file; the unique
    file names its holder before the link, so the lock is signed the moment it exists."""
    holder = f"{HOST} {os.getpid()} {os.path.basename(lock.unique_name)}\n".encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(lock.unique_name, flags, 0o644)
    try:
        os.write(fd, holder)
    finally:
        os.close(fd)
    try:
        os.link(lock.unique_name, lock.lock_file)
    except OSError:
        if os.stat(lock.unique_name).st_nlink == 2:
            return True  # link(2) over NFS may fail after it succeeded: the count says
        os.unlink(lock.unique_name)
        return False
    return True


def _holder(lock_file: str) -> tuple[int, str, int, str] | None:
    """(inode, host, pid, unique file name) of a lock, None when it has no readable holder."""
    try:
        with open(lock_file, "rb") as handle:
            inode = os.fstat(handle.fileno()).st_ino
            fields = handle.read(512).decode("utf-8", "replace").split()
    except OSError:
        return None
    if len(fields) != 3 or not fields[1].isdigit() or "/" in fields[2]:
        return None
    return inode, fields[0], int(fields[1]), fields[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def break_if_dead(lock: LinkLockFile) -> bool:
    """Break the lock when its holder is a process of this host that no longer runs, and only
    if the lock is still the one found dead."""
    holder = _holder(lock.lock_file)
    if holder is None or holder[1] != HOST or _alive(holder[2]):
        return False
    leftover = os.path.join(os.path.dirname(lock.lock_file), holder[3])
    return _break(lock, lambda: _holder(lock.lock_file) == holder, leftover)


def _break(lock: LinkLockFile, still_same: Callable[[], bool], leftover: str = "") -> bool:
    """Remove the lock (and its holder's unique file) under the breaker lock
    `<path>.lock.lock`, when `still_same()` says it is the lock the caller judged: two waiters
    that judged it at once must not both break it, the second breaking the lock the first has
    just taken (two hosts over NFS, or two processes of one)."""
    breaker = LinkLockFile(lock.lock_file)
    breaker.unique_name = f"{breaker.unique_name}-{threading.get_native_id()}"
    try:
        breaker.acquire(timeout=0)
    except lockfile.AlreadyLocked:
        _break_breaker(breaker)
        return False
    except lockfile.LockFailed:
        return False
    try:
        if not still_same():
            return False  # broken and taken again meanwhile
        for name in (lock.lock_file, leftover):
            if name:
                with contextlib.suppress(OSError):
                    os.unlink(name)
        return True
    finally:
        with contextlib.suppress(lockfile.NotLocked, lockfile.NotMyLock, OSError):
            breaker.release()


def _break_breaker(breaker: LinkLockFile) -> None:
    """The breaker lock is held for microseconds: an old one was left by a process killed."""
    with contextlib.suppress(OSError):
        if time.time() - os.stat(breaker.lock_file).st_mtime > BREAKER_AGE:
            breaker.break_lock()


def break_if_stale(lock: LinkLockFile, path: Path, max_age: float = STALE_AGE) -> bool:
    """A lock older than max_age belongs to a process that died holding it (SIGKILL, a host that
    went down): broken under the breaker lock, if it is still that lock (the same file, the same
    age) by then."""
    found = _identity(lock.lock_file)
    if found is None or time.time() - found[1] <= max_age:
        return False
    holder = _holder(lock.lock_file)
    leftover = os.path.join(os.path.dirname(lock.lock_file), holder[3]) if holder else ""
    return _break(lock, lambda: _identity(lock.lock_file) == found, leftover)


def _identity(lock_file: str) -> tuple[int, float] | None:
    """(inode, mtime) of a lock file: a lock broken and taken again is another file."""
    try:
        info = os.stat(lock_file)
    except OSError:
        return None
    return info.st_ino, info.st_mtime


def atomic_write(
    path: Path, data: bytes | Iterable[bytes], mode: int = 0o600, fsync: bool = True
) -> None:
    """Replace `path` with `data` (bytes, or pieces of them): temp file in the same directory,
    fsync, rename, fsync dir.

    The temp file's name can be guessed, and a directory of a user's mail is the user's to
    write: whatever is found under that name (a link to a file elsewhere) is removed, and the
    file is made new (O_EXCL), never written through a link."""
    # Per thread, not only per process: sessions of one pool worker may save the same cache.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_native_id()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, mode)
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
