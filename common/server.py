"""The forking server: bind v4/v6, accept, fork a child per connection, reap on SIGCHLD.

The master owns the listeners, the `children` table, the limits and the signals, and does no
protocol work: a child gets the connected socket, runs the daemon's handler and ends with
`os._exit`. A listener may be an implicit-TLS one (imaps, pop3s): the handler is told, and the
child does the handshake, never the master. Signal handlers are no-ops that only wake the loop
through `signal.set_wakeup_fd`; the loop drains the wakeup socket and calls `on_<signal>()`
(seed 000's `tomb()` is `_reap`).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import resource
import selectors
import signal
import socket
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from common.lineio import drain
from common.proctitle import set_title
from common.proxy import ProxyGate, ProxyHeader, ProxyPolicy, Waiting
from common.stats import StatsClient

MASTER_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)
ACCEPTS_PER_WAKE = 64
FAST_STOP_GRACE = 1.0
ACCEPT_PAUSE = 0.5  # out of descriptors, even the spare one: try accepting again after this


class Handler(Protocol):
    """A daemon's connection handler: serves one session, returns the exit status."""

    def __call__(
        self,
        conn: socket.socket,
        address: str,  # the client's (from the PROXY header when one came)
        number: int,  # the session number
        interrupt_fd: int,  # readable: stop (TERM)
        tls: bool,  # accepted on an implicit-TLS listener
        via: str = "",  # the balancer that sent a PROXY header, for the connect line
    ) -> int: ...


# reason ('children' or 'address') -> the protocol's one-line refusal
BusyReply = Callable[[str], bytes]


class BindError(OSError):
    """A listener could not be bound; str() is the one line for the terminal."""

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True)
class Limits:
    """The master's limits from the config (0: no limit); HUP replaces the whole object."""

    max_children: int
    max_per_address: int
    shutdown_grace: float
    # The pool model's (common/pool.py); the fork model has no use for them.
    workers: int = 0
    worker_sessions: int = 1000
    worker_lifetime: int = 0
    worker_cpu_affinity: str = "auto"
    # The PROXY protocol's listeners, trusted proxies and header timeout (common/proxy.py).
    proxy: ProxyPolicy = ProxyPolicy()


@dataclass
class Child:
    pid: int
    address: str
    session: int
    started: float


def earliest(*timeouts: float | None) -> float | None:
    """The shortest of the timeouts given (None: no timeout), for one select()."""
    return min((t for t in timeouts if t is not None), default=None)


def client_address(peer: tuple[object, ...] | str) -> str:
    """The one client-address value for a connection (IPv4-mapped IPv6 shown as IPv4)."""
    if isinstance(peer, str) or not peer:
        return "local"
    host = str(peer[0])
    return host[7:] if host.startswith("::ffff:") and "." in host else host


def bind_listeners(addresses: list[str], port: int, backlog: int = 1024) -> list[socket.socket]:
    """Bind every address; '*' means all interfaces, IPv6 and IPv4 on one dual-stack socket."""
    listeners: list[socket.socket] = []
    try:
        for address in addresses:
            listeners.extend(bind_one(address, port, backlog))
    except OSError:
        for sock in listeners:
            sock.close()
        raise
    return listeners


def bind_one(address: str, port: int, backlog: int) -> list[socket.socket]:
    if address == "*":
        try:
            return [make_listener("::", port, backlog, v6only=False)]
        except OSError as exc:
            if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                raise
            return [make_listener("0.0.0.0", port, backlog)]
    return [make_listener(address.strip("[]"), port, backlog, v6only=True)]


