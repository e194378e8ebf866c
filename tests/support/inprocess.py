"""Line-protocol sessions (POP3, MSMP) run in the test's own process, for the fuzz tests: a fake
LineIO that records every reply and serves scripted continuation lines, services on a temporary
site, and the checks that every reply is well formed and no log line holds a password."""

from __future__ import annotations

import configparser
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.config import Settings
from common.lineio import ConnectionClosed, LineTooLong
from common.logs import SessionLog
from common.session import Services, Session
from common.stats import StatsClient
from common.users import UserDB


class FakeIO:
    """What a session needs of common.lineio.LineIO, without a socket. What a command reads
    beyond its own line (SASL answers, IDLE's DONE, literals to drop) comes from
    `continuations`; their end is the client going away."""

    timeout = 60.0

    def __init__(self, max_line: int, continuations: list[bytes] | None = None) -> None:
        self.max_line = max_line
        self.continuations = list(continuations or [])
        self.replies: list[bytes] = []
        self.bytes_in = 0
        self.bytes_out = 0
        self.compressed = False
        self.tls = False  # a socket-less session is never encrypted

    def write(self, data: bytes) -> None:
        self.replies.append(data)
        self.bytes_out += len(data)

    def flush(self) -> None:
        pass

    def readline(self, deadline: float | None = None) -> bytes:
        if not self.continuations:
            raise ConnectionClosed("EOF")
        line = self.continuations.pop(0)
        if len(line) > self.max_line + 1:
            raise LineTooLong
        return line

    def read_exact(self, size: int, deadline: float | None = None) -> bytes:
        data = b""
        while len(data) < size:
            if not self.continuations:
                raise ConnectionClosed("EOF")
            data += self.continuations.pop(0)
        self.continuations[:0] = [data[size:]] if len(data) > size else []
        return data[:size]

    def wait_readable(self, timeout: float, wake: int | None = None) -> bool:
        return True  # the client always speaks at once (IDLE ends)

    def has_buffered_input(self) -> bool:
        return bool(self.continuations)

    def start_compression(self) -> None:
        self.compressed = True

    def close(self) -> None:
        pass


class LogCapture(logging.Handler):
    """Every formatted log line of the session."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def settings_for(daemon: str, root: Path, extra: str = "") -> Settings:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(
        f"[common]\nmail_base = {root / 'mail'}\nstate_dir = {root / 'state'}\n"
        f"run_dir = {root / 'run'}\nusers_file = {root / 'users'}\n"
        f"admins_file = {root / 'admins'}\nauth_failure_delay = 0\n"
        # The sessions' client (192.0.2.7) is trusted: the fuzzed commands run past the login.
        f"trusted_networks = 192.0.2.0/24\n{extra}"
    )
    return Settings(daemon, parser)


class Harness:
    """Builds sessions of one protocol on one temporary site, and checks what they did."""

    def __init__(
        self,
        session_class: type[Session],
        commands: Mapping[str, Any],
        daemon: str,
        root: Path,
        inline_users: dict[str, str],
        extra: str = "",
    ) -> None:
        for sub in ("mail", "state", "run"):
            (root / sub).mkdir(exist_ok=True)
        (root / "users").touch()
        (root / "admins").touch()
        self.session_class = session_class
        self.commands = commands
        self.settings = settings_for(daemon, root, extra)
        self.users = UserDB(None, inline_users)
        self.logger = logging.getLogger(f"fuzz.{daemon}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.capture = LogCapture()
        self.logger.handlers[:] = [self.capture]
        self.services = Services(
            self.settings,
            self.users,
            StatsClient(root / "run" / "no-collector.sock"),
            self.logger,
            root,
        )

    def session(self, max_line: int, continuations: list[bytes] | None = None) -> Session:
        io = FakeIO(max_line, continuations)
        log = SessionLog(self.logger, 1, "192.0.2.7")
        return self.session_class(io, self.services, "192.0.2.7", 1, log, self.commands)  # type: ignore[arg-type]


def check_line(data: bytes, prefixes: tuple[bytes, ...]) -> None:
    """One CRLF-terminated line with one of the protocol's prefixes, no other CR or LF."""
    assert data.startswith(prefixes), data[:200]
    assert data.endswith(b"\r\n"), data[-200:]
    body = data[:-2]
    assert b"\r" not in body and b"\n" not in body, data[:200]


def check_multiline(data: bytes) -> None:
    """`+OK ...` CRLF, lines ending in CRLF (dot-stuffed), then `.` CRLF; no bare CR or LF."""
    first, _, rest = data.partition(b"\r\n")
    check_line(first + b"\r\n", (b"+OK",))
    assert data.endswith(b"\r\n.\r\n"), data[-200:]
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r"), data[:200]
    for line in rest.split(b"\r\n")[:-2]:
        assert not line.startswith(b".") or line.startswith(b".."), line
