"""etc/fail2ban/: the filter matches the real failed-login lines of pop3d, imapd and msmpd, in
the log-file form and the syslog form, finds the client's address and nothing else (a user name
cannot forge one), and the jail file loads in fail2ban's own configuration reader."""

from __future__ import annotations

import base64
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from support.clients import LineClient
from support.daemons import Daemon, DaemonFactory, child_pids, wait_for
from support.paths import REPO
from support.site import MailSite

FILTER = REPO / "etc/fail2ban/filter.d/maildaemons.conf"
JAIL = REPO / "etc/fail2ban/jail.d/maildaemons.conf"
SYSTEM_CONFIG = Path("/etc/fail2ban")
CLIENT = "127.0.0.3"  # a loopback source of its own: the only address fail2ban may find
FORGED = "10.6.6.6"
HOSTILE_USERS = [
    "alice",
    f"x from {FORGED}",  # printable() turns the spaces into '?': no second " from "
    # a forged second line
    f"y\r\n2026-01-01 00:00:00,000 pop3d[1]: {{1}} {FORGED} pop3 auth failed for user z from "
    + FORGED,
    "\u00fcn\u00efc\u00f6d\u00e9",
    "u" * 300,
]
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")

pytestmark = pytest.mark.skipif(
    shutil.which("fail2ban-regex") is None or not (SYSTEM_CONFIG / "filter.d/common.conf").exists(),
    reason="fail2ban is not installed (tests/apt-packages)",
)


def connect(daemon: Daemon) -> LineClient:
    sock = socket.create_connection(("127.0.0.1", daemon.port), 10, source_address=(CLIENT, 0))
    client = LineClient(sock)
    client.line()  # the greeting
    return client


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


def pop3_failures(daemon: Daemon) -> int:
    """USER/PASS (names without spaces: USER takes one word), AUTH PLAIN, APOP."""
    count = 0
    for user in HOSTILE_USERS:
        client = connect(daemon)
        if " " not in user and "\n" not in user and len(user) < 250:
            client.send(f"USER {user}\r\nPASS wrong\r\n".encode())
            assert client.line() == b"+OK\r\n"
            assert client.line().startswith(b"-ERR [AUTH]")
            count += 1
        client.send(b"AUTH PLAIN\r\n")  # the response on a line of its own may be long
        assert client.line() == b"+ \r\n"
        client.send(b64(f"\0{user}\0wrong") + b"\r\n")
        assert client.line().startswith(b"-ERR [AUTH]")
        client.close()
        count += 1
    client = connect(daemon)
    client.send(b"APOP alice 0123456789abcdef0123456789abcdef\r\nQUIT\r\n")
    assert client.line().startswith(b"-ERR [AUTH]")
    client.close()
    return count + 1


def imap_failures(daemon: Daemon) -> int:
    """AUTHENTICATE PLAIN and LOGIN with a quoted name (none with CR or LF can be quoted)."""
    count = 0
    for user in HOSTILE_USERS:
        client = connect(daemon)
        client.send(b"a AUTHENTICATE PLAIN " + b64(f"\0{user}\0wrong") + b"\r\n")
        assert client.line().startswith(b"a NO [AUTHENTICATIONFAILED]")
        count += 1
        if "\n" not in user:
            client.send(f'b LOGIN "{user}" wrong\r\n'.encode())
            assert client.line().startswith(b"b NO [AUTHENTICATIONFAILED]")
            count += 1
        client.close()
    return count


def msmp_failures(daemon: Daemon) -> int:
    count = 0
    for user in HOSTILE_USERS:
        if " " in user or "\n" in user:
            continue
        client = connect(daemon)
        client.send(f"USER {user}\r\nPASS wrong\r\n".encode())
        assert client.line() == b"+OK\r\n"
        assert client.line() == b"-ERR Invalid credentials\r\n"
        client.close()
        count += 1
    return count


