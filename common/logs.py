"""Logging for every daemon: syslog (facility mail), a log file, or stderr with `-f`.

Each session's lines carry its session number in `{}` (seed 001) and the client address, through
`SessionLog`. HUP calls `reopen()`, so logrotate can rename the file and no line is lost.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

SYSLOG_SOCKET = "/dev/log"
# No caller lookup, thread or multiprocessing names per record: a session logs a few lines and
# none of those fields is in our formats.
logging._srcfile = None
logging.logThreads = False
logging.logMultiprocessing = False
_handler: logging.Handler | None = None


def setup(program: str, target: str, level: str = "info") -> logging.Logger:
    """Point the root logger at `target`: 'stderr', 'syslog', or a file path."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    _handler = make_handler(program, target)
    root.addHandler(_handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    return logging.getLogger(program)


class LineFormatter(logging.Formatter):
    """`2024-09-02 10:00:00,123 pop3d[42]: message` (without the time for syslog), as
    logging.Formatter would write it with `%(asctime)s {program}[%(process)d]: %(message)s`, at
    less cost: a session writes a few lines, and the time is formatted once a second, not
    through strftime for every line."""

    def __init__(self, program: str, with_time: bool = True) -> None:
        super().__init__()
        self.program = program
        self.with_time = with_time
        self._second: tuple[int, str] = (-1, "")  # one tuple: threads swap it whole

    def format(self, record: logging.LogRecord) -> str:
        text = self.line(record.getMessage(), record.created, record.msecs, record.process)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text = f"{text}\n{record.exc_text}"
        if record.stack_info:
            text = f"{text}\n{self.formatStack(record.stack_info)}"
        return text

    def line(self, message: str, created: float, msecs: float, pid: int | None) -> str:
        text = f"{self.program}[{pid}]: {message}"
        if not self.with_time:
            return text
        second, stamp = self._second
        if int(created) != second:
            second = int(created)
            stamp = time.strftime(self.default_time_format, time.localtime(second))
            self._second = (second, stamp)
        return f"{stamp},{int(msecs):03d} {text}"


class DirectLines(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler (stderr with `-f`; LogFileHandler) that can write a session's INFO line
    without a LogRecord (`SessionLog.info`).

    A session logs three lines (connect, login, session end), and logging's way through the
    adapter, the logger, the record and the handler took ~28 us each in a pool worker, on the
    way to the greeting and to the reply to LOGIN. The line is the one LineFormatter writes,
    under the handler's lock; anything unusual (another handler, a filter, a level above
    INFO, a bad format) takes logging's way."""

    def write_line(self, message: str) -> bool:
        """Write `message` as one line; False when it must take logging's way instead."""
        formatter = self.formatter
        if self.filters or self.level > logging.INFO or type(formatter) is not LineFormatter:
            return False
        created = time.time()
        line = formatter.line(message, created, (created - int(created)) * 1000, os.getpid())
        self.acquire()
        try:
            self.ready()
            self.stream.write(line + self.terminator)
            self.flush()
        except Exception:
            return False  # logging's way reports it (Handler.handleError)
        finally:
            self.release()
        return True

    def ready(self) -> None:
        """Before a line: the file handler notices a rotated file here."""


class LogFileHandler(DirectLines, logging.handlers.WatchedFileHandler):
    """A log file that notices a rename (logrotate without HUP) within RECHECK seconds, not on
    the very next line: WatchedFileHandler stat()s the file before every line it writes, and a
    session writes three. HUP (`reopen()`) reopens at once, as logrotate's postrotate does."""

    RECHECK = 1.0

    def __init__(self, filename: str, encoding: str | None = None) -> None:
        super().__init__(filename, encoding=encoding)
        self._checked = time.monotonic()

    def reopenIfNeeded(self) -> None:  # noqa: N802 (logging's name)
        now = time.monotonic()
        if now - self._checked < self.RECHECK:
            return
        self._checked = now
        super().reopenIfNeeded()

    def ready(self) -> None:
        self.reopenIfNeeded()


def make_handler(program: str, target: str) -> logging.Handler:
    if target == "stderr":
        handler: logging.Handler = DirectLines(sys.stderr)
        handler.setFormatter(LineFormatter(program))
    elif target == "syslog":
        address: Any = SYSLOG_SOCKET if os.path.exists(SYSLOG_SOCKET) else ("localhost", 514)
        handler = logging.handlers.SysLogHandler(
            address=address, facility=logging.handlers.SysLogHandler.LOG_MAIL
        )
        handler.setFormatter(LineFormatter(program, with_time=False))
    else:
        handler = LogFileHandler(target, encoding="utf-8")
        handler.setFormatter(LineFormatter(program))
    return handler


def reopen() -> None:
    """Close and reopen the log file (HUP after rotation)."""
    if isinstance(_handler, logging.FileHandler):
        _handler.acquire()
        try:
            _handler.close()
            _handler.stream = _handler._open()
        finally:
            _handler.release()


def handler_fds() -> list[int]:
    """File descriptors the daemon context must keep open across detaching."""
    stream = getattr(_handler, "stream", None)
    sock = getattr(_handler, "socket", None)
    fds = []
    for obj in (stream, sock):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            fds.append(obj.fileno())  # type: ignore[union-attr]
    return fds


def printable(text: str, limit: int = 64) -> str:
    """A client-supplied value made safe for one log line (no spaces, controls or newlines)."""
    return "".join(c if c.isprintable() and not c.isspace() else "?" for c in text)[:limit]


def escaped(text: str) -> str:
    """Client-supplied text (a purpose string, a server's reply) made safe for one log line:
    spaces kept, every other unprintable character written as its escape (`\\r`, `\\x00`), so a
    client cannot forge or split a log line. `printable()` is for one value, this for text."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def escaped_bytes(data: bytes) -> str:
    """Bytes from the network for one log line: UTF-8 where they are, each other byte as
    `\\xNN` (never U+FFFD, which would hide what was sent), controls escaped as `escaped()`."""
    return escaped(data.decode("utf-8", "backslashreplace"))


class SessionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with `{session} address`."""

    def __init__(self, logger: logging.Logger, session: int, address: str) -> None:
        super().__init__(logger, {})
        self.prefix = f"{{{session}}} {address}"

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"{self.prefix} {msg}", kwargs

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """As logging's, written directly when the daemon's one handler can (DirectLines)."""
        direct = None if kwargs else direct_handler(self.logger)
        if direct is not None:
            text = message(msg, args)
            if text and direct.write_line(f"{self.prefix} {text}"):
                return
        super().info(msg, *args, **kwargs)


def message(msg: Any, args: tuple[Any, ...]) -> str:
    """The text LogRecord.getMessage() makes of `msg` and `args`; a bad format gives an empty
    one, and the line takes logging's way, which reports it."""
    if len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
        args = args[0]  # type: ignore[assignment]  # as LogRecord takes a lone mapping
    try:
        return str(msg) % args if args else str(msg)
    except (TypeError, ValueError, KeyError):
        return ""


def direct_handler(logger: logging.Logger) -> DirectLines | None:
    """The handler that takes `logger`'s INFO lines directly: the one setup() installed, alone
    on the root logger, with no filter, level or other handler on the way."""
    handler, root = _handler, logging.root
    if (
        not isinstance(handler, DirectLines)
        or logger.parent is not root
        or logger.handlers
        or logger.filters
        or root.filters
        or len(root.handlers) != 1
        or root.handlers[0] is not handler
        or not logger.propagate
        or not logger.isEnabledFor(logging.INFO)
    ):
        return None
    return handler
