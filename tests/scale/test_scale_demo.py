"""Scale-out on one machine (issue 18; README "Scaling out"): two backend hosts run pop3d, imapd
and mailstatd on one shared mail base, HAProxy balances them with `send-proxy-v2`, and clients on
a third host append, flag, expunge and retrieve through HAProxy, concurrently on both backends.

The hosts are network namespaces (tests/support/scaleout.py has the layout); where the machine
cannot make them, that test skips, saying why. The loopback variant runs everywhere: both
backends on 127.0.0.1 on ports of their own, the clients on 127.0.0.2 (in a namespace of its own
where there are namespaces, else on the machine's loopback). The mail base is one directory
bind-mounted on each backend's own path (no kernel NFS server here). HAProxy balances round
robin, so that one user's sessions land on both backends at once: the case the README advises
against, and what must hold even then.

Afterwards: every message is there exactly once (in the Maildir and as both backends show it),
the UIDs are unique and ascending per folder and the same on both backends (and those APPENDUID
gave), the logs and the relay files name the client host, and the Prometheus metrics of the two
backends add up to the sessions made. scripts/test runs this folder in both process models.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import poplib
import re
import shutil
import socket
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.stats import query as stats_query
from support.daemons import free_port, process_model, wait_for
from support.figures import note
from support.proxyproto import v2
from support.scaleout import Host, Site, in_netns, namespaces_unavailable, threads_in
from support.site import deliver

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        shutil.which("haproxy") is None, reason="needs HAProxy (tests/apt-packages)"
    ),
]

USERS = [f"user{n}" for n in range(4)]
PASSWORD = "pw"  # noqa: S105 - a test account's
SEEDS = 6  # delivered before the start; POP3 deletes the first two of each user's
IMAP_CLIENTS = 2  # per user
APPENDS = 10  # per IMAP client, alternately to INBOX and Archive
FOLDERS = ("INBOX", "Archive")
CHECKER = "203.0.113.5"  # the address the final checks claim, to tell their sessions apart
TIMEOUT = 30.0
SUBJECT = re.compile(rb"^Subject: (\S+)", re.M)


def doomed_seed(n: int) -> bool:
    return n < 2


def doomed_append(n: int) -> bool:
    return n % 3 == 2  # 2 and 8 in INBOX, 5 in Archive


# -- clients that come from where we say, optionally with a PROXY header ---------------------


class Imap(imaplib.IMAP4):
    def __init__(self, host: str, port: int, source: str | None = None, header: bytes = b""):
        self.source, self.header = source, header
        super().__init__(host, port, timeout=TIMEOUT)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection(
            (self.host, self.port), timeout, (self.source, 0) if self.source else None
        )
        sock.sendall(self.header)
        return sock


class Pop(poplib.POP3):
    def __init__(self, host: str, port: int, source: str | None = None) -> None:
        self.source = source
        super().__init__(host, port, timeout=TIMEOUT)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection(
            (self.host, self.port), timeout, (self.source, 0) if self.source else None
        )


# -- the demo site -------------------------------------------------------------------------------


@dataclass
class Demo:
    site: Site
    pop3_port: int  # HAProxy's
    imap_port: int
    haproxy_pid: int = 0
    sessions: Counter[str] = field(default_factory=Counter)  # made through HAProxy
    logins: Counter[str] = field(default_factory=Counter)
    appended: dict[str, tuple[str, int, int]] = field(
        default_factory=dict
    )  # token: folder, uidvalidity, uid

    @property
    def hosts(self) -> list[Host]:
        return self.site.hosts

    # Clients all at once; one at a time only on a machine whose own (short) event queue of
    # mailstatd would drop events of a burst (README "Scaling out"), so metrics could not add up.
    concurrent: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, counter: Counter[str], protocol: str) -> None:
        with self.lock:  # the client threads count together
            counter[protocol] += 1

    @property
    def source(self) -> str | None:
        """Where a client binds: only on loopback, where 127.0.0.2 plays the client host."""
        return self.site.client_address if self.site.client_address.startswith("127.") else None


def backend_config(site: Site, host: Host) -> Path:
    conf = host.root / "maildaemons.conf"
    conf.write_text(
        f"[common]\nmail_base = {host.mail}\nusers_file = {site.root / 'users'}\n"
        f"admins_file = {site.root / 'admins'}\nstate_dir = {host.state}\n"
        f"run_dir = {host.root / 'run'}\nauth_failure_delay = 0\nshutdown_grace = 5\n"
        f"process_model = {process_model()}\nworkers = 2\n"
        f"proxy_trusted = {site.lb_address}\n"
        # The client host is trusted with passwords in clear, the balancer is not: only the
        # real client's address can let a login through.
        f"trusted_networks = {site.client_address} {CHECKER}\n"
        "max_per_address = 200\nmax_children = 400\n"
        f"[pop3d]\nlisten = {host.address}\nport = {host.pop3_port}\nproxy_protocol = port\n"
        f"[imapd]\nlisten = {host.address}\nport = {host.imap_port}\nproxy_protocol = port\n"
        f"[mailstatd]\nmetrics_port = {host.metrics_port}\nsweep_interval = 0\n"
        "[relay]\nenabled = yes\n"
    )
    return conf


def haproxy_config(site: Site, demo: Demo) -> Path:
    def backend(name: str, port_of: str) -> str:
        servers = "".join(
            f"    server {h.name} {h.address}:{getattr(h, port_of)} send-proxy-v2\n"
            for h in site.hosts
        )
        return f"backend {name}\n    balance roundrobin\n{servers}"

    conf = site.root / "haproxy.cfg"
    conf.write_text(
        "global\n    maxconn 2000\n"
        "defaults\n    mode tcp\n    timeout connect 5s\n"
        "    timeout client 60s\n    timeout server 60s\n"
        f"frontend pop3\n    bind {site.lb_address}:{demo.pop3_port}\n    default_backend pop3\n"
        f"frontend imap\n    bind {site.lb_address}:{demo.imap_port}\n    default_backend imap\n"
        + backend("pop3", "pop3_port")
        + backend("imap", "imap_port")
    )
    return conf


def queue_length() -> int:
    return int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())


@contextlib.contextmanager
def demo_site(tmp_path: Path, namespaces: bool, isolated: bool = False) -> Iterator[Demo]:
    site = Site(tmp_path, f"md{os.getpid() % 100000}")
    try:
        if namespaces:
            site.build_namespaces()
            ports = [(110, 143, 9154), (110, 143, 9154)]
            demo = Demo(site, 110, 143)
        else:
            site.build_loopback(isolated)
            ports = [(free_port(), free_port(), free_port()) for _ in range(2)]
            demo = Demo(
                site, free_port(), free_port(), concurrent=isolated or queue_length() >= 512
            )
        (tmp_path / "users").write_text("".join(f"{u}:{{PLAIN}}{PASSWORD}\n" for u in USERS))
        (tmp_path / "admins").write_text("")
        for user in USERS:
            for n in range(SEEDS):
                deliver(site.shared / user, f"Subject: {user}-seed-{n}\n\nseed {n}\n".encode())
        hosts = [site.add_host(f"b{n}", host_ports) for n, host_ports in enumerate(ports, 1)]
        confs = [backend_config(site, host) for host in hosts]
        # mailstatd first (the daemons' events go to it), then the daemons: each kind on both
        # hosts at once.
        for host, conf in zip(hosts, confs, strict=True):
            site.start_daemon(host, "mailstatd", conf)
        for host in hosts:
            # Asked from inside: the reply goes to an abstract address, which is per namespace.
            wait_for(
                lambda h=host: in_netns(h.netns, lambda: stats_query.ping(h.stats_socket, 0.5)),
                what="mailstatd",
            )
            site.wait_listening(host.procs["mailstatd"], host.metrics_port)
        for host, conf in zip(hosts, confs, strict=True):
            for daemon in ("pop3d", "imapd"):
                site.start_daemon(host, daemon, conf)
        for host in hosts:
            site.wait_listening(host.procs["pop3d"], host.pop3_port)
            site.wait_listening(host.procs["imapd"], host.imap_port)
        haproxy = site.spawn(
            "haproxy",
            site.lb_netns,
            ["haproxy", "-db", "-f", str(haproxy_config(site, demo))],
            tmp_path / "haproxy.log",
        )
        site.wait_listening(haproxy, demo.pop3_port, demo.imap_port)
        demo.haproxy_pid = haproxy.popen.pid
        yield demo
    finally:
        site.close()


# -- the clients ---------------------------------------------------------------------------------


def message(token: str) -> bytes:
    return f"Subject: {token}\r\nFrom: demo@example.org\r\n\r\nbody of {token}\r\n".encode()


def appenduid(data: list[bytes]) -> tuple[int, int]:
    found = re.search(rb"\[APPENDUID (\d+) (\d+)\]", b" ".join(d for d in data if d))
    assert found, data
    return int(found[1]), int(found[2])


def imap_client(demo: Demo, user: str, client: int) -> None:
    """Append in two sessions, then flag and expunge what it appended in a third, then fetch
    everything in a fourth: four sessions, which round robin spreads over both backends."""
    mine: dict[str, list[tuple[str, int]]] = {folder: [] for folder in FOLDERS}
    for half in (range(0, APPENDS // 2), range(APPENDS // 2, APPENDS)):
        with session(demo, "imap") as imap:
            imap.login(user, PASSWORD)
            demo.count(demo.logins, "imap")
            imap.create("Archive")  # NO when it exists: both clients, on both hosts, try
            for n in half:
                token = f"{user}-c{client}-{n}"
                folder = FOLDERS[n % 2]
                typ, data = imap.append(folder, "", None, message(token))
                assert typ == "OK", data
                validity, uid = appenduid(data)
                demo.appended[token] = (folder, validity, uid)
                mine[folder].append((token, uid))
            imap.logout()
    with session(demo, "imap") as imap:
        imap.login(user, PASSWORD)
        demo.count(demo.logins, "imap")
        for folder, items in mine.items():
            assert imap.select(folder)[0] == "OK"
            keep = ",".join(str(uid) for token, uid in items if not doomed(token))
            gone = ",".join(str(uid) for token, uid in items if doomed(token))
            assert imap.uid("STORE", keep, "+FLAGS.SILENT", r"(\Flagged)")[0] == "OK"
            assert imap.uid("STORE", gone, "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
            assert imap.uid("EXPUNGE", gone)[0] == "OK"
        imap.logout()
    with session(demo, "imap") as imap:
        imap.login(user, PASSWORD)
        demo.count(demo.logins, "imap")
        for folder in FOLDERS:
            assert imap.select(folder, readonly=True)[0] == "OK"
            typ, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
            for _ in range(20):
                # The user's other client may be expunging in this folder right now: the data
                # of the messages still there, then NO [EXPUNGEISSUED] (RFC 2180 4.1.2); the
                # EXPUNGE comes with the next command.
                if typ == "OK" or b"[EXPUNGEISSUED]" not in data[-1]:
                    break
                imap.noop()
                typ, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
            assert typ == "OK", (folder, data)
            bodies = [part[1] for part in data if isinstance(part, tuple)]
            assert all(SUBJECT.search(body) for body in bodies), "whole messages"
        imap.logout()


def doomed(token: str) -> bool:
    return doomed_append(int(token.rsplit("-", 1)[1]))


def pop_client(demo: Demo, user: str) -> None:
    """Retrieve everything and delete the doomed seeds (committed at QUIT), then retrieve all
    again in a second session and find none of them."""
    deleted = False
    for _ in range(200):
        with session(demo, "pop3") as pop:
            pop.user(user)
            try:
                pop.pass_(PASSWORD)
            except poplib.error_proto as exc:
                assert b"[IN-USE]" in exc.args[0], exc  # its last session, not gone yet
                time.sleep(0.05)
                continue
            demo.count(demo.logins, "pop3")
            count = len(pop.list()[1])
            for n in range(1, count + 1):
                body = b"\n".join(pop.retr(n)[1])
                subject = SUBJECT.search(body)
                assert subject, body
                token = subject[1].decode()
                if deleted:
                    assert not is_doomed_seed(token), token
                elif is_doomed_seed(token):
                    pop.dele(n)
            pop.quit()
            if deleted:
                return
            deleted = True
    raise AssertionError(f"{user}: the maildrop stayed in use (200 tries)")


def is_doomed_seed(token: str) -> bool:
    return "-seed-" in token and doomed_seed(int(token.rsplit("-", 1)[1]))


@contextlib.contextmanager
def session(demo: Demo, protocol: str) -> Iterator[imaplib.IMAP4 | poplib.POP3]:
    """One connection through HAProxy, counted as a session made."""
    demo.count(demo.sessions, protocol)
    client: imaplib.IMAP4 | poplib.POP3
    if protocol == "imap":
        client = Imap(demo.site.lb_address, demo.imap_port, demo.source)
    else:
        client = Pop(demo.site.lb_address, demo.pop3_port, demo.source)
    try:
        yield client  # type: ignore[misc]
    finally:
        with contextlib.suppress(OSError):
            client.sock.close() if protocol == "imap" else client.close()


def run_clients(demo: Demo) -> float:
    jobs = [(imap_client, user, n) for user in USERS for n in range(IMAP_CLIENTS)]
    jobs += [(pop_client, user) for user in USERS]
    started = time.monotonic()
    with threads_in(demo.site.client_netns, len(jobs) if demo.concurrent else 1) as pool:
        futures: list[Future[None]] = [pool.submit(job[0], demo, *job[1:]) for job in jobs]
        for future in futures:
            future.result()
    return time.monotonic() - started


# -- the checks ----------------------------------------------------------------------------------


def scrape(host: Host) -> dict[tuple[str, str], float]:
    """host's mailstatd metrics, read on its own loopback (inside its namespace)."""

    def get() -> str:
        url = f"http://127.0.0.1:{host.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=TIMEOUT) as reply:
            return reply.read().decode()

    samples: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(in_netns(host.netns, get)):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[sample.name, labels] = sample.value
    return samples


