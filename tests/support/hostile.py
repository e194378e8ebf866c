"""What the hostile-input suites (tests/*/test_*_hostile.py) share: the attacks as functions of a
connected socket, snapshots of the mail on disk, the names that must never become paths, a
child's memory from /proc, and the check that no log holds a password."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

from support.daemons import child_pids, wait_for

MIB = 1 << 20
# Names that must never reach the file system as given (DESIGN.md "Storage").
HOSTILE_NAMES = [
    "..",
    "../alice",
    "../../etc/passwd",
    "/etc/passwd",
    "alice/../bob",
    "al\x00ice",
    "a" * 5000,
    "\uff0fetc\uff0fpasswd",  # fullwidth solidus
    "\u2024\u2024\u2215etc",  # one-dot leaders, division slash
    ".hidden",
    "~root",
    "INBOX/../..",
]
SECRET_FILE = b"root:x:0:0:planted secret, never to be served\n"


def junk(size: int, seed: int = 13) -> bytes:
    """Reproducible binary junk: NULs, 8-bit bytes, lone CRs, a few LFs."""
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(size))


def mail_snapshot(base: Path) -> dict[str, bytes]:
    """Every message file under the mail base (relative path -> content) and every directory."""
    found: dict[str, bytes] = {}
    for path in sorted(base.rglob("*")):
        relative = str(path.relative_to(base))
        if path.is_symlink():
            found[relative] = b"-> " + os.readlink(path).encode()
        elif path.is_dir():
            found[relative + "/"] = b""
        elif path.parent.name in ("cur", "new", "tmp"):
            found[relative] = path.read_bytes()
    return found


def read_until_closed(sock: socket.socket, timeout: float = 15.0) -> bytes:
    """Everything the server sends until it closes the connection (or `timeout` passes)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        return data
    except TimeoutError:
        raise AssertionError(f"server did not close; it sent {data[-300:]!r}") from None
    raise AssertionError(f"server did not close; it sent {data[-300:]!r}")


def send_all_ignoring_reset(sock: socket.socket, data: bytes) -> None:
    """Send what the server will take: it may close on us half-way (too long, too bad)."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def half_close(sock: socket.socket, partial: bytes) -> bytes:
    """Send a command cut short, shut our side (SHUT_WR), then read what comes until EOF."""
    sock.sendall(partial)
    sock.shutdown(socket.SHUT_WR)
    return read_until_closed(sock)


def slowloris(sock: socket.socket, data: bytes, interval: float, budget: float) -> bytes:
    """One byte every `interval` seconds, at most `budget` seconds; then read until EOF. The
    server must close (its idle timeout bounds a whole line) before the budget is spent."""
    deadline = time.monotonic() + budget
    sock.settimeout(interval)
    received = b""
    for byte in data:
        if time.monotonic() > deadline:
            raise AssertionError(f"the server kept a slow client for {budget} s: {received!r}")
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            return received
        received += chunk
    return received + read_until_closed(sock, max(1.0, deadline - time.monotonic()))


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def session_child(master: int, title: str) -> int:
    """The master's child whose process title holds `title` (`imapd: bob 127.0.0.1 NOOP`)."""

    def find() -> int | None:
        for pid in child_pids(master):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if title.encode() in cmdline:
                return pid
        return None

    return wait_for(find, what=f"the session of {title!r}")


def assert_no_secret(log: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in log, f"{secret!r} is in the log"


def attacks(first_line: bytes) -> dict[str, Callable[[socket.socket], bytes]]:
    """The socket attacks every daemon gets, after its greeting was read."""
    return {
        "binary junk": lambda s: (send_all_ignoring_reset(s, junk(64 * 1024)), b"")[1],
        "1 MiB line": lambda s: (
            send_all_ignoring_reset(s, first_line + b"x" * MIB + b"\r\n"),
            b"",
        )[1],
        "NUL bytes": lambda s: (send_all_ignoring_reset(s, b"\x00" * 4096 + b"\r\n"), b"")[1],
        "half-closed": lambda s: half_close(s, first_line[: max(1, len(first_line) // 2)]),
    }
