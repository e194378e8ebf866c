"""Load tool for the mail daemons: full protocol sessions at K parallel clients, and a hold test.

    bench/load.py rate --protocol pop3 --port 21110 --clients 4 --duration 10
    bench/load.py hold --protocol pop3 --port 21110 --connections 1000 --server-pid PID

`rate` runs K client processes (not threads: the GIL would make the tool the bottleneck) for T
seconds; each runs whole sessions back to back over raw sockets, one command at a time with its
whole reply read before the next, and users are split between the clients so no two clients ever
use the same maildrop at once. It prints sessions/s and the p50/p99 of one whole session (connect to
the last reply). `hold` opens N authenticated connections (one user each), leaves them idle, then
sends NOOP on each and prints how many answered; with `--server-pid` it also prints the server's
memory per held connection (PSS of the master and all its descendants, minus the idle baseline).

With `--proxy v1|v2` every connection starts with a PROXY protocol header, as a load balancer's
would (HAProxy's send-proxy / send-proxy-v2), naming a client of 192.0.2.0/24 per client process;
the server must expect one (`proxy_protocol`, `proxy_trusted`; compare.py --proxy sets them).

A protocol is one entry of PROTOCOLS: its session (POP3: USER, PASS, STAT, RETR 1, QUIT; IMAP:
LOGIN, SELECT INBOX, FETCH 1:* (FLAGS UID RFC822.SIZE), LOGOUT), its login for `hold`, its NOOP and
its logout. Every loop is bounded in count and in time; every process started is ended by pid.
`bench/compare.py` drives this module against our daemon and the reference Dovecot side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import re
import resource
import signal
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import ClassVar

DEFAULT_TIMEOUT = 10.0  # one socket operation (connect, recv, send)
START_DELAY = 0.3  # workers start together this long after they are forked
MAX_ERRORS_PER_WORKER = 200
HOLD_WORKERS = 8
RECV_SIZE = 65536
DEFAULT_PASSWORD = "pass"  # every user's, as in the reference Dovecot set-up


class ProtocolError(Exception):
    """The server answered something other than success, or closed the connection."""


# -- one client connection ------------------------------------------------------------------------


def proxy_header(version: str, port: int) -> bytes:
    """A PROXY header naming this process's client, 192.0.2.<pid % 250 + 1>, and `port`."""
    client = f"192.0.2.{os.getpid() % 250 + 1}"
    if version == "v1":
        return f"PROXY TCP4 {client} 127.0.0.1 {40000 + os.getpid() % 20000} {port}\r\n".encode()
    payload = socket.inet_aton(client) + socket.inet_aton("127.0.0.1")
    payload += struct.pack("!HH", 40000 + os.getpid() % 20000, port)
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    return signature + b"\x21\x11" + struct.pack("!H", len(payload)) + payload


class Conn:
    """A raw client socket with a receive buffer; one reply read per command."""

    proxy: ClassVar[str] = ""  # "v1" or "v2": each connection starts with a PROXY header

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        if self.proxy:
            self.sock.sendall(proxy_header(self.proxy, port))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv(self) -> None:
        data = self.sock.recv(RECV_SIZE)
        if not data:
            raise ProtocolError("connection closed by server")
        self.buf += data

    def read_line(self) -> bytes:
        """One line with its CRLF."""
        start = 0
        while True:
            end = self.buf.find(b"\n", start)
            if end >= 0:
                line = bytes(self.buf[: end + 1])
                del self.buf[: end + 1]
                return line
            start = len(self.buf)
            self._recv()

    def read_exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            self._recv()
        data = bytes(self.buf[:size])
        del self.buf[:size]
        return data

    def read_dot_body(self) -> bytes:
        """A POP3 multi-line body up to and including the terminating '.' line."""
        start = 0
        while True:
            if self.buf.startswith(b".\r\n"):
                end = 3
                break
            found = self.buf.find(b"\r\n.\r\n", start)
            if found >= 0:
                end = found + 5
                break
            start = max(0, len(self.buf) - 4)
            self._recv()
        body = bytes(self.buf[:end])
        del self.buf[:end]
        return body

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


