"""The RETR transformer (seed 003, `-t CMD`): success, failure and timeout; what it is given; how
its output is sent; and where the command comes from (config < -t < runtime setting)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from common.config import RuntimeState
from support.daemons import wait_for
from support.pop3 import Pop3Server
from support.site import deliver

MESSAGE = b"Subject: lower case\n\nhello world\n.dot line\n"
SIZE = len(MESSAGE) + MESSAGE.count(b"\n")  # the CRLF form


def retr(client, number: int = 1) -> bytes:
    client.send(b"RETR %d\r\n" % number)
    return client.until(b".\r\n")


def leftover(marker: str) -> list[int]:
    """Live processes whose command line holds `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


def test_transformer_success(pop3d, site):
    server = pop3d("[pop3d]\ntransformer = tr a-z A-Z\n")
    path = deliver(site.maildir("alice"), MESSAGE)
    client = server.raw_login()
    client.send(b"LIST 1\r\n")
    assert client.line() == b"+OK 1 %d\r\n" % SIZE, "LIST has the stored size"
    assert retr(client) == (
        b"+OK %d octets\r\n" % SIZE
        + b"SUBJECT: LOWER CASE\r\n\r\nHELLO WORLD\r\n..DOT LINE\r\n.\r\n"
    )
    assert path.read_bytes() == MESSAGE, "the stored message is untouched"
    client.send(b"TOP 1 1\r\n")
    assert client.until(b".\r\n") == b"+OK\r\nSubject: lower case\r\n\r\nhello world\r\n.\r\n"


def test_transformer_gets_the_stored_bytes_and_its_output_is_sent_as_crlf(pop3d, site):
    command = "wc -c; printf '.starts with a dot\\nno final newline'"
    server = pop3d("", "-t", command)
    deliver(site.maildir("alice"), MESSAGE)
    client = server.raw_login()
    body = b"%d\r\n..starts with a dot\r\nno final newline\r\n" % len(MESSAGE)
    assert retr(client) == b"+OK %d octets\r\n" % (len(body) - 1) + body + b".\r\n"


def test_transformer_failure(pop3d, site):
    server = pop3d("", "-t", "cat >/dev/null; exit 3")
    path = deliver(site.maildir("alice"), MESSAGE)
    client = server.raw_login()
    client.send(b"RETR 1\r\nSTAT\r\nDELE 1\r\nRETR 1\r\nQUIT\r\n")
    failed = b"-ERR [SYS/TEMP] Message transformation failed, try again later\r\n"
    assert client.line() == failed
    assert client.line() == b"+OK 1 %d\r\n" % SIZE, "the session goes on"
    assert client.line() == b"+OK Message 1 deleted\r\n"
    assert client.line() == b"-ERR Message 1 already deleted\r\n"
    assert client.line().startswith(b"+OK")
    assert not path.exists()
    wait_for(lambda: "transformer failed on" in server.daemon.log(), what="the log line")
    assert "exit status 3" in server.daemon.log()


def test_transformer_that_cannot_run(pop3d, site):
    server = pop3d("", "-t", "/nonexistent/transformer")
    path = deliver(site.maildir("alice"), MESSAGE)
    client = server.raw_login()
    client.send(b"RETR 1\r\n")
    assert client.line().startswith(b"-ERR [SYS/TEMP]")
    client.send(b"QUIT\r\n")
    assert client.line().startswith(b"+OK")
    assert path.read_bytes() == MESSAGE


def test_transformer_timeout_kills_what_it_started(pop3d, site):
    marker = "29.4711"
    server = pop3d(
        "[pop3d]\ntransformer_timeout = 1\n", "-t", f"sleep {marker} & sleep {marker}; cat"
    )
    deliver(site.maildir("alice"), MESSAGE)
    client = server.raw_login()
    started = time.monotonic()
    client.send(b"RETR 1\r\n")
    assert client.line() == (b"-ERR [SYS/TEMP] Message transformation failed, try again later\r\n")
    assert time.monotonic() - started >= 0.9
    assert leftover(marker) == [], "the transformer's whole process group is killed"
    client.send(b"STAT\r\n")
    assert client.line() == b"+OK 1 %d\r\n" % SIZE
    assert "timed out after 1s" in server.daemon.log()
    server.assert_serving()


def test_transformer_precedence(pop3d, site):
    server = pop3d("[pop3d]\ntransformer = sed s/hello/config/\n", "-t", "sed s/hello/flag/")
    deliver(site.maildir("alice"), MESSAGE)
    client = server.raw_login()
    assert b"flag world" in retr(client), "-t beats the config file"
    client.send(b"QUIT\r\n")
    client.line()
    RuntimeState(site.state).set("transformer", "sed s/hello/runtime/")  # MSMP SET transformer
    client = server.raw_login()
    assert b"runtime world" in retr(client), "a runtime setting beats -t"
    client.send(b"QUIT\r\n")
    client.line()
    RuntimeState(site.state).set("transformer", "")
    client = server.raw_login()
    assert b"hello world" in retr(client), "set to empty: no transformer"


def test_cat_the_seeds_default_starts_no_process(daemons, site):
    """`cat` (seed 003's default) means no transformer: with a PATH where no program can be
    found, RETR sends the message as stored, while any other command fails there."""
    deliver(site.maildir("alice"), MESSAGE)
    for command, works in (("cat", True), (" cat ", True), ("cat -u", False)):
        daemon = daemons.start(
            "pop3d",
            "-l",
            "127.0.0.1",
            "-u",
            "alice:secret",
            "-t",
            command,
            config=site.config(),
            env={"PATH": "/nonexistent"},
        )
        client = Pop3Server(daemon, site).raw_login()
        client.send(b"RETR 1\r\n")
        if works:
            assert client.until(b".\r\n") == (
                b"+OK %d octets\r\n" % SIZE
                + b"Subject: lower case\r\n\r\nhello world\r\n..dot line\r\n.\r\n"
            ), command
        else:
            assert client.line().startswith(b"-ERR [SYS/TEMP]"), command
        daemon.stop()
