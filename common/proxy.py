"""The PROXY protocol, versions 1 and 2 (HAProxy's specification, proxy-protocol.txt): the header a
load balancer sends first on a connection, naming the real client.

`parse_v1`/`parse_v2` are pure functions from bytes to a `ProxyHeader` or a `ProxyError`, and
`header_size` says how much of a socket's first bytes is the header. `HeaderReader` takes exactly
the header off a freshly accepted socket, and no byte more (the protocol after it is the mail
protocol, and the server speaks first), without ever blocking; `read_header` does the same
blocking, within a deadline. `ProxyGate` is where the accept loops of both process models keep
the connections of PROXY listeners until their header is complete: only then is the real client
known, so only then is a session counted against the limits and started.

Who may send a header at all is the configuration's (`ProxyPolicy`): `proxy_protocol` names the
listeners that expect one, `proxy_trusted` the proxies whose headers are believed. A connection on
such a listener from any other peer, with a malformed header, or with none in time, is closed
with one log line.

Deliberate limits: a v1 line is at most 107 bytes (the specification's maximum); a v2 header at
most 16 + MAX_V2_PAYLOAD bytes (addresses and TLVs; the TLVs are skipped, none is needed here).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import select
import selectors
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16
MAX_V2_PAYLOAD = 4096
MAX_HEADER = V2_FIXED + MAX_V2_PAYLOAD
# v2 family/transport byte: the TCP forms we use, and the address block each needs.
V2_TCP4, V2_TCP6 = 0x11, 0x21
V2_ADDRESS_SIZES = {V2_TCP4: 12, V2_TCP6: 36}
IPV4_MAPPED = bytes(10) + b"\xff\xff"
# recv flags as plain ints (or-ing the enum members costs more than the call).
PEEK = int(socket.MSG_PEEK | socket.MSG_DONTWAIT)
TAKE = int(socket.MSG_DONTWAIT)


class ProxyError(Exception):
    """The connection's PROXY header is missing, malformed or too slow; the text is for the log."""


@dataclass(frozen=True)
class ProxyHeader:
    """What a header said. `source` is None for v1 UNKNOWN and v2 LOCAL (a health check by the
    proxy itself): the connection's own peer is the client then."""

    version: int
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None

    def client(self, peer: str) -> str:
        """The address to use for the client: the header's source, else the real peer."""
        return self.source[0] if self.source is not None else peer


# -- parsing (pure) ----------------------------------------------------------------------------


def parse_v1(line: bytes) -> ProxyHeader:
    """`PROXY TCP4|TCP6 src dst sport dport\\r\\n` or `PROXY UNKNOWN...\\r\\n`."""
    if len(line) > V1_MAX or not line.startswith(V1_PREFIX) or not line.endswith(b"\r\n"):
        raise ProxyError("malformed PROXY v1 line")
    try:
        words = line[:-2].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ProxyError("PROXY v1 line is not ASCII") from None
    if len(words) >= 2 and words[1] == "UNKNOWN":
        return ProxyHeader(1)
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise ProxyError("malformed PROXY v1 line")
    version = 4 if words[1] == "TCP4" else 6
    source = (_address(words[2], version), _port(words[4]))
    destination = (_address(words[3], version), _port(words[5]))
    return ProxyHeader(1, source, destination)


def _address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyError(f"bad address in PROXY header: {text[:40]!r}") from None
    if address.version != version:
        raise ProxyError("PROXY address family does not match its protocol")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)  # as common/server.client_address shows one
    return str(address)


def _port(text: str) -> int:
    # Decimal without leading zeros, 0-65535 (the specification's form, strictly).
    if not (text.isascii() and text.isdigit()) or (len(text) > 1 and text[0] == "0"):
        raise ProxyError("bad port in PROXY header")
    port = int(text)
    if port > 65535:
        raise ProxyError("bad port in PROXY header")
    return port


def v2_length(fixed: bytes) -> int:
    """The payload length announced by a v2 header's first 16 bytes."""
    if len(fixed) < V2_FIXED or not fixed.startswith(V2_SIGNATURE):
        raise ProxyError("malformed PROXY v2 header")
    if fixed[12] >> 4 != 2:
        raise ProxyError("unsupported PROXY v2 version")
    length: int = struct.unpack("!H", fixed[14:16])[0]
    if length > MAX_V2_PAYLOAD:
        raise ProxyError("PROXY v2 header too long")
    return length


