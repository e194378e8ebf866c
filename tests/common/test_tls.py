"""common/tls.py and LineIO.start_tls: the server context's checks, and the TLS switch of a
connection (discarded pipelined input, wire byte counts, compression on top, records that all
arrive in one read, handshake failures), over socket pairs with Python's ssl as the client."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
import subprocess
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.lineio import HandshakeFailed, Interrupted, LineIO
from common.tls import TlsConfigError, server_context
from support.tls import Pki

TIMEOUT = 10.0


# -- the context ---------------------------------------------------------------------------------


def test_context_is_tls_1_2_and_1_3_only_without_compression(pki: Pki) -> None:
    context = server_context(pki.cert, pki.key)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.maximum_version is ssl.TLSVersion.TLSv1_3
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION


def copy_key(pki: Pki, tmp_path: Path, mode: int, source: Path | None = None) -> Path:
    key = tmp_path / "key.pem"
    key.write_bytes((source or pki.key).read_bytes())
    key.chmod(mode)
    return key


def test_a_group_may_read_the_key(pki: Pki, tmp_path: Path) -> None:
    server_context(pki.cert, copy_key(pki, tmp_path, 0o640))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("world-readable key", "is readable by everyone (mode 0644): chmod 600 it"),
        ("key of another certificate", "is not the key of tls_cert"),
        ("missing certificate", "cannot read tls_cert"),
        ("missing key", "cannot read tls_key"),
        ("certificate as key", "holds no PEM private key"),
        ("key as certificate", "holds no PEM certificate"),
        ("encrypted key", "is encrypted: a daemon cannot ask for its passphrase"),
    ],
)
def test_unusable_files_are_refused_in_one_line(
    pki: Pki, tmp_path: Path, case: str, message: str
) -> None:
    cert, key = pki.cert, pki.key
    if case == "world-readable key":
        key = copy_key(pki, tmp_path, 0o644)
    elif case == "key of another certificate":
        key = pki.other_key
    elif case == "missing certificate":
        cert = tmp_path / "absent.pem"
    elif case == "missing key":
        key = tmp_path / "absent.pem"
    elif case == "certificate as key":
        key = copy_key(pki, tmp_path, 0o600, pki.cert)
    elif case == "key as certificate":
        cert = pki.key
    elif case == "encrypted key":
        key = tmp_path / "encrypted.pem"
        subprocess.run(
            ["openssl", "pkey", "-in", pki.key, "-aes256", "-passout", "pass:x", "-out", key],
            check=True,
            capture_output=True,
            timeout=30,
        )
        key.chmod(0o600)
    with pytest.raises(TlsConfigError) as raised:
        server_context(cert, key)
    text = str(raised.value)
    assert message in text and "\n" not in text


# -- the connection ------------------------------------------------------------------------------


class Relay:
    """Forwards bytes between the client and the server's socket, counting each way: what
    crossed the wire, to compare with LineIO's counts."""

    def __init__(self) -> None:
        self.client, self._client_end = socket.socketpair()
        self.server, self._server_end = socket.socketpair()
        self.to_server = 0
        self.to_client = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pairs = {self._client_end: self._server_end, self._server_end: self._client_end}
        while pairs:
            readable, _, _ = select.select(list(pairs), [], [], TIMEOUT)
            if not readable:
                return
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    with contextlib.suppress(OSError):
                        pairs[sock].shutdown(socket.SHUT_WR)
                    pairs.pop(sock)
                    continue
                if sock is self._client_end:
                    self.to_server += len(data)
                else:
                    self.to_client += len(data)
                with contextlib.suppress(OSError):  # the other side may be gone already
                    pairs[sock].sendall(data)

    def join(self) -> None:
        self._thread.join(TIMEOUT)


