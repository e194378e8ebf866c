"""The PROXY protocol, versions 1 and 2 (HAProxy's specification, proxy-protocol.txt): the header a
load balancer sends first on a connection, naming the real client.

`read_header` takes exactly the header off a freshly accepted socket and no byte more (the
protocol after it is the mail protocol, and the server speaks first), within a deadline;
`parse_v1`/`parse_v2` are pure functions from bytes to a `ProxyHeader` or a `ProxyError`. Who may
send a header at all (`proxy_trusted`) is the caller's decision: a header is believed only from a
trusted peer, and a PROXY listener refuses a connection without one.

Deliberate limits: a v1 line is at most 107 bytes (the specification's maximum); a v2 header at
most 16 + MAX_V2_PAYLOAD bytes (addresses and TLVs; the TLVs are skipped, none is needed here).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16
MAX_V2_PAYLOAD = 4096
PEEK_SIZE = 256
# v2 family/transport byte: the TCP forms we use, and the address block each needs.
V2_TCP4, V2_TCP6 = 0x11, 0x21
V2_ADDRESS_SIZES = {V2_TCP4: 12, V2_TCP6: 36}


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
    address = ipaddress.ip_address(raw)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


# -- reading off a socket ----------------------------------------------------------------------


def read_header(sock: socket.socket, timeout: float) -> ProxyHeader:
    """Take the PROXY header off `sock` (blocking), and nothing after it; ProxyError when it is
    missing, malformed or not complete within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    head = _peek(sock, deadline, _decidable)
    if head.startswith(V2_SIGNATURE):
        fixed = _peek(sock, deadline, lambda seen: len(seen) >= V2_FIXED)[:V2_FIXED]
        return parse_v2(_take(sock, V2_FIXED + v2_length(fixed), deadline))
    if head.startswith(V1_PREFIX):
        seen = _peek(sock, deadline, lambda data: b"\r\n" in data or len(data) >= V1_MAX)
        end = seen.find(b"\r\n")
        if end < 0:
            raise ProxyError("malformed PROXY v1 line")
        return parse_v1(_take(sock, end + 2, deadline))
    raise ProxyError("no PROXY header")


def _decidable(seen: bytes) -> bool:
    """Enough bytes to tell a v1 line, a v2 header, or neither."""
    start = seen[: len(V2_SIGNATURE)]
    could_be = V2_SIGNATURE.startswith(start) or V1_PREFIX.startswith(start[: len(V1_PREFIX)])
    return len(seen) >= len(V2_SIGNATURE) or not could_be


def _peek(sock: socket.socket, deadline: float, enough: Callable[[bytes], bool]) -> bytes:
    """What is waiting on the socket, unread, once `enough(seen)` holds."""
    pause = 0.001
    while True:
        _wait_timeout(sock, deadline)
        try:
            seen = sock.recv(PEEK_SIZE, socket.MSG_PEEK)
        except (TimeoutError, BlockingIOError):
            raise ProxyError("PROXY header not received in time") from None
        except OSError as exc:
            raise ProxyError(f"connection failed before the PROXY header: {exc}") from None
        if not seen:
            raise ProxyError("connection closed before the PROXY header")
        if enough(seen) or len(seen) >= PEEK_SIZE:
            return seen
        # A header in pieces: a peek returns at once while anything waits, so pause between
        # looks instead of spinning on what is already there.
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _take(sock: socket.socket, size: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        _wait_timeout(sock, deadline)
        try:
            chunk = sock.recv(remaining)
        except (TimeoutError, BlockingIOError):
            raise ProxyError("PROXY header not received in time") from None
        except OSError as exc:
            raise ProxyError(f"connection failed in the PROXY header: {exc}") from None
        if not chunk:
            raise ProxyError("connection closed in the PROXY header")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _wait_timeout(sock: socket.socket, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ProxyError("PROXY header not received in time")
    sock.settimeout(left)


# -- who may send one --------------------------------------------------------------------------


def trusted(address: str, networks: list[str]) -> bool:
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
