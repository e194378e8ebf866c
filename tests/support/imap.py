"""Helpers for the imapd end-to-end tests: starting a server, raw IMAP transcripts that read
literals in responses, imaplib/imapclient sessions, and snapshots of a Maildir on disk. (The
`imapd` fixture in tests/imapd/conftest.py starts a server of a test's own.)"""

from __future__ import annotations

import imaplib
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imapclient
import pytest

from support.clients import LineClient
from support.daemons import Daemon, DaemonFactory, wait_for
from support.site import MailSite

IMAP_USERS = {"alice": "pw", "bob": "b0b pass", "carol": "c"}
SHARED_PASSWORD = "s3cret pass"  # a space: every client must quote it
TIMEOUT = 10.0
_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\r?\n$")


def crlf(data: bytes) -> bytes:
    """The wire form of stored bytes, computed independently of common.store: every line end
    CRLF, none added."""
    return re.sub(rb"\r?\n", b"\r\n", data)


class Raw(LineClient):
    """A raw IMAP client: sends bytes, reads response lines with their literals folded in."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.counter = 0

    # -- low level -------------------------------------------------------------------------

    def exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            self._more()
        data, self.buf = self.buf[:size], self.buf[size:]
        return data

    def raw_line(self) -> bytes:
        """One physical line, with its CRLF."""
        return super().line()

    def line(self) -> bytes:
        """One response line; a literal at its end is read and the line continues after it."""
        out = self.raw_line()
        while (match := _LITERAL_AT_END.search(out)) is not None:
            out += self.exact(int(match.group(1)))
            out += self.raw_line()
        return out

    # -- commands --------------------------------------------------------------------------

    def tag(self) -> str:
        self.counter += 1
        return f"t{self.counter}"

    def until_tagged(self, tag: str) -> tuple[list[bytes], bytes]:
        """Lines up to and including the one tagged `tag`: (everything before, tagged line)."""
        lines = []
        prefix = tag.encode() + b" "
        while True:
            line = self.line()
            if line.startswith(prefix):
                return lines, line
            lines.append(line)

    def cmd(self, text: str | bytes, eol: bytes = b"\r\n") -> tuple[list[bytes], bytes]:
        """Send one command with a fresh tag; return (untagged lines, tagged line)."""
        tag = self.tag()
        data = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + data + eol)
        return self.until_tagged(tag)

    def ok(self, text: str | bytes, eol: bytes = b"\r\n") -> list[bytes]:
        """Send a command that must succeed; return its untagged lines."""
        lines, done = self.cmd(text, eol)
        assert re.match(rb"t\d+ OK", done), (text, lines, done)
        return lines

    def status(self, text: str | bytes) -> bytes:
        """Send a command; return its tagged status word (OK, NO, BAD)."""
        _lines, done = self.cmd(text)
        return done.split(b" ")[1]

    def alive(self) -> None:
        """The session still answers."""
        assert self.ok("NOOP") is not None


@dataclass
class ImapServer:
    """A running imapd; the session helpers log in as `user` (alice unless told)."""

    daemon: Daemon
    site: MailSite
    passwords: dict[str, str] = field(default_factory=lambda: dict(IMAP_USERS))
    user: str = "alice"

    @property
    def port(self) -> int:
        return self.daemon.port

    @property
    def path(self) -> Path:
        """The user's Maildir (not created here)."""
        return self.site.mail / self.user

    def maildir(self, user: str | None = None) -> Path:
        """The user's Maildir, created as an MTA would (the first login adds the default
        folders all the same)."""
        return self.site.maildir(user or self.user)

    def raw(self) -> Raw:
        client = Raw(self.daemon.connect(TIMEOUT))
        greeting = client.raw_line()
        assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 "), greeting
        return client

    def raw_login(self, user: str | None = None) -> Raw:
        user = user or self.user
        client = self.raw()
        client.ok(f'LOGIN {user} "{self.passwords[user]}"')
        return client

    def raw_select(self, mailbox: str = "INBOX", user: str | None = None) -> Raw:
        client = self.raw_login(user)
        client.ok(f"SELECT {mailbox}")
        return client

    def claim_recent(self, mailbox: str = "INBOX", user: str | None = None) -> None:
        """Select `mailbox` in a session of its own and log out: its messages so far are
        \\Recent no longer (RFC 3501 2.3.2), for tests about other things."""
        client = self.raw_select(mailbox, user)
        client.ok("LOGOUT")
        client.close()

    def imaplib(self, user: str | None = None) -> imaplib.IMAP4:
        user = user or self.user
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=TIMEOUT)
        client.login(user, self.passwords[user])
        return client

    def client(self, user: str | None = None) -> imapclient.IMAPClient:
        user = user or self.user
        client = imapclient.IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=TIMEOUT)
        client.login(user, self.passwords[user])
        return client

    def as_user(self, user: str) -> ImapServer:
        """The same server, with the session helpers logging in as `user`."""
        return ImapServer(self.daemon, self.site, self.passwords, user)

    def log(self) -> str:
        return self.daemon.log()

    def assert_healthy(self) -> None:
        """The master runs, never logged a traceback, and a fresh session works."""
        assert self.daemon.proc.poll() is None, self.log()
        assert "Traceback" not in self.log(), self.log()
        client = self.raw_login()
        client.ok("LOGOUT")
        client.close()


