"""imapd as a daemon: the start-up contract (daemon mode with a pidfile, one stderr line when the
port is taken), TERM with open sessions, HUP, the idle timeout, a SIGKILLed child in the middle of
an APPEND (no partial message anywhere but tmp/), and children that always go away."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from support.daemons import (
    BIN,
    child_pids,
    free_port,
    is_zombie,
    pooled,
    port_open,
    reloads,
    serving_process,
    session_process,
    sessions_running,
    wait_for,
)
from support.imap import Raw, crlf, message_files


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and not is_zombie(pid)


def run_imapd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "imapd"), *args], capture_output=True, text=True, timeout=30, check=False
    )


def session_child(server) -> int:
    """The pid of the one session child the master has now (pool model: the worker that
    serves the newest session)."""
    if pooled():
        return session_process(server.daemon)
    return wait_for(
        lambda: (kids := child_pids(server.daemon.pid)) and len(kids) == 1 and kids[0],
        what="one session child",
    )


# -- start-up contract ------------------------------------------------------------------------


def test_daemon_mode_returns_when_listening_and_term_removes_the_pidfile(site):
    port = free_port()
    conf = site.root / "detached.conf"
    logfile = site.root / "imapd.log"
    conf.write_text(site.config(f"log = {logfile}\n"))
    pidfile = site.run / "imapd.pid"
    result = run_imapd("-c", str(conf), "-l", "127.0.0.1", "-p", str(port), "-u", "alice:pw")
    pid = None
    try:
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        assert port_open(port)  # no waiting: exit 0 promises a listener and a pidfile
        pid = int(pidfile.read_text())
        assert alive(pid) and pid not in child_pids(os.getpid())
        client = Raw(socket.create_connection(("127.0.0.1", port), timeout=10))
        assert client.raw_line().startswith(b"* OK ")
        client.ok("LOGIN alice pw")
        client.ok("LOGOUT")
        again = run_imapd(
            "-c", str(conf), "-l", "127.0.0.1", "-p", str(free_port()), "-u", "alice:pw"
        )
        assert again.returncode != 0
        assert again.stderr.strip().splitlines() == [
            f"imapd: already running as pid {pid} (pidfile {pidfile})"
        ]
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not alive(pid), what="daemon gone after TERM")
        assert not pidfile.exists()
        assert not port_open(port)
        assert "Traceback" not in logfile.read_text()
    finally:
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("foreground", [False, True], ids=["daemon", "foreground"])
def test_port_in_use_is_one_line_and_exit_1(site, foreground):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        conf = site.root / "busy.conf"
        conf.write_text(site.config())
        pidfile = site.run / "busy.pid"
        result = run_imapd(
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
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"imapd: cannot listen on 127.0.0.1 port {port}: Address already in use"
    ]
    assert not pidfile.exists()


def test_bad_max_literal_is_refused_at_start(site):
    conf = site.root / "bad.conf"
    conf.write_text(site.config("[imapd]\nmax_literal = huge\n"))
    result = run_imapd("-f", "-c", str(conf), "-l", "127.0.0.1", "-p", str(free_port()))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "max_literal" in result.stderr


# -- signals and timeouts ---------------------------------------------------------------------


def test_term_with_open_sessions_says_bye(imapd):
    server = imapd()
    idle = server.raw()
    selected = server.raw_select()
    wait_for(lambda: sessions_running(server.daemon.pid) == 2, what="two sessions")
    kids = child_pids(server.daemon.pid)  # the session children, or the workers
    server.daemon.proc.send_signal(signal.SIGTERM)
    for client in (idle, selected):
        assert client.raw_line() == b"* BYE [ALERT] Server shutting down, try again later\r\n"
        assert client.closed()
    assert server.daemon.proc.wait(15) == 0
    for kid in kids:
        wait_for(lambda k=kid: not alive(k), what=f"child {kid} gone")
    assert "Traceback" not in server.log()


def test_hup_rereads_users_and_sessions_go_on(imapd, site):
    users_file = site.root / "users"
    server = imapd()
    during = server.raw_select()
    users_file.write_text("dave:{PLAIN}d4ve\n")
    server.daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads(server.daemon) == 1, what="reload logged")
    during.alive()
    fresh = server.raw()
    fresh.ok("LOGIN dave d4ve")
    fresh.ok("SELECT INBOX")
    fresh.ok("LOGOUT")
    during.ok("LOGOUT")
    server.assert_healthy()


def test_idle_timeout_says_bye(imapd):
    server = imapd("idle_timeout = 1\nidle_keepalive = 0\n")
    client = server.raw()
    assert client.raw_line() == b"* BYE Autologout; idle for too long\r\n"
    assert client.closed()
    selected = server.raw_select()
    selected.send(b"i1 IDLE\r\n")
    assert selected.raw_line().startswith(b"+ ")
    assert selected.raw_line() == b"* BYE Autologout; idle for too long\r\n"
    assert selected.closed()
    wait_for(lambda: sessions_running(server.daemon.pid) == 0, what="sessions gone")


def test_sigkill_mid_append_leaves_no_partial_message(imapd, site):
    server = imapd()
    client = server.raw_login()
    client.ok("SELECT INBOX")
    kid = session_child(server)
    big = crlf(b"Subject: big\n\n" + b"x" * 100 + b"\n") * 2000
    client.send(b"k1 APPEND INBOX {%d}\r\n" % len(big))
    assert client.raw_line().startswith(b"+ ")
    client.send(big[: len(big) // 2])
    os.kill(kid, signal.SIGKILL)
    assert client.closed()
    wait_for(lambda: not alive(kid), what="killed child reaped")
    maildir = site.mail / "alice"
    assert message_files(maildir) == []
    assert len(os.listdir(maildir / "tmp")) <= 1
    wait_for(lambda: f"Dead Child pid: {kid}" in server.log(), what="the master reaps it")
    server.assert_healthy()


def test_sigkill_of_one_child_leaves_the_others(imapd, site):
    """A child killed takes its session only; in the pool model a worker killed takes its own
    sessions, and those of the other workers go on."""
    server = imapd()
    survivor = server.raw_select()
    survivor_kid = serving_process(server.daemon, survivor.sock)
    # Open sessions until one lands in another process than the survivor's (pool model).
    for _ in range(50):
        victim = server.raw_select()
        kid = serving_process(server.daemon, victim.sock)
        if kid != survivor_kid:
            break
    assert kid != survivor_kid, "every session went to one worker"
    wire = crlf(b"Subject: kept\n\nkept\n")
    survivor.ok(b"APPEND INBOX {%d+}\r\n" % len(wire) + wire)
    os.kill(kid, signal.SIGKILL)
    assert victim.closed()
    survivor.alive()
    assert b"* 1 FETCH (UID 1)\r\n" in survivor.ok("FETCH 1 UID")
    survivor.ok("LOGOUT")
    server.assert_healthy()


def test_every_child_goes_away(imapd):
    server = imapd()
    for n in range(20):
        client = server.raw()
        if n % 2:
            client.ok("LOGIN alice pw")
            client.ok("SELECT INBOX")
        if n % 3:
            client.ok("LOGOUT")
        client.close()
    wait_for(lambda: sessions_running(server.daemon.pid) == 0, what="every session gone")
    server.assert_healthy()
