"""A user's Maildir++ folder tree: list, create, delete, rename, subscriptions, special use.

INBOX is the Maildir itself; folder `A.B` is the directory `.A.B` (`.` is the hierarchy separator).
Names on disk are modified UTF-7, as Courier and Dovecot store them, so either server can take over
the other's tree. Subscriptions are the `subscriptions` file (one name a line), as both keep it.
Callers name folders, never paths: `FolderTree.open(name)` gives the folder as a synced Mailbox.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import common.store.maildir as maildir
from common.store.atomic import atomic_write, locked
from common.store.errors import (
    MailboxExists,
    MailboxNotFound,
    MailboxRefused,
    StoreError,
    read_only,
)
from common.store.keywords import KEYWORDS_FILE
from common.store.mailbox import Mailbox, Snapshot
from common.store.names import INBOX, InvalidName, canonical_name, check_folder, is_inbox
from common.store.objectid import create_mailbox_id, mailbox_id
from common.utf7 import decode_mutf7, encode_mutf7

SEPARATOR = "."
MAX_ENTRY = 255  # NAME_MAX: a folder's directory name, dot and modified UTF-7 included
SUBSCRIPTIONS = "subscriptions"
SPECIAL_USE_FILE = "maildaemons-special-use"
SPECIAL_USE = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}
DEFAULT_FOLDERS = ("Drafts", "Sent", "Trash", "Junk", "Archive")
# Written on a user's first login: the default folders were made then if the account was new, and
# are never made again (a default folder the user deletes stays deleted).
DEFAULTS_MARKER = "maildaemons-defaults"


class FolderTree:
    """The folders of one user's Maildir."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def for_user(cls, base: Path, user: str) -> FolderTree:
        """The tree of `<base>/<user>`; StoreError for a user name that is unsafe as a path."""
        return cls(maildir.user_maildir(base, user))

    # -- names and paths -----------------------------------------------------------------------

    def path(self, name: str) -> Path:
        """Directory of a folder by its IMAP name (already decoded from modified UTF-7).
        MailboxRefused for a name that is no folder name, one too long for the file system once
        encoded, and a folder that is a symbolic link (planted: never followed, see maildir.py)."""
        if is_inbox(name):
            return self.root
        try:
            check_folder(name)
        except InvalidName as exc:
            raise MailboxRefused(f"Invalid mailbox name: {exc}") from None
        if name.upper().startswith(INBOX + SEPARATOR):
            raise MailboxRefused("INBOX has no inferiors here")
        entry = "." + encode_mutf7(name).decode("ascii")
        if len(entry) > MAX_ENTRY:
            raise MailboxRefused("Invalid mailbox name: too long")
        path = self.root / entry
        if os.path.islink(path):
            raise MailboxRefused("Invalid mailbox name: not a folder")
        return path

    def exists(self, name: str) -> bool:
        return maildir.is_maildir(self.path(name))

    def open(self, name: str, claim_recent: bool = False) -> tuple[Mailbox, Snapshot]:
        """The folder `name` (INBOX in any case) and the snapshot of its first sync; with
        `claim_recent` its new messages become \\Recent for this caller alone (SELECT).
        MailboxNotFound when there is no such folder, MailboxRefused for a bad name."""
        path = self.path(name)
        if not maildir.is_maildir(path):
            raise MailboxNotFound(name)
        mailbox = Mailbox(path, canonical_name(name))
        return mailbox, mailbox.resync(claim_recent)

    def mailbox_id(self, name: str) -> str:
        """The MAILBOXID of folder `name` (common/store/objectid.py)."""
        path = self.path(name)
        if not maildir.is_maildir(path):
            raise MailboxNotFound(name)
        try:
            return mailbox_id(path)
        except OSError as exc:
            raise StoreError(f"cannot give {name} an id: {exc}") from None

    def names(self) -> list[str]:
        """Every selectable folder, INBOX first."""
        result = [INBOX]
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return result
        for entry in sorted(entries):
            if (
                entry.startswith(".")
                and entry not in (".", "..")
                and len(entry) > 1
                and maildir.is_real_dir(self.root / entry)  # a link is no folder of ours
                and maildir.is_maildir(self.root / entry)
            ):
                with contextlib.suppress(ValueError):
                    result.append(decode_mutf7(entry[1:].encode("utf-8", "surrogateescape")))
        return result[:1] + sorted(result[1:])

    SPECIAL_USE_ATTRIBUTES = frozenset(
        {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
    )

    def special_use(self, name: str) -> str | None:
        """RFC 6154 attribute: set by CREATE (USE ...) or, for the usual names, by default."""
        return self._special_use_map().get(name) or SPECIAL_USE.get(name)

    def set_special_use(self, name: str, attribute: str | None) -> None:
        """Give `name` an attribute, or with None forget it (DELETE)."""
        self._change_special_use({name: attribute})

    def _change_special_use(self, changes: dict[str, str | None]) -> None:
        path = self.root / SPECIAL_USE_FILE
        with locked(path):
            current = self._special_use_map()
            if not changes.keys() & current.keys() and not any(changes.values()):
                return
            for folder, attribute in changes.items():
                if attribute is None:
                    current.pop(folder, None)
                else:
                    current[folder] = attribute
            text = "".join(f"{attr} {folder}\n" for folder, attr in current.items())
            atomic_write(path, text.encode("utf-8"))

    def _move_special_use(self, renames: dict[str, str]) -> None:
        """A folder's CREATE-SPECIAL-USE attribute follows it through RENAME."""
        current = self._special_use_map()
        moved = {old: new for old, new in renames.items() if old in current}
        if moved:
            changes: dict[str, str | None] = {old: None for old in moved}
            changes.update({new: current[old] for old, new in moved.items()})
            self._change_special_use(changes)

    def _special_use_map(self) -> dict[str, str]:
        try:
            text = self._read(SPECIAL_USE_FILE)
        except OSError:
            return {}
        result = {}
        for line in text.splitlines():
            attr, _, folder = line.partition(" ")
            if folder:
                result[folder] = attr
        return result

    def quota(self) -> dict[str, tuple[int, int]]:
        """Maildir++ `maildirsize`: {'S': (bytes used, limit), 'C': (messages used, limit)}."""
        try:
            lines = self._read("maildirsize").splitlines()
        except OSError:
            return {}
        if not lines:
            return {}
        limits = {}
        for item in lines[0].split(","):
            if item[:-1].isdigit() and item[-1:] in ("S", "C"):
                limits[item[-1]] = int(item[:-1])
        used_bytes = used_count = 0
        for line in lines[1:]:
            fields = line.split()
            if len(fields) == 2 and all(f.lstrip("-").isdigit() for f in fields):
                used_bytes += int(fields[0])
                used_count += int(fields[1])
        used = {"S": used_bytes, "C": used_count}
        return {kind: (max(0, used[kind]), limit) for kind, limit in limits.items()}

    def has_children(self, name: str, names: list[str] | None = None) -> bool:
        prefix = name + SEPARATOR
        return any(n.startswith(prefix) for n in (names or self.names()))

    # -- changes -------------------------------------------------------------------------------

    def ensure_inbox(self, defaults: tuple[str, ...] = ()) -> None:
        """The user's Maildir, created if missing; on the first login of a new account also the
        `defaults` folders, subscribed. An MTA usually makes INBOX before the user ever logs in,
        so a new account is one without folders or subscriptions yet, whoever made its INBOX; an
        account that has them (moved from another server) keeps just its own."""
        maildir.ensure_maildir(self.root)
        marker = self.root / DEFAULTS_MARKER
        if not defaults or marker.exists():
            return
        if self.names() == [INBOX] and not (self.root / SUBSCRIPTIONS).exists():
            for name in defaults:
                with contextlib.suppress(StoreError):
                    self.create(name)
                    self.subscribe(name, True)
        try:
            atomic_write(marker, b"", fsync=False)
        except OSError as exc:
            if not read_only(exc):
                raise
            # A read-only store: served as it is, without default folders (none can be made).

    def create(self, name: str) -> None:
        """A new folder, and any of its superiors that is missing (`a.b` creates `a` too, as
        RFC 3501 6.3.3 asks): each level of the hierarchy is a folder of its own, which RENAME
        and DELETE can then work on."""
        path = self.path(name)
        if path == self.root or maildir.is_maildir(path):
            raise MailboxExists(name)
        self._create_superiors(name)
        self._make(name, path)

    def _create_superiors(self, name: str) -> None:
        for superior in superiors(name):
            path = self.path(superior)
            if not maildir.is_maildir(path):
                self._make(superior, path)

    @staticmethod
    def _make(name: str, path: Path) -> None:
        try:
            maildir.ensure_maildir(path)
            (path / "maildirfolder").touch()
            create_mailbox_id(path)
        except OSError as exc:
            raise maildir.write_error(exc, f"cannot create {name}") from None

    def delete(self, name: str) -> None:
        """Remove a folder and its messages; one with inferiors is refused (Maildir++ has no
        message-less parent to leave behind). Its subscription stays: RFC 3501 6.3.6 forbids
        removing a name from the subscriptions because the mailbox is gone (as Dovecot)."""
        path = self.path(name)
        if path == self.root:
            raise MailboxRefused("INBOX cannot be deleted")
        if not maildir.is_maildir(path):
            raise MailboxNotFound(name)
        if self.has_children(name):
            raise MailboxRefused("Mailbox has inferior hierarchical names")
        # Rename first: the folder disappears atomically, then the files go.
        doomed = self.root / f".#deleted.{os.getpid()}.{time.time_ns()}"
        try:
            os.rename(path, doomed)
        except OSError as exc:
            raise maildir.write_error(exc, f"cannot delete {name}") from None
        shutil.rmtree(doomed, ignore_errors=True)
        self.set_special_use(name, None)

    def rename(self, old: str, new: str) -> None:
        """RFC 3501 6.3.5: inferiors move too, missing superiors of the new name are created;
        renaming INBOX moves its messages out. A level with inferiors but no folder of its own
        (a tree another server left) can be renamed: its inferiors move."""
        source, target = self.path(old), self.path(new)
        if target == self.root or maildir.is_maildir(target):
            raise MailboxExists(new)
        if source == self.root:
            self._rename_inbox(new)
            return
        children = [n for n in self.names() if n.startswith(old + SEPARATOR)]
        if not maildir.is_maildir(source) and not children:
            raise MailboxNotFound(old)
        if new == old or new.startswith(old + SEPARATOR):
            raise MailboxRefused("Cannot rename a mailbox into itself")
        # An inferior's new name may exist already (`B.x` without `B`): refuse before moving
        # anything, or the rename would fail half-way with the parent moved and that child not.
        for child in children:
            if maildir.is_maildir(self.path(new + child[len(old) :])):
                raise MailboxExists(new + child[len(old) :])
        self._create_superiors(new)
        try:
            if maildir.is_maildir(source):
                os.rename(source, target)
            else:
                self._make(new, target)
            for child in children:
                os.rename(self.path(child), self.path(new + child[len(old) :]))
        except OSError as exc:
            raise maildir.write_error(exc, f"cannot rename {old}") from None
        self._move_special_use({old: new} | {c: new + c[len(old) :] for c in children})

    def _rename_inbox(self, new: str) -> None:
        self.create(new)
        target = self.path(new)
        # Keyword letters in the moved file names index INBOX's dovecot-keywords: the new
        # folder, empty so far, gets a copy of that file.
        with contextlib.suppress(FileNotFoundError):
            keywords = maildir.read_file(self.root / KEYWORDS_FILE)
            atomic_write(target / KEYWORDS_FILE, keywords)
        for message in maildir.list_messages(self.root):
            with contextlib.suppress(FileNotFoundError):
                os.rename(self.root / message.relpath, target / message.relpath)

    # -- subscriptions ---------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        try:
            text = self._read(SUBSCRIPTIONS)
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.strip()]

    def _read(self, name: str) -> str:
        """A file of the tree's root as text, never through a symbolic link (OSError)."""
        return maildir.read_file(self.root / name).decode("utf-8", "replace")

    def subscribe(self, name: str, on: bool) -> None:
        name = canonical_name(name)
        path = self.root / SUBSCRIPTIONS
        with locked(path):
            current = self.subscriptions()
            if on and name not in current:
                current.append(name)
            elif not on and name in current:
                current.remove(name)
            else:
                return
            atomic_write(path, "".join(f"{n}\n" for n in current).encode("utf-8"))


def superiors(name: str) -> list[str]:
    """The names above `name` in the hierarchy, outermost first: `a.b.c` -> `a`, `a.b`."""
    levels = name.split(SEPARATOR)
    return [SEPARATOR.join(levels[:i]) for i in range(1, len(levels))]
