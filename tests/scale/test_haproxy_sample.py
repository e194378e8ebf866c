"""etc/haproxy.cfg, the sample for a site (README "Scaling out"): HAProxy accepts it as it is,
and, pointed at a real pop3d and imapd on loopback (plain and TLS ports, all expecting the PROXY
header), its health checks pass and a client's sessions through every frontend reach the
daemons under the client's own address."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.clients import LineClient
from support.daemons import DaemonFactory, free_port, wait_for
from support.scaleout import listening
from support.site import MailSite
from support.tls import Pki

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("haproxy") is None, reason="needs HAProxy (tests/apt-packages)"
    ),
]

SAMPLE = Path(__file__).resolve().parents[2] / "etc" / "haproxy.cfg"
CLIENT = "127.0.0.2"
PORTS = {"110": "pop3d port", "995": "pop3d tls", "143": "imapd port", "993": "imapd tls"}


def test_haproxy_accepts_the_sample_and_its_commented_examples(tmp_path: Path) -> None:
    examples = tmp_path / "examples.cfg"
    text = SAMPLE.read_text()
    examples.write_text(re.sub(r"^    #(?=\S)", "    ", text, flags=re.M))
    assert examples.read_text().count("stick-table") == 2
    for config in (SAMPLE, examples):
        result = subprocess.run(
            ["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[WARNING]" not in result.stdout + result.stderr


def local_config(ports: dict[str, int], fronts: dict[str, int], stats: Path) -> str:
    """The sample with loopback addresses and ports, in the foreground, with a stats socket and
    checks every half second."""
    text = SAMPLE.read_text()
    for line in ("    log /dev/log local0\n", "    user haproxy\n", "    group haproxy\n"):
        text = text.replace(line, "")
    text = text.replace("    daemon\n", f"    stats socket {stats} level admin\n")
    for address in ("10.0.0.11", "10.0.0.12"):
        for sample_port, port in ports.items():
            text = text.replace(f"{address}:{sample_port} ", f"127.0.0.1:{port} ")
    for sample_port, port in ports.items():
        text = text.replace(f"check port {sample_port} ", f"check port {port} ")
    for sample_port, port in fronts.items():
        text = text.replace(f"    bind :{sample_port}\n", f"    bind 127.0.0.1:{port}\n")
    text = text.replace("inter 10s", "inter 500ms")
    text = text.replace("maxconn 20000", "maxconn 1000")  # within this test's open-files limit
    assert not re.search(r"^[^#]*10\.0\.0\.", text, re.M) and "bind :" not in text
    return text


def stat_rows(stats: Path) -> list[dict[str, str]]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(stats))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    return [dict(zip(header, row.split(","), strict=False)) for row in lines[1:] if row]


@contextlib.contextmanager
def haproxy(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        ["haproxy", "-db", "-f", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_the_sample_checks_and_balances_real_daemons(
    daemons: DaemonFactory, site: MailSite, pki: Pki, tmp_path: Path
) -> None:
    site.maildir("alice")
    (site.root / "users").write_text("alice:{PLAIN}secret\n")
    ports = {sample: free_port() for sample in PORTS}
    sections = (
        f"proxy_trusted = 127.0.0.1\ntrusted_networks = {CLIENT}\n{pki.config()}"
        f"[pop3d]\ntls_port = {ports['995']}\nproxy_protocol = port tls_port\n"
        f"[imapd]\ntls_port = {ports['993']}\nproxy_protocol = port tls_port\n"
    )
    conf = site.config(sections)
    pop3 = daemons.start("pop3d", "-l", "127.0.0.1", port=ports["110"], config=conf)
    imapd = daemons.start("imapd", "-l", "127.0.0.1", port=ports["143"], config=conf)
    fronts = {sample: free_port() for sample in PORTS}
    stats = tmp_path / "haproxy.sock"
    config = tmp_path / "haproxy.cfg"
    config.write_text(local_config(ports, fronts, stats))
    with haproxy(config) as proc:

        def started() -> bool:
            if proc.poll() is not None:
                output = proc.stdout.read().decode() if proc.stdout else ""
                raise AssertionError(f"haproxy exited {proc.returncode}: {output}")
            return all(listening(proc.pid, p) for p in fronts.values())

        wait_for(started, what="haproxy listening")

        def checked() -> bool:
            rows = [r for r in stat_rows(stats) if r["svname"].startswith("mail")]
            assert len(rows) == 8
            assert not any(r["status"] == "DOWN" for r in rows), rows
            return all(r["check_status"] == "L7OK" for r in rows)

        wait_for(checked, timeout=30, what="every server's health check passing")

        for sample, wrap in (("110", False), ("995", True), ("143", False), ("993", True)):
            sock = socket.create_connection(("127.0.0.1", fronts[sample]), 10, (CLIENT, 0))
            if wrap:
                sock = pki.wrap(sock)
            client = LineClient(sock)
            imap = sample in ("143", "993")
            assert client.line().startswith(b"* OK" if imap else b"+OK")
            if imap:
                client.send(b"a LOGIN alice secret\r\nb LOGOUT\r\n")
                assert client.until(b"b OK Logout completed\r\n").startswith(b"a OK")
            else:
                client.send(b"USER alice\r\nPASS secret\r\nQUIT\r\n")
                assert client.line() == b"+OK\r\n"
                assert client.line().startswith(b"+OK Logged in")
            sock.close()
    for daemon, tls_logins in ((pop3, 1), (imapd, 1)):
        log = daemon.log()
        assert len(re.findall(rf"\}} {CLIENT} login user=alice", log)) == 2
        assert log.count(f"{CLIENT} connect (TLS port)") == tls_logins
        # The health checks: LOCAL headers, so the balancer's own address, and clean ends.
        assert "127.0.0.1 connect via 127.0.0.1 (PROXY v2)" in log
        assert "Traceback" not in log and "internal error" not in log
