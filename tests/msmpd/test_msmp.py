"""msmpd and msmp end to end, with a real mailstatd and pop3d: ADD/DELE seen by POP3 without a
restart, SET transformer/maildir in force for the next connection and after restarts, STAT figures
after killed sessions, LOGS, mailstatd restarts and outages, bad input, bare-LF and netcat clients,
and the `msmp` client's output and exit statuses."""

from __future__ import annotations

import os
import poplib
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.stats import query as stats_query
from msmpd import replies
from msmpd.commands import COMMANDS
from support.clients import LineClient
from support.daemons import Daemon, child_pids, free_port, port_open, wait_for
from support.site import deliver

MSMP = Path(sys.executable).with_name("msmp")
MSMPD = Path(sys.executable).with_name("msmpd")
ADMIN, ADMIN_PW = "admin", "adm1n has spaces"
MAX_REPLY_LINE = 512
MULTILINE = (b"LIST", b"STAT", b"LOGS", b"HELP")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d IP: (\S+)$")


@dataclass
class Stack:
    """mailstatd, pop3d and msmpd sharing one site (mail base, users file, state directory)."""

    daemons: object
    site: object
    start_pop3: object
    extra: str
    stats: Daemon | None = None
    pop3: Daemon | None = None
    msmpd: Daemon | None = None

    @property
    def socket(self) -> Path:
        return self.site.run / "mailstatd.sock"

    def start_stats(self) -> None:
        self.stats = self.daemons.start(
            "mailstatd", config=self.site.config(self.extra), wait=False
        )

        def ready() -> bool:
            assert self.stats.proc.poll() is None, self.stats.log()
            return stats_query.ping(self.socket, timeout=0.5)

        wait_for(ready, what="mailstatd")

    def start_pop3d(self) -> None:
        self.pop3 = self.start_pop3(self.extra, users={}).daemon

    def start_msmpd(self) -> None:
        self.msmpd = self.daemons.start(
            "msmpd",
            "-L",
            "127.0.0.1",
            "-a",
            f"{ADMIN}:{ADMIN_PW}",
            config=self.site.config(self.extra),
        )

    # -- clients ------------------------------------------------------------------------------

    def msmp(
        self,
        *words: str,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        port: int | None = None,
    ) -> subprocess.CompletedProcess:
        environ = {**os.environ, "MSMP_USER": ADMIN, "MSMP_PASSWORD": ADMIN_PW, **(env or {})}
        environ = {k: v for k, v in environ.items() if v is not None}
        return subprocess.run(
            [str(MSMP), "-P", str(port or self.msmpd.port), *words],
            env=environ,
            text=True,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            start_new_session=True,
        )

    def ok(self, *words: str) -> str:
        result = self.msmp(*words)
        assert result.returncode == 0, (words, result.stderr)
        return result.stdout

    def raw(self) -> LineClient:
        client = LineClient(self.msmpd.connect(timeout=10))
        assert client.line() == b"+OK MSMP1 server ready\r\n"
        return client

    def session(self) -> LineClient:
        client = self.raw()
        assert ask(client, b"USER " + ADMIN.encode()) == b"+OK\r\n"
        assert ask(client, f"PASS {ADMIN_PW}".encode()) == b"+OK Logged in\r\n"
        return client

    def pop(self, user: str, password: str, source: str | None = None) -> LineClient:
        """A logged-in POP3 session over a raw socket (a source address can be chosen)."""
        client = LineClient(self.pop3.connect(timeout=10, source=source))
        assert client.line().startswith(b"+OK")
        client.send(f"USER {user}\r\nPASS {password}\r\n".encode())
        assert client.line() == b"+OK\r\n"
        reply = client.line()
        assert reply.startswith(b"+OK Logged in"), reply
        return client

    def pop_fails(self, user: str, password: str) -> bool:
        client = poplib.POP3("127.0.0.1", self.pop3.port, timeout=10)
        try:
            client.user(user)
            client.pass_(password)
        except poplib.error_proto:
            return True
        finally:
            client.close()
        return False


