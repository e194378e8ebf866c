"""mailstatd's Prometheus metrics (issue 18): scraped over HTTP with urllib and read with
prometheus_client's own parser, from events sent by hand and from real pop3d and imapd sessions
(in the process model of the run); the port bound before detaching (in use: one line, exit 1,
nothing left behind); none without `metrics_port`; scrapes during a burst of events."""

from __future__ import annotations

import imaplib
import poplib
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.stats import StatsClient
from common.stats import query as stats_query
from support.daemons import BIN, DaemonFactory, free_port, wait_for
from support.site import MailSite, deliver
from support.stats import sample_sessions

pytestmark = pytest.mark.timeout(120)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int, path: str = "/metrics") -> Samples:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class Stats:
    def __init__(self, daemons: DaemonFactory, site: MailSite, extra: str = "") -> None:
        self.port = free_port()
        self.socket = site.run / "mailstatd.sock"
        conf = f"[mailstatd]\nsweep_interval = 0\nmetrics_port = {self.port}\n{extra}"
        self.daemon = daemons.start("mailstatd", config=site.config(conf), wait=False)
        wait_for(self.ready, what="mailstatd and its metrics port")

    def ready(self) -> bool:
        assert self.daemon.proc.poll() is None, self.daemon.log()
        if not stats_query.ping(self.socket, timeout=0.5):
            return False
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def settle(self) -> None:
        stats_query.ping(self.socket)  # queries queue behind the events sent before

    def scrape(self) -> Samples:
        self.settle()
        return scrape(self.port)


def test_events_become_counters_and_gauges_per_protocol(
    daemons: DaemonFactory, site: MailSite
) -> None:
    stats = Stats(daemons, site)
    client = StatsClient(stats.socket)
    sample_sessions(client)
    client.send({"e": "bogus"})
    m = stats.scrape()
    assert value(m, "maildaemons_connections_total", protocol="pop3") == 2
    assert value(m, "maildaemons_connections_total", protocol="imap") == 1
    assert value(m, "maildaemons_connections_current", protocol="pop3") == 0
    assert value(m, "maildaemons_connections_current", protocol="imap") == 1
    assert value(m, "maildaemons_connections_max_concurrent", protocol="pop3") == 2
    assert value(m, "maildaemons_bytes_received_total", protocol="pop3") == 100
    assert value(m, "maildaemons_bytes_sent_total", protocol="pop3") == 2000
    assert value(m, "maildaemons_logins_total", protocol="pop3", result="ok") == 1
    assert value(m, "maildaemons_logins_total", protocol="pop3", result="failed") == 1
    assert value(m, "maildaemons_logged_in_sessions", protocol="imap") == 1
    assert value(m, "maildaemons_logged_in_sessions", protocol="pop3") == 0
    assert value(m, "maildaemons_stats_ignored_events_total") == 1
    assert value(m, "maildaemons_collector_start_time_seconds") > 1.6e9
    # The counters survive a restart (the state file), as the STAT figures do.
    stats.daemon.stop()
    restarted = Stats(daemons, site)
    again = restarted.scrape()
    assert value(again, "maildaemons_connections_total", protocol="pop3") == 2
    assert value(again, "maildaemons_logins_total", protocol="imap", result="ok") == 1


