"""STARTTLS (RFC 3501 6.2.1), LOGIN (RFC 3501 6.2.3) and AUTHENTICATE PLAIN / LOGIN (RFC 3501
6.2.2, RFC 4959 SASL-IR).

A failed login is delayed (`auth_failure_delay`), logged in one stable fail2ban line and answered
`NO [AUTHENTICATIONFAILED]` whether the user exists or not. Outside TLS and trusted_networks no
password is taken in clear: `NO [PRIVACYREQUIRED]` (RFC 5530), with LOGINDISABLED announced.
"""

from __future__ import annotations

import base64
import binascii

from common.lineio import LineTooLong
from common.store import DEFAULT_FOLDERS, FolderTree, LockBusy, StoreError
from imapd import responses as r
from imapd.commands.base import expect
from imapd.parser import (
    AuthenticateArgs,
    Command,
    LoginArgs,
    parse_authenticate,
    parse_login,
    parse_no_args,
)
from imapd.responses import ImapError, bad
from imapd.session import Session
from imapd.states import NOT_AUTHENTICATED, Abort, Result, Spec, State

LOGIN_USERNAME = b"+ VXNlcm5hbWU6\r\n"  # base64 "Username:"
LOGIN_PASSWORD = b"+ UGFzc3dvcmQ6\r\n"  # base64 "Password:"


def cmd_starttls(session: Session, command: Command) -> Result:
    """RFC 3501 6.2.1, not-authenticated state: TLS starts once this OK is on the wire, and
    anything the client sent after STARTTLS is discarded (common/session.start_tls). The
    client asks CAPABILITY again over TLS."""
    if session.tls:
        raise bad(r.TLS_ACTIVE)
    if not session.tls_offered:
        raise bad(r.TLS_UNAVAILABLE)
    session.tls_due = True
    return r.BEGIN_TLS


def cmd_login(session: Session, command: Command) -> Result:
    expect(command, LoginArgs)
    if not session.plaintext_allowed:
        session.untagged(r.CLEARTEXT_LOGIN_ALERT)  # the password crossed the network: say so
        refuse_plaintext(session, r.PLAINTEXT_LOGIN_DISALLOWED)
    return log_in(session, command.args.user, command.args.password)


def cmd_authenticate(session: Session, command: Command) -> Result:
    expect(command, AuthenticateArgs)
    mechanism, initial = command.args.mechanism, command.args.initial_response
    if mechanism in ("PLAIN", "LOGIN") and not session.plaintext_allowed:
        refuse_plaintext(session, r.PLAINTEXT_MECHANISM_DISABLED)  # before any challenge
    if mechanism == "PLAIN":
        response = initial if initial is not None else challenge(session, b"+ \r\n")
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise bad("Invalid PLAIN response")
        authzid, user, password = (p.decode("utf-8", "replace") for p in parts)
        if authzid and authzid != user:
            return log_in(session, user, None)
        return log_in(session, user, password)
    if mechanism == "LOGIN":
        user_raw = initial if initial is not None else challenge(session, LOGIN_USERNAME)
        password_raw = challenge(session, LOGIN_PASSWORD)
        return log_in(
            session, user_raw.decode("utf-8", "replace"), password_raw.decode("utf-8", "replace")
        )
    raise ImapError("Unsupported authentication mechanism")


def refuse_plaintext(session: Session, reply: tuple[str, str]) -> None:
    session.log.info("plaintext login refused: no TLS and not from trusted_networks")
    raise ImapError(*reply)


def challenge(session: Session, prompt: bytes) -> bytes:
    """Send a continuation and decode the client's base64 answer; `*` cancels (RFC 3501 6.2.2)."""
    session.send(prompt)
    try:
        line = session.read_continuation().strip()
    except LineTooLong:
        raise bad(r.LINE_TOO_LONG) from None
    if line == b"*":
        raise bad("Authentication cancelled")
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise bad("Invalid base64 in authentication response") from None


def log_in(session: Session, user: str, password: str | None) -> Result:
    ok = password is not None and session.services.users.verify(user, password)
    if not ok:
        failed(session, user)
    try:
        tree = FolderTree.for_user(session.settings.path("mail_base"), user)
        tree.ensure_inbox(DEFAULT_FOLDERS)
    except (StoreError, LockBusy, OSError) as exc:
        session.log.error("mailbox of %s unavailable: %s", user, exc)
        raise ImapError("Mailbox unavailable, try again later", "UNAVAILABLE") from None
    session.tree, session.state = tree, State.AUTHENTICATED
    session.logged_in(user)
    return (r.LOGGED_IN, f"CAPABILITY {session.capabilities()}")


def failed(session: Session, user: str) -> None:
    if session.login_failed(user):
        session.send(r.tagged("*", "NO", "Too many failed logins"))
        raise Abort("Too many failed logins")
    raise ImapError(*r.AUTH_FAILED)


COMMANDS = {
    "STARTTLS": Spec(parse_no_args, cmd_starttls, NOT_AUTHENTICATED),
    "LOGIN": Spec(parse_login, cmd_login, NOT_AUTHENTICATED),
    "AUTHENTICATE": Spec(parse_authenticate, cmd_authenticate, NOT_AUTHENTICATED),
}
