"""What every protocol daemon's `main` shares: flags to settings, start-up checks, the master's
state, HUP reload, and the server of the configured process model (`process_model`: the forking
server of common/server.py or the worker pool of common/pool.py) wired to the daemon's session
handler.

A daemon supplies a `Protocol` (its name, how to build a per-connection handler and its refusal
line); this module does the rest the same way for pop3d, imapd, imapgw and msmpd.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import cli, daemon, logs, relay
from common.config import ConfigError, Settings, read_config
from common.lineio import LineIO
from common.logs import SessionLog
from common.server import BusyReply, ForkingServer, Handler, Limits, bind_listeners
from common.session import Services, Session
from common.stats import StatsClient
from common.users import UserDB, UserFileError

if TYPE_CHECKING:
    from common.pool import Worker
    from common.store.watch import FolderWatcher


@dataclass
class Protocol:
    name: str  # 'pop3': stats and logs
    daemon: str  # 'pop3d': config section, pidfile, log tag
    busy_reply: BusyReply
    # A session protocol names its Session class (or a factory with the same arguments), its
    # one command table and the longest line its LineIO reads; a daemon that is no session
    # protocol (the 4711 gateway) brings its own connection handler instead.
    session: Callable[..., Session] | None = None
    commands: Mapping[str, Any] = field(default_factory=dict)
    max_line: Callable[[Settings], int] | None = None
    make_handler: Callable[[MasterState], Handler] | None = None
    opens_relay: bool = False  # POP3 and IMAP logins open the SMTP relay (seed 002)
    flags: dict[str, str] = field(default_factory=dict)  # daemon-specific docopt flag -> key
    users_key: str | None = "users_file"  # None: the daemon authenticates nobody itself
    inline_users_flag: str = "-u"
    # Start-up (and HUP) checks beyond the schema's types; raises ConfigError.
    check: Callable[[Settings], None] | None = None


@dataclass
class MasterState:
    """What the master holds and a child inherits: settings, users, stats, log."""

    protocol: Protocol
    settings: Settings
    users: UserDB
    stats: StatsClient
    log: logging.Logger
    args: dict[str, Any]
    # Built once here and on HUP, not per connection: a child only reads it.
    relay: relay.RelaySettings | None = None
    # Taken before detaching: the daemon's working directory becomes "/".
    start_dir: Path = field(default_factory=Path.cwd)
    # Pool model, in a worker: sessions share the process (common/pool.py).
    pooled: bool = False
    watcher: FolderWatcher | None = None

    def __post_init__(self) -> None:
        self.relay = relay.daemon_settings(self.settings, self.log)

    def session_services(self, settings: Settings | None = None) -> Services:
        """A session's view of the master's state, with the after-login relay hook when this
        protocol's logins open the relay and relaying is on."""
        hooks: list[Callable[[Session], None]] = []
        if self.protocol.opens_relay and self.relay is not None:
            hooks.append(self.open_relay)
        return Services(
            settings or self.settings,
            self.users,
            self.stats,
            self.log,
            self.start_dir,
            hooks,
            pooled=self.pooled,
            watcher=self.watcher,
        )

    def open_relay(self, session: Session) -> None:
        if self.relay is not None:
            relay.open_relay(self.relay, session.address, session.log)

    def child_started(self) -> None:
        """In a fresh child: read the runtime settings once for the whole session."""
        self.settings = self.settings.snapshot()

    def worker_started(self, worker: Worker) -> None:
        """In a fresh pool worker: sessions share this process from now on; IDLE waits on one
        folder watcher for all of them (or polls, when inotify cannot be had). The users
        database stays this worker's for its lifetime (until HUP), with what it caches."""
        from common.store.watch import FolderWatcher  # imported by the master: see serve()

        self.pooled = True
        try:
            self.watcher = FolderWatcher()
        except OSError as exc:
            self.log.warning("no folder watcher, IDLE polls: %s", exc)
            self.watcher = None
        worker.watcher = self.watcher

    def reload(self) -> tuple[Limits, StatsClient]:
        """HUP: re-read config and users; a bad new config raises and the old one stays.
        Returns what the master swaps whole: its new limits and stats client."""
        settings = load_settings(self.protocol, self.args)
        users = load_users(self.protocol, settings, self.args)
        new_limits = limits(settings)
        self.settings, self.users = settings, users
        self.relay = relay.daemon_settings(settings, self.log)
        self.stats = StatsClient(settings.stats_socket)
        target = settings.get("log") if not self.args.get("--foreground") else "stderr"
        if target and target != "stderr":
            logs.setup(settings.daemon, target, settings.get("log_level"))
        logs.reopen()
        self.log.info("configuration reloaded")
        return new_limits, self.stats


