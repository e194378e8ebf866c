"""The one session core every protocol builds on: the run loop, the goodbyes, the bad-command and
failed-login limits, the after-login routine, and the command dispatcher of the line protocols.

A protocol subclasses `Session` and provides its greeting, how one command is read (the line
protocols read a line; IMAP also reads the literals that follow it: `read_command`, the loop's one
input hook) and how one command is dispatched. The loop ends every session the same way: an idle
timeout, a TERM from the master, a vanished client, a protocol's own reason (`SessionEnd`) or a
crash each get their goodbye, and the session's bytes reach the stats collector (STYLE.md "Error
handling"). The connection itself is `common/lineio.LineIO`; a session never touches the socket.

TLS has one switch for every protocol, `start_tls()`: a STARTTLS/STLS handler sets `tls_due`
and the loop switches once that command's OK is on the wire (RFC 3501 6.2.1, RFC 2595 4); an
implicit-TLS connection (RFC 8314) switches before the greeting. Whether a password may cross the
connection in clear is decided here too (`plaintext_allowed`): over TLS, or from an address in
`trusted_networks`, or when `disable_plaintext_auth` is off.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from common import turns
from common.config import Network, Settings
from common.lineio import (
    CompressionError,
    ConnectionClosed,
    HandshakeFailed,
    Interrupted,
    LineIO,
    LineTooLong,
    SessionTimeout,
)
from common.logs import SessionLog, printable
from common.proctitle import set_title
from common.stats import StatsClient
from common.tls import HANDSHAKE_TIMEOUT
from common.users import UserDB

if TYPE_CHECKING:  # the pool model's; a forked child never loads it
    from common.store.watch import FolderWatcher


@dataclass
class Services:
    """What the master prepared before forking (or the pool worker holds); a session only reads
    it."""

    settings: Settings
    users: UserDB
    stats: StatsClient
    log: logging.Logger
    start_dir: Path  # the daemon's start-up directory (a daemon's own working directory is /)
    # Run once the login's success reply has been sent (the SMTP relay, seed 002).
    after_login: list[Callable[[Session], None]] = field(default_factory=list)
    # The server's TLS context when tls_cert and tls_key are configured (common/tls.py).
    tls: ssl.SSLContext | None = None
    # Pool model: many sessions share a process, so stats events carry the session number and
    # the process title is the worker's (common/pool.py), not one session's.
    pooled: bool = False
    watcher: FolderWatcher | None = None  # pool model: the worker's folder watcher (IDLE)


class ReplyError(Exception):
    """A command failed; carries its error reply. `close` ends the session after it is sent."""

    def __init__(self, reply: bytes, close: bool = False) -> None:
        super().__init__(reply)
        self.reply = reply
        self.close = close


class SessionEnd(Exception):
    """End the session now with `reply` as its goodbye; `why` goes to the log."""

    def __init__(self, reply: bytes, why: str) -> None:
        super().__init__(why)
        self.reply = reply
        self.why = why


@dataclass(frozen=True)
class Goodbyes:
    """A protocol's last words for the loop's own events."""

    line_too_long: bytes
    too_many_bad: bytes
    timeout: bytes
    shutdown: bytes
    internal_error: bytes
    bad_compression: bytes = b""

    @classmethod
    def of(cls, replies: object) -> Goodbyes:
        """From a protocol's replies module (LINE_TOO_LONG, TOO_MANY_BAD, TIMEOUT, ...)."""
        names = [n for n in cls.__dataclass_fields__ if hasattr(replies, n.upper())]
        return cls(**{name: getattr(replies, name.upper()) for name in names})