def ask(client: LineClient, line: bytes, eol: bytes = b"\r\n") -> bytes:
    """Send one command; return its whole reply (multi-line ones through the '.' line)."""
    client.send(line + eol)
    first = client.line()
    verb = line.split(b" ", 1)[0].upper()
    if first.startswith(b"+OK") and verb in MULTILINE:
        return first + client.until(b".\r\n")
    return first


def stat(client: LineClient) -> dict[str, int | dict[str, int]]:
    """STAT's lines as numbers: the RFC's and ours, per protocol under the protocol's name."""
    reply = ask(client, b"STAT").decode()
    lines = reply.split("\r\n")
    assert lines[0] == "+OK" and lines[-2:] == [".", ""], reply
    figures: dict = {}
    for line in lines[1:-2]:
        proto = re.fullmatch(
            r"(\w+): (\d+) connections, (\d+) now, maximum (\d+), (\d+) bytes, "
            r"(\d+) logins ok, (\d+) failed",
            line,
        )
        if proto:
            names = ("connections", "now", "maximum", "bytes", "ok", "failed")
            figures[proto[1]] = dict(zip(names, map(int, proto.groups()[1:]), strict=True))
        elif line.startswith("Logins: "):
            figures["Logins"] = line
        else:
            key, _, value = line.partition(": ")
            figures[key] = int(value)
    return figures


@pytest.fixture
def make_stack(daemons, site, pop3d):
    def make(extra: str = "", full: bool = True) -> Stack:
        stack = Stack(daemons, site, pop3d, extra)
        if full:  # else msmpd alone, for tests of the session itself
            stack.start_stats()
            stack.start_pop3d()
        stack.start_msmpd()
        return stack

    return make


@pytest.fixture
def stack(make_stack) -> Stack:
    return make_stack()


@pytest.fixture
def msmpd_alone(make_stack) -> Stack:
    return make_stack(full=False)


# -- users: ADD, DELE, LIST ------------------------------------------------------------------


def test_add_is_seen_by_the_next_pop3_login(stack, site):
    assert stack.ok("ADD", "bob", "pw1") == "Added user\n"
    assert (site.mail / "bob" / "new").is_dir() and (site.mail / "bob" / "cur").is_dir()
    stack.pop("bob", "pw1").send(b"QUIT\r\n")
    assert stack.ok("ADD", "bob", "pw2") == (
        "Updated password (bob already existed: only the password changed)\n"
    )
    assert stack.pop_fails("bob", "pw1")
    stack.pop("bob", "pw2").send(b"QUIT\r\n")
    assert stack.ok("LIST") == "bob\n"
    assert (site.root / "users").read_text().startswith("bob:{")


def test_dele_refused_while_logged_in_then_maildir_moved_aside(stack, site):
    stack.ok("ADD", "bob", "pw")
    deliver(site.mail / "bob", b"Subject: keep me\n\nbody\n")
    pop = stack.pop("bob", "pw")
    refused = stack.msmp("DELE", "bob")
    assert (refused.returncode, refused.stderr) == (1, "msmp: User is currently logged in\n")
    pop.send(b"QUIT\r\n")
    assert pop.line().startswith(b"+OK")

    def deleted() -> bool:
        result = stack.msmp("DELE", "bob")
        return result.returncode == 0 and result.stdout == "Deleted user\n"

    wait_for(deleted, what="DELE accepted once the session ended")
    assert not (site.mail / "bob").exists()
    [moved] = (site.mail / ".deleted").iterdir()
    assert re.fullmatch(r"bob\.\d{8}T\d{6}", moved.name)
    assert [p.read_bytes() for p in (moved / "new").iterdir()] == [b"Subject: keep me\n\nbody\n"]
    again = stack.msmp("DELE", "bob")
    assert (again.returncode, again.stderr) == (1, "msmp: User does not exist\n")
    assert stack.pop_fails("bob", "pw")
    assert stack.ok("LIST") == ""
    # Added again later: a fresh maildir; the old one stays aside.
    stack.ok("ADD", "bob", "pw")
    stack.ok("DELE", "bob")
    assert len(list((site.mail / ".deleted").iterdir())) == 2