def make_listener(host: str, port: int, backlog: int, v6only: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise BindError(exc.errno, f"cannot listen on {host} port {port}: {exc.strerror}") from None
    return sock


class OutOfFiles:
    """What an accepting process does when it may open no more files (EMFILE, ENFILE).

    The connection the kernel has waiting would stay in the backlog, the listener readable, and
    the loop would spin on accept(). One descriptor is kept in reserve (/dev/null): closed for a
    moment, it lets that connection be accepted, told it is busy and closed, so a client learns
    why instead of hanging. When even that is not possible, accepting pauses for ACCEPT_PAUSE.
    The reason is logged once when it starts and once when it is over, not per connection."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.spare = self._spare()
        self.since: float | None = None  # when descriptors ran out (None: they have not)
        self.refused = 0

    @staticmethod
    def _spare() -> int:
        try:
            return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return -1

    @staticmethod
    def applies(exc: OSError) -> bool:
        return exc.errno in (errno.EMFILE, errno.ENFILE)

    def refuse_one(self, listener: socket.socket, reply: bytes, exc: OSError) -> bool:
        """Accept the waiting connection on the spare descriptor, send `reply` (nothing on a
        TLS port: empty), close it. False when that was not possible (pause accepting)."""
        if self.since is None:
            self.since = time.monotonic()
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            self.log.error(
                "accept failed: %s (open files limit %d): refusing new connections until "
                "descriptors are free again",
                exc.strerror,
                limit,
            )
        if self.spare < 0:
            self.spare = self._spare()
            return False
        os.close(self.spare)
        self.spare = -1
        try:
            conn, _peer = listener.accept()
        except OSError:
            self.spare = self._spare()
            return False
        with contextlib.suppress(OSError):
            conn.setblocking(False)
            if reply:
                conn.send(reply)
        conn.close()
        self.spare = self._spare()  # its number again, now that the connection's is free
        self.refused += 1
        return True

    def close(self) -> None:
        """In a forked child, which accepts nothing: the master's spare is not its own."""
        if self.spare >= 0:
            with contextlib.suppress(OSError):
                os.close(self.spare)
            self.spare = -1

    def accepted(self) -> None:
        """A connection was accepted normally: if descriptors had run out, they are back."""
        if self.since is not None:
            self.log.warning(
                "accepting again after %.1f s without free descriptors (%d connections refused)",
                time.monotonic() - self.since,
                self.refused,
            )
            self.since, self.refused = None, 0


class Wakeup:
    """Self-pipe: no-op handlers for `signals`, each delivery written as a byte to a socketpair."""

    def __init__(self, signals: tuple[signal.Signals, ...]) -> None:
        self.reader, self.writer = socket.socketpair()
        for sock in (self.reader, self.writer):
            sock.setblocking(False)
        signal.set_wakeup_fd(self.writer.fileno(), warn_on_full_buffer=False)
        for signum in signals:
            signal.signal(signum, _note_signal)

    def fileno(self) -> int:
        return self.reader.fileno()

    def pending(self) -> list[int]:
        return list(drain(self.reader.fileno()))

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)
        self.reader.close()
        self.writer.close()


def _note_signal(signum: int, frame: object) -> None:
    """Only the wakeup fd matters; the loop does the work."""


