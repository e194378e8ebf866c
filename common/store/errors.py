"""The store's typed errors. Protocol code maps each one to its own reply; none carries protocol
text, and none but MailboxRefused has text fit for a client (the others may name paths)."""

from __future__ import annotations

import errno

# What writing to a store that cannot be written gives: a read-only mount, or files and
# directories without write permission for the user the daemons run as.
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
# What writing to a full file system (or over a disk quota) gives.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class StoreError(Exception):
    """The store cannot do what was asked; the mail is as it was."""


class MailboxNotFound(StoreError):
    pass


class MailboxExists(StoreError):
    pass


class MessageGone(StoreError):
    """The message's file is no longer in the folder under any name (expunged by another
    session or program since it was listed); the rest of the folder is as it was."""


class MailboxReadOnly(StoreError):
    """The folder's files cannot be changed (a read-only mount, no write permission): it can
    be read, not written."""


def read_only(exc: OSError) -> bool:
    """Whether an error of a write says the store cannot be written at all."""
    return exc.errno in READ_ONLY_ERRNOS


class StoreFull(StoreError):
    """No space left where the mail is (a full file system, a disk quota): nothing was
    changed, and the same request may succeed once there is room."""


def no_space(exc: BaseException) -> bool:
    """Whether an error says the file system (or the user's disk quota) is full."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS


class StoreBusy(StoreError):
    """Another session holds the lock."""


class MailboxRefused(StoreError):
    """The request is not allowed (bad name, INBOX, inferiors); the text is safe to show."""


class TooManyKeywords(StoreError):
    """Maildir file names hold at most 26 keywords per folder."""
