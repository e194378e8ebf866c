"""Maildir files: message files and their names, delivery, reading, removal, CRLF sizes.

A user's mail is `<base>/<user>/` (`cur/ new/ tmp/`); folders are `.Name` subdirectories. Flags live
in the file name after `:2,` as sorted letters (common/store/flags.py). New mail is written to
`tmp/`, fsynced and renamed into `new/` or `cur/`, so a crash never leaves half a message visible.
On disk a message has LF line ends; every size reported is of the CRLF form actually sent (`,W=` in
the name when we delivered it, computed otherwise), which adds no line end the message lacks. UIDs
and folders for IMAP live in `common/store/uidlist.py` and `common/store/folders.py`, the POP3
maildrop in `common/store/maildrop.py`.

A symbolic link is never followed inside a Maildir (cur/ new/ tmp/ and every file in them): the
daemons may run as root or as one user for every mailbox, so a link planted by a user who can
write there (`cur/evil:2, -> /etc/passwd`, `cur -> /etc`) must not be served. Listing keeps only
regular files, and a message is opened with O_NOFOLLOW. (Dovecot follows links and relies on the
permissions of the user it runs as; its shared folders can be links.) The user's maildir itself
may be a link: that one is the administrator's.

This module raises typed errors and never formats protocol text.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import socket
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from common.store.atomic import fsync_dir
from common.store.errors import (
    MailboxNotFound,
    MailboxReadOnly,
    MessageGone,
    StoreError,
    StoreFull,
    no_space,
    read_only,
)
from common.store.flags import flags_suffix, letters_of
from common.store.names import InvalidName, check_username

SUBDIRS = ("cur", "new", "tmp")
_SIZE_FIELD = re.compile(r",([SW])=(\d+)")
_counter = itertools.count(1)
# Renames of one message `follow` tracks before it gives up: each is another session's change
# of its flags between our lookup and our open, so a handful means a storm, not a race.
FOLLOW_ATTEMPTS = 8
T = TypeVar("T")
_HOSTNAME = socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"


@dataclass(slots=True)
class MessageFile:
    """One message file: where it is and what its name says."""

    subdir: str
    name: str

    @property
    def key(self) -> str:
        """The stable identity: the name up to ':' (qmail's and Courier's UIDL)."""
        return self.name.split(":", 1)[0]

    @property
    def letters(self) -> str:
        return letters_of(self.name)

    @property
    def relpath(self) -> str:
        return f"{self.subdir}/{self.name}"

    def stored_size(self, kind: str) -> int | None:
        """The `,S=` (file) or `,W=` (CRLF) size from the name, when there is one."""
        return name_size(self.name, kind)


def name_size(name: str, kind: str) -> int | None:
    """The `,S=` (file) or `,W=` (CRLF) size in a message file name, when there is one."""
    if "," not in name:
        return None
    for field, value in _SIZE_FIELD.findall(name.split(":", 1)[0]):
        if field == kind:
            return int(value)
    return None


# -- names and sizes -------------------------------------------------------------------------


def user_maildir(base: Path, user: str) -> Path:
    try:
        check_username(user)
    except InvalidName as exc:
        raise StoreError(f"unsafe user name: {exc}") from None
    return base / user


def unique_name() -> str:
    """`<secs>.M<usec>P<pid>Q<n>.<host>`: unique across processes and hosts (maildir(5))."""
    now = time.time()
    secs = int(now)
    usec = int((now - secs) * 1_000_000)
    # Zero-padded microseconds: names of one second sort in delivery order (UIDs follow it).
    return f"{secs}.M{usec:06d}P{os.getpid()}Q{next(_counter)}.{_HOSTNAME}"


def to_crlf(data: bytes) -> bytes:
    """The octets sent for a message: every line end CRLF, nothing added. A message stored
    without a final line end is served without one (as Dovecot serves it): its size, BODY[] and
    RFC822.SIZE all agree with the stored message. A protocol that frames the message (POP3's
    terminating ".") adds its own line end."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def crlf_size(data: bytes) -> int:
    """len(to_crlf(data)), without building it."""
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def to_lf(data: bytes) -> bytes:
    """Storage form of a message received with CRLF line ends."""
    return data.replace(b"\r\n", b"\n")


def write_error(exc: OSError, what: str) -> StoreError:
    """The store's error for a write that failed: MailboxReadOnly when nothing can be written
    there at all (a read-only mount, no permission), StoreFull when there is no room, else
    StoreError."""
    text = f"{what}: {exc.strerror}"
    if read_only(exc):
        return MailboxReadOnly(text)
    return StoreFull(text) if no_space(exc) else StoreError(text)


