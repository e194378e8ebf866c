"""Configuration: built-in defaults, the INI file, command-line overrides and runtime settings.

Precedence, lowest first (DESIGN.md "Configuration"): built-in default, config file (`[common]`,
then the daemon's own section), command-line flag, runtime setting (MSMP SET, kept in a state file
under the state directory). One `Settings` object answers every lookup by key, so each daemon reads
the same names the same way.
"""

from __future__ import annotations

import configparser
import json
import os
from collections.abc import Mapping
from pathlib import Path

from common.store.atomic import atomic_write, locked

DEFAULT_CONFIG = Path("/etc/maildaemons/maildaemons.conf")
RUNTIME_FILE = "runtime.json"

# MSMP SET keys and the config key each one overrides (seed 003, appendix 9.1 section 7).
RUNTIME_KEYS: dict[str, str] = {"maildir": "mail_base", "transformer": "transformer"}
MAX_RUNTIME_KEY = 40
MAX_RUNTIME_VALUE = 100

COMMON_DEFAULTS: dict[str, str] = {
    "mail_base": "/var/mail/maildaemons",
    "users_file": "/etc/maildaemons/users",
    "admins_file": "/etc/maildaemons/admins",
    "state_dir": "/var/lib/maildaemons",
    "run_dir": "/run/maildaemons",
    "stats_socket": "",
    "pidfile": "",
    "log": "syslog",
    "log_level": "info",
    "user": "",
    "group": "",
    "auth_failure_delay": "2",
    "max_children": "1000",
    "max_per_address": "20",
    "shutdown_grace": "10",
    "backlog": "1024",
}

DAEMON_DEFAULTS: dict[str, dict[str, str]] = {
    "pop3d": {
        "listen": "*",
        "port": "110",
        "idle_timeout": "600",
        "max_line": "255",
        "transformer": "",
        "transformer_timeout": "60",
        "expire": "",
        "login_delay": "",
    },
    "imapd": {
        "listen": "*",
        "port": "143",
        "idle_timeout": "1800",
        "max_line": "65536",
        "max_literal": "67108864",
        "idle_keepalive": "300",
    },
    "imapgw": {
        "listen": "*",
        "port": "4711",
        "imap_host": "127.0.0.1",
        "imap_port": "143",
        "imap_host_allow": "127.0.0.1 localhost",
        "imap_timeout": "30",
        "idle_timeout": "60",
        "log": "",
        "join_mailbox_user": "no",
    },
    "msmpd": {"listen": "127.0.0.1", "port": "4321", "idle_timeout": "600", "max_users": "10000"},
    "mailstatd": {"max_log_entries": "1000", "save_interval": "1", "sweep_interval": "30"},
}


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line for stderr or the log."""


def read_config(path: str | os.PathLike[str] | None) -> configparser.ConfigParser:
    """Read the INI file. A missing default file is fine; a missing file named explicitly is not."""
    parser = configparser.ConfigParser(interpolation=None, default_section="__defaults__")
    target = Path(path) if path else DEFAULT_CONFIG
    try:
        with open(target, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        if path:
            raise ConfigError(f"config file {target} not found") from None
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise ConfigError(f"config file {target}: {one_line(exc)}") from None
    return parser


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


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

    def raw(self, key: str) -> str:
        """The value from config layers only (no runtime setting)."""
        if key in self.overrides:
            return str(self.overrides[key])
        for section in (self.daemon, "common"):
            if self.parser.has_option(section, key):
                return self.parser.get(section, key).strip()
        if key in DAEMON_DEFAULTS.get(self.daemon, {}):
            return DAEMON_DEFAULTS[self.daemon][key]
        if key in COMMON_DEFAULTS:
            return COMMON_DEFAULTS[key]
        raise ConfigError(f"unknown setting {key!r}")

    def get(self, key: str) -> str:
        runtime_value = self.runtime.value_for(key)
        return runtime_value if runtime_value is not None else self.raw(key)

    def get_int(self, key: str) -> int:
        try:
            return int(self.get(key))
        except ValueError:
            raise ConfigError(
                f"setting {key} must be a whole number, not {self.get(key)!r}"
            ) from None

    def get_float(self, key: str) -> float:
        try:
            return float(self.get(key))
        except ValueError:
            raise ConfigError(f"setting {key} must be a number, not {self.get(key)!r}") from None

    def get_bool(self, key: str) -> bool:
        value = self.get(key).lower()
        if value in ("1", "yes", "true", "on"):
            return True
        if value in ("0", "no", "false", "off", ""):
            return False
        raise ConfigError(f"setting {key} must be yes or no, not {value!r}")

    def path(self, key: str) -> Path:
        return Path(self.get(key)).expanduser()

    def optional_path(self, key: str) -> Path | None:
        value = self.get(key)
        return Path(value).expanduser() if value else None

    @property
    def pidfile(self) -> Path:
        return self.optional_path("pidfile") or self.path("run_dir") / f"{self.daemon}.pid"

    @property
    def stats_socket(self) -> Path:
        return self.optional_path("stats_socket") or self.path("run_dir") / "mailstatd.sock"

    def listen_addresses(self) -> list[str]:
        return [a for a in self.get("listen").replace(",", " ").split() if a]

    def section(self, name: str) -> Mapping[str, str]:
        return self.parser[name] if self.parser.has_section(name) else {}

    def validate(self, int_keys: tuple[str, ...] = (), float_keys: tuple[str, ...] = ()) -> None:
        """Fail at start-up, not in a child, when a number is malformed."""
        for key in int_keys:
            self.get_int(key)
        for key in float_keys:
            self.get_float(key)


class RuntimeState:
    """MSMP SET values, kept in `<state_dir>/runtime.json`; re-read when the file changes."""

    def __init__(self, state_dir: Path) -> None:
        self.file = state_dir / RUNTIME_FILE
        self._stamp: tuple[int, int] | None = None
        self._values: dict[str, str] = {}
        self._pinned = False

    def pin(self) -> None:
        """Read once now and keep these values (a session's settings do not change under it)."""
        self._pinned = False
        self.refresh()
        self._pinned = True

    def refresh(self) -> dict[str, str]:
        if self._pinned:
            return self._values
        try:
            info = self.file.stat()
        except OSError:
            self._stamp, self._values = None, {}
            return self._values
        stamp = (info.st_mtime_ns, info.st_ino)
        if stamp != self._stamp:
            self._values = self._load()
            self._stamp = stamp
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

    def set(self, key: str, value: str) -> None:
        """Store one runtime value atomically (read-modify-write under the state file's lock)."""
        if key not in RUNTIME_KEYS:
            raise ConfigError(f"invalid runtime key {key!r}")
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.file):
            values = dict(self._load())
            values[key] = value
            text = json.dumps(values, indent=1, sort_keys=True) + "\n"
            atomic_write(self.file, text.encode(), mode=0o644)
        self._stamp = None
        if self._pinned:  # this session's own SET is seen by its next GET
            self._values = {k: v for k, v in values.items() if k in RUNTIME_KEYS}