def session_handler(state: MasterState) -> Handler:
    """The connection handler of a session protocol: a LineIO on the socket, the session's log,
    the session from the protocol's class and command table, run to its end."""
    protocol = state.protocol
    if protocol.session is None or protocol.max_line is None:
        raise TypeError(f"{protocol.daemon} has no session class")
    make_session, max_line = protocol.session, protocol.max_line

    def handle(conn: socket.socket, address: str, number: int, interrupt_fd: int) -> int:
        # A forked child pinned its settings; sessions of a pool worker each take a snapshot.
        settings = state.settings.snapshot() if state.pooled else state.settings
        io = LineIO(conn, max_line(settings), settings.get_float("idle_timeout"), interrupt_fd)
        log = SessionLog(state.log, number, address)
        log.info("connect")
        services = state.session_services(settings)
        return make_session(io, services, address, number, log, protocol.commands).run()

    return handle


def check_relay(settings: Settings) -> None:
    """Start-up and HUP check for daemons that open the relay: a bad [relay] is refused here,
    not discovered in every child."""
    try:
        relay.RelaySettings.from_settings(settings)
    except relay.RelayConfigError as exc:
        raise ConfigError(str(exc)) from None


def load_settings(protocol: Protocol, args: dict[str, Any]) -> Settings:
    config_path = args.get("--config")
    parser = read_config(config_path)
    settings = Settings(protocol.daemon, parser, cli.overrides(args, protocol.flags), config_path)
    settings.validate()
    if protocol.check is not None:
        protocol.check(settings)
    return settings


def parse_inline_users(values: list[str] | None) -> dict[str, str]:
    """`-u NAME:PASS` (repeatable, no limit): a malformed one is a start-up error."""
    users = {}
    for value in values or []:
        name, sep, password = value.partition(":")
        if not sep or not name or not password:
            raise ConfigError(f"bad user {value.split(':')[0]!r}: expected NAME:PASS")
        users[name] = password
    return users


def load_users(protocol: Protocol, settings: Settings, args: dict[str, Any]) -> UserDB:
    inline = parse_inline_users(args.get(protocol.inline_users_flag))
    if protocol.users_key is None:
        return UserDB(None, inline)
    users = UserDB(settings.optional_path(protocol.users_key), inline)
    try:
        users.load()
    except UserFileError as exc:
        raise ConfigError(str(exc)) from None
    return users


def main(protocol: Protocol, args: dict[str, Any]) -> int:
    """Run a protocol daemon from its parsed docopt arguments; returns the exit status."""
    try:
        settings = load_settings(protocol, args)
        users = load_users(protocol, settings, args)
    except ConfigError as exc:
        print(f"{protocol.daemon}: {exc}", file=sys.stderr)
        return 1
    state = MasterState(
        protocol,
        settings,
        users,
        StatsClient(settings.stats_socket),
        logging.getLogger(protocol.daemon),
        args,
    )

    def prepare() -> list[socket.socket]:
        return bind_listeners(
            settings.listen_addresses(), settings.get_int("port"), settings.get_int("backlog")
        )

    def serve(listeners: list[socket.socket]) -> int:
        common: dict[str, Any] = {
            "protocol": protocol.name,
            "listeners": listeners,
            "handler": (protocol.make_handler or session_handler)(state),
            "log": state.log,
            "stats": state.stats,
            "limits": limits(settings),
            "busy_reply": protocol.busy_reply,
            "on_reload": state.reload,
            "program": protocol.daemon,
        }
        server: ForkingServer
        if settings.get_choice("process_model") == "pool":
            # Imported here, before the workers are forked, and only for the pool model: the
            # fork model's master stays as small as it was (each child copies what it touches).
            from common.pool import PoolServer
            from common.store import watch  # noqa: F401 - the workers' folder watcher

            server = PoolServer(on_worker_start=state.worker_started, **common)
        else:
            server = ForkingServer(on_child_start=state.child_started, **common)
        return server.serve_forever()

    return daemon.run(settings, bool(args.get("--foreground")), prepare, serve)


def limits(settings: Settings) -> Limits:
    """The master's limits; HUP builds them again and the server swaps them whole."""
    return Limits(
        max_children=settings.get_int("max_children"),
        max_per_address=settings.get_int("max_per_address"),
        shutdown_grace=settings.get_float("shutdown_grace"),
        workers=settings.get_int("workers"),
        worker_sessions=settings.get_int("worker_sessions"),
        worker_lifetime=settings.get_int("worker_lifetime"),
    )
