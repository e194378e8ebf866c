"""Configuration: the one schema of every key, and the settings each daemon reads through it.

Every key is declared once below (`KEYS`): its section, type, default and one line of help, and,
for the two MSMP may SET, its runtime name. A new key is one line there, read with the getter of
its type (`settings.get_int("port")`), and one entry each in `etc/maildaemons.conf` and
maildaemons.conf(5), which list exactly these keys with these defaults (tests/ops/test_ops.py).

Lookup of a daemon's key, highest first (DESIGN.md "Configuration"): runtime setting (MSMP SET,
kept in a state file under the state directory), command-line flag, the daemon's own section,
`[common]`, the built-in default. A daemon reads the keys of `[common]` and of its own section;
its own section may set a `[common]` key again for that daemon alone, and `[common]` may hold a
daemon key as the fallback for every daemon that has it.

`Settings.validate()` runs at start-up and on HUP: a section or key the schema does not know is an
error (as in Dovecot: a typo must not be ignored silently), and so is a value that does not parse
as its key's type. Each error is one line naming the key and where its value came from.
"""

from __future__ import annotations

import configparser
import ipaddress
import itertools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar, cast

from common.proxy import LISTENERS
from common.store.atomic import atomic_write, locked

_T = TypeVar("_T")

DEFAULT_CONFIG = Path("/etc/maildaemons/maildaemons.conf")
# Names the config file every command reads when -c is not given (the quick start's is
# var/maildaemons.conf); a file named there must exist, as one named with -c must.
CONFIG_ENV = "MAILDAEMONS_CONF"
RUNTIME_FILE = "runtime.json"
MAX_RUNTIME_KEY = 40
MAX_RUNTIME_VALUE = 100
TRUE_WORDS = ("1", "yes", "true", "on")
FALSE_WORDS = ("0", "no", "false", "off", "")


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line for stderr or the log."""


# -- types ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyType:
    """How a value is parsed; `parse` raises ValueError, and `expected` says what was wanted."""

    name: str
    expected: str
    parse: Callable[[str], object]


def parse_bool(text: str) -> bool:
    value = text.lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ValueError(text)


def parse_list(text: str) -> list[str]:
    """Items separated by commas or white space."""
    return text.replace(",", " ").split()


def parse_optional_seconds(text: str) -> int | None:
    """Empty, or digits only (RFC 2449 announces the number as it is written)."""
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        raise ValueError(text)
    return int(text)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> list[Network]:
    """Addresses or networks (`127.0.0.0/8`, `::1`, `192.0.2.7`), as parse_list separates
    them; host bits may be set (`10.1.2.3/8` is 10.0.0.0/8)."""
    return [ipaddress.ip_network(item, strict=False) for item in parse_list(text)]


def parse_listeners(text: str) -> frozenset[str]:
    """The listeners `proxy_protocol` names: `port`, `tls_port`, both, or none (empty)."""
    names = frozenset(parse_list(text))
    if not names <= set(LISTENERS):
        raise ValueError(text)
    return names


def parse_optional_port(text: str) -> int | None:
    """Empty (no such listener), or a TCP port."""
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ValueError(text)
    return int(text)


def one_of(*words: str) -> KeyType:
    """A value that must be one of `words` (lower case)."""

    def parse(text: str) -> str:
        if text.lower() not in words:
            raise ValueError(text)
        return text.lower()

    return KeyType("choice", " or ".join(words), parse)


STR = KeyType("str", "text", str)
INT = KeyType("int", "a whole number", int)
FLOAT = KeyType("float", "a number", float)
BOOL = KeyType("bool", "yes or no", parse_bool)
PATH = KeyType("path", "a path", lambda text: Path(text).expanduser())
LIST = KeyType("list", "a list", parse_list)
OPTIONAL_SECONDS = KeyType("seconds", "a whole number of seconds", parse_optional_seconds)
NETWORKS = KeyType("networks", "IP addresses or networks", parse_networks)
OPTIONAL_PORT = KeyType("port", "a TCP port or empty", parse_optional_port)
LISTENER_NAMES = KeyType("listeners", "port, tls_port, both or empty", parse_listeners)
PROCESS_MODEL = one_of("fork", "pool")
CPU_AFFINITY = one_of("auto", "yes", "no")


# -- the schema ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One config key. `runtime` is the name MSMP SET and GET use for it, if they may."""

    section: str
    name: str
    type: KeyType
    default: str
    help: str
    runtime: str | None = None


