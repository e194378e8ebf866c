"""One MSMP session in a child: AUTHORIZATION (USER, PASS) -> ADMIN, and the command loop.

Seed 003, appendix 9.1 section 3: the greeting, then USER and PASS against the admins file (and
`-a NAME:PASS`). An unknown admin and a wrong password get the same reply after the same delay.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from common.config import Settings
from common.lineio import ConnectionClosed, Interrupted, LineIO, LineTooLong, SessionTimeout
from common.logs import SessionLog
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


class MsmpError(Exception):
    """A command failed; carries the `-ERR` reply. `close` ends the session after it."""

    def __init__(self, reply: bytes, close: bool = False) -> None:
        super().__init__(reply)
        self.reply = reply
        self.close = close


@dataclass
class Services:
    """What the master prepared before forking; a child only reads it."""

    settings: Settings
    admins: UserDB
    stats: StatsClient
    log: logging.Logger
    start_dir: Path  # relative SET maildir values are taken from here


@dataclass
class Session:
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
        return Accounts(self.settings.path("users_file"), self.settings.path("mail_base"),
                        self.settings.get_int("max_users"))

    def send(self, data: bytes) -> None:
        self.io.write(data)

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        from msmpd.commands import dispatch

        self.send(replies.GREETING)
        try:
            while not self.finished:
                try:
                    line = self.io.readline()
                except LineTooLong:
                    self.bad_command(replies.LINE_TOO_LONG)
                    continue
                if len(line) > replies.MAX_LINE:
                    self.bad_command(replies.LINE_TOO_LONG)
                    continue
                dispatch(self, line)
            self.io.flush()
        except SessionTimeout:
            self.goodbye(replies.TIMEOUT, "idle timeout")
        except Interrupted:
            self.goodbye(replies.SHUTDOWN, "server shutting down")
        except ConnectionClosed:
            self.log.info("connection closed by client")
        except Exception:
            self.log.exception("internal error")
            self.goodbye(replies.INTERNAL_ERROR, "internal error")
            return 1
        finally:
            self.end()
        return 0

    def bad_command(self, reply: bytes) -> None:
        self.bad_commands += 1
        if self.bad_commands >= MAX_BAD_COMMANDS:
            self.send(replies.TOO_MANY_BAD)
            self.finished = True
            self.log.info("too many bad commands")
        else:
            self.send(reply)

    def goodbye(self, reply: bytes, why: str) -> None:
        self.log.info("closing: %s", why)
        with contextlib.suppress(ConnectionClosed):
            self.send(reply)
            self.io.flush()

    def end(self) -> None:
        self.services.stats.transfer(PROTOCOL, os.getpid(), self.io.bytes_in, self.io.bytes_out)
        self.log.info("session end admin=%s in=%d out=%d duration=%.3fs", self.admin or "-",
                      self.io.bytes_in, self.io.bytes_out, time.monotonic() - self.started)
        self.io.close()

    # -- authentication ------------------------------------------------------------------------

    def login(self, user: str, password: str) -> bytes:
        """PASS (RFC section 3.2): the same reply for an unknown admin and a wrong password."""
        stats = self.services.stats
        if self.services.admins.verify(user, password):
            self.admin, self.state, self.pending_user = user, State.ADMIN, None
            stats.login(PROTOCOL, os.getpid(), user, self.address, True)
            self.log.info("login admin=%s", printable(user))
            return replies.LOGGED_IN
        stats.login(PROTOCOL, os.getpid(), user, self.address, False)
        # One stable line for fail2ban: "msmp auth failed for user X from ADDR".
        self.log.warning("msmp auth failed for user %s from %s", printable(user), self.address)
        self.auth_failures += 1
        self.pending_user = None
        self.io.flush()
        time.sleep(self.settings.get_float("auth_failure_delay"))
        if self.auth_failures >= MAX_AUTH_FAILURES:
            raise MsmpError(replies.TOO_MANY_FAILURES, close=True)
        return replies.INVALID_CREDENTIALS


def printable(text: str) -> str:
    return "".join(c if c.isprintable() and not c.isspace() else "?" for c in text)[:64]
