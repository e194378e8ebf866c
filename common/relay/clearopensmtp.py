"""clearopensmtp: expire IMAP/POP-before-SMTP relay entries and rebuild tcp.smtp.cdb.

The relay file `open-smtp`, its lock and `tcp.smtp.cdb` are those of seed 002 (vpopmail's
open_smtp_relay() and clearopensmtp). With `[relay] enabled = yes` the daemons record each POP3 or
IMAP client after its login; this command, run from cron, drops old entries under the same lock.

Usage:
  clearopensmtp [-c FILE] [--state-dir DIR] [--minutes N] [--check] [--dry-run] [--wait SECONDS]
  clearopensmtp -h | --help
  clearopensmtp -v | --version

Options:
  -c FILE, --config FILE  Config file (INI); default $MAILDAEMONS_CONF, else
                          /etc/maildaemons/maildaemons.conf.
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

import sys
import time

from docopt import DocoptExit, docopt

from common.relay.cleanup import check_relay, clear_open_smtp
from common.relay.errors import Exit, RelayError, UsageError
from common.relay.opensmtp import describe_malformed
from common.relay.settings import RelaySettings, load_settings
from common.version import VERSION


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
