"""The pool process model: pre-forked workers, each serving many sessions, one thread a session.

The master (`PoolServer`) binds, imports everything, then pre-forks `workers` processes (0: one
per CPU) and supervises them as the fork model's master supervises its children: SIGCHLD reaps,
a worker that dies is replaced (its sessions are gone: the stats collector is told, its counts
cleared), TERM stops gracefully within `shutdown_grace`, INT/QUIT fast, HUP re-reads the config
(a bad one keeps the old) and is passed on to every worker, which re-reads config and users too;
the number of workers follows `workers`. It does no protocol work and accepts nothing.

A worker (`Worker`) accepts on the shared listening sockets and runs each session on a thread of
its own, with the very session code a forked child runs: LineIO blocks in poll() on the socket and
on the worker's stop descriptor, so TLS, literals, SASL, the POP3 transformer and the store's
blocking file I/O work unchanged. Why threads rather than an event loop or greenlets (measured in
README "Process models"): a blocked or slow session (a big FETCH, a fsync, a lock wait, a
transformer) cannot stall the others; a held session costs a thread whose stack is mostly
untouched. A worker's sessions take turns (common/turns.py): one runs its Python while the others
wait for their clients or for the turn, which spares the interpreter lock a hand-over at every
system call; none waits for the turn longer than 5 ms, then it runs beside the holder as threads
do, CPython switching between them every `sys.getswitchinterval()`. Everything a session relies
on holds as in the fork model: its locks are OFD locks or per-thread link locks (common/store),
its timeouts are its own poll() timeouts, its settings a snapshot taken at accept
(`Settings.snapshot`), its stats carry its session number (common/stats), and IDLE waits on the
worker's inotify watcher (common/store/watch.py).

Limits across workers live in `SharedCounts`, a small shared memory region mapped by the master
before the first fork: the session-number counter, and per worker its sessions, its capacity and
its sessions per client-address bucket. A worker checks and counts a new connection under a lock
(fcntl between processes, a thread lock within one), so `max_children` (all sessions together)
and `max_per_address` hold across workers. A worker leaves a new connection for a moment to one
that serves fewer sessions (a worker's sessions share one CPU). A full worker (`worker_sessions`)
stops accepting while another has room; when none has, it accepts and sends the busy reply. After
`worker_lifetime` sessions (0: never) a worker stops accepting, tells the master through its
status pipe, which starts its replacement at once, and exits once its last session has ended.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import gc
import logging
import mmap
import os
import resource
import selectors
import signal
import socket
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from common import turns
from common.proctitle import set_title
from common.proxy import ProxyGate, ProxyHeader, Waiting
from common.server import (
    ACCEPT_PAUSE,
    MASTER_SIGNALS,
    Child,
    ForkingServer,
    Limits,
    OutOfFiles,
    Wakeup,
    client_address,
    describe,
)
from common.stats import StatsClient

WORKER_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)
SESSION_STACK = 1 << 20  # bytes of address space per session thread; only touched pages count
# Threads that finished a session wait for the next one (starting a thread costs ~0.2 ms, as
# much as a POP3 session's own work); beyond this many waiting, a thread ends with its session.
MAX_IDLE_THREADS = 32
ACCEPTS_PER_WAKE = 8  # then let the other workers have a go: spreads a burst over them
DEFER = 0.001  # seconds a busier worker leaves a new connection to a less busy one
PAUSE_RECHECK = 0.2  # a full worker looks again this often whether another still has room
RESPAWN_DELAY = 1.0  # a worker that died this young is replaced only after this long
ADDRESS_BUCKETS = 16384
MAX_WORKERS = 256
GROWTH = 64  # workers HUP may raise `workers` to (more: restart)
RETIRING = b"r"


def raise_fd_limit(limits: Limits, log: logging.Logger) -> None:
    """A worker holds a socket per session (and an eventfd per IDLE): raise the soft limit of
    open files up to the hard one as far as `worker_sessions` needs, and say so when even the
    hard limit is too low (README "Process models": ulimit -n, LimitNOFILE)."""
    wanted = 2 * max(1, limits.worker_sessions) + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning(
            "open files limited to %d; %d sessions a worker need about %d: raise ulimit -n "
            "(LimitNOFILE in the systemd unit)",
            target,
            limits.worker_sessions,
            wanted,
        )


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_count(limits: Limits) -> int:
    return min(limits.workers or default_workers(), MAX_WORKERS)


def worker_cpu(limits: Limits, slot: int) -> int | None:
    """The CPU worker `slot` (1..) is to run on, or None to let the scheduler choose.

    A worker runs one session's Python at a time (common/turns.py), so it uses one CPU at
    most; left to the scheduler, two workers of a 2-core machine shared a CPU or moved between
    them while the other ran clients, and the sessions cost 0.2 ms more CPU each (bench/
    run_imap.sh --tuned, 4 and 16 clients: 0.89x / 0.93x of tuned Dovecot unpinned, 1.06x /
    1.07x pinned). `auto` pins only when there is one worker per CPU the daemon may use: fewer
    workers, all pinned to the first CPUs, would leave the others to everything else."""
    if limits.worker_cpu_affinity == "no":
        return None
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    if limits.worker_cpu_affinity == "auto" and worker_count(limits) != len(cpus):
        return None
    return cpus[(slot - 1) % len(cpus)]


def pin_to_cpu(cpu: int, log: logging.Logger) -> None:
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        log.warning("cannot run the worker on CPU %d: %s", cpu, exc)


# A session for a thread: (descriptor, family), client address, session number, TLS port, the
# balancer that sent its PROXY header ("" when none).
Job = tuple[tuple[int, int], str, int, bool, str]


class Watcher(Protocol):
    """What the worker's main thread serves beside its sockets (the folder watcher of IDLE)."""

    def fileno(self) -> int: ...

    def dispatch(self) -> None: ...


