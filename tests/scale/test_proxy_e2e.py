"""The PROXY protocol on every listener, end to end (issue 18): real pop3d, imapd, imapgw, msmpd
and mailstatd processes on loopback; the test plays the load balancer from 127.0.0.1 (trusted)
and an untrusted peer from 127.0.0.2, and sends v1 and v2 headers naming documentation
addresses (192.0.2.0/24 trusted for plaintext logins, 198.51.100.0/24 not) as the clients.

The real client then drives everything the address drives: the session's log lines, the
per-address limit, the plaintext decision, the fail2ban line, the relay file, the stats
collector's live sessions and MSMP LOGS. Bad input (an untrusted peer, a malformed header, none,
one that never completes) closes the connection without a byte and logs one line; a slow header
holds up no other connection. scripts/test runs this folder in both process models.
"""

from __future__ import annotations

import re
import signal
import socket
import ssl
from collections.abc import Callable

import pytest

from common.stats import query as stats_query
from support.clients import LineClient
from support.daemons import Daemon, DaemonFactory, free_port, reloads, wait_for
from support.proxyproto import V2_SIGNATURE, connect, v1, v2, v2_local
from support.site import MailSite, deliver
from support.tls import Pki

pytestmark = pytest.mark.timeout(120)

PROXY = "127.0.0.1"  # the load balancer: in proxy_trusted
STRANGER = "127.0.0.2"  # another peer: not
TRUSTED_CLIENT = "192.0.2.7"  # a client inside trusted_networks
OTHER_CLIENT = "192.0.2.8"
OUTSIDE_CLIENT = "198.51.100.9"  # a client outside trusted_networks
ADMIN = ("-a", "admin:adminpw")
FAIL2BAN = re.compile(r"pop3 auth failed for user (\S+) from (\S+)$", re.M)
COMMON = (
    f"proxy_trusted = {PROXY}\n"
    "trusted_networks = 192.0.2.0/24 2001:db8::/32\n"
    "max_per_address = 2\n"
    "workers = 1\n"  # pool model: one worker, so a waiting header shares its thread with all
)


def config(site: MailSite, sections: str, proxy_timeout: float = 2.0) -> str:
    (site.root / "users").write_text("alice:{PLAIN}secret\nbob:{PLAIN}pw\n")
    return site.config(COMMON + f"proxy_timeout = {proxy_timeout}\n" + sections)


def greeted(sock: socket.socket, greeting: bytes = b"+OK") -> LineClient:
    client = LineClient(sock)
    first = client.line()
    assert first.startswith(greeting), first
    return client


def pop_login(client: LineClient, user: str = "alice", password: str = "secret") -> bytes:  # noqa: S107
    client.send(f"USER {user}\r\n".encode())
    reply = client.line()
    if not reply.startswith(b"+OK"):
        return reply
    client.send(f"PASS {password}\r\n".encode())
    return client.line()


def quit_pop(client: LineClient) -> None:
    client.send(b"QUIT\r\n")
    assert client.line().startswith(b"+OK")
    assert client.closed()


def refused_silently(sock: socket.socket) -> bool:
    """The server closed the connection without sending a byte."""
    sock.settimeout(10)
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True
    finally:
        sock.close()


def start_stats(daemons: DaemonFactory, site: MailSite) -> Daemon:
    stats = daemons.start("mailstatd", config=site.config(), wait=False)
    wait_for(lambda: stats_query.ping(site.run / "mailstatd.sock", 0.5), what="mailstatd")
    return stats


def live_addresses(site: MailSite) -> list[str]:
    return [s["addr"] for s in stats_query.stat(site.run / "mailstatd.sock")["logged_in"]]


# -- pop3d: the real client drives everything -----------------------------------------------


