"""Unit tests for common/proxy.py: PROXY v1 and v2 headers parsed from bytes and read off real
socket pairs exactly (no byte of what follows is consumed), blocking and without blocking; the
accept loops' gate (start, refuse, expire); and fuzzing. End to end: tests/scale/."""

from __future__ import annotations

import ipaddress
import logging
import selectors
import socket
import struct
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.proxy import (
    V2_SIGNATURE,
    HeaderReader,
    ProxyError,
    ProxyGate,
    ProxyHeader,
    ProxyPolicy,
    header_size,
    parse_v1,
    parse_v2,
    read_header,
    trusted,
)


def v2(command: int, family: int, payload: bytes) -> bytes:
    return (
        V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(payload)) + payload
    )


def v2_tcp4(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"") -> bytes:
    packed = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return v2(0x1, 0x11, packed + tlvs)


def v2_tcp6(src: str, dst: str, sport: int, dport: int) -> bytes:
    packed = (
        socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + struct.pack("!HH", sport, dport)
    )
    return v2(0x1, 0x21, packed)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 143\r\n",
            ProxyHeader(1, ("192.0.2.7", 56324), ("198.51.100.1", 143)),
        ),
        (
            b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 110\r\n",
            ProxyHeader(1, ("2001:db8::7", 4000), ("2001:db8::1", 110)),
        ),
        (b"PROXY UNKNOWN\r\n", ProxyHeader(1)),
        (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", ProxyHeader(1)),
    ],
)
def test_v1_lines(line: bytes, expected: ProxyHeader) -> None:
    assert parse_v1(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 143\n",  # LF only
        b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n",  # a field short
        b"PROXY TCP4 192.0.2.700 198.51.100.1 1 2\r\n",
        b"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",  # family mismatch
        b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n",  # leading zero
        b"PROXY TCP4  192.0.2.7 198.51.100.1 1 2\r\n",  # two spaces
        b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2" + b" " * 80 + b"\r\n",  # over 107 bytes
        b"PROXY TCP4 \xff.0.2.7 198.51.100.1 1 2\r\n",
    ],
)
def test_v1_malformed(line: bytes) -> None:
    with pytest.raises(ProxyError):
        parse_v1(line)


def test_v2_addresses_local_and_skipped_tlvs() -> None:
    header = parse_v2(v2_tcp4("192.0.2.7", "198.51.100.1", 56324, 993, tlvs=b"\x04\x00\x01x"))
    assert header == ProxyHeader(2, ("192.0.2.7", 56324), ("198.51.100.1", 993))
    header = parse_v2(v2_tcp6("2001:db8::7", "::ffff:198.51.100.1", 1, 2))
    assert header == ProxyHeader(2, ("2001:db8::7", 1), ("198.51.100.1", 2))
    assert parse_v2(v2(0x0, 0x00, b"")) == ProxyHeader(2)  # LOCAL (a health check)
    assert parse_v2(v2(0x1, 0x31, b"\0" * 216)) == ProxyHeader(2)  # UNIX: the real peer
    assert ProxyHeader(2).client("203.0.113.9") == "203.0.113.9"
    assert parse_v2(v2_tcp4("192.0.2.7", "198.51.100.1", 1, 2)).client("x") == "192.0.2.7"


@pytest.mark.parametrize(
    "data",
    [
        v2(0x1, 0x11, b"\0" * 11),  # address block too short
        v2(0x2, 0x11, b"\0" * 12),  # unknown command
        V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\0" * 12,  # version 1 in a v2 header
        V2_SIGNATURE + b"\x21\x11\x10\x01" + b"\0" * 4097,  # announces 4097 bytes
        v2_tcp4("192.0.2.7", "198.51.100.1", 1, 2)[:-1],  # length does not match
    ],
    ids=range(5),
)
def test_v2_malformed(data: bytes) -> None:
    with pytest.raises(ProxyError):
        parse_v2(data)


