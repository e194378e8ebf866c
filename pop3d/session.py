"""One POP3 session: the state machine of RFC 1939 section 3 on the shared session core.

AUTHORIZATION -> TRANSACTION (maildrop locked) -> UPDATE (only on QUIT: deletions applied). A
dropped connection, a timeout, a TERM or a crash never reaches UPDATE, so nothing is deleted.
"""

from __future__ import annotations

import os
import socket
import time
from enum import Enum

from common.lineio import LineTooLong
from common.session import Command, Goodbyes, LineSession, ReplyError
from common.store import DropMessage, Maildrop, MessageGone, StoreBusy, StoreError
from pop3d import replies

PROTOCOL = "pop3"
HARD_MAX_LINE = 8192  # the cap for SASL responses; commands are held to `max_line` (RFC 2449)
MAX_BAD_COMMANDS = 20


class State(Enum):
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    UPDATE = "update"


class Pop3Error(ReplyError):
    """A POP3 command failed; carries the `-ERR` reply. `close` ends the session after it."""


class Session(LineSession):
    PROTOCOL = PROTOCOL
    PROGRAM = "pop3d"
    GOODBYES = Goodbyes.of(replies)
    MAX_BAD_COMMANDS = MAX_BAD_COMMANDS

    state: State
    pending_user: str | None
    drop: Maildrop | None  # the locked maildrop, from login on
    timestamp: str  # the APOP banner's

    def prepare(self) -> None:
        self.state = State.AUTHORIZATION
        self.pending_user = None
        self.drop = None
        self.timestamp = make_timestamp()

    def read_continuation(self) -> bytes:
        """A SASL client response line (may exceed the command limit)."""
        saved = self.io.max_line
        self.io.max_line = HARD_MAX_LINE
        try:
            return self.io.readline()
        except LineTooLong:
            # Raised inside a handler, outside the loop's own LineTooLong catch.
            raise Pop3Error(replies.LINE_TOO_LONG) from None
        finally:
            self.io.max_line = saved

    # -- the session core (common/session.py) ------------------------------------------------

    def greeting(self) -> bytes:
        return replies.greeting(self.timestamp)

    def read_command(self) -> bytes:
        line = self.io.readline()
        if len(line) > self.settings.get_int("max_line"):
            raise LineTooLong
        return line

    def unknown_command(self) -> bytes:
        return replies.UNKNOWN_COMMAND

    def wrong_state(self) -> bytes:
        return replies.WRONG_STATE

    def wrong_arguments(self, command: Command) -> bytes:
        return replies.BAD_ARGUMENTS

    def release(self) -> None:
        self.unlock()

    def unlock(self) -> None:
        if self.drop is not None:
            self.drop.release()

    # -- authentication --------------------------------------------------------------------

    def authenticate(self, user: str, password_ok: bool) -> bytes:
        """Finish a login attempt (USER/PASS, APOP, AUTH): open the maildrop or fail."""
        if not password_ok:
            return self.refuse_login(user)
        delay_reply = self.check_login_delay(user)
        if delay_reply:
            return delay_reply
        try:
            self.open_maildrop(user)
        except StoreBusy:
            self.log.info("maildrop of %s in use", user)
            raise Pop3Error(replies.IN_USE) from None
        except StoreError as exc:
            self.log.error("maildrop of %s unavailable: %s", user, exc)
            raise Pop3Error(replies.MAILDROP_UNAVAILABLE) from None
        self.stamp_login()
        self.state = State.TRANSACTION
        self.logged_in(user)
        live = [m for m in self.messages if not m.deleted]
        return replies.logged_in(len(live), sum(m.size for m in live))

    def refuse_login(self, user: str) -> bytes:
        self.pending_user = None
        if self.login_failed(user):
            raise Pop3Error(replies.TOO_MANY_FAILURES, close=True)
        return replies.AUTH_FAILED

    def check_login_delay(self, user: str) -> bytes | None:
        delay = self.settings.get("login_delay")
        if not delay.isdigit() or int(delay) == 0:
            return None
        last = Maildrop.last_login(self.settings.path("mail_base"), user)
        if last is not None and time.time() - last < int(delay):
            return replies.login_delay(int(delay))
        return None

    def stamp_login(self) -> None:
        """Record a successful login for LOGIN-DELAY: only once the maildrop exists and is ours,
        so every first login counts and an [IN-USE] refusal does not."""
        delay = self.settings.get("login_delay")
        if self.drop is not None and delay.isdigit() and int(delay):
            self.drop.stamp_login()

    def open_maildrop(self, user: str) -> None:
        self.drop = Maildrop.open(self.settings.path("mail_base"), user)

    # -- messages ----------------------------------------------------------------------------

    @property
    def messages(self) -> list[DropMessage]:
        """The listing taken at login, deletion marks and all (empty before login)."""
        return self.drop.messages if self.drop is not None else []

    def message(self, number_text: str) -> DropMessage:
        """The live message with this 1-based number, or a Pop3Error."""
        # isascii(): str.isdigit() is also true for '\u00b2' and other digits int() refuses.
        if not (number_text.isascii() and number_text.isdigit()) or len(number_text) > 9:
            raise Pop3Error(replies.NO_SUCH_MESSAGE)
        number = int(number_text)
        if not 1 <= number <= len(self.messages):
            raise Pop3Error(replies.NO_SUCH_MESSAGE)
        message = self.messages[number - 1]
        if message.deleted:
            raise Pop3Error(replies.already_deleted(number))
        return message

    @property
    def maildrop(self) -> Maildrop:
        """The open maildrop (TRANSACTION only, which the dispatcher sees to)."""
        if self.drop is None:
            raise StoreError("no maildrop open")
        return self.drop

    def read(self, message: DropMessage, number: int) -> bytes:
        try:
            return self.maildrop.read(message)
        except MessageGone:
            self.log.info("message %s was expunged by another session", message.key)
            raise Pop3Error(replies.message_gone(number)) from None
        except StoreError as exc:
            self.log.error("cannot read %s: %s", message.key, exc)
            raise Pop3Error(replies.READ_FAILED) from None

    def commit_deletions(self) -> bool:
        """UPDATE state (RFC 1939 section 6): remove what was marked; True when all went."""
        doomed = sum(1 for m in self.messages if m.deleted)
        failed = self.maildrop.commit()
        if doomed:
            self.log.info("deleted %d messages", doomed - len(failed))
        return not failed


def make_timestamp() -> str:
    """The APOP banner timestamp of RFC 1939 section 7: unique per session."""
    return f"<{os.getpid()}.{time.time_ns()}@{socket.gethostname()}>"