@pytest.fixture
def pop_stack(daemons: DaemonFactory, site: MailSite) -> tuple[Daemon, Daemon]:
    """mailstatd, msmpd (for LOGS) and a pop3d whose plain port expects a PROXY header."""
    deliver(site.maildir("alice"), b"Subject: one\n\nbody\n")
    start_stats(daemons, site)
    sections = "[relay]\nenabled = yes\n[pop3d]\nproxy_protocol = port\n"
    pop3 = daemons.start("pop3d", "-l", "127.0.0.1", config=config(site, sections))
    msmpd = daemons.start("msmpd", "-L", "127.0.0.1", *ADMIN, config=site.config())
    return pop3, msmpd


@pytest.mark.parametrize("make_header", [v1, v2], ids=["v1", "v2"])
def test_pop3_the_real_client_drives_logs_trust_relay_stats_and_logs(
    pop_stack: tuple[Daemon, Daemon], site: MailSite, make_header: Callable[..., bytes]
) -> None:
    pop3, msmpd = pop_stack
    version = 1 if make_header is v1 else 2
    # From a trusted network (the real client's, not the proxy's): a login in clear is fine.
    client = greeted(connect(pop3.port, make_header(TRUSTED_CLIENT, 51000), source=PROXY))
    assert pop_login(client).startswith(b"+OK Logged in")
    wait_for(lambda: live_addresses(site) == [TRUSTED_CLIENT], what="the live session's address")
    quit_pop(client)
    # From outside it: refused before any password, though the proxy is on loopback.
    client = greeted(connect(pop3.port, make_header(OUTSIDE_CLIENT), source=PROXY))
    assert pop_login(client).startswith(b"-ERR [AUTH]")
    quit_pop(client)
    # A failed login: the fail2ban line names the real client.
    client = greeted(connect(pop3.port, make_header(OTHER_CLIENT), source=PROXY))
    assert pop_login(client, password="wrong").startswith(b"-ERR")
    quit_pop(client)

    log = pop3.log()
    assert f"{TRUSTED_CLIENT} connect via {PROXY} (PROXY v{version})" in log
    assert re.search(rf"\{{\d+\}} {re.escape(TRUSTED_CLIENT)} login user=alice$", log, re.M)
    assert FAIL2BAN.findall(log) == [("alice", OTHER_CLIENT)]
    assert f"{OUTSIDE_CLIENT} plaintext login refused" in log
    assert not re.search(rf"\}} {re.escape(PROXY)} ", log), "no session line names the proxy"
    # The relay file holds the client, never the proxy (IMAP/POP-before-SMTP).
    wait_for(lambda: f"relay: opened for {TRUSTED_CLIENT}" in pop3.log(), what="relay hook")
    entries = (site.state / "open-smtp").read_text()
    assert entries.startswith(f"{TRUSTED_CLIENT}:") and PROXY not in entries
    # MSMP LOGS (mailstatd's access log) shows where alice came from.
    with socket.create_connection(("127.0.0.1", msmpd.port), timeout=10) as sock:
        admin = greeted(sock)
        admin.send(b"USER admin\r\nPASS adminpw\r\nLOGS alice\r\n")
        assert admin.line() == b"+OK\r\n" and admin.line() == b"+OK Logged in\r\n"
        logs = admin.until(b".\r\n").decode()
    assert logs.startswith("+OK") and f"IP: {TRUSTED_CLIENT}\r\n" in logs
    assert f"IP: {PROXY}" not in logs


def test_ipv6_clients_and_local_headers(pop_stack: tuple[Daemon, Daemon]) -> None:
    pop3, _ = pop_stack
    client = greeted(connect(pop3.port, v1("2001:db8::7"), source=PROXY))
    assert pop_login(client).startswith(b"+OK Logged in"), "2001:db8::/32 is trusted"
    quit_pop(client)
    client = greeted(connect(pop3.port, v2("2001:db8::9", 7000), source=PROXY))
    quit_pop(client)
    # LOCAL (a health check of the proxy's own) and v1 UNKNOWN: the peer is the client.
    for header in (v2_local(), b"PROXY UNKNOWN\r\n"):
        quit_pop(greeted(connect(pop3.port, header, source=PROXY)))
    log = pop3.log()
    assert "2001:db8::7 login user=alice" in log and "2001:db8::9 connect" in log
    assert log.count(f"{PROXY} connect via {PROXY}") == 2


