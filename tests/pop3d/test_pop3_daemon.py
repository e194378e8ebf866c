"""pop3d as a daemon: the start-up contract (daemon mode, pidfile, refusals with one stderr line),
TERM, HUP, a SIGKILLed child, runtime settings, and 200 sessions leaving no zombie or fd behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from common.config import RuntimeState
from support.clients import LineClient
from support.daemons import (
    BIN,
    child_pids,
    ended_sessions,
    free_port,
    is_zombie,
    port_open,
    reloads,
    session_process,
    sessions_running,
    wait_for,
)
from support.site import deliver


def strays(port: int, marker: str) -> list[int]:
    """Live processes left behind by a start: holding a socket on `port`, a file under `marker`
    (the test's directory) open, or `marker` in their command line (setproctitle may change it)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid() or is_zombie(int(entry)):
            continue
        try:
            fd_dir = f"/proc/{entry}/fd"
            targets = [os.readlink(f"{fd_dir}/{fd}") for fd in os.listdir(fd_dir)]
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if (
            marker.encode() in cmdline
            or inodes.intersection(targets)
            or any(t.startswith(marker) for t in targets)
        ):
            found.append(int(entry))
    return found


def assert_no_strays(port: int, marker: str) -> None:
    left = strays(port, marker)
    for pid in left:  # never leave a daemon running after a failed test
        os.kill(pid, signal.SIGKILL)
    assert left == []


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and not is_zombie(pid)


def run_pop3d(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "pop3d"), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def detached(site):
    """Start pop3d without -f (the real start-up contract); kill what is left at the end."""
    pids: list[int] = []

    def start(
        port: int, *extra: str, config: str = ""
    ) -> tuple[subprocess.CompletedProcess[str], Path]:
        conf = site.root / f"detached-{port}.conf"
        conf.write_text(site.config(f"log = {site.root / 'pop3d.log'}\n{config}"))
        result = run_pop3d(
            "-c", str(conf), "-l", "127.0.0.1", "-p", str(port), "-u", "alice:secret", *extra
        )
        pidfile = site.run / "pop3d.pid"
        with contextlib.suppress(OSError, ValueError):
            pids.append(int(pidfile.read_text()))
        return result, pidfile

    yield start
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


# -- start-up contract -----------------------------------------------------------------------


def test_daemon_mode_returns_when_listening_and_term_removes_the_pidfile(detached, site):
    port = free_port()
    result, pidfile = detached(port)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    # No waiting: exit 0 promises the port is open and the pidfile written.
    assert port_open(port)
    pid = int(pidfile.read_text())
    assert alive(pid)
    assert pid not in child_pids(os.getpid()), "the daemon is detached from its launcher"
    assert b"pop3d" in Path(f"/proc/{pid}/cmdline").read_bytes()
    deliver(site.maildir("alice"), b"Subject: d\n\nx\n")
    client = LineClient(socket.create_connection(("127.0.0.1", port), timeout=10))
    client.line()
    client.send(b"USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n")
    assert [client.line() for _ in range(3)][2] == b"+OK 1 17\r\n"
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), what="daemon gone after TERM")
    assert not pidfile.exists()
    assert not port_open(port)
    assert "stopped" in (site.root / "pop3d.log").read_text()


def test_already_running_is_refused(detached, site):
    port = free_port()
    result, pidfile = detached(port)
    assert result.returncode == 0
    pid = int(pidfile.read_text())
    second, _ = detached(free_port())
    assert second.returncode != 0
    assert second.stderr.strip().splitlines() == [
        f"pop3d: already running as pid {pid} (pidfile {pidfile})"
    ]
    assert int(pidfile.read_text()) == pid and alive(pid)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), what="daemon gone")


def test_stale_pidfile_is_replaced(detached, site):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (site.run / "pop3d.pid").write_text(f"{dead.pid}\n")
    result, pidfile = detached(free_port())
    assert result.returncode == 0, result.stderr
    pid = int(pidfile.read_text())
    assert pid != dead.pid and alive(pid)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), what="daemon gone")