def test_real_sessions_add_up(daemons: DaemonFactory, site: MailSite) -> None:
    stats = Stats(daemons, site)
    deliver(site.maildir("alice"), b"Subject: hi\n\nbody\n")
    (site.root / "users").write_text("alice:{PLAIN}secret\n")
    pop3 = daemons.start("pop3d", "-l", "127.0.0.1", config=site.config())
    imapd = daemons.start("imapd", "-l", "127.0.0.1", config=site.config())
    # The factory's start-up probes are connections too: count from here.
    wait_for(lambda: sessions_ended(stats, "pop3", 1) and sessions_ended(stats, "imap", 1))
    before = stats.scrape()
    for _ in range(3):
        pop = poplib.POP3("127.0.0.1", pop3.port, timeout=10)
        pop.user("alice")
        pop.pass_("secret")
        assert pop.retr(1)[0].startswith(b"+OK")
        pop.quit()
    for _ in range(2):
        imap = imaplib.IMAP4("127.0.0.1", imapd.port, timeout=10)
        imap.login("alice", "secret")
        imap.logout()
    bad = poplib.POP3("127.0.0.1", pop3.port, timeout=10)
    bad.user("alice")
    with pytest.raises(poplib.error_proto):
        bad.pass_("wrong")
    bad.close()
    wait_for(lambda: sessions_ended(stats, "pop3", 5) and sessions_ended(stats, "imap", 3))
    after = stats.scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("maildaemons_connections_total", protocol="pop3") == 4
    assert delta("maildaemons_connections_total", protocol="imap") == 2
    assert delta("maildaemons_logins_total", protocol="pop3", result="ok") == 3
    assert delta("maildaemons_logins_total", protocol="pop3", result="failed") == 1
    assert delta("maildaemons_logins_total", protocol="imap", result="ok") == 2
    assert delta("maildaemons_bytes_sent_total", protocol="pop3") > 0
    assert value(after, "maildaemons_connections_current", protocol="pop3") == 0
    assert value(after, "maildaemons_logged_in_sessions", protocol="imap") == 0


def sessions_ended(stats: Stats, protocol: str, count: int) -> bool:
    """`count` connections of `protocol` were made and none is open any more."""
    m = stats.scrape()
    return (
        value(m, "maildaemons_connections_total", protocol=protocol) >= count
        and value(m, "maildaemons_connections_current", protocol=protocol) == 0
    )


def test_scrapes_during_a_burst_of_events(daemons: DaemonFactory, site: MailSite) -> None:
    stats = Stats(daemons, site)
    errors: list[BaseException] = []
    scrapes: list[Samples] = []
    done = threading.Event()

    def scraper() -> None:
        while not done.is_set():
            try:
                scrapes.append(scrape(stats.port))
            except BaseException as exc:  # reported below
                errors.append(exc)
                return

    thread = threading.Thread(target=scraper)
    thread.start()
    client = StatsClient(stats.socket)
    sent = 0
    for pid in range(1, 2001):
        client.connection_opened("imap", 100000 + pid, "192.0.2.1")
        client.login("imap", 100000 + pid, f"user{pid % 50}", "192.0.2.1", True)
        client.child_ended("imap", 100000 + pid)
        sent += 1
        # Linux queues only net.unix.max_dgram_qlen datagrams (10 here by default) and a
        # sender never waits: let the queue drain before the next three.
        stats.settle()
    done.set()
    thread.join(30)
    assert not errors, errors
    assert len(scrapes) > 1
    seen = [value(m, "maildaemons_connections_total", protocol="imap") for m in scrapes]
    assert seen == sorted(seen), "a counter never goes back"
    m = stats.scrape()
    assert value(m, "maildaemons_connections_total", protocol="imap") == sent
    assert value(m, "maildaemons_logged_in_sessions", protocol="imap") == 0
    assert "Traceback" not in stats.daemon.log()


def test_no_metrics_port_by_default(daemons: DaemonFactory, site: MailSite) -> None:
    daemon = daemons.start("mailstatd", config=site.config(), wait=False)
    wait_for(lambda: stats_query.ping(site.run / "mailstatd.sock", 0.5), what="mailstatd")
    assert "metrics on" not in daemon.log()


def test_a_metrics_port_in_use_stops_the_start(site: MailSite, tmp_path: Path) -> None:
    """The start-up contract: one line on stderr, exit 1, no pidfile, no process."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = tmp_path / "metrics.conf"
        conf.write_text(site.config(f"[mailstatd]\nmetrics_port = {port}\n"))
        result = subprocess.run(
            [str(BIN / "mailstatd"), "-c", str(conf)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert result.stderr == (
        f"mailstatd: cannot listen on 127.0.0.1 port {port} for metrics: Address already in use\n"
    )
    assert not (site.run / "mailstatd.pid").exists()
    assert not (site.run / "mailstatd.sock").exists()
    with pytest.raises(urllib.error.URLError):
        scrape(port)
