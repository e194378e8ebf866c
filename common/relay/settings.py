"""The `[relay]` settings: where the relay files are, the rule an entry gets, the timeouts.

The keys and their defaults are declared in the one config schema (common/config.py); this module
turns a daemon's (or clearopensmtp's) `Settings` into the typed values the relay code uses.
Relative paths are taken from the state directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.config import SCHEMA, ConfigError, Settings, read_config
from common.relay.errors import RelayConfigError
from common.relay.opensmtp import rule_problem

SECTION = "relay"
DEFAULT_RULE = SCHEMA[SECTION, "rule"].default
DEFAULT_CLEAR_MINUTES = int(SCHEMA[SECTION, "clear_minutes"].default)
DEFAULT_LOCK_TIMEOUT = float(SCHEMA[SECTION, "lock_timeout"].default)


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
    def from_settings(cls, settings: Settings) -> RelaySettings:
        """`[relay]` as any daemon's settings see it; RelayConfigError names a bad value."""
        relay = settings.view(SECTION)
        try:
            state_dir = settings.path("state_dir")

            def path(key: str) -> Path | None:
                return state_dir / relay.path(key) if relay.get(key) else None

            open_smtp = path("open_smtp") or state_dir / "open-smtp"
            result = cls(
                enabled=relay.get_bool("enabled"),
                open_smtp=open_smtp,
                lock_file=path("lock_file") or open_smtp.with_name(open_smtp.name + ".lock"),
                tcp_rules=path("tcp_rules") or state_dir / "tcp.smtp",
                tcp_cdb=path("tcp_cdb") or state_dir / "tcp.smtp.cdb",
                rule=relay.get("rule"),
                clear_minutes=relay.get_int("clear_minutes"),
                tcprules=relay.get("tcprules") or None,
                lock_timeout=relay.get_float("lock_timeout"),
            )
        except ConfigError as exc:
            raise RelayConfigError(f"[{SECTION}]: {exc}") from None
        result.validate()
        return result

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
    """clearopensmtp's settings: the config file (a missing default file is fine) and
    --state-dir, read through the schema as every daemon reads them."""
    try:
        parser = read_config(config)
        settings = Settings(SECTION, parser, {"state_dir": state_dir}, config)
        settings.validate()
    except ConfigError as exc:
        raise RelayConfigError(str(exc)) from None
    return RelaySettings.from_settings(settings)