def parse_v2(data: bytes) -> ProxyHeader:
    """A whole v2 header: signature, version/command, family/transport, length, payload."""
    length = v2_length(data)
    if len(data) != V2_FIXED + length:
        raise ProxyError("PROXY v2 header length does not match")
    command, family = data[12] & 0x0F, data[13]
    if command == 0x0:  # LOCAL: the proxy's own connection (a health check)
        return ProxyHeader(2)
    if command != 0x1:
        raise ProxyError("unknown PROXY v2 command")
    size = V2_ADDRESS_SIZES.get(family)
    if size is None:
        # UNSPEC, UNIX or UDP: nothing usable here; the specification says to use the real
        # connection's addresses then.
        return ProxyHeader(2)
    if length < size:
        raise ProxyError("PROXY v2 address block too short")
    payload = data[V2_FIXED : V2_FIXED + size]
    if family == V2_TCP4:
        src, dst, sport, dport = struct.unpack("!4s4sHH", payload)
    else:
        src, dst, sport, dport = struct.unpack("!16s16sHH", payload)
    return ProxyHeader(2, (_packed(src), sport), (_packed(dst), dport))


def _packed(raw: bytes) -> str:
    # inet_ntop rather than ipaddress: this runs for every proxied connection, in the loop
    # that accepts them.
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if raw[:12] == IPV4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return socket.inet_ntop(socket.AF_INET6, raw)


# -- reading off a socket ----------------------------------------------------------------------


def header_size(seen: bytes) -> int | None:
    """The size of the header `seen` starts with, None while the bytes so far cannot tell;
    ProxyError when they cannot start a header. Pure: what decides how much to take."""
    if seen.startswith(V2_SIGNATURE):
        return V2_FIXED + v2_length(seen[:V2_FIXED]) if len(seen) >= V2_FIXED else None
    if len(seen) < len(V2_SIGNATURE) and V2_SIGNATURE.startswith(seen):
        return None
    if seen.startswith(V1_PREFIX):
        end = seen.find(b"\r\n", 0, V1_MAX)
        if end >= 0:
            return end + 2
        if len(seen) >= V1_MAX:
            raise ProxyError("malformed PROXY v1 line")
        return None
    if V1_PREFIX.startswith(seen):
        return None
    raise ProxyError("no PROXY header")


def parse(header: bytes) -> ProxyHeader:
    """A whole header of either version."""
    return parse_v2(header) if header.startswith(V2_SIGNATURE) else parse_v1(header)


class HeaderReader:
    """Takes one connection's header off its socket without ever blocking and without taking
    a byte past it: `feed()` whenever the socket is readable, until it returns the header.

    It looks (MSG_PEEK) before it takes, and takes everything it saw while the header's end is
    not in sight (all of it is header then), so a readiness loop never spins on bytes left
    waiting; once the size is known it takes exactly the rest."""

    def __init__(self, sock: socket.socket) -> None:
        # Blocking or non-blocking, never in timeout mode: Python would wait in poll() before
        # each recv; MSG_DONTWAIT keeps a blocking one from waiting.
        self.sock = sock
        self.got = b""

    def feed(self) -> ProxyHeader | None:
        """The header once complete; None while more must arrive; ProxyError when it is
        missing, malformed, or the connection ended first."""
        seen = self._recv(MAX_HEADER - len(self.got), PEEK)
        if seen is None:
            return None
        if not seen:
            where = "in" if self.got else "before"
            raise ProxyError(f"connection closed {where} the PROXY header")
        size = header_size(self.got + seen)
        wanted = len(seen) if size is None else min(len(seen), size - len(self.got))
        while wanted > 0:
            # What was just seen is queued: these reads return at once.
            chunk = self._recv(wanted, TAKE)
            if not chunk:
                raise ProxyError("connection failed in the PROXY header")
            self.got += chunk
            wanted -= len(chunk)
        return parse(self.got) if size is not None and len(self.got) == size else None

    def _recv(self, size: int, flags: int) -> bytes | None:
        try:
            return self.sock.recv(size, flags)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            raise ProxyError(f"connection failed before the PROXY header: {exc}") from None


def read_header(sock: socket.socket, timeout: float) -> ProxyHeader:
    """Take the PROXY header off `sock`, and nothing after it, waiting at most `timeout`
    seconds; ProxyError when it is missing, malformed or not complete in time."""
    deadline = time.monotonic() + timeout
    reader = HeaderReader(sock)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    mode = sock.gettimeout()
    sock.setblocking(False)
    try:
        while True:
            header = reader.feed()
            if header is not None:
                return header
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                raise ProxyError("PROXY header not received in time")
    finally:
        sock.settimeout(mode)


# -- who may send one --------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LISTENERS = ("port", "tls_port")  # what `proxy_protocol` may name


