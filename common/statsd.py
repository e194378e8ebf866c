"""mailstatd: the stats collector on a Unix datagram socket (DESIGN.md "Stats collector").

Usage:
  mailstatd [options]
  mailstatd -h | --help
  mailstatd -v | --version

Options:
  -h --help             Show this help and exit.
  -v --version          Show the version and exit.
  -f --foreground       Stay attached and log to stderr (tests, systemd Type=simple).
  -c FILE --config=FILE
                        Config file (default /etc/maildaemons/maildaemons.conf).
  --stats-socket=PATH   The collector's socket (default <run_dir>/mailstatd.sock).
  --state-dir=DIR       State directory: the figures are kept in DIR/mailstatd.json.
  --pidfile=FILE        Pidfile (default <run_dir>/mailstatd.pid).
  --log=TARGET          Log to 'syslog', 'stderr' or a file path.
  -d DIR                Maildir base (shared by every daemon; mailstatd does not use it).
  --users=FILE          Users file (shared by every daemon; mailstatd does not use it).
  --dump                Do not start: ask the running collector for its figures, print them
                        as JSON on stdout and exit (1 when it does not answer).

The daemons send events (common/stats.py) and never wait for the collector. It keeps, per protocol
and in total, connections ever and now, the historical maximum of concurrent connections, bytes,
logins ok/failed, who is logged in now, and each user's access log; msmpd asks it for STAT, LIST
<user>, LOGS and "is logged in" (common/stats_query.py). The figures survive a restart: they are
written to the state file by atomic rename at most once every `save_interval` seconds and on TERM.
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
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeGuard

from docopt import docopt

from common import daemon, logs
from common.atomic import atomic_write
from common.config import ConfigError, Settings, one_line, read_config
from common.server import Wakeup
from common.stats_query import MAX_REPLY, StatsError, stat as query_stat
from common.version import VERSION

STATE_FILE = "mailstatd.json"
STATE_VERSION = 1
# Logins to these protocols are administrators, not mail users: they are counted, but they have no
# access log and never make a mail user "logged in" (an admin may share a mail user's name).
ADMIN_PROTOCOLS = frozenset({"msmp"})
MAX_DATAGRAM = 65536
RECV_BUFFER = 4 * 1024 * 1024  # a burst of events waits here instead of being dropped
BATCH = 512                    # datagrams handled between looks at the signals
MAX_PROTOCOLS = 32
MAX_LIVE = 100_000
MAX_NAME = 255
MAX_ADDRESS = 64
MAX_BYTES_EVENT = 1 << 40
MAX_LISTED_SESSIONS = 200
CLOCK_SKEW = 86400.0           # an event time further off than this is replaced by ours
SOCKET_MODE = 0o660
SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)
FLAGS = {"--pidfile": "pidfile", "--stats-socket": "stats_socket", "--state-dir": "state_dir",
         "--log": "log", "-d": "mail_base", "--users": "users_file"}

log = logging.getLogger("mailstatd")


class StateFileError(Exception):
    """The state file exists but cannot be used; start-up stops rather than lose the figures."""


# -- the figures -----------------------------------------------------------------------------


@dataclass
class Counters:
    """The figures of one protocol, or of all of them together."""

    connections: int = 0
    current: int = 0
    max_concurrent: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    logins_ok: int = 0
    logins_failed: int = 0

    def opened(self) -> None:
        self.connections += 1
        self.current += 1
        self.max_concurrent = max(self.max_concurrent, self.current)

    def closed(self) -> None:
        self.current = max(0, self.current - 1)

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "bytes": self.bytes_in + self.bytes_out}

    @classmethod
    def from_dict(cls, data: object) -> Counters:
        if not isinstance(data, dict):
            raise ValueError("counters are not an object")
        values = {}
        for item in fields(cls):
            value = data.get(item.name, 0)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"bad counter {item.name!r}")
            values[item.name] = value
        values["current"] = 0  # recounted from the live sessions
        return cls(**values)


@dataclass
class Live:
    """A connection the collector knows is open, keyed by (protocol, child pid)."""

    proto: str
    pid: int
    addr: str
    since: float
    user: str | None = None
    opened: bool = False  # the master's "open" arrived, so it counts in `current`

    def as_dict(self) -> dict[str, Any]:
        return {"proto": self.proto, "pid": self.pid, "addr": self.addr,
                "since": round(self.since, 3), "user": self.user}


class Collector:
    """Every figure mailstatd keeps, changed by events and read by queries; does no I/O."""

    def __init__(self, max_log_entries: int) -> None:
        self.max_log_entries = max(1, max_log_entries)
        self.totals = Counters()
        self.protocols: dict[str, Counters] = {}
        self.live: dict[tuple[str, int], Live] = {}
        self.logs: dict[str, deque[tuple[int, str, str]]] = {}
        self.login_counts: dict[str, int] = {}
        self.started = time.time()
        self.dirty = False
        self.ignored = 0

    # -- events ------------------------------------------------------------------------------

    def event(self, event: dict[str, Any]) -> None:
        """Apply one event; a malformed one is counted in `ignored` and changes nothing."""
        kind = event.get("e")
        proto, pid = event.get("proto"), event.get("pid")
        if not (valid_name(proto) and isinstance(pid, int) and pid > 0):
            self.ignored += 1
            return
        handler = EVENT_HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None or (proto not in self.protocols
                               and len(self.protocols) >= MAX_PROTOCOLS):
            self.ignored += 1
            return
        if not handler(self, proto, pid, event):
            self.ignored += 1
            return
        self.dirty = True

    def counters(self, proto: str) -> Counters:
        return self.protocols.setdefault(proto, Counters())

    def _live(self, proto: str, pid: int, addr: str, when: float) -> Live | None:
        key = (proto, pid)
        entry = self.live.get(key)
        if entry is None:
            if len(self.live) >= MAX_LIVE:
                return None
            entry = self.live[key] = Live(proto, pid, addr, when)
        return entry

    def on_open(self, proto: str, pid: int, event: dict[str, Any]) -> bool:
        addr = event.get("addr")
        if not valid_address(addr):
            return False
        entry = self._live(proto, pid, addr, event_time(event))
        if entry is None or entry.opened:
            return entry is not None
        entry.opened, entry.addr = True, addr
        self.counters(proto).opened()
        self.totals.opened()
        return True

    def on_close(self, proto: str, pid: int, event: dict[str, Any]) -> bool:
        self.end(self.live.pop((proto, pid), None))
        return True

    def end(self, entry: Live | None) -> None:
        if entry is not None and entry.opened:
            self.counters(entry.proto).closed()
            self.totals.closed()

    def on_login(self, proto: str, pid: int, event: dict[str, Any]) -> bool:
        user, addr, ok = event.get("user"), event.get("addr"), event.get("ok")
        if not (isinstance(user, str) and valid_address(addr) and isinstance(ok, bool)):
            return False
        if ok and not valid_name(user):
            return False
        counters = self.counters(proto)
        if not ok:
            counters.logins_failed += 1
            self.totals.logins_failed += 1
            return True
        counters.logins_ok += 1
        self.totals.logins_ok += 1
        when = event_time(event)
        # A login may overtake its master's "open": the entry waits for it, not yet counted.
        entry = self._live(proto, pid, addr, when)
        if entry is not None:
            entry.user = user
        if proto not in ADMIN_PROTOCOLS:
            self.user_log(user).append((int(when), proto, addr))
            self.login_counts[user] = self.login_counts.get(user, 0) + 1
        return True

    def on_bytes(self, proto: str, pid: int, event: dict[str, Any]) -> bool:
        bytes_in, bytes_out = event.get("in"), event.get("out")
        if not (valid_count(bytes_in) and valid_count(bytes_out)):
            return False
        for counters in (self.counters(proto), self.totals):
            counters.bytes_in += bytes_in
            counters.bytes_out += bytes_out
        return True

    def user_log(self, user: str) -> deque[tuple[int, str, str]]:
        entries = self.logs.get(user)
        if entries is None:
            entries = self.logs[user] = deque(maxlen=self.max_log_entries)
        return entries

    def set_max_log_entries(self, limit: int) -> None:
        self.max_log_entries = max(1, limit)
        for user, entries in self.logs.items():
            if entries.maxlen != self.max_log_entries:
                self.logs[user] = deque(entries, maxlen=self.max_log_entries)

    def sweep(self, alive: Callable[[int], bool]) -> int:
        """Drop live sessions whose process is gone: their "close" was lost (a full queue, a
        SIGKILLed master, a collector restart). Returns how many were dropped."""
        dead = [key for key in self.live if not alive(key[1])]
        for key in dead:
            self.end(self.live.pop(key))
        if dead:
            self.dirty = True
        return len(dead)

    # -- queries -----------------------------------------------------------------------------

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        kind = request.get("q")
        reply: dict[str, Any]
        if kind == "ping":
            reply = {"ok": True}
        elif kind == "stat":
            reply = self.figures()
        elif kind in ("user", "logs") and valid_name(request.get("user")):
            user = str(request["user"])
            reply = self.user_figures(user) if kind == "user" else self.user_logs(user)
        else:
            reply = {"ok": False, "error": "bad query"}
        if "id" in request and isinstance(request["id"], str | int):
            reply["id"] = request["id"]
        return reply

    def logged_in(self) -> list[Live]:
        return sorted((e for e in self.live.values() if e.user is not None),
                      key=lambda e: (e.since, e.pid))

    def figures(self) -> dict[str, Any]:
        sessions = self.logged_in()
        reply = {
            "ok": True,
            "started": round(self.started, 3),
            "totals": self.totals.as_dict(),
            "protocols": {p: c.as_dict() for p, c in sorted(self.protocols.items())},
            "logged_in_count": len(sessions),
            "logged_in": [e.as_dict() for e in sessions[:MAX_LISTED_SESSIONS]],
            "users_with_logs": len(self.logs),
            "ignored_events": self.ignored,
        }
        return fit(reply, "logged_in")

    def user_figures(self, user: str) -> dict[str, Any]:
        sessions = [e.as_dict() for e in self.logged_in()
                    if e.user == user and e.proto not in ADMIN_PROTOCOLS]
        return fit({"ok": True, "user": user, "logins": self.login_counts.get(user, 0),
                    "log_entries": len(self.logs.get(user, ())),
                    "sessions": sessions[:MAX_LISTED_SESSIONS]}, "sessions")

    def user_logs(self, user: str) -> dict[str, Any]:
        entries = [list(item) for item in self.logs.get(user, ())]
        return fit({"ok": True, "user": user, "entries": entries}, "entries", keep_last=True)

    # -- persistence -------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "saved": round(time.time(), 3),
            "totals": self.totals.as_dict(),
            "protocols": {p: c.as_dict() for p, c in self.protocols.items()},
            "live": [e.as_dict() | {"opened": e.opened} for e in self.live.values()],
            "users": {u: {"logins": self.login_counts.get(u, 0), "log": [list(x) for x in log]}
                      for u, log in self.logs.items()},
        }

    def load_state(self, data: object) -> None:
        """Restore what a previous run saved; raises ValueError when it is not ours."""
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError("not a mailstatd state file of this version")
        self.totals = Counters.from_dict(data.get("totals", {}))
        protocols = data.get("protocols", {})
        if not isinstance(protocols, dict):
            raise ValueError("bad protocols")
        self.protocols = {str(p): Counters.from_dict(c) for p, c in protocols.items()
                          if valid_name(p)}
        self.live = {}
        for item in data.get("live", []):
            entry = restore_live(item)
            if entry is not None:
                self.live[(entry.proto, entry.pid)] = entry
                if entry.opened:
                    self.counters(entry.proto).current += 1
                    self.totals.current += 1
        users = data.get("users", {})
        if not isinstance(users, dict):
            raise ValueError("bad users")
        self.logs, self.login_counts = {}, {}
        for user, record in users.items():
            if valid_name(user) and isinstance(record, dict):
                self.login_counts[user] = int(record.get("logins", 0))
                log_entries = self.user_log(user)
                for item in record.get("log", []):
                    if isinstance(item, list) and len(item) == 3:
                        log_entries.append((int(item[0]), str(item[1]), str(item[2])))


EVENT_HANDLERS: dict[str, Callable[[Collector, str, int, dict[str, Any]], bool]] = {
    "open": Collector.on_open,
    "close": Collector.on_close,
    "login": Collector.on_login,
    "bytes": Collector.on_bytes,
}


def restore_live(item: object) -> Live | None:
    if not isinstance(item, dict):
        return None
    proto, pid, addr = item.get("proto"), item.get("pid"), item.get("addr")
    if not (valid_name(proto) and isinstance(pid, int) and pid > 0 and valid_address(addr)):
        return None
    user = item.get("user")
    return Live(str(proto), pid, str(addr), float(item.get("since", 0.0)),
                str(user) if valid_name(user) else None, bool(item.get("opened")))


def valid_name(value: object) -> TypeGuard[str]:
    """A protocol or user name we are willing to keep: short, printable, no spaces."""
    return (isinstance(value, str) and 0 < len(value) <= MAX_NAME and value.isprintable()
            and " " not in value)


def valid_address(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_ADDRESS and value.isprintable()


def valid_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_BYTES_EVENT


def event_time(event: dict[str, Any]) -> float:
    now = time.time()
    when = event.get("t")
    if isinstance(when, int | float) and abs(when - now) < CLOCK_SKEW:
        return float(when)
    return now


def fit(reply: dict[str, Any], key: str, keep_last: bool = False) -> dict[str, Any]:
    """Trim the list `reply[key]` until the reply fits in one datagram; say so when trimmed."""
    items = reply[key]
    while len(encode(reply)) > MAX_REPLY and items:
        cut = max(1, len(items) // 8)
        items = items[cut:] if keep_last else items[:-cut]
        reply[key] = items
        reply["truncated"] = True
    return reply


def encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: someone else's process, alive
    return True


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
        raise StateFileError(f"state file {path} is not valid ({one_line(exc)}); "
                             "move it aside to start with empty figures") from None


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


def queue_length_note() -> str | None:
    """Linux queues at most net.unix.max_dgram_qlen datagrams per socket; beyond that a sender's
    event is dropped (never blocked). Returns a warning when the limit is low."""
    try:
        value = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    except (OSError, ValueError):
        return None
    if value >= 512:
        return None
    return (f"net.unix.max_dgram_qlen is {value}: a burst of more than {value} events between "
            "two reads is dropped; raise it with `sysctl -w net.unix.max_dgram_qlen=512`")


# -- the daemon ------------------------------------------------------------------------------


class StatsDaemon:
    """The collector's loop: read every waiting datagram, answer queries, save, sweep, signals."""

    def __init__(self, args: dict[str, Any], settings: Settings, collector: Collector,
                 socket_path: Path, state_file: Path) -> None:
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
        self.apply_settings(settings)

    def apply_settings(self, settings: Settings) -> None:
        self.settings = settings
        self.save_interval = settings.get_float("save_interval")
        self.sweep_interval = settings.get_float("sweep_interval")
        self.collector.set_max_log_entries(settings.get_int("max_log_entries"))

    def prepare(self) -> list[socket.socket]:
        uid, gid = daemon.owner_ids(self.settings)
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        load_state_file(self.collector, self.state_file)
        self.sock = bind_socket(self.socket_path, uid, gid)
        self.socket_inode = os.stat(self.socket_path).st_ino
        return [self.sock]

    def serve(self, keep: list[socket.socket]) -> int:
        sock = keep[0]
        wakeup = Wakeup(SIGNALS)
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        selector.register(wakeup, selectors.EVENT_READ)
        log.info("listening on %s; state in %s", self.socket_path, self.state_file)
        note = queue_length_note()
        if note:
            log.warning("%s", note)
        self.sweep()
        try:
            while not self.stopping:
                for key, _mask in selector.select(self.timeout()):
                    if key.fileobj is sock:
                        self.receive(sock)
                    else:
                        self.on_signals(wakeup.pending())
                self.housekeeping()
        finally:
            self.save()
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
        now = time.monotonic()
        if self.sweep_interval > 0 and now >= self.next_sweep:
            self.sweep()
        if self.collector.dirty and now >= self.last_save + self.save_interval:
            self.save()

    def sweep(self) -> None:
        dropped = self.collector.sweep(pid_alive) if self.sweep_interval > 0 else 0
        if dropped:
            log.info("dropped %d sessions whose process is gone", dropped)
        self.next_sweep = time.monotonic() + max(self.sweep_interval, 0.1)

    def save(self) -> None:
        self.last_save = time.monotonic()
        if not self.collector.dirty:
            return
        try:
            save_state_file(self.collector, self.state_file)
        except OSError as exc:
            if not self.save_failed:  # one line per failure streak, not one per second
                log.error("cannot save %s: %s", self.state_file, exc)
            self.save_failed = True
            return
        if self.save_failed:
            log.info("saved %s again", self.state_file)
        self.save_failed = False

    def on_signals(self, signals: Iterable[int]) -> None:
        for signum in signals:
            if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                log.info("%s received: saving and stopping", signal.Signals(signum).name)
                self.stopping = True
            elif signum == signal.SIGHUP:
                self.reload()

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
    overrides = {key: args[flag] for flag, key in FLAGS.items() if isinstance(args.get(flag), str)}
    settings = Settings("mailstatd", read_config(args.get("--config")), overrides,
                        args.get("--config"))
    settings.validate(("max_log_entries",), ("save_interval", "sweep_interval"))
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
    print(json.dumps(reply, indent=2, sort_keys=True))
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
