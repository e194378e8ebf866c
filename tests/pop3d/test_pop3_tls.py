"""pop3d over TLS: STLS (RFC 2595 4), the implicit-TLS port (RFC 8314), the plaintext policy
(CAPA without USER and SASL mechanisms, -ERR [AUTH], as Dovecot answers) and real clients
(openssl s_client, fetchmail with its default TLS settings) against a CA made at test time.

The server trusts 127.0.0.1 only; a client that binds 127.0.0.2 as its source is the untrusted
network."""

from __future__ import annotations

import base64
import hashlib
import os
import poplib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.clients import LineClient
from support.daemons import Daemon, DaemonFactory, free_port, wait_for
from support.pop3 import POP3_USERS
from support.site import MailSite, deliver
from support.tls import Pki, s_client, upgrade

UNTRUSTED = "127.0.0.2"
TIMEOUT = 10.0
PLAINTEXT_REFUSED = (
    b"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n"
)
MECHANISM_REFUSED = b"-ERR [AUTH] Plaintext authentication disabled.\r\n"
MESSAGE = b"From: a@example.org\nSubject: over TLS\n\nbody\n"


class TlsPop3d:
    def __init__(self, daemon: Daemon, site: MailSite, tls_port: int) -> None:
        self.daemon = daemon
        self.site = site
        self.tls_port = tls_port

    def raw(self, source: str | None = None, port: int | None = None) -> LineClient:
        sock = socket.create_connection(
            ("127.0.0.1", port or self.daemon.port),
            timeout=TIMEOUT,
            source_address=(source, 0) if source else None,
        )
        client = LineClient(sock)
        greeting = client.line()
        assert greeting.startswith(b"+OK "), greeting
        return client

    def log(self) -> str:
        return self.daemon.log()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsPop3d]:
    root = tmp_path_factory.mktemp("pop3tls")
    site = MailSite.create(root)
    factory = DaemonFactory(root)
    tls_port = free_port()
    flags = [arg for name, pw in POP3_USERS.items() for arg in ("-u", f"{name}:{pw}")]
    config = site.config(
        pki.config() + f"trusted_networks = 127.0.0.1\n[pop3d]\ntls_port = {tls_port}\n"
    )
    daemon = factory.start("pop3d", "-l", "127.0.0.1", *flags, config=config)
    deliver(site.maildir("alice"), MESSAGE)
    yield TlsPop3d(daemon, site, tls_port)
    factory.stop_all()
    assert "Traceback" not in daemon.log(), daemon.log()


def capa(client: LineClient) -> list[bytes]:
    client.send(b"CAPA\r\n")
    lines = client.until(b".\r\n").split(b"\r\n")
    assert lines[0] == b"+OK Capability list follows"
    return lines[1:-2]


def ask(client: LineClient, line: bytes) -> bytes:
    client.send(line + b"\r\n")
    return client.line()


def test_untrusted_network_gets_no_plaintext_login_until_stls(tls: TlsPop3d, pki: Pki) -> None:
    client = tls.raw(UNTRUSTED)
    caps = capa(client)
    assert b"STLS" in caps and b"SASL" in caps  # a bare SASL: no mechanism allowed (Dovecot's)
    assert b"USER" not in caps and not [c for c in caps if c.startswith(b"SASL ")]
    assert ask(client, b"USER alice") == PLAINTEXT_REFUSED
    assert ask(client, b"PASS " + POP3_USERS["alice"].encode()) == PLAINTEXT_REFUSED
    assert ask(client, b"AUTH PLAIN " + base64.b64encode(b"\0alice\0secret")) == MECHANISM_REFUSED
    assert ask(client, b"AUTH LOGIN") == MECHANISM_REFUSED  # before any "+" prompt
    client.send(b"AUTH\r\n")
    assert client.until(b".\r\n") == b"+OK SASL mechanisms follow\r\n.\r\n"

    assert ask(client, b"STLS") == b"+OK Begin TLS negotiation now.\r\n"
    upgrade(client, pki)
    caps = capa(client)  # asked again over TLS (RFC 2595 4)
    assert b"USER" in caps and b"SASL PLAIN LOGIN" in caps and b"STLS" not in caps
    assert ask(client, b"STLS") == b"-ERR TLS is already active.\r\n"
    assert ask(client, b"USER alice") == b"+OK\r\n"
    assert ask(client, b"PASS " + POP3_USERS["alice"].encode()).startswith(b"+OK Logged in")
    assert ask(client, b"STLS") == b"-ERR Command not valid in this state\r\n"
    assert ask(client, b"QUIT").startswith(b"+OK")
    client.close()
    assert f"{UNTRUSTED} TLS started: TLSv1.3" in tls.log()


def test_apop_is_not_plaintext(tls: TlsPop3d) -> None:
    client = LineClient(
        socket.create_connection(
            ("127.0.0.1", tls.daemon.port), timeout=TIMEOUT, source_address=(UNTRUSTED, 0)
        )
    )
    timestamp = client.line().split()[-1]
    digest = hashlib.md5(timestamp + b"probe", usedforsecurity=False).hexdigest()
    assert ask(client, b"APOP probe " + digest.encode()).startswith(b"+OK Logged in")
    assert ask(client, b"QUIT").startswith(b"+OK")
    client.close()


