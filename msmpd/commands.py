"""MSMP commands: one `cmd_<verb>` per verb of seed 003's appendix 9.1, and the table.

The dispatcher checks the state and the number of arguments before it calls a handler, so handlers
never re-check them. A handler returns its reply bytes or raises MsmpError. Arguments are separated
by spaces or tabs; PASS takes the rest of the line, so an admin password may hold spaces, and so
does SET after its key (a transformer is a command line: `SET transformer spamassassin -e`).
HELP and QUIT (not in the RFC) work in any state. STLS (not in the RFC either) is POP3's
(RFC 2595 4): USER and PASS are refused in clear outside trusted_networks, and everywhere
with require_tls.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from common.config import MAX_RUNTIME_KEY, MAX_RUNTIME_VALUE, RUNTIME_KEYS, ConfigError
from common.session import Command
from common.shell import command_problem
from common.stats import query as stats_query
from common.store import InvalidName, LockBusy, check_username
from msmpd import replies
from msmpd.accounts import (
    AccountError,
    MaildirError,
    MoveAsideError,
    NoSuchUserError,
    UserLimitError,
)
from msmpd.session import SEPARATOR, MsmpError, Session, State

T = TypeVar("T")

AUTH = frozenset({State.AUTHORIZATION})
ADMIN = frozenset({State.ADMIN})
ANY = frozenset({State.AUTHORIZATION, State.ADMIN})


def username(name: str) -> str:
    """A user name that is safe as a path (40 characters at most, RFC section 4)."""
    try:
        return check_username(name)
    except InvalidName:
        raise MsmpError(replies.UNSAFE_USERNAME) from None


def existing_user(session: Session, name: str, missing: bytes) -> str:
    try:
        known = session.accounts().exists(username(name))
    except AccountError as exc:
        session.log.error("cannot read the users file: %s", exc)
        raise MsmpError(replies.USERS_UNAVAILABLE) from None
    if not known:
        raise MsmpError(missing)
    return name


def stats_call(session: Session, call: Callable[[], T]) -> T:
    try:
        return call()
    except stats_query.StatsError as exc:
        session.log.warning("mailstatd query failed: %s", exc)
        raise MsmpError(replies.STATS_UNAVAILABLE) from None


# -- AUTHORIZATION (section 3) -----------------------------------------------------------------


def cmd_user(session: Session, args: list[str]) -> bytes:
    """Section 3.1: USER <username>. Always +OK: whether the admin exists is not revealed."""
    require_plaintext(session)
    session.pending_user = args[0]
    return replies.USER_ACCEPTED


def cmd_pass(session: Session, args: list[str]) -> bytes:
    """Section 3.2: PASS <password>; +OK Logged in or -ERR Invalid credentials."""
    require_plaintext(session)
    if session.pending_user is None:
        raise MsmpError(replies.USER_FIRST)
    return session.login(session.pending_user, args[0])


def require_plaintext(session: Session) -> None:
    if not session.plaintext_allowed:
        session.pending_user = None
        session.log.info("plaintext login refused: TLS required")
        raise MsmpError(replies.TLS_REQUIRED)


def cmd_stls(session: Session, args: list[str]) -> bytes:
    """STLS (POP3's, RFC 2595 4), AUTHORIZATION only: TLS from right after this +OK; what the
    client sent after STLS is discarded (common/session.start_tls)."""
    if session.tls:
        raise MsmpError(replies.TLS_ACTIVE)
    if not session.tls_offered:
        raise MsmpError(replies.TLS_UNAVAILABLE)
    session.tls_due = True
    return replies.BEGIN_TLS


def cmd_help(session: Session, args: list[str]) -> bytes:
    """Not in the RFC: the commands, one a line (a multi-line reply), in any state."""
    return replies.multiline(replies.help_lines())


def cmd_quit(session: Session, args: list[str]) -> bytes:
    """Not in the RFC: end the session politely, in any state."""
    session.finished = True
    return replies.GOODBYE


# -- ADMIN: users (sections 4 to 6) ------------------------------------------------------------


def cmd_add(session: Session, args: list[str]) -> bytes:
    """Section 4: ADD <username> <password>; a new user gets a maildir, a known one a password."""
    name, password = username(args[0]), args[1]
    if not password.isprintable():
        raise MsmpError(replies.INVALID_PASSWORD)
    try:
        created = session.accounts().add(name, password)
    except UserLimitError:
        return replies.USER_LIMIT
    except MaildirError as exc:
        session.log.error("ADD %s failed: %s", name, exc)
        raise MsmpError(replies.MAILDIR_FAILED) from None
    except AccountError as exc:
        session.log.error("ADD %s failed: %s", name, exc)
        raise MsmpError(replies.USERS_UNAVAILABLE) from None
    session.log.info(
        "%s user %s (admin %s)", "added" if created else "new password for", name, session.user
    )
    return replies.ADDED if created else replies.updated(name)


def cmd_dele(session: Session, args: list[str]) -> bytes:
    """Section 5: DELE <username>; refused while the user is logged in (asked of mailstatd)."""
    name = existing_user(session, args[0], replies.NO_SUCH_USER)
    info = stats_call(session, lambda: stats_query.user_info(session.stats_socket, name))
    if info.get("sessions"):
        return replies.USER_LOGGED_IN
    try:
        moved = session.accounts().delete(name)
    except NoSuchUserError:
        return replies.NO_SUCH_USER
    except MoveAsideError as exc:
        session.log.error("deleted user %s but %s", name, exc)
        return replies.DELETED_MAILDIR_KEPT
    except AccountError as exc:
        session.log.error("DELE %s failed: %s", name, exc)
        raise MsmpError(replies.USERS_UNAVAILABLE) from None
    session.log.info(
        "deleted user %s (admin %s), maildir %s", name, session.user, moved or "absent"
    )
    return replies.DELETED


def cmd_list(session: Session, args: list[str]) -> bytes:
    """Section 6: LIST (every user) or LIST <username> (`<user> <N> logs`)."""
    if args:
        name = existing_user(session, args[0], replies.NO_SUCH_USER)
        info = stats_call(session, lambda: stats_query.user_info(session.stats_socket, name))
        return replies.multiline([replies.user_logs_count(name, int(info.get("log_entries", 0)))])
    try:
        names = session.accounts().names()
    except AccountError as exc:
        session.log.error("cannot read the users file: %s", exc)
        raise MsmpError(replies.USERS_UNAVAILABLE) from None
    return replies.multiline(names)


# -- ADMIN: settings (sections 7 and 8) --------------------------------------------------------


def runtime_key(key: str) -> str:
    """Keys are case sensitive and at most 40 characters (section 7)."""
    if len(key) > MAX_RUNTIME_KEY or key not in RUNTIME_KEYS:
        raise MsmpError(replies.INVALID_KEY)
    return key


def cmd_set(session: Session, args: list[str]) -> bytes:
    """Section 7: SET <key> <value>, the value being the rest of the line (a transformer is a
    command line; the seed's "no spaces" is lifted); kept in the runtime state file, in force
    for the next connection of every daemon, over the config file and the flags, until set
    again. Ours: `SET <key>` alone removes the SET value, so the config file's is in force."""
    key, *rest = SEPARATOR.split(args[0].strip(" \t"), maxsplit=1)
    if not key:  # the rest of the line was blank
        raise MsmpError(replies.usage(COMMANDS["SET"].syntax))
    key, value = runtime_key(key), rest[0].rstrip(" \t") if rest else ""
    if not value:
        return save_runtime(session, key, None)
    if len(value) > MAX_RUNTIME_VALUE or not value.isprintable():
        raise MsmpError(replies.INVALID_VALUE)
    if key == "maildir":
        # The daemons run in "/": a relative maildir is taken from msmpd's start-up directory.
        value = os.path.normpath(session.services.start_dir / value)
    elif problem := command_problem(value):  # it would make every RETR fail
        raise MsmpError(replies.invalid_transformer(problem))
    return save_runtime(session, key, value)


def save_runtime(session: Session, key: str, value: str | None) -> bytes:
    try:
        session.settings.runtime.set(key, value)
    except (ConfigError, LockBusy, OSError) as exc:
        session.log.error("SET %s failed: %s", key, exc)
        raise MsmpError(replies.SAVE_FAILED) from None
    if value is None:
        session.log.info("SET %s back to the config file's value (admin %s)", key, session.user)
        return replies.RESET
    session.log.info("SET %s=%s (admin %s)", key, value, session.user)
    return replies.CHANGED


def cmd_get(session: Session, args: list[str]) -> bytes:
    """Section 8: GET <key>; the value in force (SET's, else the config file's)."""
    return replies.value(session.settings.runtime_in_force(runtime_key(args[0])))


# -- ADMIN: statistics (sections 9 and 10) -----------------------------------------------------


def cmd_stat(session: Session, args: list[str]) -> bytes:
    """Section 9: the RFC's three figures from mailstatd, then current and per-protocol ones."""
    figures = stats_call(session, lambda: stats_query.stat(session.stats_socket))
    return replies.multiline(replies.stat_lines(figures))


def cmd_logs(session: Session, args: list[str]) -> bytes:
    """Section 10: LOGS <username>; one `YYYY-MM-DD HH:MM:SS IP: <addr>` line per access."""
    name = existing_user(session, args[0], replies.INVALID_USER)
    entries = stats_call(session, lambda: stats_query.access_log(session.stats_socket, name))
    return replies.multiline([replies.log_entry(when, addr) for when, _proto, addr in entries])


COMMANDS: dict[str, Command] = {
    "USER": Command(cmd_user, AUTH, 1, 1, syntax="USER <username>"),
    "PASS": Command(cmd_pass, AUTH, 1, 1, raw_args=True, syntax="PASS <password>"),
    "STLS": Command(cmd_stls, AUTH, syntax="STLS"),
    "QUIT": Command(cmd_quit, ANY, syntax="QUIT"),
    "HELP": Command(cmd_help, ANY, syntax="HELP"),
    "ADD": Command(cmd_add, ADMIN, 2, 2, syntax="ADD <username> <password>"),
    "DELE": Command(cmd_dele, ADMIN, 1, 1, syntax="DELE <username>"),
    "LIST": Command(cmd_list, ADMIN, 0, 1, syntax="LIST [<username>]"),
    "SET": Command(cmd_set, ADMIN, 1, 1, raw_args=True, syntax="SET <key> [<value>]"),
    "GET": Command(cmd_get, ADMIN, 1, 1, syntax="GET <key>"),
    "STAT": Command(cmd_stat, ADMIN, syntax="STAT"),
    "LOGS": Command(cmd_logs, ADMIN, 1, 1, syntax="LOGS <username>"),
}
