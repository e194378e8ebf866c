"""Stats events: the client every daemon uses to tell `mailstatd` what happened.

The package holds the stats side of the suite (DESIGN.md "Stats collector"): this module is the
client and nothing else, so the master and the sessions import no part of the collector;
`collector.py` holds the figures, `query.py` asks the running collector for them (msmpd,
`mailstatd --dump`) and `mailstatd.py` is the collector program.

Events are one JSON object per Unix datagram, sent non-blocking to the collector's socket. Nobody
waits on stats or sees its errors: when the collector is down or its queue is full, the event is
dropped and the session goes on (DESIGN.md "Stats collector"). A client that found no collector
listening drops its events without trying to send them until a new socket appears at the path
(a collector started) or ABSENT_RETRY seconds have passed: a failed send cost a pool session
more than all its other events together (bench/run_imap.sh, no mailstatd), and a look at the
path costs a system call without an exception.

Events (field `e`):
  open   proto pid [sid] addr       master, at fork (pool model: the worker, at accept)
  close  proto pid [sid] [in out]   master, when it reaps the child (also after SIGKILL);
                                    pool model: the worker at a session's end, with its sid
                                    and the session's bytes (one datagram, not a bytes event)
  login  proto pid [sid] user addr ok   the session, after each login attempt
  bytes  proto pid in out           a forked session, at its end

A session is (proto, pid, sid). In the fork model a process is one session and `sid` is left out
(0). In the pool model a worker serves many sessions, each with its own session number as `sid`;
a `close` without `sid` ends every session of that pid, which is how the master reports a dead
worker (or a reaped child) whatever its sessions were.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

ABSENT_RETRY = 5.0  # seconds a client without a collector waits before trying the same socket
# Nobody listens: the socket file is missing, or left by a collector that is gone.
_ABSENT = (errno.ENOENT, errno.ECONNREFUSED)


def encode(event: dict[str, Any]) -> bytes:
    """The event as compact JSON. Its values are strings, numbers and booleans only, written
    here directly: json's encoder builds itself anew for each call and cost more than the
    send."""
    parts = []
    for key, value in event.items():
        if isinstance(value, str):
            text = encode_basestring_ascii(value)
        elif isinstance(value, bool) or value is None:
            text = {True: "true", False: "false", None: "null"}[value]
        elif isinstance(value, float):
            text = repr(value)
        else:
            text = str(int(value))
        parts.append(f'"{key}":{text}')
    return ("{" + ",".join(parts) + "}").encode()


class StatsClient:
    """Fire-and-forget sender of stats events."""

    def __init__(self, path: Path | None) -> None:
        self.path = str(path) if path else None
        self._sock: socket.socket | None = None
        self._absent = False  # the last send found nobody listening
        self._absent_file: tuple[int, int] | None = None  # what was at the path then
        self._retry_at = 0.0
        # A pool session's bytes, waiting for its close: (proto, pid, sid) -> (in, out).
        self._held: dict[tuple[str, int, int], tuple[int, int]] = {}

    def send(self, event: dict[str, Any]) -> None:
        if not self.path or (self._absent and not self._may_be_back()):
            return
        event.setdefault("t", time.time())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto(encode(event), self.path)
        except OSError as exc:
            if exc.errno in _ABSENT:
                self._absent, self._absent_file = True, self._socket_file()
                self._retry_at = time.monotonic() + ABSENT_RETRY
        else:
            self._absent = False

    def _may_be_back(self) -> bool:
        return time.monotonic() >= self._retry_at or self._socket_file() != self._absent_file

    def _socket_file(self) -> tuple[int, int] | None:
        """Which file is at the socket's path (None: none); a collector starting makes a new
        one. os.access first: it answers "none" without raising."""
        if self.path is None or not os.access(self.path, os.F_OK):
            return None
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return info.st_ino, info.st_ctime_ns

    def event(self, kind: str, proto: str, pid: int, sid: int, **fields: Any) -> None:
        event: dict[str, Any] = {"e": kind, "proto": proto, "pid": pid}
        if sid:
            event["sid"] = sid
        event.update(fields)
        self.send(event)

    def connection_opened(self, proto: str, pid: int, address: str, sid: int = 0) -> None:
        self.event("open", proto, pid, sid, addr=address)

    def child_ended(self, proto: str, pid: int) -> None:
        """Every session of `pid` is over (a reaped child, a dead worker)."""
        self.event("close", proto, pid, 0)

    def session_ended(self, proto: str, pid: int, sid: int) -> None:
        """One session of a pool worker is over; its bytes (transfer) go with the close."""
        held = self._held.pop((proto, pid, sid), None)
        if held is None:
            self.event("close", proto, pid, sid)
        else:
            self.event("close", proto, pid, sid, **{"in": held[0], "out": held[1]})

    def login(self, proto: str, pid: int, user: str, address: str, ok: bool, sid: int = 0) -> None:
        self.event("login", proto, pid, sid, user=user, addr=address, ok=ok)

    def transfer(self, proto: str, pid: int, bytes_in: int, bytes_out: int, sid: int = 0) -> None:
        """A session's bytes at its end: a forked session's now (its master sends the close);
        a pool session's (`sid`) with the close its worker sends right after, one datagram
        where there were two (four events a session cost ~21 us of the worker's CPU each)."""
        if sid:
            self._held[(proto, pid, sid)] = (bytes_in, bytes_out)
        else:
            self.event("bytes", proto, pid, sid, **{"in": bytes_in, "out": bytes_out})

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