def test_the_per_address_limit_counts_real_clients(pop_stack: tuple[Daemon, Daemon]) -> None:
    pop3, _ = pop_stack
    # Three connections from the one proxy; max_per_address = 2 holds per real client.
    held = [greeted(connect(pop3.port, v2(TRUSTED_CLIENT, 100 + n), source=PROXY)) for n in (0, 1)]
    other = greeted(connect(pop3.port, v2(OTHER_CLIENT), source=PROXY))
    third = LineClient(connect(pop3.port, v1(TRUSTED_CLIENT, 102), source=PROXY))
    assert (
        third.line()
        == b"-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n"
    )
    assert third.closed()
    assert f"refused {TRUSTED_CLIENT}: address limit reached" in pop3.log()
    for client in [*held, other]:
        quit_pop(client)


# -- bad input: closed without a byte, one log line each -------------------------------------


def test_untrusted_malformed_missing_and_slow_headers_are_refused(
    daemons: DaemonFactory, site: MailSite
) -> None:
    pop3 = daemons.start(
        "pop3d", "-l", "127.0.0.1",
        config=config(site, "[pop3d]\nproxy_protocol = port\n", proxy_timeout=1.0),
    )  # fmt: skip
    cases = [
        # (peer, what it sends, the log line's reason)
        (STRANGER, v2(TRUSTED_CLIENT), f"refused {STRANGER}: not a trusted proxy (proxy_trusted)"),
        (PROXY, b"USER alice\r\n", f"refused {PROXY}: no PROXY header"),
        (PROXY, b"PROXY TCP4 192.0.2.7 127.0.0.1 1 2\n\r\n", f"refused {PROXY}: bad port in PROXY"),
        (PROXY, b"PROXY TCP5 192.0.2.7 127.0.0.1 1 2\r\n", f"refused {PROXY}: malformed PROXY v1"),
        (PROXY, b"PROXY TCP4 192.0.2.700 127.0.0.1 1 2\r\n", f"refused {PROXY}: bad address"),
        (PROXY, b"PROXY " + b"9" * 120, f"refused {PROXY}: malformed PROXY v1 line"),
        (PROXY, V2_SIGNATURE + b"\x31\x11\x00\x0c", f"refused {PROXY}: unsupported PROXY v2"),
        (PROXY, V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "unknown PROXY v2 command"),
        (PROXY, V2_SIGNATURE + b"\x21\x11\x10\x01", f"refused {PROXY}: PROXY v2 header too"),
        (PROXY, b"", f"refused {PROXY}: PROXY header not received in time"),
        (PROXY, b"PROXY TCP4 192.0.2.7 ", f"refused {PROXY}: PROXY header not received in time"),
    ]
    for peer, data, line in cases:
        before = pop3.log().count(line)
        assert refused_silently(connect(pop3.port, data, source=peer)), data
        wait_for(lambda line=line, before=before: pop3.log().count(line) > before, what=line)
    assert "Traceback" not in pop3.log()
    # A client that closes in the middle of its header: one line too.
    sock = connect(pop3.port, b"PROXY TCP4 192.0.2.7", source=PROXY)
    sock.shutdown(socket.SHUT_WR)
    assert refused_silently(sock)
    wait_for(lambda: "connection closed in the PROXY header" in pop3.log(), what="EOF line")
    # After all that, the proxy's next client is served as ever.
    client = greeted(connect(pop3.port, v1(TRUSTED_CLIENT), source=PROXY))
    assert pop_login(client).startswith(b"+OK Logged in")
    quit_pop(client)


