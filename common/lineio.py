"""Buffered line I/O for one session's socket: CRLF or bare-LF lines, limits, timeouts, byte counts.

Replies are buffered and flushed in one write just before the child blocks for more input, so a
pipelined batch of commands (RFC 2449 PIPELINING, IMAP clients) gets its replies together and no
reply is written in pieces (Nagle plus delayed ACK would add 40 ms to each). The child's wakeup fd
is polled with the socket, so a TERM from the master interrupts a wait for input, never a command.
In the pool model each session runs on a thread of its own and blocks here as a child would; its
interrupt fd is the worker's, which stays readable once the worker is told to stop.

Optionally the stream is compressed both ways (IMAP COMPRESS=DEFLATE, RFC 4978): raw DEFLATE
(zlib wbits -15), each flush ending in a Z_SYNC_FLUSH so the client can decode every reply at
once. It starts with `start_compression()` once the command's tagged OK is on the wire; the limits
apply to the decompressed data, and byte counts are what crossed the wire.

TLS (`start_tls()`, common/tls.py) sits below compression: once it is on, everything read and
written goes through the TLS channel, the socket is still what is polled, and the byte counts are
still the socket's. Input buffered before the switch is discarded unread (RFC 3501 6.2.1, RFC 2595
4: a command pipelined after STARTTLS/STLS must not run as if it had come over TLS).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
import struct
import time
import zlib

from common import samepage, turns
from common.tls import TlsChannel

RECV_SIZE = 65536
FLUSH_THRESHOLD = 65536
# Decompressed input is produced at most this much at a time, so a small compressed line that
# expands enormously is cut by the line limit, not held in memory whole.
INFLATE_CHUNK = 1 << 20
DEFLATE_LEVEL = 6
MAX_SOCKET_TIMEOUT = 86_400.0  # SO_SNDTIMEO's bound: a day (0 would mean never)


class ConnectionClosed(Exception):
    """The client went away (EOF, reset, broken pipe)."""


class SessionTimeout(Exception):
    """No input arrived within the idle timeout."""


class Interrupted(Exception):
    """The master asked this child to finish (TERM) while it waited for input."""


class LineTooLong(Exception):
    """A line exceeded the limit; the rest of it up to its newline was read and discarded.
    `head` is its start (HEAD_SIZE octets at most), for a reply that names the command (an IMAP
    tag)."""

    def __init__(self, head: bytes = b"") -> None:
        super().__init__("line too long")
        self.head = head


HEAD_SIZE = 256  # the start of an over-long line kept for its reply


class CompressionError(Exception):
    """The client's compressed stream cannot be decoded: the session cannot go on."""


class HandshakeFailed(ConnectionClosed):
    """The TLS handshake failed or timed out; nothing more can be said to the client."""


