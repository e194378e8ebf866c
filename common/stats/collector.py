"""The figures `mailstatd` keeps: counters per protocol and in total, the live sessions, who is
logged in, each user's access log; changed by events, read by queries, saved and restored as one
JSON document. No I/O here: common/stats/mailstatd.py owns the socket, the state file and the
loop.

Events are those of common/stats/__init__.py; queries those of common/stats/query.py. A malformed
event is counted in `ignored` and changes nothing, so a bad sender cannot corrupt the figures.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeGuard

from common.stats.query import MAX_REPLY

STATE_VERSION = 1
# Logins to these protocols are administrators, not mail users: they are counted, but they have no
# access log and never make a mail user "logged in" (an admin may share a mail user's name).
ADMIN_PROTOCOLS = frozenset({"msmp"})
MAX_PROTOCOLS = 32
MAX_LIVE = 100_000
MAX_NAME = 255
MAX_ADDRESS = 64
MAX_BYTES_EVENT = 1 << 40
MAX_LISTED_SESSIONS = 200
CLOCK_SKEW = 86400.0  # an event time further off than this is replaced by ours


# -- the figures -----------------------------------------------------------------------------


@dataclass
class Counters:
    """The figures of one protocol, or of all of them together."""

    connections: int = 0
    current: int = 0
    max_concurrent: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    logins_ok: int = 0
    logins_failed: int = 0

    def opened(self) -> None:
        self.connections += 1
        self.current += 1
        self.max_concurrent = max(self.max_concurrent, self.current)

    def closed(self) -> None:
        self.current = max(0, self.current - 1)

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "bytes": self.bytes_in + self.bytes_out}

    @classmethod
    def from_dict(cls, data: object) -> Counters:
        if not isinstance(data, dict):
            raise ValueError("counters are not an object")
        values = {}
        for item in fields(cls):
            value = data.get(item.name, 0)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"bad counter {item.name!r}")
            values[item.name] = value
        values["current"] = 0  # recounted from the live sessions
        return cls(**values)


@dataclass
class Live:
    """A connection the collector knows is open, keyed by (protocol, pid, session id): the
    session id is 0 in the fork model (a child is one session) and the session number in the
    pool model (a worker serves many)."""

    proto: str
    pid: int
    addr: str
    since: float
    user: str | None = None
    opened: bool = False  # the "open" arrived, so it counts in `current`
    sid: int = 0

    @property
    def key(self) -> LiveKey:
        return (self.proto, self.pid, self.sid)

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "proto": self.proto,
            "pid": self.pid,
            "addr": self.addr,
            "since": round(self.since, 3),
            "user": self.user,
        }
        if self.sid:
            entry["sid"] = self.sid
        return entry


LiveKey = tuple[str, int, int]


class Collector:
    """Every figure mailstatd keeps, changed by events and read by queries; does no I/O."""

    def __init__(self, max_log_entries: int) -> None:
        self.max_log_entries = max(1, max_log_entries)
        self.totals = Counters()
        self.protocols: dict[str, Counters] = {}
        self.live: dict[LiveKey, Live] = {}
        # (proto, pid) -> its session ids: a close without sid ends all of them (a dead worker).
        self.by_pid: dict[tuple[str, int], set[int]] = {}
        self.logs: dict[str, deque[tuple[int, str, str]]] = {}
        self.login_counts: dict[str, int] = {}
        self.started = time.time()
        self.dirty = False
        self.ignored = 0

    # -- events ------------------------------------------------------------------------------

    def event(self, event: dict[str, Any]) -> None:
        """Apply one event; a malformed one is counted in `ignored` and changes nothing."""
        kind = event.get("e")
        proto, pid = event.get("proto"), event.get("pid")
        sid = event.get("sid", 0)
        if not (valid_name(proto) and valid_id(pid) and pid > 0 and valid_id(sid)):
            self.ignored += 1
            return
        handler = EVENT_HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None or (
            proto not in self.protocols and len(self.protocols) >= MAX_PROTOCOLS
        ):
            self.ignored += 1
            return
        if not handler(self, proto, pid, sid, event):
            self.ignored += 1
            return
        self.dirty = True

    def counters(self, proto: str) -> Counters:
        return self.protocols.setdefault(proto, Counters())

    def _live(self, proto: str, pid: int, sid: int, addr: str, when: float) -> Live | None:
        key = (proto, pid, sid)
        entry = self.live.get(key)
        if entry is None:
            if len(self.live) >= MAX_LIVE:
                return None
            entry = Live(proto, pid, addr, when, sid=sid)
            self._add(entry)
        return entry

    def _add(self, entry: Live) -> None:
        self.live[entry.key] = entry
        self.by_pid.setdefault((entry.proto, entry.pid), set()).add(entry.sid)

    def _pop(self, key: LiveKey) -> Live | None:
        entry = self.live.pop(key, None)
        if entry is not None:
            sids = self.by_pid.get(key[:2])
            if sids is not None:
                sids.discard(key[2])
                if not sids:
                    del self.by_pid[key[:2]]
        return entry

    def on_open(self, proto: str, pid: int, sid: int, event: dict[str, Any]) -> bool:
        addr = event.get("addr")
        if not valid_address(addr):
            return False
        entry = self._live(proto, pid, sid, addr, event_time(event))
        if entry is None or entry.opened:
            return entry is not None
        entry.opened, entry.addr = True, addr
        self.counters(proto).opened()
        self.totals.opened()
        return True

    def on_close(self, proto: str, pid: int, sid: int, event: dict[str, Any]) -> bool:
        """With a sid: that session ended, with its bytes when they came along (a pool
        session's). Without: every session of the process did (the master reaped a child, or
        a worker that died with its sessions)."""
        if ("in" in event or "out" in event) and not self.on_bytes(proto, pid, sid, event):
            return False
        if "sid" in event:
            self.end(self._pop((proto, pid, sid)))
            return True
        for each in sorted(self.by_pid.get((proto, pid), ())):
            self.end(self._pop((proto, pid, each)))
        return True

    def end(self, entry: Live | None) -> None:
        if entry is not None and entry.opened:
            self.counters(entry.proto).closed()
            self.totals.closed()

    def on_login(self, proto: str, pid: int, sid: int, event: dict[str, Any]) -> bool:
        user, addr, ok = event.get("user"), event.get("addr"), event.get("ok")
        if not (isinstance(user, str) and valid_address(addr) and isinstance(ok, bool)):
            return False
        if ok and not valid_name(user):
            return False
        counters = self.counters(proto)
        if not ok:
            counters.logins_failed += 1
            self.totals.logins_failed += 1
            return True
        counters.logins_ok += 1
        self.totals.logins_ok += 1
        when = event_time(event)
        # A login may overtake its master's "open": the entry waits for it, not yet counted.
        entry = self._live(proto, pid, sid, addr, when)
        if entry is not None:
            entry.user = user
        if proto not in ADMIN_PROTOCOLS:
            self.user_log(user).append((int(when), proto, addr))
            self.login_counts[user] = self.login_counts.get(user, 0) + 1
        return True

    def on_bytes(self, proto: str, pid: int, sid: int, event: dict[str, Any]) -> bool:
        bytes_in, bytes_out = event.get("in"), event.get("out")
        if not (valid_count(bytes_in) and valid_count(bytes_out)):
            return False
        for counters in (self.counters(proto), self.totals):
            counters.bytes_in += bytes_in
            counters.bytes_out += bytes_out
        return True

    def user_log(self, user: str) -> deque[tuple[int, str, str]]:
        entries = self.logs.get(user)
        if entries is None:
            entries = self.logs[user] = deque(maxlen=self.max_log_entries)
        return entries

    def set_max_log_entries(self, limit: int) -> None:
        self.max_log_entries = max(1, limit)
        for user, entries in self.logs.items():
            if entries.maxlen != self.max_log_entries:
                self.logs[user] = deque(entries, maxlen=self.max_log_entries)

    def sweep(self, alive: Callable[[int], bool]) -> int:
        """Drop live sessions whose process is gone: their "close" was lost (a full queue, a
        SIGKILLed master, a collector restart). Returns how many were dropped."""
        dead = [key for key in self.live if not alive(key[1])]
        for key in dead:
            self.end(self._pop(key))
        if dead:
            self.dirty = True
        return len(dead)

    # -- queries -----------------------------------------------------------------------------

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        kind = request.get("q")
        reply: dict[str, Any]
        if kind == "ping":
            reply = {"ok": True}
        elif kind == "stat":
            reply = self.figures()
        elif kind in ("user", "logs") and valid_name(request.get("user")):
            user = str(request["user"])
            reply = self.user_figures(user) if kind == "user" else self.user_logs(user)
        else:
            reply = {"ok": False, "error": "bad query"}
        if "id" in request and isinstance(request["id"], str | int):
            reply["id"] = request["id"]
        return reply

    def logged_in(self) -> list[Live]:
        return sorted(
            (e for e in self.live.values() if e.user is not None),
            key=lambda e: (e.since, e.pid, e.sid),
        )

    def figures(self) -> dict[str, Any]:
        sessions = self.logged_in()
        reply = {
            "ok": True,
            "started": round(self.started, 3),
            "totals": self.totals.as_dict(),
            "protocols": {p: c.as_dict() for p, c in sorted(self.protocols.items())},
            "logged_in_count": len(sessions),
            "logged_in": [e.as_dict() for e in sessions[:MAX_LISTED_SESSIONS]],
            "users_with_logs": len(self.logs),
            "ignored_events": self.ignored,
        }
        return fit(reply, "logged_in")

    def metrics(self) -> dict[str, Any]:
        """What the Prometheus exposition shows (common/stats/prometheus.py): the counters per
        protocol and who is logged in per protocol, without listing anyone."""
        logged_in: dict[str, int] = {}
        for entry in self.live.values():
            if entry.user is not None:
                logged_in[entry.proto] = logged_in.get(entry.proto, 0) + 1
        return {
            "started": self.started,
            "protocols": {p: c.as_dict() for p, c in sorted(self.protocols.items())},
            "logged_in": logged_in,
            "ignored_events": self.ignored,
        }

    def user_figures(self, user: str) -> dict[str, Any]:
        sessions = [
            e.as_dict()
            for e in self.logged_in()
            if e.user == user and e.proto not in ADMIN_PROTOCOLS
        ]
        return fit(
            {
                "ok": True,
                "user": user,
                "logins": self.login_counts.get(user, 0),
                "log_entries": len(self.logs.get(user, ())),
                "sessions": sessions[:MAX_LISTED_SESSIONS],
            },
            "sessions",
        )

    def user_logs(self, user: str) -> dict[str, Any]:
        entries = [list(item) for item in self.logs.get(user, ())]
        return fit({"ok": True, "user": user, "entries": entries}, "entries", keep_last=True)

    # -- persistence -------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "saved": round(time.time(), 3),
            "totals": self.totals.as_dict(),
            "protocols": {p: c.as_dict() for p, c in self.protocols.items()},
            "live": [e.as_dict() | {"opened": e.opened} for e in self.live.values()],
            "users": {
                u: {"logins": self.login_counts.get(u, 0), "log": [list(x) for x in log]}
                for u, log in self.logs.items()
            },
        }

    def load_state(self, data: object) -> None:
        """Restore what a previous run saved; raises ValueError when it is not ours."""
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError("not a mailstatd state file of this version")
        self.totals = Counters.from_dict(data.get("totals", {}))
        protocols = data.get("protocols", {})
        if not isinstance(protocols, dict):
            raise ValueError("bad protocols")
        self.protocols = {
            str(p): Counters.from_dict(c) for p, c in protocols.items() if valid_name(p)
        }
        self.live, self.by_pid = {}, {}
        for item in data.get("live", []):
            entry = restore_live(item)
            if entry is not None:
                self._add(entry)
                if entry.opened:
                    self.counters(entry.proto).current += 1
                    self.totals.current += 1
        users = data.get("users", {})
        if not isinstance(users, dict):
            raise ValueError("bad users")
        self.logs, self.login_counts = {}, {}
        for user, record in users.items():
            if valid_name(user) and isinstance(record, dict):
                self.login_counts[user] = int(record.get("logins", 0))
                log_entries = self.user_log(user)
                for item in record.get("log", []):
                    if isinstance(item, list) and len(item) == 3:
                        log_entries.append((int(item[0]), str(item[1]), str(item[2])))


EVENT_HANDLERS: dict[str, Callable[[Collector, str, int, int, dict[str, Any]], bool]] = {
    "open": Collector.on_open,
    "close": Collector.on_close,
    "login": Collector.on_login,
    "bytes": Collector.on_bytes,
}


def restore_live(item: object) -> Live | None:
    if not isinstance(item, dict):
        return None
    proto, pid, addr = item.get("proto"), item.get("pid"), item.get("addr")
    sid = item.get("sid", 0)
    if not (valid_name(proto) and valid_id(pid) and pid > 0 and valid_address(addr)):
        return None
    user = item.get("user")
    return Live(
        str(proto),
        pid,
        str(addr),
        float(item.get("since", 0.0)),
        str(user) if valid_name(user) else None,
        bool(item.get("opened")),
        sid if valid_id(sid) else 0,
    )


def valid_name(value: object) -> TypeGuard[str]:
    """A protocol or user name we are willing to keep: short, printable, no spaces."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_NAME
        and value.isprintable()
        and " " not in value
    )


def valid_id(value: object) -> TypeGuard[int]:
    """A pid or session id: a non-negative int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def valid_address(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_ADDRESS and value.isprintable()


def valid_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_BYTES_EVENT


def event_time(event: dict[str, Any]) -> float:
    now = time.time()
    when = event.get("t")
    if isinstance(when, int | float) and abs(when - now) < CLOCK_SKEW:
        return float(when)
    return now


def fit(reply: dict[str, Any], key: str, keep_last: bool = False) -> dict[str, Any]:
    """Trim the list `reply[key]` until the reply fits in one datagram; say so when trimmed."""
    items = reply[key]
    while len(encode(reply)) > MAX_REPLY and items:
        cut = max(1, len(items) // 8)
        items = items[cut:] if keep_last else items[:-cut]
        reply[key] = items
        reply["truncated"] = True
    return reply


def encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
