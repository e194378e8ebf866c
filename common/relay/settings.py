"""The `[relay]` settings: where the relay files are, the rule an entry gets, the timeouts.

Relative paths are taken from the state directory. `load_settings()` is clearopensmtp's reading
of the config file; the daemons pass their own parsed config to `RelaySettings.from_config()`.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

from common.relay.errors import RelayConfigError
from common.relay.opensmtp import rule_problem

DEFAULT_CONFIG = Path("/etc/maildaemons/maildaemons.conf")
DEFAULT_STATE_DIR = Path("/var/lib/maildaemons")
DEFAULT_RULE = 'allow,RELAYCLIENT=""'
DEFAULT_CLEAR_MINUTES = 180
DEFAULT_LOCK_TIMEOUT = 5.0
SECTION = "relay"


@dataclass(frozen=True)
class RelaySettings:
    """The `[relay]` section; relative paths are taken from the state directory."""

    enabled: bool
    open_smtp: Path
    lock_file: Path
    tcp_rules: Path
    tcp_cdb: Path
    rule: str = DEFAULT_RULE
    clear_minutes: int = DEFAULT_CLEAR_MINUTES
    tcprules: str | None = None
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT

    @classmethod
    def from_config(cls, cp: configparser.ConfigParser, state_dir: Path) -> RelaySettings:
        """Read `[relay]` (all keys optional); RelayConfigError names a bad value."""

        def path(key: str, default: Path) -> Path:
            value = cp.get(SECTION, key, fallback="").strip()
            return state_dir / value if value else default

        open_smtp = path("open_smtp", state_dir / "open-smtp")
        try:
            settings = cls(
                enabled=cp.getboolean(SECTION, "enabled", fallback=False),
                open_smtp=open_smtp,
                lock_file=path("lock_file", open_smtp.with_name(open_smtp.name + ".lock")),
                tcp_rules=path("tcp_rules", state_dir / "tcp.smtp"),
                tcp_cdb=path("tcp_cdb", state_dir / "tcp.smtp.cdb"),
                rule=cp.get(SECTION, "rule", fallback=DEFAULT_RULE).strip(),
                clear_minutes=cp.getint(SECTION, "clear_minutes", fallback=DEFAULT_CLEAR_MINUTES),
                tcprules=cp.get(SECTION, "tcprules", fallback="").strip() or None,
                lock_timeout=cp.getfloat(SECTION, "lock_timeout", fallback=DEFAULT_LOCK_TIMEOUT),
            )
        except ValueError as exc:
            raise RelayConfigError(f"[{SECTION}]: {exc}") from None
        settings.validate()
        return settings

    def validate(self) -> None:
        """RelayConfigError unless the rule is one tcprules accepts and the numbers make sense."""
        problem = rule_problem(self.rule)
        if problem:
            raise RelayConfigError(f"[{SECTION}] rule {self.rule!r}: {problem}")
        if self.clear_minutes < 0:
            raise RelayConfigError(f"[{SECTION}] clear_minutes must be 0 or more")
        if self.lock_timeout < 0:
            raise RelayConfigError(f"[{SECTION}] lock_timeout must be 0 or more")


def load_settings(config: str | None, state_dir: str | None) -> RelaySettings:
    """Settings from the config file (a missing default file is fine) and --state-dir."""
    cp = configparser.ConfigParser(interpolation=None)
    path = Path(config) if config else DEFAULT_CONFIG
    try:
        with path.open(encoding="utf-8") as fp:
            cp.read_file(fp, str(path))
    except FileNotFoundError:
        if config:
            raise RelayConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        one_line = " ".join(str(exc).split())
        raise RelayConfigError(f"cannot read config file {path}: {one_line}") from None
    state = state_dir or cp.get("common", "state_dir", fallback="") or str(DEFAULT_STATE_DIR)
    return RelaySettings.from_config(cp, Path(state))