_common = partial(Key, "common")
_pop3d = partial(Key, "pop3d")
_imapd = partial(Key, "imapd")
_imapgw = partial(Key, "imapgw")
_msmpd = partial(Key, "msmpd")
_mailstatd = partial(Key, "mailstatd")
_relay = partial(Key, "relay")

KEYS: tuple[Key, ...] = (
    _common(
        "mail_base",
        PATH,
        "/var/mail/maildaemons",
        "a user's mail is <mail_base>/<user>/",
        runtime="maildir",
    ),
    _common("users_file", PATH, "/etc/maildaemons/users", "users, Dovecot passwd-file format"),
    _common("admins_file", PATH, "/etc/maildaemons/admins", "MSMP administrators, same format"),
    _common("state_dir", PATH, "/var/lib/maildaemons", "runtime settings, stats, relay files"),
    _common("run_dir", PATH, "/run/maildaemons", "pidfiles and mailstatd's socket"),
    _common("stats_socket", PATH, "", "mailstatd's socket (empty: <run_dir>/mailstatd.sock)"),
    _common("pidfile", PATH, "", "the pidfile (empty: <run_dir>/<daemon>.pid)"),
    _common("log", STR, "syslog", "syslog, stderr or a file path"),
    _common("log_level", STR, "info", "debug, info, warning or error"),
    _common("user", STR, "", "drop to this user after binding, when started as root"),
    _common("group", STR, "", "and to this group (empty: the user's primary group)"),
    _common("tls_cert", PATH, "", "TLS certificate, PEM, chain after it (empty: no TLS)"),
    _common("tls_key", PATH, "", "TLS private key, PEM, not readable by everyone"),
    _common(
        "disable_plaintext_auth",
        BOOL,
        "yes",
        "refuse passwords in clear outside TLS, except from trusted_networks",
    ),
    _common(
        "trusted_networks",
        NETWORKS,
        "127.0.0.0/8 ::1",
        "client networks where passwords may be sent in clear",
    ),
    _common("auth_failure_delay", FLOAT, "2", "seconds a failed login waits for its answer"),
    _common("max_auth_failures", INT, "3", "failed logins before a connection is closed"),
    _common("auth_cache_size", INT, "1000", "verified logins a process remembers (0: none)"),
    _common("auth_cache_ttl", FLOAT, "3600", "seconds a verified login is remembered"),
    _common("max_children", INT, "1000", "sessions per daemon at most (0: no limit)"),
    _common("max_per_address", INT, "20", "sessions per client address at most (0: no limit)"),
    _common("shutdown_grace", FLOAT, "10", "seconds TERM waits for sessions to finish"),
    _common("backlog", INT, "1024", "the listen(2) backlog"),
    _common("proxy_trusted", NETWORKS, "", "load balancers whose PROXY headers are believed"),
    _common("proxy_timeout", FLOAT, "5", "seconds a PROXY header may take to arrive"),
    _common("process_model", PROCESS_MODEL, "fork", "fork: a child per session; pool: workers"),
    _common("workers", INT, "0", "pool: worker processes (0: one per CPU)"),
    _common("worker_sessions", INT, "1000", "pool: sessions one worker serves at once"),
    _common(
        "worker_lifetime", INT, "0", "pool: replace a worker after this many sessions (0: never)"
    ),
    _common(
        "worker_cpu_affinity",
        CPU_AFFINITY,
        "auto",
        "pool: worker N runs on CPU N (auto: when there is one worker per CPU; yes; no)",
    ),
    _common(
        "memory_merge",
        BOOL,
        "no",
        "let the kernel merge identical memory pages of the daemon's processes (KSM, ksmd)",
    ),
    _common(
        "memory_merge_after",
        FLOAT,
        "10",
        "fork: seconds a session lasts before its pages are offered for merging",
    ),
    _pop3d("listen", LIST, "*", "addresses to listen on ('*': every interface)"),
    _pop3d("port", INT, "110", "the TCP port"),
    _pop3d("tls_port", OPTIONAL_PORT, "", "the implicit-TLS port, 995 by custom (empty: none)"),
    _pop3d("proxy_protocol", LISTENER_NAMES, "", "listeners that expect a PROXY header"),
    _pop3d("idle_timeout", INT, "600", "seconds an idle session is kept"),
    _pop3d("max_line", INT, "255", "the longest command line, in octets"),
    _pop3d(
        "transformer",
        STR,
        "",
        "RETR pipes each message through /bin/sh -c <transformer>",
        runtime="transformer",
    ),
    _pop3d("transformer_timeout", FLOAT, "60", "seconds a transformer may run per message"),
    _pop3d("expire", STR, "", "the EXPIRE policy announced in CAPA (empty: none)"),
    _pop3d("login_delay", OPTIONAL_SECONDS, "", "LOGIN-DELAY seconds, announced and enforced"),
    _imapd("listen", LIST, "*", "addresses to listen on ('*': every interface)"),
    _imapd("port", INT, "143", "the TCP port"),
    _imapd("tls_port", OPTIONAL_PORT, "", "the implicit-TLS port, 993 by custom (empty: none)"),
    _imapd("proxy_protocol", LISTENER_NAMES, "", "listeners that expect a PROXY header"),
    _imapd("idle_timeout", INT, "1800", "seconds before an idle session is logged out"),
    _imapd("max_line", INT, "65536", "the longest command line, in octets"),
    _imapd("max_literal", INT, "67108864", "the largest literal (APPEND message), in octets"),
    _imapd("idle_keepalive", FLOAT, "300", "seconds between keep-alives during IDLE"),
    _imapd(
        "literal_plus",
        BOOL,
        "yes",
        "LITERAL+ (non-synchronizing literals up to max_literal); no: LITERAL- (up to 4096)",
    ),
    _imapgw("listen", LIST, "*", "addresses to listen on ('*': every interface)"),
    _imapgw("port", INT, "4711", "the TCP port"),
    _imapgw("proxy_protocol", LISTENER_NAMES, "", "listeners that expect a PROXY header"),
    _imapgw("imap_host", STR, "127.0.0.1", "the IMAP server's host"),
    _imapgw("imap_port", INT, "143", "the port of the IMAP server a purpose string names"),
    _imapgw("imap_host_allow", LIST, "127.0.0.1 localhost", "hosts a purpose string may name"),
    _imapgw("imap_timeout", FLOAT, "30", "seconds to wait for each answer of the IMAP server"),
    _imapgw("idle_timeout", FLOAT, "60", "seconds to wait for the client's purpose string"),
    _imapgw("join_mailbox_user", BOOL, "no", "select <mailbox>/<user> as seed 000 did"),
    _imapgw("peek", BOOL, "no", "fetch with BODY.PEEK, so headers and body leave \\Seen alone"),
    _msmpd("listen", LIST, "127.0.0.1", "addresses to listen on"),
    _msmpd("port", INT, "4321", "the TCP port"),
    _msmpd("proxy_protocol", LISTENER_NAMES, "", "listeners that expect a PROXY header"),
    _msmpd("idle_timeout", INT, "600", "seconds an idle session is kept"),
    _msmpd("max_users", INT, "10000", "ADD refuses new users beyond this count"),
    _msmpd("require_tls", BOOL, "no", "USER/PASS only over TLS, from trusted_networks too"),
    _mailstatd("max_log_entries", INT, "1000", "access-log entries kept per user"),
    _mailstatd("save_interval", FLOAT, "1", "seconds between saves of the figures"),
    _mailstatd("sweep_interval", FLOAT, "30", "seconds between sweeps of gone sessions (0: never)"),
    _mailstatd("metrics_listen", STR, "127.0.0.1", "the address of the Prometheus metrics"),
    _mailstatd("metrics_port", OPTIONAL_PORT, "", "HTTP port of the metrics (empty: none)"),
    _relay("enabled", BOOL, "no", "record POP3 and IMAP clients for relaying"),
    _relay("open_smtp", PATH, "open-smtp", "the relay entries (relative: under state_dir)"),
    _relay("lock_file", PATH, "", "the relay lock (empty: <open_smtp>.lock)"),
    _relay("tcp_rules", PATH, "tcp.smtp", "the site's own tcpserver rules"),
    _relay("tcp_cdb", PATH, "tcp.smtp.cdb", "the database tcpserver reads"),
    _relay("rule", STR, 'allow,RELAYCLIENT=""', "tcprules instructions for each entry"),
    _relay("clear_minutes", INT, "180", "clearopensmtp drops entries older than this"),
    _relay("lock_timeout", FLOAT, "5", "seconds to wait for the relay lock"),
    _relay("tcprules", STR, "", "build the cdb with this command (empty: built in)"),
)

