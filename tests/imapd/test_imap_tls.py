"""imapd over TLS: STARTTLS (RFC 3501 6.2.1), the implicit-TLS port (RFC 8314), the plaintext
policy (LOGINDISABLED, NO [PRIVACYREQUIRED]) and real clients (openssl s_client, mbsync) with
their default TLS settings against a CA made at test time.

The server trusts 127.0.0.1 only; a client that binds 127.0.0.2 as its source is the untrusted
network (connecting to 127.0.0.2 would still come from 127.0.0.1 on Linux)."""

from __future__ import annotations

import imaplib
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.daemons import DaemonFactory, free_port, wait_for
from support.imap import TIMEOUT, ImapServer, Raw, start_imapd
from support.site import MailSite
from support.sync import PASSWORD, USER, assert_in_step, exchange, seed_server, seeded
from support.tls import Pki, s_client, upgrade

UNTRUSTED = "127.0.0.2"
USERS = {"alice": "pw", "bob": "b0b pass"}
ALERT = (
    b"* BAD [ALERT] Plaintext authentication not allowed without SSL/TLS, but your client did "
    b"it anyway. If anyone was listening, the password was exposed.\r\n"
)


class TlsImapd:
    def __init__(self, server: ImapServer, tls_port: int) -> None:
        self.server = server
        self.tls_port = tls_port

    def connect(self, source: str | None = None, port: int | None = None) -> socket.socket:
        return socket.create_connection(
            ("127.0.0.1", port or self.server.port),
            timeout=TIMEOUT,
            source_address=(source, 0) if source else None,
        )

    def raw(self, source: str | None = None) -> tuple[Raw, bytes]:
        client = Raw(self.connect(source))
        return client, client.raw_line()

    def raw_tls(self, pki: Pki, source: str | None = None) -> tuple[Raw, bytes]:
        client = Raw(pki.wrap(self.connect(source, self.tls_port)))
        return client, client.raw_line()

    def log(self) -> str:
        return self.server.log()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsImapd]:
    root = tmp_path_factory.mktemp("imaptls")
    site = MailSite.create(root)
    factory = DaemonFactory(root)
    tls_port = free_port()
    extra = pki.config() + f"trusted_networks = 127.0.0.1\ntls_port = {tls_port}\n"
    server = start_imapd(factory, site, extra, USERS)
    yield TlsImapd(server, tls_port)
    factory.stop_all()
    assert "Traceback" not in server.log(), server.log()


def capabilities(line: bytes) -> set[str]:
    """The capability names of a greeting's [CAPABILITY ...] code or a CAPABILITY line."""
    text = line.decode()
    if "[CAPABILITY " in text:
        text = text.split("[CAPABILITY ", 1)[1].split("]", 1)[0]
    else:
        text = text.split("CAPABILITY ", 1)[1]
    return set(text.split())


def capability(client: Raw) -> set[str]:
    lines = client.ok("CAPABILITY")
    return capabilities(lines[0])


def test_untrusted_network_gets_logindisabled_then_logs_in_over_starttls(
    tls: TlsImapd, pki: Pki
) -> None:
    client, greeting = tls.raw(UNTRUSTED)
    caps = capabilities(greeting)
    assert {"STARTTLS", "LOGINDISABLED"} <= caps
    assert not [c for c in caps if c.startswith("AUTH=")]
    assert capability(client) == caps

    lines, done = client.cmd(f'LOGIN alice "{USERS["alice"]}"')
    assert lines == [ALERT]
    assert done.endswith(
        b" NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS)"
        b" connections.\r\n"
    )
    for command in ("AUTHENTICATE PLAIN AGFsaWNlAHB3", "AUTHENTICATE PLAIN", "AUTHENTICATE LOGIN"):
        lines, done = client.cmd(command)  # refused before any challenge: no "+"
        assert lines == []
        assert done.endswith(b" NO [PRIVACYREQUIRED] Plaintext authentication disabled.\r\n")

    lines, done = client.cmd("STARTTLS")
    assert lines == [] and done.endswith(b" OK Begin TLS negotiation now\r\n")
    upgrade(client, pki)
    assert client.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[attr-defined]
    caps = capability(client)  # asked again over TLS (RFC 3501 6.2.1)
    assert {"AUTH=PLAIN", "AUTH=LOGIN"} <= caps
    assert not caps & {"STARTTLS", "LOGINDISABLED"}
    _lines, done = client.cmd("STARTTLS")
    assert done.endswith(b" BAD TLS is already active\r\n")
    client.ok(f'LOGIN alice "{USERS["alice"]}"')
    client.ok("SELECT INBOX")
    client.ok("LOGOUT")
    client.close()
    log = tls.log()
    assert f"{UNTRUSTED} TLS started: TLSv1.3" in log
    assert f"{UNTRUSTED} plaintext login refused" in log
    assert "auth failed" not in log  # refused before any password was checked


def test_loopback_is_unchanged_for_netcat(tls: TlsImapd) -> None:
    client, greeting = tls.raw()
    caps = capabilities(greeting)
    assert {"STARTTLS", "AUTH=PLAIN", "AUTH=LOGIN"} <= caps
    assert "LOGINDISABLED" not in caps
    client.ok(b'LOGIN bob "b0b pass"', eol=b"\n")
    client.ok("SELECT INBOX")
    _lines, done = client.cmd("STARTTLS")  # not after a login (RFC 3501 6.2.1)
    assert done.endswith(b" BAD STARTTLS not allowed now\r\n")
    client.ok("LOGOUT")
    client.close()


