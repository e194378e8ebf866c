"""Certificates made at test time with the `openssl` command, and TLS clients that trust them.

`make_pki` builds a root CA, an intermediate CA signed by it, and a server certificate signed by
the intermediate for localhost, 127.0.0.1, 127.0.0.2 and ::1. The server's certificate file
holds the chain (leaf, then intermediate); clients trust the root alone, so every verification
also proves that the chain in the file is served. EC P-256 keys: quick to make.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from support.clients import LineClient

DAYS = "3"
CA_EXTENSIONS = (
    "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n"
)
SERVER_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n"
    "authorityKeyIdentifier=keyid:always\n"
    "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.2,IP:::1\n"
)


@dataclass(frozen=True)
class Pki:
    """A test CA and a server certificate (with its chain) and key for the daemons."""

    directory: Path
    ca: Path  # the root CA: what clients trust
    cert: Path  # leaf + intermediate, PEM
    key: Path  # the leaf's key, mode 600
    other_key: Path  # a key of no certificate here (a mismatch)
    other_cert: Path  # a self-signed certificate for localhost of another key

    def config(self) -> str:
        """The [common] lines that turn TLS on."""
        return f"tls_cert = {self.cert}\ntls_key = {self.key}\n"

    def client_context(self) -> ssl.SSLContext:
        """What a careful client does: verify the chain to our root and the host name."""
        return ssl.create_default_context(cafile=str(self.ca))

    def wrap(self, sock: socket.socket, host: str = "127.0.0.1") -> ssl.SSLSocket:
        return self.client_context().wrap_socket(sock, server_hostname=host)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def new_key(name: str, cwd: Path) -> None:
    openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name, cwd=cwd
    )


def sign(name: str, subject: str, issuer: str, extensions: str, cwd: Path) -> None:
    """`name`.key, `name`.pem signed by `issuer`.pem/.key with `extensions`."""
    new_key(f"{name}.key", cwd)
    openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=cwd)
    (cwd / f"{name}.ext").write_text(extensions)
    openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{issuer}.pem",
        "-CAkey",
        f"{issuer}.key",
        "-CAcreateserial",
        "-days",
        DAYS,
        "-sha256",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.pem",
        cwd=cwd,
    )


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    new_key("root.key", directory)
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "root.key",
        "-subj",
        "/CN=maildaemons test root CA",
        "-days",
        DAYS,
        "-sha256",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        "root.pem",
        cwd=directory,
    )
    sign("intermediate", "/CN=maildaemons test intermediate CA", "root", CA_EXTENSIONS, directory)
    sign("server", "/CN=localhost", "intermediate", SERVER_EXTENSIONS, directory)
    new_key("other.key", directory)
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "other.key",
        "-subj",
        "/CN=localhost",
        "-days",
        DAYS,
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-out",
        "other.pem",
        cwd=directory,
    )
    chain = directory / "server-chain.pem"
    chain.write_bytes(
        (directory / "server.pem").read_bytes() + (directory / "intermediate.pem").read_bytes()
    )
    for key in directory.glob("*.key"):
        key.chmod(0o600)
    return Pki(
        directory,
        ca=directory / "root.pem",
        cert=chain,
        key=directory / "server.key",
        other_key=directory / "other.key",
        other_cert=directory / "other.pem",
    )


def upgrade(client: LineClient, pki: Pki, host: str = "127.0.0.1") -> None:
    """After STARTTLS/STLS's OK: the client's socket becomes TLS, verified against the test CA.
    Nothing may have arrived after the OK (the server waits for the handshake)."""
    assert client.buf == b"", client.buf
    client.sock = pki.wrap(client.sock, host)


def s_client(
    *args: str, data: bytes = b"", timeout: float = 30
) -> subprocess.CompletedProcess[bytes]:
    """`openssl s_client -quiet` with `data` on its stdin (LF turned into CRLF): it stays until
    the server closes, so `data` should end in a LOGOUT or QUIT."""
    return subprocess.run(
        ["openssl", "s_client", "-quiet", "-crlf", *args],
        input=data,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
