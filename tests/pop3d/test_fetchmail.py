"""A real POP3 client against a running pop3d: fetchmail (Debian package) retrieving mail into an
MDA, deleting it on the server, and (with `keep`) using UIDL to fetch only what is new."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support.site import deliver

pytestmark = [
    pytest.mark.client,
    pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed"),
]

MESSAGES = [
    b"From: a@example.org\nSubject: first\n\nbody one\n",
    b"From: b@example.org\nSubject: dots\n\n.\n..two dots\n.leading\nlast\n",
    b"From: c@example.org\nSubject: long\n\n" + b"w" * 5000 + b"\nend without newline",
]


def fetchmail(
    root: Path, port: int, outdir: Path, *options: str, uidl: bool = False
) -> subprocess.CompletedProcess[str]:
    """One fetchmail poll; every message goes through the MDA into its own file in `outdir`."""
    rcfile = root / "fetchmailrc"
    rcfile.write_text(
        "set no bouncemail\n"
        f"poll 127.0.0.1 with proto POP3 port {port} timeout 20{' uidl' if uidl else ''}\n"
        '  user "alice" there with password "secret" is "root" here\n'
        "  sslproto ''\n"
        f"  mda \"/bin/sh -c 'cat > $(mktemp {outdir}/msg.XXXXXX)'\"\n"
        + "".join(f"  {option}\n" for option in options)
    )
    rcfile.chmod(0o600)
    return subprocess.run(
        [
            "fetchmail",
            "-f",
            str(rcfile),
            "-i",
            str(root / "fetchids"),
            "--nosyslog",
            "-v",
            "--pidfile",
            str(root / "fetchmail.pid"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HOME": str(root), "FETCHMAILHOME": str(root)},
    )


def delivered(outdir: Path) -> list[bytes]:
    """Each delivered message without the Received: header fetchmail puts on top."""
    bodies = []
    for path in sorted(outdir.iterdir(), key=lambda p: p.stat().st_mtime_ns):
        data = path.read_bytes()
        start = data.index(b"From: ")
        bodies.append(data[start:])
    return bodies


def normalized(message: bytes) -> bytes:
    return message if message.endswith(b"\n") else message + b"\n"


def test_fetchmail_retrieves_and_deletes(pop3d, site):
    server = pop3d()
    maildir = site.maildir("alice")
    paths = [deliver(maildir, data) for data in MESSAGES]
    os.rename(paths[2], maildir / "cur" / (paths[2].name + ":2,S"))  # read by another MUA
    outdir = site.root / "out"
    outdir.mkdir()
    result = fetchmail(site.root, server.port, outdir, "fetchall")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(delivered(outdir)) == sorted(normalized(m) for m in MESSAGES)
    assert os.listdir(maildir / "new") == [] and os.listdir(maildir / "cur") == []
    assert "DELE 3" in result.stdout + result.stderr
    again = fetchmail(site.root, server.port, outdir, "fetchall")
    assert again.returncode == 1, "1 is fetchmail's 'no mail'"
    server.assert_serving()


def test_fetchmail_keep_fetches_only_new_mail_by_uidl(pop3d, site):
    server = pop3d()
    maildir = site.maildir("alice")
    first = deliver(maildir, MESSAGES[0])
    deliver(maildir, MESSAGES[1])
    outdir = site.root / "out"
    outdir.mkdir()
    result = fetchmail(site.root, server.port, outdir, "keep", uidl=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(delivered(outdir)) == 2
    assert len(os.listdir(maildir / "new")) == 2, "keep: nothing deleted"
    # A flag change renames the file; its UIDL stays, so fetchmail does not fetch it again.
    os.rename(first, maildir / "cur" / (first.name + ":2,S"))
    result = fetchmail(site.root, server.port, outdir, "keep", uidl=True)
    assert result.returncode == 1, result.stdout + result.stderr
    deliver(maildir, MESSAGES[2])
    result = fetchmail(site.root, server.port, outdir, "keep", uidl=True)
    assert result.returncode == 0, result.stdout + result.stderr
    bodies = delivered(outdir)
    assert len(bodies) == 3
    assert bodies[-1] == normalized(MESSAGES[2])
