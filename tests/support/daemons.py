"""Real daemons started as processes on loopback with free ports, torn down with TERM and
checked for leftover children; the polling wait every test uses instead of a bare sleep."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
PORT_FLAGS = {"msmpd": "-P", "mailstatd": ""}  # the flag that sets each daemon's port


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
