"""The gateway's side of an IMAP conversation: send a tagged command, collect the server's raw
response bytes up to and including the tagged completion (literals read by their length).

Seed 000 scanned a fixed 64 KiB buffer for "OK FETCH" one byte at a time; this reads whole lines
and literals, so a response of any size comes back exactly as the server sent it.
"""

from __future__ import annotations

import re
import socket
import contextlib

MAX_RESPONSE = 256 * 1024 * 1024
_LITERAL = re.compile(rb"\{(\d{1,12})\}\r?\n?$")
_ATOM = re.compile(rb"[!#$&'+-Z^-z|~]+")


class GatewayError(Exception):
    """The IMAP side failed; the text is the one line the CGI client gets after `NO `."""


class ImapClient:
    """A minimal blocking IMAP client over one socket."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError:
            raise GatewayError("IMAP server timed out") from None
        except OSError:
            raise GatewayError("IMAP server unreachable") from None
        self.buf = b""

    def greeting(self) -> bytes:
        line = self._line()
        if not line.startswith((b"* OK", b"* PREAUTH")):
            raise GatewayError("IMAP server refused the connection")
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
                raise GatewayError("IMAP response too large")
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
            raise GatewayError("IMAP server timed out") from None
        except OSError:
            raise GatewayError("IMAP server closed the connection") from None

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise GatewayError("IMAP server timed out") from None
        except OSError:
            raise GatewayError("IMAP server closed the connection") from None
        if not chunk:
            raise GatewayError("IMAP server closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\n")) < 0:
            if len(self.buf) > 1024 * 1024:
                raise GatewayError("IMAP response line too long")
            self._fill()
        line, self.buf = self.buf[: end + 1], self.buf[end + 1:]
        return line

    def _exact(self, size: int) -> bytes:
        if size > MAX_RESPONSE:
            raise GatewayError("IMAP response too large")
        while len(self.buf) < size:
            self._fill()
        data, self.buf = self.buf[:size], self.buf[size:]
        return data


def astring(value: str) -> bytes:
    """An IMAP astring for LOGIN/SELECT arguments: atom, quoted, or literal-free quoted form."""
    data = value.encode("utf-8")
    if data and _ATOM.fullmatch(data):
        return data
    if b"\r" in data or b"\n" in data or b"\0" in data:
        raise GatewayError("invalid characters in a field")
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def status_of(completion: bytes, tag: str) -> str:
    """OK, NO or BAD from a tagged completion line."""
    parts = completion.split(b" ", 2)
    return parts[1].decode("ascii", "replace").upper() if len(parts) > 1 else ""