def test_user_limit(make_stack):
    stack = make_stack("[msmpd]\nmax_users = 2\n")
    assert stack.ok("ADD", "u1", "p") == "Added user\n"
    assert stack.ok("ADD", "u2", "p") == "Added user\n"
    full = stack.msmp("ADD", "u3", "p")
    assert (full.returncode, full.stderr) == (1, "msmp: User limit reached\n")
    assert stack.ok("ADD", "u1", "new").startswith("Updated password (u1 already existed")
    assert stack.ok("LIST") == "u1\nu2\n"


# -- settings: SET, GET ----------------------------------------------------------------------


def test_set_transformer_changes_the_next_retr_and_survives_restarts(stack, site):
    script = site.root / "upper.sh"
    script.write_text("#!/bin/sh\nexec tr a-z A-Z\n")
    script.chmod(0o755)
    stack.ok("ADD", "bob", "pw")
    deliver(site.mail / "bob", b"Subject: hi\n\nquiet words\n")

    def retr() -> bytes:
        client = stack.pop("bob", "pw")
        client.send(b"RETR 1\r\n")
        data = client.until(b".\r\n")
        client.send(b"QUIT\r\n")
        client.line()
        return data

    assert b"quiet words" in retr()
    assert stack.ok("SET", "transformer", str(script)) == "Changed value\n"
    assert b"QUIET WORDS" in retr()
    assert stack.ok("GET", "transformer") == f"{script}\n"
    assert str(script) in (site.state / "runtime.json").read_text()
    for daemon in (stack.pop3, stack.msmpd, stack.stats):
        assert daemon.stop() == 0
    stack.start_stats()
    stack.start_pop3d()
    stack.start_msmpd()
    assert stack.ok("GET", "transformer") == f"{script}\n"
    assert b"QUIET WORDS" in retr()
    assert stack.ok("SET", "transformer", "cat") == "Changed value\n"
    assert b"quiet words" in retr()


def test_set_maildir_moves_the_next_connection(stack, site):
    assert stack.ok("GET", "maildir") == f"{site.mail}\n"
    other = site.root / "mail2"
    assert stack.ok("SET", "maildir", str(other)) == "Changed value\n"
    assert stack.ok("GET", "maildir") == f"{other}\n"
    stack.ok("ADD", "carol", "pw")
    assert (other / "carol" / "new").is_dir() and not (site.mail / "carol").exists()
    deliver(other / "carol", b"Subject: moved\n\nx\n")
    client = stack.pop("carol", "pw")
    client.send(b"STAT\r\n")
    assert client.line() == b"+OK 1 21\r\n"
    # A relative value is taken from msmpd's start-up directory (the tests start it in root).
    assert stack.ok("SET", "maildir", "./mail3") == "Changed value\n"
    assert stack.ok("GET", "maildir") == f"{site.root / 'mail3'}\n"


def retr_one(stack: Stack, user: str, password: str) -> bytes:
    client = stack.pop(user, password)
    client.send(b"RETR 1\r\n")
    data = client.until(b".\r\n")
    client.send(b"QUIT\r\n")
    client.line()
    return data


def test_set_takes_the_rest_of_the_line_and_set_alone_returns_to_the_config(make_stack, site):
    stack = make_stack("[pop3d]\ntransformer = sed -e s/quiet/calm/\n")
    stack.ok("ADD", "bob", "pw")
    deliver(site.mail / "bob", b"Subject: hi\n\nquiet words\n")
    assert b"calm words" in retr_one(stack, "bob", "pw")  # the config file's transformer
    # The words after the key are the value, as msmp sends them: one line, single spaces.
    assert stack.ok("SET", "transformer", "tr", "a-z", "A-Z") == "Changed value\n"
    assert stack.ok("GET", "transformer") == "tr a-z A-Z\n"
    assert b"QUIET WORDS" in retr_one(stack, "bob", "pw")
    client = stack.session()  # over the wire: tabs and runs of spaces separate, ends are trimmed
    assert ask(client, b"SET\ttransformer   tr  a-z  A-Z  \t") == b"+OK Changed value\r\n"
    assert ask(client, b"GET transformer") == b"+OK tr  a-z  A-Z\r\n"
    assert (
        ask(client, b"SET transformer ") == b"+OK Changed value (back to the configured value)\r\n"
    )
    assert ask(client, b"GET transformer") == b"+OK sed -e s/quiet/calm/\r\n"
    assert "transformer" not in (site.state / "runtime.json").read_text()
    assert b"calm words" in retr_one(stack, "bob", "pw")
    assert stack.ok("SET", "maildir", str(site.root / "elsewhere")) == "Changed value\n"
    assert stack.ok("SET", "maildir") == "Changed value (back to the configured value)\n"
    assert stack.ok("GET", "maildir") == f"{site.mail}\n"
    assert stack.ok("SET", "maildir") == "Changed value (back to the configured value)\n"


