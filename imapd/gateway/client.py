"""The gateway's side of an IMAP conversation: send a tagged command, collect the server's raw
response bytes up to and including the tagged completion (literals read by their length).

Seed 000 scanned a fixed 64 KiB buffer for "OK FETCH" one byte at a time; this reads whole lines
and literals, so a response of any size comes back exactly as the server sent it. Every wait also
watches the child's wakeup fd, so a TERM from the master ends it with one clear line.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
from typing import Protocol

from common import turns
from common.utf7 import encode_mutf7
from imapd.gateway import replies
from imapd.gateway.replies import GatewayError
from imapd.strings import astring

MAX_RESPONSE = 256 * 1024 * 1024
MAX_RESPONSE_LINE = 1024 * 1024
_LITERAL = re.compile(rb"\{(\d{1,12})\}\r?\n?$")


class Readable(Protocol):
    """What waiting for and reading input needs of a socket (the client's is counted)."""

    def recv(self, size: int, /) -> bytes: ...

    def fileno(self) -> int: ...


def wait_readable(sock: Readable, interrupt_fd: int | None, timeout: float) -> bool:
    """True when `sock` has input within `timeout`; raise when the master's TERM arrives first.
    A pool worker's other sessions have the turn meanwhile (common/turns.py): the gateway waits
    here for its CGI client and for the IMAP server, not in LineIO."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
    if interrupt_fd is not None and interrupt_fd >= 0:
        poller.register(interrupt_fd, select.POLLIN)
    with turns.aside():
        events = poller.poll(max(0.0, timeout) * 1000.0)
    if any(fd == interrupt_fd for fd, _mask in events):
        raise GatewayError(replies.SHUTTING_DOWN)
    return bool(events)


class ImapClient:
    """A minimal blocking IMAP client over one socket."""

    def __init__(
        self, host: str, port: int, timeout: float, interrupt_fd: int | None = None
    ) -> None:
        try:
            with turns.aside():  # a connect may take up to `timeout`
                self.sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError:
            raise GatewayError(replies.TIMED_OUT) from None
        except OSError:
            raise GatewayError(replies.UNREACHABLE) from None
        self.timeout = timeout
        self.interrupt_fd = interrupt_fd
        self.buf = b""

    def greeting(self) -> bytes:
        line = self._line()
        if not line.startswith((b"* OK", b"* PREAUTH")):
            raise GatewayError(replies.REFUSED)
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
                raise GatewayError(replies.TOO_LARGE)
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
            raise GatewayError(replies.TIMED_OUT) from None
        except OSError:
            raise GatewayError(replies.CLOSED) from None

    def _fill(self) -> None:
        if not wait_readable(self.sock, self.interrupt_fd, self.timeout):
            raise GatewayError(replies.TIMED_OUT)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise GatewayError(replies.TIMED_OUT) from None
        except OSError:
            raise GatewayError(replies.CLOSED) from None
        if not chunk:
            raise GatewayError(replies.CLOSED)
        self.buf += chunk

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\n")) < 0:
            if len(self.buf) > MAX_RESPONSE_LINE:
                raise GatewayError(replies.LINE_TOO_LONG)
            self._fill()
        line, self.buf = self.buf[: end + 1], self.buf[end + 1 :]
        return line

    def _exact(self, size: int) -> bytes:
        if size > MAX_RESPONSE:
            raise GatewayError(replies.TOO_LARGE)
        while len(self.buf) < size:
            self._fill()
        data, self.buf = self.buf[:size], self.buf[size:]
        return data


def command_arg(value: str) -> bytes:
    """A LOGIN or SELECT argument: an atom when it can be, else a quoted string. The command goes
    in one piece, so a field with CR, LF or NUL cannot be sent (they could also end it early)."""
    try:
        return astring(value)
    except ValueError:
        raise GatewayError(replies.BAD_CHARACTERS) from None


def mailbox_arg(name: str) -> bytes:
    """SELECT's argument. A non-ASCII name cannot be on the wire already, so it is encoded to
    modified UTF-7 (RFC 3501 5.1.3); an ASCII one goes as given, as seed 000 sent it."""
    if name.isascii():
        return command_arg(name)
    return command_arg(encode_mutf7(name).decode("ascii"))


def status_of(completion: bytes, tag: str) -> str:
    """OK, NO or BAD from a tagged completion line."""
    parts = completion.split(b" ", 2)
    return parts[1].decode("ascii", "replace").upper() if len(parts) > 1 else ""
