"""mailstatd: the stats collector on a Unix datagram socket (DESIGN.md "Stats collector").

Usage:
  mailstatd [options]
  mailstatd -h | --help
  mailstatd -v | --version

Options:
  --stats-socket=PATH   The collector's socket (default <run_dir>/mailstatd.sock).
  --state-dir=DIR       State directory: the figures are kept in DIR/mailstatd.json.
  -d DIR                Maildir base (shared by every daemon; mailstatd does not use it).
  --users=FILE          Users file (shared by every daemon; mailstatd does not use it).
  --dump                Do not start: ask the running collector for its figures, print them
                        as JSON on stdout and exit (1 when it does not answer).
{common_options}

The daemons send events (common/stats/) and never wait for the collector. It keeps, per protocol
and in total, connections ever and now, the historical maximum of concurrent connections, bytes,
logins ok/failed, who is logged in now, and each user's access log; msmpd asks it for STAT, LIST
<user>, LOGS and "is logged in" (common/stats/query.py). The figures survive a restart: they are
written to the state file by atomic rename at most once every `save_interval` seconds and on TERM.
With `metrics_port` set, it also serves them to Prometheus over HTTP (GET /metrics on
`metrics_listen`, loopback by default; common/stats/prometheus.py).
Stop with `kill -TERM $(cat PIDFILE)`; `kill -HUP` re-reads the config and reopens the log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from docopt import docopt

from common import daemon, logs
from common.cli import COMMON_FLAGS, usage
from common.config import ConfigError, Settings, one_line, read_config
from common.proctitle import set_title
from common.server import Wakeup
from common.stats import prometheus
from common.stats.collector import Collector, encode
from common.stats.query import StatsError
from common.stats.query import stat as query_stat
from common.store.atomic import atomic_write
from common.version import VERSION

__doc__ = usage(__doc__, "mailstatd")

STATE_FILE = "mailstatd.json"
MAX_DATAGRAM = 65536
RECV_BUFFER = 4 * 1024 * 1024  # a burst of events waits here instead of being dropped
QUEUE_LENGTH_FILE = "/proc/sys/net/unix/max_dgram_qlen"
# Read what came, then let events gather this long before looking again: woken for every
# event (four a session), the collector took ~60 us of CPU an event and took its CPU from the
# sessions (bench/compare.py --stats: IMAP pool p50 1.58 ms against 1.33 without mailstatd;
# 1.44 with this pause). Only when the queue holds what comes meanwhile: 5 ms of 1,000 IMAP
# sessions/s are 15 events.
COALESCE = 0.005
COALESCE_MIN_QUEUE = 256
SUGGESTED_QUEUE = 512  # net.unix.max_dgram_qlen of etc/sysctl.d/maildaemons.conf
BATCH = 512  # datagrams handled between looks at the signals
SOCKET_MODE = 0o660
SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD)

log = logging.getLogger("mailstatd")


class StateFileError(Exception):
    """The state file exists but cannot be used; start-up stops rather than lose the figures."""


# -- the state file --------------------------------------------------------------------------


def load_state_file(collector: Collector, path: Path) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateFileError(f"cannot read state file {path}: {exc.strerror}") from None
    try:
        collector.load_state(json.loads(text))
    except (ValueError, TypeError, AttributeError) as exc:
        raise StateFileError(
            f"state file {path} is not valid ({one_line(exc)}); "
            "move it aside to start with empty figures"
        ) from None


def save_state_file(collector: Collector, path: Path) -> None:
    data = json.dumps(collector.to_state(), separators=(",", ":")).encode() + b"\n"
    atomic_write(path, data, mode=0o600)
    collector.dirty = False


# -- the socket ------------------------------------------------------------------------------


def bind_socket(path: Path, uid: int | None, gid: int | None) -> socket.socket:
    """Bind the collector's datagram socket; refuse when another collector answers on it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    clear_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        os.chmod(path, SOCKET_MODE)
        if uid is not None and gid is not None:
            os.chown(path, uid, gid)
        set_receive_buffer(sock)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise daemon.StartupError(f"cannot bind {path}: {exc.strerror or exc}") from None
    return sock


def clear_stale_socket(path: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise daemon.StartupError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            pass  # nobody is bound there: a leftover of a collector that died
        except OSError as exc:
            raise daemon.StartupError(f"cannot check {path}: {exc.strerror}") from None
        else:
            raise daemon.StartupError(f"another mailstatd is running on {path}")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def set_receive_buffer(sock: socket.socket) -> None:
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    if os.geteuid() == 0 and force is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, force, RECV_BUFFER)
            return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)


