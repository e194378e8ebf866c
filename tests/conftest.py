"""Shared fixtures: real daemons started as processes on loopback with free ports and temporary
Maildirs, torn down with TERM and checked for leftover children."""

from __future__ import annotations

import contextlib
import os
import poplib
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
PORT_FLAGS = {"msmpd": "-P", "mailstatd": ""}  # the flag that sets each daemon's port
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` from /proc."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def deliver(maildir: Path, data: bytes, name: str | None = None, subdir: str = "new") -> Path:
    """Drop a message into a Maildir the way an MTA does (tmp/ then rename)."""
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    deliver.counter += 1  # type: ignore[attr-defined]
    name = name or f"{1700000000 + deliver.counter}.M{deliver.counter}P{os.getpid()}.testhost"  # type: ignore[attr-defined]
    tmp = maildir / "tmp" / name
    tmp.write_bytes(data)
    target = maildir / subdir / name
    os.rename(tmp, target)
    return target


deliver.counter = 0  # type: ignore[attr-defined]


@dataclass
class Daemon:
    """A daemon started with -f as a subprocess of the test."""

    name: str
    proc: subprocess.Popen
    port: int
    root: Path
    logfile: Path
    args: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def connect(self, timeout: float = 10.0, source: str | None = None) -> socket.socket:
        sock = socket.create_connection(
            ("127.0.0.1", self.port),
            timeout=timeout,
            source_address=(source, 0) if source else None,
        )
        return sock

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"{self.name} did not stop on signal {sig}") from None


class DaemonFactory:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Daemon] = []

    def start(
        self,
        name: str,
        *args: str,
        port: int | None = None,
        wait: bool = True,
        config: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Daemon:
        root = self.tmp_path
        port = port or free_port()
        logfile = root / f"{name}-{port}.log"
        cmd = [str(BIN / name), "-f", *args]
        if config is not None:
            conf = root / f"{name}-{port}.conf"
            conf.write_text(config)
            cmd += ["-c", str(conf)]
        port_flag = PORT_FLAGS.get(name, "-p")  # msmpd keeps seed 003's -P
        cmd += [port_flag, str(port)] if port_flag and port_flag not in args else []
        with open(logfile, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=root,
                env={**os.environ, **(env or {})},
            )
        daemon = Daemon(name, proc, port, root, logfile, cmd)
        self.started.append(daemon)
        if wait:

            def ready() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited {proc.returncode}: {daemon.log()}")
                return port_open(port)

            wait_for(ready, what=f"{name} on port {port}")
        return daemon

    def stop_all(self) -> None:
        for daemon in self.started:
            if daemon.proc.poll() is None:
                kids = child_pids(daemon.pid)
                daemon.stop()
                for kid in kids:
                    with contextlib.suppress(AssertionError):
                        wait_for(
                            lambda k=kid: not Path(f"/proc/{k}").exists() or is_zombie(k),
                            timeout=5,
                            what=f"child {kid} gone",
                        )


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[DaemonFactory]:
    factory = DaemonFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@dataclass
class MailSite:
    """A temporary mail base, state directory and config for one test."""

    root: Path
    mail: Path
    state: Path
    run: Path

    def maildir(self, user: str) -> Path:
        path = self.mail / user
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        return path

    def common_args(self) -> list[str]:
        return [
            "-d",
            str(self.mail),
            "--state-dir",
            str(self.state),
            "--stats-socket",
            str(self.run / "mailstatd.sock"),
        ]

    def config(self, extra: str = "") -> str:
        return (
            f"[common]\nmail_base = {self.mail}\nstate_dir = {self.state}\n"
            f"run_dir = {self.run}\nusers_file = {self.root / 'users'}\n"
            f"admins_file = {self.root / 'admins'}\nauth_failure_delay = 0\n"
            f"shutdown_grace = 5\n{extra}"
        )


@pytest.fixture
def site(tmp_path: Path) -> MailSite:
    site = MailSite(tmp_path, tmp_path / "mail", tmp_path / "state", tmp_path / "run")
    for path in (site.mail, site.state, site.run):
        path.mkdir()
    (tmp_path / "users").write_text("")
    (tmp_path / "admins").write_text("")
    return site


class LineClient:
    """A raw-socket client that sends lines (CRLF or bare LF) and reads replies."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed; buffered {self.buf[:200]!r}")
        self.buf += chunk

    def line(self) -> bytes:
        """One line, with its line end."""
        while b"\n" not in self.buf:
            self._more()
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def until(self, terminator: bytes) -> bytes:
        """Read lines until one equals `terminator` (e.g. b'.\\r\\n'); return them all."""
        out = b""
        while True:
            line = self.line()
            out += line
            if line == terminator:
                return out

    def closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within `timeout`."""
        previous = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(previous)

    def close(self) -> None:
        self.sock.close()


# -- pop3d -------------------------------------------------------------------------------------

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


@pytest.fixture
def pop3d(daemons: DaemonFactory, site: MailSite):
    """Factory: start(extra_config, *flags, users=POP3_USERS) -> Pop3Server on 127.0.0.1."""

    def start(
        extra: str = "", *args: str, users: dict[str, str] | None = None, wait: bool = True
    ) -> Pop3Server:
        flags: list[str] = []
        for name, password in (POP3_USERS if users is None else users).items():
            flags += ["-u", f"{name}:{password}"]
        daemon = daemons.start(
            "pop3d", "-l", "127.0.0.1", *flags, *args, config=site.config(extra), wait=wait
        )
        return Pop3Server(daemon, site)

    return start