def all_sessions_over(demo: Demo) -> bool:
    for host in demo.hosts:
        m = scrape(host)
        if any(
            m.get(("maildaemons_connections_current", f"protocol={p}"), 0) for p in ("pop3", "imap")
        ):
            return False
    return True


def check_metrics(demo: Demo) -> list[dict[tuple[str, str], float]]:
    wait_for(lambda: all_sessions_over(demo), timeout=30, what="every session's end in the metrics")
    scraped = [scrape(host) for host in demo.hosts]
    for protocol in ("pop3", "imap"):
        total = [
            m.get(("maildaemons_connections_total", f"protocol={protocol}"), 0) for m in scraped
        ]
        assert sum(total) == demo.sessions[protocol], (protocol, total, demo.sessions)
        assert all(n > 0 for n in total), f"both backends served {protocol}: {total}"
        ok = sum(
            m.get(("maildaemons_logins_total", f"protocol={protocol},result=ok"), 0)
            for m in scraped
        )
        assert ok == demo.logins[protocol]
    return scraped


def check_maildir(demo: Demo) -> int:
    """Every message that must be there is, exactly once; nothing else is."""
    total = 0
    for user in USERS:
        for folder in FOLDERS:
            path = demo.site.shared / user / ("" if folder == "INBOX" else f".{folder}")
            found: Counter[str] = Counter()
            for sub in ("cur", "new"):
                for entry in (path / sub).iterdir():
                    subject = SUBJECT.search(entry.read_bytes())
                    assert subject, entry
                    found[subject[1].decode()] += 1
            expected = expected_tokens(demo, user, folder)
            assert set(found) == expected, (user, folder, set(found) ^ expected)
            assert all(n == 1 for n in found.values()), found.most_common(3)
            total += len(found)
    return total


