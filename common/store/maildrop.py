"""The POP3 maildrop (RFC 1939): a user's INBOX locked for one session, listed once at login.

`Maildrop.open` creates the maildir when it is missing, takes the exclusive lock (an open file
description lock on `maildaemons-pop3.lock`, common/store/filelock.py: it excludes other sessions
of the same pool worker too, and goes when the process dies, so a killed session frees its maildrop)
and lists the messages through the folder's table (common/store/mailbox.py, the one IMAP keeps:
the messages in UID order, without claiming \\Recent) with their CRLF sizes, from `,W=` in the
name or the folder's cache, so a login does not read every message. DELE only marks; `commit()`
expunges what is marked, at QUIT (UPDATE) and never before, as IMAP's EXPUNGE does (IMAP
sessions learn of it from the change log). The LOGIN-DELAY stamp (RFC 2449) is the mtime of a
file in the maildir. A maildrop that cannot be written (a read-only mount, no write permission)
is listed from the folder's table kept in memory (Mailbox.read_only), without the lock, which
it cannot hold and does not need: nothing can be deleted from it (`read_only`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import common.store.memory as memory
from common.store.errors import MailboxNotFound, MailboxReadOnly, StoreBusy, StoreError
from common.store.filelock import try_lock_exclusive
from common.store.mailbox import Entry, Mailbox
from common.store.maildir import MessageFile, ensure_maildir, user_maildir, write_error
from common.store.names import INBOX

POP3_LOCK = "maildaemons-pop3.lock"
LOGIN_STAMP = "maildaemons-pop3-lastlogin"


class MaildropLock:
    """The exclusive POP3 lock on one maildrop: an OFD lock, released when the process dies."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / POP3_LOCK
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            # Never through a link: a lock file planted as one would lock (or create) its target.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            raise MailboxNotFound(str(self.path.parent)) from None
        except OSError as exc:
            raise write_error(exc, f"cannot open {self.path}") from None
        try:
            try_lock_exclusive(fd)
        except (BlockingIOError, PermissionError):
            os.close(fd)
            raise StoreBusy("maildrop in use") from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {self.path}: {exc.strerror}") from None
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass(slots=True)
class DropMessage:
    """One message of the listing: its entry in the folder, its CRLF size, and whether DELE
    marked it."""

    entry: Entry
    size: int
    deleted: bool = False

    @property
    def file(self) -> MessageFile:
        return self.entry.file

    @property
    def key(self) -> str:
        """The stable identity (the name up to ':'), POP3's unique-id."""
        return self.entry.key


class Maildrop:
    """A user's maildrop, locked for this session from `open()` until `release()`."""

    def __init__(
        self, path: Path, lock: MaildropLock, messages: list[DropMessage], mailbox: Mailbox
    ) -> None:
        self.path = path
        self.lock = lock
        self.messages = messages
        self.mailbox = mailbox
        # A maildrop whose files cannot be written (a read-only mount, no write permission):
        # served without its lock (no session can change it) and without deletions.
        self.read_only = mailbox.read_only or lock.fd is None

    @classmethod
    def open(cls, base: Path, user: str) -> Maildrop:
        """Lock and list `<base>/<user>`, creating it when missing. StoreBusy when another
        session holds it, StoreError when it cannot be made, locked or listed. A maildrop that
        cannot be written is listed without its lock, read-only."""
        path = user_maildir(base, user)
        try:
            ensure_maildir(path)
        except OSError as exc:
            raise StoreError(str(exc)) from None
        lock = MaildropLock(path)
        with contextlib.suppress(MailboxReadOnly):  # served read-only, see __init__
            lock.acquire()
        try:
            mailbox = Mailbox(path, INBOX)
            entries = mailbox.sync().entries
            # Sizes of files without ,W= come from the folder's disposable cache, so a login
            # does not read every message (Postfix and most MTAs name files without sizes).
            sizes = mailbox.sizes(entries)
            with memory.paused_gc():
                if None in sizes:  # expunged by another session since the listing: not listed
                    pairs = zip(entries, sizes, strict=True)
                    messages = [DropMessage(e, size) for e, size in pairs if size is not None]
                else:
                    messages = list(map(DropMessage, entries, cast("list[int]", sizes)))
            if mailbox.cache.dirty:  # sizes read from files: for the next login
                mailbox.save_caches()
        except BaseException:
            lock.release()
            raise
        return cls(path, lock, messages, mailbox)

    @staticmethod
    def last_login(base: Path, user: str) -> float | None:
        """When `user` last logged in (stamp_login), or None when that is not known."""
        with contextlib.suppress(OSError, StoreError):
            return os.lstat(user_maildir(base, user) / LOGIN_STAMP).st_mtime
        return None

    def stamp_login(self) -> None:
        """Record a login for LOGIN-DELAY; only a session that holds the maildrop does, so a
        refused login ([IN-USE]) is not counted."""
        stamp = self.path / LOGIN_STAMP
        with contextlib.suppress(OSError):
            fd = os.open(stamp, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.utime(fd)
            finally:
                os.close(fd)

    def read(self, message: DropMessage) -> bytes:
        """The stored bytes (LF line ends), wherever flag changes renamed the file; MessageGone
        when another session expunged it since the listing, StoreError when it cannot be
        read."""
        return self.mailbox.read(message.entry)

    def commit(self) -> list[DropMessage]:
        """UPDATE (RFC 1939 section 6): remove every message marked deleted. Returns those that
        could not be removed (empty: all went); they stay on disk, marks and all."""
        doomed = [m for m in self.messages if m.deleted]
        if not doomed:
            return []
        removed = {id(e) for e in self.mailbox.expunge([m.entry for m in doomed])}
        return [m for m in doomed if id(m.entry) not in removed]

    def release(self) -> None:
        """Let other sessions in; the listing stays readable. Safe to call more than once."""
        self.lock.release()
