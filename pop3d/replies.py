"""Every client-visible POP3 string, in one place (RFC 1939, RFC 2449 response codes, RFC 5034)."""

from __future__ import annotations

from common.version import VERSION

IMPLEMENTATION = f"maildaemons-{VERSION}"


def ok(text: str = "") -> bytes:
    return f"+OK {text}\r\n".encode() if text else b"+OK\r\n"


def err(text: str) -> bytes:
    return f"-ERR {text}\r\n".encode()


def greeting(timestamp: str) -> bytes:
    return ok(f"maildaemons POP3 server ready {timestamp}")


def multiline(first: bytes, lines: list[str]) -> bytes:
    if not lines:
        return first + b".\r\n"
    return first + ("\r\n".join(lines) + "\r\n").encode() + b".\r\n"


UNKNOWN_COMMAND = err("Unknown command")
WRONG_STATE = err("Command not valid in this state")
LINE_TOO_LONG = err("Line too long")
TOO_MANY_BAD = err("Too many bad commands, closing connection")
BAD_ARGUMENTS = err("Invalid arguments")
NO_SUCH_MESSAGE = err("No such message")
USER_FIRST = err("USER first")
AUTH_FAILED = err("[AUTH] Invalid credentials")
TOO_MANY_FAILURES = err("[AUTH] Too many failed logins, closing connection")
IN_USE = err("[IN-USE] Maildrop already locked by another session")
MAILDROP_UNAVAILABLE = err("[SYS/TEMP] Maildrop unavailable, try again later")
TRANSFORMER_FAILED = err("[SYS/TEMP] Message transformation failed, try again later")
READ_FAILED = err("[SYS/TEMP] Message could not be read")
DELETE_FAILED = err("[SYS/PERM] Some deleted messages were not removed")
READ_ONLY = err("Maildrop is read-only: messages cannot be deleted")
TIMEOUT = err("Idle timeout, closing connection")
SHUTDOWN = err("[SYS/TEMP] Server shutting down, try again later")
INTERNAL_ERROR = err("[SYS/TEMP] Internal error, closing connection")
AUTH_CANCELLED = err("AUTH cancelled")
AUTH_UNKNOWN_MECHANISM = err("Unrecognized authentication mechanism")
AUTH_BAD_BASE64 = err("Invalid base64 data")
# RFC 2595 4 and Dovecot's wording: USER/PASS and AUTH PLAIN/LOGIN need TLS here (APOP does not).
PLAINTEXT_DISALLOWED = err(
    "[AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
)
PLAINTEXT_MECHANISM_DISABLED = err("[AUTH] Plaintext authentication disabled.")
BEGIN_TLS = ok("Begin TLS negotiation now.")
TLS_ACTIVE = err("TLS is already active.")
TLS_UNAVAILABLE = err("TLS support isn't enabled.")
SIGNED_OFF = ok("maildaemons POP3 server signing off")
RESET_OK = ok("Maildrop reset")
NOOP_OK = ok()


def busy(reason: str) -> bytes:
    if reason == "address":
        return err("[SYS/TEMP] Too many connections from your address, try again later")
    return err("[SYS/TEMP] Too many connections, try again later")


def logged_in(count: int, size: int) -> bytes:
    return ok(f"Logged in, {count} messages ({size} octets)")


def stat(count: int, size: int) -> bytes:
    return ok(f"{count} {size}")


def scan_line(number: int, size: int) -> bytes:
    return ok(f"{number} {size}")


def uidl_line(number: int, uid: str) -> bytes:
    return ok(f"{number} {uid}")


def already_deleted(number: int) -> bytes:
    return err(f"Message {number} already deleted")


def message_gone(number: int) -> bytes:
    """RETR or TOP of a message another session expunged after this one listed it: that
    message only; the session, its other messages and its deletions go on."""
    return err(f"Message {number} was removed by another session")


def deleted(number: int) -> bytes:
    return ok(f"Message {number} deleted")


def octets(size: int) -> bytes:
    return ok(f"{size} octets")


def login_delay(seconds: int) -> bytes:
    return err(f"[LOGIN-DELAY] Wait {seconds} seconds between logins")


def signed_off(remaining: int) -> bytes:
    return ok(f"maildaemons POP3 server signing off ({remaining} messages left)")


def capabilities(
    expire: str, login_delay_value: str, stls: bool = False, plaintext: bool = True
) -> list[str]:
    """RFC 2449 5; STLS (RFC 2595 4) while it may be used. Without plaintext logins there is
    neither USER nor a SASL mechanism, as Dovecot does (a bare SASL: AUTH exists)."""
    caps = ["TOP", "USER", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"]
    if stls:
        caps.append("STLS")
    caps.append("SASL " + " ".join(SASL_MECHANISMS) if plaintext else "SASL")
    if not plaintext:
        caps.remove("USER")
    if expire:
        caps.append(f"EXPIRE {expire}")
    if login_delay_value:
        caps.append(f"LOGIN-DELAY {login_delay_value}")
    caps.append(f"IMPLEMENTATION {IMPLEMENTATION}")
    return caps


CAPA_FIRST = ok("Capability list follows")
SASL_MECHANISMS = ["PLAIN", "LOGIN"]
SASL_LIST_FIRST = ok("SASL mechanisms follow")
LOGIN_USERNAME_PROMPT = b"+ VXNlcm5hbWU6\r\n"  # base64 "Username:"
LOGIN_PASSWORD_PROMPT = b"+ UGFzc3dvcmQ6\r\n"  # base64 "Password:"
EMPTY_CHALLENGE = b"+ \r\n"
