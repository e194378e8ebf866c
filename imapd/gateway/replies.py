"""Every line a CGI client can read from the 4711 gateway, in one place (seed 000): the banner,
the empty-mailbox answer, and the reasons of the one `NO <reason>` line a failure gets.

The IMAP server's own response bytes go back to the client as the server sent them.
"""

from __future__ import annotations

BANNER = b"OK IMAP daemon client ready (DMIS Rulez!)...\n"
EMPTY_MAILBOX = b"3 OK FETCH completed (mailbox is empty)\r\n"
BAD_FIELDS = "missing fields: expected purpose#msgnum#host#user#pass#mailbox$"
MISSING_USER = "missing user"
MISSING_HOST = "missing host"
BAD_MSGNUM = "message number must be a positive number"
TOO_LONG = "purpose string too long or not terminated by $"
CLIENT_TIMEOUT = "timed out waiting for the purpose string"
CLIENT_EOF = "connection closed before the purpose string ended with $"
SHUTTING_DOWN = "server shutting down, try again later"
BUSY = "too many connections, try again later"
INTERNAL = "internal error"
UNREACHABLE = "IMAP server unreachable"
TIMED_OUT = "IMAP server timed out"
CLOSED = "IMAP server closed the connection"
REFUSED = "IMAP server refused the connection"
TOO_LARGE = "IMAP response too large"
LINE_TOO_LONG = "IMAP response line too long"
BAD_CHARACTERS = "invalid characters in a field"
LOGIN_REFUSED = "login refused"
MAILBOX_MISSING = "mailbox missing"


class GatewayError(Exception):
    """The purpose failed; the text is the one line the CGI client gets after `NO `."""


def no(reason: str) -> bytes:
    """The one error line a CGI client gets before the gateway closes."""
    return f"NO {reason}\n".encode()


def unknown_purpose(name: str) -> str:
    return f"unknown purpose {name[:40]!r}"


def host_not_allowed(host: str) -> str:
    return f"IMAP host {host[:64]!r} not allowed"


def no_such_message(msgnum: str) -> str:
    return f"message {msgnum} does not exist"


def not_deleted(msgnum: str) -> str:
    return f"message {msgnum} could not be deleted"


def not_expunged(msgnum: str) -> str:
    return f"message {msgnum} could not be expunged"