def test_a_slow_header_holds_up_no_other_connection(daemons: DaemonFactory, site: MailSite) -> None:
    """The header is read where connections are accepted (the fork master, the pool worker's
    main thread: `workers = 1` here, so all share it), and never by blocking there."""
    pop3 = daemons.start(
        "pop3d", "-l", "127.0.0.1",
        config=config(site, "[pop3d]\nproxy_protocol = port\n", proxy_timeout=60.0),
    )  # fmt: skip
    header = v2(OTHER_CLIENT, 4321)
    # The factory's start-up probe connected and closed without a header: its line first.
    wait_for(lambda: "connection closed before the PROXY header" in pop3.log(), what="probe")
    refusals = pop3.log().count("refused")
    slow = connect(pop3.port, header[:7], source=PROXY)
    silent = connect(pop3.port, b"", source=PROXY)
    for n in range(3):
        client = greeted(connect(pop3.port, v1(TRUSTED_CLIENT, 2000 + n), source=PROXY))
        assert pop_login(client).startswith(b"+OK Logged in")
        quit_pop(client)
    assert pop3.log().count("refused") == refusals, "the slow and the silent one still wait"
    slow.sendall(header[7:])
    quit_pop(greeted(slow))
    assert f"{OTHER_CLIENT} connect" in pop3.log()
    silent.close()


# -- imapd: the implicit-TLS port reads the header before the handshake ----------------------


def test_imapd_tls_port_takes_the_header_before_the_handshake(
    daemons: DaemonFactory, site: MailSite, pki: Pki
) -> None:
    site.maildir("alice")
    start_stats(daemons, site)
    tls_port = free_port()
    sections = f"{pki.config()}[imapd]\ntls_port = {tls_port}\nproxy_protocol = tls_port\n"
    imapd = daemons.start("imapd", "-l", "127.0.0.1", config=config(site, sections))
    wait_for(lambda: port_answers(tls_port), what="the TLS port")
    sock = pki.wrap(connect(tls_port, v2(OUTSIDE_CLIENT, 993, dport=993), source=PROXY))
    client = greeted(sock, b"* OK")
    client.send(b"a LOGIN alice secret\r\n")
    assert client.line().startswith(b"a OK"), "over TLS a password in clear is fine"
    wait_for(lambda: live_addresses(site) == [OUTSIDE_CLIENT], what="the live session's address")
    client.send(b"b LOGOUT\r\n")
    assert client.until(b"b OK Logout completed\r\n")
    sock.close()
    # The plain port was not named: no header expected there, the peer is the client.
    client = greeted(socket.create_connection(("127.0.0.1", imapd.port), timeout=10), b"* OK")
    client.send(b"c LOGOUT\r\n")
    assert client.until(b"c OK Logout completed\r\n")
    # A TLS client straight at the PROXY port: its ClientHello is no header.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        pki.wrap(connect(tls_port, b"", source=PROXY)).recv(10)
    wait_for(lambda: f"refused {PROXY}: no PROXY header" in imapd.log(), what="refusal line")
    log = imapd.log()
    assert f"{OUTSIDE_CLIENT} connect (TLS port) via {PROXY} (PROXY v2)" in log
    assert f"{OUTSIDE_CLIENT} login user=alice" in log
    assert "127.0.0.1 connect\n" in log


def port_answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


# -- imapgw and msmpd ------------------------------------------------------------------------