Mark = Callable[[], None]


class Marks(list[float]):
    """Called after each step of a session: records when that step's reply was complete."""

    def __call__(self) -> None:
        self.append(time.monotonic())


# -- POP3 -----------------------------------------------------------------------------------------


def pop3_reply(conn: Conn) -> bytes:
    line = conn.read_line()
    if not line.startswith(b"+OK"):
        raise ProtocolError(line.decode("latin-1").strip()[:80] or "empty reply")
    return line


def pop3_command(conn: Conn, command: str, multiline: bool = False) -> bytes:
    conn.send(command.encode() + b"\r\n")
    line = pop3_reply(conn)
    return line + conn.read_dot_body() if multiline else line


def pop3_login(conn: Conn, user: str, password: str, mark: Mark) -> None:
    pop3_reply(conn)  # greeting
    mark()
    pop3_command(conn, f"USER {user}")
    mark()
    pop3_command(conn, f"PASS {password}")
    mark()


def pop3_session(conn: Conn, user: str, password: str, mark: Mark) -> None:
    pop3_login(conn, user, password, mark)
    pop3_command(conn, "STAT")
    mark()
    pop3_command(conn, "RETR 1", multiline=True)
    mark()
    pop3_command(conn, "QUIT")
    mark()


def pop3_hold_login(conn: Conn, user: str, password: str) -> None:
    pop3_login(conn, user, password, _no_mark)


def pop3_noop(conn: Conn) -> None:
    pop3_command(conn, "NOOP")


def pop3_logout(conn: Conn) -> None:
    pop3_command(conn, "QUIT")


# -- IMAP -----------------------------------------------------------------------------------------

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r?\n$")


