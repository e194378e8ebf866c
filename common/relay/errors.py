"""The relay's errors, each carrying the clearopensmtp exit status it ends the program with.

The exit statuses are seed 002's C return values -1..-7 made positive, then ours; a daemon's
login hook logs these errors and never passes them on (common/relay/hook.py).
"""

from __future__ import annotations

from enum import IntEnum


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