SCHEMA: dict[tuple[str, str], Key] = {(key.section, key.name): key for key in KEYS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(key.section for key in KEYS))
DAEMONS = ("pop3d", "imapd", "imapgw", "msmpd", "mailstatd")  # the sections a program reads
# MSMP SET keys and the key each one overrides (seed 003, appendix 9.1 section 7).
RUNTIME: dict[str, Key] = {key.runtime: key for key in KEYS if key.runtime}
RUNTIME_KEYS: dict[str, str] = {name: key.name for name, key in RUNTIME.items()}


def declared(section: str) -> list[Key]:
    """The keys declared in `section`, in schema order."""
    return [key for key in KEYS if key.section == section]


def key_for(daemon: str, name: str) -> Key | None:
    """The declaration a daemon reads `name` by: its own section's, else `[common]`'s."""
    return SCHEMA.get((daemon, name)) or SCHEMA.get(("common", name))


def keys_of(daemon: str) -> list[Key]:
    """Every key a daemon reads: `[common]`'s (unless its own section declares one again) and
    its own section's."""
    own = declared(daemon)
    names = {key.name for key in own}
    return [key for key in declared("common") if key.name not in names] + own


def allowed_in(section: str) -> set[str]:
    """The keys the file may set in `section`: a daemon section takes `[common]`'s too, and
    `[common]` takes every daemon's (as their shared fallback)."""
    names = {key.name for key in declared(section)}
    if section in DAEMONS:
        names |= {key.name for key in declared("common")}
    if section == "common":
        names |= {key.name for daemon in DAEMONS for key in declared(daemon)}
    return names