# -- counts shared by all workers ----------------------------------------------------------------


class SharedCounts:
    """Sessions per worker and per client-address bucket, and the next session number, in
    shared memory; every change under one lock (fcntl between processes, a thread lock within).

    Row layout (int32): sessions, capacity (0: not accepting), then ADDRESS_BUCKETS counts.
    A row is written by its worker only (and cleared by the master once that worker is gone);
    the fcntl lock makes a check of all rows and the increment of one row a single step, so
    two workers cannot both take the last place. It is an fcntl lock, not a semaphore, so that
    a worker killed while holding it cannot block the others.
    Addresses are hashed into buckets: two addresses that share one share its count, which only
    ever refuses early, never lets more in."""

    ROW = 2 + ADDRESS_BUCKETS

    def __init__(self, rows: int) -> None:
        self.rows = rows
        size = 16 + rows * self.ROW * 4
        self.fd = os.memfd_create("maildaemons-pool", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        view = memoryview(self.map)
        # Header: the last session number given, and how many rows have been used: the rows
        # a check sums over (a sum over all of them cost 10 us of every accept and login).
        self.header = view[:16].cast("q")
        self.cells = view[16:].cast("i")
        self.thread_lock = threading.Lock()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with self.thread_lock:
            fcntl.lockf(self.fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def _base(self, row: int) -> int:
        return row * self.ROW

    def _use(self, row: int) -> None:
        """Under the lock: `row` is one the checks look at from now on."""
        if self.header[1] <= row:
            self.header[1] = row + 1

    def _span(self) -> int:
        """The cells of every row used so far (the master hands out the lowest free row)."""
        return int(self.header[1]) * self.ROW

    @staticmethod
    def bucket(address: str) -> int:
        return 2 + zlib.crc32(address.encode()) % ADDRESS_BUCKETS

    def open_session(
        self, row: int, address: str, max_children: int, max_per_address: int
    ) -> tuple[str, int]:
        """Count a new session of `row` from `address`: ('', its number), or the refusal
        ('children' or 'address', 0). 0 means no limit, for either."""
        bucket = self.bucket(address)
        cells = self.cells
        with self.locked():
            self._use(row)
            span = self._span()
            if max_children > 0 and sum(cells[: span : self.ROW]) >= max_children:
                return "children", 0
            if max_per_address > 0 and sum(cells[bucket : span : self.ROW]) >= max_per_address:
                return "address", 0
            base = self._base(row)
            cells[base] += 1
            cells[base + bucket] += 1
            self.header[0] += 1
            return "", self.header[0]

    def close_session(self, row: int, address: str) -> None:
        """Only this worker writes its row, so the thread lock is enough: another worker that
        reads the row meanwhile sees one session more, which can only refuse early."""
        base = self._base(row)
        with self.thread_lock:
            self.cells[base] = max(0, self.cells[base] - 1)
            self.cells[base + self.bucket(address)] -= 1

    def set_capacity(self, row: int, capacity: int) -> None:
        with self.locked():
            self._use(row)
            self.cells[self._base(row) + 1] = capacity

    def room_elsewhere(self, row: int) -> bool:
        """Whether another worker accepts and has room."""
        cells = self.cells
        for other in range(int(self.header[1])):
            base = other * self.ROW
            if other != row and cells[base] < cells[base + 1]:
                return True
        return False

    def fewer_elsewhere(self, row: int) -> bool:
        """Whether another worker that accepts serves fewer sessions than `row` does."""
        cells, span = self.cells, self._span()
        sessions = cells[: span : self.ROW].tolist()
        capacities = cells[1 : span : self.ROW].tolist()
        if row >= len(sessions):
            return False
        mine = sessions[row]
        return any(s < mine and s < c for s, c in zip(sessions, capacities, strict=True))

    def clear(self, row: int) -> None:
        """The master, for a worker that is gone: its sessions went with it."""
        base = self._base(row)
        with self.locked():
            self.cells[base : base + self.ROW] = memoryview(bytes(self.ROW * 4)).cast("i")


# -- the master ----------------------------------------------------------------------------------


@dataclass
class WorkerInfo:
    pid: int
    slot: int  # 1.. : the title's "worker N"
    row: int  # its row in SharedCounts
    status: int  # read end of its status pipe
    started: float
    retiring: bool = False


class PoolServer(ForkingServer):
    """The master of the pool model; `children` holds the workers."""

    def __init__(
        self,
        *,
        on_worker_start: Callable[[Worker], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.on_worker_start = on_worker_start
        self.workers: dict[int, WorkerInfo] = {}
        self.shared: SharedCounts | None = None
        self.free_rows: list[int] = []
        self.wanted = 0
        self.respawn_at: dict[int, float] = {}  # slot -> when to start its worker
        # Only the master holds the write end: when it is gone (even SIGKILLed) every worker
        # reads EOF here, stops accepting and ends like a TERM, instead of serving on unwatched.
        self.lifeline_r, self.lifeline_w = -1, -1

    # -- master loop -------------------------------------------------------------------------

    def serve_forever(self) -> int:
        self.wakeup = Wakeup(MASTER_SIGNALS)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.wakeup, selectors.EVENT_READ)
        self.wanted = worker_count(self.limits)
        self.lifeline_r, self.lifeline_w = os.pipe()
        raise_fd_limit(self.limits, self.log)
        # A row per worker, and as many again for workers retiring beside their replacements,
        # with room for HUP to raise `workers` (to GROWTH at least). Only rows in use are
        # touched, so the rest costs address space, not memory.
        self.shared = SharedCounts(2 * max(self.wanted, GROWTH) + 2)
        self.free_rows = list(range(self.shared.rows))
        self.log.info(
            "listening on %s (pool: %d workers)",
            ", ".join(describe(s) for s in self.listeners),
            self.wanted,
        )
        gc.collect()
        gc.freeze()
        for slot in range(1, self.wanted + 1):
            self._spawn(slot)
        while self.stop_grace is None:
            for key, _mask in self.selector.select(self._next_timeout()):
                if key.fileobj is self.wakeup:
                    self._dispatch_signals()
                else:
                    self._read_status(key.data)
            self._respawn_due()
        return self._shutdown(self.stop_grace)

    def _title(self) -> None:
        set_title(self.program, f"master ({len(self.workers)} workers)")

    def _next_timeout(self) -> float | None:
        if not self.respawn_at:
            return None
        return max(0.0, min(self.respawn_at.values()) - time.monotonic())

    def _respawn_due(self) -> None:
        now = time.monotonic()
        for slot, when in sorted(self.respawn_at.items()):
            if when <= now and self.stop_grace is None:
                del self.respawn_at[slot]
                self._spawn(slot)

    def _active_slots(self) -> set[int]:
        return {w.slot for w in self.workers.values() if not w.retiring}

    def _spawn(self, slot: int) -> None:
        if self.shared is None or self.selector is None:
            return
        if not self.free_rows:
            self.log.error("no room for worker %d: too many workers retiring", slot)
            self.respawn_at[slot] = time.monotonic() + RESPAWN_DELAY
            return
        row = self.free_rows.pop(0)
        status_r, status_w = os.pipe()
        # The worker's signals stay blocked across fork until it has its own handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)
            os.close(status_r)
            os.close(status_w)
            bisect.insort(self.free_rows, row)
            self.log.error("fork failed: %s", exc)
            self.respawn_at[slot] = time.monotonic() + RESPAWN_DELAY
            return
        if pid == 0:
            os.close(status_r)
            self._run_worker(slot, row, status_w)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)
        os.close(status_w)
        info = WorkerInfo(pid, slot, row, status_r, time.monotonic())
        self.workers[pid] = info
        self.children[pid] = Child(pid, "worker", slot, time.time())
        self.selector.register(status_r, selectors.EVENT_READ, info)
        self.log.info("worker %d started: pid %d", slot, pid)
        self._title()

    def _read_status(self, info: WorkerInfo) -> None:
        try:
            data = os.read(info.status, 64)
        except OSError:
            data = b""
        if not data:
            self._forget_status(info)
            return
        if RETIRING in data and not info.retiring:
            info.retiring = True
            self.log.info("worker %d (pid %d) retiring", info.slot, info.pid)
            if self.stop_grace is None and info.slot not in self._active_slots():
                self._spawn(info.slot)

    def _forget_status(self, info: WorkerInfo) -> None:
        if info.status < 0:
            return
        if self.selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(info.status)
        os.close(info.status)
        info.status = -1

    def _bury(self, pid: int) -> None:
        info = self.workers.pop(pid, None)
        self.children.pop(pid, None)
        if info is None:
            self.log.debug("reaped unknown pid %d", pid)
            return
        self._forget_status(info)
        if self.shared is not None:
            self.shared.clear(info.row)
            bisect.insort(self.free_rows, info.row)  # the lowest is taken next
        self.log.info("worker %d (pid %d) gone", info.slot, pid)
        self.log.info("Dead Child pid: %d", pid)
        self.stats.child_ended(self.protocol, pid)  # every session it still had
        self._title()
        if self.stop_grace is not None or info.retiring:
            return
        if len(self._active_slots()) >= self.wanted or info.slot > self.wanted:
            return
        young = time.monotonic() - info.started < RESPAWN_DELAY
        self.respawn_at[info.slot] = time.monotonic() + (RESPAWN_DELAY if young else 0.0)

    def on_sighup(self) -> None:
        super().on_sighup()
        raise_fd_limit(self.limits, self.log)  # the workers forked from now on get it
        wanted = worker_count(self.limits)
        if self.shared is not None and wanted > (self.shared.rows - 2) // 2:
            wanted = (self.shared.rows - 2) // 2
            self.log.warning("workers capped at %d until a restart", wanted)
        self.wanted = wanted
        for info in list(self.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                if info.slot > wanted and not info.retiring:
                    info.retiring = True
                    os.kill(info.pid, signal.SIGUSR1)  # finish your sessions, then go
                else:
                    os.kill(info.pid, signal.SIGHUP)
        for slot in range(1, wanted + 1):
            if slot not in self._active_slots() and slot not in self.respawn_at:
                self._spawn(slot)

    def on_sigterm(self) -> None:
        self.log.info("TERM received: finishing the sessions of %d workers", len(self.workers))
        self.stop_grace = self.limits.shutdown_grace

    # -- becoming a worker -------------------------------------------------------------------

    def _run_worker(self, slot: int, row: int, status_w: int) -> None:
        code = 1
        try:
            if self.selector is not None:
                self.selector.close()
            if self.wakeup is not None:
                self.wakeup.close()
            for info in self.workers.values():
                with contextlib.suppress(OSError):
                    os.close(info.status)
            os.close(self.lifeline_w)
            self.out_of_files.close()  # the worker keeps a spare of its own
            if self.shared is None:
                raise RuntimeError("no shared counts")
            worker = Worker(self, slot, row, status_w, self.shared)
            code = worker.run()
        except BaseException:
            with contextlib.suppress(BaseException):
                self.log.error(
                    "worker %d crashed: %s", slot, traceback.format_exc().replace("\n", " | ")
                )
        finally:
            os._exit(code)


# -- a worker ------------------------------------------------------------------------------------


class Handoff:
    """Where an idle session thread waits for its next session: a lock of its own, so handing
    a session over wakes that one thread (threads waiting on one queue woke each other in turn,
    every idle thread of the worker for every session: strace)."""

    def __init__(self) -> None:
        self._job: Job | None = None
        self._ready = threading.Lock()
        self._ready.acquire()

    def give(self, job: Job) -> None:
        self._job = job
        self._ready.release()

    def take(self) -> Job:
        self._ready.acquire()
        job, self._job = self._job, None
        return job  # type: ignore[return-value]  # give() set it before the release


def session_socket(fd: int, family: int) -> socket.socket:
    return socket.socket(family, socket.SOCK_STREAM, 0, fd)


class Worker:
    """One pre-forked process: accepts, runs a thread per session, obeys TERM/HUP/USR1."""

    def __init__(
        self, master: PoolServer, slot: int, row: int, status_w: int, shared: SharedCounts
    ) -> None:
        self.master = master
        self.protocol = master.protocol
        self.program = master.program
        self.listeners = master.listeners
        self.handler = master.handler
        self.tls_fds = master.tls_fds  # the implicit-TLS listeners
        self.log = master.log
        self.stats: StatsClient = master.stats
        self.limits: Limits = master.limits
        self.busy_reply = master.busy_reply
        self.slot, self.row, self.status_w, self.shared = slot, row, status_w, shared
        self.pid = os.getpid()
        self.active = 0
        self.accepted = 0
        self.count_lock = threading.Lock()
        self.turns = turns.Turns()  # its sessions run one at a time (common/turns.py)
        # (accepted fd and its family, client address, session number)
        self.idle: list[Handoff] = []  # session threads waiting, the last one to finish first
        self.accepting = False
        self.retiring = False
        self.stopping = False
        self.wakeup: Wakeup | None = None
        self.selector = selectors.DefaultSelector()
        # Stop: shutting down the writer leaves the reader readable (EOF) for good, so every
        # session's poll() sees it, however many there are and whoever looks first.
        self.stop_r, self.stop_w = socket.socketpair()
        # Session threads -> main thread: "a session ended" while the main thread waits on it.
        self.notify_r, self.notify_w = socket.socketpair()
        for sock in (self.stop_r, self.notify_r, self.notify_w):
            sock.setblocking(False)
        self.watcher: Watcher | None = None
        # Connections of PROXY listeners waiting, in this thread's selector, for their header.
        self.gate = ProxyGate(self.selector, self.log, self._proxied)
        self.out_of_files = OutOfFiles(self.log)
        self.paused_until: float | None = None
        self.deferred: socket.socket | None = None  # a listener left to a less busy worker

    @property
    def capacity(self) -> int:
        return max(1, self.limits.worker_sessions)

    def run(self) -> int:
        for signum in (signal.SIGCHLD, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, signal.SIG_DFL)
        cpu = worker_cpu(self.limits, self.slot)
        if cpu is not None:
            pin_to_cpu(cpu, self.log)
        self.wakeup = Wakeup(WORKER_SIGNALS)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)
        self.selector.register(self.wakeup, selectors.EVENT_READ, "signal")
        self.selector.register(self.notify_r, selectors.EVENT_READ, "notify")
        self.selector.register(self.master.lifeline_r, selectors.EVENT_READ, "lifeline")
        if self.master.on_worker_start is not None:
            self.master.on_worker_start(self)
        if self.watcher is not None:
            self.selector.register(self.watcher, selectors.EVENT_READ, "watch")
        threading.stack_size(SESSION_STACK)
        # As in a forked child: collect young objects far less often (sessions allocate in
        # bursts); what the master allocated is frozen, so a collection never touches it.
        gc.set_threshold(50_000, 50, 100)
        self.shared.set_capacity(self.row, self.capacity)
        self._listen(True)
        self._title()
        while not (self.stopping or self.retiring) or self.active > 0 or len(self.gate):
            for key, _mask in self.selector.select(self._timeout()):
                self._event(key)
            self.gate.expire()
            self._check_capacity()
        return 0

    def _timeout(self) -> float | None:
        paused = PAUSE_RECHECK if self._paused() else None
        if self.deferred is not None and self.paused_until is not None:
            paused = max(0.0, self.paused_until - time.monotonic())
        return min((t for t in (paused, self.gate.timeout()) if t is not None), default=None)

    def _event(self, key: selectors.SelectorKey) -> None:
        if key.data == "signal":
            self._dispatch_signals()
        elif key.data == "notify":
            with contextlib.suppress(OSError):
                self.notify_r.recv(4096)
        elif key.data == "watch" and self.watcher is not None:
            self.watcher.dispatch()
        elif key.data == "lifeline":
            self.log.warning("worker %d: the master is gone, stopping", self.slot)
            self.selector.unregister(self.master.lifeline_r)
            self._stop()
        elif isinstance(key.data, Waiting):
            self.gate.readable(key.data)
        else:
            self._accept(key.fileobj)  # type: ignore[arg-type]

    def _title(self) -> None:
        state = " retiring" if self.retiring else " stopping" if self.stopping else ""
        set_title(self.program, f"worker {self.slot} ({self.active} sessions){state}")

    # -- signals -------------------------------------------------------------------------------

    def _dispatch_signals(self) -> None:
        if self.wakeup is None:
            return
        for signum in self.wakeup.pending():
            if signum == signal.SIGTERM:
                self._stop()
            elif signum == signal.SIGHUP:
                self._reload()
            elif signum == signal.SIGUSR1:
                self._retire()

    def _stop(self) -> None:
        """TERM from the master: no new sessions; every session finishes its command and says
        goodbye (its poll() sees the stop descriptor), then the worker exits."""
        if self.stopping:
            return
        self.stopping = True
        self._close_listeners()
        self.gate.close_all()
        with contextlib.suppress(OSError):
            self.stop_w.shutdown(socket.SHUT_WR)
        self._title()

    def _reload(self) -> None:
        """HUP: re-read config and users here too; sessions already running keep theirs."""
        if self.master.on_reload is None:
            return
        try:
            self.limits, self.stats = self.master.on_reload()
        except Exception as exc:
            self.log.error("reload failed, keeping the old configuration: %s", exc)
            return
        raise_fd_limit(self.limits, self.log)
        if not (self.retiring or self.stopping):
            self.shared.set_capacity(self.row, self.capacity)

    def _retire(self) -> None:
        """Stop accepting, tell the master (it starts a replacement), end with the last session."""
        if self.retiring or self.stopping:
            return
        self.retiring = True
        self._close_listeners()
        with contextlib.suppress(OSError):
            os.write(self.status_w, RETIRING)
        self.log.info("worker %d retiring after %d sessions", self.slot, self.accepted)
        self._title()

    # -- accepting ---------------------------------------------------------------------------

    def _listen(self, on: bool) -> None:
        if on == self.accepting:
            return
        for sock in self.listeners:
            if on:
                self.selector.register(sock, selectors.EVENT_READ, "accept")
            else:
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(sock)
        self.accepting = on

    def _close_listeners(self) -> None:
        self._listen(False)
        self.shared.set_capacity(self.row, 0)
        for sock in self.listeners:
            with contextlib.suppress(OSError):
                sock.close()

    def _full(self) -> bool:
        return self.active >= self.capacity

    def _paused(self) -> bool:
        return not self.accepting and not (self.stopping or self.retiring)

    def _check_capacity(self) -> None:
        """A full worker leaves new connections to workers with room; when none has room it
        takes them, to answer each with the busy reply rather than leave it hanging."""
        if self.stopping or self.retiring:
            return
        if self.paused_until is not None:  # out of descriptors, or deferring (_accept)
            if time.monotonic() < self.paused_until:
                return
            self.paused_until = None
            if self.deferred is not None:
                listener, self.deferred = self.deferred, None
                self._take(listener)
        self._listen(not self._full() or not self.shared.room_elsewhere(self.row))

    def _pause(self) -> None:
        """No descriptor left even to refuse a connection: stop accepting for a moment."""
        self.paused_until = time.monotonic() + ACCEPT_PAUSE
        self._listen(False)

    def _accept(self, listener: socket.socket) -> None:
        """Every worker's selector wakes for a new connection: one that serves more sessions
        than another worker with room leaves it to that one for DEFER, then takes it if it is
        still there. Sessions of one worker share a CPU (common/turns.py), so a worker
        with three sessions beside one with one left a CPU half idle."""
        if self.shared.fewer_elsewhere(self.row):
            self.deferred = listener
            self.paused_until = time.monotonic() + DEFER
            self._listen(False)
            return
        self._take(listener)

    def _take(self, listener: socket.socket) -> None:
        """Accept what is waiting, then hand the sessions over: a thread handed one starts
        while this one goes back to select(), not contending with it for the interpreter
        (strace: the two passed it back and forth at each system call of both)."""
        family = int(listener.family)
        tls = listener.fileno() in self.tls_fds
        proxy = self.limits.proxy
        expects = proxy.expects(tls)
        accepted: list[tuple[int, str]] = []
        # A full worker still takes one, to answer it with the busy reply (_start_session).
        for _ in range(min(ACCEPTS_PER_WAKE, max(1, self.capacity - self.active))):
            if self.stopping or self.retiring:
                break
            try:
                # Only the descriptor: socket._accept, without the socket object and its enum
                # conversions; the session's thread does the rest.
                fd, peer = listener._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if OutOfFiles.applies(exc):
                    busy = b"" if tls else self.busy_reply("children")
                    if not self.out_of_files.refuse_one(listener, busy, exc):
                        self._pause()
                        break
                    continue
                self.log.warning("accept failed: %s", exc)
                break
            self.out_of_files.accepted()
            if expects:
                # Counted, under the real client's address, once the header has named it
                # (_proxied); until then it waits in this thread's selector, never blocking it.
                self.gate.admit(session_socket(fd, family), client_address(peer), tls, proxy)
                continue
            accepted.append((fd, client_address(peer)))
        for fd, address in accepted:
            self._start_session((fd, family), address, tls)

    def _proxied(
        self, conn: socket.socket, address: str, tls: bool, peer: str, header: ProxyHeader
    ) -> None:
        family = int(conn.family)
        self._start_session(
            (conn.detach(), family), address, tls, f"{peer} (PROXY v{header.version})"
        )

    def _start_session(self, conn: tuple[int, int], address: str, tls: bool, via: str = "") -> None:
        limits = self.limits
        if self._full():
            self._refuse(conn, address, "children", tls)
            return
        refusal, number = self.shared.open_session(
            self.row, address, limits.max_children, limits.max_per_address
        )
        if refusal:
            self._refuse(conn, address, refusal, tls)
            return
        with self.count_lock:
            self.active += 1
            idle = self.idle.pop() if self.idle else None
        self.accepted += 1
        job = (conn, address, number, tls, via)
        if idle is not None:
            idle.give(job)
        else:
            thread = threading.Thread(target=self._thread, args=(job,), daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:  # no more threads: the process limit
                self.log.error("cannot start a session thread: %s", exc)
                self._session_done(address)
                self._refuse(conn, address, "children", tls)
                return
        if 0 < limits.worker_lifetime <= self.accepted:
            self._retire()

    def _refuse(self, conn: tuple[int, int], address: str, reason: str, tls: bool) -> None:
        """The busy line, then close; a TLS port's client gets no word in clear (as the fork
        model's master does)."""
        self.log.warning("refused %s: %s limit reached", address, reason)
        sock = session_socket(*conn)
        try:
            if tls:
                return
            sock.setblocking(False)
            sock.send(self.busy_reply(reason))
        except OSError:
            pass
        finally:
            sock.close()

    # -- a session's thread ------------------------------------------------------------------

    def _thread(self, job: Job) -> None:
        """Serve sessions, one at a time: the first, then whatever the main thread hands over
        while this thread waits (at most MAX_IDLE_THREADS wait)."""
        handoff = Handoff()
        while True:
            self._session(*job)
            with self.count_lock:
                if len(self.idle) >= MAX_IDLE_THREADS or self.stopping or self.retiring:
                    return
                self.idle.append(handoff)
            job = handoff.take()

    def _session(
        self, accepted: tuple[int, int], address: str, number: int, tls: bool, via: str
    ) -> None:
        stats = self.stats
        turns.sit(self.turns)
        self._title()
        conn: socket.socket | None = None
        try:
            conn = session_socket(*accepted)
            stats.connection_opened(self.protocol, self.pid, address, number)
            conn.setblocking(True)
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.handler(conn, address, number, self.stop_r.fileno(), tls, via)
        except BaseException:
            with contextlib.suppress(BaseException):
                self.log.error(
                    "{%d} %s session crashed: %s",
                    number,
                    address,
                    traceback.format_exc().replace("\n", " | "),
                )
        finally:
            with contextlib.suppress(OSError):
                if conn is None:
                    os.close(accepted[0])
                else:
                    conn.close()
            stats.session_ended(self.protocol, self.pid, number)
            turns.leave()
            self._session_done(address)  # last: a stopping worker exits when the count is 0

    def _session_done(self, address: str) -> None:
        self.shared.close_session(self.row, address)
        with self.count_lock:
            self.active -= 1
            last = self.active == 0
        self._title()
        # The main thread waits on this only when it has something to do about it.
        if (self.stopping or self.retiring) and last or not self.accepting:
            with contextlib.suppress(OSError):
                self.notify_w.send(b".")
