"""Real daemons started as processes on loopback with free ports, torn down with TERM and
checked for leftover children; the polling wait every test uses instead of a bare sleep."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
PORT_FLAGS = {"msmpd": "-P", "mailstatd": ""}  # the flag that sets each daemon's port
# `pytest --process-model pool` (tests/conftest.py) runs every session daemon the tests start in
# that process model; empty: the daemons' default (fork).
MODEL_ENV = "MAILDAEMONS_TEST_PROCESS_MODEL"
SESSION_DAEMONS = ("pop3d", "imapd", "imapgw", "msmpd")


def process_model() -> str:
    return os.environ.get(MODEL_ENV, "") or "fork"


def pooled() -> bool:
    return process_model() == "pool"


def with_process_model(name: str, config: str | None, args: tuple[str, ...]) -> str | None:
    """The test's config with `process_model` set as the run asks, unless the test chose one
    itself (in its config, or by naming a config file of its own)."""
    model = os.environ.get(MODEL_ENV, "")
    if not model or name not in SESSION_DAEMONS or "-c" in args or "--config" in args:
        return config
    line = f"process_model = {model}\n"
    if config is None:
        return "[common]\n" + line
    if "process_model" in config:
        return config
    if "[common]\n" in config:
        return config.replace("[common]\n", "[common]\n" + line, 1)
    return "[common]\n" + line + config


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


WORKER_TITLE = re.compile(rb": worker \d+ \((\d+) sessions\)")
SESSION_LINE = re.compile(r"\[(\d+)\]: \{(\d+)\} \S+ connect$", re.M)


def title(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0")
    except OSError:
        return b""


def workers(pid: int) -> list[int]:
    """A pool-model daemon's workers (its children whose title says so)."""
    return [kid for kid in child_pids(pid) if WORKER_TITLE.search(title(kid))]


def sessions_running(pid: int) -> int:
    """Sessions a daemon serves now: its children (fork model), or what its workers' titles
    count (pool model: `pop3d: worker 1 (3 sessions)`)."""
    kids = child_pids(pid)
    if not pooled():
        return len(kids)
    total = 0
    for kid in kids:
        found = WORKER_TITLE.search(title(kid))
        total += int(found.group(1)) if found else 0
    return total


def serving_process(daemon: Daemon, client: socket.socket, timeout: float = 10.0) -> int:
    """The daemon's child that holds the server end of `client`'s connection (either model):
    found through the kernel's socket table, not the log, which workers write concurrently."""
    client_port = client.getsockname()[1]

    def server_end_inodes() -> set[str]:
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError):
                for row in Path(table).read_text().splitlines()[1:]:
                    fields = row.split()
                    if int(fields[2].rsplit(":", 1)[1], 16) == client_port:
                        inodes.add(fields[9])
        return inodes

    def holder() -> int:
        inodes = {f"socket:[{inode}]" for inode in server_end_inodes() if inode != "0"}
        for kid in child_pids(daemon.pid):
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{kid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        if os.readlink(fd) in inodes:
                            return kid
        return 0

    return wait_for(holder, timeout, what="the process serving the connection")


def session_process(daemon: Daemon, before: set[int] | None = None, timeout: float = 10.0) -> int:
    """The process that serves the daemon's newest session: its child (fork model; one not in
    `before`), or the worker that logged its `connect` (pool model)."""
    if pooled():

        def newest() -> int:
            # The highest session number, not the last line: workers log concurrently.
            found = SESSION_LINE.findall(daemon.log())
            return int(max(found, key=lambda f: int(f[1]))[0]) if found else 0

        return wait_for(newest, timeout, what="the session's worker")
    return wait_for(
        lambda: next(iter(set(child_pids(daemon.pid)) - (before or set())), 0),
        timeout,
        what="the session's child",
    )


CONNECT_LINE = re.compile(r"\{(\d+)\} \S+ connect$", re.M)


def session_tokens(daemon: Daemon) -> set[int]:
    """What tells a daemon's sessions apart: its children's pids (fork model), or the session
    numbers of the `connect` lines in its log (pool model)."""
    if pooled():
        return {int(n) for n in CONNECT_LINE.findall(daemon.log())}
    return set(child_pids(daemon.pid))


def new_session(daemon: Daemon, before: set[int], timeout: float = 10.0) -> int:
    """The token of a session that was not among `before`."""
    return wait_for(
        lambda: min(session_tokens(daemon) - before, default=0), timeout, what="the new session"
    )


def reloads(daemon: Daemon, line: str = "configuration reloaded") -> int:
    """How many HUPs the daemon has taken in whole (`line` logged for each): by the master,
    and in the pool model by every worker as well, each of which reloads on its own."""
    log = daemon.log()
    if not pooled():
        return log.count(line)
    pids = [daemon.pid, *workers(daemon.pid)]
    return min(log.count(f"[{pid}]: {line}") for pid in pids)


def session_ended(daemon: Daemon, token: int) -> bool:
    """Whether the session `token` is over: its child reaped (fork model), or its own last
    line logged (pool model: `{N} address session end`)."""
    if pooled():
        return re.search(rf"\{{{token}\}} \S+ session end", daemon.log()) is not None
    return f"Dead Child pid: {token}\n" in daemon.log()


def ended_sessions(daemon: Daemon) -> int:
    if pooled():
        return len(re.findall(r"\} \S+ session end", daemon.log()))
    return daemon.log().count("Dead Child pid: ")


def session_log(daemon: Daemon, token: int) -> str:
    """The log lines of one session."""
    mark = f"{{{token}}} " if pooled() else f"[{token}]: "
    return "".join(line for line in daemon.log().splitlines(True) if mark in line)


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


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
        config = with_process_model(name, config, args)
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
