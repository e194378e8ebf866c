"""Stats events: the client every daemon uses to tell `mailstatd` what happened.

The package holds the stats side of the suite (DESIGN.md "Stats collector"): this module is the
client and nothing else, so the master and the sessions import no part of the collector;
`collector.py` holds the figures, `query.py` asks the running collector for them (msmpd,
`mailstatd --dump`) and `mailstatd.py` is the collector program.

Events are one JSON object per Unix datagram, sent non-blocking to the collector's socket. Nobody
waits on stats or sees its errors: when the collector is down or its queue is full, the event is
dropped and the session goes on (DESIGN.md "Stats collector").

Events (field `e`):
  open   proto pid [sid] addr       master, at fork (pool model: the worker, at accept)
  close  proto pid [sid]            master, when it reaps the child (also after SIGKILL);
                                    pool model: the worker at a session's end, with its sid
  login  proto pid [sid] user addr ok   the session, after each login attempt
  bytes  proto pid [sid] in out     the session, at its end

A session is (proto, pid, sid). In the fork model a process is one session and `sid` is left out
(0). In the pool model a worker serves many sessions, each with its own session number as `sid`;
a `close` without `sid` ends every session of that pid, which is how the master reports a dead
worker (or a reaped child) whatever its sessions were.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

# One encoder for every event: json.dumps(separators=...) would build a new one each time.
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


class StatsClient:
    """Fire-and-forget sender of stats events."""

    def __init__(self, path: Path | None) -> None:
        self.path = str(path) if path else None
        self._sock: socket.socket | None = None

    def send(self, event: dict[str, Any]) -> None:
        if not self.path:
            return
        event.setdefault("t", time.time())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto(_ENCODE(event).encode(), self.path)
        except OSError:
            pass

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
        """One session of a pool worker is over."""
        self.event("close", proto, pid, sid)

    def login(self, proto: str, pid: int, user: str, address: str, ok: bool, sid: int = 0) -> None:
        self.event("login", proto, pid, sid, user=user, addr=address, ok=ok)

    def transfer(self, proto: str, pid: int, bytes_in: int, bytes_out: int, sid: int = 0) -> None:
        self.event("bytes", proto, pid, sid, **{"in": bytes_in, "out": bytes_out})

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