class Session:
    """One client connection, from greeting to goodbye."""

    PROTOCOL: ClassVar[str]  # 'pop3': stats and logs
    PROGRAM: ClassVar[str]  # 'pop3d': the process title
    GOODBYES: ClassVar[Goodbyes]
    MAX_BAD_COMMANDS: ClassVar[int]
    USER_LABEL: ClassVar[str] = "user"  # `login user=alice`, `session end user=alice`

    def __init__(
        self,
        io: LineIO,
        services: Services,
        address: str,
        number: int,
        log: SessionLog,
        commands: Mapping[str, Any],
        *,
        implicit_tls: bool = False,  # accepted on a TLS port: handshake before the greeting
    ) -> None:
        self.io = io
        self.commands = commands  # the protocol's one command table
        self.services = services
        self.address = address
        self.number = number
        self.log = log
        self.user: str | None = None
        self.bad_commands = 0
        self.auth_failures = 0
        self.finished = False
        self.hooks_due = False
        self.implicit_tls = implicit_tls
        self.tls_due = False  # STARTTLS/STLS succeeded: TLS from right after its OK
        self.started = time.monotonic()
        self.sid = number if services.pooled else 0  # the stats session id (common/stats)
        self.prepare()

    @property
    def settings(self) -> Settings:
        return self.services.settings

    # -- what a protocol provides ------------------------------------------------------------

    def prepare(self) -> None:
        """Set the protocol's own fields of a new session (its state first of all)."""

    def greeting(self) -> bytes:
        raise NotImplementedError

    def read_command(self) -> bytes:
        """One whole command as the dispatcher takes it: a line here."""
        return self.io.readline()

    def dispatch(self, raw: bytes) -> None:
        raise NotImplementedError

    def line_too_long(self, head: bytes) -> None:
        """An over-long command line was read and dropped; `head` is its start."""
        self.bad_command(self.GOODBYES.line_too_long)

    def release(self) -> None:
        """Give back what the session holds (locks) before the connection closes."""

    def save(self) -> None:
        """Write what the session may keep for next time (caches) as it ends."""

    # -- the loop ------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.io.write(data)

    def run(self) -> int:
        """Serve the connection to its end; returns the process exit status."""
        try:
            if self.implicit_tls:
                self.start_tls()
            self.send(self.greeting())
            while not self.finished:
                self.next_command()
            self.io.flush()
        except SessionEnd as end:
            self.goodbye(end.reply, end.why)
        except SessionTimeout:
            self.goodbye(self.GOODBYES.timeout, "idle timeout")
        except Interrupted:
            self.goodbye(self.GOODBYES.shutdown, "server shutting down")
        except CompressionError as exc:
            self.goodbye(self.GOODBYES.bad_compression, f"bad compressed data: {exc}")
        except HandshakeFailed as exc:
            self.log.info("TLS handshake failed: %s", exc)
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
            raw = self.read_command()
        except LineTooLong as exc:
            self.line_too_long(exc.head)
            return
        except ReplyError as refused:  # refused while it was read (IMAP: a literal too large)
            self.bad_command(refused.reply)
            return
        self.dispatch(raw)
        if self.tls_due:
            self.start_tls()
        if self.hooks_due:
            self.run_after_login_hooks()

    def bad_command(self, reply: bytes) -> None:
        """Answer a command that could not run; too many of them end the session, the goodbye
        then taking the place of the reply."""
        self.bad_commands += 1
        if self.bad_commands >= self.MAX_BAD_COMMANDS:
            raise SessionEnd(self.last_bad_reply(reply), "too many bad commands")
        self.send(reply)

    def last_bad_reply(self, reply: bytes) -> bytes:
        """What the bad command that reaches the limit gets: the goodbye, in place of `reply`."""
        return self.GOODBYES.too_many_bad

    def goodbye(self, reply: bytes, why: str) -> None:
        self.log.info("closing: %s", why)
        with contextlib.suppress(ConnectionClosed):
            self.send(reply)
            self.io.flush()

    def end(self) -> None:
        self.release()
        self.save()
        self.services.stats.transfer(
            self.PROTOCOL, os.getpid(), self.io.bytes_in, self.io.bytes_out, self.sid
        )
        self.log.info(
            "session end %s=%s in=%d out=%d duration=%.3fs",
            self.USER_LABEL,
            self.user or "-",
            self.io.bytes_in,
            self.io.bytes_out,
            time.monotonic() - self.started,
        )
        self.io.close()

    def title(self, doing: str) -> None:
        """The process title: who, from where, doing what (`ps` shows each session). A pool
        worker's title counts its sessions instead."""
        if not self.services.pooled:
            set_title(self.PROGRAM, f"{self.user or '-'} {self.address} {doing}")

    # -- TLS -----------------------------------------------------------------------------------

    @property
    def tls(self) -> bool:
        """The connection is encrypted."""
        return self.io.tls

    @property
    def tls_offered(self) -> bool:
        """STARTTLS/STLS may be announced and used: TLS is configured and not on yet."""
        return self.services.tls is not None and not self.io.tls

    def start_tls(self) -> None:
        """The one switch to TLS of every protocol: after a STARTTLS/STLS reply (`tls_due`),
        or before the greeting on a TLS port. Input the client pipelined is discarded
        (common/lineio.py); a failed handshake ends the session (HandshakeFailed)."""
        self.tls_due = False
        if self.services.tls is None:
            raise HandshakeFailed("TLS is not configured")
        if self.io.has_buffered_input():
            self.log.info("discarding what was sent after the TLS command, unread")
        timeout = min(HANDSHAKE_TIMEOUT, self.settings.get_float("idle_timeout"))
        self.log.info("TLS started: %s", self.io.start_tls(self.services.tls, timeout))

    # -- logins --------------------------------------------------------------------------------

    @property
    def plaintext_allowed(self) -> bool:
        """A password may be sent in clear (USER/PASS, LOGIN, AUTH PLAIN and LOGIN): over TLS,
        from an address in `trusted_networks`, or when `disable_plaintext_auth` is off."""
        if self.tls or not self.settings.get_bool("disable_plaintext_auth"):
            return True
        return self.trusted_address

    @property
    def trusted_address(self) -> bool:
        return address_in(self.address, self.settings.networks("trusted_networks"))

    def logged_in(self, user: str) -> None:
        """The one after-login routine: stats, log, title; the after-login hooks (the SMTP
        relay) run once the success reply is on the wire."""
        self.user = user
        self.services.stats.login(self.PROTOCOL, os.getpid(), user, self.address, True, self.sid)
        self.log.info("login %s=%s", self.USER_LABEL, printable(user))
        self.title("logged in")
        self.hooks_due = bool(self.services.after_login)

    def run_after_login_hooks(self) -> None:
        """A hook's failure is logged and never reaches the client, who is logged in already."""
        self.hooks_due = False
        self.io.flush()
        for hook in self.services.after_login:
            try:
                hook(self)
            except Exception:
                self.log.exception("after-login hook failed")

    def login_failed(self, user: str) -> bool:
        """Count, log and delay one failed login; True when that was the `max_auth_failures`th
        and the session must close. The log line is stable for fail2ban (etc/fail2ban/):
        "<protocol> auth failed for user <user> from <address>" (no password, ever)."""
        self.services.stats.login(self.PROTOCOL, os.getpid(), user, self.address, False, self.sid)
        self.log.warning(
            "%s auth failed for user %s from %s", self.PROTOCOL, printable(user), self.address
        )
        self.io.flush()
        turns.sleep(self.settings.get_float("auth_failure_delay"))
        self.auth_failures += 1
        limit = self.settings.get_int("max_auth_failures")
        return 0 < limit <= self.auth_failures