class ImapConn:
    """Tag counter and line reader that keeps literals inside their line."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.tag = 0

    def read_response_line(self) -> bytes:
        line = self.conn.read_line()
        parts = [line]
        while True:
            literal = _LITERAL.search(line)
            if literal is None:
                return b"".join(parts)
            parts.append(self.conn.read_exact(int(literal.group(1))))
            line = self.conn.read_line()
            parts.append(line)

    def command(self, text: str) -> list[bytes]:
        self.tag += 1
        tag = f"a{self.tag}".encode()
        self.conn.send(tag + b" " + text.encode() + b"\r\n")
        lines = []
        while True:
            line = self.read_response_line()
            lines.append(line)
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1 :].startswith(b"OK"):
                    raise ProtocolError(line.decode("latin-1").strip()[:80])
                return lines


def imap_greeting(conn: Conn) -> ImapConn:
    line = conn.read_line()
    if not line.startswith(b"* OK"):
        raise ProtocolError(line.decode("latin-1").strip()[:80] or "empty greeting")
    return ImapConn(conn)


def imap_session(conn: Conn, user: str, password: str, mark: Mark) -> None:
    imap = imap_greeting(conn)
    mark()
    imap.command(f"LOGIN {user} {password}")
    mark()
    imap.command("SELECT INBOX")
    mark()
    imap.command("FETCH 1:* (FLAGS UID RFC822.SIZE)")
    mark()
    imap.command("LOGOUT")
    mark()


def imap_hold_login(conn: Conn, user: str, password: str) -> None:
    imap = imap_greeting(conn)
    imap.command(f"LOGIN {user} {password}")
    imap.command("SELECT INBOX")
    conn.imap = imap  # type: ignore[attr-defined]


def imap_noop(conn: Conn) -> None:
    conn.imap.command("NOOP")  # type: ignore[attr-defined]


def imap_logout(conn: Conn) -> None:
    conn.imap.command("LOGOUT")  # type: ignore[attr-defined]


# -- the protocol table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    name: str
    steps: tuple[str, ...]  # what each mark() of `session` ends: the latency breakdown
    session: Callable[[Conn, str, str, Mark], None]
    hold_login: Callable[[Conn, str, str], None]
    noop: Callable[[Conn], None]
    logout: Callable[[Conn], None]


PROTOCOLS: dict[str, Protocol] = {
    "pop3": Protocol(
        "pop3",
        ("connect+greeting", "USER", "PASS", "STAT", "RETR 1", "QUIT"),
        pop3_session,
        pop3_hold_login,
        pop3_noop,
        pop3_logout,
    ),
    "imap": Protocol(
        "imap",
        ("connect+greeting", "LOGIN", "SELECT", "FETCH 1:*", "LOGOUT"),
        imap_session,
        imap_hold_login,
        imap_noop,
        imap_logout,
    ),
}


def _no_mark() -> None:
    pass


def user_names(count: int, first: int = 0, fmt: str = "user{}") -> list[str]:
    return [fmt.format(i) for i in range(first, first + count)]


# -- rate: K clients for T seconds ----------------------------------------------------------------


@dataclass
class RateResult:
    protocol: str
    clients: int
    sessions: int
    elapsed: float
    latencies: list[float]  # seconds, one per completed session
    steps: dict[str, list[float]]  # seconds per step, one per completed session
    errors: Counter[str] = field(default_factory=Counter)
    client_cpu: float = 0.0  # seconds of CPU the client processes used

    @property
    def rate(self) -> float:
        return self.sessions / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, p: float) -> float:
        return percentile(self.latencies, p)

    def step_medians(self) -> dict[str, float]:
        return {name: percentile(values, 50) for name, values in self.steps.items()}

    def merge(self, other: RateResult) -> None:
        """Add another run of the same protocol and client count (rounds of one measurement)."""
        self.sessions += other.sessions
        self.elapsed += other.elapsed
        self.latencies.extend(other.latencies)
        for name, values in other.steps.items():
            self.steps.setdefault(name, []).extend(values)
        self.errors.update(other.errors)
        self.client_cpu += other.client_cpu


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def rate_worker(
    protocol: str,
    host: str,
    port: int,
    users: list[str],
    password: str,
    start_at: float,
    end_at: float,
    max_sessions: int,
    timeout: float,
    out: Connection,
) -> None:
    """One client process: whole sessions back to back until end_at or max_sessions."""
    proto = PROTOCOLS[protocol]
    latencies: list[float] = []
    steps: list[list[float]] = []
    errors: Counter[str] = Counter()
    first_start = last_end = 0.0
    delay = start_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    index = 0
    while (
        len(latencies) < max_sessions
        and time.monotonic() < end_at
        and sum(errors.values()) < MAX_ERRORS_PER_WORKER
    ):
        user = users[index % len(users)]
        index += 1
        marks = Marks()
        begin = time.monotonic()
        first_start = first_start or begin
        conn = None
        try:
            conn = Conn(host, port, timeout)
            proto.session(conn, user, password, marks)
        except (OSError, ProtocolError) as exc:
            errors[describe_error(exc)] += 1
            time.sleep(0.01)  # a refusing server must not turn this into a busy loop
            continue
        finally:
            if conn is not None:
                conn.close()
        last_end = marks[-1]
        latencies.append(last_end - begin)
        steps.append([b - a for a, b in zip([begin, *marks], marks, strict=False)])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.send(
        {
            "latencies": latencies,
            "steps": steps,
            "errors": dict(errors),
            "first_start": first_start,
            "last_end": last_end,
            "cpu": usage.ru_utime + usage.ru_stime,
        }
    )
    out.close()


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ProtocolError):
        return f"reply: {exc}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"


def run_rate(
    protocol: str,
    host: str,
    port: int,
    clients: int,
    duration: float,
    users: list[str],
    password: str = DEFAULT_PASSWORD,
    max_sessions: int = 10**7,
    timeout: float = DEFAULT_TIMEOUT,
) -> RateResult:
    """K client processes, each with its own share of the users, for `duration` seconds."""
    if clients < 1 or len(users) < clients:
        raise ValueError(f"need a user per client: {len(users)} users, {clients} clients")
    ctx = multiprocessing.get_context("fork")
    start_at = time.monotonic() + START_DELAY
    end_at = start_at + duration
    workers = []
    for index in range(clients):
        reader, writer = ctx.Pipe(duplex=False)
        process = ctx.Process(
            target=rate_worker,
            daemon=True,
            args=(
                protocol,
                host,
                port,
                users[index::clients],
                password,
                start_at,
                end_at,
                max_sessions,
                timeout,
                writer,
            ),
        )
        process.start()
        writer.close()
        workers.append((process, reader))
    # A session in flight at end_at finishes within a few socket timeouts at worst.
    deadline = end_at + 6 * timeout + 5.0
    reports = collect(workers, deadline)
    result = RateResult(protocol, clients, 0, 0.0, [], {s: [] for s in PROTOCOLS[protocol].steps})
    first = min((r["first_start"] for r in reports if r["first_start"]), default=start_at)
    last = max((r["last_end"] for r in reports), default=first)
    for report in reports:
        result.latencies.extend(report["latencies"])
        for row in report["steps"]:
            for name, value in zip(result.steps, row, strict=False):
                result.steps[name].append(value)
        result.errors.update(report["errors"])
        result.client_cpu += report["cpu"]
    result.errors["worker lost"] += clients - len(reports)
    result.errors = +result.errors
    result.sessions = len(result.latencies)
    result.elapsed = max(last - first, 1e-9)
    return result


def collect(
    workers: list[tuple[multiprocessing.process.BaseProcess, Connection]], deadline: float
) -> list[dict]:
    """Each worker's one report; a worker still running at the deadline is killed by pid."""
    reports = []
    for _process, reader in workers:
        try:
            if reader.poll(max(0.0, deadline - time.monotonic())):
                reports.append(reader.recv())
        except (EOFError, OSError):
            pass
        finally:
            reader.close()
    for process, _reader in workers:
        process.join(max(0.0, min(2.0, deadline - time.monotonic())))
        if process.is_alive() and process.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.join(2.0)
    return reports