def expected_tokens(demo: Demo, user: str, folder: str) -> set[str]:
    tokens = {
        t for t, (f, _, _) in demo.appended.items() if f == folder and t.startswith(f"{user}-")
    }
    tokens = {t for t in tokens if not doomed(t)}
    if folder == "INBOX":
        tokens |= {f"{user}-seed-{n}" for n in range(SEEDS) if not doomed_seed(n)}
    return tokens


def backend_view(
    demo: Demo, host: Host, user: str, folder: str
) -> tuple[int, list[tuple[int, str, bool]]]:
    """UIDVALIDITY and (uid, token, flagged) in sequence order, as `host` shows the folder to a
    session that comes straight from the balancer's address with a header naming CHECKER."""

    def look() -> tuple[int, list[tuple[int, str, bool]]]:
        header = v2(CHECKER, 40000, host.address, host.imap_port)
        imap = Imap(host.address, host.imap_port, None, header)
        imap.login(user, PASSWORD)
        imap.select(folder, readonly=True)
        validity = int(imap.response("UIDVALIDITY")[1][0])
        typ, data = imap.fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        rows = []
        for part in data:
            if not isinstance(part, tuple):
                continue
            uid = int(re.search(rb"UID (\d+)", part[0])[1])  # type: ignore[index]
            token = SUBJECT.search(part[1])[1].decode()  # type: ignore[index]
            rows.append((uid, token, b"\\Flagged" in part[0]))
        imap.logout()
        return validity, rows

    return in_netns(demo.site.lb_netns, look)


