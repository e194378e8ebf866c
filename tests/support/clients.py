"""A raw-socket line client for the line protocols (POP3, MSMP, the gateway); IMAP's `Raw`
builds on it."""

from __future__ import annotations

import socket


class LineClient:
    """A raw-socket client that sends lines (CRLF or bare LF) and reads replies."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed; buffered {self.buf[:200]!r}")
        self.buf += chunk

    def line(self) -> bytes:
        """One line, with its line end."""
        while b"\n" not in self.buf:
            self._more()
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def until(self, terminator: bytes) -> bytes:
        """Read lines until one equals `terminator` (e.g. b'.\\r\\n'); return them all."""
        out = b""
        while True:
            line = self.line()
            out += line
            if line == terminator:
                return out

    def closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within `timeout`."""
        previous = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(previous)

    def close(self) -> None:
        self.sock.close()
