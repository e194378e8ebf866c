"""What every protocol daemon's `main` shares: flags to settings, start-up checks, the master's
state, HUP reload, and the server of the configured process model (`process_model`: the forking
server of common/server.py or the worker pool of common/pool.py) wired to the daemon's session
handler.

A daemon supplies a `Protocol` (its name, how to build a per-connection handler and its refusal
line); this module does the rest the same way for pop3d, imapd, imapgw and msmpd.

A protocol that speaks TLS gets its context built here from `tls_cert`/`tls_key` before the
privilege drop (a bad one stops the start with one line) and again on HUP (a bad one then keeps
the old context and logs why), and its implicit-TLS listener on `tls_port` beside the plain one.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import cli, daemon, logs, relay, samepage, tls
from common.config import ConfigError, Settings, key_for, read_config
from common.lineio import LineIO
from common.logs import SessionLog
from common.proxy import ProxyPolicy
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
    tls: bool = False  # STARTTLS/STLS and `tls_port` (common/tls.py)


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
    tls: ssl.SSLContext | None = None  # built before the privilege drop, again on HUP
    tls_listening: bool = False  # an implicit-TLS listener is bound (it stays until restart)
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
            self.tls,
            pooled=self.pooled,
            watcher=self.watcher,
        )

    def open_relay(self, session: Session) -> None:
        if self.relay is not None:
            relay.open_relay(self.relay, session.address, session.log)

    def child_started(self) -> None:
        """In a fresh child: read the runtime settings once for the whole session."""
        self.settings = self.settings.snapshot()
        if merge_wanted(self.settings):
            samepage.offer_after(self.settings.get_float("memory_merge_after"))

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
        merge_changed = merge_wanted(settings) != merge_wanted(self.settings)
        self.settings, self.users = settings, users
        self.relay = relay.daemon_settings(settings, self.log)
        self.stats = StatsClient(settings.stats_socket)
        target = settings.get("log") if not self.args.get("--foreground") else "stderr"
        if target and target != "stderr":
            logs.setup(settings.daemon, target, settings.get("log_level"))
        logs.reopen()
        self.log.info("configuration reloaded")
        if merge_changed:  # sessions forked from now on; the running ones keep theirs
            samepage.start(merge_wanted(settings), settings.get_choice("process_model"), self.log)
        self.reload_tls(settings)
        return new_limits, self.stats

    def reload_tls(self, settings: Settings) -> None:
        """HUP: a renewed certificate is read again; one that cannot be used keeps the old
        context, with one line saying why."""
        if not self.protocol.tls:
            return
        try:
            context = tls_context(settings)
        except ConfigError as exc:
            self.log.error(
                "TLS not reloaded, keeping the old certificate: %s%s", exc, key_hint(settings)
            )
            return
        if context is None and self.tls_listening:
            self.log.error(
                "TLS not reloaded, keeping the old certificate: tls_cert is empty but the "
                "TLS port stays open until a restart"
            )
            return
        self.tls = context


def key_hint(settings: Settings) -> str:
    """Why files readable at start-up may not be on HUP: the master runs as `user` now."""
    paths = [settings.optional_path("tls_cert"), settings.optional_path("tls_key")]
    if os.geteuid() == 0 or all(p is None or os.access(p, os.R_OK) for p in paths):
        return ""
    who = settings.get("user") or f"uid {os.geteuid()}"
    return f" (the daemon runs as {who} now: a reload needs the certificate and key readable by it)"


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server context from tls_cert and tls_key; None when they are empty."""
    cert, key = settings.optional_path("tls_cert"), settings.optional_path("tls_key")
    if cert is None or key is None:
        return None
    try:
        return tls.server_context(cert, key)
    except tls.TlsConfigError as exc:
        raise ConfigError(str(exc)) from None


def tls_port(settings: Settings) -> int | None:
    """The implicit-TLS port of a daemon that has the key (None: no TLS listener)."""
    if key_for(settings.daemon, "tls_port") is None:
        return None
    return settings.optional_port("tls_port")


def check_tls(settings: Settings) -> None:
    """Start-up and HUP: the TLS keys make sense together."""
    cert, key = settings.optional_path("tls_cert"), settings.optional_path("tls_key")
    if (cert is None) != (key is None):
        raise ConfigError("tls_cert and tls_key go together: set both or neither")
    port = tls_port(settings)
    if port is not None and cert is None:
        raise ConfigError("tls_port is set but tls_cert and tls_key are not")
    if port is not None and port == settings.get_int("port"):
        raise ConfigError(f"tls_port {port} is the plain port too")
    needs_tls = key_for(settings.daemon, "require_tls") and settings.get_bool("require_tls")
    if needs_tls and cert is None:
        raise ConfigError("require_tls needs tls_cert and tls_key")