# -- hold: N authenticated idle connections, then NOOP on each ------------------------------------


@dataclass
class HoldResult:
    protocol: str
    wanted: int
    held: int = 0
    noop_ok: int = 0
    open_seconds: float = 0.0
    noop_latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    pss_idle: int = 0  # bytes, server tree before
    pss_held: int = 0  # bytes, server tree with `held` connections
    processes_idle: int = 0
    processes_held: int = 0

    @property
    def pss_per_connection(self) -> float:
        return (self.pss_held - self.pss_idle) / self.held if self.held else 0.0


def hold_worker(
    protocol: str,
    host: str,
    port: int,
    users: list[str],
    password: str,
    timeout: float,
    control: Connection,
) -> None:
    """Open and log in one connection per user, then obey the parent: 'noop', then 'close'."""
    proto = PROTOCOLS[protocol]
    conns: list[Conn] = []
    errors: Counter[str] = Counter()
    for user in users:
        conn = None
        try:
            conn = Conn(host, port, timeout)
            proto.hold_login(conn, user, password)
            conns.append(conn)
        except (OSError, ProtocolError) as exc:
            errors[describe_error(exc)] += 1
            if conn is not None:
                conn.close()
    control.send({"held": len(conns), "errors": dict(errors)})
    try:
        while control.poll(3600):
            order = control.recv()
            if order == "noop":
                ok, times, noop_errors = 0, [], Counter()
                for conn in conns:
                    begin = time.monotonic()
                    try:
                        proto.noop(conn)
                    except (OSError, ProtocolError) as exc:
                        noop_errors[describe_error(exc)] += 1
                        continue
                    times.append(time.monotonic() - begin)
                    ok += 1
                control.send({"ok": ok, "times": times, "errors": dict(noop_errors)})
            elif order == "close":
                for conn in conns:
                    with contextlib.suppress(OSError, ProtocolError):
                        proto.logout(conn)
                    conn.close()
                control.send({"closed": len(conns)})
                return
    except (EOFError, OSError):
        pass
    finally:
        for conn in conns:
            conn.close()


