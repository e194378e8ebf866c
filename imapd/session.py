"""One IMAP session in a child: reading commands with their literals, the state machine of
RFC 3501 section 3, dispatch, and the goodbyes.

A command is read whole (line, then for each `{n}` literal a `+` continuation when synchronizing,
the n octets and the rest of the line) and handed to the parser; parse errors are `tag BAD` and the
session goes on. Pipelined commands are answered in order and flushed together (common/lineio).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from enum import Enum

from common.config import Settings
from common.lineio import (
    CompressionError,
    ConnectionClosed,
    Interrupted,
    LineIO,
    LineTooLong,
    SessionTimeout,
)
from common.logs import SessionLog
from common.sessionbase import Services
from common.store import FolderTree
from imapd import responses as r
from imapd.parser import ParseError, literal_at_end, parse_command
from imapd.selected import Selected

PROTOCOL = "imap"
MAX_BAD_COMMANDS = 30
MAX_AUTH_FAILURES = 5
CONTINUE = b"+ Ready for literal data\r\n"
# A command may hold max_literal octets of literals plus this much of everything else.
MAX_COMMAND_EXTRA = 1_000_000
# A refused non-synchronizing literal is read and dropped up to this size, else the session ends.
MAX_DISCARD = 1 << 30
DISCARD_CHUNK = 1 << 20


class State(Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class Abort(Exception):  # noqa: N818 (names the condition, as STYLE allows)
    """End the session after sending `* BYE text`."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass
class Session:
    io: LineIO
    services: Services
    address: str
    number: int
    log: SessionLog
    state: State = State.NOT_AUTHENTICATED
    user: str | None = None
    tree: FolderTree | None = None
    selected: Selected | None = None
    enabled: set[str] = field(default_factory=set)
    hooks_due: bool = False  # a login succeeded: run the after-login hooks once OK is sent
    compress_due: bool = False  # COMPRESS succeeded: compress from right after its tagged OK
    bad_commands: int = 0
    auth_failures: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def settings(self) -> Settings:
        return self.services.settings

    # -- output ----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.io.write(data)

    def untagged(self, text: str | bytes) -> None:
        self.io.write(r.untagged(text))

    def report_changes(self, allow_expunge: bool) -> None:
        if self.selected is not None:
            for line in self.selected.refresh(allow_expunge):
                self.io.write(line)

    # -- input -----------------------------------------------------------------------------

    def read_command(self) -> bytes:
        """One whole command with its literals, as the parser wants it."""
        max_literal = self.settings.get_int("max_literal")
        line = self.io.readline()
        parts = [line]
        total = len(line)
        while (found := literal_at_end(line)) is not None:
            size, non_sync = found
            total += size
            if size > max_literal or total > max_literal + MAX_COMMAND_EXTRA:
                self.refuse_literal(parts[0], size, non_sync)
            if not non_sync:
                self.send(CONTINUE)
                self.io.flush()
            parts.append(b"\r\n" + self.io.read_exact(size))
            line = self.io.readline()
            parts.append(line)
            total += len(line)  # lines count too: `{0}` after `{0}` must not grow forever
        return b"".join(parts)

    def refuse_literal(self, first_line: bytes, size: int, non_sync: bool) -> None:
        """`tag BAD [TOOBIG]` for a literal over `max_literal`. A synchronizing one was never
        invited (no `+`); a non-synchronizing one is already on its way (RFC 7888 4): its octets
        are read and dropped so that the next command is read as a command, not as data."""
        raw_tag = first_line.split(b" ", 1)[0].decode("ascii", "replace")
        tag = raw_tag if raw_tag.isprintable() and "\ufffd" not in raw_tag else None
        if non_sync:
            self.discard_literal(size)
            self.skip_rest_of_command()
        raise ParseError(tag, r.LITERAL_TOO_LARGE)

    def discard_literal(self, size: int) -> None:
        if size > MAX_DISCARD:
            raise Abort(r.BYE_LITERAL)
        while size > 0:
            chunk = min(size, DISCARD_CHUNK)
            self.io.read_exact(chunk)
            size -= chunk

    def skip_rest_of_command(self) -> None:
        """Drop the rest of a refused command, with any further non-synchronizing literals."""
        line = self.io.readline()
        while (found := literal_at_end(line)) is not None and found[1]:
            self.discard_literal(found[0])
            line = self.io.readline()

    def read_continuation(self) -> bytes:
        """An AUTHENTICATE response line."""
        self.io.flush()
        return self.io.readline()

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        from imapd.commands import dispatch

        self.send(r.untagged(f"OK [CAPABILITY {r.capability_line()}] {r.GREETING_NAME}"))
        try:
            while self.state is not State.LOGOUT:
                try:
                    raw = self.read_command()
                    if raw.strip().upper() == b"DONE":
                        # RFC 2177: DONE only ends an IDLE; here there is none to end.
                        self.bad_command(None, r.DONE_WITHOUT_IDLE)
                        continue
                    command = parse_command(raw)
                except LineTooLong:
                    self.bad_command(None, r.LINE_TOO_LONG)
                    continue
                except ParseError as exc:
                    self.bad_command(exc.tag, exc.message)
                    continue
                dispatch(self, command)
            self.io.flush()
        except Abort as exc:
            self.goodbye(exc.text)
        except SessionTimeout:
            self.goodbye(r.BYE_TIMEOUT)
        except Interrupted:
            self.goodbye(r.BYE_SHUTDOWN)
        except CompressionError as exc:
            self.log.info("bad compressed data: %s", exc)
            self.goodbye(r.BYE_COMPRESSION)
        except ConnectionClosed:
            self.log.info("connection closed by client")
        except Exception:
            self.log.exception("internal error")
            self.goodbye(r.BYE_INTERNAL)
            return 1
        finally:
            self.end()
        return 0

    def bad_command(self, tag: str | None, text: str) -> None:
        self.bad_commands += 1
        self.send(r.tagged(tag or "*", "BAD", text))
        if self.bad_commands >= MAX_BAD_COMMANDS:
            raise Abort(r.BYE_TOO_MANY_BAD)

    def goodbye(self, text: str) -> None:
        self.log.info("closing: %s", text)
        with contextlib.suppress(ConnectionClosed):
            self.untagged(f"BYE {text}")
            self.io.flush()

    def end(self) -> None:
        self.services.stats.transfer(PROTOCOL, os.getpid(), self.io.bytes_in, self.io.bytes_out)
        if self.selected is not None:
            self.selected.save_caches()
        self.log.info(
            "session end user=%s in=%d out=%d duration=%.3fs",
            self.user or "-",
            self.io.bytes_in,
            self.io.bytes_out,
            time.monotonic() - self.started,
        )
        self.io.close()

    # -- helpers for handlers ------------------------------------------------------------

    def require_tree(self) -> FolderTree:
        if self.tree is None:
            raise RuntimeError("no user logged in")
        return self.tree

    def require_selected(self) -> Selected:
        if self.selected is None:
            raise RuntimeError("no mailbox selected")
        return self.selected

    def start_compression(self) -> None:
        """RFC 4978: the tagged OK went out uncompressed; everything after it is DEFLATE."""
        self.compress_due = False
        self.io.start_compression()
        self.log.info("compression active")

    def dispatch_hooks(self) -> None:
        """After-login work (the SMTP relay): runs once the tagged OK has been flushed, so the
        client never waits for it."""
        self.hooks_due = False
        self.io.flush()
        for hook in self.services.after_login:
            with contextlib.suppress(Exception):
                hook(self)
