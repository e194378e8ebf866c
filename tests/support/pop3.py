"""A pop3d on loopback and its client helpers (the `pop3d` fixture in tests/conftest.py)."""

from __future__ import annotations

import poplib
import re
from dataclasses import dataclass
from pathlib import Path

from support.clients import LineClient
from support.daemons import Daemon, child_pids, pooled, sessions_running, wait_for
from support.site import MailSite

POP3_USERS = {"alice": "secret", "bob": "b0b has spaces", "probe": "probe"}


@dataclass
class Pop3Server:
    """A pop3d started with -f on loopback, its site, and client helpers."""

    daemon: Daemon
    site: MailSite

    @property
    def port(self) -> int:
        return self.daemon.port

    @property
    def config_file(self) -> Path:
        return self.daemon.root / f"pop3d-{self.daemon.port}.conf"

    def pop(self, timeout: float = 10.0) -> poplib.POP3:
        return poplib.POP3("127.0.0.1", self.port, timeout=timeout)

    def login(self, user: str = "alice", password: str | None = None) -> poplib.POP3:
        client = self.pop()
        try:
            client.user(user)
            client.pass_(POP3_USERS[user] if password is None else password)
        except BaseException:
            client.close()
            raise
        return client

    def raw(self, timeout: float = 10.0, source: str | None = None) -> LineClient:
        """A raw client that has read the greeting."""
        client = LineClient(self.daemon.connect(timeout, source))
        greeting = client.line()
        assert greeting.startswith(b"+OK "), greeting
        return client

    def raw_login(self, user: str = "alice", timeout: float = 10.0) -> LineClient:
        client = self.raw(timeout)
        client.send(f"USER {user}\r\nPASS {POP3_USERS[user]}\r\n".encode())
        assert client.line() == b"+OK\r\n"
        reply = client.line()
        assert reply.startswith(b"+OK "), reply
        return client

    def wait_idle(self) -> None:
        """Every connection so far (the start-up probe's too) has ended and been reaped."""

        def greeted() -> bool:  # accept() is FIFO: every earlier connection has been accepted
            client = LineClient(self.daemon.connect())
            try:
                if not client.line().startswith(b"+OK"):
                    return False  # refused at a limit: wait for the sessions to end
                client.send(b"QUIT\r\n")
                client.line()
                return True
            finally:
                client.close()

        wait_for(greeted, what="a session to be accepted")

        def idle() -> bool:
            if pooled():  # the workers stay; their titles count the sessions
                return sessions_running(self.daemon.pid) == 0
            log = self.daemon.log()
            started = len(re.findall(r"\} \S+ connect$", log, re.M))
            return started == log.count("Dead Child pid:") and not child_pids(self.daemon.pid)

        wait_for(idle, what="every session reaped")

    def assert_serving(self) -> None:
        """The master is alive and a fresh, normal session works."""
        assert self.daemon.proc.poll() is None, self.daemon.log()
        client = self.login("probe")
        client.stat()
        assert client.quit().startswith(b"+OK")
