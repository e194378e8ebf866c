"""PROXY protocol headers as a load balancer sends them (HAProxy's proxy-protocol.txt), built
independently of common/proxy.py, and connections that start with one."""

from __future__ import annotations

import ipaddress
import socket
import struct

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(source: str, port: int = 40000, destination: str | None = None, dport: int = 110) -> bytes:
    six = ipaddress.ip_address(source).version == 6
    destination = destination or ("::1" if six else "127.0.0.1")
    family = "TCP6" if six else "TCP4"
    return f"PROXY {family} {source} {destination} {port} {dport}\r\n".encode()


def v2(
    source: str,
    port: int = 40000,
    destination: str | None = None,
    dport: int = 110,
    tlvs: bytes = b"",
) -> bytes:
    """A PROXY (command 1) header over TCP, with optional TLVs (which servers skip)."""
    src = ipaddress.ip_address(source)
    destination = destination or ("::1" if src.version == 6 else "127.0.0.1")
    dst = ipaddress.ip_address(destination)
    family = 0x21 if src.version == 6 else 0x11
    payload = src.packed + dst.packed + struct.pack("!HH", port, dport) + tlvs
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(payload)) + payload


def v2_local() -> bytes:
    """LOCAL: the proxy's own connection (a health check); no addresses."""
    return V2_SIGNATURE + b"\x20\x00\x00\x00"


def connect(
    port: int,
    header: bytes,
    source: str | None = None,
    host: str = "127.0.0.1",
    timeout: float = 10.0,
) -> socket.socket:
    """A connection from `source` (a loopback address, as the proxy) that sends `header`."""
    sock = socket.create_connection(
        (host, port), timeout=timeout, source_address=(source, 0) if source else None
    )
    if header:
        sock.sendall(header)
    return sock
