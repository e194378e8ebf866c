"""Exclusive whole-file locks that exclude other sessions in every process model.

Classic fcntl record locks (`lockf`) belong to the process: two sessions served by one pool worker
would both get the lock. Open file description locks (Linux `F_OFD_SETLK`) belong to the open file,
so each session's own `open()` excludes every other one, in its process or another; the kernel
drops them when the last descriptor of that open file is closed, or the process dies, so a killed
session still frees its lock. They conflict with classic fcntl locks too, so a program that takes
`lockf` on the same file (vpopmail on open-smtp.lock) is still excluded. Where the platform has no
OFD locks, `lockf` is used (the fork model, one session a process, needs no more).
"""

from __future__ import annotations

import fcntl
import os
import struct

F_OFD_SETLK: int | None = getattr(fcntl, "F_OFD_SETLK", None)
# struct flock: l_type, l_whence (short), l_start, l_len (off_t), l_pid (pid_t), padding.
_FLOCK = "@hhqqi4x"


def try_lock_exclusive(fd: int) -> None:
    """Lock all of `fd`'s file for writing without waiting; BlockingIOError or PermissionError
    (EAGAIN/EACCES) when another holder has it, OSError for anything else."""
    if F_OFD_SETLK is None:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    request = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    fcntl.fcntl(fd, F_OFD_SETLK, request)
