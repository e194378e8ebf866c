"""Stats events: the client every daemon uses to tell `mailstatd` what happened.

The package holds the stats side of the suite (DESIGN.md "Stats collector"): this module is the
client and nothing else, so the master and the sessions import no part of the collector;
`collector.py` holds the figures, `query.py` asks the running collector for them (msmpd,
`mailstatd --dump`) and `mailstatd.py` is the collector program.

Events are one JSON object per Unix datagram, sent non-blocking to the collector's socket. Nobody
waits on stats or sees its errors: when the collector is down or its queue is full, the event is
dropped and the session goes on (DESIGN.md "Stats collector").

Events (field `e`):
  open   proto pid addr       master, at fork
  close  proto pid            master, when it reaps the child (also after SIGKILL)
  login  proto pid user addr ok   child, after each login attempt
  bytes  proto pid in out     child, at the end of its session
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any


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
            self._sock.sendto(json.dumps(event, separators=(",", ":")).encode(), self.path)
        except OSError:
            pass

    def connection_opened(self, proto: str, pid: int, address: str) -> None:
        self.send({"e": "open", "proto": proto, "pid": pid, "addr": address})

    def child_ended(self, proto: str, pid: int) -> None:
        self.send({"e": "close", "proto": proto, "pid": pid})

    def login(self, proto: str, pid: int, user: str, address: str, ok: bool) -> None:
        self.send(
            {"e": "login", "proto": proto, "pid": pid, "user": user, "addr": address, "ok": ok}
        )

    def transfer(self, proto: str, pid: int, bytes_in: int, bytes_out: int) -> None:
        self.send({"e": "bytes", "proto": proto, "pid": pid, "in": bytes_in, "out": bytes_out})

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