def test_set_refuses_a_transformer_that_would_fail_every_retr(stack, site):
    stack.ok("ADD", "bob", "pw")
    deliver(site.mail / "bob", b"Subject: hi\n\nquiet words\n")
    refused = stack.msmp("SET", "transformer", "none")
    assert refused.returncode == 1
    assert refused.stderr == (
        "msmp: Invalid value (no program 'none' on the server;"
        " SET transformer alone removes the SET value)\n"
    )
    assert stack.ok("GET", "transformer") == ""  # nothing was stored: "+OK" and no value
    assert b"quiet words" in retr_one(stack, "bob", "pw")
    # Shell command lines that start with an assignment, a shell word or a path are taken.
    for value in ("LC_ALL=C tr a-z A-Z", "exec tr a-z A-Z", "/bin/sed -e s/q/Q/", "cat"):
        assert stack.ok("SET", "transformer", value) == "Changed value\n", value
    assert b"quiet words" in retr_one(stack, "bob", "pw")  # cat: the message as stored


def test_help_lists_every_command_in_any_state(msmpd_alone):
    stack = msmpd_alone
    expected = "".join(f"{line}\r\n" for line in replies.help_lines())
    client = stack.raw()
    assert ask(client, b"HELP") == f"+OK\r\n{expected}.\r\n".encode()
    client = stack.session()
    assert ask(client, b"help") == f"+OK\r\n{expected}.\r\n".encode()
    verbs = {syntax.split()[0] for syntax, _ in replies.HELP}
    assert verbs == set(COMMANDS)
    for verb, command in COMMANDS.items():  # every usage reply names a syntax HELP lists
        listed = [syntax for syntax, _ in replies.HELP if syntax.split()[0] == verb]
        assert command.syntax.replace(" [<value>]", "") in listed, verb
    # The client: HELP needs no admin; --help lists the same lines.
    anonymous = stack.msmp("HELP", env={"MSMP_USER": None, "MSMP_PASSWORD": None})
    assert anonymous.returncode == 0, anonymous.stderr
    assert anonymous.stdout == expected.replace("\r\n", "\n")
    usage = subprocess.run([str(MSMP), "--help"], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 0
    for line in replies.help_lines():
        assert f"  {line}\n" in usage.stdout


def test_msmp_finds_msmpd_through_the_config_file(msmpd_alone, site, tmp_path):
    stack = msmpd_alone
    conf = tmp_path / "client.conf"
    conf.write_text(f"[msmpd]\nlisten = 127.0.0.1, ::1\nport = {stack.msmpd.port}\n")
    env = {**os.environ, "MSMP_USER": ADMIN, "MSMP_PASSWORD": ADMIN_PW}

    def msmp(*args: str, **extra: str | None) -> subprocess.CompletedProcess:
        environ = {k: v for k, v in {**env, **extra}.items() if v is not None}
        return subprocess.run(
            [str(MSMP), *args], env=environ, capture_output=True, text=True, timeout=30
        )

    by_env = msmp("GET", "maildir", MAILDAEMONS_CONF=str(conf))
    assert (by_env.returncode, by_env.stdout) == (0, f"{site.mail}\n"), by_env.stderr
    by_flag = msmp("-c", str(conf), "GET", "maildir", MAILDAEMONS_CONF=None)
    assert (by_flag.returncode, by_flag.stdout) == (0, f"{site.mail}\n"), by_flag.stderr
    conf.write_text(f"[msmpd]\nlisten = *\nport = {stack.msmpd.port}\n")  # every interface
    assert msmp("-c", str(conf), "LIST").returncode == 0
    closed = free_port()  # -P wins over the file
    flagged = msmp("-c", str(conf), "-P", str(closed), "LIST")
    assert flagged.returncode == 2 and f"port {closed}" in flagged.stderr
    missing = msmp("LIST", MAILDAEMONS_CONF=str(tmp_path / "absent.conf"))
    assert missing.returncode == 2
    assert missing.stderr == (
        f"msmp: config file {tmp_path / 'absent.conf'} (from $MAILDAEMONS_CONF) not found\n"
    )


# -- statistics: STAT, LOGS, LIST <user> -------------------------------------------------------


def test_stat_counts_every_session_and_the_maximum(stack):
    for user in ("u1", "u2", "u3", "u4"):
        stack.ok("ADD", user, "pw")
    admin = stack.session()
    wait_for(lambda: stat(admin)["Current connections"] == 1, what="earlier msmp runs reaped")
    base = stat(admin)
    held = [stack.pop(user, "pw") for user in ("u1", "u2", "u3")]
    before = set(child_pids(stack.pop3.pid))
    doomed = LineClient(stack.pop3.connect(timeout=10))
    assert doomed.line().startswith(b"+OK")
    [victim] = wait_for(lambda: set(child_pids(stack.pop3.pid)) - before, what="the new child")
    wait_for(lambda: stat(admin)["Logged in now"] == 4, what="3 POP3 logins and the admin")
    os.kill(victim, signal.SIGKILL)
    assert doomed.closed()
    for client in held:
        client.send(b"QUIT\r\n")
        assert client.line().startswith(b"+OK")
    # A session counts until its master reaps the child: let the four go before the fifth.
    wait_for(lambda: stat(admin)["Current connections"] == 1, what="four POP3 children reaped")
    stack.pop("u4", "pw").send(b"QUIT\r\n")
    wait_for(lambda: stat(admin)["Current connections"] == 1, what="every POP3 child reaped")
    after = stat(admin)
    assert after["Total connections"] == base["Total connections"] + 5
    # (the start-up probe of the test harness was one POP3 connection before `base`)
    assert after["pop3"]["connections"] == base["pop3"]["connections"] + 5
    assert after["pop3"]["now"] == 0
    assert after["pop3"]["maximum"] == 4
    assert after["Historical maximum traffic"] == 5  # 4 POP3 sessions and this admin session
    assert after["pop3"]["ok"] == base["pop3"]["ok"] + 4
    assert after["Total transferred bytes"] > base["Total transferred bytes"]
    assert after["Logged in now"] == 1


def test_logs_show_each_access_with_its_address(stack):
    stack.ok("ADD", "bob", "pw")
    for source in ("127.0.0.1", "127.0.0.2", "127.0.0.1"):
        client = stack.pop("bob", "pw", source=source)
        client.send(b"QUIT\r\n")
        assert client.line().startswith(b"+OK")
        wait_for(
            lambda: stats_query.user_info(stack.socket, "bob")["sessions"] == [],
            what="session reaped",
        )  # the maildrop lock is free again
    assert stack.pop_fails("bob", "wrong")  # a failed login is no access
    lines = stack.ok("LOGS", "bob").splitlines()
    assert [LOG_LINE.fullmatch(line)[1] for line in lines] == [
        "127.0.0.1",
        "127.0.0.2",
        "127.0.0.1",
    ]
    assert stack.ok("LIST", "bob") == "bob 3 logs\n"
    missing = stack.msmp("LOGS", "nobody")
    assert (missing.returncode, missing.stderr) == (1, "msmp: Invalid user\n")
    missing = stack.msmp("LIST", "nobody")
    assert (missing.returncode, missing.stderr) == (1, "msmp: User does not exist\n")


def test_mailstatd_restart_keeps_totals_and_outage_spares_pop3(stack, site):
    stack.ok("ADD", "bob", "pw")
    deliver(site.mail / "bob", b"Subject: x\n\ny\n")
    stack.pop("bob", "pw").send(b"QUIT\r\n")
    wait_for(lambda: stats_query.stat(stack.socket)["totals"]["current"] == 0, what="reaped")
    before = stats_query.stat(stack.socket)["totals"]
    assert stack.stats.stop() == 0

    # mailstatd down: POP3 works, ADD works, the figures are unavailable and DELE is refused.
    client = stack.pop("bob", "pw")
    client.send(b"RETR 1\r\n")
    assert client.until(b".\r\n").endswith(b"y\r\n.\r\n")
    client.send(b"QUIT\r\n")
    assert client.line().startswith(b"+OK")
    down = stack.msmp("STAT")
    assert down.returncode == 1 and down.stderr.startswith("msmp: Statistics unavailable")
    assert stack.msmp("DELE", "bob").returncode == 1
    assert stack.ok("ADD", "carol", "pw") == "Added user\n"

    stack.start_stats()
    assert stats_query.stat(stack.socket)["totals"] == before  # downtime sessions are missed
    lines = stack.ok("STAT").splitlines()
    assert lines[0] == f"Total connections: {before['connections'] + 1}"  # this STAT's own

    # SIGKILL: what was saved survives.
    saved = stats_query.stat(stack.socket)["totals"]
    state = site.state / "mailstatd.json"
    wait_for(
        lambda: f'"connections":{saved["connections"]},' in state.read_text(), what="state saved"
    )
    stack.stats.stop(signal.SIGKILL)
    stack.start_stats()
    assert stats_query.stat(stack.socket)["totals"]["connections"] == saved["connections"]


# -- the session: login, bad input, line ends --------------------------------------------------


def test_commands_before_login_are_refused(msmpd_alone):
    client = msmpd_alone.raw()
    for line in (
        b"ADD bob pw",
        b"DELE bob",
        b"LIST",
        b"LIST bob",
        b"SET maildir /x",
        b"GET maildir",
        b"STAT",
        b"LOGS bob",
    ):
        assert ask(client, line) == b"-ERR Log in first (USER, then PASS)\r\n", line
    assert ask(client, b"PASS x") == b"-ERR USER first\r\n"
    assert ask(client, b"USER") == b"-ERR Usage: USER <username>\r\n"
    assert ask(client, b"USER a b") == b"-ERR Usage: USER <username>\r\n"
    assert ask(client, b"PASS") == b"-ERR Usage: PASS <password>\r\n"
    assert ask(client, b"QUIT") == b"+OK Goodbye\r\n"
    assert client.closed()


def test_login_failures_look_the_same(msmpd_alone, site):
    stack = msmpd_alone
    client = stack.raw()
    assert ask(client, b"USER nobody") == b"+OK\r\n"
    unknown = ask(client, b"PASS whatever")
    assert ask(client, b"USER " + ADMIN.encode()) == b"+OK\r\n"
    wrong = ask(client, b"PASS wrong")
    assert unknown == wrong == b"-ERR Invalid credentials\r\n"
    assert ask(client, b"USER admin") == b"+OK\r\n"
    assert ask(client, b"PASS wrong") == b"-ERR Too many failed logins, closing connection\r\n"
    assert client.closed()
    # Admins from the admins file, read at each login (no restart).
    (site.root / "admins").write_text("filer:{PLAIN}file pw\n")
    client = stack.raw()
    assert ask(client, b"USER filer") == b"+OK\r\n"
    assert ask(client, b"PASS file pw") == b"+OK Logged in\r\n"
    assert ask(client, b"USER filer") == b"-ERR Already logged in\r\n"


ARITY = [
    (b"ADD", b"ADD <username> <password>"),
    (b"ADD bob", b"ADD <username> <password>"),
    (b"ADD bob pw extra", b"ADD <username> <password>"),
    (b"DELE", b"DELE <username>"),
    (b"DELE a b", b"DELE <username>"),
    (b"LIST a b", b"LIST [<username>]"),
    (b"SET", b"SET <key> [<value>]"),
    (b"SET  \t ", b"SET <key> [<value>]"),
    (b"GET", b"GET <key>"),
    (b"GET maildir x", b"GET <key>"),
    (b"STAT x", b"STAT"),
    (b"LOGS", b"LOGS <username>"),
    (b"LOGS a b", b"LOGS <username>"),
    (b"QUIT now", b"QUIT"),
]

LONG = b"x" * 41
ARGUMENTS = [
    (b"ADD " + LONG + b" pw", b"-ERR Unsafe username"),
    (b"ADD ../etc pw", b"-ERR Unsafe username"),
    (b"ADD a/b pw", b"-ERR Unsafe username"),
    (b"ADD .hidden pw", b"-ERR Unsafe username"),
    (b"ADD bad\x01name pw", b"-ERR Unsafe username"),
    (b"ADD bob p\x7fw", b"-ERR Invalid password (no control characters)"),
    (b"DELE " + LONG, b"-ERR Unsafe username"),
    (b"DELE nobody", b"-ERR User does not exist"),
    (b"LIST " + LONG, b"-ERR Unsafe username"),
    (b"LOGS " + LONG, b"-ERR Unsafe username"),
    (b"SET " + b"k" * 41 + b" v", b"-ERR Invalid key"),
    (b"SET MAILDIR /x", b"-ERR Invalid key"),
    (b"SET no_such_key /x", b"-ERR Invalid key"),
    (
        b"SET maildir /" + b"v" * 100,
        b"-ERR Invalid value (at most 100 characters, no control characters)",
    ),
    (
        b"SET transformer a\x02b",
        b"-ERR Invalid value (at most 100 characters, no control characters)",
    ),
    (
        b"SET transformer cat\tx",
        b"-ERR Invalid value (at most 100 characters, no control characters)",
    ),
    (
        b"SET transformer none",
        b"-ERR Invalid value (no program 'none' on the server; SET transformer alone removes"
        b" the SET value)",
    ),
    (
        b"SET transformer /nonexistent/filter -x",
        b"-ERR Invalid value (no program '/nonexistent/filter' on the server; SET transformer"
        b" alone removes the SET value)",
    ),
    (
        b"SET transformer sed 's/a/b/",
        b"-ERR Invalid value (not a shell command line: unbalanced quotes; SET transformer alone"
        b" removes the SET value)",
    ),
    (
        b"SET transformer LANG=C",
        b"-ERR Invalid value (no program named; SET transformer alone removes the SET value)",
    ),
    (b"GET " + b"k" * 41, b"-ERR Invalid key"),
    (b"GET Maildir", b"-ERR Invalid key"),
    (b"GET " + b"k" * 506, b"-ERR Invalid key"),  # 510 characters: the longest line allowed
    (b"GET " + b"k" * 507, b"-ERR Line too long (at most 512 characters with CRLF)"),
    (b"x" * 10_000, b"-ERR Line too long (at most 512 characters with CRLF)"),
    (b"\x00\xff\xfe\x80 junk", b"-ERR Invalid characters in command"),
    (b"\x16\x03\x01\x02\x00\x01", b"-ERR Unknown command"),
    (b"", b"-ERR Unknown command"),
    (b"   ", b"-ERR Unknown command"),
    (b"FLY away", b"-ERR Unknown command"),
]


def test_missing_extra_and_bad_arguments_get_clear_errors(stack, site):
    client = stack.session()
    for line, syntax in ARITY:
        assert ask(client, line) == b"-ERR Usage: " + syntax + b"\r\n", line
    client = stack.session()
    for line, expected in ARGUMENTS:
        reply = ask(client, line)
        assert reply == expected + b"\r\n", line[:60]
        assert len(reply) <= MAX_REPLY_LINE
    assert ask(client, b"GET maildir") == f"+OK {site.mail}\r\n".encode()  # still serving
    assert list(site.mail.iterdir()) == []  # no ADD above created anything
    assert stack.msmpd.proc.poll() is None
    assert stack.ok("LIST") == ""


def test_too_many_bad_commands_end_the_session(msmpd_alone):
    stack = msmpd_alone
    client = stack.session()
    client.send(b"BOGUS\r\n" * 40)
    replies = [client.line() for _ in range(30)]
    assert replies[:29] == [b"-ERR Unknown command\r\n"] * 29
    assert replies[29] == b"-ERR Too many bad commands, closing connection\r\n"
    assert client.closed()
    stack.session()  # the server goes on


def test_bare_lf_pipelined_session(stack, site):
    client = stack.raw()
    client.send(
        f"USER {ADMIN}\nPASS {ADMIN_PW}\nADD bob pw\nLIST\nGET maildir\nSTAT\nQUIT\n".encode()
    )
    expected = (
        b"+OK\r\n+OK Logged in\r\n+OK Added user\r\n+OK\r\nbob\r\n.\r\n"
        + f"+OK {site.mail}\r\n".encode()
        + b"+OK\r\nTotal connections: "
    )
    assert client.closed(timeout=10)
    data = client.buf
    assert data.startswith(expected)
    assert data.endswith(b".\r\n+OK Goodbye\r\n")
    assert all(line.endswith(b"\r") and len(line) <= 511 for line in data.split(b"\n")[:-1])


@pytest.mark.skipif(shutil.which("nc") is None, reason="netcat is not installed")
def test_netcat(msmpd_alone):
    stack = msmpd_alone
    script = f"USER {ADMIN}\nPASS {ADMIN_PW}\nLIST\nQUIT\n"
    result = subprocess.run(
        ["nc", "-w", "10", "127.0.0.1", str(stack.msmpd.port)],
        input=script.encode(),
        capture_output=True,
        timeout=30,
    )
    assert result.stdout == (
        b"+OK MSMP1 server ready\r\n+OK\r\n+OK Logged in\r\n+OK\r\n.\r\n+OK Goodbye\r\n"
    )


# -- the msmp client ---------------------------------------------------------------------------


def test_msmp_client_output_and_exit_statuses(stack, site):
    assert stack.ok("STAT").startswith("Total connections: ")
    assert stack.ok("GET", "maildir") == f"{site.mail}\n"  # just the value, for scripts
    missing = stack.msmp("DELE", "nobody")
    assert (missing.returncode, missing.stdout, missing.stderr) == (
        1,
        "",
        "msmp: User does not exist\n",
    )
    bad = stack.msmp("STAT", env={"MSMP_PASSWORD": "wrong"})
    assert (bad.returncode, bad.stderr) == (1, "msmp: login failed: Invalid credentials\n")
    closed = free_port()
    refused = stack.msmp("STAT", port=closed)
    assert refused.returncode == 2
    assert refused.stderr == (
        f"msmp: cannot connect to 127.0.0.1 port {closed}: Connection refused\n"
    )
    assert stack.msmp("-P", "notaport", "STAT").returncode == 2
    no_password = stack.msmp("STAT", env={"MSMP_PASSWORD": None})
    assert no_password.returncode == 2 and "MSMP_PASSWORD" in no_password.stderr
    no_admin = stack.msmp("STAT", env={"MSMP_USER": None})
    assert no_admin.returncode == 2 and "MSMP_USER" in no_admin.stderr
    with_flag = stack.msmp("-u", ADMIN, "LIST", env={"MSMP_USER": None})
    assert with_flag.returncode == 0
    assert stack.msmp("ADD", "a\nb", "pw").returncode == 2

    piped = stack.msmp(stdin="ADD bob pw\nLIST\nBOGUS\nLOGS bob\nQUIT\nSTAT\n")
    assert piped.returncode == 1
    assert piped.stdout == "Added user\nbob\nGoodbye\n"
    assert piped.stderr == "msmp: Unknown command\n"
    assert stack.msmp(stdin="LIST\n").returncode == 0


def test_msmpd_daemon_mode(site):
    conf = site.root / "msmpd.conf"
    conf.write_text(site.config())
    port = free_port()
    run = [str(MSMPD), "-c", str(conf), "-P", str(port), "-a", "admin:pw"]
    result = subprocess.run(run, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    pidfile = site.run / "msmpd.pid"
    pid = int(pidfile.read_text())
    try:
        assert port_open(port)
        again = subprocess.run(
            run + ["--pidfile", str(site.run / "x.pid")], capture_output=True, text=True, timeout=30
        )
        assert again.returncode == 1 and len(again.stderr.splitlines()) == 1
        assert f"port {port}" in again.stderr
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pidfile.exists() and not port_open(port), what="msmpd stopped")
    with socket.socket() as probe:
        probe.settimeout(1)
        assert probe.connect_ex(("127.0.0.1", port)) != 0
