"""The stats client: its JSON, and what it does when no collector listens or the collector lags."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from common import stats
from common.stats import StatsClient, encode

EVENTS = [
    {"e": "open", "proto": "imap", "pid": 42, "sid": 7, "addr": "2001:db8::1", "t": 1.5},
    {"e": "login", "proto": "pop3", "pid": 1, "user": 'j\u00f6rg "x"\n\\', "ok": True},
    {"e": "login", "proto": "pop3", "pid": 1, "user": "\x00\u2028\U0001f600", "ok": False},
    {"e": "bytes", "proto": "imap", "pid": 3, "in": 0, "out": 12345678901234, "t": 1e-07},
    {"e": "close", "proto": "imap", "pid": 3, "note": None},
]


@pytest.mark.parametrize("event", EVENTS)
def test_encode_writes_the_json_the_collector_reads(event):
    data = encode(event)
    assert json.loads(data) == event
    assert data == json.dumps(event, separators=(",", ":")).encode()


def test_a_pool_sessions_bytes_go_with_its_close_a_forked_ones_at_once(tmp_path):
    path = tmp_path / "mailstatd.sock"
    listening = collector(path)
    client = StatsClient(path)
    client.transfer("imap", 9, 80, 1700, sid=5)  # a pool session: held for its close
    assert received(listening) == []
    client.session_ended("imap", 9, 5)
    client.session_ended("imap", 9, 6)  # a session that sent no bytes event: a bare close
    client.transfer("imap", 10, 7, 8)  # a forked session: now, its master sends the close
    events = [{k: v for k, v in e.items() if k != "t"} for e in received(listening)]
    assert events == [
        {"e": "close", "proto": "imap", "pid": 9, "sid": 5, "in": 80, "out": 1700},
        {"e": "close", "proto": "imap", "pid": 9, "sid": 6},
        {"e": "bytes", "proto": "imap", "pid": 10, "in": 7, "out": 8},
    ]
    assert client._held == {}
    client.close()
    listening.close()


def collector(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    return sock


def received(sock: socket.socket) -> list[dict]:
    sock.setblocking(False)
    events = []
    try:
        while True:
            events.append(json.loads(sock.recv(65536)))
    except BlockingIOError:
        return events
    finally:
        sock.settimeout(2)


class CountingSocket:
    """The client's socket, counting its sends: which events were tried at all."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.sends = sock, 0

    def sendto(self, data: bytes, path: str) -> int:
        self.sends += 1
        return self.sock.sendto(data, path)

    def close(self) -> None:
        self.sock.close()


def counting_client(path: Path) -> tuple[StatsClient, CountingSocket]:
    client = StatsClient(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    client._sock = counting = CountingSocket(sock)  # type: ignore[assignment]
    return client, counting


def test_without_a_collector_nothing_is_tried_until_one_starts(tmp_path):
    path = tmp_path / "mailstatd.sock"
    client, counting = counting_client(path)
    client.connection_opened("pop3", 1, "192.0.2.1")  # nobody there: dropped, and noted
    client.connection_opened("pop3", 2, "192.0.2.2")
    client.session_ended("pop3", 2, 0)
    assert counting.sends == 1
    listening = collector(path)  # a collector starts: the next event goes to it
    client.connection_opened("pop3", 3, "192.0.2.3")
    client.connection_opened("pop3", 4, "192.0.2.4")
    assert [e["pid"] for e in received(listening)] == [3, 4]
    assert counting.sends == 3
    client.close()
    listening.close()


def test_a_socket_left_by_a_dead_collector_is_tried_again_once_replaced(tmp_path):
    path = tmp_path / "mailstatd.sock"
    collector(path).close()  # the file stays, nobody reads it: ECONNREFUSED
    client, counting = counting_client(path)
    client.connection_opened("imap", 1, "192.0.2.1")
    client.connection_opened("imap", 2, "192.0.2.1")
    assert counting.sends == 1
    path.unlink()  # as mailstatd does with a stale socket when it starts
    listening = collector(path)
    client.connection_opened("imap", 3, "192.0.2.1")
    assert [e["pid"] for e in received(listening)] == [3]
    client.close()
    listening.close()


def test_the_same_socket_is_tried_again_after_the_retry_time(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "ABSENT_RETRY", 0.2)
    path = tmp_path / "mailstatd.sock"
    client, counting = counting_client(path)
    client.connection_opened("imap", 1, "192.0.2.1")
    client.connection_opened("imap", 2, "192.0.2.1")
    assert counting.sends == 1
    time.sleep(0.25)
    client.connection_opened("imap", 3, "192.0.2.1")
    assert counting.sends == 2
    client.close()


def test_a_full_queue_drops_that_event_only(tmp_path):
    path = tmp_path / "mailstatd.sock"
    listening = collector(path)
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    filler.setblocking(False)
    with pytest.raises(BlockingIOError):  # a collector that lags: its queue is full
        for _ in range(1_000_000):
            filler.sendto(b"{}", str(path))
    client = StatsClient(path)
    client.connection_opened("imap", 1, "192.0.2.1")  # EAGAIN: this event is lost
    assert not client._absent
    assert all(e == {} for e in received(listening))
    client.connection_opened("imap", 2, "192.0.2.1")  # room again: it arrives at once
    assert [e["pid"] for e in received(listening)] == [2]
    for sock in (client, filler, listening):
        sock.close()