def queue_length() -> int | None:
    """net.unix.max_dgram_qlen: Linux queues at most this many datagrams on a socket; beyond
    that a sender's event is dropped (never blocked)."""
    try:
        return int(Path(QUEUE_LENGTH_FILE).read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def queue_of_at_least(length: int) -> Iterator[int]:
    """net.unix.max_dgram_qlen raised to `length` while inside (root; OSError otherwise), the
    old value put back after; yields the length in force. For the bench and the tests: the
    queue is a host's setting, made at boot (etc/sysctl.d)."""
    path = Path(QUEUE_LENGTH_FILE)
    old = path.read_text()
    if int(old) >= length:
        yield int(old)
        return
    path.write_text(f"{length}\n")
    try:
        yield length
    finally:
        path.write_text(old)


def coalescing_pause(length: int | None) -> float:
    """How long the collector lets events gather after reading them: COALESCE when the queue
    holds what arrives meanwhile, else nothing (it reads as soon as anything comes)."""
    return COALESCE if length is not None and length >= COALESCE_MIN_QUEUE else 0.0


def queue_length_note() -> str | None:
    """A warning when the queue is short."""
    value = queue_length()
    if value is None or value >= SUGGESTED_QUEUE:
        return None
    return (
        f"net.unix.max_dgram_qlen is {value}: a burst of more than {value} events between "
        f"two reads is dropped; raise it with `sysctl -w net.unix.max_dgram_qlen="
        f"{SUGGESTED_QUEUE}`"
    )


# -- the daemon ------------------------------------------------------------------------------


class StatsDaemon:
    """The collector's loop: read every waiting datagram, answer queries, save, sweep, signals."""

    def __init__(
        self,
        args: dict[str, Any],
        settings: Settings,
        collector: Collector,
        socket_path: Path,
        state_file: Path,
    ) -> None:
        self.args = args
        self.settings = settings
        self.collector = collector
        self.socket_path = socket_path
        self.state_file = state_file
        self.sock: socket.socket | None = None
        self.socket_inode = 0
        self.stopping = False
        self.last_save = 0.0
        self.next_sweep = 0.0
        self.save_failed = False
        self.saver: int | None = None  # the pid of the child writing the state file
        # Held by the loop while it changes the figures and by the metrics thread while it reads
        # them (never by the state-file writer: it is a forked copy with no other thread).
        self.lock = threading.Lock()
        self.metrics_sock: socket.socket | None = None
        self.apply_settings(settings)

    def apply_settings(self, settings: Settings) -> None:
        self.settings = settings
        self.save_interval = settings.get_float("save_interval")
        self.sweep_interval = settings.get_float("sweep_interval")
        with self.lock:
            self.collector.set_max_log_entries(settings.get_int("max_log_entries"))

    def prepare(self) -> list[socket.socket]:
        uid, gid = daemon.owner_ids(self.settings)
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        load_state_file(self.collector, self.state_file)
        port = self.settings.optional_port("metrics_port")
        if port is not None:
            self.metrics_sock = prometheus.bind(self.settings.get("metrics_listen"), port)
        try:
            self.sock = bind_socket(self.socket_path, uid, gid)
        except daemon.StartupError:
            if self.metrics_sock is not None:
                self.metrics_sock.close()
            raise
        self.socket_inode = os.stat(self.socket_path).st_ino
        return [self.sock] + ([self.metrics_sock] if self.metrics_sock else [])

    def metrics(self) -> dict[str, Any]:
        with self.lock:
            return self.collector.metrics()

    def serve(self, keep: list[socket.socket]) -> int:
        sock = keep[0]
        metrics = None
        if self.metrics_sock is not None:
            metrics = prometheus.serve(self.metrics_sock, self.metrics)
            log.info("metrics on http://%s/metrics", prometheus.describe(self.metrics_sock))
        wakeup = Wakeup(SIGNALS)
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        selector.register(wakeup, selectors.EVENT_READ)
        log.info("listening on %s; state in %s", self.socket_path, self.state_file)
        set_title("mailstatd", f"collector {self.socket_path}")
        note = queue_length_note()
        if note:
            log.warning("%s", note)
        pause = coalescing_pause(queue_length())
        signals_only = selectors.DefaultSelector()
        signals_only.register(wakeup, selectors.EVENT_READ)
        self.sweep()
        try:
            while not self.stopping:
                received = False
                for key, _mask in selector.select(self.timeout()):
                    if key.fileobj is sock:
                        self.receive(sock)
                        received = True
                    else:
                        self.on_signals(wakeup.pending())
                self.housekeeping()
                if received and pause and not self.stopping and signals_only.select(pause):
                    self.on_signals(wakeup.pending())
        finally:
            signals_only.close()
            if metrics is not None:
                metrics.shutdown()
                metrics.server_close()
            self.wait_for_saver()
            self.save(background=False)
            selector.close()
            wakeup.close()
            sock.close()
            self.remove_socket()
        log.info("stopped")
        return 0

    def timeout(self) -> float | None:
        deadlines = []
        if self.collector.dirty:
            deadlines.append(self.last_save + self.save_interval)
        if self.sweep_interval > 0:
            deadlines.append(self.next_sweep)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def receive(self, sock: socket.socket) -> None:
        with self.lock:
            for _ in range(BATCH):
                try:
                    data, sender = sock.recvfrom(MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    log.warning("receive failed: %s", exc)
                    return
                self.handle(sock, data, sender)

    def handle(self, sock: socket.socket, data: bytes, sender: Any) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            self.collector.ignored += 1
            return
        if not isinstance(message, dict):
            self.collector.ignored += 1
        elif "q" in message:
            if sender:  # an unbound sender cannot be answered
                with contextlib.suppress(OSError):  # it went away or its queue is full
                    sock.sendto(encode(self.collector.answer(message)), sender)
        else:
            self.collector.event(message)

    def housekeeping(self) -> None:
        self.reap_saver()
        now = time.monotonic()
        if self.sweep_interval > 0 and now >= self.next_sweep:
            self.sweep()
        if self.collector.dirty and now >= self.last_save + self.save_interval:
            self.save()

    def sweep(self) -> None:
        with self.lock:
            dropped = self.collector.sweep(daemon.process_alive) if self.sweep_interval > 0 else 0
        if dropped:
            log.info("dropped %d sessions whose process is gone", dropped)
        self.next_sweep = time.monotonic() + max(self.sweep_interval, 0.1)

    def save(self, background: bool = True) -> None:
        """Write the state file. In the loop a forked child writes it from its copy of the
        figures, so a big state file never stops the loop from draining the socket (Linux queues
        only net.unix.max_dgram_qlen datagrams); the final save on TERM is done in place."""
        self.last_save = time.monotonic()
        if not self.collector.dirty or self.saver is not None:
            return
        pid = -1
        if background:
            with contextlib.suppress(OSError):
                pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.set_wakeup_fd(-1)
                code = 0 if self.write_state() else 1
            finally:
                os._exit(code)
        if pid > 0:
            self.saver, self.collector.dirty = pid, False
            return
        self.saved(self.write_state())

    def write_state(self) -> bool:
        try:
            save_state_file(self.collector, self.state_file)
        except OSError as exc:
            if not self.save_failed:  # one line per failure streak, not one per second
                log.error("cannot save %s: %s", self.state_file, exc)
            return False
        return True

    def saved(self, ok: bool) -> None:
        if not ok:
            self.collector.dirty = True  # try again at the next interval
        elif self.save_failed:
            log.info("saved %s again", self.state_file)
        self.save_failed = not ok

    def reap_saver(self, block: bool = False) -> None:
        if self.saver is None:
            return
        try:
            pid, status = os.waitpid(self.saver, 0 if block else os.WNOHANG)
        except ChildProcessError:
            pid, status = self.saver, 1
        if pid:
            self.saver = None
            self.saved(os.waitstatus_to_exitcode(status) == 0)

    def wait_for_saver(self) -> None:
        self.reap_saver(block=True)

    def on_signals(self, signals: Iterable[int]) -> None:
        for signum in signals:
            if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                log.info("%s received: saving and stopping", signal.Signals(signum).name)
                self.stopping = True
            elif signum == signal.SIGHUP:
                self.reload()
            elif signum == signal.SIGCHLD:
                self.reap_saver()

    def reload(self) -> None:
        """HUP: new config values (the socket and state paths need a restart); reopen the log."""
        try:
            settings = load_settings(self.args)
            self.apply_settings(settings)
        except ConfigError as exc:
            log.error("reload failed, keeping the old configuration: %s", exc)
        logs.reopen()
        log.info("configuration reloaded")

    def remove_socket(self) -> None:
        with contextlib.suppress(OSError):
            if os.stat(self.socket_path).st_ino == self.socket_inode:
                self.socket_path.unlink()


def load_settings(args: dict[str, Any]) -> Settings:
    overrides = {
        key: args[flag] for flag, key in COMMON_FLAGS.items() if isinstance(args.get(flag), str)
    }
    settings = Settings(
        "mailstatd", read_config(args.get("--config")), overrides, args.get("--config")
    )
    settings.validate()
    return settings


def dump(settings: Settings) -> int:
    """`mailstatd --dump`: the running collector's figures as JSON, for shell scripts."""
    try:
        reply = query_stat(settings.stats_socket.absolute())
    except StatsError as exc:
        print(f"mailstatd: {exc}", file=sys.stderr)
        return 1
    for key in ("ok", "id"):
        reply.pop(key, None)
    try:
        print(json.dumps(reply, indent=2, sort_keys=True), flush=True)
    except BrokenPipeError:  # `mailstatd --dump | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def main(argv: list[str] | None = None) -> None:
    args = docopt(__doc__, argv=argv, version=f"mailstatd (maildaemons) {VERSION}")
    try:
        settings = load_settings(args)
    except ConfigError as exc:
        print(f"mailstatd: {exc}", file=sys.stderr)
        sys.exit(1)
    if args["--dump"]:
        sys.exit(dump(settings))
    # Absolute now: the daemon's working directory becomes "/".
    socket_path = settings.stats_socket.absolute()
    state_file = (settings.path("state_dir") / STATE_FILE).absolute()
    collector = Collector(settings.get_int("max_log_entries"))
    statsd = StatsDaemon(args, settings, collector, socket_path, state_file)

    def prepare() -> list[socket.socket]:
        try:
            return statsd.prepare()
        except StateFileError as exc:
            raise daemon.StartupError(str(exc)) from None

    sys.exit(daemon.run(settings, bool(args["--foreground"]), prepare, statsd.serve))


if __name__ == "__main__":
    main()
