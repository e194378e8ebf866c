"""The reliability suite's rig (tests/reliability/, bench/soak.py): imapd, pop3d and, when asked,
msmpd and mailstatd on one mail site with one users file, a fresh account per test, and the
clients that drive them over real sockets. What the clients were told is written into the
account's `Ledger` (support/mailstore.py), whose `check()` asserts the end state of the store.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from support.clients import LineClient
from support.daemons import (
    Daemon,
    DaemonFactory,
    is_zombie,
    pooled,
    serving_process,
    wait_for,
)
from support.imap import Raw, crlf
from support.mailstore import INBOX, Ledger, folder_path
from support.site import MailSite

PASSWORD = "rel pw"
ADMIN, ADMIN_PASSWORD = "admin", "adm1n"
TIMEOUT = 20.0
TAGGED = re.compile(rb"^(\S+) (OK|NO|BAD)\b")


def pop_wire(data: bytes) -> bytes:
    """What RETR sends of stored bytes: CRLF lines, dot-stuffed, the terminating line."""
    wire = crlf(data).replace(b"\r\n.", b"\r\n..")
    if wire.startswith(b"."):
        wire = b"." + wire
    return wire + b".\r\n"


@dataclass
class Account:
    """One user of the rig: name, Maildir, and the ledger of what its clients were told."""

    rig: Rig
    user: str
    ledger: Ledger = field(default_factory=Ledger)

    @property
    def maildir(self) -> Path:
        return self.rig.site.mail / self.user

    def folder(self, name: str = INBOX) -> Path:
        return folder_path(self.maildir, name)

    # -- delivery as an MTA does it ------------------------------------------------------------

    def deliver(self, size: int = 600, folder: str = INBOX, subdir: str = "new") -> str:
        """A new message dropped into `folder` (tmp/, then rename): its id, acknowledged."""
        ident, data = self.ledger.new(size)
        path = self.folder(folder)
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        name = f"{ident}.M1P{os.getpid()}.relhost"
        tmp = path / "tmp" / name
        tmp.write_bytes(data)
        # In the ledger first: a session may see it, and expunge it, the moment it is renamed.
        self.ledger.stored(ident, folder)
        os.rename(tmp, path / subdir / (name if subdir == "new" else name + ":2,"))
        return ident

    # -- clients -------------------------------------------------------------------------------

    def imap(self) -> Raw:
        client = Raw(self.rig.imapd.connect(TIMEOUT))
        assert client.raw_line().startswith(b"* OK ")
        client.ok(f'LOGIN {self.user} "{PASSWORD}"')
        return client

    def select(self, folder: str = INBOX) -> Raw:
        client = self.imap()
        client.ok(f'SELECT "{folder}"')
        return client

    def pop(self) -> LineClient:
        client = LineClient(self.rig.pop3d.connect(TIMEOUT))
        assert client.line().startswith(b"+OK")
        client.send(f"USER {self.user}\r\nPASS {PASSWORD}\r\n".encode())
        assert client.line() == b"+OK\r\n"
        reply = client.line()
        assert reply.startswith(b"+OK "), reply
        return client

    def append(self, client: Raw, size: int = 600, folder: str = INBOX) -> str:
        """APPEND a new message; acknowledged in the ledger once the tagged OK came."""
        ident, data = self.ledger.new(size)
        self.ledger.maybe(ident, folder)
        wire = crlf(data)
        client.ok(b'APPEND "%s" {%d+}\r\n' % (folder.encode(), len(wire)) + wire)
        self.ledger.stored(ident, folder)
        return ident

    def check(self, **kwargs: object) -> object:
        return self.ledger.check(self.maildir, **kwargs)  # type: ignore[arg-type]


def fetch_ids(client: Raw, what: str = "1:*") -> dict[int, str]:
    """Sequence number -> X-Rel-Id of the messages `what` names (BODY.PEEK of that header)."""
    found = {}
    for line in client.ok(f"FETCH {what} (BODY.PEEK[HEADER.FIELDS (X-Rel-Id)])"):
        head = re.match(rb"\* (\d+) FETCH .*X-Rel-Id: (\S+)", line, re.S)
        if head:
            found[int(head.group(1))] = head.group(2).decode()
    return found


def uid_ids(client: Raw) -> dict[int, str]:
    """UID -> X-Rel-Id of every message of the selected folder."""
    found = {}
    for line in client.ok("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (X-Rel-Id)])"):
        head = re.match(rb"\* \d+ FETCH \(UID (\d+) .*X-Rel-Id: (\S+)", line, re.S)
        if head:
            found[int(head.group(1))] = head.group(2).decode()
    return found


class Rig:
    """imapd and pop3d (msmpd and mailstatd when asked) on one site; accounts from one users file,
    so that msmpd's ADD and DELE are seen by the others."""

    def __init__(
        self,
        factory: DaemonFactory,
        site: MailSite,
        extra: str = "",
        accounts: int = 40,
        msmpd: bool = False,
        stats: bool = False,
        prefix: str = "rel",
    ) -> None:
        self.factory, self.site = factory, site
        names = [f"{prefix}{n:03d}" for n in range(1, accounts + 1)]
        users = self.site.root / "users"
        users.write_text("".join(f"{name}:{{PLAIN}}{PASSWORD}\n" for name in names))
        (self.site.root / "admins").write_text(f"{ADMIN}:{{PLAIN}}{ADMIN_PASSWORD}\n")
        self.extra = extra
        self.unused = iter(names)
        self.stats: Daemon | None = self.start("mailstatd") if stats else None
        self.imapd = self.start("imapd")
        self.pop3d = self.start("pop3d")
        self.msmpd: Daemon | None = self.start("msmpd") if msmpd else None
        self.counter = itertools.count(1)

    def config(self) -> str:
        return self.site.config(self.extra)

    def start(self, name: str, port: int | None = None, *args: str) -> Daemon:
        """Start (or restart on `port`) one of the rig's daemons, with more flags `args`."""
        if name == "mailstatd":
            from common.stats import query

            daemon = self.factory.start(name, config=self.config(), wait=False)
            sock = self.site.run / "mailstatd.sock"
            wait_for(lambda: query.ping(sock, timeout=0.5), what="mailstatd")
            return daemon
        address = "-L" if name == "msmpd" else "-l"
        return self.factory.start(
            name, address, "127.0.0.1", *args, port=port, config=self.config()
        )

    def account(self) -> Account:
        return Account(self, next(self.unused))

    def msmp(self) -> LineClient:
        """An MSMP session logged in as the rig's administrator."""
        assert self.msmpd is not None, "a rig with msmpd=True"
        client = LineClient(self.msmpd.connect(TIMEOUT))
        assert client.line().startswith(b"+OK")
        client.send(f"USER {ADMIN}\r\nPASS {ADMIN_PASSWORD}\r\n".encode())
        assert client.line().startswith(b"+OK")
        assert client.line().startswith(b"+OK")
        return client

    def daemons(self) -> list[Daemon]:
        return [d for d in (self.imapd, self.pop3d, self.msmpd, self.stats) if d is not None]

    def trouble(self) -> str:
        """The daemons' log lines that tell of trouble, for an assertion's message."""
        found = []
        for daemon in self.daemons():
            found += [
                line
                for line in daemon.log().splitlines()
                if re.search(r"error|crash|Traceback|gone|killing|failed|refused|closing", line)
            ]
        return "\n".join(found[-60:])

    def assert_healthy(self) -> None:
        """Every daemon runs and none logged a traceback or an internal error."""
        for daemon in self.daemons():
            assert daemon.proc.poll() is None, daemon.log()[-3000:]
            log = daemon.log()
            assert "Traceback" not in log, log[-5000:]
            assert "internal error" not in log, log[-5000:]
            assert "crashed" not in log, log[-5000:]


def kill_serving(daemon: Daemon, client: socket.socket) -> int:
    """SIGKILL the process that serves `client`'s connection: its child (fork model) or its
    worker with every session it has (pool model). Returns the pid."""
    pid = serving_process(daemon, client)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return pid


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists() or is_zombie(pid)


def wait_gone(pid: int) -> None:
    wait_for(lambda: gone(pid), what=f"process {pid} gone")


def tagged_status(client: Raw, tag: str) -> bytes | None:
    """The status word of the tagged reply to `tag`, None when the connection closed first."""
    try:
        _lines, done = client.until_tagged(tag)
    except (EOFError, OSError):
        return None
    return done.split(b" ")[1]


@contextlib.contextmanager
def closing(*clients: LineClient) -> Iterator[None]:
    try:
        yield
    finally:
        for client in clients:
            with contextlib.suppress(OSError):
                client.close()


def model() -> str:
    return "pool" if pooled() else "fork"
