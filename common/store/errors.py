"""The store's typed errors. Protocol code maps each one to its own reply; none carries protocol
text, and none but MailboxRefused has text fit for a client (the others may name paths)."""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot do what was asked; the mail is as it was."""


class MailboxNotFound(StoreError):
    pass


class MailboxExists(StoreError):
    pass


class MessageGone(StoreError):
    """The message's file is no longer in the folder under any name (expunged by another
    session or program since it was listed); the rest of the folder is as it was."""


class StoreBusy(StoreError):
    """Another session holds the lock."""


class MailboxRefused(StoreError):
    """The request is not allowed (bad name, INBOX, inferiors); the text is safe to show."""


class TooManyKeywords(StoreError):
    """Maildir file names hold at most 26 keywords per folder."""
