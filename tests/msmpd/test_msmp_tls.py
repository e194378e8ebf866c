"""msmpd over TLS: STLS (POP3's, RFC 2595 4), `require_tls` (no admin password in clear from
anywhere), the plaintext policy outside `trusted_networks`, and `msmp --tls` verifying the
server against a CA made at test time."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from support.clients import LineClient
from support.daemons import Daemon, DaemonFactory
from support.site import MailSite
from support.tls import Pki, upgrade

MSMP = Path(sys.executable).with_name("msmp")
ADMIN, ADMIN_PW = "admin", "adm1n pw"
TLS_REQUIRED = b"-ERR Login needs TLS here: send STLS first\r\n"


def start_msmpd(daemons: DaemonFactory, site: MailSite, extra: str) -> Daemon:
    return daemons.start(
        "msmpd", "-L", "127.0.0.1", "-a", f"{ADMIN}:{ADMIN_PW}", config=site.config(extra)
    )


def raw(daemon: Daemon, source: str | None = None) -> LineClient:
    sock = socket.create_connection(
        ("127.0.0.1", daemon.port), timeout=10, source_address=(source, 0) if source else None
    )
    client = LineClient(sock)
    assert client.line() == b"+OK MSMP1 server ready\r\n"
    return client


def ask(client: LineClient, line: bytes) -> bytes:
    client.send(line + b"\r\n")
    return client.line()


def msmp(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MSMP), "-P", str(daemon.port), *args],
        env={**os.environ, "MSMP_USER": ADMIN, "MSMP_PASSWORD": ADMIN_PW},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_require_tls_refuses_the_password_in_clear_even_on_loopback(
    daemons: DaemonFactory, site: MailSite, pki: Pki
) -> None:
    daemon = start_msmpd(daemons, site, pki.config() + "[msmpd]\nrequire_tls = yes\n")
    client = raw(daemon)
    assert ask(client, f"USER {ADMIN}".encode()) == TLS_REQUIRED
    assert ask(client, f"PASS {ADMIN_PW}".encode()) == TLS_REQUIRED
    assert ask(client, b"STLS") == b"+OK Begin TLS negotiation now\r\n"
    upgrade(client, pki)
    assert ask(client, b"STLS") == b"-ERR TLS is already active\r\n"
    assert ask(client, f"USER {ADMIN}".encode()) == b"+OK\r\n"
    assert ask(client, f"PASS {ADMIN_PW}".encode()) == b"+OK Logged in\r\n"
    assert ask(client, b"GET maildir") == f"+OK {site.mail}\r\n".encode()
    assert ask(client, b"STLS") == b"-ERR Already logged in\r\n"
    assert ask(client, b"QUIT") == b"+OK Goodbye\r\n"
    client.close()

    # The companion client: --tls verifies the server (here against the test CA) first.
    refused = msmp(daemon, "GET", "maildir")
    assert refused.returncode == 1
    assert refused.stderr == (
        "msmp: login failed: Login needs TLS here: send STLS first (use --tls)\n"
    )
    unverified = msmp(daemon, "--tls", "GET", "maildir")  # the system's CAs do not know ours
    assert unverified.returncode == 2
    assert unverified.stderr.startswith("msmp: TLS failed: ")
    done = msmp(daemon, "--tls", f"--cafile={pki.ca}", "GET", "maildir")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{site.mail}\n"
    assert "TLS started" in daemon.log()


def test_outside_trusted_networks_the_admin_needs_stls(
    daemons: DaemonFactory, site: MailSite, pki: Pki
) -> None:
    daemon = start_msmpd(daemons, site, pki.config() + "trusted_networks = 127.0.0.1\n")
    outside = raw(daemon, "127.0.0.2")
    assert ask(outside, f"USER {ADMIN}".encode()) == TLS_REQUIRED
    assert ask(outside, b"STLS") == b"+OK Begin TLS negotiation now\r\n"
    upgrade(outside, pki)
    assert ask(outside, f"USER {ADMIN}".encode()) == b"+OK\r\n"
    assert ask(outside, f"PASS {ADMIN_PW}".encode()) == b"+OK Logged in\r\n"
    outside.close()
    inside = raw(daemon)  # loopback, trusted: as it always was
    assert ask(inside, f"USER {ADMIN}".encode()) == b"+OK\r\n"
    assert ask(inside, f"PASS {ADMIN_PW}".encode()) == b"+OK Logged in\r\n"
    inside.close()
    assert msmp(daemon, "GET", "maildir").returncode == 0
