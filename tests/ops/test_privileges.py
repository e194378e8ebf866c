"""Started as root with `user`/`group`, a daemon binds, reads its TLS key, then runs as that user
and group with no supplementary groups: the master and every session child, in the foreground
and as a background daemon (whose pidfile is then the user's). Started as root without `user`,
it says so in one warning line. Read from /proc/<pid>/status, so only as root."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.clients import LineClient
from support.daemons import BIN, DaemonFactory, child_pids, free_port, port_open, wait_for
from support.site import MailSite
from support.tls import Pki, upgrade

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: starts daemons as root")

USER, GROUP = "nobody", "nogroup"


def ids() -> tuple[int, int]:
    try:
        return pwd.getpwnam(USER).pw_uid, grp.getgrnam(GROUP).gr_gid
    except KeyError:
        pytest.skip(f"no {USER} user or {GROUP} group on this machine")


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def assert_runs_as(pid: int, uid: int, gid: int) -> None:
    fields = status(pid)
    assert fields["Uid"].split() == [str(uid)] * 4, fields["Uid"]  # real, effective, saved, fs
    assert fields["Gid"].split() == [str(gid)] * 4, fields["Gid"]
    assert fields["Groups"] == "", fields["Groups"]


@pytest.fixture
def site_for_user() -> Iterator[MailSite]:
    """A mail site the unprivileged user can reach: pytest's tmp directories are root's 0700."""
    uid, gid = ids()
    root = Path(tempfile.mkdtemp(prefix="maildaemons-priv-", dir="/tmp"))
    root.chmod(0o755)
    site = MailSite.create(root)
    for path in (root, site.mail, site.state, site.run, root / "users", root / "admins"):
        os.chown(path, uid, gid)
    try:
        yield site
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_foreground_master_and_sessions_run_as_the_user_and_the_key_is_read_before(
    site_for_user: MailSite, pki: Pki
) -> None:
    uid, gid = ids()
    site = site_for_user
    factory = DaemonFactory(site.root)
    # The key stays root's (mode 600 under root's 0700 directory): read before the drop only.
    config = site.config(
        f"user = {USER}\ngroup = {GROUP}\n{pki.config()}trusted_networks = 127.0.0.1\n"
    )
    try:
        daemon = factory.start("imapd", "-l", "127.0.0.1", "-u", "alice:pw", config=config)
        assert_runs_as(daemon.pid, uid, gid)
        client = LineClient(daemon.connect(source="127.0.0.2"))
        assert b"STARTTLS" in client.line()
        client.send(b"a STARTTLS\r\n")
        assert client.line() == b"a OK Begin TLS negotiation now\r\n"
        upgrade(client, pki)
        client.send(b"b LOGIN alice pw\r\nc SELECT INBOX\r\n")
        assert client.line().startswith(b"b OK")
        wait_for(lambda: child_pids(daemon.pid), what="the session child")
        [child] = child_pids(daemon.pid)
        assert_runs_as(child, uid, gid)
        client.send(b"d LOGOUT\r\n")
        assert client.closed()
        assert (site.mail / "alice" / "cur").stat().st_uid == uid  # the session made it

        # HUP: the master cannot read root's key any more; it keeps the context it has.
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "TLS not reloaded" in daemon.log(), what="the reload's refusal")
        assert (
            f"Permission denied (the daemon runs as {USER} now: a reload needs the certificate"
            " and key readable by it)"
        ) in daemon.log()
        again = LineClient(daemon.connect())
        again.line()
        again.send(b"a STARTTLS\r\n")
        assert again.line() == b"a OK Begin TLS negotiation now\r\n"
        upgrade(again, pki)
        again.close()
        assert "running as root" not in daemon.log()
    finally:
        factory.stop_all()


def test_background_daemon_runs_as_the_user_with_its_pidfile(site_for_user: MailSite) -> None:
    uid, gid = ids()
    site = site_for_user
    port = free_port()
    conf = site.root / "pop3d.conf"
    conf.write_text(site.config(f"user = {USER}\ngroup = {GROUP}\nlog = {site.root}/pop3d.log\n"))
    pidfile = site.run / "pop3d.pid"
    pid = None
    try:
        result = subprocess.run(
            [str(BIN / "pop3d"), "-c", str(conf), "-l", "127.0.0.1", "-p", str(port)]
            + ["-u", "alice:secret"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert (result.returncode, result.stderr) == (0, "")
        pid = int(pidfile.read_text())
        assert pidfile.stat().st_uid == uid
        assert_runs_as(pid, uid, gid)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            client = LineClient(sock)
            client.line()
            client.send(b"USER alice\r\nPASS secret\r\n")
            assert client.line() == b"+OK\r\n"
            assert client.line().startswith(b"+OK Logged in")
            [child] = child_pids(pid)
            assert_runs_as(child, uid, gid)
            client.send(b"QUIT\r\n")
            client.line()
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="pop3d gone after TERM")
        assert not pidfile.exists()
        assert not port_open(port)
    finally:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_root_without_user_is_warned_about_once(daemons: DaemonFactory, site: MailSite) -> None:
    daemon = daemons.start("pop3d", "-l", "127.0.0.1", config=site.config())

    def root_warnings() -> list[str]:
        return [line for line in daemon.log().splitlines() if "running as root" in line]

    # The port opens before the line is written: wait for it, then count.
    warnings = wait_for(root_warnings, what="the warning")
    assert len(warnings) == 1
    assert "set user in [common]" in warnings[0]
    assert status(daemon.pid)["Uid"].split()[0] == "0"
