"""IMAP/POP-before-SMTP end to end (issue 8, seed 002): real pop3d, imapd and msmpd processes,
clients bound to other loopback addresses (127.0.0.2, 127.0.0.3, ...), the installed
`clearopensmtp`, and Debian's `tcprulescheck` (ucspi-tcp) reading the tcp.smtp.cdb we build.

No timing assertions: every wait polls until a deadline, and the one test about order (the login
reply comes before the relay work) holds the relay work back with a gate the test opens itself.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.clients import LineClient
from support.daemons import BIN, Daemon, DaemonFactory, port_open, reloads, wait_for
from support.site import MailSite

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        not (shutil.which("tcprules") and shutil.which("tcprulescheck")),
        reason="needs Debian's ucspi-tcp (tcprules, tcprulescheck; see tests/apt-packages)",
    ),
]

CLEAROPENSMTP = BIN / "clearopensmtp"
USER, PASSWORD = "alice", "pw"
PROTOCOLS = ["pop3d", "imapd"]
RULE = 'allow,RELAYCLIENT=""'
ENTRY = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}):allow,RELAYCLIENT=\"\"\t(\d+)")
TIMEOUT = 10.0  # every socket operation

# Exit codes of clearopensmtp (see its --help).
OK, LOCK_BUSY, MALFORMED = 0, 2, 5


# --------------------------------------------------------------------------------- clients


class Client:
    """A raw-socket POP3 or IMAP client whose connection comes from a chosen source address."""

    def __init__(self, protocol: str, port: int, source: str, host: str = "127.0.0.1") -> None:
        self.protocol = protocol
        sock = socket.create_connection((host, port), timeout=TIMEOUT, source_address=(source, 0))
        self.io = LineClient(sock)
        self.tags = 0
        greeting = self.io.line()
        assert greeting.startswith(b"+OK " if self.pop else b"* OK "), greeting

    @property
    def pop(self) -> bool:
        return self.protocol == "pop3d"

    def send(self, text: str) -> str:
        """Send one command, return its tag ("" for POP3); read the reply with reply()."""
        if self.pop:
            self.io.send(f"{text}\r\n".encode())
            return ""
        self.tags += 1
        tag = f"t{self.tags}"
        self.io.send(f"{tag} {text}\r\n".encode())
        return tag

    def reply(self, tag: str = "") -> bytes:
        """POP3: the status line; IMAP: the tagged line (untagged lines are skipped)."""
        if self.pop:
            return self.io.line()
        while True:
            line = self.io.line()
            if line.startswith(f"{tag} ".encode()):
                return line

    def command(self, text: str) -> bytes:
        return self.reply(self.send(text))

    def ok(self, reply: bytes) -> bool:
        return reply.startswith(b"+OK") if self.pop else reply.split(b" ", 2)[1:2] == [b"OK"]

    def login(self, user: str = USER, password: str = PASSWORD) -> bytes:
        """The login's final reply; POP3 sends USER and PASS, IMAP one LOGIN."""
        if self.pop:
            assert self.command(f"USER {user}").startswith(b"+OK")
            return self.command(f"PASS {password}")
        return self.command(f"LOGIN {user} {password}")

    def in_session(self) -> bytes:
        """A command that only works for a logged-in user."""
        return self.command("STAT" if self.pop else "SELECT INBOX")

    def before_login(self) -> bytes:
        """A harmless command of the not-yet-authenticated state."""
        if not self.pop:
            return self.command("CAPABILITY")
        reply = self.command("CAPA")
        if reply.startswith(b"+OK"):
            self.io.until(b".\r\n")  # the capability list
        return reply

    def quit(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            assert self.ok(self.command("QUIT" if self.pop else "LOGOUT"))
        self.io.close()


@contextlib.contextmanager
def connected(daemon: Daemon, source: str, host: str = "127.0.0.1") -> Iterator[Client]:
    client = Client(daemon.name, daemon.port, source, host)
    try:
        yield client
    finally:
        client.quit()


def log_in(daemon: Daemon, source: str, host: str = "127.0.0.1") -> None:
    """One whole successful session: login, a command, logout."""
    with connected(daemon, source, host) as client:
        reply = client.login()
        assert client.ok(reply), reply
        assert client.ok(client.in_session())


# ----------------------------------------------------------------------------- the relay site


@dataclass
class RelaySite:
    """One site's config (file and text) with its daemons and relay files."""

    site: MailSite
    daemons: DaemonFactory
    conf: Path
    text: str

    @property
    def open_smtp(self) -> Path:
        return self.site.state / "open-smtp"

    @property
    def cdb(self) -> Path:
        return self.site.state / "tcp.smtp.cdb"

    @property
    def lock(self) -> Path:
        return self.site.state / "open-smtp.lock"

    def start(
        self, name: str, listen: str = "127.0.0.1", users: tuple[str, ...] = (USER,)
    ) -> Daemon:
        logins = [arg for user in users for arg in ("-u", f"{user}:{PASSWORD}")]
        return self.daemons.start(
            name, "-l", listen, *self.site.common_args(), *logins, config=self.text
        )

    def clear(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The installed console script, as cron runs it."""
        return subprocess.run(
            [str(CLEAROPENSMTP), "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def lines(self) -> list[str]:
        return self.open_smtp.read_text().splitlines() if self.open_smtp.exists() else []

    def entries(self) -> dict[str, int]:
        """address -> time stamp; every line must be a well-formed entry, each address once."""
        found: dict[str, int] = {}
        for line in self.lines():
            match = ENTRY.fullmatch(line)
            assert match, f"malformed open-smtp line {line!r}"
            assert match[1] not in found, f"duplicate entry for {match[1]}"
            found[match[1]] = int(match[2])
        return found

    def write_open_smtp(self, lines: list[str]) -> None:
        self.open_smtp.write_text("".join(f"{line}\n" for line in lines))

    def relay_files(self) -> list[str]:
        return sorted(
            p.name
            for p in self.site.state.iterdir()
            if p.name.startswith(("open-smtp", "tcp.smtp"))
        )


@pytest.fixture
def relay_site(site: MailSite, daemons: DaemonFactory) -> Callable[..., RelaySite]:
    """Factory: make(relay_section_lines, enabled=True) -> RelaySite; the daemons share it."""

    def make(extra: str = "", enabled: bool = True) -> RelaySite:
        section = f"[relay]\nenabled = yes\n{extra}" if enabled else extra
        text = site.config(section)
        conf = site.root / "maildaemons.conf"
        conf.write_text(text)
        return RelaySite(site, daemons, conf, text)

    return make


def tcprulescheck(cdb: Path, ip: str) -> list[str]:
    """What tcpserver would do for a client at `ip`, in tcprulescheck's words."""
    proc = subprocess.run(
        ["tcprulescheck", str(cdb)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={"PATH": os.environ["PATH"], "TCPREMOTEIP": ip},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def relays(cdb: Path, ip: str) -> bool:
    out = tcprulescheck(cdb, ip)
    return out[-1] == "allow connection" and "set environment variable RELAYCLIENT=" in out


def log_lines(*daemons: Daemon) -> list[str]:
    return [line for d in daemons for line in d.log().splitlines()]


def opened(ip: str, *daemons: Daemon) -> bool:
    """The daemon logged that it recorded `ip` (whole line end: .2 is no prefix of .20)."""
    return any(line.endswith(f"relay: opened for {ip}") for line in log_lines(*daemons))


def not_opened(ip: str, *daemons: Daemon) -> list[str]:
    return [line for line in log_lines(*daemons) if f"relay: not opened for {ip}: " in line]


def wait_relay_done(ip: str, *daemons: Daemon) -> None:
    """Until the login hook for `ip` has finished one way or the other."""
    wait_for(
        lambda: opened(ip, *daemons) or not_opened(ip, *daemons),
        what=f"relay hook for {ip}\n" + "\n".join(log_lines(*daemons)),
    )


def wait_sessions_ended(daemon: Daemon, ip: str, count: int) -> None:
    """Until `count` sessions from `ip` have logged their end (hooks run before that)."""
    wait_for(
        lambda: daemon.log().count(f" {ip} session end ") >= count,
        what=f"{count} session ends from {ip}:\n{daemon.log()}",
    )


def unwritable_dir(root: Path) -> Path:
    """A path under which nothing can be created: a read-only directory, or (as root, who
    ignores permissions) a plain file standing where the directory should be."""
    path = root / "relay-dir"
    if os.geteuid() == 0:
        path.write_text("not a directory\n")
    else:
        path.mkdir()
        path.chmod(0o555)
    return path


# -------------------------------------------------------------------------------- recording


def test_logins_from_several_addresses_appear_in_open_smtp_and_cdb(relay_site) -> None:
    rs = relay_site()
    rs.site.state.joinpath("tcp.smtp").write_text('10.:deny\n127.0.0.1:allow,RELAYCLIENT=""\n')
    pop3d, imapd = rs.start("pop3d"), rs.start("imapd")
    logins = [
        (pop3d, "127.0.0.2"),
        (pop3d, "127.0.0.3"),
        (imapd, "127.0.0.4"),
        (imapd, "127.0.0.5"),
        (pop3d, "127.0.0.6"),
        (imapd, "127.0.0.7"),
    ]
    before = int(time.time())
    for daemon, ip in logins:
        log_in(daemon, ip)
        wait_relay_done(ip, daemon)
        assert opened(ip, daemon), not_opened(ip, daemon)
    # a returning client, over the other protocol, keeps one entry with a new stamp
    log_in(imapd, "127.0.0.2")
    wait_for(
        lambda: sum(line.endswith("opened for 127.0.0.2") for line in log_lines(imapd)),
        what="second login of 127.0.0.2",
    )

    entries = rs.entries()
    assert sorted(entries) == sorted(ip for _, ip in logins)
    assert all(before <= stamp <= time.time() + 1 for stamp in entries.values())
    for ip in entries:
        out = tcprulescheck(rs.cdb, ip)
        assert out == [f"rule {ip}:", "set environment variable RELAYCLIENT=", "allow connection"]
    # the site's own rules are compiled in too, and nobody else relays
    assert tcprulescheck(rs.cdb, "10.1.2.3") == ["rule 10.:", "deny connection"]
    assert relays(rs.cdb, "127.0.0.1")
    assert not relays(rs.cdb, "127.0.0.8")
    check = rs.clear("--check")
    assert (check.returncode, check.stderr) == (OK, "")
    assert not [line for line in log_lines(pop3d, imapd) if "Traceback" in line]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_failed_and_unauthenticated_sessions_record_nothing(relay_site, protocol: str) -> None:
    rs = relay_site()
    daemon = rs.start(protocol)
    with connected(daemon, "127.0.0.2") as client:
        reply = client.login(password="wrong")
        assert not client.ok(reply), reply
    with connected(daemon, "127.0.0.3") as client:
        assert client.ok(client.before_login())
        if client.pop:
            assert client.command(f"USER {USER}").startswith(b"+OK")  # a name, no password
    wait_sessions_ended(daemon, "127.0.0.2", 1)
    wait_sessions_ended(daemon, "127.0.0.3", 1)
    assert rs.relay_files() == []
    assert "relay:" not in daemon.log()


def test_msmp_admin_login_records_nothing(relay_site) -> None:
    """An MSMP session (the admin protocol) logs in too, but is no mail client to relay for."""
    rs = relay_site()
    msmpd = rs.daemons.start(
        "msmpd", "-L", "127.0.0.1", "-a", "admin:pw", *rs.site.common_args(), config=rs.text
    )
    client = LineClient(msmpd.connect(TIMEOUT, source="127.0.0.2"))
    try:
        assert client.line().startswith(b"+OK")
        for line in (b"USER admin", b"PASS pw", b"QUIT"):
            client.send(line + b"\r\n")
            reply = client.line()
            assert reply.startswith(b"+OK"), (line, reply)
    finally:
        client.close()
    wait_sessions_ended(msmpd, "127.0.0.2", 1)
    assert rs.relay_files() == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sasl_and_pipelined_logins_are_recorded(relay_site, protocol: str) -> None:
    """AUTH PLAIN / AUTHENTICATE PLAIN count, and so does a login pipelined with its logout."""
    rs = relay_site()
    daemon = rs.start(protocol)
    plain = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    with connected(daemon, "127.0.0.2") as client:
        reply = client.command(
            f"AUTH PLAIN {plain}" if client.pop else f"AUTHENTICATE PLAIN {plain}"
        )
        assert client.ok(reply), reply
        assert client.ok(client.in_session())
    client = Client(protocol, daemon.port, "127.0.0.3")
    try:
        if client.pop:
            client.io.send(f"USER {USER}\r\nPASS {PASSWORD}\r\nQUIT\r\n".encode())
            replies = [client.io.line() for _ in range(3)]
            assert all(r.startswith(b"+OK") for r in replies), replies
        else:
            client.io.send(f"a LOGIN {USER} {PASSWORD}\r\nb LOGOUT\r\n".encode())
            assert client.reply("a").startswith(b"a OK")
            assert client.reply("b").startswith(b"b OK")
        assert client.io.closed()
    finally:
        client.io.close()
    for ip in ("127.0.0.2", "127.0.0.3"):
        wait_relay_done(ip, daemon)
        assert opened(ip, daemon), daemon.log()
    assert sorted(rs.entries()) == ["127.0.0.2", "127.0.0.3"]
    assert relays(rs.cdb, "127.0.0.2") and relays(rs.cdb, "127.0.0.3")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("section", ["", "[relay]\nenabled = no\n"], ids=["default", "no"])
def test_relay_disabled_records_nothing(relay_site, protocol: str, section: str) -> None:
    rs = relay_site(section, enabled=False)
    daemon = rs.start(protocol)
    log_in(daemon, "127.0.0.2")
    wait_sessions_ended(daemon, "127.0.0.2", 1)
    assert rs.relay_files() == []
    assert "relay" not in daemon.log()


def ipv4_mapped_works() -> bool:
    """A dual-stack socket on :: accepts a client bound to ::ffff:127.0.0.5 on this host."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as server:
            server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            server.bind(("::", 0))
            server.listen()
            with socket.create_connection(
                ("::ffff:127.0.0.1", server.getsockname()[1]),
                timeout=2,
                source_address=("::ffff:127.0.0.5", 0),
            ):
                server.settimeout(2)
                server.accept()[0].close()
        return True
    except OSError:
        return False


def ipv6_loopback_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv4_mapped_works(), reason="no IPv6 / IPv4-mapped addresses here")
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ipv4_mapped_client_is_recorded_as_ipv4(relay_site, protocol: str) -> None:
    rs = relay_site()
    # `-l '*'` is the dual-stack socket on :: (an explicit `-l ::` is IPv6-only, by design)
    daemon = rs.start(protocol, listen="*")
    log_in(daemon, "::ffff:127.0.0.5", host="::ffff:127.0.0.1")
    wait_relay_done("127.0.0.5", daemon)
    assert opened("127.0.0.5", daemon), daemon.log()
    assert list(rs.entries()) == ["127.0.0.5"]
    assert "::ffff" not in rs.open_smtp.read_text()
    assert relays(rs.cdb, "127.0.0.5")
    if ipv6_loopback_works():
        # a real IPv6 client has no place in open-smtp: logged, not recorded, login fine
        log_in(daemon, "::1", host="::1")
        wait_for(
            lambda: "relay: ::1 is not an IPv4 client, not recorded" in daemon.log(),
            what="the IPv6 client's log line",
        )
        assert list(rs.entries()) == ["127.0.0.5"]


# --------------------------------------------------------------------- a broken relay setup


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unwritable_relay_directory_never_breaks_the_login(
    relay_site, site: MailSite, protocol: str
) -> None:
    broken = unwritable_dir(site.root)
    rs = relay_site(f"open_smtp = {broken / 'open-smtp'}\n")
    daemon = rs.start(protocol)
    with connected(daemon, "127.0.0.2") as client:
        reply = client.login()
        assert client.ok(reply), reply
        assert client.ok(client.in_session())  # the session goes on
        failures = wait_for(lambda: not_opened("127.0.0.2", daemon), what="the failure line")
    assert "cannot open lock file" in failures[0], failures
    assert "Traceback" not in daemon.log()
    assert daemon.proc.poll() is None
    log_in(daemon, "127.0.0.3")  # and the next one too
    assert rs.relay_files() == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unwritable_open_smtp_never_breaks_the_login(
    relay_site, site: MailSite, protocol: str
) -> None:
    """The lock can be taken but open-smtp cannot be written: login fine, nothing left behind."""
    broken = unwritable_dir(site.root)
    rs = relay_site(f"open_smtp = {broken / 'open-smtp'}\nlock_file = open-smtp.lock\n")
    daemon = rs.start(protocol)
    with connected(daemon, "127.0.0.2") as client:
        assert client.ok(client.login())
        assert client.ok(client.in_session())
        failures = wait_for(lambda: not_opened("127.0.0.2", daemon), what="the failure line")
    assert "cannot " in failures[0], failures  # read (root) or create a temporary file
    assert rs.relay_files() == ["open-smtp.lock"]  # no temporary file left behind


BAD_SECTIONS = {
    "lock_timeout": "enabled = yes\nlock_timeout = soon",
    "enabled": "enabled = perhaps",
    "rule": "enabled = yes\nrule = permit",
}


def login_works_despite_bad_section(rs: RelaySite, daemon: Daemon, ip: str) -> None:
    with connected(daemon, ip) as client:
        reply = client.login()
        assert client.ok(reply), reply
        assert client.ok(client.in_session())
    wait_sessions_ended(daemon, ip, 1)
    assert "Traceback" not in daemon.log()
    assert daemon.proc.poll() is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("bad", list(BAD_SECTIONS))
def test_bad_relay_settings_never_break_the_login(relay_site, protocol: str, bad: str) -> None:
    """A daemon refuses a bad [relay] section at start-up with one clear line, or it serves
    and every login works (without relaying, the problem logged): never a broken session."""
    rs = relay_site(f"[relay]\n{BAD_SECTIONS[bad]}\n", enabled=False)
    daemon = rs.daemons.start(
        protocol,
        "-l",
        "127.0.0.1",
        *rs.site.common_args(),
        "-u",
        f"{USER}:{PASSWORD}",
        config=rs.text,
        wait=False,
    )
    wait_for(
        lambda: daemon.proc.poll() is not None or port_open(daemon.port),
        what=f"{protocol} to start or refuse",
    )
    if daemon.proc.poll() is not None:
        assert daemon.proc.returncode != 0
        assert "[relay]" in daemon.log() and "Traceback" not in daemon.log(), daemon.log()
        return
    login_works_despite_bad_section(rs, daemon, "127.0.0.2")
    assert "relay: bad configuration, not relaying: [relay]" in daemon.log()
    assert rs.relay_files() == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_relay_settings_on_hup_never_break_the_login(relay_site, protocol: str) -> None:
    """HUP with a broken [relay]: the old configuration stays, or relaying stops with a
    logged reason; either way logins go on."""
    rs = relay_site()
    daemon = rs.start(protocol)
    log_in(daemon, "127.0.0.2")
    wait_relay_done("127.0.0.2", daemon)
    conf = Path(daemon.args[daemon.args.index("-c") + 1])
    conf.write_text(rs.site.config(f"[relay]\n{BAD_SECTIONS['lock_timeout']}\n"))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: reloads(daemon) or reloads(daemon, "reload failed"),
        what="the reload",
    )
    login_works_despite_bad_section(rs, daemon, "127.0.0.3")
    if "reload failed" in daemon.log():
        assert "[relay]" in daemon.log()
        assert opened("127.0.0.3", daemon), daemon.log()  # the old configuration relays on
        assert sorted(rs.entries()) == ["127.0.0.2", "127.0.0.3"]
    else:
        assert "relay: bad configuration, not relaying: [relay]" in daemon.log()
        assert list(rs.entries()) == ["127.0.0.2"]


SLOW_TCPRULES = """#!/bin/sh
# a tcprules that waits for the test's go-ahead (at most 20 s) before it builds the cdb
: > '{dir}/started'
i=0
while [ ! -e '{dir}/release' ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
: > '{dir}/finished'
exec '{tcprules}' "$@"
"""


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_login_reply_comes_before_the_relay_work(relay_site, site: MailSite, protocol: str) -> None:
    gate = site.root / "gate"
    gate.mkdir()
    script = gate / "slow-tcprules"
    script.write_text(SLOW_TCPRULES.format(dir=gate, tcprules=shutil.which("tcprules")))
    script.chmod(0o755)
    rs = relay_site(f"tcprules = {script}\nlock_timeout = 30\n")
    daemon = rs.start(protocol)
    with connected(daemon, "127.0.0.2") as client:
        # The gate is shut: were the reply sent after the relay work, this read would time out.
        reply = client.login()
        assert client.ok(reply), reply
        wait_for((gate / "started").exists, what="the relay rebuild to start")
        assert not (gate / "finished").exists()
        assert not opened("127.0.0.2", daemon)
        tag = client.send("STAT" if client.pop else "NOOP")  # the client may go on at once
        (gate / "release").touch()
        assert client.ok(client.reply(tag))
        wait_relay_done("127.0.0.2", daemon)
    assert opened("127.0.0.2", daemon), daemon.log()
    assert (gate / "finished").exists()
    assert list(rs.entries()) == ["127.0.0.2"]
    assert relays(rs.cdb, "127.0.0.2")  # built by the real tcprules


# -------------------------------------------------------------------------- clearopensmtp


def test_expired_entries_go_and_fresh_ones_stay(relay_site) -> None:
    rs = relay_site("clear_minutes = 60\n")
    now = int(time.time())
    rs.write_open_smtp(
        [
            f"127.0.0.20:{RULE}\t{now - 3 * 3600}",  # expired
            f"127.0.0.21:{RULE}\t{now - 61 * 60}",  # just expired
            f"127.0.0.22:{RULE}\t{now - 30 * 60}",
        ]
    )  # fresh
    pop3d, imapd = rs.start("pop3d"), rs.start("imapd")
    log_in(pop3d, "127.0.0.2")
    log_in(imapd, "127.0.0.3")
    wait_relay_done("127.0.0.2", pop3d)
    wait_relay_done("127.0.0.3", imapd)
    # the logins' rebuilds carried every entry into the cdb, the old ones too
    for ip in ("127.0.0.20", "127.0.0.21", "127.0.0.22", "127.0.0.2", "127.0.0.3"):
        assert relays(rs.cdb, ip), ip

    dry = rs.clear("--dry-run")
    assert dry.returncode == OK, dry.stderr
    assert "would drop 127.0.0.20 " in dry.stdout and "would drop 127.0.0.21 " in dry.stdout
    assert len(rs.entries()) == 5  # a dry run changes nothing

    done = rs.clear()
    assert (done.returncode, done.stderr) == (OK, "")
    assert sorted(rs.entries()) == ["127.0.0.2", "127.0.0.22", "127.0.0.3"]
    for ip in ("127.0.0.20", "127.0.0.21"):
        assert not relays(rs.cdb, ip), ip
    for ip in ("127.0.0.22", "127.0.0.2", "127.0.0.3"):
        assert relays(rs.cdb, ip), ip
    assert rs.clear("--check").returncode == OK
    # an expired client that logs in again is back
    log_in(pop3d, "127.0.0.20")
    wait_relay_done("127.0.0.20", pop3d)
    assert relays(rs.cdb, "127.0.0.20")
    # --minutes 0 clears the lot
    assert rs.clear("--minutes", "0").returncode == OK
    assert rs.entries() == {}
    assert not relays(rs.cdb, "127.0.0.2")


def test_fifty_parallel_logins_while_clearopensmtp_runs(relay_site) -> None:
    rs = relay_site("lock_timeout = 20\n")
    now = int(time.time())
    stale = [f"10.9.0.{i}" for i in range(1, 11)]
    rs.write_open_smtp(
        [f"{ip}:{RULE}\t{now - 4 * 3600}" for ip in stale] + [f"10.9.1.1:{RULE}\t{now - 60}"]
    )
    # one user each: a POP3 maildrop is locked by its session
    users = tuple(f"user{i}" for i in range(1, 51))
    pop3d, imapd = rs.start("pop3d", users=users), rs.start("imapd", users=users)
    clients = [(pop3d if i % 2 else imapd, f"127.0.1.{i}", f"user{i}") for i in range(1, 51)]

    stop = threading.Event()
    runs: list[subprocess.CompletedProcess[str]] = []

    def clear_loop() -> None:
        while not stop.is_set() or len(runs) < 2:
            runs.append(rs.clear("--wait", "20", timeout=30))

    barrier = threading.Barrier(len(clients), timeout=30)

    def one_login(daemon: Daemon, ip: str, user: str) -> bytes:
        with connected(daemon, ip) as client:
            barrier.wait()
            reply = client.login(user)
            if client.ok(reply):
                assert client.ok(client.in_session())
            return reply

    cleaner = threading.Thread(target=clear_loop, daemon=True)
    cleaner.start()
    try:
        wait_for(lambda: runs, what="a first clearopensmtp run")
        with ThreadPoolExecutor(max_workers=len(clients)) as pool:
            replies = list(pool.map(lambda c: one_login(*c), clients))
        for (daemon, ip, _), reply in zip(clients, replies, strict=True):
            assert reply.startswith(b"+OK") or b" OK " in reply, (daemon.name, ip, reply)
        for _, ip, _ in clients:
            wait_relay_done(ip, pop3d, imapd)
    finally:
        stop.set()
        cleaner.join(60)
    assert not cleaner.is_alive()
    failed = [line for _, ip, _ in clients for line in not_opened(ip, pop3d, imapd)]
    assert failed == []
    assert [(r.returncode, r.stderr) for r in runs if r.returncode or r.stderr] == []

    # well-formed, no duplicates, every login there, the stale entries gone, the fresh one kept
    entries = rs.entries()
    assert sorted(entries) == sorted([ip for _, ip, _ in clients] + ["10.9.1.1"])
    assert len(rs.lines()) == len(entries)
    check = rs.clear("--check")
    assert (check.returncode, check.stderr) == (OK, "")
    for ip in entries:
        assert relays(rs.cdb, ip), ip
    for ip in stale:
        assert not relays(rs.cdb, ip), ip
    assert rs.relay_files() == ["open-smtp", "open-smtp.lock", "tcp.smtp.cdb"]  # no temp files


HOLDER = """
import fcntl, sys
f = open(sys.argv[1], "a")
fcntl.lockf(f, fcntl.LOCK_EX)  # the lock vpopmail's get_write_lock() takes
print("locked", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def lock_held(path: Path) -> Iterator[None]:
    """Another process (not ours: fcntl locks belong to a process) holds the relay lock."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        with contextlib.suppress(OSError):
            holder.stdin.close()  # its read ends, it exits, the lock goes with it
        try:
            holder.wait(10)
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait(5)
            holder.stdout.close()


def snapshot(rs: RelaySite) -> dict[str, bytes]:
    return {name: (rs.site.state / name).read_bytes() for name in rs.relay_files()}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_lock_held_by_another_process(relay_site, protocol: str) -> None:
    rs = relay_site("lock_timeout = 0.3\n")
    now = int(time.time())
    rs.write_open_smtp([f"127.0.0.30:{RULE}\t{now - 4 * 3600}"])
    daemon = rs.start(protocol)
    log_in(daemon, "127.0.0.2")
    wait_relay_done("127.0.0.2", daemon)
    assert sorted(rs.entries()) == ["127.0.0.2", "127.0.0.30"]
    before = snapshot(rs)

    with lock_held(rs.lock):
        # clearopensmtp gives up cleanly, with its exit code, and touches nothing
        busy = rs.clear("--wait", "0.2")
        assert busy.returncode == LOCK_BUSY, busy
        assert "still locked" in busy.stderr
        # a login waits lock_timeout, logs, and goes on without the relay
        with connected(daemon, "127.0.0.3") as client:
            assert client.ok(client.login())
            assert client.ok(client.in_session())
            failures = wait_for(lambda: not_opened("127.0.0.3", daemon), what="the busy line")
        assert "still locked" in failures[0], failures
        # a patient clearopensmtp waits for the lock
        waiter = subprocess.Popen(
            [str(CLEAROPENSMTP), "-c", str(rs.conf), "--wait", "30"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(0.5)  # give it time to reach the lock (no assertion about time)
            assert waiter.poll() is None, waiter.communicate()  # cannot be done: the lock is held
            assert snapshot(rs) == before
        except BaseException:
            waiter.kill()
            waiter.communicate(timeout=10)
            raise
    out, err = waiter.communicate(timeout=30)
    assert (waiter.returncode, err) == (OK, ""), out
    assert list(rs.entries()) == ["127.0.0.2"]  # the expired entry went once it had the lock
    assert not relays(rs.cdb, "127.0.0.30")
    assert relays(rs.cdb, "127.0.0.2")
    assert not relays(rs.cdb, "127.0.0.3")
    # with the lock free again the next login is recorded
    log_in(daemon, "127.0.0.3")
    wait_for(lambda: opened("127.0.0.3", daemon), what="127.0.0.3 recorded")
    assert sorted(rs.entries()) == ["127.0.0.2", "127.0.0.3"]
    assert rs.clear("--check").returncode == OK


MALFORMED_LINES = [
    "this is no entry",  # line 2
    f"300.1.2.3:{RULE}\t1700000000",  # line 3: no IPv4 address
    f"127.0.0.40:{RULE}",  # line 4: no time stamp
    "127.0.0.41:permit\t1700000000",  # line 5: no rule tcprules takes
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_malformed_lines_are_kept_and_reported(relay_site, protocol: str) -> None:
    rs = relay_site()
    now = int(time.time())
    fresh = f"127.0.0.9:{RULE}\t{now - 60}"
    rs.write_open_smtp(["# kept comment", *MALFORMED_LINES, fresh])
    daemon = rs.start(protocol)
    log_in(daemon, "127.0.0.2")
    wait_relay_done("127.0.0.2", daemon)
    assert opened("127.0.0.2", daemon), daemon.log()
    lines = rs.lines()
    assert lines[:6] == ["# kept comment", *MALFORMED_LINES, fresh]  # byte for byte, in place
    assert ENTRY.fullmatch(lines[6])[1] == "127.0.0.2"
    assert len(lines) == 7
    for lineno in (2, 3, 4, 5):
        assert f"open-smtp:{lineno}: malformed line kept" in daemon.log(), lineno
    assert relays(rs.cdb, "127.0.0.2") and relays(rs.cdb, "127.0.0.9")
    assert not relays(rs.cdb, "127.0.0.40")

    for args in ((), ("--check",)):
        result = rs.clear(*args)
        assert result.returncode == MALFORMED, (args, result)
        reported = re.findall(r"open-smtp:(\d+): malformed line kept", result.stderr)
        assert reported == ["2", "3", "4", "5"], result.stderr
        assert rs.lines() == lines  # kept
    assert relays(rs.cdb, "127.0.0.2") and relays(rs.cdb, "127.0.0.9")