def check_file(parser: configparser.ConfigParser, path: str | os.PathLike[str]) -> None:
    """ConfigError for the first section or key of the file the schema does not know."""
    for section in parser.sections():
        if section not in SECTIONS:
            raise ConfigError(f"config file {path}: unknown section [{section}]")
        allowed = allowed_in(section)
        for name in parser.options(section):
            if name not in allowed:
                owners = [s for s in SECTIONS if (s, name) in SCHEMA]
                hint = f" (a key of {', '.join(f'[{s}]' for s in owners)})" if owners else ""
                raise ConfigError(
                    f"config file {path}: unknown setting {name!r} in [{section}]{hint}"
                )


# -- the file ------------------------------------------------------------------------------------


def config_file(path: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """The config file a command reads, and whether it was named: `-c FILE` (`path`), else
    $MAILDAEMONS_CONF, else DEFAULT_CONFIG. This is the one place that decides it."""
    if path:
        return Path(path), True
    named = os.environ.get(CONFIG_ENV, "")
    if named:
        return Path(named), True
    return DEFAULT_CONFIG, False


def read_config(path: str | os.PathLike[str] | None) -> configparser.ConfigParser:
    """Read the INI file. A missing default file is fine; a missing file named explicitly (with
    -c or $MAILDAEMONS_CONF) is not."""
    parser = configparser.ConfigParser(interpolation=None, default_section="__defaults__")
    target, named = config_file(path)
    try:
        with open(target, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        if named:
            how = f" (from ${CONFIG_ENV})" if not path else ""
            raise ConfigError(f"config file {target}{how} not found") from None
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise ConfigError(f"config file {target}: {one_line(exc)}") from None
    return parser


def shallow_copy(obj: _T) -> _T:
    """copy.copy of a plain object (attributes in its __dict__) at a fifth of the cost: a pool
    worker copies its settings for every session."""
    other = object.__new__(type(obj))
    other.__dict__.update(obj.__dict__)
    return other


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# -- settings ------------------------------------------------------------------------------------


class Settings:
    """Every setting of one daemon, looked up by key through all layers of precedence."""

    def __init__(
        self,
        daemon: str,
        parser: configparser.ConfigParser | None = None,
        overrides: Mapping[str, str | None] | None = None,
        config_path: str | None = None,
    ) -> None:
        self.daemon = daemon
        self.parser = parser or configparser.ConfigParser(interpolation=None)
        self.config_path = config_path
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self.runtime = RuntimeState(Path(self.raw("state_dir")).expanduser())
        # A session's settings do not change under it (`snapshot`): each typed value is parsed
        # once, keyed by the runtime state's generation (a session's own SET starts a new one).
        self._memo: dict[str, tuple[int, object]] | None = None
        # One memo for all snapshots of these settings (a pool worker's sessions): the same
        # generation means the same values (RuntimeState), so a value parsed for one session
        # serves the next; a session whose generation differs parses its own.
        self._snapshot_memo: dict[str, tuple[int, object]] = {}

    def snapshot(self) -> Settings:
        """A session's own settings: the runtime settings read once now and kept (a forked
        child takes one for its session; a pool worker one per session, while its own go on
        following the state file for the next session), each typed value parsed once."""
        other = shallow_copy(self)
        other.runtime = self.runtime.pinned_copy()
        other._memo = self._snapshot_memo
        return other

    def view(self, section: str) -> Settings:
        """The file and the defaults as `section` reads them (this daemon's flags do not apply);
        runtime settings are shared. msmpd reads `[pop3d]`'s transformer through one."""
        other = shallow_copy(self)
        other.daemon = section
        other.overrides = {}
        other._memo = {} if self._memo is not None else None
        other._snapshot_memo = {}
        return other

    def key(self, name: str) -> Key:
        key = key_for(self.daemon, name)
        if key is None:
            raise ConfigError(f"unknown setting {name!r}")
        return key

    def _lookup(self, name: str) -> tuple[str, str]:
        """The value from the config layers only, and where it came from."""
        key = self.key(name)
        if name in self.overrides:
            return str(self.overrides[name]), "from the command line"
        for section in (self.daemon, "common"):
            if self.parser.has_option(section, name):
                return self.parser.get(section, name).strip(), f"in [{section}]"
        return key.default, "by default"

    def raw(self, name: str) -> str:
        """The value from config layers only (no runtime setting)."""
        return self._lookup(name)[0]

    def get(self, name: str) -> str:
        runtime_value = self.runtime.value_for(name)
        return runtime_value if runtime_value is not None else self.raw(name)

    def _typed(self, name: str, *types: KeyType) -> object:
        """The value parsed by its declared type, which must be one of `types` (when given)."""
        memo = self._memo
        if memo is not None:
            found = memo.get(name)
            if found is not None and found[0] == self.runtime.generation:
                value = found[1]
                if types and self.key(name).type not in types:
                    raise TypeError(f"setting {name} is declared {self.key(name).type.name}")
                return value
            value = self._parse(name, *types)
            memo[name] = (self.runtime.generation, value)
            return value
        return self._parse(name, *types)

    def _parse(self, name: str, *types: KeyType) -> object:
        key = self.key(name)
        if types and key.type not in types:
            raise TypeError(f"setting {name} is declared {key.type.name}")
        runtime_value = self.runtime.value_for(name)
        if runtime_value is not None:
            text, origin = runtime_value, "from MSMP SET"
        else:
            text, origin = self._lookup(name)
        try:
            return key.type.parse(text)
        except ValueError:
            raise ConfigError(
                f"setting {name} must be {key.type.expected}, not {text!r} ({origin})"
            ) from None

    # The declared type decides what `_typed` returns, so these casts hold.
    def get_int(self, name: str) -> int:
        return cast(int, self._typed(name, INT))

    def get_float(self, name: str) -> float:
        return float(cast(float, self._typed(name, INT, FLOAT)))

    def get_bool(self, name: str) -> bool:
        return cast(bool, self._typed(name, BOOL))

    def get_choice(self, name: str) -> str:
        return cast(str, self._typed(name))

    def path(self, name: str) -> Path:
        return cast(Path, self._typed(name, PATH))

    def networks(self, name: str) -> list[Network]:
        return cast(list[Network], self._typed(name, NETWORKS))

    def listeners(self, name: str) -> frozenset[str]:
        return cast(frozenset[str], self._typed(name, LISTENER_NAMES))

    def optional_port(self, name: str) -> int | None:
        return cast(int | None, self._typed(name, OPTIONAL_PORT))

    def optional_path(self, name: str) -> Path | None:
        """The path, or None when the value is empty."""
        return self.path(name) if self.get(name) else None

    @property
    def pidfile(self) -> Path:
        return self.optional_path("pidfile") or self.path("run_dir") / f"{self.daemon}.pid"

    @property
    def stats_socket(self) -> Path:
        return self.optional_path("stats_socket") or self.path("run_dir") / "mailstatd.sock"

    def listen_addresses(self) -> list[str]:
        return parse_list(self.get("listen"))

    def validate(self) -> None:
        """Start-up and HUP: the file names only known sections and keys, and every key this
        daemon reads parses as its type. ConfigError says what is wrong, in one line."""
        check_file(self.parser, config_file(self.config_path)[0])
        for key in keys_of(self.daemon):
            self._typed(key.name)

    def runtime_in_force(self, name: str) -> str:
        """MSMP GET: SET's value when there is one, else the config's as the daemon that reads
        the key sees it (a key of `[common]` as this daemon sees it). A daemon's own
        command-line flag (pop3d -t) is not visible from here."""
        value = self.runtime.refresh().get(name)
        if value is not None:
            return value
        key = RUNTIME[name]
        reader = self if key.section == "common" else self.view(key.section)
        return str(reader.path(key.name)) if key.type is PATH else reader.raw(key.name)


# Generations of runtime values, unique in the process: two RuntimeStates (a worker's and its
# sessions' pinned copies) of the same generation hold the same values.
_generations = itertools.count(1)


class RuntimeState:
    """MSMP SET values, kept in `<state_dir>/runtime.json`; re-read when the file changes."""

    def __init__(self, state_dir: Path) -> None:
        self.file = state_dir / RUNTIME_FILE
        self._stamp: tuple[int, int] | None = None
        self._values: dict[str, str] = {}
        self._pinned = False
        self.generation = 0  # changes whenever the values may have

    def pin(self) -> None:
        """Read once now and keep these values (a session's settings do not change under it)."""
        self._pinned = False
        self.refresh()
        self._pinned = True

    def pinned_copy(self) -> RuntimeState:
        """The values in force now, pinned, in a state of their own."""
        values = self.refresh()
        other = shallow_copy(self)
        other._values = dict(values)
        other._pinned = True
        return other

    def refresh(self) -> dict[str, str]:
        if self._pinned:
            return self._values
        try:
            info = self.file.stat()
        except OSError:
            if self._values:
                self.generation = next(_generations)
            self._stamp, self._values = None, {}
            return self._values
        stamp = (info.st_mtime_ns, info.st_ino)
        if stamp != self._stamp:
            self._values = self._load()
            self._stamp = stamp
            self.generation = next(_generations)
        return self._values

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): str(v) for k, v in data.items() if k in RUNTIME_KEYS}

    def value_for(self, config_key: str) -> str | None:
        for runtime_key, target in RUNTIME_KEYS.items():
            if target == config_key:
                return self.refresh().get(runtime_key)
        return None

    def set(self, key: str, value: str | None) -> None:
        """Store one runtime value atomically (read-modify-write under the state file's lock);
        None removes it, so the config file's value is in force again."""
        if key not in RUNTIME_KEYS:
            raise ConfigError(f"invalid runtime key {key!r}")
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.file):
            values = dict(self._load())
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
            text = json.dumps(values, indent=1, sort_keys=True) + "\n"
            atomic_write(self.file, text.encode(), mode=0o644)
        self._stamp = None
        self.generation = next(_generations)
        if self._pinned:  # this session's own SET is seen by its next GET
            self._values = {k: v for k, v in values.items() if k in RUNTIME_KEYS}
