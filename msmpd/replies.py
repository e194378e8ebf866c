"""Every client-visible MSMP string, in one place (seed 003, appendix 9.1).

Every reply line ends with CRLF and holds at most 512 characters with it (section 2). Our one
addition to the RFC: a multi-line reply (LIST, LIST <user>, STAT, LOGS) ends with a line holding
a single `.`, and a body line that starts with `.` gets one more `.` in front (as in POP3), so a
client knows where each reply ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

MAX_LINE = 510  # characters before the CRLF: 512 in all (appendix 9.1 section 2)


def ok(text: str = "") -> bytes:
    return line(f"+OK {text}" if text else "+OK")


def err(text: str) -> bytes:
    return line(f"-ERR {text}")


def line(text: str) -> bytes:
    """One reply line; never longer than the RFC allows (a safety net: callers keep it short)."""
    return text[:MAX_LINE].encode("utf-8", "replace") + b"\r\n"


def multiline(lines: Iterable[str], first: str = "") -> bytes:
    """`+OK`, the lines (dot-stuffed), then the terminating `.` line (our addition)."""
    body = [ok(first)]
    for text in lines:
        body.append(line("." + text if text.startswith(".") else text))
    body.append(b".\r\n")
    return b"".join(body)


GREETING = ok("MSMP1 server ready")
USER_ACCEPTED = ok()
LOGGED_IN = ok("Logged in")
INVALID_CREDENTIALS = err("Invalid credentials")
USER_FIRST = err("USER first")
TOO_MANY_FAILURES = err("Too many failed logins, closing connection")
LOGIN_FIRST = err("Log in first (USER, then PASS)")
ALREADY_LOGGED_IN = err("Already logged in")
UNKNOWN_COMMAND = err("Unknown command")
LINE_TOO_LONG = err("Line too long (at most 512 characters with CRLF)")
BAD_CHARACTERS = err("Invalid characters in command")
TOO_MANY_BAD = err("Too many bad commands, closing connection")
GOODBYE = ok("Goodbye")
TIMEOUT = err("Idle timeout, closing connection")
SHUTDOWN = err("Server shutting down, closing connection")
INTERNAL_ERROR = err("Internal error, closing connection")
# Not in the RFC: STLS as in POP3 (RFC 2595 4), and logins refused in clear.
BEGIN_TLS = ok("Begin TLS negotiation now")
TLS_ACTIVE = err("TLS is already active")
TLS_UNAVAILABLE = err("TLS support isn't enabled")
TLS_REQUIRED = err("Login needs TLS here: send STLS first")

ADDED = ok("Added user")
UNSAFE_USERNAME = err("Unsafe username")
USER_LIMIT = err("User limit reached")
INVALID_PASSWORD = err("Invalid password (no control characters)")
DELETED = ok("Deleted user")
DELETED_MAILDIR_KEPT = ok("Deleted user (the maildir could not be moved aside: it is in place)")
NO_SUCH_USER = err("User does not exist")
USER_LOGGED_IN = err("User is currently logged in")
INVALID_USER = err("Invalid user")
CHANGED = ok("Changed value")
RESET = ok("Changed value (back to the configured value)")
INVALID_KEY = err("Invalid key")
INVALID_VALUE = err("Invalid value (at most 100 characters, no control characters)")
VALUE_TOO_LONG = err("Value too long to show")
USERS_UNAVAILABLE = err("Users file unavailable, try again later")
MAILDIR_FAILED = err("Cannot create the maildir, try again later")
SAVE_FAILED = err("Cannot save the value, try again later")
STATS_UNAVAILABLE = err("Statistics unavailable (mailstatd is not answering), try again later")


# HELP's lines (ours, not in the RFC), and what `msmp --help` and msmp(1) list: one a command.
HELP = (
    ("USER <username>", "log in as this administrator (PASS follows)"),
    ("PASS <password>", "the administrator's password (the rest of the line)"),
    ("STLS", "start TLS before logging in (msmp --tls does it)"),
    ("ADD <username> <password>", "add a user and its maildir, or change a user's password"),
    ("DELE <username>", "delete a user; the maildir is moved aside, never destroyed"),
    ("LIST [<username>]", "every user, or how many accesses one user's log holds"),
    ("SET <key> <value>", "set maildir or transformer (the rest of the line) for every daemon"),
    ("SET <key>", "return maildir or transformer to the value of the config file"),
    ("GET <key>", "the value in force of maildir or transformer"),
    ("STAT", "connections, bytes and logins, in total and per protocol"),
    ("LOGS <username>", "when and from where a user logged in"),
    ("HELP", "this list"),
    ("QUIT", "end the session"),
)


def help_lines() -> list[str]:
    width = max(len(syntax) for syntax, _ in HELP) + 2
    return [f"{syntax:<{width}}{what}" for syntax, what in HELP]


def updated(name: str) -> bytes:
    """ADD of a user who exists (RFC section 4): say whose password changed."""
    return ok(f"Updated password ({name} already existed: only the password changed)")


def invalid_transformer(reason: str) -> bytes:
    return err(f"Invalid value ({reason}; SET transformer alone removes the SET value)")


def busy(reason: str) -> bytes:
    if reason == "address":
        return err("Too many connections from your address, try again later")
    return err("Too many connections, try again later")


def usage(syntax: str) -> bytes:
    return err(f"Usage: {syntax}")


def value(text: str) -> bytes:
    """GET's reply: `+OK <value>` (RFC section 8)."""
    if len(text) > MAX_LINE - 4:
        return VALUE_TOO_LONG
    return ok(text)


def user_logs_count(user: str, count: int) -> str:
    """LIST <user>'s line (RFC section 6.1): `<username> <log count> logs`."""
    return f"{user} {count} logs"


def log_entry(when: float, address: str) -> str:
    """One LOGS line (RFC section 10), in the server's local time."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
    return f"{stamp} IP: {address}"


def stat_lines(figures: Mapping[str, Any]) -> list[str]:
    """STAT's body: the RFC's three lines (section 9), then ours."""
    totals = figures.get("totals", {})
    lines = [
        f"Total connections: {totals.get('connections', 0)}",
        f"Historical maximum traffic: {totals.get('max_concurrent', 0)}",
        f"Total transferred bytes: {totals.get('bytes', 0)}",
        f"Current connections: {totals.get('current', 0)}",
        f"Logins: {totals.get('logins_ok', 0)} ok, {totals.get('logins_failed', 0)} failed",
        f"Logged in now: {figures.get('logged_in_count', 0)}",
    ]
    for proto, counts in sorted(figures.get("protocols", {}).items()):
        lines.append(
            f"{proto}: {counts.get('connections', 0)} connections,"
            f" {counts.get('current', 0)} now, maximum {counts.get('max_concurrent', 0)},"
            f" {counts.get('bytes', 0)} bytes, {counts.get('logins_ok', 0)} logins ok,"
            f" {counts.get('logins_failed', 0)} failed"
        )
    return lines