def address_in(address: str, networks: list[Network]) -> bool:
    """The client address (common/server.client_address) is in one of `networks`; a Unix
    socket's ("local") always is."""
    if address == "local":
        return True
    ip = parsed_address(address)
    return ip is not None and any(ip in network for network in networks)


@functools.lru_cache(maxsize=4096)
def parsed_address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A client address as an IP address (None: not one); kept, since every session of a
    worker asks again for the same few clients."""
    try:
        return ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return None


# -- the line protocols (POP3, MSMP) -----------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One verb of a line protocol: its handler, the states it is allowed in, its arity."""

    handler: Callable[..., bytes]  # (session, args) -> reply
    states: frozenset[Enum]
    min_args: int = 0
    max_args: int = 0
    raw_args: bool = False  # the rest of the line is one argument (passwords hold spaces)
    syntax: str = ""  # for a usage reply


class LineSession(Session):
    """A session of a line protocol: one command a line, `VERB args...`, one table of verbs."""

    commands: Mapping[str, Command]
    state: Enum

    # -- what a line protocol provides ---------------------------------------------------------

    def decode(self, line: bytes) -> str | None:
        """The command line as text; None when it cannot be read (a bad command)."""
        return line.decode("utf-8", "replace")

    def split(self, text: str) -> list[str]:
        return text.split()

    def unknown_command(self) -> bytes:
        raise NotImplementedError

    def wrong_state(self) -> bytes:
        raise NotImplementedError

    def wrong_arguments(self, command: Command) -> bytes:
        raise NotImplementedError

    # -- dispatch ------------------------------------------------------------------------------

    def dispatch(self, raw: bytes) -> None:
        """Parse one command line, check state and arity, run the handler, send its reply."""
        text = self.decode(raw)
        words = self.split(text) if text is not None else []
        command = self.commands.get(words[0].upper()) if words else None
        if text is None or command is None:
            self.bad_command(self.unknown_command() if text is not None else self.undecodable())
            return
        args = words[1:]
        if command.raw_args:
            rest = text.lstrip(" \t")[len(words[0]) + 1 :]  # after the verb and one separator
            args = [rest] if rest else []
        if self.state not in command.states:
            self.bad_command(self.wrong_state())
            return
        if not command.min_args <= len(args) <= command.max_args:
            self.bad_command(self.wrong_arguments(command))
            return
        self.title(words[0].upper())
        try:
            self.send(command.handler(self, args))
        except ReplyError as exc:
            self.send(exc.reply)
            self.finished = self.finished or exc.close

    def undecodable(self) -> bytes:
        return self.unknown_command()
