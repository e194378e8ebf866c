"""Mail accounts as MSMP changes them: list, add (user and maildir), delete (maildir moved aside).

The users file is changed only through common/users.py (lock, atomic rename), so every daemon sees
the change at its next login. A deleted user's maildir is never destroyed: the store moves it
aside (common/store/accounts.py). Typed errors only; msmpd/commands.py turns them into replies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common import users
from common.store import LockBusy, StoreError, create_user_maildir, retire_user_maildir


class AccountError(Exception):
    """The users file or a maildir could not be read or changed; nothing was half done."""


class MaildirError(AccountError):
    """A new user's maildir could not be created; the user was not added."""


class UserLimitError(AccountError):
    """A new user would exceed `max_users`."""


class NoSuchUserError(AccountError):
    pass


class MoveAsideError(AccountError):
    """The user is deleted but the maildir stayed where it was."""


@dataclass(frozen=True)
class Accounts:
    users_file: Path
    mail_base: Path
    max_users: int

    def names(self) -> list[str]:
        """Every user in the users file, sorted."""
        try:
            lines = users.read_lines(self.users_file)
        except users.UserFileError as exc:
            raise AccountError(str(exc)) from None
        return sorted({entry[0] for entry in map(users.parse_line, lines) if entry})

    def exists(self, name: str) -> bool:
        return name in self.names()

    def add(self, name: str, password: str) -> bool:
        """Create the user and its maildir, or change the password; True when the user is new.

        The early check spares a maildir for a user who cannot be added; the exact check is the
        one under the users file's lock.
        """
        new = not self.exists(name)
        if new and len(self.names()) >= self.max_users:
            raise UserLimitError(f"{self.max_users} users")
        if new:
            # The maildir first: a login right after +OK must find it.
            try:
                create_user_maildir(self.mail_base, name)
            except StoreError as exc:
                raise MaildirError(f"cannot create the maildir of {name}: {exc}") from None
        try:
            return users.add_or_update(self.users_file, name, password, limit=self.max_users)
        except users.UserLimitReached:
            raise UserLimitError(f"{self.max_users} users") from None
        except (users.UserFileError, LockBusy) as exc:
            raise AccountError(str(exc)) from None

    def delete(self, name: str) -> Path | None:
        """Remove the user, then move its maildir aside; returns where it went (None: no maildir).

        The users file goes first: if the move fails, the mail is still where it was and adding
        the user again gives it back.
        """
        try:
            removed = users.delete(self.users_file, name)
        except (users.UserFileError, LockBusy) as exc:
            raise AccountError(str(exc)) from None
        if not removed:
            raise NoSuchUserError(name)
        try:
            return retire_user_maildir(self.mail_base, name)
        except StoreError as exc:
            raise MoveAsideError(str(exc)) from None
