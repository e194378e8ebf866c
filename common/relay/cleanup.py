"""What clearopensmtp does under the relay lock: expire old open-smtp entries and rebuild
tcp.smtp.cdb, or check that the cdb lets every recorded address relay (seed 002's shell loop).

Deliberate differences from seed 002: the cdb is rebuilt on every run, not only when something
expired, so a cdb that drifted from open-smtp (the seed's complaint) is repaired by the next cron
run; entries from the future (a clock step) are kept until they are old enough; 0 minutes drops
every entry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from common.relay.files import replace_file
from common.relay.lock import relay_lock
from common.relay.opensmtp import (
    Entry,
    OtherLine,
    entries,
    format_open_smtp,
    malformed,
    read_open_smtp,
)
from common.relay.rulesdb import EMPTY_CDB, cdb_lets_relay, read_cdb, rebuild_cdb
from common.relay.settings import RelaySettings

RULES_TIMEOUT = 60.0  # clearopensmtp's limit on an external tcprules (logins use lock_timeout)


@dataclass(frozen=True)
class ClearResult:
    dropped: list[Entry]
    kept: list[Entry]
    malformed: list[OtherLine]


def expired(entry: Entry, minutes: int, now: float) -> bool:
    """The seed's test (kept while stamp + minutes*60 >= now); 0 minutes expires everything."""
    return minutes == 0 or entry.stamp + minutes * 60 < now


def clear_open_smtp(
    settings: RelaySettings,
    minutes: int,
    wait: float,
    now: float | None = None,
    dry_run: bool = False,
) -> ClearResult:
    """Drop entries older than `minutes` under the lock, rewrite open-smtp, rebuild the cdb."""
    now = time.time() if now is None else now
    if not settings.open_smtp.exists() and not settings.tcp_cdb.exists():
        return ClearResult([], [], [])  # relaying was never used here: create nothing
    with relay_lock(settings.lock_file, wait):
        lines = read_open_smtp(settings.open_smtp)
        gone = [e for e in entries(lines) if expired(e, minutes, now)]
        remaining = [x for x in lines if not (isinstance(x, Entry) and x in gone)]
        if not dry_run:
            if settings.open_smtp.exists():
                replace_file(settings.open_smtp, lambda fp: fp.write(format_open_smtp(remaining)))
            rebuild_cdb(settings, entries(remaining), RULES_TIMEOUT)
    return ClearResult(gone, entries(remaining), malformed(lines))


@dataclass(frozen=True)
class CheckResult:
    missing: list[Entry]
    malformed: list[OtherLine]


def check_relay(settings: RelaySettings, wait: float) -> CheckResult:
    """The seed's shell loop built in: which open-smtp addresses tcp.smtp.cdb does not relay."""
    if not settings.open_smtp.exists():
        return CheckResult([], [])
    with relay_lock(settings.lock_file, wait):
        lines = read_open_smtp(settings.open_smtp)
        # No cdb at all relays nobody: every entry is reported missing, not the file unreadable.
        reader = read_cdb(settings.tcp_cdb) if settings.tcp_cdb.exists() else EMPTY_CDB
    missing = [e for e in entries(lines) if not cdb_lets_relay(reader, e)]
    return CheckResult(missing, malformed(lines))
