"""The relay's files on disk: reading one that may not exist yet, and replacing one atomically
with the mode and owner the other programs on those files need.

Both writers (the daemons' login hook and clearopensmtp) replace open-smtp and tcp.smtp.cdb by
rename, so tcpserver never reads half a cdb and a vpopmail on the same files stays safe.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from common.relay.errors import RenameError, TempFileError, UnreadableFileError
from common.store.atomic import fsync_dir

# tcpserver opens the cdb after it drops to its own user, and the daemons run with umask 077:
# new files get this mode explicitly (an existing file keeps its mode and owner).
FILE_MODE = 0o644


def read_optional(path: Path) -> bytes:
    """The file's bytes; a file that does not exist yet is empty."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {path}: {exc.strerror}") from None


def replace_file(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through `write` to a temporary file beside `path`, fsync it, rename it over `path`.

    fsync before rename: after a crash a reader finds the old file or the new one, never half.
    """
    mode, owner = _mode_and_owner(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.tmp.", dir=path.parent)
    except OSError as exc:
        raise TempFileError(
            f"cannot create a temporary file in {path.parent}: {exc.strerror}"
        ) from None
    try:
        _write_temp(fd, tmp, mode, owner, write)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise RenameError(f"cannot rename {tmp} to {path}: {exc.strerror}") from None
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_temp(
    fd: int, tmp: str, mode: int, owner: tuple[int, int] | None, write: Callable[[BinaryIO], object]
) -> None:
    try:
        with os.fdopen(fd, "w+b") as fp:
            write(fp)
            fp.flush()
            os.fchmod(fp.fileno(), mode)
            if owner is not None:
                # Root (cron) rewriting a file of the daemons' user must leave it theirs.
                os.fchown(fp.fileno(), *owner)
            os.fsync(fp.fileno())
    except OSError as exc:
        raise TempFileError(f"cannot write {tmp}: {exc.strerror}") from None


def _mode_and_owner(path: Path) -> tuple[int, tuple[int, int] | None]:
    """Mode and owner for a new version of `path`: the old file's, else FILE_MODE and
    the directory's owner (see new_file_owner); owner None means leave it to us."""
    try:
        st = path.stat()
    except OSError:
        return FILE_MODE, new_file_owner(path)
    return st.st_mode & 0o7777, _foreign((st.st_uid, st.st_gid))


def new_file_owner(path: Path) -> tuple[int, int] | None:
    """The owner a new `path` must get, or None when it can stay ours.

    Root (cron) creating a relay file must not lock the daemons' user out of it: the daemons
    write in that directory, so a new file goes to the directory's owner.
    """
    try:
        st = path.parent.stat()
    except OSError:
        return None
    return _foreign((st.st_uid, st.st_gid))


def _foreign(owner: tuple[int, int]) -> tuple[int, int] | None:
    """`owner` when we must chown to it: only root can, and our own files need nothing."""
    if os.geteuid() != 0 or owner == (os.geteuid(), os.getegid()):
        return None
    return owner
