"""IMAP IDLE in the pool model, whatever model the rest of the run uses: the worker waits on one
inotify instance for every idling session (an eventfd each while it idles, none after), not on a
timer per session, and a delivery is pushed."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from support.daemons import wait_for, workers
from support.site import deliver

POOL = "process_model = pool\nworkers = 1\n"


def open_files(pid: int) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            found.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return found


def eventfds(pid: int) -> int:
    return sum(1 for target in open_files(pid) if target == "anon_inode:[eventfd]")


def test_idle_waits_on_the_workers_folder_watcher(imapd):
    server = imapd(POOL)
    [worker] = wait_for(lambda: len(found := workers(server.daemon.pid)) == 1 and found)
    assert "anon_inode:inotify" in open_files(worker)
    maildir: Path = server.maildir()
    before = eventfds(worker)
    idlers = [server.raw_select() for _ in range(3)]
    for client in idlers:
        client.send(b"i1 IDLE\r\n")
        assert client.raw_line().startswith(b"+ ")
    # One eventfd per idling session, all woken by the one inotify watch of their folder.
    assert eventfds(worker) == before + 3
    deliver(maildir, b"Subject: pushed\n\nbody\n")
    for client in idlers:
        assert client.raw_line() == b"* 1 EXISTS\r\n"
    recent = []
    for client in idlers:
        client.send(b"DONE\r\n")
        lines, done = client.until_tagged("i1")
        assert done == b"i1 OK IDLE terminated\r\n"
        assert all(line.endswith(b" RECENT\r\n") for line in lines), lines
        recent += lines
    assert recent.count(b"* 1 RECENT\r\n") <= 1  # \Recent goes to one session at most
    wait_for(lambda: eventfds(worker) == before, what="the watches closed")