def check_uids(demo: Demo) -> None:
    for user in USERS:
        for folder in FOLDERS:
            views = [backend_view(demo, host, user, folder) for host in demo.hosts]
            assert views[0] == views[1], f"{user} {folder}: the backends disagree"
            validity, rows = views[0]
            uids = [uid for uid, _, _ in rows]
            assert uids == sorted(set(uids)), f"{user} {folder}: UIDs not unique and ascending"
            expected = expected_tokens(demo, user, folder)
            assert sorted(token for _, token, _ in rows) == sorted(expected), "each once"
            for uid, token, flagged in rows:
                if token in demo.appended:
                    assert demo.appended[token][1:] == (validity, uid), "APPENDUID's UID stays"
                    assert flagged, token


def check_logs_and_relay(demo: Demo) -> None:
    client, proxy = demo.site.client_address, demo.site.lb_address
    line = re.compile(r"\{\d+\} (\S+) ")
    for host in demo.hosts:
        for daemon in ("pop3d", "imapd"):
            log = host.log(daemon)
            assert "Traceback" not in log and "internal error" not in log, log[-2000:]
            addresses = set(line.findall(log))
            assert addresses <= {client, CHECKER}, (host.name, daemon, addresses)
            assert re.search(rf"\{{\d+\}} {re.escape(client)} login user=user\d", log)
            assert f"{client} connect via {proxy} (PROXY v2)" in log
            assert "refused" not in log
        lines = (host.state / "open-smtp").read_text().splitlines()
        relayed = {entry.split(":", 1)[0] for entry in lines}
        assert relayed == {client, CHECKER}, lines  # never the balancer