# -- folders on disk -------------------------------------------------------------------------


def ensure_maildir(path: Path) -> None:
    """Make cur/ new/ tmp/ where missing. Every login asks: a stat each when they are there
    (mkdir with exist_ok fails and raises inside, three exceptions a login)."""
    for sub in SUBDIRS:
        target = f"{path}/{sub}"  # str: pathlib's joins cost more than the lstat
        if not is_real_dir(target):
            os.makedirs(target, mode=0o700, exist_ok=True)


def is_real_dir(path: str | Path) -> bool:
    """A directory and not a symbolic link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def is_maildir(path: Path) -> bool:
    """`cur/` and `new/` are directories of their own (a link to elsewhere is no Maildir)."""
    return is_real_dir(f"{path}/cur") and is_real_dir(f"{path}/new")


def open_nofollow(path: str | Path, flags: int = os.O_RDONLY) -> int:
    """os.open that refuses a symbolic link as the last component (OSError ELOOP)."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)


def list_messages(folder: Path) -> list[MessageFile]:
    """Every message in new/ and cur/, oldest first (maildir names start with the time). Only
    regular files count: a link, a directory or a FIFO planted there is not mail."""
    messages: list[MessageFile] = []
    for sub in ("new", "cur"):
        try:
            fd = open_nofollow(folder / sub, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            if sub == "cur" and not folder.is_dir():
                raise MailboxNotFound(str(folder)) from None
            continue
        except OSError as exc:
            raise StoreError(f"cannot list {folder / sub}: {exc.strerror}") from None
        try:
            with os.scandir(fd) as entries:
                # d_type says what each is: no stat(2) per message. A name with CR or LF is
                # ignored (as Dovecot does): it would split its uidlist line in two and make
                # the whole uidlist unreadable.
                messages.extend(
                    MessageFile(sub, entry.name)
                    for entry in entries
                    if entry.is_file(follow_symlinks=False)
                    and not entry.name.startswith(".")
                    and "\n" not in entry.name
                    and "\r" not in entry.name
                )
        except OSError as exc:
            raise StoreError(f"cannot list {folder / sub}: {exc.strerror}") from None
        finally:
            os.close(fd)
    messages.sort(key=sort_key)
    return messages


def list_names(folder: Path, sub: str) -> list[str]:
    """The message file names in `folder/sub` (new or cur), in directory order: what a listing
    of list_messages holds (regular files only, no dot files, no CR or LF), without building a
    MessageFile for each of 100,000 names."""
    try:
        fd = open_nofollow(f"{folder}/{sub}", os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise MailboxNotFound(str(folder)) from None
    except OSError as exc:
        raise StoreError(f"cannot list {folder / sub}: {exc.strerror}") from None
    try:
        with os.scandir(fd) as entries:
            # d_type says what each is, without a stat(2) per message.
            names = [entry.name for entry in entries if entry.is_file(follow_symlinks=False)]
    except OSError as exc:
        raise StoreError(f"cannot list {folder / sub}: {exc.strerror}") from None
    finally:
        os.close(fd)
    joined = "\0".join(names)  # one scan in C instead of one per name
    if joined.startswith(".") or "\0." in joined or "\n" in joined or "\r" in joined:
        names = [n for n in names if not n.startswith(".") and "\n" not in n and "\r" not in n]
    return names


def sort_key(message: MessageFile) -> tuple[int, str]:
    return name_order(message.name)


def name_order(name: str) -> tuple[int, str]:
    """Delivery order: maildir names start with the time of delivery."""
    head = name.split(".", 1)[0]
    return (int(head) if head.isdigit() else 0, name)


def dir_mtime(folder: Path, sub: str) -> int | None:
    """The mtime (ns) of `folder/sub` as open(2) finds it: an NFS client asks the server
    when a file is opened, where stat(2) may answer from its cache. None when it cannot be
    opened (or is a link)."""
    try:
        fd = open_nofollow(folder / sub, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        return os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)


@contextlib.contextmanager
def dir_fds(folder: Path, subs: tuple[str, ...]) -> Iterator[tuple[int, ...]]:
    """Descriptors of `folder`'s subdirectories (never through a link), for many renames
    without building paths."""
    fds: list[int] = []
    try:
        for sub in subs:
            try:
                fds.append(open_nofollow(folder / sub, os.O_RDONLY | os.O_DIRECTORY))
            except FileNotFoundError:
                raise MailboxNotFound(str(folder)) from None
        yield tuple(fds)
    finally:
        for fd in fds:
            os.close(fd)


def find_by_key(folder: Path, key: str) -> MessageFile | None:
    """A message whose flags (and so its name) another session changed since we listed it.
    new/ is listed before cur/: a file moved from one to the other meanwhile (the only way
    files move between them) is then seen in one of the two."""
    with_info = key + ":"
    for sub in ("new", "cur"):
        try:
            names = list_names(folder, sub)
        except MailboxNotFound:
            return None
        for name in names:
            if name == key or name.startswith(with_info):
                return MessageFile(sub, name)
    return None


def follow(
    folder: Path, message: MessageFile, action: Callable[[str], T], writes: bool = False
) -> T:
    """`action(path)` on the message's file, following renames by other sessions and programs
    (a flag change renames the file, a reader moves it from new/ to cur/): on ENOENT the file is
    looked up by its key and the action tried again where it is now, and `message` is updated.
    Bounded: a file renamed FOLLOW_ATTEMPTS times in a row (a flag storm) gives StoreError. A
    file found under no name twice in a row is gone (MessageGone): one listing alone may miss
    a file renamed while it runs (readdir(3)). Any other error is a StoreError (MailboxReadOnly
    when an action that `writes` cannot write at all); nothing raised here is an OSError."""
    misses = 0
    for _attempt in range(FOLLOW_ATTEMPTS):
        try:
            return action(f"{folder}/{message.subdir}/{message.name}")
        except FileNotFoundError:
            pass
        except OSError as exc:
            if writes:
                raise write_error(exc, f"cannot change {message.key}") from None
            raise StoreError(f"cannot read {message.key}: {exc.strerror}") from None
        moved = find_by_key(folder, message.key)
        if moved is None:
            misses += 1
            if misses >= 2:
                raise MessageGone(f"message {message.key} is gone")
            continue
        misses = 0
        message.subdir, message.name = moved.subdir, moved.name
    raise StoreError(f"message {message.key} kept moving, or its folder is gone")


def read_file(path: str | Path) -> bytes:
    """A whole file, never through a symbolic link (OSError ELOOP), in one read(2) when its
    size is right (not FileIO.readall's two)."""
    fd = open_nofollow(path)
    try:
        return read_to_end(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def read_to_end(fd: int, size: int, offset: int = 0) -> bytes:
    """An open file from `offset` to its end, `size` being what fstat() said: one read(2) when
    that was right, more when the file grew meanwhile or a read came back short."""
    want = max(size - offset, 0)
    data = os.pread(fd, want + 1, offset)
    if len(data) == want:
        return data
    parts = [data]
    offset += len(data)
    while more := os.pread(fd, 1 << 16, offset):
        parts.append(more)
        offset += len(more)
    return b"".join(parts)


def read_message(folder: Path, message: MessageFile) -> bytes:
    """The stored bytes; follows renames by other sessions (see `follow`)."""
    return follow(folder, message, read_file)


def read_header(folder: Path, message: MessageFile, chunk: int = 8192) -> bytes:
    """The message up to and including its blank line (the whole message when it has none),
    reading no more of a large message than that; follows renames (see `follow`)."""

    def head(path: str) -> bytes:
        fd = open_nofollow(path)
        try:
            data = os.read(fd, chunk)
            while b"\n\n" not in data and b"\r\n\r\n" not in data:
                more = os.read(fd, chunk)
                if not more:
                    return data
                data += more
            return data
        finally:
            os.close(fd)

    return header_of(follow(folder, message, head))


def header_of(data: bytes) -> bytes:
    """`data` up to and including the first blank line (all of it without one)."""
    ends = [i + n for i, n in ((data.find(b"\n\n"), 2), (data.find(b"\r\n\r\n"), 4)) if i >= 0]
    return data[: min(ends)] if ends else data


def modification_time(folder: Path, message: MessageFile) -> float:
    """The file's mtime (IMAP's INTERNALDATE); follows renames (see `follow`)."""
    return follow(folder, message, lambda path: os.lstat(path).st_mtime)


def message_size(folder: Path, message: MessageFile) -> int:
    """CRLF size: from `,W=` in the name when present, else counted from the file."""
    size = message.stored_size("W")
    if size is not None:
        return size
    return crlf_size(read_message(folder, message))


def deliver(
    folder: Path, data: bytes, flags: str = "", subdir: str = "new", mtime: float | None = None
) -> MessageFile:
    """Write a message into the folder atomically: tmp/, fsync, rename, fsync the directory.
    Both directories are opened without following a link, and the file is made and renamed
    relative to them, so a link planted as tmp/ or cur/ cannot send the message elsewhere."""
    base = unique_name()
    name = f"{base},S={len(data)},W={crlf_size(data)}"
    if subdir == "cur" or flags:
        subdir, name = "cur", name + flags_suffix(flags)
    try:
        tmp_dir = open_nofollow(folder / "tmp", os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise MailboxNotFound(str(folder)) from None
    except OSError as exc:
        raise write_error(exc, f"cannot deliver into {folder}") from None
    try:
        target_dir = open_nofollow(folder / subdir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            _write_and_rename(tmp_dir, base, target_dir, name, data, mtime)
            with contextlib.suppress(OSError):
                os.fsync(target_dir)
        finally:
            os.close(target_dir)
    except FileNotFoundError:
        raise MailboxNotFound(str(folder)) from None
    except OSError as exc:
        raise write_error(exc, f"cannot deliver into {folder}") from None
    finally:
        os.close(tmp_dir)
    return MessageFile(subdir, name)


def _write_temp(tmp_dir: int, base: str, data: bytes, mtime: float | None) -> None:
    """Make tmp/<base> (never through a link), write, fsync, stamp its mtime."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(base, flags, 0o600, dir_fd=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            if mtime is not None:
                os.utime(handle.fileno(), (mtime, mtime))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(base, dir_fd=tmp_dir)
        raise


def _write_and_rename(
    tmp_dir: int, base: str, target_dir: int, name: str, data: bytes, mtime: float | None
) -> None:
    _write_temp(tmp_dir, base, data, mtime)
    try:
        os.rename(base, name, src_dir_fd=tmp_dir, dst_dir_fd=target_dir)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(base, dir_fd=tmp_dir)
        raise


def deliver_all(folder: Path, messages: list[tuple[bytes, str, float | None]]) -> list[MessageFile]:
    """Write several messages (data, flags, mtime) into cur/ all or none (IMAP MULTIAPPEND,
    RFC 3502): each is written and fsynced in tmp/ first, and only when all are there are
    they renamed into place. On any failure the files written or placed so far are removed
    and the error raised; a crash between the renames can leave some placed, each whole. As
    `deliver`, through directories opened without following links."""
    try:
        tmp_dir = open_nofollow(folder / "tmp", os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise MailboxNotFound(str(folder)) from None
    except OSError as exc:
        raise write_error(exc, f"cannot deliver into {folder}") from None
    staged: list[tuple[str, MessageFile]] = []
    placed: list[MessageFile] = []
    try:
        cur_dir = open_nofollow(folder / "cur", os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                for data, flags, mtime in messages:
                    base = unique_name()
                    name = f"{base},S={len(data)},W={crlf_size(data)}" + flags_suffix(flags)
                    _write_temp(tmp_dir, base, data, mtime)
                    staged.append((base, MessageFile("cur", name)))
                for base, message in staged:
                    os.rename(base, message.name, src_dir_fd=tmp_dir, dst_dir_fd=cur_dir)
                    placed.append(message)
            except BaseException:
                for base, message in staged:
                    with contextlib.suppress(OSError):
                        if message in placed:
                            os.unlink(message.name, dir_fd=cur_dir)
                        else:
                            os.unlink(base, dir_fd=tmp_dir)
                raise
            with contextlib.suppress(OSError):
                os.fsync(cur_dir)
        finally:
            os.close(cur_dir)
    except FileNotFoundError:
        raise MailboxNotFound(str(folder)) from None
    except OSError as exc:
        raise write_error(exc, f"cannot deliver into {folder}") from None
    finally:
        os.close(tmp_dir)
    return placed


def remove_messages(folder: Path, messages: list[MessageFile]) -> list[MessageFile]:
    """Unlink each message, wherever renames took it; return those that could not be removed
    (still on disk). One that is gone already (removed by another session) is not a failure."""
    failed = []
    for message in messages:
        try:
            follow(folder, message, os.unlink)
        except MessageGone:
            pass
        except StoreError:
            failed.append(message)
    for sub in ("cur", "new"):
        fsync_dir(folder / sub)
    return failed
