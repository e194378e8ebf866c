"""The query side of `mailstatd`: ask the collector for its figures (msmpd, `mailstatd --dump`).

Queries travel on the collector's own Unix datagram socket, beside the events. The client binds an
autobind (abstract, Linux) address so the collector can answer it, sends one JSON request and waits
for the one JSON reply that carries the same `id`:

  {"q": "ping"}                       -> {"ok": true}
  {"q": "stat"}                       -> totals, per-protocol figures, who is logged in now
  {"q": "user", "user": NAME}         -> {"logins": N, "log_entries": N, "sessions": [...]}
  {"q": "logs", "user": NAME}         -> {"entries": [[time, proto, addr], ...], "truncated": bool}

Every reply is one datagram of at most `MAX_REPLY` bytes (the collector trims lists to fit and says
so), and an error reply is `{"ok": false, "error": TEXT}`. Unlike events, a query waits (at most
`timeout` seconds) and raises `StatsError` when the collector is down, full or silent.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from pathlib import Path
from typing import Any

MAX_REQUEST = 4096
MAX_REPLY = 60000
RECV_BUFFER = 262144
DEFAULT_TIMEOUT = 2.0


class StatsError(Exception):
    """The collector did not answer; str() is one line for a log or a reply."""


def query(
    path: Path | str, request: dict[str, Any], timeout: float = DEFAULT_TIMEOUT
) -> dict[str, Any]:
    """Send one request and return the collector's reply (a dict with `ok` true)."""
    request_id = secrets.token_hex(6)
    data = json.dumps({**request, "id": request_id}, separators=(",", ":")).encode()
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
            sock.bind("")  # autobind: an abstract address the collector can answer
            sock.settimeout(timeout)
            sock.sendto(data, str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise StatsError(f"mailstatd is not running ({path})") from None
        except TimeoutError:
            raise StatsError("mailstatd is busy (its queue is full)") from None
        except OSError as exc:
            raise StatsError(f"cannot reach mailstatd at {path}: {exc.strerror}") from None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StatsError("mailstatd did not answer")
            sock.settimeout(remaining)
            try:
                reply_data = sock.recv(RECV_BUFFER)
            except TimeoutError:
                raise StatsError("mailstatd did not answer") from None
            except OSError as exc:
                raise StatsError(f"mailstatd query failed: {exc.strerror}") from None
            reply = _decode(reply_data)
            if reply is None or reply.get("id") != request_id:
                continue  # not ours: a late answer to nothing we asked
            if not reply.get("ok"):
                raise StatsError(str(reply.get("error", "query refused")))
            return reply


def _decode(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def ping(path: Path | str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    try:
        query(path, {"q": "ping"}, timeout)
    except StatsError:
        return False
    return True


def stat(path: Path | str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    return query(path, {"q": "stat"}, timeout)


def user_info(path: Path | str, user: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    return query(path, {"q": "user", "user": user}, timeout)


def access_log(
    path: Path | str, user: str, timeout: float = DEFAULT_TIMEOUT
) -> list[tuple[float, str, str]]:
    """A user's access log, oldest first: (unix time, protocol, client address)."""
    reply = query(path, {"q": "logs", "user": user}, timeout)
    entries = []
    for item in reply.get("entries", []):
        if isinstance(item, list) and len(item) == 3:
            entries.append((float(item[0]), str(item[1]), str(item[2])))
    return entries