class Client(threading.Thread):
    """The client side, run in a thread while the test drives the server's LineIO."""

    def __init__(self, script: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.script = script
        self.result: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.script()
        except BaseException as exc:
            self.error = exc

    def outcome(self) -> object:
        self.join(TIMEOUT)
        assert not self.is_alive(), "the client did not finish"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def relay() -> Iterator[Relay]:
    pair = Relay()
    yield pair
    for sock in (pair.client, pair.server):
        sock.close()


def client_tls(pki: Pki, sock: socket.socket) -> ssl.SSLSocket:
    sock.settimeout(TIMEOUT)
    return pki.client_context().wrap_socket(sock, server_hostname="localhost")


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def test_starttls_discards_what_was_pipelined_and_counts_wire_bytes(pki: Pki, relay: Relay) -> None:
    io = LineIO(relay.server, 1000, TIMEOUT)
    context = server_context(pki.cert, pki.key)

    def client() -> list[bytes]:
        relay.client.sendall(b"a STARTTLS\r\nb LOGIN injected command\r\n")
        assert read_line(relay.client) == b"a OK go\r\n"
        tls = client_tls(pki, relay.client)
        tls.sendall(b"c NOOP\r\n")
        answer = read_line(tls)
        tls.close()
        return [answer]

    thread = Client(client)
    thread.start()
    assert io.readline() == b"a STARTTLS"
    io.write(b"a OK go\r\n")
    description = io.start_tls(context, TIMEOUT)
    assert description.startswith("TLSv1.")
    assert io.tls
    assert io.readline() == b"c NOOP"  # never "b LOGIN ...": it came before TLS
    io.write(b"c OK over TLS\r\n")
    io.flush()
    assert thread.outcome() == [b"c OK over TLS\r\n"]
    io.close()
    relay.join()
    assert io.bytes_in == relay.to_server
    assert io.bytes_out == relay.to_client


def test_a_command_sent_with_the_last_handshake_bytes_is_not_left_waiting(pki: Pki) -> None:
    """The client's Finished and its first command in one segment: the command is read from
    the TLS layer's buffer at once, not after a poll of an empty socket (which would time out)."""
    server, client = socket.socketpair()
    io = LineIO(server, 1000, 2.0)

    def eager_client() -> bytes:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = pki.client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
        client.settimeout(TIMEOUT)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                client.sendall(outgoing.read())
                incoming.write(client.recv(65536))
        tls.write(b"c NOOP\r\n")
        client.sendall(outgoing.read())  # Finished and the command together
        return b"sent"

    thread = Client(eager_client)
    thread.start()
    io.start_tls(server_context(pki.cert, pki.key), TIMEOUT)
    assert io.readline() == b"c NOOP"
    assert thread.outcome() == b"sent"
    io.close()
    client.close()


def test_every_record_of_one_read_is_delivered(pki: Pki) -> None:
    """Many TLS records arrive in one segment: none may wait unseen inside the TLS layer while
    the server polls an empty socket."""
    server, client = socket.socketpair()
    io = LineIO(server, 100_000, TIMEOUT)
    lines = [b"line %05d " % n + b"x" * 300 for n in range(400)]  # about 120 KiB: many records

    def run_client() -> bytes:
        tls = client_tls(pki, client)
        tls.sendall(b"".join(line + b"\r\n" for line in lines))
        answer = read_line(tls)
        tls.close()
        return answer

    thread = Client(run_client)
    thread.start()
    io.start_tls(server_context(pki.cert, pki.key), TIMEOUT)
    received = [io.readline() for _ in lines]
    assert received == lines
    assert not io.has_buffered_input()
    io.write(b"done\r\n")
    io.flush()
    assert thread.outcome() == b"done\r\n"
    io.close()
    client.close()


def test_compression_works_on_top_of_tls(pki: Pki, relay: Relay) -> None:
    io = LineIO(relay.server, 1000, TIMEOUT)

    def run_client() -> bytes:
        tls = client_tls(pki, relay.client)
        deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        inflate = zlib.decompressobj(-15)
        tls.sendall(deflate.compress(b"x COMPRESSED\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH))
        data = b""
        while not data.endswith(b"\r\n"):
            data += inflate.decompress(tls.recv(4096))
        tls.close()
        return data

    thread = Client(run_client)
    thread.start()
    io.start_tls(server_context(pki.cert, pki.key), TIMEOUT)
    io.start_compression()
    assert io.readline() == b"x COMPRESSED"
    io.write(b"x OK " + b"z" * 5000 + b"\r\n")
    io.flush()
    assert thread.outcome() == b"x OK " + b"z" * 5000 + b"\r\n"
    io.close()
    relay.join()
    assert io.bytes_out == relay.to_client
    assert io.bytes_in == relay.to_server


def test_plaintext_is_a_failed_handshake(pki: Pki) -> None:
    server, client = socket.socketpair()
    io = LineIO(server, 1000, TIMEOUT)
    client.sendall(b"a LOGIN alice secret\r\n")
    with pytest.raises(HandshakeFailed) as failed:
        io.start_tls(server_context(pki.cert, pki.key), TIMEOUT)
    assert str(failed.value) in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNEXPECTED_MESSAGE")
    io.close()
    client.close()


def test_tls_1_1_is_refused(pki: Pki) -> None:
    server, client = socket.socketpair()
    io = LineIO(server, 1000, TIMEOUT)

    def old_client() -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        client.settimeout(TIMEOUT)
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(client)

    thread = Client(old_client)
    thread.start()
    with pytest.raises(HandshakeFailed) as failed:
        io.start_tls(server_context(pki.cert, pki.key), TIMEOUT)
    assert str(failed.value) == "UNSUPPORTED_PROTOCOL"
    thread.outcome()
    io.close()
    client.close()


def test_a_silent_client_times_out(pki: Pki) -> None:
    server, client = socket.socketpair()
    io = LineIO(server, 1000, TIMEOUT)
    with pytest.raises(HandshakeFailed, match="timed out"):
        io.start_tls(server_context(pki.cert, pki.key), 0.2)
    io.close()
    client.close()


def test_term_interrupts_a_handshake(pki: Pki) -> None:
    server, client = socket.socketpair()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    io = LineIO(server, 1000, TIMEOUT, interrupt_fd=wake_r)
    os.write(wake_w, b"\x0f")
    with pytest.raises(Interrupted):
        io.start_tls(server_context(pki.cert, pki.key), TIMEOUT)
    io.close()
    client.close()
    os.close(wake_r)
    os.close(wake_w)


def test_tls_starts_only_once_and_never_under_compression(pki: Pki) -> None:
    server, client = socket.socketpair()
    io = LineIO(server, 1000, TIMEOUT)
    io.start_compression()
    with pytest.raises(RuntimeError):
        io.start_tls(server_context(pki.cert, pki.key), TIMEOUT)
    io.close()
    client.close()