@pytest.mark.parametrize("foreground", [False, True], ids=["daemon", "foreground"])
def test_port_in_use(site, foreground):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        conf = site.root / "busy.conf"
        conf.write_text(site.config())
        pidfile = site.run / "busy.pid"
        result = run_pop3d(
            *(["-f"] if foreground else []),
            "-c",
            str(conf),
            "-l",
            "127.0.0.1",
            "-p",
            str(port),
            "--pidfile",
            str(pidfile),
            "-u",
            "a:b",
        )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"pop3d: cannot listen on 127.0.0.1 port {port}: Address already in use"
    ]
    assert not pidfile.exists()
    assert_no_strays(port, str(site.root))


BAD_CONFIGS = {
    "malformed number": ("[pop3d]\nmax_children = lots\n", [], "max_children"),
    "malformed float": ("[pop3d]\nauth_failure_delay = soon\n", [], "auth_failure_delay"),
    "malformed backlog": ("backlog = many\n", [], "backlog"),
    "not an ini file": ("[pop3d\nport 110\n", [], "config file"),
    "missing -c file": ("", ["-c", "/nonexistent/maildaemons.conf"], "not found"),
    "unreadable users file": ("", ["--users", "{root}"], "users file"),
    "missing users file": ("", ["--users", "{root}/nope"], "not found"),
    "malformed -u": ("", ["-u", "nopassword"], "NAME:PASS"),
    "bad relay section": ("[relay]\nenabled = maybe\n", [], "relay"),
}


@pytest.mark.parametrize(
    "case, foreground",
    [
        *((case, False) for case in BAD_CONFIGS),
        ("malformed number", True),
        ("malformed backlog", True),
        ("unreadable users file", True),
    ],
)
def test_bad_config_is_one_line_and_nothing_left(site, case, foreground):
    extra, flags, words = BAD_CONFIGS[case]
    conf = site.root / "bad.conf"
    conf.write_text(site.config(f"log = {site.root / 'bad.log'}\n{extra}"))
    flags = [f.format(root=site.root) for f in flags]
    if "-u" not in flags and "--users" not in flags:
        flags += ["--users", str(site.root / "users")]
    pidfile = site.run / "bad.pid"
    port = free_port()
    args = ["-c", str(conf), *flags] if "-c" not in flags else flags
    try:
        result = run_pop3d(
            *(["-f"] if foreground else []),
            *args,
            "-l",
            "127.0.0.1",
            "-p",
            str(port),
            "--pidfile",
            str(pidfile),
        )
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pop3d: "), result.stderr
        assert words in lines[0]
        assert not pidfile.exists()
        assert not port_open(port)
    finally:
        assert_no_strays(port, str(site.root))


def test_version_and_help():
    result = run_pop3d("--version")
    assert result.returncode == 0 and result.stdout.startswith("pop3d (maildaemons) ")
    result = run_pop3d("--help")
    assert result.returncode == 0 and "-u NAME:PASS" in result.stdout


# -- signals ---------------------------------------------------------------------------------


def test_term_says_goodbye_to_open_sessions_and_removes_the_pidfile(pop3d, site):
    pidfile = site.run / "fg.pid"
    server = pop3d("", "--pidfile", str(pidfile))
    path = deliver(site.maildir("alice"), b"Subject: t\n\nx\n")
    wait_for(
        lambda: pidfile.exists() and pidfile.read_text().strip() == str(server.daemon.pid),
        what="the pidfile",
    )
    logged_in = server.raw_login()
    logged_in.send(b"DELE 1\r\n")
    assert logged_in.line() == b"+OK Message 1 deleted\r\n"
    waiting = server.raw()
    server.daemon.proc.send_signal(signal.SIGTERM)
    goodbye = b"-ERR [SYS/TEMP] Server shutting down, try again later\r\n"
    for client in (logged_in, waiting):
        assert client.line() == goodbye
        assert client.closed()
    assert server.daemon.proc.wait(15) == 0
    assert not pidfile.exists()
    assert path.exists(), "TERM is not QUIT: nothing deleted"
    log = server.daemon.log()
    assert "TERM received" in log and "stopped" in log
    assert "killing" not in log