def test_trusted_networks() -> None:
    nets = ["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"]
    assert trusted("127.0.0.1", nets) and trusted("10.9.8.7", nets)
    assert trusted("::ffff:10.1.1.1", nets) and trusted("2001:db8::5", nets)
    assert not trusted("127.0.0.2", nets) and not trusted("local", nets)
    assert not trusted("10.0.0.1", ["not a network"])


# -- off a socket: exactly the header, nothing after it ----------------------------------------


def pair() -> tuple[socket.socket, socket.socket]:
    server, client = socket.socketpair()
    return server, client


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 143\r\n",
        b"PROXY UNKNOWN\r\n",
        v2_tcp4("192.0.2.7", "198.51.100.1", 56324, 143, tlvs=b"\x01\x00\x02h2"),
        v2(0x0, 0x00, b""),
    ],
)
def test_read_takes_exactly_the_header(header: bytes) -> None:
    server, client = pair()
    with server, client:
        client.sendall(header + b"a LOGIN x y\r\n")
        result = read_header(server, 2.0)
        assert result.version in (1, 2)
        server.settimeout(2.0)
        assert server.recv(100) == b"a LOGIN x y\r\n"


def test_read_a_header_that_arrives_in_pieces() -> None:
    server, client = pair()
    header = v2_tcp6("2001:db8::7", "2001:db8::1", 7, 8)

    def drip() -> None:
        for byte in header:
            client.send(bytes([byte]))
            time.sleep(0.002)

    with server, client:
        sender = threading.Thread(target=drip)
        sender.start()
        assert read_header(server, 5.0).source == ("2001:db8::7", 7)
        sender.join()


@pytest.mark.parametrize(
    ("data", "close"),
    [
        (b"", False),  # silence: the deadline
        (b"PROXY TCP4 192.0.2.7", False),  # half a line, then silence
        (b"USER alice\r\nPASS secret\r\n", False),  # no header at all
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", True),  # EOF in the line
        (V2_SIGNATURE + b"\x21\x11\x00\x0c" + b"\0" * 4, True),  # EOF in the payload
        (b"PROXY " + b"x" * 200 + b"\r\n", False),  # no CRLF within 107 bytes
    ],
)
def test_read_refuses_missing_slow_or_broken_headers(data: bytes, close: bool) -> None:
    server, client = pair()
    with server, client:
        client.sendall(data)
        if close:
            client.shutdown(socket.SHUT_WR)
        with pytest.raises(ProxyError):
            read_header(server, 0.3)


# -- without blocking: the size of a header, the reader, the accept loops' gate ----------------


@pytest.mark.parametrize(
    ("seen", "size"),
    [
        (b"", None),
        (b"PRO", None),
        (b"PROXY TCP4 1.2.3.4", None),
        (b"PROXY UNKNOWN\r\nUSER x\r\n", 15),
        (b"\r\n\r\n\x00", None),
        (V2_SIGNATURE + b"\x21\x11", None),
        (V2_SIGNATURE + b"\x21\x11\x00\x0c", 28),
        (V2_SIGNATURE + b"\x20\x00\x00\x00" + b"* OK", 16),
    ],
)
def test_header_size(seen: bytes, size: int | None) -> None:
    assert header_size(seen) == size


@pytest.mark.parametrize(
    "seen",
    [
        b"USER",
        b"\x16\x03\x01",  # a TLS ClientHello
        b"PROXX",
        b"PROXY " + b"x" * 101,  # 107 bytes and no CRLF
        V2_SIGNATURE + b"\x11\x11\x00\x0c",  # version 1 in a v2 header
    ],
)
def test_header_size_refuses_what_is_no_header(seen: bytes) -> None:
    with pytest.raises(ProxyError):
        header_size(seen)


def test_reader_takes_pieces_without_blocking_and_nothing_after() -> None:
    server, client = pair()
    header = v2_tcp4("192.0.2.7", "198.51.100.1", 56324, 143, tlvs=b"\x04\x00\x01x")
    with server, client:
        server.setblocking(False)
        reader = HeaderReader(server)
        assert reader.feed() is None  # nothing yet: no wait
        for piece in (header[:3], header[3:14], header[14:20]):
            client.sendall(piece)
            assert reader.feed() is None
            # All of it is header and was taken: the socket is not left readable (no spin).
            with pytest.raises(BlockingIOError):
                server.recv(1, socket.MSG_PEEK)
        client.sendall(header[20:] + b"USER a\r\n")
        assert reader.feed() == ProxyHeader(2, ("192.0.2.7", 56324), ("198.51.100.1", 143))
        assert server.recv(100) == b"USER a\r\n"


