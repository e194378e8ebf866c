"""TLS from the administrator's side: a certificate or key that cannot be used stops the start
(one line on stderr, exit 1, no pidfile, no process), and on HUP a renewed certificate is taken
while a bad one keeps the old with one log line."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from support.daemons import BIN, DaemonFactory, free_port, port_open, wait_for
from support.site import MailSite
from support.tls import Pki


def copy_pair(pki: Pki, directory: Path) -> tuple[Path, Path]:
    """The test pair copied where the test may overwrite it (a renewal)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    shutil.copy(pki.cert, cert)
    shutil.copy(pki.key, key)
    key.chmod(0o600)
    return cert, key


def start_detached(
    daemon: str, site: MailSite, port: int, extra: str
) -> subprocess.CompletedProcess[str]:
    conf = site.root / f"{daemon}-{port}.conf"
    conf.write_text(site.config(f"log = {site.root / 'daemon.log'}\n{extra}"))
    flag = "-P" if daemon == "msmpd" else "-p"
    return subprocess.run(
        [str(BIN / daemon), "-c", str(conf), flag, str(port)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("daemon", "case", "message"),
    [
        ("imapd", "world-readable key", "is readable by everyone (mode 0644)"),
        ("imapd", "key of another certificate", "is not the key of tls_cert"),
        ("pop3d", "missing certificate", "cannot read tls_cert"),
        ("pop3d", "tls_port without a certificate", "tls_port is set but tls_cert and tls_key"),
        ("pop3d", "tls_port is the plain port", "is the plain port too"),
        ("msmpd", "require_tls without a certificate", "require_tls needs tls_cert and tls_key"),
    ],
)
def test_a_bad_certificate_stops_the_start_in_one_line(
    site: MailSite, pki: Pki, daemon: str, case: str, message: str
) -> None:
    cert, key = copy_pair(pki, site.root)
    port = free_port()
    extra = f"tls_cert = {cert}\ntls_key = {key}\nlisten = 127.0.0.1\n"
    if case == "world-readable key":
        key.chmod(0o644)
    elif case == "key of another certificate":
        key.write_bytes(pki.other_key.read_bytes())
    elif case == "missing certificate":
        cert.unlink()
    elif case == "tls_port without a certificate":
        extra = f"[pop3d]\ntls_port = {free_port()}\n"
    elif case == "tls_port is the plain port":
        extra += f"[pop3d]\ntls_port = {port}\n"
    elif case == "require_tls without a certificate":
        extra = "[msmpd]\nrequire_tls = yes\n"
    result = start_detached(daemon, site, port, extra)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"{daemon}: ") and message in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert not (site.run / f"{daemon}.pid").exists()
    assert not port_open(port)


def served_certificate(port: int, cafile: Path) -> bytes:
    """The leaf certificate the TLS port serves, verified against `cafile`."""
    context = ssl.create_default_context(cafile=str(cafile))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_hup_takes_a_renewed_certificate_and_keeps_the_old_for_a_bad_one(
    daemons: DaemonFactory, site: MailSite, pki: Pki
) -> None:
    cert, key = copy_pair(pki, site.root)
    tls_port = free_port()
    daemon = daemons.start(
        "imapd",
        "-l",
        "127.0.0.1",
        "-u",
        "alice:pw",
        config=site.config(f"tls_cert = {cert}\ntls_key = {key}\n[imapd]\ntls_port = {tls_port}\n"),
    )
    first = served_certificate(tls_port, pki.ca)

    # A key that is not the certificate's (a renewal half done): the old pair stays.
    key.write_bytes(pki.other_key.read_bytes())
    daemon.proc.send_signal(1)
    wait_for(lambda: "TLS not reloaded" in daemon.log(), what="the reload's refusal")
    refusals = [line for line in daemon.log().splitlines() if "TLS not reloaded" in line]
    assert len(refusals) == 1
    assert "keeping the old certificate: tls_key" in refusals[0]
    assert "is not the key of tls_cert" in refusals[0]
    assert served_certificate(tls_port, pki.ca) == first

    # The renewal completed: the new certificate is served from the next connection on.
    cert.write_bytes(pki.other_cert.read_bytes())
    daemon.proc.send_signal(1)
    wait_for(lambda: daemon.log().count("configuration reloaded") == 2, what="the second reload")
    renewed = served_certificate(tls_port, pki.other_cert)
    assert renewed != first
    assert daemon.log().count("TLS not reloaded") == 1
    assert daemon.proc.poll() is None


def test_a_tls_port_at_its_limit_closes_without_a_word_in_clear(
    daemons: DaemonFactory, site: MailSite, pki: Pki
) -> None:
    tls_port = free_port()
    daemon = daemons.start(
        "pop3d",
        "-l",
        "127.0.0.1",
        "-u",
        "alice:secret",
        config=site.config(pki.config() + f"max_per_address = 1\n[pop3d]\ntls_port = {tls_port}\n"),
    )

    def greeted() -> ssl.SSLSocket | None:
        """A TLS session that got its greeting (the start-up probe's may still be counted)."""
        sock = socket.create_connection(("127.0.0.1", tls_port), timeout=10)
        try:
            tls = pki.wrap(sock)
            if tls.recv(100).startswith(b"+OK"):
                return tls
        except (ssl.SSLError, OSError):
            pass
        sock.close()
        return None

    held = wait_for(greeted, what="a TLS session")
    with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as refused:
        assert refused.recv(100) == b""  # no "-ERR ..." in clear on a TLS port
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as plain:
        assert plain.recv(100).startswith(b"-ERR [SYS/TEMP] Too many connections from your")
    held.close()
    assert "refused 127.0.0.1: address limit reached" in daemon.log()