def test_term_kills_a_session_that_cannot_finish(pop3d, site):
    server = pop3d("[pop3d]\nshutdown_grace = 0.5\n")
    path = deliver(
        site.maildir("alice"),
        b"Subject: big\n\n" + b"y" * 64 + b"\n" * 100_000 + b"z" * 8_000_000 + b"\n",
    )
    client = server.raw_login()
    client.send(b"RETR 1\r\n")
    assert client.line().startswith(b"+OK ")  # then stop reading: the child blocks in send
    server.daemon.proc.send_signal(signal.SIGTERM)
    assert server.daemon.proc.wait(15) == 0
    assert "killing 1 sessions that did not finish" in server.daemon.log()
    assert path.exists()
    client.close()


def test_hup_rereads_config_and_users_and_keeps_serving(pop3d, site):
    server = pop3d()
    old_session = server.raw()
    client = server.raw()
    client.send(b"USER " + b"a" * 30 + b"\r\n")
    assert client.line() == b"+OK\r\n"
    client.close()
    server.config_file.write_text(site.config("[pop3d]\nmax_line = 20\n"))
    (site.root / "users").write_text("carol:{PLAIN}pw-carol\n")
    server.daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads(server.daemon) == 1, what="reload")
    client = server.raw()
    client.send(b"USER " + b"a" * 30 + b"\r\n")
    assert client.line() == b"-ERR Line too long\r\n"
    client.close()
    server.login("carol", "pw-carol").quit()
    server.login("alice").quit()  # -u users survive the reload
    # The session opened before HUP goes on with the settings it started with.
    old_session.send(b"USER " + b"a" * 30 + b"\r\nPASS x\r\n")
    assert old_session.line() == b"+OK\r\n"
    assert old_session.line().startswith(b"-ERR [AUTH]")
    # A bad new config keeps the old one.
    server.config_file.write_text(site.config("[pop3d]\nmax_line = twenty\n"))
    server.daemon.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: reloads(server.daemon, "reload failed, keeping the old configuration") == 1,
        what="failed reload",
    )
    client = server.raw()
    client.send(b"USER " + b"a" * 30 + b"\r\n")
    assert client.line() == b"-ERR Line too long\r\n"
    server.assert_serving()


def find_session_child(server, timeout: float = 10.0) -> int:
    """The session's child, or in the pool model the worker serving it (SIGKILL takes the
    worker's sessions with it; the master replaces it)."""
    return session_process(server.daemon, timeout=timeout)


def test_sigkill_in_the_middle_of_retr(pop3d, site):
    server = pop3d()
    data = b"Subject: big\n\n" + b"0123456789abcdef" * 10 + b"\n"
    data = data + (b"x" * 1000 + b"\n") * 8000
    path = deliver(site.maildir("alice"), data)
    server.wait_idle()
    client = server.raw_login()
    pid = find_session_child(server)
    client.send(b"RETR 1\r\n")
    size = int(client.line().split()[1])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: f"Dead Child pid: {pid}" in server.daemon.log(), what="the kill reaped")
    assert not alive(pid) and not is_zombie(pid)
    assert client.closed()
    assert path.read_bytes() == data
    fresh = server.login()
    assert fresh.stat() == (1, size)
    assert fresh.retr(1)[2] == size
    fresh.quit()
    server.assert_serving()


