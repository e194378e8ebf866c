"""clearopensmtp: expire IMAP/POP-before-SMTP relay entries and rebuild tcp.smtp.cdb.

This module owns the relay file `open-smtp`, its lock and `tcp.smtp.cdb` (seed 002; vpopmail's
open_smtp_relay() and clearopensmtp). With `[relay] enabled = yes` the daemons record each POP3 or
IMAP client after its login; this command, run from cron, drops old entries under the same lock.

Usage:
  clearopensmtp [-c FILE] [--state-dir DIR] [--minutes N] [--check] [--dry-run] [--wait SECONDS]
  clearopensmtp -h | --help
  clearopensmtp -v | --version

Options:
  -c FILE, --config FILE  Config file (INI); default /etc/maildaemons/maildaemons.conf.
  --state-dir DIR         State directory (overrides [common] state_dir).
  --minutes N             Drop entries older than N minutes; 0 drops every entry
                          (default: [relay] clear_minutes, else 180).
  --check                 Change nothing: check that tcp.smtp.cdb lets every address in
                          open-smtp relay, and name each one it does not.
  --dry-run               Change nothing: print the entries that would be dropped.
  --wait SECONDS          How long to wait for the lock held by another process
                          (default: [relay] lock_timeout, else 5).
  -h, --help              Show this text.
  -v, --version           Show the version.

Exit status (seed 002's -1..-7, made positive):
  0 done; 1 cannot open the lock file; 2 lock still held after --wait; 3 cannot write a
  temporary file; 4 a file cannot be read; 5 malformed lines (kept, the rest was done);
  6 rename failed; 7 tcp.smtp.cdb could not be built; 8 --check found addresses missing;
  64 bad arguments; 78 bad config.
"""

from __future__ import annotations

import configparser
import contextlib
import errno
import fcntl
import ipaddress
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from docopt import DocoptExit, docopt

from common import cdb, tcprules
from common.store.atomic import fsync_dir
from common.version import VERSION

# How this differs from seed 002 and vpopmail, on purpose:
# - Both writers take the exclusive fcntl lock on open-smtp.lock that vpopmail's get_write_lock()
#   takes, and both replace open-smtp and tcp.smtp.cdb by rename: tcpserver never reads half a cdb
#   and a vpopmail on the same files stays safe.
# - A malformed line is reported with its line number and kept; the seed stopped at the first one
#   (exit -5) without clearing anything.
# - clearopensmtp rebuilds the cdb on every run, not only when something expired, so a cdb that
#   drifted from open-smtp (the seed's complaint) is repaired by the next cron run.
# - Entries from the future (a clock step) are kept until they are old enough;
#   --minutes 0 drops every entry.

DEFAULT_CONFIG = Path("/etc/maildaemons/maildaemons.conf")
DEFAULT_STATE_DIR = Path("/var/lib/maildaemons")
DEFAULT_RULE = 'allow,RELAYCLIENT=""'
DEFAULT_CLEAR_MINUTES = 180
DEFAULT_LOCK_TIMEOUT = 5.0
SECTION = "relay"
LOCK_POLL = 0.02  # fcntl has no timed wait: poll a non-blocking lock this often
RULES_TIMEOUT = 60.0  # clearopensmtp's limit on an external tcprules (logins use lock_timeout)
# tcpserver opens the cdb after it drops to its own user, and the daemons run with umask 077:
# new files get this mode explicitly (an existing file keeps its mode and owner).
FILE_MODE = 0o644
RELAYCLIENT = b"RELAYCLIENT"

if TYPE_CHECKING:
    from typing import TypeAlias

    # Daemons pass their session's LoggerAdapter (it adds {session} and the client address).
    LogLike: TypeAlias = logging.Logger | logging.LoggerAdapter[logging.Logger]


class Exit(IntEnum):
    """clearopensmtp's exit codes: the seed's C return values -1..-7 as positive numbers."""

    OK = 0
    LOCK_OPEN = 1
    LOCK_BUSY = 2
    TEMP_FILE = 3
    UNREADABLE = 4
    MALFORMED = 5
    RENAME = 6
    RULES = 7
    CHECK_FAILED = 8
    USAGE = 64  # sysexits EX_USAGE
    CONFIG = 78  # sysexits EX_CONFIG


class RelayError(Exception):
    """A relay operation that failed; exit_code is clearopensmtp's status for it."""

    exit_code = Exit.RULES


class LockOpenError(RelayError):
    exit_code = Exit.LOCK_OPEN


class LockBusyError(RelayError):
    exit_code = Exit.LOCK_BUSY


class TempFileError(RelayError):
    exit_code = Exit.TEMP_FILE


class UnreadableFileError(RelayError):
    exit_code = Exit.UNREADABLE