def test_a_command_pipelined_after_starttls_never_runs(tls: TlsImapd, pki: Pki) -> None:
    """RFC 3501 6.2.1: the LOGIN sent in the same packet as STARTTLS (an attacker's injection in
    the plaintext stream) is discarded, not run as if it came over TLS."""
    client, _greeting = tls.raw()
    client.send(f'a STARTTLS\r\nb LOGIN alice "{USERS["alice"]}"\r\n'.encode())
    assert client.raw_line() == b"a OK Begin TLS negotiation now\r\n"
    upgrade(client, pki)
    lines, done = client.cmd("SELECT INBOX")
    assert lines == [] and done.endswith(b" BAD SELECT not allowed now\r\n")  # not logged in
    client.ok(f'LOGIN alice "{USERS["alice"]}"')
    client.ok("LOGOUT")
    client.close()
    wait_for(lambda: "discarding what was sent after the TLS command" in tls.log())


def test_implicit_tls_port(tls: TlsImapd, pki: Pki) -> None:
    with imaplib.IMAP4_SSL(
        "127.0.0.1", tls.tls_port, ssl_context=pki.client_context(), timeout=TIMEOUT
    ) as client:
        client.login("alice", USERS["alice"])
        assert client.select("INBOX")[0] == "OK"
        assert "STARTTLS" not in client.capabilities
    client, greeting = tls.raw_tls(pki, UNTRUSTED)  # TLS from the untrusted network: allowed
    caps = capabilities(greeting)
    assert "AUTH=PLAIN" in caps and not caps & {"STARTTLS", "LOGINDISABLED"}
    client.ok(f'LOGIN alice "{USERS["alice"]}"')
    client.ok("LOGOUT")
    client.close()
    assert "(TLS port)" in tls.log()


def test_plaintext_on_the_tls_port_is_one_failed_handshake(tls: TlsImapd) -> None:
    sock = tls.connect(port=tls.tls_port)
    sock.sendall(b'a LOGIN alice "pw"\r\n')
    client = Raw(sock)
    assert client.closed()
    assert client.buf == b""  # not a word in clear
    client.close()
    wait_for(lambda: "TLS handshake failed: WRONG_VERSION_NUMBER" in tls.log())
    tls.server.assert_healthy()


def test_tls_1_2_is_served_and_1_0_and_1_1_refused(tls: TlsImapd, pki: Pki) -> None:
    context = pki.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    client = Raw(context.wrap_socket(tls.connect(port=tls.tls_port), server_hostname="127.0.0.1"))
    assert client.sock.version() == "TLSv1.2"  # type: ignore[attr-defined]
    client.raw_line()
    client.ok("LOGOUT")
    client.close()
    for version in ("-tls1", "-tls1_1"):  # SECLEVEL=0: let this client offer them at all
        old = s_client(
            "-connect", f"127.0.0.1:{tls.tls_port}", version, "-cipher", "DEFAULT@SECLEVEL=0"
        )
        assert old.returncode != 0
    wait_for(lambda: tls.log().count("TLS handshake failed: UNSUPPORTED_PROTOCOL") == 2)


def test_openssl_s_client_verifies_the_chain(tls: TlsImapd, pki: Pki) -> None:
    session = f'a LOGIN alice "{USERS["alice"]}"\nb LOGOUT\n'.encode()
    verify = ["-CAfile", str(pki.ca), "-verify_return_error", "-verify_hostname", "localhost"]
    for args in (
        ["-connect", f"127.0.0.1:{tls.server.port}", "-starttls", "imap"],
        ["-connect", f"127.0.0.1:{tls.tls_port}"],
    ):
        result = s_client(*args, *verify, data=session)
        out = result.stdout.decode(errors="replace")
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        assert "a OK [CAPABILITY " in out and "b OK Logout completed" in out, out


# -- mbsync with its default TLS settings -------------------------------------------------------


@pytest.mark.client
@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")
def test_mbsync_with_default_tls_settings(
    daemons: DaemonFactory, site: MailSite, pki: Pki, tmp_path: Path
) -> None:
    """mbsync's default is STARTTLS with certificate and name checks; CertificateFile names the
    test CA. No network is trusted, so the login works only over TLS."""
    root = site.mail / USER
    seed_server(root)
    daemon = daemons.start(
        "imapd",
        "-l",
        "127.0.0.1",
        *site.common_args(),
        "-u",
        f"{USER}:{PASSWORD}",
        config=site.config(pki.config() + "trusted_networks =\n"),
    )
    local = tmp_path / "local"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount server\nHost localhost\nPort {daemon.port}\nUser {USER}\n"
        f"Pass {PASSWORD}\nCertificateFile {pki.ca}\nTimeout 20\n\n"
        "IMAPStore remote\nAccount server\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        "Channel mail\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nSyncState *\n"
    )
    rc.chmod(0o600)
    result = subprocess.run(
        ["mbsync", "-c", str(rc), "-D", "-a"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, exchange(log)
    assert_in_step(root, local, seeded(), log)
    server_log = daemon.log()
    assert "TLS started: TLSv1.3" in server_log
    assert "compression active" in server_log  # COMPRESS=DEFLATE on top of TLS
