"""A real client's header cache against CONDSTORE: neomutt (Debian package neomutt) opens INBOX
twice with `header_cache` and `imap_condstore`. The first time it fetches every header and
caches them; after another session flags a message, the second time it asks only for the
flags changed since the HIGHESTMODSEQ it cached (UID FETCH ... (CHANGEDSINCE n)), fetches no
header again, and shows the new flag. And UTF-8 mailbox names: neomutt enables UTF8=ACCEPT
(RFC 6855) and opens a folder by its UTF-8 name. neomutt runs in a pseudo-terminal; its debug
log (`-d 2`) holds the IMAP commands it sent."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import time
from pathlib import Path

import pytest

from support.imap import shared_imapd
from support.site import deliver

pytestmark = [
    pytest.mark.client,
    pytest.mark.skipif(shutil.which("neomutt") is None, reason="neomutt not installed"),
]

shared = shared_imapd("imap-neomutt")
RUN_TIMEOUT = 30.0
# The index's status line, once INBOX is loaded: "-*-NeoMutt: =INBOX [Msgs:3 ...".
LOADED = re.compile(rb"Msgs:\d+")


def neomutt(home: Path, log: str) -> bytes:
    """Run neomutt until its index shows INBOX, quit it; returns what it put on the screen."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: neomutt on the pseudo-terminal
        os.environ.update({"TERM": "vt100", "HOME": str(home), "LC_ALL": "C.UTF-8"})
        argv = ["neomutt", "-n", "-F", str(home / "muttrc"), "-d", "2", "-l", str(home / log)]
        try:
            os.execvp(argv[0], argv)  # noqa: S606 (on the pseudo-terminal, no shell)
        finally:
            os._exit(127)
    screen = b""
    deadline = time.monotonic() + RUN_TIMEOUT
    quit_sent = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # the child closed the terminal: it ended
                    break
                if not chunk:
                    break
                screen += chunk
            if not quit_sent and LOADED.search(screen):
                os.write(fd, b"q")
                quit_sent = True
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.waitpid(pid, 0)
        os.close(fd)
    assert quit_sent, f"neomutt never showed INBOX: {screen[-2000:]!r}"
    return screen


def sent(home: Path, log: str) -> list[str]:
    """The IMAP commands neomutt logged (`4> tag COMMAND ...`), tags stripped."""
    text = "".join(p.read_text("utf-8", errors="replace") for p in home.glob(f"{log}*"))
    return [m.group(1) for m in re.finditer(r"\d> a\d+ (.*)", text)]


def muttrc(account, home: Path, *settings: str) -> None:
    (home / "muttrc").write_text(
        f'set imap_user = "{account.user}"\n'
        f'set imap_pass = "{account.passwords[account.user]}"\n'
        f'set folder = "imap://127.0.0.1:{account.port}/"\n'
        "set ssl_starttls = no\nset ssl_force_tls = no\nset mail_check = 0\n"
        "set mark_old = no\nset move = no\nset index_format = '%4C %Z %s'\n"
        + "".join(f"{line}\n" for line in settings),
        encoding="utf-8",
    )


def test_header_cache_and_condstore(shared, tmp_path):
    account = shared.account()
    for n in (1, 2, 3):
        deliver(
            account.maildir(),
            f"From: sender{n}@example.com\nTo: {account.user}@example.com\n"
            f"Subject: cached {n}\nMessage-ID: <c{n}@t>\nDate: {n} Jan 2020 10:00:00 +0000\n\n"
            f"body {n}\n".encode(),
            subdir="cur",
            name=f"{1600000000 + n}.M{n}P5.mutt:2,S",
        )
    home = tmp_path / "home"
    (home / "hcache").mkdir(parents=True)
    muttrc(
        account,
        home,
        'set spoolfile = "+INBOX"',
        f'set header_cache = "{home}/hcache/"',
        "set imap_condstore = yes",
    )
    neomutt(home, "first")
    first = sent(home, "first")
    assert 'SELECT "INBOX" (CONDSTORE)' in first, first
    assert any("BODY.PEEK[HEADER.FIELDS" in command for command in first), first
    assert list((home / "hcache").rglob("*")), "neomutt cached no header"
    other = account.raw_select()
    other.ok("STORE 2 +FLAGS (\\Flagged)")
    screen = neomutt(home, "second")
    second = sent(home, "second")
    assert any(re.search(r"\(CHANGEDSINCE \d+\)", command) for command in second), second
    assert not any("BODY.PEEK[HEADER.FIELDS" in command for command in second), second
    assert re.search(rb"!\s*cached 2", screen), screen[-2000:]  # the flag it learned


def test_utf8_folder_names(shared, tmp_path):
    """A folder a modified UTF-7 client made (`&AMQ-rger.&ZeVnLA-`) is opened by neomutt by its
    UTF-8 name once it enabled UTF8=ACCEPT, and shows its message."""
    account = shared.account()
    other = account.raw_login()
    other.ok("CREATE &AMQ-rger.&ZeVnLA-")
    message = b"From: a@example.com\r\nSubject: utf8 folder mail\r\n\r\nbody\r\n"
    other.send(b"a1 APPEND &AMQ-rger.&ZeVnLA- {%d+}\r\n%s\r\n" % (len(message), message))
    assert other.until_tagged("a1")[1].startswith(b"a1 OK")
    home = tmp_path / "home"
    home.mkdir()
    muttrc(account, home, 'set spoolfile = "+\u00c4rger.\u65e5\u672c"')
    screen = neomutt(home, "utf8")
    commands = sent(home, "utf8")
    assert "ENABLE UTF8=ACCEPT" in commands, commands
    assert 'SELECT "\u00c4rger.\u65e5\u672c"' in commands, commands
    assert b"utf8 folder mail" in screen, screen[-2000:]
