"""The after-login hook: a daemon records a POP3 or IMAP client that has just logged in, so its
address may relay mail (seed 002; vpopmail's open_smtp_relay()).

Relaying is a convenience: nothing here may cost a user the session. Every failure is logged and
the login goes on.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from typing import TYPE_CHECKING

from common.config import Settings
from common.relay.errors import LockBusyError, RelayConfigError, RelayError
from common.relay.files import replace_file
from common.relay.lock import relay_lock
from common.relay.opensmtp import (
    Entry,
    Line,
    describe_malformed,
    entries,
    format_open_smtp,
    malformed,
    read_open_smtp,
)
from common.relay.rulesdb import cdb_lets_relay, read_cdb, rebuild_cdb
from common.relay.settings import RelaySettings

if TYPE_CHECKING:
    from typing import TypeAlias

    # Daemons pass their session's LoggerAdapter (it adds {session} and the client address).
    LogLike: TypeAlias = logging.Logger | logging.LoggerAdapter[logging.Logger]

# fcntl locks belong to a process, so threads of one process must also take turns.
_THREAD_LOCK = threading.Lock()


def daemon_settings(settings: Settings, log: LogLike) -> RelaySettings | None:
    """The settings a daemon's login hook uses; None when relaying is off or `[relay]` is bad.

    A bad section is logged, never raised: the daemons read it for every session, and a typo
    there must cost the users their relaying, not their mail.
    """
    try:
        relay = RelaySettings.from_settings(settings)
    except RelayConfigError as exc:
        log.error("relay: bad configuration, not relaying: %s", exc)
        return None
    return relay if relay.enabled else None


def relay_address(client_ip: str) -> str | None:
    """The IPv4 address to record (an IPv4-mapped IPv6 address counts), else None."""
    try:
        addr = ipaddress.ip_address(client_ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped
        return None if mapped is None else str(mapped)
    return str(addr)


def open_relay(
    settings: RelaySettings, client_ip: str, log: LogLike, now: float | None = None
) -> bool:
    """Record a successful login's address; never raises; returns True when recorded.

    Like vpopmail's open_smtp_relay(): under the lock, replace this address's line in open-smtp
    with `<ip>:<rule>\\t<now>`, then rebuild tcp.smtp.cdb. The login waits at most about
    2 x lock_timeout (for the lock, then for an external tcprules; our own build of a few
    thousand rules takes milliseconds); a failure is logged, never raised.
    """
    if not settings.enabled:
        return False
    ip = relay_address(client_ip)
    if ip is None:
        log.info("relay: %s is not an IPv4 client, not recorded", client_ip)
        return False
    stamp = int(time.time() if now is None else now)
    deadline = time.monotonic() + settings.lock_timeout  # one wait for both locks
    try:
        if not _THREAD_LOCK.acquire(timeout=settings.lock_timeout):
            raise LockBusyError("another thread of this process holds the relay lock")
        try:
            with relay_lock(settings.lock_file, max(0.0, deadline - time.monotonic())):
                _record(settings, Entry(ip, settings.rule, stamp), log)
        finally:
            _THREAD_LOCK.release()
    except (RelayError, OSError) as exc:
        log.warning("relay: not opened for %s: %s", ip, exc)
        return False
    except Exception:  # relaying is a convenience: a bug here must never cost the user a session
        log.exception("relay: not opened for %s", ip)
        return False
    log.info("relay: opened for %s", ip)
    return True


def _record(settings: RelaySettings, entry: Entry, log: LogLike) -> None:
    lines = read_open_smtp(settings.open_smtp)
    for bad in malformed(lines):
        log.warning("relay: %s", describe_malformed(settings.open_smtp, bad))
    known = any(isinstance(x, Entry) and x.ip == entry.ip and x.rule == entry.rule for x in lines)
    kept: list[Line] = [x for x in lines if not (isinstance(x, Entry) and x.ip == entry.ip)]
    kept.append(entry)
    replace_file(settings.open_smtp, lambda fp: fp.write(format_open_smtp(kept)))
    if known and _cdb_already_relays(settings, entry):
        return  # a returning client: the cdb would not change, so spare the login the rebuild
    rebuild_cdb(settings, entries(kept), settings.lock_timeout)


def _cdb_already_relays(settings: RelaySettings, entry: Entry) -> bool:
    try:
        return cdb_lets_relay(read_cdb(settings.tcp_cdb), entry)
    except RelayError:
        return False
