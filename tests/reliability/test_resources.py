"""Resource faults (issue 17): a full disk under the mail (a size-limited tmpfs as the mail base)
during APPEND, COPY and the uidlist's update; an exhausted file-descriptor limit on the process
that accepts connections (the fork model's master, the pool model's workers); the stats
collector gone. Each time the clients get a clean refusal (`NO [OVERQUOTA]`, `-ERR [SYS/TEMP]`,
the busy line), nothing acknowledged is lost or doubled, the daemons keep running and say why
in their log, and the service is whole again once the resource is back."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.clients import LineClient
from support.daemons import pooled, sessions_running, wait_for, workers
from support.imap import crlf
from support.mailstore import INBOX, tmp_leftovers
from support.reliability import Rig

ROOT = os.geteuid() == 0


def mountable() -> bool:
    """Whether this machine lets the tests mount a tmpfs (root, and not forbidden)."""
    if not ROOT:
        return False
    probe = Path("/tmp") / f"maildaemons-tmpfs-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)])
        if done.returncode:
            return False
        subprocess.run(["umount", str(probe)], check=True)
        return True
    finally:
        probe.rmdir()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """mount(path): a 3 MiB tmpfs on `path`, taken away again at the end."""
    if not mountable():
        pytest.skip("needs root and a tmpfs mount for a full disk")
    mounted: list[Path] = []

    def mount(path: Path) -> None:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0755", "tmpfs", str(path)])
        mounted.append(path)

    try:
        yield mount
    finally:
        for path in mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def fill_up(path: Path) -> Path:
    """Write a filler file under `path` until the file system is full; returns it."""
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)
    with contextlib.suppress(OSError):
        for n in range(10_000):  # the inodes' data pages too: tiny files until none fits
            (path / f"filler.{n}").write_bytes(b"x")
    return filler


def free_up(path: Path) -> None:
    for filler in path.glob("filler*"):
        filler.unlink()


def test_full_disk_refuses_cleanly_and_loses_nothing(
    own_rig: Callable[..., Rig], small_disk: Callable[[Path], None]
) -> None:
    rig = own_rig()
    small_disk(rig.site.mail)
    account = rig.account()
    ids = [account.deliver(size=1500, subdir="cur") for _ in range(6)]
    client = account.select()  # UIDs given while there is room
    client.ok("CREATE Kept")
    late = account.deliver(size=1500)  # arrives, gets its UID only at the next sync
    fill_up(rig.site.mail)

    ident, data = account.ledger.new(200_000)
    wire = crlf(data)
    _lines, done = client.cmd(b"APPEND INBOX {%d+}\r\n" % len(wire) + wire)
    assert re.match(rb"t\d+ NO \[OVERQUOTA\] ", done), done
    account.ledger.removed(ident)  # refused: stored nowhere, not even in part
    _lines, done = client.cmd("COPY 1:* Kept")
    assert re.match(rb"t\d+ NO \[OVERQUOTA\] ", done), done
    _lines, done = client.cmd("STORE 1 +FLAGS (\\Flagged)")  # its change log cannot grow
    assert done.split(b" ")[1] in (b"OK", b"NO"), done
    if done.split(b" ")[1] == b"NO":
        assert b"[OVERQUOTA]" in done, done
    client.alive()
    other = account.imap()
    _lines, done = other.cmd("SELECT INBOX")  # the late message needs a UID: no room for it
    assert done.split(b" ")[1] == b"OK" or b"[OVERQUOTA]" in done, done
    pop = LineClient(rig.pop3d.connect())
    pop.line()
    pop.send(f"USER {account.user}\r\nPASS rel pw\r\n".encode())
    assert pop.line() == b"+OK\r\n"
    reply = pop.line()
    assert reply.startswith(b"+OK ") or reply.startswith(b"-ERR [SYS/TEMP]"), reply
    pop.close()
    account.check()  # nothing half-written: the APPEND and COPY left nothing behind
    assert not [p for p in tmp_leftovers(account.maildir) if "filler" not in p], "tmp/ is clean"

    free_up(rig.site.mail)  # room again: everything works as before
    client.ok("NOOP")
    account.append(client)
    client.ok("COPY 1:* Kept")
    assert {*ids, late} <= account.ledger.present(INBOX)
    for message in account.ledger.present(INBOX):
        account.ledger.stored(message, "Kept")
    client.ok("LOGOUT")
    other.close()
    account.check()
    rig.assert_healthy()


def nofile(pid: int) -> tuple[int, int]:
    return resource.prlimit(pid, resource.RLIMIT_NOFILE)


def lowest_free_fd(pid: int) -> int:
    """The number the process's next descriptor would get: with the limit there, it gets none."""
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    return min(set(range(len(used) + 1)) - used)


def test_exhausted_file_descriptors_on_the_accepting_process(own_rig: Callable[..., Rig]) -> None:
    """The limit of open files of the process that accepts (the master; each worker in the pool
    model) lowered below what it holds: new connections get the busy line and are closed
    (none waits unanswered in the backlog), the process keeps running and logs why, once;
    with the limit back, sessions work again."""
    rig = own_rig()
    account = rig.account()
    account.deliver()
    daemon = rig.pop3d
    if pooled():
        wait_for(lambda: len(workers(daemon.pid)) >= 2, what="the workers")
    # A session still ending (the rig's start-up check) would free its socket's descriptor
    # below the limit set next, and the next connection would be served.
    wait_for(lambda: sessions_running(daemon.pid) == 0, what="no session running")
    accepting = workers(daemon.pid) if pooled() else [daemon.pid]
    limits = {pid: nofile(pid) for pid in accepting}
    try:
        for pid in accepting:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free_fd(pid), limits[pid][1]))
        answers = []
        for _ in range(5):
            client = LineClient(daemon.connect())
            with contextlib.suppress(EOFError, ConnectionResetError):
                answers.append(client.line())
            client.close()
        assert answers, "every connection was answered"
        for answer in answers:
            assert answer.startswith(b"-ERR [SYS/TEMP]"), answer
        wait_for(lambda: "Too many open files" in daemon.log(), what="the reason in the log")
        log = daemon.log()
        assert log.count("Too many open files") <= 2 * len(accepting), "said once, not per try"
        assert daemon.proc.poll() is None
    finally:
        for pid, limit in limits.items():
            with contextlib.suppress(ProcessLookupError):
                resource.prlimit(pid, resource.RLIMIT_NOFILE, limit)
    pop = account.pop()
    pop.send(b"STAT\r\n")
    assert pop.line().startswith(b"+OK 1 ")
    pop.send(b"QUIT\r\n")
    assert pop.line().startswith(b"+OK")
    account.check()
    rig.assert_healthy()
