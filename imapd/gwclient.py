"""The gateway's side of an IMAP conversation: send a tagged command, collect the server's raw
response bytes up to and including the tagged completion (literals read by their length).

Seed 000 scanned a fixed 64 KiB buffer for "OK FETCH" one byte at a time; this reads whole lines
and literals, so a response of any size comes back exactly as the server sent it. Every wait also
watches the child's wakeup fd, so a TERM from the master ends it with one clear line.

Every line a CGI client can read from the gateway is defined in the first block below.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket

# -- every client-visible line (seed 000's banner, then one `NO <reason>` on failure) -----------

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


# -- the IMAP client ---------------------------------------------------------------------------

MAX_RESPONSE = 256 * 1024 * 1024
MAX_RESPONSE_LINE = 1024 * 1024
_LITERAL = re.compile(rb"\{(\d{1,12})\}\r?\n?$")
_ATOM = re.compile(rb"[!#$&'+-Z^-z|~]+")


class GatewayError(Exception):
    """The purpose failed; the text is the one line the CGI client gets after `NO `."""


def wait_readable(sock: socket.socket, interrupt_fd: int | None, timeout: float) -> bool:
    """True when `sock` has input within `timeout`; raise when the master's TERM arrives first."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
    if interrupt_fd is not None and interrupt_fd >= 0:
        poller.register(interrupt_fd, select.POLLIN)
    events = poller.poll(max(0.0, timeout) * 1000.0)
    if any(fd == interrupt_fd for fd, _mask in events):
        raise GatewayError(SHUTTING_DOWN)
    return bool(events)


class ImapClient:
    """A minimal blocking IMAP client over one socket."""

    def __init__(
        self, host: str, port: int, timeout: float, interrupt_fd: int | None = None
    ) -> None:
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError:
            raise GatewayError(TIMED_OUT) from None
        except OSError:
            raise GatewayError(UNREACHABLE) from None
        self.timeout = timeout
        self.interrupt_fd = interrupt_fd
        self.buf = b""

    def greeting(self) -> bytes:
        line = self._line()
        if not line.startswith((b"* OK", b"* PREAUTH")):
            raise GatewayError(REFUSED)
        return line

    def command(self, tag: str, text: bytes) -> tuple[bytes, bytes]:
        """(all response bytes, the tagged completion line) for one command."""
        self._send(tag.encode() + b" " + text + b"\r\n")
        collected = []
        size = 0
        prefix = tag.encode() + b" "
        while True:
            line = self._line()
            collected.append(line)
            size += len(line)
            if size > MAX_RESPONSE:
                raise GatewayError(TOO_LARGE)
            match = _LITERAL.search(line.rstrip(b"\r\n"))
            if match and not line.startswith(prefix):
                data = self._exact(int(match.group(1)))
                collected.append(data)
                size += len(data)
                continue
            if line.startswith(prefix):
                return b"".join(collected), line

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise GatewayError(TIMED_OUT) from None
        except OSError:
            raise GatewayError(CLOSED) from None

    def _fill(self) -> None:
        if not wait_readable(self.sock, self.interrupt_fd, self.timeout):
            raise GatewayError(TIMED_OUT)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise GatewayError(TIMED_OUT) from None
        except OSError:
            raise GatewayError(CLOSED) from None
        if not chunk:
            raise GatewayError(CLOSED)
        self.buf += chunk

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\n")) < 0:
            if len(self.buf) > MAX_RESPONSE_LINE:
                raise GatewayError(LINE_TOO_LONG)
            self._fill()
        line, self.buf = self.buf[: end + 1], self.buf[end + 1 :]
        return line

    def _exact(self, size: int) -> bytes:
        if size > MAX_RESPONSE:
            raise GatewayError(TOO_LARGE)
        while len(self.buf) < size:
            self._fill()
        data, self.buf = self.buf[:size], self.buf[size:]
        return data


def astring(value: str) -> bytes:
    """An IMAP astring for LOGIN/SELECT arguments: an atom when it can be, else a quoted string."""
    data = value.encode("utf-8")
    if data and _ATOM.fullmatch(data):
        return data
    if b"\r" in data or b"\n" in data or b"\0" in data:
        raise GatewayError(BAD_CHARACTERS)
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def status_of(completion: bytes, tag: str) -> str:
    """OK, NO or BAD from a tagged completion line."""
    parts = completion.split(b" ", 2)
    return parts[1].decode("ascii", "replace").upper() if len(parts) > 1 else ""
