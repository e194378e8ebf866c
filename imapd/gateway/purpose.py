"""The purpose string of seed 000: `purpose#msgnum#host#user#pass#mailbox$`, read from the CGI
client, parsed, and written to the log with the password masked.

Deliberate differences from seed 000: the string may arrive in pieces; the password is masked in
the log (the seed logged it in clear); every problem is one `NO` line.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.logs import escaped
from imapd.gateway import replies
from imapd.gateway.client import Readable, wait_readable
from imapd.gateway.replies import GatewayError

MAX_PURPOSE = 1024  # the whole purpose string, its `$` included (seed 000 read 1024 bytes once)
PURPOSES = ("headers", "body", "delete")


@dataclass(frozen=True)
class Purpose:
    """One parsed purpose string (seed 000's This_Session[0..5])."""

    purpose: str
    msgnum: str
    host: str
    user: str
    password: str
    mailbox: str


def masked(raw: bytes) -> str:
    """The purpose string for the log, password masked (seed 000 logged it in clear); bytes
    that are not UTF-8 show as `\\xNN`, controls escaped (common.logs.escaped_bytes).

    Only a string with every field, and a number (or nothing) where the number goes, shows its
    user, host and mailbox: when a field is missing nobody knows which one is the password.
    """
    fields = raw.decode("utf-8", "backslashreplace").split("#")
    if len(fields) < 6 or not (fields[1].strip() == "" or fields[1].strip().isdigit()):
        shown = fields[0] + "#****" if len(fields) > 1 else fields[0]
    else:
        shown = "#".join([*fields[:4], "****", fields[-1]])
    return escaped(shown)[:MAX_PURPOSE] + "$"


def read_purpose(conn: Readable, timeout: float, interrupt_fd: int | None = None) -> bytes:
    """Bytes before the `$`, which may arrive in any number of segments; at most MAX_PURPOSE
    bytes with the `$`. Bytes after the `$` are ignored (a CGI may end with a newline)."""
    data = b""
    while b"$" not in data:
        if len(data) >= MAX_PURPOSE:
            raise GatewayError(replies.TOO_LONG)
        if not wait_readable(conn, interrupt_fd, timeout):
            raise GatewayError(replies.CLIENT_TIMEOUT)
        try:
            chunk = conn.recv(MAX_PURPOSE - len(data))
        except TimeoutError:
            raise GatewayError(replies.CLIENT_TIMEOUT) from None
        if not chunk:
            raise GatewayError(replies.CLIENT_EOF)
        data += chunk
    return data[: data.index(b"$")]


def parse_purpose(raw: bytes) -> Purpose:
    """`purpose#msgnum#host#user#pass#mailbox`: the password, in the middle, may hold `#`."""
    text = raw.decode("utf-8", "replace").strip("\r\n ")
    head = text.split("#", 4)
    if len(head) < 5 or "#" not in head[4]:
        raise GatewayError(replies.BAD_FIELDS)
    password, _, mailbox = head[4].rpartition("#")
    name, msgnum = head[0].strip().lower(), head[1].strip()
    if name not in PURPOSES:
        raise GatewayError(replies.unknown_purpose(name))
    if name != "headers":
        # isascii: "\u00b2".isdigit() is true and int() refuses it; str(int()): no leading zeros
        if not (msgnum.isascii() and msgnum.isdigit() and int(msgnum)):
            raise GatewayError(replies.BAD_MSGNUM)
        msgnum = str(int(msgnum))
    purpose = Purpose(name, msgnum, head[2].strip(), head[3], password, mailbox.strip())
    if not purpose.host:
        raise GatewayError(replies.MISSING_HOST)
    if not purpose.user:
        raise GatewayError(replies.MISSING_USER)
    return purpose