def test_reader_v1_line_split_at_its_crlf() -> None:
    server, client = pair()
    with server, client:
        server.setblocking(False)
        reader = HeaderReader(server)
        client.sendall(b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r")
        assert reader.feed() is None
        client.sendall(b"\nrest")
        assert reader.feed() == ProxyHeader(1, ("192.0.2.7", 1), ("198.51.100.1", 2))
        assert server.recv(10) == b"rest"


class Started:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, str, int]] = []

    def __call__(
        self, sock: socket.socket, address: str, tls: bool, peer: str, header: ProxyHeader
    ) -> None:
        assert sock.getblocking(), "a session gets its socket back blocking"
        self.calls.append((address, tls, peer, header.version))
        sock.close()


def test_gate_starts_refuses_and_expires(caplog: pytest.LogCaptureFixture) -> None:
    policy = ProxyPolicy(frozenset({"tls_port"}), (ipaddress.ip_network("127.0.0.0/8"),), 30.0)
    assert policy.expects(True) and not policy.expects(False)
    selector = selectors.DefaultSelector()
    started = Started()
    gate = ProxyGate(selector, logging.getLogger("gate"), started)
    caplog.set_level(logging.INFO, "gate")
    # A whole header waiting at accept: started at once, under the client's address.
    server, client = pair()
    client.sendall(b"PROXY TCP6 2001:db8::7 2001:db8::1 9 993\r\n")
    gate.admit(server, "127.0.0.1", True, policy)
    assert started.calls == [("2001:db8::7", True, "127.0.0.1", 1)] and len(gate) == 0
    # An untrusted peer: closed, one line, nothing read.
    server, untrusted = pair()
    gate.admit(server, "192.0.2.1", True, policy)
    assert untrusted.recv(10) == b"" and "refused 192.0.2.1: not a trusted proxy" in caplog.text
    # Half a header: it waits in the selector until the rest comes.
    server, slow = pair()
    gate.admit(server, "127.0.0.2", False, policy)
    assert len(gate) == 1 and 0 < (gate.timeout() or 0) <= 30
    slow.sendall(V2_SIGNATURE + b"\x20\x00\x00\x00")
    for key, _ in selector.select(5):
        gate.readable(key.data)
    assert started.calls[-1] == ("127.0.0.2", False, "127.0.0.2", 2) and len(gate) == 0
    # No header in time: dropped by expire(), with one line.
    expiring = ProxyPolicy(policy.listeners, policy.networks, 0.0)
    server, silent = pair()
    gate.admit(server, "127.0.0.3", True, expiring)
    gate.expire()
    assert len(gate) == 0 and silent.recv(10) == b""
    assert "refused 127.0.0.3: PROXY header not received in time" in caplog.text
    # Junk: dropped at once.
    server, junk = pair()
    junk.sendall(b"GET / HTTP/1.0\r\n")
    gate.admit(server, "127.0.0.4", True, policy)
    assert len(gate) == 0 and "refused 127.0.0.4: no PROXY header" in caplog.text
    for sock in (client, untrusted, slow, silent, junk):
        sock.close()
    selector.close()


# -- fuzzing: nothing but ProxyError ever escapes ----------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_v1_fuzz(data: bytes) -> None:
    line = b"PROXY " + data
    try:
        header = parse_v1(line)
    except ProxyError:
        return
    assert header.version == 1


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=80))
def test_v2_fuzz(command: int, family: int, payload: bytes) -> None:
    data = V2_SIGNATURE + bytes([command, family]) + struct.pack("!H", len(payload)) + payload
    try:
        header = parse_v2(data)
    except ProxyError:
        return
    assert header.version == 2