class LineIO:
    """Line reader and buffered writer over a connected, blocking socket."""

    def __init__(
        self, sock: socket.socket, max_line: int, timeout: float, interrupt_fd: int | None = None
    ) -> None:
        self.sock = sock
        # Reads wait in poll() below; the kernel bounds each blocking send (SO_SNDTIMEO), so
        # Python puts no poll() of its own before every send and receive, as a socket
        # timeout would.
        sock.settimeout(None)
        bound_sends(sock, timeout)
        self.max_line = max_line
        self.timeout = timeout
        self.interrupt_fd = interrupt_fd
        self._bytes_in = 0  # before TLS; then the channel counts
        self._bytes_out = 0
        self._tls: TlsChannel | None = None
        self._inbuf = bytearray()
        self._outbuf: list[bytes] = []
        self._outlen = 0
        self._deflate: zlib._Compress | None = None
        self._inflate: zlib._Decompress | None = None
        # A pool session's turn (common/turns.py): given up from the last send before a wait
        # for the client until that wait ends, so the worker's other sessions run meanwhile.
        self._seat = turns.current()
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN | select.POLLPRI)
        if interrupt_fd is not None:
            self._poll.register(interrupt_fd, select.POLLIN)

    @property
    def bytes_in(self) -> int:
        """Bytes read from the wire (compressed, encrypted: as they crossed it)."""
        return self._bytes_in + (self._tls.wire_in if self._tls is not None else 0)

    @property
    def bytes_out(self) -> int:
        return self._bytes_out + (self._tls.wire_out if self._tls is not None else 0)

    # -- input ---------------------------------------------------------------------------------

    def readline(self, deadline: float | None = None) -> bytes:
        """Next line without its CRLF or LF; LineTooLong after discarding an over-long line.

        The idle timeout bounds the whole line, not each piece of it: a client sending a byte
        now and then (slowloris) cannot hold its session past the timeout without a command.
        `deadline` (time.monotonic()) bounds a larger whole instead: a command of several
        lines and literals."""
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        while True:
            end = self._inbuf.find(b"\n")
            if end >= 0:
                if end > self.max_line + 1:
                    head = bytes(self._inbuf[:HEAD_SIZE])
                    del self._inbuf[: end + 1]
                    raise LineTooLong(head)
                line = bytes(self._inbuf[:end])
                del self._inbuf[: end + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._inbuf) > self.max_line + 1:
                head = bytes(self._inbuf[:HEAD_SIZE])
                self._discard_rest_of_line(deadline)
                raise LineTooLong(head)
            self._fill(deadline)

    def read_exact(self, size: int, deadline: float | None = None) -> bytes:
        """Exactly `size` bytes (an IMAP literal). Without a `deadline` the idle timeout
        applies to each wait: a large literal takes as long as it needs while it moves."""
        while len(self._inbuf) < size:
            self._fill(deadline)
        data = bytes(self._inbuf[:size])
        del self._inbuf[:size]
        return data

    def has_buffered_input(self) -> bool:
        return bool(self._inbuf) or self._inflate_pending()

    def wait_readable(self, timeout: float, wake: int | None = None) -> bool:
        """True when input is waiting (buffered or on the socket) within `timeout` seconds.
        `wake`: a further descriptor (a folder watch) that ends the wait early, with False."""
        if self.has_buffered_input():
            return True
        with self._turn_aside():
            self.flush()
            if wake is None:
                return self._wait(timeout)
            self._poll.register(wake, select.POLLIN)
            try:
                return self._wait(timeout, wake)
            finally:
                self._poll.unregister(wake)

    def _discard_rest_of_line(self, deadline: float) -> None:
        self._inbuf.clear()
        while True:
            self._fill(deadline)
            end = self._inbuf.find(b"\n")
            if end >= 0:
                del self._inbuf[: end + 1]
                return
            self._inbuf.clear()

    def _fill(self, deadline: float | None = None) -> None:
        """More input: within the idle timeout, or by `deadline` (monotonic) when given."""
        with self._turn_aside():
            self.flush()
            if self._inflate_pending():
                self._inflate_into(b"")
                return
            timeout = self.timeout if deadline is None else deadline - time.monotonic()
            if timeout <= 0 or not self._wait(timeout):
                raise SessionTimeout
        data = self._receive()
        if data is None:  # a TLS record is not complete yet: wait for the rest
            return
        if not data:
            raise ConnectionClosed("EOF")
        if self._inflate is None:
            self._inbuf += data
        else:
            self._inflate_into(data)

    def _receive(self) -> bytes | None:
        """One read from the socket (it is readable): the data, b"" at EOF, None when TLS
        needs more of a record."""
        try:
            if self._tls is not None:
                return self._tls.recv()
            data = self.sock.recv(RECV_SIZE)
        except (ConnectionError, TimeoutError, OSError) as exc:  # ssl.SSLError too
            raise ConnectionClosed(str(exc)) from None
        self._bytes_in += len(data)
        return data

    # -- TLS (RFC 3501 6.2.1, RFC 2595 4, RFC 8314) -------------------------------------------

    @property
    def tls(self) -> bool:
        return self._tls is not None

    def start_tls(self, context: ssl.SSLContext, timeout: float) -> str:
        """Flush the replies, discard whatever the client sent after its command, and do the
        server handshake within `timeout` seconds. Returns the protocol and cipher for the log;
        raises HandshakeFailed (or Interrupted, when TERM comes first)."""
        if self._tls is not None or self._deflate is not None:
            raise RuntimeError("TLS must start on a plain, uncompressed connection")
        self.flush()
        self._inbuf.clear()
        self._tls = TlsChannel(self.sock, context)
        try:
            self._tls.handshake(self._wait, timeout)
        except (ssl.SSLError, ConnectionError, TimeoutError, OSError) as exc:
            raise HandshakeFailed(handshake_error(exc)) from None
        return self._tls.describe()

    # -- compression (RFC 4978) ----------------------------------------------------------------

    @property
    def compressed(self) -> bool:
        return self._deflate is not None

    def start_compression(self) -> None:
        """Compress everything written and decompress everything read from now on. Whatever
        the client sent after the command is already compressed data."""
        self.flush()
        self._deflate = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -15)
        self._inflate = zlib.decompressobj(-15)
        early = bytes(self._inbuf)
        self._inbuf.clear()
        if early:
            self._inflate_into(early)

    def _inflate_pending(self) -> bool:
        return self._inflate is not None and bool(self._inflate.unconsumed_tail)

    def _inflate_into(self, data: bytes) -> None:
        if self._inflate is None:
            raise RuntimeError("compression is not active")
        try:
            self._inbuf += self._inflate.decompress(
                self._inflate.unconsumed_tail + data, INFLATE_CHUNK
            )
        except zlib.error as exc:
            raise CompressionError(str(exc)) from None
        if self._inflate.eof:
            raise ConnectionClosed("compressed stream ended")

    def _wait(self, timeout: float, wake: int | None = None) -> bool:
        """Wait for the socket; raise Interrupted when the wakeup fd fires first."""
        if (self._tls is not None and self._tls.pending()) or self._inflate_pending():
            return True
        events = self._poll_for(timeout)  # the callers have given the turn away
        readable = False
        for fd, _mask in events:
            if fd == self.interrupt_fd:
                drain(fd)
                raise Interrupted
            readable = readable or fd != wake
        return readable

    def _poll_for(self, timeout: float) -> list[tuple[int, int]]:
        offer = samepage.offer_due()
        if offer is not None and offer < timeout:
            # A session that waits past its merge offer is a held one: its pages are offered
            # to ksmd then, not when a short session would only have been scanned in vain.
            events = self._poll.poll(max(0.0, offer) * 1000.0)
            if events:
                return events
            samepage.offer_now()
            timeout -= max(0.0, offer)
        return self._poll.poll(max(0.0, timeout) * 1000.0)

    def _turn_aside(self) -> contextlib.AbstractContextManager[None]:
        """A pool session's turn given up for the block (sending, waiting for the client)."""
        return contextlib.nullcontext() if self._seat is None else self._seat.aside()

    # -- output --------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self._outbuf.append(data)
        self._outlen += len(data)
        if self._outlen >= FLUSH_THRESHOLD:
            # A long reply: the other sessions run while this part goes out.
            with self._turn_aside():
                self.flush()

    def flush(self) -> None:
        if not self._outbuf:
            return
        data = b"".join(self._outbuf)
        self._outbuf.clear()
        self._outlen = 0
        if self._deflate is not None:
            data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        try:
            if self._tls is not None:
                self._tls.sendall(data)
                return
            self.sock.sendall(data)
        except (ConnectionError, TimeoutError, OSError) as exc:  # ssl.SSLError too
            raise ConnectionClosed(str(exc)) from None
        self._bytes_out += len(data)

    def close(self) -> None:
        try:
            self.flush()
        except ConnectionClosed:
            pass
        finally:
            if self._tls is not None:
                self._tls.close()
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()


def bound_sends(sock: socket.socket, timeout: float) -> None:
    """A send blocked for `timeout` seconds fails (EAGAIN), as with a socket timeout; so does a
    receive, which poll() says is ready before it is made."""
    seconds = max(0.001, min(timeout, MAX_SOCKET_TIMEOUT))
    value = struct.pack("@ll", int(seconds), int((seconds % 1) * 1_000_000))
    for option in (socket.SO_SNDTIMEO, socket.SO_RCVTIMEO):
        sock.setsockopt(socket.SOL_SOCKET, option, value)


def handshake_error(exc: BaseException) -> str:
    """One line on why a handshake failed: OpenSSL's reason (`WRONG_VERSION_NUMBER` for
    plaintext on a TLS port, `UNSUPPORTED_PROTOCOL` for TLS 1.1) or the socket's."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return " ".join(str(exc).split()) or type(exc).__name__


def drain(fd: int) -> bytes:
    """Read everything waiting on a non-blocking fd (a wakeup socket)."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