class RenameError(RelayError):
    exit_code = Exit.RENAME


class RulesBuildError(RelayError):
    exit_code = Exit.RULES


class RelayConfigError(RelayError, ValueError):
    exit_code = Exit.CONFIG


class UsageError(RelayError):
    exit_code = Exit.USAGE


# ---------------------------------------------------------------------------------------- settings


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
        problem = _rule_problem(self.rule)
        if problem:
            raise RelayConfigError(f"[{SECTION}] rule {self.rule!r}: {problem}")
        if self.clear_minutes < 0:
            raise RelayConfigError(f"[{SECTION}] clear_minutes must be 0 or more")
        if self.lock_timeout < 0:
            raise RelayConfigError(f"[{SECTION}] lock_timeout must be 0 or more")


def _rule_problem(rule: str) -> str | None:
    # open-smtp keeps one entry a line and ends the rule at the first tab (vpopmail's strtok).
    if any(c in rule for c in "\t\r\n"):
        return "must not contain a tab or line break"
    try:
        tcprules.parse_instructions(rule.encode("ascii"))
    except UnicodeEncodeError:
        return "must be ASCII"
    except tcprules.RuleSyntaxError as exc:
        return str(exc)
    return None


# ------------------------------------------------------------------------------- the open-smtp file


@dataclass(frozen=True)
class Entry:
    """One open-smtp line in vpopmail's format: `<ip>:<rule>\\t<unix time>`."""

    ip: str
    rule: str
    stamp: int
    lineno: int = 0

    def format(self) -> str:
        return f"{self.ip}:{self.rule}\t{self.stamp}\n"

    def instructions(self) -> tcprules.Instructions:
        return tcprules.parse_instructions(self.rule.encode("latin-1"))


@dataclass(frozen=True)
class OtherLine:
    """A line kept as it is: a comment (problem None) or a malformed line (problem says why)."""

    text: str
    lineno: int
    problem: str | None

    def format(self) -> str:
        return self.text + "\n"


Line = Entry | OtherLine


def parse_open_smtp(text: str) -> list[Line]:
    """Every line of open-smtp; blank lines carry nothing and are left out."""
    lines: list[Line] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            lines.append(OtherLine(line, lineno, None))
        else:
            lines.append(parse_entry(line, lineno))
    return lines


def parse_entry(line: str, lineno: int) -> Line:
    """An Entry, or an OtherLine saying what is wrong with it."""
    head, tab, stamp = line.partition("\t")
    stamp = stamp.rstrip()  # the seed's fscanf("%u\n") took trailing white space too
    ip, colon, rule = head.partition(":")
    problem = None
    if not tab or not stamp.isascii() or not stamp.isdigit():
        problem = "expected <ip>:<rule><TAB><unix time>"
    elif not colon:
        problem = "no ':' after the address"
    elif not _is_ipv4(ip):
        problem = f"{ip!r} is not an IPv4 address"
    else:
        problem = _rule_problem(rule)
    if problem:
        return OtherLine(line, lineno, problem)
    return Entry(ip, rule, int(stamp), lineno)


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def format_open_smtp(lines: list[Line]) -> bytes:
    # latin-1 both ways: a line we do not understand is written back byte for byte.
    return "".join(line.format() for line in lines).encode("latin-1")


def entries(lines: list[Line]) -> list[Entry]:
    return [line for line in lines if isinstance(line, Entry)]


def malformed(lines: list[Line]) -> list[OtherLine]:
    return [line for line in lines if isinstance(line, OtherLine) and line.problem]


def read_open_smtp(path: Path) -> list[Line]:
    """The parsed file; a file that does not exist yet has no lines."""
    data = _read_optional(path)
    return parse_open_smtp(data.decode("latin-1")) if data else []