def test_gateway_and_msmpd_take_the_header_too(daemons: DaemonFactory, site: MailSite) -> None:
    sections = "[imapgw]\nproxy_protocol = port\n[msmpd]\nproxy_protocol = port\n"
    conf = config(site, sections)
    gateway = daemons.start("imapgw", "-l", "127.0.0.1", config=conf)
    msmpd = daemons.start("msmpd", "-L", "127.0.0.1", *ADMIN, config=conf)

    client = greeted(connect(gateway.port, v1(OUTSIDE_CLIENT, dport=4711), source=PROXY), b"OK")
    client.send(b"headers#0#10.9.9.9#alice#secret#INBOX$")
    assert client.line().startswith(b"NO "), "a host outside imap_host_allow"
    assert refused_silently(connect(gateway.port, b"headers#0#", source=STRANGER))
    wait_for(lambda: f"{OUTSIDE_CLIENT} session end" in gateway.log(), what="gateway session")
    assert f"{OUTSIDE_CLIENT} connect" in gateway.log()
    assert f"refused {STRANGER}: not a trusted proxy" in gateway.log()

    # msmpd: USER/PASS in clear only from a trusted real client.
    admin = greeted(connect(msmpd.port, v2(TRUSTED_CLIENT, dport=4321), source=PROXY))
    admin.send(b"USER admin\r\nPASS adminpw\r\nQUIT\r\n")
    assert admin.line() == b"+OK\r\n" and admin.line() == b"+OK Logged in\r\n"
    outsider = greeted(connect(msmpd.port, v2(OUTSIDE_CLIENT, dport=4321), source=PROXY))
    outsider.send(b"USER admin\r\n")
    assert outsider.line().startswith(b"-ERR")
    assert admin.line().startswith(b"+OK") and admin.closed()
    outsider.close()
    log = msmpd.log()
    assert f"{TRUSTED_CLIENT} login admin=admin" in log
    assert f"{OUTSIDE_CLIENT} plaintext login refused" in log


# -- configuration errors stop the start with one line ---------------------------------------


@pytest.mark.parametrize(
    ("daemon", "flags", "section", "error"),
    [
        (
            "pop3d",
            ("-l", "127.0.0.1"),
            "[pop3d]\nproxy_protocol = port\n",
            "proxy_protocol needs proxy_trusted",
        ),
        (
            "imapd",
            ("-l", "127.0.0.1"),
            "proxy_trusted = 127.0.0.1\n[imapd]\nproxy_protocol = tls_port\n",
            "proxy_protocol names tls_port, but imapd's tls_port is not set",
        ),
        (
            "imapgw",
            ("-l", "127.0.0.1"),
            "proxy_trusted = 127.0.0.1\n[imapgw]\nproxy_protocol = tls_port\n",
            "proxy_protocol names tls_port, but imapgw's tls_port is not one of its keys",
        ),
        (
            "msmpd",
            ("-L", "127.0.0.1"),
            "proxy_trusted = 127.0.0.1\n[msmpd]\nproxy_protocol = yes\n",
            "setting proxy_protocol must be port, tls_port, both or empty, not 'yes'",
        ),
        (
            "pop3d",
            ("-l", "127.0.0.1"),
            "proxy_trusted = 10.0.0.0/33\n",
            "setting proxy_trusted must be IP addresses or networks",
        ),
    ],
)
def test_bad_proxy_settings_stop_the_start(
    daemons: DaemonFactory,
    site: MailSite,
    daemon: str,
    flags: tuple[str, ...],
    section: str,
    error: str,
) -> None:
    started = daemons.start(daemon, *flags, config=site.config(section), wait=False)
    assert started.proc.wait(30) == 1
    assert error in started.log()
    assert "Traceback" not in started.log()


def test_hup_turns_the_proxy_protocol_on(daemons: DaemonFactory, site: MailSite) -> None:
    """proxy_protocol is read again on HUP (the listeners stay, what they expect changes)."""
    pop3 = daemons.start("pop3d", "-l", "127.0.0.1", config=config(site, ""))
    quit_pop(greeted(socket.create_connection(("127.0.0.1", pop3.port), timeout=10)))
    conf = pop3.root / f"pop3d-{pop3.port}.conf"
    conf.write_text(conf.read_text() + "[pop3d]\nproxy_protocol = port\n")
    before = reloads(pop3)
    pop3.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads(pop3) > before, what="the reload")  # pool: in the worker too
    quit_pop(greeted(connect(pop3.port, v1(OTHER_CLIENT), source=PROXY)))
    assert f"{OTHER_CLIENT} connect" in pop3.log()
