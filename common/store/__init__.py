"""The Maildir++ store: the only code that touches mail files (DESIGN.md "Storage").

This module is the front door: protocol code (pop3d, imapd, msmpd) imports what it uses from here
and names users, folders and messages, never paths. The store returns values and raises the typed
errors of `errors.py`; it never formats protocol text.

    FolderTree.for_user(base, user)   a user's folders: names, create, delete, rename,
                                      subscriptions, special use, quota
    FolderTree.open(name)             a folder by name: (Mailbox, Snapshot of its first sync)
    Mailbox                           one folder with UIDs, flags, MODSEQs: poll, sync, resync,
                                      drain_changes (what changed since), read, read_header,
                                      size, sizes, summary and cached/remember (the cache),
                                      set_letters + commit_flags, append, copy_in, expunge
    Maildrop.open(base, user)         the POP3 maildrop: locked listing, login stamp, commit
    (a folder whose files cannot be written is served read-only: Mailbox.read_only,
    Maildrop.read_only, MailboxReadOnly for what would write)
    memory.release()                  freed memory back to the system after work on a big folder
    create_user_maildir(base, user)   a whole user's maildir (MSMP ADD)
    retire_user_maildir(base, user)   ... moved aside, never destroyed (MSMP DELE)

Inside: atomic.py (the link lock and atomic replace, also used for the users and state files),
names.py, flags.py (the letters after `:2,`), maildir.py (files, delivery, sizes), uidlist.py
(UIDs: base file and change log), keywords.py, msgcache.py (sizes, envelopes, searched headers,
sort keys, arrival times, by UID, a column per field), mailbox.py, folders.py, maildrop.py,
accounts.py, memory.py.
"""

from __future__ import annotations

from common.store import memory
from common.store.accounts import create_user_maildir, retire_user_maildir
from common.store.atomic import LockBusy
from common.store.errors import (
    MailboxExists,
    MailboxNotFound,
    MailboxReadOnly,
    MailboxRefused,
    MessageGone,
    StoreBusy,
    StoreError,
    StoreFull,
    TooManyKeywords,
    no_space,
)
from common.store.flags import (
    DRAFT,
    FLAGGED,
    KEYWORD_LETTERS,
    PASSED,
    REPLIED,
    SEEN,
    SYSTEM_LETTERS,
    TRASHED,
    keyword_letters,
)
from common.store.folders import DEFAULT_FOLDERS, SEPARATOR, FolderTree
from common.store.keywords import Keywords
from common.store.mailbox import MTIME_TRUST_AGE, Entry, Mailbox, Snapshot
from common.store.maildir import crlf_size, to_crlf, to_lf
from common.store.maildrop import DropMessage, Maildrop
from common.store.names import (
    INBOX,
    InvalidName,
    UndecodableName,
    canonical_name,
    check_folder,
    check_username,
    is_inbox,
    is_valid_username,
)

__all__ = [
    "DEFAULT_FOLDERS",
    "DRAFT",
    "FLAGGED",
    "INBOX",
    "KEYWORD_LETTERS",
    "MTIME_TRUST_AGE",
    "PASSED",
    "REPLIED",
    "SEEN",
    "SEPARATOR",
    "SYSTEM_LETTERS",
    "TRASHED",
    "DropMessage",
    "Entry",
    "FolderTree",
    "InvalidName",
    "Keywords",
    "LockBusy",
    "Mailbox",
    "MailboxExists",
    "MailboxNotFound",
    "MailboxReadOnly",
    "MailboxRefused",
    "Maildrop",
    "MessageGone",
    "Snapshot",
    "StoreBusy",
    "StoreError",
    "StoreFull",
    "TooManyKeywords",
    "UndecodableName",
    "canonical_name",
    "check_folder",
    "check_username",
    "create_user_maildir",
    "crlf_size",
    "is_inbox",
    "is_valid_username",
    "keyword_letters",
    "memory",
    "no_space",
    "retire_user_maildir",
    "to_crlf",
    "to_lf",
]