def _read_optional(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {path}: {exc.strerror}") from None


def describe_malformed(path: Path, line: OtherLine) -> str:
    """One stable line per malformed entry: path, line number, why; the line is kept."""
    return f"{path}:{line.lineno}: malformed line kept: {line.problem}: {line.text!r}"


# ------------------------------------------------------------------------------ lock, atomic write


@contextlib.contextmanager
def relay_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold vpopmail's lock: an exclusive fcntl lock on all of open-smtp.lock.

    Waits up to `timeout` seconds (0: one try), then raises LockBusyError. The lock belongs to the
    process and goes when the descriptor is closed or the process dies, so a killed holder never
    leaves it stuck.
    """
    try:
        fd = _open_lock_file(path)
    except OSError as exc:
        raise LockOpenError(f"cannot open lock file {path}: {exc.strerror}") from None
    try:
        _acquire(fd, path, timeout)
        yield
    finally:
        os.close(fd)


def _open_lock_file(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.fchmod(fd, FILE_MODE)
        owner = _new_file_owner(path)
        if owner is not None:
            os.fchown(fd, *owner)
    except OSError:
        os.close(fd)
        raise
    return fd


def _acquire(fd: int, path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise LockOpenError(f"cannot lock {path}: {exc.strerror}") from None
        if time.monotonic() >= deadline:
            raise LockBusyError(f"{path} is still locked by another process after {timeout:g}s")
        time.sleep(LOCK_POLL)


def replace_file(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through `write` to a temporary file beside `path`, fsync it, rename it over `path`.

    fsync before rename: after a crash a reader finds the old file or the new one, never half.
    """
    mode, owner = _mode_and_owner(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.tmp.", dir=path.parent)
    except OSError as exc:
        raise TempFileError(
            f"cannot create a temporary file in {path.parent}: {exc.strerror}"
        ) from None
    try:
        _write_temp(fd, tmp, mode, owner, write)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise RenameError(f"cannot rename {tmp} to {path}: {exc.strerror}") from None
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_temp(
    fd: int, tmp: str, mode: int, owner: tuple[int, int] | None, write: Callable[[BinaryIO], object]
) -> None:
    try:
        with os.fdopen(fd, "w+b") as fp:
            write(fp)
            fp.flush()
            os.fchmod(fp.fileno(), mode)
            if owner is not None:
                # Root (cron) rewriting a file of the daemons' user must leave it theirs.
                os.fchown(fp.fileno(), *owner)
            os.fsync(fp.fileno())
    except OSError as exc:
        raise TempFileError(f"cannot write {tmp}: {exc.strerror}") from None


def _mode_and_owner(path: Path) -> tuple[int, tuple[int, int] | None]:
    """Mode and owner for a new version of `path`: the old file's, else FILE_MODE and
    the directory's owner (see _new_file_owner); owner None means leave it to us."""
    try:
        st = path.stat()
    except OSError:
        return FILE_MODE, _new_file_owner(path)
    return st.st_mode & 0o7777, _foreign((st.st_uid, st.st_gid))


def _new_file_owner(path: Path) -> tuple[int, int] | None:
    # Root (cron) creating a relay file must not lock the daemons' user out of it: the daemons
    # write in that directory, so a new file goes to the directory's owner.
    try:
        st = path.parent.stat()
    except OSError:
        return None
    return _foreign((st.st_uid, st.st_gid))


def _foreign(owner: tuple[int, int]) -> tuple[int, int] | None:
    """`owner` when we must chown to it: only root can, and our own files need nothing."""
    if os.geteuid() != 0 or owner == (os.geteuid(), os.getegid()):
        return None
    return owner


# ---------------------------------------------------------------------------------- tcp.smtp.cdb


def rules_text(settings: RelaySettings, relay_entries: list[Entry]) -> bytes:
    """What vpopmail's update_rules() feeds tcprules: tcp.smtp, then `<ip>:<rule>` per entry.

    Static rules come first, so a site's own rule for an address wins over a relay entry.
    """
    static = _read_optional(settings.tcp_rules)
    if static and not static.endswith(b"\n"):
        static += b"\n"
    relay = "".join(f"{e.ip}:{e.rule}\n" for e in relay_entries).encode("latin-1")
    return static + relay


def rebuild_cdb(settings: RelaySettings, relay_entries: list[Entry], timeout: float) -> None:
    """Compile tcp.smtp plus the entries into tcp.smtp.cdb, replaced atomically.

    A syntax error in tcp.smtp fails the whole build and keeps the old cdb, as tcprules does:
    silently leaving out a site's rule could open or close access it never meant to.
    """
    text = rules_text(settings, relay_entries)
    if settings.tcprules:
        _run_tcprules(settings, text, timeout)
        return
    try:
        records = tcprules.compile_rules(text)
    except tcprules.RuleSyntaxError as exc:
        raise RulesBuildError(f"{settings.tcp_rules}: {exc}") from None
    replace_file(settings.tcp_cdb, lambda fp: cdb.write_cdb(fp, records))


def _run_tcprules(settings: RelaySettings, text: bytes, timeout: float) -> None:
    """`tcprules tcp.smtp.cdb tmp` with the rules on stdin; it fsyncs and renames by itself."""
    target = settings.tcp_cdb
    # Named, not created: tcprules creates it with its own mode (0644 under umask 022). We hold
    # the relay lock, so a pid-based name (vpopmail's way) cannot clash with another build.
    tmp = f"{target}.tmp.{os.getpid()}"
    argv = [*shlex.split(settings.tcprules or "tcprules"), str(target), tmp]
    try:
        proc = subprocess.run(
            argv, input=text, capture_output=True, timeout=timeout, check=False, umask=0o022
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RulesBuildError(f"{argv[0]}: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # gone already when tcprules succeeded
    if proc.returncode != 0:
        why = proc.stderr.decode("latin-1", "replace").strip().splitlines()
        raise RulesBuildError(f"{argv[0]} exited {proc.returncode}: {why[-1] if why else ''}")


def read_cdb(path: Path) -> cdb.CdbReader:
    try:
        return cdb.CdbReader.from_file(path)
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {path}: {exc.strerror}") from None
    except cdb.CdbError as exc:
        raise UnreadableFileError(f"{path}: {exc}") from None


EMPTY_CDB = cdb.CdbReader(bytes(cdb.HEADER_SIZE))


def lets_relay(found: tcprules.Instructions | None, wanted: tcprules.Instructions) -> bool:
    """Whether the rule tcpserver applies (`found`; None: no rule) gives what an entry asked.

    qmail-smtpd relays whenever RELAYCLIENT is set, whatever its value, so for the usual rules
    that is the test; a site rule without RELAYCLIENT must come out as recorded.
    """
    have = found or tcprules.Instructions()
    names = {name for name, _ in wanted.env}
    if RELAYCLIENT in names:
        return not have.deny and RELAYCLIENT in have.environment()
    return have.deny == wanted.deny and set(wanted.env) <= set(have.environment().items())


def cdb_lets_relay(reader: cdb.CdbReader, entry: Entry) -> bool:
    match = tcprules.lookup(reader, entry.ip)
    return lets_relay(None if match is None else match[1], entry.instructions())


# ------------------------------------------------------------------ recording a login (daemons)

# fcntl locks belong to a process, so threads of one process must also take turns.
_THREAD_LOCK = threading.Lock()


def daemon_settings(
    cp: configparser.ConfigParser, state_dir: Path, log: LogLike
) -> RelaySettings | None:
    """The settings a daemon's login hook uses; None when relaying is off or `[relay]` is bad.

    A bad section is logged, never raised: the daemons read it for every session, and a typo
    there must cost the users their relaying, not their mail.
    """
    try:
        settings = RelaySettings.from_config(cp, state_dir)
    except RelayConfigError as exc:
        log.error("relay: bad configuration, not relaying: %s", exc)
        return None
    return settings if settings.enabled else None


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


# ------------------------------------------------------------------------ clearing and checking


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


# ------------------------------------------------------------------------------- clearopensmtp


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


def _number_option(args: dict[str, object], name: str, default: float) -> float:
    value = args[name]
    if value is None:
        return default
    try:
        number = float(str(value))
    except ValueError:
        raise UsageError(f"{name} wants a number, not {value!r}") from None
    if not number >= 0:  # also refuses NaN
        raise UsageError(f"{name} must be 0 or more")
    return number


def _minutes_option(args: dict[str, object], default: int) -> int:
    value = args["--minutes"]
    if value is None:
        return default
    text = str(value)
    if not text.isascii() or not text.isdigit():
        raise UsageError(f"--minutes wants a whole number of minutes, not {text!r}")
    return int(text)


def _say(message: str) -> None:
    print(f"clearopensmtp: {message}", file=sys.stderr)


def _run_check(settings: RelaySettings, wait: float) -> Exit:
    result = check_relay(settings, wait)
    for bad in result.malformed:
        _say(describe_malformed(settings.open_smtp, bad))
    for entry in result.missing:
        _say(f"{entry.ip} is missing from {settings.tcp_cdb}")
    if result.missing:
        return Exit.CHECK_FAILED
    return Exit.MALFORMED if result.malformed else Exit.OK


def _run_clear(settings: RelaySettings, minutes: int, wait: float, dry_run: bool) -> Exit:
    now = time.time()
    result = clear_open_smtp(settings, minutes, wait, now=now, dry_run=dry_run)
    for bad in result.malformed:
        _say(describe_malformed(settings.open_smtp, bad))
    if dry_run:
        for entry in result.dropped:
            age = int(now - entry.stamp) // 60
            print(f"would drop {entry.ip} (line {entry.lineno}, {age} minutes old)")
    return Exit.MALFORMED if result.malformed else Exit.OK


def main(argv: list[str] | None = None) -> int:
    """The clearopensmtp console script."""
    try:
        args = docopt(__doc__ or "", argv=argv, version=f"clearopensmtp {VERSION}")
    except DocoptExit as exc:
        print(exc, file=sys.stderr)
        return Exit.USAGE
    try:
        settings = load_settings(args["--config"], args["--state-dir"])
        wait = _number_option(args, "--wait", settings.lock_timeout)
        if args["--check"]:
            return _run_check(settings, wait)
        minutes = _minutes_option(args, settings.clear_minutes)
        return _run_clear(settings, minutes, wait, bool(args["--dry-run"]))
    except RelayError as exc:
        _say(str(exc))
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
