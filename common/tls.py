"""TLS for the session protocols: the server context from `tls_cert`/`tls_key`, and the TLS
channel a connection switches to (STARTTLS, STLS, an implicit-TLS port).

The context allows TLS 1.2 and 1.3 only (RFC 8996 retires 1.0 and 1.1) with OpenSSL's system
defaults for everything else (cipher list, groups), no compression (CRIME, RFC 7457 2.6) and no
renegotiation. The certificate file may hold the whole chain, leaf first. A key file anyone may
read, a key that is not the certificate's, or a file that cannot be read is refused with one line;
the files are read when the context is built (at start-up, as root before the privilege drop, and
again on HUP), never by a session.

The channel is an `ssl.SSLObject` over two memory BIOs rather than an `SSLSocket`: the line I/O
keeps polling the plain socket (with its interrupt fd), every byte it counts is a byte that crossed
the wire, and the handshake has a deadline of its own.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

RECV_SIZE = 65536
HANDSHAKE_TIMEOUT = 30.0  # seconds; a session's idle timeout caps it further
CERT_MARK = "-----BEGIN CERTIFICATE-----"
KEY_MARK = "PRIVATE KEY-----"


class TlsConfigError(Exception):
    """The certificate or key cannot be used; the message is one line naming the file."""


class RawSocket(Protocol):
    def recv(self, size: int, /) -> bytes: ...
    def sendall(self, data: bytes, /) -> None: ...


# -- the context -----------------------------------------------------------------------------


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The server context of `cert` (PEM, a chain after the leaf is fine) and `key` (PEM, not
    readable by everyone, not encrypted)."""
    check_cert_file(cert)
    check_key_file(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(cert, key, password=_encrypted_key(key))
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsConfigError(f"tls_key {key} is not the key of tls_cert {cert}") from None
        raise TlsConfigError(
            f"cannot load tls_cert {cert} with tls_key {key}: {exc.reason or exc}"
        ) from None
    except OSError as exc:
        raise TlsConfigError(f"cannot read tls_cert {cert}: {exc.strerror or exc}") from None
    return context


def check_cert_file(cert: Path) -> None:
    text = read_text("tls_cert", cert)
    if CERT_MARK not in text:
        raise TlsConfigError(f"tls_cert {cert} holds no PEM certificate")


def check_key_file(key: Path) -> None:
    """The key must be private: refused when everyone may read it (a group may: Debian's
    ssl-cert group reads /etc/ssl/private)."""
    text = read_text("tls_key", key)
    mode = os.stat(key).st_mode
    if mode & stat.S_IROTH:
        raise TlsConfigError(
            f"tls_key {key} is readable by everyone (mode {stat.S_IMODE(mode):04o}): "
            "chmod 600 it (640 for a group)"
        )
    if KEY_MARK not in text:
        raise TlsConfigError(f"tls_key {key} holds no PEM private key")


def read_text(what: str, path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise TlsConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _encrypted_key(key: Path) -> Callable[[], str]:
    """A daemon has nobody to ask for a passphrase: an encrypted key is refused."""

    def refuse() -> str:
        raise TlsConfigError(f"tls_key {key} is encrypted: a daemon cannot ask for its passphrase")

    return refuse


# -- the channel -----------------------------------------------------------------------------


class TlsChannel:
    """The server side of TLS over a connected socket that the caller polls.

    `recv()` is called once the socket is readable or `pending()` is true; it returns everything
    the whole records received decrypt to, `None` while a record is still incomplete, `b""` at
    the end of the stream. Whatever arrived in one read is decrypted at once, and what the
    handshake's last read brought beyond the handshake is `pending()`, so no data waits inside
    the TLS layer unseen by a poll of the socket. `wire_in`/`wire_out` count the socket's bytes.
    """

    def __init__(self, sock: RawSocket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.wire_in = 0
        self.wire_out = 0
        self.ended = False
        self._stalled = False  # the bytes buffered are only part of a record

    def handshake(self, wait: Callable[[float], bool], timeout: float) -> None:
        """Complete the server handshake; `wait(seconds)` is True once the socket is readable.
        Raises ssl.SSLError (a bad handshake, plaintext on a TLS port), TimeoutError, or
        ConnectionError."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send_pending()
            except ssl.SSLError:
                with contextlib.suppress(OSError):
                    self._send_pending()  # the alert: the client learns why
                raise
            if not wait(deadline - time.monotonic()):
                raise TimeoutError("timed out")
            if not self._read_wire():
                raise ConnectionError("connection closed during the handshake")
        self._send_pending()

    def pending(self) -> bool:
        """Bytes wait inside the TLS layer that may decrypt without another read: the end of
        the handshake's read may have carried the client's first record too."""
        return self._incoming.pending > 0 and not self._stalled

    def recv(self) -> bytes | None:
        """Call when the socket is readable or `pending()`."""
        data = self._decrypt()
        if data is None:
            if not self._read_wire():
                self._incoming.write_eof()
            data = self._decrypt()
        return data

    def _decrypt(self) -> bytes | None:
        """Everything the buffered records hold; b"" at the end, None when a record is not whole."""
        chunks = []
        while not self.ended:
            try:
                chunk = self.tls.read(RECV_SIZE)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self.ended = True
                break
            if not chunk:
                self.ended = True
                break
            chunks.append(chunk)
        self._send_pending()  # what reading produced (TLS 1.3 key updates, alerts)
        self._stalled = self._incoming.pending > 0  # a partial record: wait for the socket
        if chunks:
            return b"".join(chunks)
        return b"" if self.ended else None

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self.tls.write(view)
            view = view[written:]
            self._send_pending()

    def close(self) -> None:
        """Send close_notify; the peer's answer is not waited for (RFC 8446 6.1 allows it)."""
        with contextlib.suppress(ssl.SSLError, OSError):
            self.tls.unwrap()
        with contextlib.suppress(OSError):
            self._send_pending()

    def describe(self) -> str:
        """`TLSv1.3 TLS_AES_256_GCM_SHA384`, for the session's log."""
        cipher = self.tls.cipher()
        return f"{self.tls.version() or '?'} {cipher[0] if cipher else '?'}"

    def _read_wire(self) -> bool:
        data = self.sock.recv(RECV_SIZE)
        if not data:
            return False
        self.wire_in += len(data)
        self._incoming.write(data)
        self._stalled = False
        return True

    def _send_pending(self) -> None:
        data = self._outgoing.read()
        if data:
            self.sock.sendall(data)
            self.wire_out += len(data)