def run_hold(
    protocol: str,
    host: str,
    port: int,
    users: list[str],
    password: str = DEFAULT_PASSWORD,
    workers: int = HOLD_WORKERS,
    timeout: float = DEFAULT_TIMEOUT,
    server_pid: int | None = None,
    settle: float = 1.0,
    before_measure: Callable[[], None] | None = None,
) -> HoldResult:
    """Hold len(users) connections; measure the server's PSS before and while holding them."""
    raise_fd_limit(len(users) + 64)
    result = HoldResult(protocol, len(users))
    if server_pid:
        result.pss_idle, result.processes_idle = tree_pss(server_pid)
    ctx = multiprocessing.get_context("fork")
    count = max(1, min(workers, len(users)))
    procs = []
    begin = time.monotonic()
    for index in range(count):
        parent_end, child_end = ctx.Pipe(duplex=True)
        process = ctx.Process(
            target=hold_worker,
            daemon=True,
            args=(protocol, host, port, users[index::count], password, timeout, child_end),
        )
        process.start()
        child_end.close()
        procs.append((process, parent_end))
    per_worker_bound = (len(users) // count + 1) * 4 * timeout + 10.0
    try:
        for report in ask(procs, None, begin + per_worker_bound):
            result.held += report["held"]
            result.errors.update(report["errors"])
        result.open_seconds = time.monotonic() - begin
        if server_pid:
            time.sleep(settle)  # let the last logins finish their own work
            if before_measure is not None:
                before_measure()
            result.pss_held, result.processes_held = tree_pss(server_pid)
        for report in ask(procs, "noop", time.monotonic() + per_worker_bound):
            result.noop_ok += report["ok"]
            result.noop_latencies.extend(report["times"])
            result.errors.update({f"noop {k}": v for k, v in report["errors"].items()})
        ask(procs, "close", time.monotonic() + per_worker_bound)
    finally:
        for process, pipe in procs:
            pipe.close()
            process.join(5.0)
            if process.is_alive() and process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.join(2.0)
    lost = (
        result.wanted
        - result.held
        - sum(v for k, v in result.errors.items() if not k.startswith("noop "))
    )
    if lost > 0:
        result.errors["worker lost"] += lost
    return result


def ask(
    procs: list[tuple[multiprocessing.process.BaseProcess, Connection]],
    order: str | None,
    deadline: float,
) -> list[dict]:
    if order is not None:
        for _process, pipe in procs:
            with contextlib.suppress(OSError):
                pipe.send(order)
    answers = []
    for _process, pipe in procs:
        try:
            if pipe.poll(max(0.0, deadline - time.monotonic())):
                answers.append(pipe.recv())
        except (EOFError, OSError):
            pass
    return answers


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(max(wanted, soft), hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if os.geteuid() == 0 and target < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))


# -- the server's processes: PSS and CPU from /proc -----------------------------------------------