def fail2ban_regex(log: Path, config: Path, out: str | None = None) -> str:
    args = ["fail2ban-regex", "-r"] + (["-o", out] if out else [])
    result = subprocess.run(
        [*args, str(log), str(config / "filter.d/maildaemons.conf")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def filter_dir(tmp_path: Path) -> Path:
    """The filter as installed: beside fail2ban's own common.conf."""
    config = tmp_path / "fail2ban"
    (config / "filter.d").mkdir(parents=True)
    shutil.copy(SYSTEM_CONFIG / "filter.d/common.conf", config / "filter.d")
    shutil.copy(FILTER, config / "filter.d")
    return config


def as_syslog(line: str) -> str:
    """The line as syslogd writes what the daemon sends it: the message after the program's
    `name[pid]: ` is the same in both forms (common/logs.py), the stamp and host are syslog's."""
    return STAMP.sub(time.strftime("%b %e %H:%M:%S ") + "mailhost ", line)


def test_filter_matches_every_real_failure_and_only_the_client(
    tmp_path: Path, daemons: DaemonFactory, site: MailSite
) -> None:
    config = site.config("max_auth_failures = 0\n")
    inline = ["-u", "alice:right"]
    pop3 = daemons.start("pop3d", "-l", "127.0.0.1", *inline, config=config)
    imap = daemons.start("imapd", "-l", "127.0.0.1", *inline, config=config)
    msmp = daemons.start("msmpd", "-L", "127.0.0.1", "-a", "admin:right", config=config)
    expected = {"pop3d": pop3_failures(pop3), "imapd": imap_failures(imap)}
    expected["msmpd"] = msmp_failures(msmp)
    # A good login, and lines of every other kind, are not failures.
    client = connect(pop3)
    client.send(b"USER alice\r\nPASS right\r\nQUIT\r\n")
    client.until(b"+OK maildaemons POP3 server signing off (0 messages left)\r\n")
    lines: list[str] = []
    for daemon in (pop3, imap, msmp):
        wait_for(lambda d=daemon: not child_pids(d.pid), what=f"{daemon.name}'s sessions to end")
        assert daemon.log().count(" auth failed for user ") == expected[daemon.name], daemon.log()
        lines += [line for line in daemon.log().splitlines() if STAMP.match(line)]
    failures = sum(expected.values())
    assert sum(" auth failed " in line for line in lines) == failures
    filters = filter_dir(tmp_path)
    for form, text in (("file", lines), ("syslog", [as_syslog(line) for line in lines])):
        log = tmp_path / f"{form}.log"
        log.write_text("\n".join(text) + "\n")
        summary = fail2ban_regex(log, filters)
        assert re.search(rf"Lines: {len(text)} lines, 0 ignored, {failures} matched", summary), (
            form,
            summary,
        )
        found = fail2ban_regex(log, filters, "ip").split()
        assert found == [CLIENT] * failures, (form, found)


def test_jail_loads_with_the_filter(tmp_path: Path) -> None:
    """fail2ban's configuration reader takes the jail file as installed: both jails, the filter's
    regex, and the log-file jail pointed at a real log once enabled."""
    config = tmp_path / "etc-fail2ban"
    shutil.copytree(SYSTEM_CONFIG, config)
    for stale in (config / "jail.d").iterdir():  # the distribution's own sshd jail needs a log
        stale.unlink()
    shutil.copy(FILTER, config / "filter.d")
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "pop3d.log").write_text("")
    jail = JAIL.read_text().replace("/var/log/maildaemons/", f"{logs}/")
    jail = jail.replace("enabled  = false", "enabled  = true")
    (config / "jail.d/maildaemons.conf").write_text(jail)
    result = subprocess.run(
        ["fail2ban-client", "-c", str(config), "-d"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    dump = result.stdout
    for name in ("maildaemons", "maildaemons-files"):
        assert f"['add', '{name}', " in dump, dump
        assert re.search(rf"\['set', '{name}', 'addfailregex', '.*auth failed for user", dump)
    assert f"{logs}/pop3d.log" in dump
