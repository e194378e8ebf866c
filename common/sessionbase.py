"""What every protocol session in a child shares: the failed-login ritual, and the command loop of
the line protocols (POP3, MSMP).

The loop reads a line, holds it to the protocol's limit, dispatches it, and ends every session the
same way: an idle timeout, a TERM from the master, a vanished client or a crash each get their
goodbye, and the session's bytes reach the stats collector (STYLE.md "Error handling").
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from common.config import Settings
from common.lineio import ConnectionClosed, Interrupted, LineIO, LineTooLong, SessionTimeout
from common.logs import SessionLog, printable
from common.stats import StatsClient
from common.users import UserDB


@dataclass
class Services:
    """What the master prepared before forking; a POP3 or IMAP session only reads it."""

    settings: Settings
    users: UserDB
    stats: StatsClient
    log: logging.Logger
    # Run once the login's success reply has been sent (the SMTP relay, seed 002).
    after_login: list[Callable[[Any], None]] = field(default_factory=list)


class ReplyError(Exception):
    """A command failed; carries its error reply. `close` ends the session after it is sent."""

    def __init__(self, reply: bytes, close: bool = False) -> None:
        super().__init__(reply)
        self.reply = reply
        self.close = close


@dataclass(frozen=True)
class Goodbyes:
    """A line protocol's replies for the loop's own events."""

    line_too_long: bytes
    too_many_bad: bytes
    timeout: bytes
    shutdown: bytes
    internal_error: bytes

    @classmethod
    def of(cls, replies: object) -> Goodbyes:
        """From a protocol's replies module (LINE_TOO_LONG, TOO_MANY_BAD, TIMEOUT, ...)."""
        return cls(**{name: getattr(replies, name.upper()) for name in cls.__dataclass_fields__})


def delay_failed_login(
    stats: StatsClient,
    settings: Settings,
    log: SessionLog | logging.Logger,
    io: LineIO,
    protocol: str,
    user: str,
    address: str,
) -> None:
    """Count, log and delay one failed login. The log line is stable for fail2ban:
    "<protocol> auth failed for user <user> from <address>" (no password, ever)."""
    stats.login(protocol, os.getpid(), user, address, False)
    log.warning("%s auth failed for user %s from %s", protocol, printable(user), address)
    io.flush()
    time.sleep(settings.get_float("auth_failure_delay"))


class LineSession:
    """The loop, for a session dataclass with `io`, `services` (with `stats`), `settings`, `log`,
    `finished`, `bad_commands` and `started`."""

    PROTOCOL: ClassVar[str]
    GOODBYES: ClassVar[Goodbyes]
    MAX_BAD_COMMANDS: ClassVar[int]

    io: LineIO
    log: SessionLog
    finished: bool
    bad_commands: int
    started: float

    # -- what a protocol provides ------------------------------------------------------------

    def greeting(self) -> bytes:
        raise NotImplementedError

    def line_limit(self) -> int:
        raise NotImplementedError

    def dispatch(self, line: bytes) -> None:
        raise NotImplementedError

    def who(self) -> str:
        """`user=alice` for the session-end line."""
        raise NotImplementedError

    def release(self) -> None:
        """Give back what the session holds (locks) before the connection closes."""

    def stats_client(self) -> StatsClient:
        return self.services.stats  # type: ignore[attr-defined,no-any-return]

    # -- the loop ------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.io.write(data)

    def run(self) -> int:
        self.send(self.greeting())
        try:
            while not self.finished:
                self.next_command()
            self.io.flush()
        except SessionTimeout:
            self.goodbye(self.GOODBYES.timeout, "idle timeout")
        except Interrupted:
            self.goodbye(self.GOODBYES.shutdown, "server shutting down")
        except ConnectionClosed:
            self.log.info("connection closed by client")
        except Exception:
            self.log.exception("internal error")
            self.goodbye(self.GOODBYES.internal_error, "internal error")
            return 1
        finally:
            self.end()
        return 0

    def next_command(self) -> None:
        try:
            line = self.io.readline()
        except LineTooLong:
            self.bad_command(self.GOODBYES.line_too_long)
            return
        if len(line) > self.line_limit():
            self.bad_command(self.GOODBYES.line_too_long)
            return
        self.dispatch(line)

    def bad_command(self, reply: bytes) -> None:
        self.bad_commands += 1
        if self.bad_commands >= self.MAX_BAD_COMMANDS:
            self.send(self.GOODBYES.too_many_bad)
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
        self.release()
        self.stats_client().transfer(
            self.PROTOCOL, os.getpid(), self.io.bytes_in, self.io.bytes_out
        )
        self.log.info(
            "session end %s in=%d out=%d duration=%.3fs",
            self.who(),
            self.io.bytes_in,
            self.io.bytes_out,
            time.monotonic() - self.started,
        )
        self.io.close()