def proc_stats() -> Iterator[tuple[int, bytes, list[bytes]]]:
    """(pid, command name, the fields after the name) of each process's /proc/PID/stat."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        name = stat[stat.find(b"(") + 1 : stat.rfind(b")")]
        yield int(entry), name, stat[stat.rfind(b")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """`root` and every process below it (from /proc/*/stat parent pids)."""
    children: dict[int, list[int]] = {}
    for pid, _name, fields in proc_stats():
        children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def process_pss(pid: int) -> int:
    """Bytes of PSS of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_pss(root: int) -> tuple[int, int]:
    """(PSS bytes summed over `root` and its descendants, number of processes)."""
    pids = descendants(root)
    return sum(process_pss(pid) for pid in pids), len(pids)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def ksmd_cpu() -> float:
    """CPU seconds the kernel's ksmd has used since boot (0 when there is none)."""
    for _pid, name, fields in proc_stats():
        if name == b"ksmd":
            return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return 0.0


def machine_busy() -> float:
    """CPU seconds all CPUs spent busy (user, nice, system, irq, softirq) since boot."""
    with open("/proc/stat", "rb") as handle:
        fields = handle.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / CLOCK_TICKS


def tree_cpu(root: int) -> float:
    """CPU seconds used by `root`'s tree, including children it has already reaped."""
    total = 0
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / CLOCK_TICKS


# -- command line ---------------------------------------------------------------------------------


def format_rate(result: RateResult, server_cpu: float | None = None) -> str:
    text = (
        f"{result.protocol} clients={result.clients} sessions={result.sessions} "
        f"elapsed={result.elapsed:.2f}s rate={result.rate:.1f}/s "
        f"p50={result.percentile(50) * 1000:.2f}ms p99={result.percentile(99) * 1000:.2f}ms "
        f"client_cpu={result.client_cpu * 1000 / max(1, result.sessions):.2f}ms/session"
    )
    if server_cpu is not None:
        text += f" server_cpu={server_cpu * 1000 / max(1, result.sessions):.2f}ms/session"
    steps = " ".join(f"{name}={value * 1000:.2f}" for name, value in result.step_medians().items())
    text += f"\n  step p50 ms: {steps}"
    if result.errors:
        text += f"\n  errors: {dict(result.errors)}"
    return text


def format_hold(result: HoldResult) -> str:
    text = (
        f"{result.protocol} hold wanted={result.wanted} held={result.held} "
        f"noop_ok={result.noop_ok} open={result.open_seconds:.1f}s "
        f"noop_p50={percentile(result.noop_latencies, 50) * 1000:.2f}ms"
    )
    if result.pss_idle or result.pss_held:
        text += (
            f" pss_idle={result.pss_idle / 2**20:.1f}MiB "
            f"({result.processes_idle} procs) pss_held={result.pss_held / 2**20:.1f}MiB "
            f"({result.processes_held} procs) "
            f"per_connection={result.pss_per_connection / 2**20:.2f}MiB"
        )
    if result.errors:
        text += f"\n  errors: {dict(result.errors)}"
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode in ("rate", "hold"):
        p = sub.add_parser(mode)
        p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="pop3")
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--password", default=DEFAULT_PASSWORD)
        p.add_argument("--user-format", default="user{}", help="user name pattern (default user{})")
        p.add_argument("--first-user", type=int, default=0)
        p.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT,
            help="seconds for one socket operation",
        )
        p.add_argument(
            "--server-pid",
            type=int,
            help="server master pid: CPU per session (rate), PSS per connection (hold)",
        )
        p.add_argument(
            "--proxy", choices=("v1", "v2"), help="start each connection with a PROXY header"
        )
        if mode == "rate":
            p.add_argument("--clients", type=int, default=4)
            p.add_argument("--duration", type=float, default=10.0)
            p.add_argument("--users", type=int, default=1000)
            p.add_argument("--max-sessions", type=int, default=10**7, help="per client process")
        else:
            p.add_argument("--connections", type=int, default=1000)
            p.add_argument("--workers", type=int, default=HOLD_WORKERS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    Conn.proxy = args.proxy or ""
    if args.mode == "rate":
        users = user_names(args.users, args.first_user, args.user_format)
        cpu_before = tree_cpu(args.server_pid) if args.server_pid else 0.0
        result = run_rate(
            args.protocol,
            args.host,
            args.port,
            args.clients,
            args.duration,
            users,
            args.password,
            args.max_sessions,
            args.timeout,
        )
        server_cpu = None
        if args.server_pid:
            time.sleep(0.3)
            server_cpu = tree_cpu(args.server_pid) - cpu_before
        print(format_rate(result, server_cpu))
        return 1 if result.errors else 0
    users = user_names(args.connections, args.first_user, args.user_format)
    hold = run_hold(
        args.protocol,
        args.host,
        args.port,
        users,
        args.password,
        args.workers,
        args.timeout,
        args.server_pid,
    )
    print(format_hold(hold))
    return 0 if hold.noop_ok == hold.wanted and not hold.errors else 1


if __name__ == "__main__":
    sys.exit(main())