class ForkingServer:
    """Accept connections and fork one child per connection."""

    def __init__(
        self,
        *,
        protocol: str,
        listeners: list[socket.socket],
        handler: Handler,
        log: logging.Logger,
        stats: StatsClient,
        limits: Limits,
        busy_reply: BusyReply,
        # HUP: returns the new limits and stats client (raises to keep the old ones).
        on_reload: Callable[[], tuple[Limits, StatsClient]] | None = None,
        on_child_start: Callable[[], None] | None = None,
        program: str | None = None,
        tls_listeners: list[socket.socket] | None = None,  # implicit TLS; also in `listeners`
    ) -> None:
        self.protocol = protocol
        self.program = program or protocol
        self.listeners = listeners
        self.tls_fds = frozenset(sock.fileno() for sock in tls_listeners or [])
        self.handler = handler
        self.log = log
        self.stats = stats
        self.limits = limits
        self.busy_reply = busy_reply
        self.on_reload = on_reload
        self.on_child_start = on_child_start
        self.children: dict[int, Child] = {}
        self.per_address: Counter[str] = Counter()
        self.sessions = 0
        self.stop_grace: float | None = None
        self.wakeup: Wakeup | None = None
        self.selector: selectors.BaseSelector | None = None
        self.gate: ProxyGate | None = None  # connections waiting for their PROXY header
        self.out_of_files = OutOfFiles(log)
        self.paused_until: float | None = None  # accepting paused (OutOfFiles) until then

    # -- master loop -------------------------------------------------------------------------

    def serve_forever(self) -> int:
        self.wakeup = Wakeup(MASTER_SIGNALS)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.wakeup, selectors.EVENT_READ)
        for sock in self.listeners:
            self.selector.register(sock, selectors.EVENT_READ)
        self.gate = gate = ProxyGate(self.selector, self.log, self._proxied)
        self.log.info(
            "listening on %s",
            ", ".join(
                describe(s) + (" (TLS)" if s.fileno() in self.tls_fds else "")
                for s in self.listeners
            ),
        )
        self._title()
        # Everything allocated so far is shared with every child: keep the collector from
        # touching (and so copying) those pages in a child.
        gc.collect()
        gc.freeze()
        while self.stop_grace is None:
            for key, _mask in self.selector.select(earliest(gate.timeout(), self._pause_left())):
                if key.fileobj is self.wakeup:
                    self._dispatch_signals()
                elif self.stop_grace is not None:
                    pass
                elif isinstance(key.data, Waiting):
                    gate.readable(key.data)
                else:
                    self._accept_all(key.fileobj)  # type: ignore[arg-type]
            gate.expire()
            self._resume_accepting()
        return self._shutdown(self.stop_grace)

    def _pause_left(self) -> float | None:
        if self.paused_until is None:
            return None
        return max(0.0, self.paused_until - time.monotonic())

    def _pause_accepting(self) -> None:
        """No descriptor left even to refuse: stop watching the listeners for a moment."""
        if self.paused_until is not None or self.selector is None:
            return
        self.paused_until = time.monotonic() + ACCEPT_PAUSE
        for sock in self.listeners:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(sock)

    def _resume_accepting(self) -> None:
        if self.paused_until is None or time.monotonic() < self.paused_until:
            return
        self.paused_until = None
        if self.selector is not None and self.stop_grace is None:
            for sock in self.listeners:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self.selector.register(sock, selectors.EVENT_READ)

    def _dispatch_signals(self) -> None:
        if self.wakeup is None:
            return
        for signum in self.wakeup.pending():
            if signum == signal.SIGCHLD:
                self.on_sigchld()
            elif signum == signal.SIGTERM:
                self.on_sigterm()
            elif signum == signal.SIGHUP:
                self.on_sighup()
            elif signum in (signal.SIGINT, signal.SIGQUIT):
                self.on_sigint()
        # A signal may have arrived between waitpid calls; reaping is cheap and idempotent.
        self.on_sigchld()

    def on_sigchld(self) -> None:
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._bury(pid)

    def _bury(self, pid: int) -> None:
        child = self.children.pop(pid, None)
        if child is None:
            self.log.debug("reaped unknown pid %d", pid)
            return
        self.per_address[child.address] -= 1
        if self.per_address[child.address] <= 0:
            del self.per_address[child.address]
        self.log.info("Dead Child pid: %d", pid)
        self.stats.child_ended(self.protocol, pid)
        self._title()

    def _title(self) -> None:
        set_title(self.program, f"master ({len(self.children)} children)")

    def on_sigterm(self) -> None:
        self.log.info("TERM received: finishing %d sessions", len(self.children))
        self.stop_grace = self.limits.shutdown_grace

    def on_sigint(self) -> None:
        self.log.info("stopping now")
        self.stop_grace = FAST_STOP_GRACE

    def on_sighup(self) -> None:
        self.log.info("HUP received: reloading")
        if self.on_reload is None:
            return
        try:
            self.limits, self.stats = self.on_reload()
        except Exception as exc:  # a bad new config keeps the old one
            self.log.error("reload failed, keeping the old configuration: %s", exc)

    # -- accepting ---------------------------------------------------------------------------

    def _accept_all(self, listener: socket.socket) -> None:
        tls = listener.fileno() in self.tls_fds
        proxy = self.limits.proxy
        expects = proxy.expects(tls)
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                conn, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if OutOfFiles.applies(exc):
                    busy = b"" if tls else self.busy_reply("children")
                    if not self.out_of_files.refuse_one(listener, busy, exc):
                        self._pause_accepting()
                        return
                    continue
                # ENOBUFS, ECONNABORTED: log and keep serving the others.
                self.log.warning("accept failed: %s", exc)
                return
            self.out_of_files.accepted()
            if expects and self.gate is not None:
                # The limits count the real client: the session starts once the header says
                # who that is (_proxied).
                self.gate.admit(conn, client_address(peer), tls, proxy)
            else:
                self._start_session(conn, client_address(peer), tls)

    def _proxied(
        self, conn: socket.socket, address: str, tls: bool, peer: str, header: ProxyHeader
    ) -> None:
        self._start_session(conn, address, tls, f"{peer} (PROXY v{header.version})")

    def _start_session(
        self, conn: socket.socket, address: str, tls: bool = False, via: str = ""
    ) -> None:
        refusal = self._refusal(address)
        if refusal:
            self._refuse(conn, address, refusal, tls)
            return
        self.sessions += 1
        session = self.sessions
        conn.setblocking(True)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # TERM stays blocked across fork until the child has its own handler: a shutdown that
        # starts in that window is delivered then, not lost.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            self.log.error("fork failed: %s", exc)
            self._refuse(conn, address, "children", tls)
            return
        if pid == 0:
            self._run_child(conn, address, session, tls, via)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        conn.close()
        self.children[pid] = Child(pid, address, session, time.time())
        self.per_address[address] += 1
        self.stats.connection_opened(self.protocol, pid, address)
        self._title()

    def _refusal(self, address: str) -> str:
        # 0 means no limit, for either.
        if 0 < self.limits.max_children <= len(self.children):
            return "children"
        if 0 < self.limits.max_per_address <= self.per_address[address]:
            return "address"
        return ""

    def _refuse(self, conn: socket.socket, address: str, reason: str, tls: bool = False) -> None:
        """The protocol's busy line, then close. A TLS port's client expects a handshake, and
        the master does none: it is closed without a word in clear."""
        self.log.warning("refused %s: %s limit reached", address, reason)
        try:
            if not tls:
                conn.setblocking(False)
                conn.send(self.busy_reply(reason))
        except OSError:
            pass
        finally:
            conn.close()

    # -- the child ---------------------------------------------------------------------------

    def _run_child(
        self, conn: socket.socket, address: str, session: int, tls: bool, via: str
    ) -> None:
        code = 1
        try:
            interrupt = self._become_child()
            set_title(self.program, f"{address} connect")
            code = self.handler(conn, address, session, interrupt.fileno(), tls, via)
        except BaseException:
            with contextlib.suppress(BaseException):
                self.log.error(
                    "{%d} %s child crashed: %s",
                    session,
                    address,
                    traceback.format_exc().replace("\n", " | "),
                )
        finally:
            os._exit(code)

    def _become_child(self) -> Wakeup:
        """Drop the master's fds and handlers; TERM now means 'finish and say goodbye'."""
        for sock in self.listeners:
            sock.close()
        if self.gate is not None:
            self.gate.drop_inherited()
        self.out_of_files.close()
        if self.selector is not None:
            self.selector.close()
        if self.wakeup is not None:
            self.wakeup.close()
        for signum in (signal.SIGCHLD, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if self.on_child_start is not None:
            self.on_child_start()
        # A session allocates in bursts (a 10,000-message FETCH) and frees at the end: collect
        # young objects far less often than the default 700 allocations.
        gc.set_threshold(50_000, 50, 100)
        wakeup = Wakeup((signal.SIGTERM,))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        return wakeup

    # -- stopping ----------------------------------------------------------------------------

    def _shutdown(self, grace: float) -> int:
        for sock in self.listeners:
            with contextlib.suppress(OSError):
                sock.close()
        if self.gate is not None:
            self.gate.close_all()
        self._signal_children(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.children and time.monotonic() < deadline:
            self._wait_for_signal(deadline - time.monotonic())
            self.on_sigchld()
        if self.children:
            self.log.warning("killing %d sessions that did not finish", len(self.children))
            self._signal_children(signal.SIGKILL)
            for pid in list(self.children):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                self._bury(pid)
        self.log.info("stopped")
        return 0

    def _signal_children(self, signum: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _wait_for_signal(self, timeout: float) -> None:
        if self.wakeup is None:
            return
        sel = selectors.DefaultSelector()
        sel.register(self.wakeup, selectors.EVENT_READ)
        try:
            if sel.select(max(0.0, min(timeout, 0.5))):
                self.wakeup.pending()
        finally:
            sel.close()


def describe(sock: socket.socket) -> str:
    try:
        host, port = sock.getsockname()[:2]
    except OSError:
        return "?"
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