def check_proxy(settings: Settings) -> None:
    """Start-up and HUP: the listeners `proxy_protocol` names exist, and someone may send."""
    names = settings.listeners("proxy_protocol")
    if "tls_port" in names and tls_port(settings) is None:
        what = "is not set" if key_for(settings.daemon, "tls_port") else "is not one of its keys"
        raise ConfigError(f"proxy_protocol names tls_port, but {settings.daemon}'s tls_port {what}")
    if names and not settings.networks("proxy_trusted"):
        raise ConfigError("proxy_protocol needs proxy_trusted: the addresses of the load balancers")


def proxy_policy(settings: Settings) -> ProxyPolicy:
    return ProxyPolicy(
        settings.listeners("proxy_protocol"),
        tuple(settings.networks("proxy_trusted")),
        settings.get_float("proxy_timeout"),
    )


def session_handler(state: MasterState) -> Handler:
    """The connection handler of a session protocol: a LineIO on the socket, the session's log,
    the session from the protocol's class and command table, run to its end."""
    protocol = state.protocol
    if protocol.session is None or protocol.max_line is None:
        raise TypeError(f"{protocol.daemon} has no session class")
    make_session, max_line = protocol.session, protocol.max_line

    def handle(
        conn: socket.socket, address: str, number: int, interrupt_fd: int, tls: bool, via: str = ""
    ) -> int:
        # A forked child pinned its settings; sessions of a pool worker each take a snapshot.
        settings = state.settings.snapshot() if state.pooled else state.settings
        io = LineIO(conn, max_line(settings), settings.get_float("idle_timeout"), interrupt_fd)
        log = SessionLog(state.log, number, address)
        log.info(connect_line(tls, via))
        services = state.session_services(settings)
        session = make_session(
            io, services, address, number, log, protocol.commands, implicit_tls=tls
        )
        return session.run()

    return handle


def connect_line(tls: bool, via: str) -> str:
    """A session's first log line: `connect`, then on which listener and through which
    balancer (`{7} 192.0.2.7 connect (TLS port) via 10.0.0.2 (PROXY v2)`)."""
    return "connect" + (" (TLS port)" if tls else "") + (f" via {via}" if via else "")


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
    if protocol.tls:
        check_tls(settings)
    check_proxy(settings)
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
    cache = (settings.get_int("auth_cache_size"), settings.get_float("auth_cache_ttl"))
    if protocol.users_key is None:
        return UserDB(None, inline, *cache)
    users = UserDB(settings.optional_path(protocol.users_key), inline, *cache)
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
        # Read now, as root when started so: a key only root may read is read before the drop.
        context = tls_context(settings) if protocol.tls else None
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
        tls=context,
    )
    tls_listeners: list[socket.socket] = []

    def prepare() -> list[socket.socket]:
        if settings.get_choice("process_model") == "pool":
            # Imported before the privilege drop (common/daemon.py), as everything a session
            # needs: `user` may not be able to read the Python installation afterwards. Only
            # for the pool model: the fork model's master stays as small as it was (each child
            # copies what it touches).
            import common.pool
            import common.store.watch  # noqa: F401 - the workers' folder watcher
        addresses, backlog = settings.listen_addresses(), settings.get_int("backlog")
        plain = bind_listeners(addresses, settings.get_int("port"), backlog)
        port = tls_port(settings) if protocol.tls else None
        if port is not None:
            try:
                tls_listeners.extend(bind_listeners(addresses, port, backlog))
            except OSError:
                for sock in plain:
                    sock.close()
                raise
            state.tls_listening = True
        return plain + tls_listeners

    def serve(listeners: list[socket.socket]) -> int:
        samepage.start(merge_wanted(settings), settings.get_choice("process_model"), state.log)
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
            "tls_listeners": tls_listeners,
        }
        server: ForkingServer
        if settings.get_choice("process_model") == "pool":
            from common.pool import PoolServer  # imported already, by prepare()

            server = PoolServer(on_worker_start=state.worker_started, **common)
        else:
            server = ForkingServer(on_child_start=state.child_started, **common)
        return server.serve_forever()

    return daemon.run(settings, bool(args.get("--foreground")), prepare, serve)


def merge_wanted(settings: Settings) -> bool:
    return settings.get_bool("memory_merge")


def limits(settings: Settings) -> Limits:
    """The master's limits; HUP builds them again and the server swaps them whole."""
    return Limits(
        max_children=settings.get_int("max_children"),
        max_per_address=settings.get_int("max_per_address"),
        shutdown_grace=settings.get_float("shutdown_grace"),
        workers=settings.get_int("workers"),
        worker_sessions=settings.get_int("worker_sessions"),
        worker_lifetime=settings.get_int("worker_lifetime"),
        worker_cpu_affinity=settings.get_choice("worker_cpu_affinity"),
        proxy=proxy_policy(settings),
    )
