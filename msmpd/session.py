"""One MSMP session in a child: AUTHORIZATION (USER, PASS) -> ADMIN, and the command loop.

Seed 003, appendix 9.1 section 3: the greeting, then USER and PASS against the admins file (and
`-a NAME:PASS`). An unknown admin and a wrong password get the same reply after the same delay.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path

from common.lineio import LineTooLong
from common.session import Command, Goodbyes, LineSession, ReplyError
from msmpd import replies
from msmpd.accounts import Accounts

PROTOCOL = "msmp"
MAX_BAD_COMMANDS = 30
MAX_AUTH_FAILURES = 3
SEPARATOR = re.compile(r"[ \t]+")


class State(Enum):
    AUTHORIZATION = "authorization"
    ADMIN = "admin"


class MsmpError(ReplyError):
    """An MSMP command failed; carries the `-ERR` reply. `close` ends the session after it."""


class Session(LineSession):
    PROTOCOL = PROTOCOL
    PROGRAM = "msmpd"
    GOODBYES = Goodbyes.of(replies)
    MAX_BAD_COMMANDS = MAX_BAD_COMMANDS
    MAX_AUTH_FAILURES = MAX_AUTH_FAILURES
    USER_LABEL = "admin"

    state: State
    pending_user: str | None

    def prepare(self) -> None:
        self.state = State.AUTHORIZATION
        self.pending_user = None

    @property
    def stats_socket(self) -> Path:
        return self.settings.stats_socket

    def accounts(self) -> Accounts:
        """The users file and mail base in force now (SET maildir applies at once)."""
        return Accounts(
            self.settings.path("users_file"),
            self.settings.path("mail_base"),
            self.settings.get_int("max_users"),
        )

    # -- the session core (common/session.py) ------------------------------------------------

    def greeting(self) -> bytes:
        return replies.GREETING

    def read_command(self) -> bytes:
        line = self.io.readline()
        if len(line) > replies.MAX_LINE:
            raise LineTooLong
        return line

    def decode(self, line: bytes) -> str | None:
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def split(self, text: str) -> list[str]:
        # Only spaces and tabs: a control byte stays in its word and is refused.
        stripped = text.strip(" \t")
        return SEPARATOR.split(stripped) if stripped else []

    def undecodable(self) -> bytes:
        return replies.BAD_CHARACTERS

    def unknown_command(self) -> bytes:
        return replies.UNKNOWN_COMMAND

    def wrong_state(self) -> bytes:
        if self.state is State.AUTHORIZATION:
            return replies.LOGIN_FIRST
        return replies.ALREADY_LOGGED_IN

    def wrong_arguments(self, command: Command) -> bytes:
        return replies.usage(command.syntax)

    # -- authentication ------------------------------------------------------------------------

    @property
    def plaintext_allowed(self) -> bool:
        """`require_tls`: an admin password crosses no connection in clear, from anywhere."""
        if self.settings.get_bool("require_tls") and not self.tls:
            return False
        return super().plaintext_allowed

    def login(self, user: str, password: str) -> bytes:
        """PASS (RFC section 3.2): the same reply for an unknown admin and a wrong password."""
        self.pending_user = None
        if self.services.users.verify(user, password):
            self.state = State.ADMIN
            self.logged_in(user)
            return replies.LOGGED_IN
        if self.login_failed(user):
            raise MsmpError(replies.TOO_MANY_FAILURES, close=True)
        return replies.INVALID_CREDENTIALS