def start_imapd(
    daemons: DaemonFactory,
    site: MailSite,
    extra: str = "",
    users: dict[str, str] | None = None,
    *args: str,
) -> ImapServer:
    users = IMAP_USERS if users is None else users
    flags: list[str] = []
    for name, password in users.items():
        flags += ["-u", f"{name}:{password}"]
    config = site.config("[imapd]\n" + extra)
    daemon = daemons.start(
        "imapd", "-l", "127.0.0.1", *site.common_args(), *flags, *args, config=config
    )
    return ImapServer(daemon, site, dict(users), next(iter(users)))


class SharedImapd:
    """One server for a whole test module, and a fresh user (with an empty mailbox) for each
    test: starting a daemon costs far more than a test's own work."""

    ACCOUNTS = 120

    def __init__(
        self, root: Path, extra: str = "", prefix: str = "u", password: str = SHARED_PASSWORD
    ) -> None:
        self.site = MailSite.create(root)
        self.factory = DaemonFactory(root)
        users = {f"{prefix}{n:03d}": password for n in range(1, self.ACCOUNTS + 1)}
        self.server = start_imapd(self.factory, self.site, extra, users)
        self.unused = iter(users)

    def account(self) -> ImapServer:
        return self.server.as_user(next(self.unused))

    def stop(self) -> None:
        self.factory.stop_all()
        assert "Traceback" not in self.server.log(), self.server.log()


def shared_imapd(name: str, extra: str = "", **kwargs: str) -> Any:
    """A module-scoped `shared` fixture: one SharedImapd for every test of the module."""

    @pytest.fixture(scope="module")
    def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedImapd]:
        server = SharedImapd(tmp_path_factory.mktemp(name), extra, **kwargs)
        yield server
        server.stop()

    return shared


def tree(path: Path) -> dict[str, bytes]:
    """Every message file under a Maildir and its folders: relative path -> content."""
    found = {}
    for file in sorted(path.rglob("*")):
        relative = file.relative_to(path)
        if file.is_file() and len(relative.parts) >= 2 and relative.parts[-2] in ("cur", "new"):
            found[str(relative)] = file.read_bytes()
    return found


def folders(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir() and p.name.startswith("."))


def message_files(maildir: Path) -> list[Path]:
    return sorted([*maildir.joinpath("cur").iterdir(), *maildir.joinpath("new").iterdir()])


def wait_file_count(maildir: Path, count: int) -> None:
    wait_for(lambda: len(message_files(maildir)) == count, what=f"{count} files in {maildir}")
