"""POP3 commands: one `cmd_<verb>` per verb (RFC 1939, RFC 2449 CAPA, RFC 5034 AUTH, RFC 2595 STLS),
and the table.

The dispatcher (common/session.LineSession) checks the state and the arity before it calls a
handler, so handlers never re-check them. A handler returns its reply bytes or raises Pop3Error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from common.session import Command
from common.store import to_crlf
from common.users import split_scheme
from pop3d import replies
from pop3d.session import Pop3Error, Session, State
from pop3d.transformer import TransformerError, in_force, transform

AUTH = frozenset({State.AUTHORIZATION})
TRANSACTION = frozenset({State.TRANSACTION})
ANY = frozenset({State.AUTHORIZATION, State.TRANSACTION})
MAX_UNIQUE_ID = 70  # RFC 1939 7: 1 to 70 characters in 0x21-0x7E


# -- AUTHORIZATION ---------------------------------------------------------------------------


def cmd_user(session: Session, args: list[str]) -> bytes:
    """RFC 1939 section 7: USER name. Always +OK: whether the name exists is not revealed.
    Outside TLS and trusted_networks, -ERR [AUTH] before any password is sent."""
    require_plaintext(session, replies.PLAINTEXT_DISALLOWED)
    session.pending_user = args[0]
    return replies.ok()


def cmd_pass(session: Session, args: list[str]) -> bytes:
    """RFC 1939 section 7: PASS string (the rest of the line: passwords may hold spaces)."""
    require_plaintext(session, replies.PLAINTEXT_DISALLOWED)
    user = session.pending_user
    if user is None:
        raise Pop3Error(replies.USER_FIRST)
    password = args[0]
    return session.authenticate(user, session.services.users.verify(user, password))


def cmd_apop(session: Session, args: list[str]) -> bytes:
    """RFC 1939 section 7: APOP name digest; needs a plaintext-equivalent ({PLAIN}) password."""
    user, digest = args
    stored = session.services.users.lookup(user)
    matched = False
    if stored is not None:
        scheme, secret = split_scheme(stored)
        if scheme in ("PLAIN", "CLEARTEXT", "CLEAR"):
            expected = hashlib.md5(
                (session.timestamp + secret).encode(),  # noqa: S324 (RFC 1939)
                usedforsecurity=False,
            ).hexdigest()
            # As bytes: compare_digest refuses str with non-ASCII characters (a client's).
            matched = hmac.compare_digest(expected.encode(), digest.lower().encode())
    return session.authenticate(user, matched)


def cmd_auth(session: Session, args: list[str]) -> bytes:
    """RFC 5034: AUTH mechanism [initial-response]; bare AUTH lists mechanisms. PLAIN and
    LOGIN send the password in clear: refused outside TLS and trusted_networks."""
    if not args:
        mechanisms = replies.SASL_MECHANISMS if session.plaintext_allowed else []
        return replies.multiline(replies.SASL_LIST_FIRST, mechanisms)
    mechanism = args[0].upper()
    if mechanism in replies.SASL_MECHANISMS:
        require_plaintext(session, replies.PLAINTEXT_MECHANISM_DISABLED)
    if mechanism == "PLAIN":
        return auth_plain(session, args[1] if len(args) > 1 else None)
    if mechanism == "LOGIN":
        return auth_login(session, args[1] if len(args) > 1 else None)
    raise Pop3Error(replies.AUTH_UNKNOWN_MECHANISM)


def auth_plain(session: Session, initial: str | None) -> bytes:
    if initial is None:
        session.send(replies.EMPTY_CHALLENGE)
        session.io.flush()
        initial = session.read_continuation().decode("ascii", "replace").strip()
    response = decode_sasl(initial)
    parts = response.split(b"\0")
    if len(parts) != 3:
        raise Pop3Error(replies.AUTH_BAD_BASE64)
    authzid, user_raw, password_raw = parts
    user, password = user_raw.decode("utf-8", "replace"), password_raw.decode("utf-8", "replace")
    if authzid and authzid != user_raw:
        return session.authenticate(user, False)
    return session.authenticate(user, session.services.users.verify(user, password))


def auth_login(session: Session, initial: str | None) -> bytes:
    if initial is None:
        session.send(replies.LOGIN_USERNAME_PROMPT)
        session.io.flush()
        initial = session.read_continuation().decode("ascii", "replace").strip()
    user = decode_sasl(initial).decode("utf-8", "replace")
    session.send(replies.LOGIN_PASSWORD_PROMPT)
    session.io.flush()
    answer = session.read_continuation().decode("ascii", "replace").strip()
    password = decode_sasl(answer).decode("utf-8", "replace")
    return session.authenticate(user, session.services.users.verify(user, password))


def require_plaintext(session: Session, refusal: bytes) -> None:
    if not session.plaintext_allowed:
        session.pending_user = None
        session.log.info("plaintext login refused: no TLS and not from trusted_networks")
        raise Pop3Error(refusal)


def decode_sasl(text: str) -> bytes:
    """A base64 client response; `*` cancels the exchange (RFC 5034 section 4)."""
    if text == "*":
        raise Pop3Error(replies.AUTH_CANCELLED)
    if text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Pop3Error(replies.AUTH_BAD_BASE64) from None


# -- any state -------------------------------------------------------------------------------


def cmd_stls(session: Session, args: list[str]) -> bytes:
    """RFC 2595 section 4: STLS, AUTHORIZATION state only; TLS starts once this +OK is on the
    wire, and whatever the client sent after STLS is discarded (common/session.start_tls)."""
    if session.tls:
        raise Pop3Error(replies.TLS_ACTIVE)
    if not session.tls_offered:
        raise Pop3Error(replies.TLS_UNAVAILABLE)
    session.tls_due = True
    return replies.BEGIN_TLS


def cmd_capa(session: Session, args: list[str]) -> bytes:
    """RFC 2449 section 5: the capability list; after STLS it is asked again (RFC 2595 4)."""
    authorization = session.state is State.AUTHORIZATION
    caps = replies.capabilities(
        session.settings.get("expire"),
        session.settings.get("login_delay"),
        stls=authorization and session.tls_offered,
        plaintext=session.plaintext_allowed or not authorization,
    )
    return replies.multiline(replies.CAPA_FIRST, caps)


def cmd_quit(session: Session, args: list[str]) -> bytes:
    """RFC 1939 sections 5 and 6: in TRANSACTION, enter UPDATE and apply the deletions."""
    session.finished = True
    if session.state is not State.TRANSACTION:
        return replies.SIGNED_OFF
    session.state = State.UPDATE
    committed = session.commit_deletions()
    # Unlock before the reply: a client that reconnects at once must not find it [IN-USE].
    session.unlock()
    if not committed:
        return replies.DELETE_FAILED
    return replies.signed_off(sum(1 for m in session.messages if not m.deleted))


def cmd_noop(session: Session, args: list[str]) -> bytes:
    return replies.NOOP_OK


# -- TRANSACTION -----------------------------------------------------------------------------


def cmd_stat(session: Session, args: list[str]) -> bytes:
    live = [m for m in session.messages if not m.deleted]
    return replies.stat(len(live), sum(m.size for m in live))


def cmd_list(session: Session, args: list[str]) -> bytes:
    """Scan listing of one message or of all that are not deleted."""
    if args:
        message = session.message(args[0])
        return replies.scan_line(int(args[0]), message.size)
    lines = [f"{n} {m.size}" for n, m in enumerate(session.messages, 1) if not m.deleted]
    return replies.multiline(replies.ok(f"{len(lines)} messages"), lines)


def cmd_uidl(session: Session, args: list[str]) -> bytes:
    """Unique-id listing: the Maildir name up to ':', stable across sessions and flag changes."""
    if args:
        message = session.message(args[0])
        return replies.uidl_line(int(args[0]), unique_id(message.key))
    messages = session.messages
    numbers = [n for n, m in enumerate(messages, 1) if not m.deleted]
    keys = [messages[n - 1].key for n in numbers]
    if not all_unique_ids(keys):
        keys = list(map(unique_id, keys))
    return replies.multiline(replies.ok(), list(map("{} {}".format, numbers, keys)))


def all_unique_ids(keys: list[str]) -> bool:
    """Whether unique_id(key) is the key itself for every one of `keys` (the usual case),
    tested in C over all of them at once: 100,000 calls of unique_id cost a tenth of a
    second."""
    if not keys:
        return True
    joined = " ".join(keys)
    return (
        joined.isascii()
        and joined.isprintable()
        and joined.count(" ") == len(keys) - 1
        and min(map(len, keys)) > 0
        and max(map(len, keys)) <= MAX_UNIQUE_ID
    )


def unique_id(key: str) -> str:
    """RFC 1939 requires 1 to 70 characters in 0x21-0x7E; hash anything else."""
    # 0x21-0x7E: ASCII, printable (0x20-0x7E) and no space; tested in C, not character by
    # character (UIDL of a 100,000-message maildrop asks 100,000 times)
    if 0 < len(key) <= MAX_UNIQUE_ID and key.isascii() and key.isprintable() and " " not in key:
        return key
    return hashlib.md5(key.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()


def cmd_retr(session: Session, args: list[str]) -> bytes:
    """The whole message, through the transformer when one is configured."""
    message = session.message(args[0])
    data = session.read(message, int(args[0]))
    command = in_force(session.settings.get("transformer"))
    if command:
        timeout = session.settings.get_float("transformer_timeout")
        try:
            data = transform(command, data, timeout)
        except TransformerError as exc:
            session.log.error("transformer failed on %s: %s", message.key, exc)
            raise Pop3Error(replies.TRANSFORMER_FAILED) from None
    wire = to_crlf(data)
    # A transformed message has its own size; LIST can only know the stored one.
    return replies.octets(len(wire) if command else message.size) + dot_stuff(wire)


def cmd_top(session: Session, args: list[str]) -> bytes:
    """RFC 1939 section 7: the header, the blank line and the first n lines of the body."""
    message = session.message(args[0])
    if not (args[1].isascii() and args[1].isdigit()):
        raise Pop3Error(replies.BAD_ARGUMENTS)
    count = int(args[1][:9])
    wire = to_crlf(session.read(message, int(args[0])))
    # An empty header: the message starts with the blank line (find() would skip past it).
    head_end = -2 if wire.startswith(b"\r\n") else wire.find(b"\r\n\r\n")
    if head_end == -1:
        return replies.ok() + dot_stuff(wire)
    head, body = wire[: head_end + 4], wire[head_end + 4 :]
    lines = body.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return replies.ok() + dot_stuff(head + b"".join(line + b"\r\n" for line in lines[:count]))


def cmd_dele(session: Session, args: list[str]) -> bytes:
    """Mark only: the message goes at QUIT (UPDATE), never before. A read-only maildrop (its
    files cannot be written) refuses: nothing marked could be removed."""
    message = session.message(args[0])
    if session.maildrop.read_only:
        raise Pop3Error(replies.READ_ONLY)
    message.deleted = True
    return replies.deleted(int(args[0]))


def cmd_rset(session: Session, args: list[str]) -> bytes:
    for message in session.messages:
        message.deleted = False
    return replies.RESET_OK


def dot_stuff(wire: bytes) -> bytes:
    """RFC 1939 section 3: byte-stuff lines starting with '.', then the terminating line."""
    stuffed = wire.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if stuffed and not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


COMMANDS: dict[str, Command] = {
    "USER": Command(cmd_user, AUTH, 1, 1),
    "PASS": Command(cmd_pass, AUTH, 1, 1, raw_args=True),
    "APOP": Command(cmd_apop, AUTH, 2, 2),
    "AUTH": Command(cmd_auth, AUTH, 0, 2),
    "STLS": Command(cmd_stls, AUTH),
    "CAPA": Command(cmd_capa, ANY),
    "QUIT": Command(cmd_quit, ANY),
    "NOOP": Command(cmd_noop, TRANSACTION),
    "STAT": Command(cmd_stat, TRANSACTION),
    "LIST": Command(cmd_list, TRANSACTION, 0, 1),
    "UIDL": Command(cmd_uidl, TRANSACTION, 0, 1),
    "RETR": Command(cmd_retr, TRANSACTION, 1, 1),
    "TOP": Command(cmd_top, TRANSACTION, 2, 2),
    "DELE": Command(cmd_dele, TRANSACTION, 1, 1),
    "RSET": Command(cmd_rset, TRANSACTION),
}