def trusted(address: str, networks: Iterable[Network | str]) -> bool:
    """Whether `address` lies in one of `networks` (addresses or CIDR networks, v4 or v6)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for network in networks:
        try:
            if ip in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            continue
    return False


@dataclass(frozen=True)
class ProxyPolicy:
    """Which listeners expect a header (`proxy_protocol`: the plain `port`, the `tls_port`),
    whose headers are believed (`proxy_trusted`) and how long one may take (`proxy_timeout`).
    Part of the master's limits, so HUP swaps it whole."""

    listeners: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()
    timeout: float = 5.0

    def expects(self, tls: bool) -> bool:
        return ("tls_port" if tls else "port") in self.listeners

    def trusts(self, peer: str) -> bool:
        return _trusted(peer, self.networks)


@functools.lru_cache(maxsize=1024)
def _trusted(peer: str, networks: tuple[Network, ...]) -> bool:
    """`trusted`, remembered: the peers of a PROXY listener are a site's few balancers."""
    return trusted(peer, networks)


# -- the accept loops' gate ----------------------------------------------------------------------

MAX_WAITING = 1024  # connections one accepting process lets wait for their header at once
# conn (blocking), the client's address, accepted on a TLS listener, the proxy's address, header
Start = Callable[[socket.socket, str, bool, str, ProxyHeader], None]


@dataclass
class Waiting:
    """A connection accepted on a PROXY listener whose header is not complete yet."""

    sock: socket.socket
    peer: str
    tls: bool
    deadline: float
    reader: HeaderReader


class ProxyGate:
    """Connections of PROXY listeners wait here for their header, in the accept loop's own
    selector (the fork model's master, a pool worker's main thread): the loop never blocks on
    a slow or silent proxy, and the session starts, and is counted against the limits, under
    the real client's address. A peer outside `proxy_trusted`, a malformed header, none, or
    one not complete within `proxy_timeout` closes the connection with one log line; the
    client never gets a byte (on a TLS listener it expects a handshake, and from a proxy that
    is not trusted nothing is believed)."""

    def __init__(self, selector: selectors.BaseSelector, log: logging.Logger, start: Start):
        self.selector = selector
        self.log = log
        self.start = start
        # Insertion order is deadline order (one timeout for all, until a HUP changes it).
        self.waiting: dict[int, Waiting] = {}

    def __len__(self) -> int:
        return len(self.waiting)

    def admit(self, sock: socket.socket, peer: str, tls: bool, policy: ProxyPolicy) -> None:
        """A connection just accepted (a blocking socket, as accept gives it) on a listener
        that expects a header."""
        if not policy.trusts(peer):
            self._refuse(sock, peer, "not a trusted proxy (proxy_trusted)")
            return
        reader = HeaderReader(sock)
        # A proxy sends the header with its connect: most often it is here already, and the
        # session starts without a turn through the selector.
        try:
            header = reader.feed()
        except ProxyError as exc:
            self._refuse(sock, peer, str(exc))
            return
        if header is not None:
            self.start(sock, header.client(peer), tls, peer, header)
            return
        if len(self.waiting) >= MAX_WAITING:
            self._refuse(sock, peer, "too many connections waiting for a PROXY header")
            return
        waiting = Waiting(sock, peer, tls, time.monotonic() + policy.timeout, reader)
        self.waiting[sock.fileno()] = waiting
        self.selector.register(sock, selectors.EVENT_READ, waiting)

    def readable(self, waiting: Waiting) -> None:
        try:
            header = waiting.reader.feed()
        except ProxyError as exc:
            self._drop(waiting, str(exc))
            return
        if header is None:
            return
        self._forget(waiting)
        self.start(waiting.sock, header.client(waiting.peer), waiting.tls, waiting.peer, header)

    def expire(self) -> None:
        now = time.monotonic()
        for waiting in list(self.waiting.values()):
            if waiting.deadline > now:
                break
            self._drop(waiting, "PROXY header not received in time")

    def timeout(self) -> float | None:
        """Seconds until the next deadline (None: nobody waits)."""
        for waiting in self.waiting.values():
            return max(0.0, waiting.deadline - time.monotonic())
        return None

    def close_all(self) -> None:
        for waiting in list(self.waiting.values()):
            self._forget(waiting)
            waiting.sock.close()

    def drop_inherited(self) -> None:
        """In a child forked from the loop: close its copies of the waiting connections (the
        loop goes on with them; a copy held here would keep one open after the loop closes
        it). The selector is the loop's, and not touched."""
        for waiting in self.waiting.values():
            waiting.sock.close()
        self.waiting.clear()

    def _drop(self, waiting: Waiting, why: str) -> None:
        self._forget(waiting)
        self._refuse(waiting.sock, waiting.peer, why)

    def _forget(self, waiting: Waiting) -> None:
        self.waiting.pop(waiting.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(waiting.sock)

    def _refuse(self, sock: socket.socket, peer: str, why: str) -> None:
        self.log.warning("refused %s: %s", peer, why)
        sock.close()