def test_sigkill_in_a_session_with_deletions(pop3d, site):
    server = pop3d()
    paths = [deliver(site.maildir("alice"), b"Subject: %d\n\nx\n" % n) for n in range(3)]
    server.wait_idle()
    client = server.raw_login()
    pid = find_session_child(server)
    client.send(b"DELE 1\r\nDELE 3\r\n")
    assert client.line() == b"+OK Message 1 deleted\r\n"
    assert client.line() == b"+OK Message 3 deleted\r\n"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: f"Dead Child pid: {pid}" in server.daemon.log(), what="the kill reaped")
    assert all(p.exists() for p in paths), "nothing deleted"
    fresh = server.login()  # the lock died with the child
    assert fresh.stat()[0] == 3
    fresh.quit()
    server.wait_idle()
    assert sessions_running(server.daemon.pid) == 0


def test_two_hundred_sessions_leave_no_zombie_and_no_fd(pop3d, site):
    server = pop3d()
    deliver(site.maildir("alice"), b"Subject: z\n\nx\n")
    master = server.daemon.pid

    def session(n: int) -> None:
        client = server.raw()
        if n % 2:
            client.send(b"USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n")
            assert client.line() == b"+OK\r\n"
            assert client.line().startswith(b"+OK Logged in")
            assert client.line() == b"+OK 1 17\r\n"
        else:
            client.send(b"QUIT\r\n")
        assert client.line().startswith(b"+OK")
        assert client.closed()
        client.close()

    for n in range(5):  # warm-up: the stats socket and log handler exist from here on
        session(n)
    server.wait_idle()
    fds_before = sorted(os.listdir(f"/proc/{master}/fd"))
    for n in range(200):
        session(n)
    server.wait_idle()
    assert sessions_running(master) == 0
    assert sorted(os.listdir(f"/proc/{master}/fd")) == fds_before
    assert ended_sessions(server.daemon) >= 205


def test_runtime_settings_apply_to_the_next_connection(pop3d, site):
    server = pop3d()
    deliver(site.maildir("alice"), b"Subject: old base\n\nx\n")
    other = site.root / "other-mail"
    deliver(other / "alice", b"Subject: new base\n\nx\n")
    deliver(other / "alice", b"Subject: new base 2\n\nx\n")
    client = server.login()
    assert client.stat()[0] == 1
    client.quit()
    RuntimeState(site.state).set("maildir", str(other))  # what MSMP SET maildir does
    client = server.login()
    assert client.stat()[0] == 2
    client.quit()
    server.daemon.stop()
    server = pop3d()  # and it survives a restart, over the config file and -d
    client = server.login()
    assert client.stat()[0] == 2
    client.quit()


def test_sessions_go_on_while_the_master_is_hupped(pop3d, site):
    server = pop3d()
    deliver(site.maildir("alice"), b"Subject: h\n\nx\n")
    client = server.raw_login()
    for count in range(1, 4):  # one at a time: signals that arrive together may coalesce
        server.daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda n=count: reloads(server.daemon) == n, what="the reload")
        client.send(b"STAT\r\n")
        assert client.line() == b"+OK 1 17\r\n"
    client.send(b"QUIT\r\n")
    assert client.line().startswith(b"+OK")
    server.assert_serving()


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_listen_everywhere_v4_and_v6(daemons, site):
    # No -l: the default '*' is one dual-stack socket (IPv4 clients arrive v4-mapped).
    daemon = daemons.start("pop3d", "-u", "probe:probe", config=site.config())
    families = [(socket.AF_INET, "127.0.0.1")]
    if ipv6_loopback():
        families.append((socket.AF_INET6, "::1"))
    for family, host in families:
        with socket.socket(family) as sock:
            sock.settimeout(10)
            sock.connect((host, daemon.port))
            client = LineClient(sock)
            assert client.line().startswith(b"+OK")
            client.send(b"USER probe\r\nPASS probe\r\nQUIT\r\n")
            assert client.line() == b"+OK\r\n"
            assert client.line().startswith(b"+OK Logged in")
    log = daemon.log()
    assert "} 127.0.0.1 login user=probe" in log, "a v4-mapped peer is logged as IPv4"
    assert "::ffff:" not in log
    if len(families) == 2:
        assert "} ::1 login user=probe" in log
