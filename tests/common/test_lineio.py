"""common/lineio.py without a daemon: the send and read bounds of a session's socket."""

from __future__ import annotations

import socket
import time

import pytest

from common.lineio import ConnectionClosed, LineIO, SessionTimeout


def test_a_send_to_a_client_that_reads_nothing_fails_after_the_timeout() -> None:
    """The kernel bounds each blocking send (SO_SNDTIMEO): the session ends instead of hanging
    on a client that stopped reading, as Python's socket timeout did before."""
    server, client = socket.socketpair()
    try:
        io = LineIO(server, 1000, 0.3)
        assert server.gettimeout() is None  # no poll() of Python's before every call
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            for _ in range(10_000):  # far more than both socket buffers hold
                io.write(b"x" * 65536)
        assert time.monotonic() - started < 10
    finally:
        server.close()
        client.close()


def test_a_line_that_does_not_come_times_out_and_one_that_does_is_read() -> None:
    server, client = socket.socketpair()
    try:
        io = LineIO(server, 1000, 0.2)
        with pytest.raises(SessionTimeout):
            io.readline()
        client.sendall(b"a NOOP\n")
        assert io.readline() == b"a NOOP"
        io.write(b"a OK\r\n")
        io.flush()
        assert client.recv(100) == b"a OK\r\n"
    finally:
        server.close()
        client.close()
