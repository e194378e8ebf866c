"""mailstatd: the collector's figures from events, its queries, its state file across restarts
(TERM and SIGKILL), bad datagrams, the dead-session sweep, the daemon start-up contract, and its
reads in batches when the socket's queue is long."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.stats import StatsClient
from common.stats import query as stats_query
from common.stats.collector import ADMIN_PROTOCOLS, Collector
from common.stats.mailstatd import (
    COALESCE,
    COALESCE_MIN_QUEUE,
    coalescing_pause,
    queue_of_at_least,
)
from support.daemons import wait_for
from support.stats import sample_sessions

MAILSTATD = Path(sys.executable).with_name("mailstatd")
NO_SWEEP = "[mailstatd]\nsweep_interval = 0\n"


class Stats:
    """A mailstatd started with -f, the socket it listens on, and a sender."""

    def __init__(self, daemons, site, extra: str = NO_SWEEP) -> None:
        self.daemons, self.site, self.extra = daemons, site, extra
        self.socket = site.run / "mailstatd.sock"
        self.state_file = site.state / "mailstatd.json"
        self.client = StatsClient(self.socket)
        self.daemon = None
        self.start()

    def start(self) -> None:
        self.daemon = self.daemons.start(
            "mailstatd", config=self.site.config(self.extra), wait=False
        )
        wait_for(self.ready, what="mailstatd answering")

    def ready(self) -> bool:
        if self.daemon.proc.poll() is not None:
            raise AssertionError(f"mailstatd exited: {self.daemon.log()}")
        return stats_query.ping(self.socket, timeout=0.5)

    def stat(self) -> dict:
        return stats_query.stat(self.socket)

    def totals(self) -> dict:
        return self.stat()["totals"]

    def settle(self) -> None:
        """Every event sent before this has been applied: queries queue behind events."""
        stats_query.ping(self.socket)


@pytest.fixture
def stats(daemons, site) -> Stats:
    return Stats(daemons, site)


def test_events_make_the_figures(stats):
    sample_sessions(stats.client)
    stats.settle()
    figures = stats.stat()
    assert figures["totals"] == {
        "connections": 3,
        "current": 1,
        "max_concurrent": 3,
        "bytes_in": 100,
        "bytes_out": 2000,
        "bytes": 2100,
        "logins_ok": 2,
        "logins_failed": 1,
    }
    assert figures["protocols"]["pop3"]["max_concurrent"] == 2
    assert figures["protocols"]["pop3"]["current"] == 0
    assert figures["protocols"]["imap"] == {
        "connections": 1,
        "current": 1,
        "max_concurrent": 1,
        "bytes_in": 0,
        "bytes_out": 0,
        "bytes": 0,
        "logins_ok": 1,
        "logins_failed": 0,
    }
    # Who is logged in now: carol only (bob's session was reaped).
    assert [(s["user"], s["proto"]) for s in figures["logged_in"]] == [("carol", "imap")]
    assert stats_query.user_info(stats.socket, "bob")["sessions"] == []
    assert stats_query.user_info(stats.socket, "carol")["sessions"][0]["addr"] == "2001:db8::1"
    log = stats_query.access_log(stats.socket, "bob")
    assert [(proto, addr) for _, proto, addr in log] == [("pop3", "192.0.2.1")]
    assert abs(log[0][0] - time.time()) < 60


def test_admin_logins_are_counted_but_never_a_mail_user(stats):
    c = stats.client
    c.connection_opened("msmp", 3001, "127.0.0.1")
    c.login("msmp", 3001, "bob", "127.0.0.1", True)
    stats.settle()
    assert "msmp" in ADMIN_PROTOCOLS
    assert stats.totals()["logins_ok"] == 1
    info = stats_query.user_info(stats.socket, "bob")
    assert info["sessions"] == [] and info["log_entries"] == 0


def test_login_overtaking_open_and_duplicates_count_once(stats):
    c = stats.client
    c.login("pop3", 4001, "dave", "192.0.2.9", True)  # the child was faster than its master
    c.connection_opened("pop3", 4001, "192.0.2.9")
    c.connection_opened("pop3", 4001, "192.0.2.9")
    c.child_ended("pop3", 4001)
    c.child_ended("pop3", 4001)
    c.child_ended("pop3", 4999)  # opened before this collector started
    stats.settle()
    totals = stats.totals()
    assert (totals["connections"], totals["current"], totals["max_concurrent"]) == (1, 0, 1)
    assert stats.stat()["logged_in_count"] == 0


def test_figures_survive_term_and_sigkill(stats, daemons, site):
    c = stats.client
    for pid in (5001, 5002):
        c.connection_opened("pop3", pid, "192.0.2.5")
        c.login("pop3", pid, "erin", "192.0.2.5", True)
        c.transfer("pop3", pid, 10, 20)
        c.child_ended("pop3", pid)
    stats.settle()
    before = stats.stat()
    assert stats.daemon.stop() == 0
    assert not stats.socket.exists()
    stats.start()
    after = stats.stat()
    assert after["totals"] == before["totals"]
    assert after["protocols"] == before["protocols"]
    assert len(stats_query.access_log(stats.socket, "erin")) == 2

    # SIGKILL: what was saved (at most save_interval ago) is kept.
    c.connection_opened("pop3", 5003, "192.0.2.6")
    c.child_ended("pop3", 5003)
    stats.settle()
    wait_for(
        lambda: json.loads(stats.state_file.read_text())["totals"]["connections"] == 3,
        what="state file saved",
    )
    stats.daemon.stop(signal.SIGKILL)
    assert stats.socket.exists()  # left behind: the next start must clear it
    stats.start()
    assert stats.totals()["connections"] == 3


def test_dump_prints_json_and_fails_when_down(stats, site):
    conf = stats.daemon.args[stats.daemon.args.index("-c") + 1]
    stats.client.connection_opened("pop3", 6001, "192.0.2.7")
    stats.settle()
    result = subprocess.run(
        [str(MAILSTATD), "--dump", "-c", conf], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["totals"]["connections"] == 1 and figures["totals"]["current"] == 1
    stats.daemon.stop()
    result = subprocess.run(
        [str(MAILSTATD), "--dump", "-c", conf], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("mailstatd: mailstatd is not running")
    assert len(result.stderr.splitlines()) == 1


def test_bad_datagrams_are_ignored(stats):
    junk = [
        b"",
        b"\x00\xff" * 100,
        b"not json",
        b"[1, 2]",
        b'{"e": "open"}',
        b'{"e": "open", "proto": "pop3", "pid": "12", "addr": "x"}',
        b'{"e": "open", "proto": "pop3", "pid": -1, "addr": "x"}',
        b'{"e": "bytes", "proto": "pop3", "pid": 7, "in": -5, "out": 1}',
        b'{"e": "bytes", "proto": "pop3", "pid": 7, "in": true, "out": 1}',
        b'{"e": "login", "proto": "pop3", "pid": 7, "user": "a b", "addr": "x", "ok": true}',
        b'{"e": "nonsense", "proto": "pop3", "pid": 7}',
        b'{"e": "open", "proto": "' + b"p" * 300 + b'", "pid": 7, "addr": "x"}',
        json.dumps({"e": "open", "proto": "pop3", "pid": 7, "addr": "x" * 60000}).encode(),
    ]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        for data in junk:
            sock.sendto(data, str(stats.socket))
            stats.settle()
        # An unknown query gets an error reply, not silence.
        sock.bind("")
        sock.settimeout(5)
        sock.sendto(b'{"q": "drop tables", "id": "x1"}', str(stats.socket))
        assert json.loads(sock.recv(65536)) == {"ok": False, "error": "bad query", "id": "x1"}
    figures = stats.stat()
    assert figures["totals"]["connections"] == 0 and figures["protocols"] == {}
    assert figures["ignored_events"] == len(junk)
    assert stats.daemon.proc.poll() is None


def test_sweep_drops_sessions_whose_process_is_gone(daemons, site):
    stats = Stats(daemons, site, "[mailstatd]\nsweep_interval = 0.1\n")
    gone = subprocess.Popen(["true"])
    gone.wait()
    stats.client.connection_opened("pop3", gone.pid, "192.0.2.8")
    stats.client.login("pop3", gone.pid, "frank", "192.0.2.8", True)
    stats.client.connection_opened("pop3", os.getpid(), "192.0.2.8")  # alive: stays
    wait_for(lambda: stats.totals()["current"] == 1, what="the dead session swept")
    assert stats.totals()["connections"] == 2
    assert stats_query.user_info(stats.socket, "frank")["sessions"] == []


def test_queries_fail_cleanly_when_down(site):
    missing = site.run / "nobody.sock"
    with pytest.raises(stats_query.StatsError, match="not running"):
        stats_query.stat(missing)
    assert not stats_query.ping(missing)
    StatsClient(missing).connection_opened("pop3", 1, "x")  # never raises, never blocks


def test_daemon_mode_start_up_contract(site):
    conf = site.root / "mailstatd.conf"
    conf.write_text(site.config())
    pidfile, sock = site.run / "mailstatd.pid", site.run / "mailstatd.sock"
    # A stale socket from a collector that died is cleared; nobody is bound to it.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(sock))
    stale.close()
    run = [str(MAILSTATD), "-c", str(conf)]
    result = subprocess.run(run, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    try:
        pid = int(pidfile.read_text())
        assert stats_query.ping(sock)
        StatsClient(sock).connection_opened("pop3", 7001, "192.0.2.10")
        again = subprocess.run(
            run + ["--pidfile", str(site.run / "other.pid")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert again.returncode == 1
        assert again.stderr == f"mailstatd: another mailstatd is running on {sock}\n"
        assert not (site.run / "other.pid").exists()
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGTERM)
    wait_for(lambda: not pidfile.exists() and not sock.exists(), what="pidfile and socket gone")
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="mailstatd gone")
    saved = json.loads((site.state / "mailstatd.json").read_text())
    assert saved["totals"]["connections"] == 1


def test_start_up_errors_are_one_line(site):
    conf = site.root / "mailstatd.conf"
    conf.write_text(site.config())
    (site.run / "mailstatd.sock").write_text("not a socket")
    run = [str(MAILSTATD), "-f", "-c", str(conf)]
    result = subprocess.run(run, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr == f"mailstatd: {site.run / 'mailstatd.sock'} exists and is not a socket\n"
    (site.run / "mailstatd.sock").unlink()
    (site.state / "mailstatd.json").write_text("{truncated")
    result = subprocess.run(run, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert "is not valid" in result.stderr and "move it aside" in result.stderr
    assert not (site.run / "mailstatd.sock").exists()


# -- the collector without sockets ------------------------------------------------------------


def test_access_log_is_bounded_and_replies_fit_a_datagram():
    collector = Collector(max_log_entries=5)
    for n in range(8):
        collector.event(
            {
                "e": "login",
                "proto": "pop3",
                "pid": 10 + n,
                "user": "gina",
                "addr": f"192.0.2.{n}",
                "ok": True,
            }
        )
    reply = collector.answer({"q": "logs", "user": "gina", "id": "a"})
    assert [e[2] for e in reply["entries"]] == [f"192.0.2.{n}" for n in range(3, 8)]
    assert collector.answer({"q": "user", "user": "gina"})["logins"] == 8

    collector.set_max_log_entries(5000)
    for _ in range(4000):
        collector.event(
            {
                "e": "login",
                "proto": "pop3",
                "pid": 99,
                "user": "gina",
                "addr": "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
                "ok": True,
            }
        )
    reply = collector.answer({"q": "logs", "user": "gina"})
    assert reply["truncated"] is True
    assert len(json.dumps(reply)) <= stats_query.MAX_REPLY
    assert reply["entries"][-1][2] == "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"  # newest kept


def test_state_round_trip():
    collector = Collector(10)
    collector.event({"e": "open", "proto": "pop3", "pid": 1, "addr": "a"})
    collector.event(
        {"e": "login", "proto": "pop3", "pid": 1, "user": "hal", "addr": "a", "ok": True}
    )
    restored = Collector(10)
    restored.load_state(json.loads(json.dumps(collector.to_state())))
    assert restored.figures() | {"started": 0} == collector.figures() | {"started": 0}
    with pytest.raises(ValueError):
        Collector(10).load_state({"version": 99})


def test_hup_rereads_the_config_and_keeps_the_figures(stats):
    stats.client.connection_opened("pop3", 8001, "192.0.2.11")
    stats.settle()
    conf = Path(stats.daemon.args[stats.daemon.args.index("-c") + 1])
    conf.write_text(conf.read_text() + "max_log_entries = 2\n")
    stats.daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in stats.daemon.log(), what="reload logged")
    for n in range(4):
        stats.client.login("pop3", 8001, "ivy", f"192.0.2.{n}", True)
    stats.settle()
    assert [a for _, _, a in stats_query.access_log(stats.socket, "ivy")] == [
        "192.0.2.2",
        "192.0.2.3",
    ]
    assert stats.totals()["connections"] == 1
    # A broken config keeps the old one and the collector goes on.
    conf.write_text(conf.read_text() + "save_interval = soon\n")
    stats.daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in stats.daemon.log(), what="bad reload logged")
    assert stats.totals()["connections"] == 1


def test_sessions_of_one_process_are_told_apart_and_a_dead_worker_clears_them():
    """Pool model: a worker's sessions share its pid and carry their session numbers; the
    master's close without a session number (the worker died) ends all of them."""
    collector = Collector(10)
    for sid, user in ((1, "ida"), (2, "jan"), (3, "kim")):
        collector.event({"e": "open", "proto": "imap", "pid": 700, "sid": sid, "addr": "a"})
        collector.event(
            {
                "e": "login",
                "proto": "imap",
                "pid": 700,
                "sid": sid,
                "user": user,
                "addr": "a",
                "ok": True,
            }
        )
    collector.event({"e": "open", "proto": "imap", "pid": 701, "sid": 4, "addr": "b"})
    figures = collector.figures()
    assert figures["protocols"]["imap"]["current"] == 4
    assert [(e["user"], e["sid"]) for e in figures["logged_in"]] == [
        ("ida", 1),
        ("jan", 2),
        ("kim", 3),
    ]
    collector.event({"e": "close", "proto": "imap", "pid": 700, "sid": 2})  # jan logs out
    assert [e.user for e in collector.logged_in()] == ["ida", "kim"]
    collector.event({"e": "close", "proto": "imap", "pid": 700})  # worker 700 died
    assert collector.logged_in() == []
    assert collector.figures()["protocols"]["imap"]["current"] == 1  # pid 701's session
    collector.event({"e": "open", "proto": "imap", "pid": 1, "sid": -1, "addr": "a"})
    assert collector.ignored == 1
    restored = Collector(10)
    restored.load_state(json.loads(json.dumps(collector.to_state())))
    assert list(restored.live) == [("imap", 701, 4)]