# -- the tests -----------------------------------------------------------------------------------


def run_demo(demo: Demo, variant: str) -> None:
    elapsed = run_clients(demo)
    scraped = check_metrics(demo)
    messages = check_maildir(demo)
    check_uids(demo)
    check_logs_and_relay(demo)
    split = " / ".join(
        f"{h.name} {int(m.get(('maildaemons_connections_total', 'protocol=pop3'), 0))} POP3 "
        f"{int(m.get(('maildaemons_connections_total', 'protocol=imap'), 0))} IMAP"
        for h, m in zip(demo.hosts, scraped, strict=True)
    )
    made = demo.sessions["pop3"] + demo.sessions["imap"]
    note(
        f"scale-out demo ({variant}, {process_model()} model)",
        f"  {len(USERS)} users, {len(USERS) * (IMAP_CLIENTS + 1)} clients "
        f"{'at once' if demo.concurrent else 'one at a time'} through "
        f"HAProxy: {made} sessions in {elapsed:.2f} s ({made / elapsed:.0f}/s), "
        f"{len(demo.appended)} messages appended, {messages} kept\n"
        f"  sessions per backend (their metrics): {split}",
    )


def test_two_backends_behind_haproxy_in_network_namespaces(tmp_path: Path) -> None:
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(f"{reason}: test_two_backends_behind_haproxy_on_loopback runs instead")
    with demo_site(tmp_path, namespaces=True) as demo:
        run_demo(demo, "network namespaces")


def test_two_backends_behind_haproxy_on_loopback(tmp_path: Path) -> None:
    """The variant for machines without namespaces, run everywhere: in a namespace of its own
    where there are namespaces, else on the machine's loopback."""
    isolated = not namespaces_unavailable()
    with demo_site(tmp_path, namespaces=False, isolated=isolated) as demo:
        run_demo(demo, "loopback" + (", in a namespace" if isolated else ""))