def test_loopback_is_unchanged_for_netcat(tls: TlsPop3d) -> None:
    client = tls.raw()
    caps = capa(client)
    assert {b"USER", b"STLS", b"SASL PLAIN LOGIN"} <= set(caps)
    client.send(b"USER bob\nPASS b0b has spaces\n")
    assert client.line() == b"+OK\r\n"
    assert client.line().startswith(b"+OK Logged in")
    assert capa(client).count(b"STLS") == 0  # not after login (RFC 2595 4)
    assert ask(client, b"QUIT").startswith(b"+OK")
    client.close()


def test_commands_pipelined_after_stls_never_run(tls: TlsPop3d, pki: Pki) -> None:
    client = tls.raw()
    client.send(b"STLS\r\nUSER alice\r\nPASS " + POP3_USERS["alice"].encode() + b"\r\n")
    assert client.line() == b"+OK Begin TLS negotiation now.\r\n"
    upgrade(client, pki)
    assert ask(client, b"STAT") == b"-ERR Command not valid in this state\r\n"  # no login ran
    assert ask(client, b"PASS x") == b"-ERR USER first\r\n"  # and no USER either
    assert ask(client, b"QUIT").startswith(b"+OK")
    client.close()


def test_implicit_tls_port(tls: TlsPop3d, pki: Pki) -> None:
    client = poplib.POP3_SSL(
        "127.0.0.1", tls.tls_port, context=pki.client_context(), timeout=TIMEOUT
    )
    try:
        assert "STLS" not in client.capa() and "USER" in client.capa()
        client.user("alice")
        client.pass_(POP3_USERS["alice"])
        assert client.stat() == (1, len(MESSAGE.replace(b"\n", b"\r\n")))
        assert b"over TLS" in b"\n".join(client.retr(1)[1])
    finally:
        client.quit()


def test_plaintext_on_the_tls_port_is_one_failed_handshake(tls: TlsPop3d) -> None:
    sock = socket.create_connection(("127.0.0.1", tls.tls_port), timeout=TIMEOUT)
    sock.sendall(b"USER alice\r\n")
    client = LineClient(sock)
    assert client.closed() and client.buf == b""
    client.close()
    wait_for(lambda: "TLS handshake failed: WRONG_VERSION_NUMBER" in tls.log())
    assert tls.daemon.proc.poll() is None


def test_openssl_s_client_verifies_the_chain(tls: TlsPop3d, pki: Pki) -> None:
    session = f"USER alice\nPASS {POP3_USERS['alice']}\nSTAT\nQUIT\n".encode()
    verify = ["-CAfile", str(pki.ca), "-verify_return_error", "-verify_hostname", "localhost"]
    for args in (
        ["-connect", f"127.0.0.1:{tls.daemon.port}", "-starttls", "pop3"],
        ["-connect", f"127.0.0.1:{tls.tls_port}"],
    ):
        result = s_client(*args, *verify, data=session)
        out = result.stdout.decode(errors="replace")
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        assert "+OK Logged in" in out and "signing off" in out, out


def test_no_stls_without_a_certificate(pop3d) -> None:
    server = pop3d()
    client = server.raw()
    assert b"STLS" not in capa(client)
    assert ask(client, b"STLS") == b"-ERR TLS support isn't enabled.\r\n"
    client.close()


# -- fetchmail with its default TLS settings ----------------------------------------------------


@pytest.mark.client
@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")
def test_fetchmail_with_default_tls_settings(
    daemons: DaemonFactory, site: MailSite, pki: Pki, tmp_path: Path
) -> None:
    """fetchmail 6.4 upgrades with STLS when offered and checks the certificate by default;
    `sslcertfile` names the test CA. No network is trusted: the login works only over TLS."""
    daemon = daemons.start(
        "pop3d",
        "-l",
        "127.0.0.1",
        "-u",
        "alice:secret",
        config=site.config(pki.config() + "trusted_networks =\n"),
    )
    deliver(site.maildir("alice"), MESSAGE)
    out = tmp_path / "out"
    out.mkdir()
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        "set no bouncemail\n"
        f"poll localhost with proto POP3 port {daemon.port} timeout 20\n"
        '  user "alice" there with password "secret" is "root" here\n'
        f"  sslcertfile {pki.ca}\n"
        f"  mda \"/bin/sh -c 'cat > $(mktemp {out}/msg.XXXXXX)'\"\n"
    )
    rc.chmod(0o600)
    result = subprocess.run(
        ["fetchmail", "-f", str(rc), "-i", str(tmp_path / "ids"), "--nosyslog", "-v"]
        + ["--pidfile", str(tmp_path / "fetchmail.pid")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HOME": str(tmp_path), "FETCHMAILHOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "upgrade to TLS succeeded" in result.stdout + result.stderr
    [delivered] = list(out.iterdir())
    assert delivered.read_bytes().endswith(MESSAGE)
    assert "TLS started" in daemon.log()
    assert list((site.mail / "alice" / "cur").iterdir()) == []  # fetched and deleted
    assert list((site.mail / "alice" / "new").iterdir()) == []