def test_a_pool_sessions_close_carries_its_bytes():
    """A pool session's bytes come with its close (one datagram); a close with bad byte counts
    changes nothing, the session stays open."""
    collector = Collector(10)
    for sid in (1, 2):
        collector.event({"e": "open", "proto": "pop3", "pid": 800, "sid": sid, "addr": "a"})
    collector.event({"e": "close", "proto": "pop3", "pid": 800, "sid": 1, "in": 30, "out": 900})
    collector.event({"e": "close", "proto": "pop3", "pid": 800, "sid": 2, "in": -1, "out": 5})
    totals = collector.figures()["totals"]
    assert (totals["bytes_in"], totals["bytes_out"], totals["current"]) == (30, 900, 1)
    assert collector.ignored == 1
    assert list(collector.live) == [("pop3", 800, 2)]


# -- reading in batches (COALESCE) ---------------------------------------------------------------


def test_reads_pause_only_when_the_queue_holds_what_comes_meanwhile():
    assert coalescing_pause(None) == 0.0
    assert coalescing_pause(10) == 0.0  # Debian's default: read every event at once
    assert coalescing_pause(COALESCE_MIN_QUEUE - 1) == 0.0
    assert coalescing_pause(COALESCE_MIN_QUEUE) == COALESCE
    assert coalescing_pause(512) == COALESCE


@pytest.mark.skipif(os.geteuid() != 0, reason="sets net.unix.max_dgram_qlen (root)")
def test_with_a_long_queue_batched_reads_lose_no_event_and_answer_queries(daemons, site):
    with queue_of_at_least(512):  # as etc/sysctl.d/maildaemons.conf sets it
        stats = Stats(daemons, site)
        client = StatsClient(stats.socket)
        # Opens and closes, 200 datagrams: within the queue of 512 and within what one sending
        # socket may have unread (its send buffer, ~270 small datagrams), for a pause.
        burst = 100
        for pid in range(7000, 7000 + burst):
            client.connection_opened("pop3", pid, "192.0.2.7")
        for pid in range(7000, 7000 + burst):
            client.child_ended("pop3", pid)
        stats.settle()
        totals = stats.totals()
        assert (totals["connections"], totals["current"]) == (burst, 0)
        assert totals["max_concurrent"] == burst
        stats.client.connection_opened("imap", 7999, "192.0.2.8")  # and the next one, alone
        stats.settle()
        assert stats.totals()["current"] == 1
        assert "max_dgram_qlen" not in stats.daemon.log()
        assert stats.daemon.stop() == 0  # TERM during a pause stops it as before
