"""One MSMP session in a child: AUTHORIZATION (USER, PASS) -> ADMIN, and the command loop.

Seed 003, appendix 9.1 section 3: the greeting, then USER and PASS against the admins file (and
`-a NAME:PASS`). An unknown admin and a wrong password get the same reply after the same delay.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from common.config import Settings
from common.lineio import LineIO
from common.logs import SessionLog, printable
from common.sessionbase import Goodbyes, LineSession, ReplyError, delay_failed_login
from common.stats import StatsClient
from common.users import UserDB
from msmpd import replies
from msmpd.accounts import Accounts

PROTOCOL = "msmp"
MAX_BAD_COMMANDS = 30
MAX_AUTH_FAILURES = 3


class State(Enum):
    AUTHORIZATION = "authorization"
    ADMIN = "admin"


class MsmpError(ReplyError):
    """An MSMP command failed; carries the `-ERR` reply. `close` ends the session after it."""


@dataclass
class Services:
    """What the master prepared before forking; a child only reads it."""

    settings: Settings
    admins: UserDB
    stats: StatsClient
    log: logging.Logger
    start_dir: Path  # relative SET maildir values are taken from here


@dataclass
class Session(LineSession):
    PROTOCOL = PROTOCOL
    MAX_BAD_COMMANDS = MAX_BAD_COMMANDS
    GOODBYES = Goodbyes.of(replies)

    io: LineIO
    services: Services
    address: str
    log: SessionLog
    state: State = State.AUTHORIZATION
    pending_user: str | None = None
    admin: str | None = None
    bad_commands: int = 0
    auth_failures: int = 0
    finished: bool = False
    started: float = field(default_factory=time.monotonic)

    @property
    def settings(self) -> Settings:
        return self.services.settings

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

    # -- the loop (common/sessionbase.py) --------------------------------------------------

    def greeting(self) -> bytes:
        return replies.GREETING

    def line_limit(self) -> int:
        return replies.MAX_LINE

    def dispatch(self, line: bytes) -> None:
        from msmpd.commands import dispatch

        dispatch(self, line)

    def who(self) -> str:
        return f"admin={self.admin or '-'}"

    # -- authentication ------------------------------------------------------------------------

    def login(self, user: str, password: str) -> bytes:
        """PASS (RFC section 3.2): the same reply for an unknown admin and a wrong password."""
        stats = self.services.stats
        if self.services.admins.verify(user, password):
            self.admin, self.state, self.pending_user = user, State.ADMIN, None
            stats.login(PROTOCOL, os.getpid(), user, self.address, True)
            self.log.info("login admin=%s", printable(user))
            return replies.LOGGED_IN
        delay_failed_login(stats, self.settings, self.log, self.io, PROTOCOL, user, self.address)
        self.auth_failures += 1
        self.pending_user = None
        if self.auth_failures >= MAX_AUTH_FAILURES:
            raise MsmpError(replies.TOO_MANY_FAILURES, close=True)
        return replies.INVALID_CREDENTIALS
