"""memory_merge: a daemon's sessions ask the kernel to merge their identical pages (KSM): a pool
worker from its start, a fork-model child once its session has lasted `memory_merge_after`
seconds (a short one never asks); with ksmd running, held fork-model sessions give back the
pages they copied from the master: far under issue 14's 2 MiB each."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from common import samepage
from support.daemons import pooled, reloads, serving_process, wait_for
from support.paths import REPO
from support.site import deliver

HELD = {f"held{n}": f"pw{n}" for n in range(4)}
MIB = 2**20


def merge_any(pid: int) -> bool | None:
    """`ksm_merge_any` of /proc/PID/ksm_stat; None when the kernel shows no such line."""
    try:
        text = Path(f"/proc/{pid}/ksm_stat").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("ksm_merge_any:"):
            return line.split(":", 1)[1].strip() == "yes"
    return None


@functools.cache
def kernel_merges() -> bool:
    """Whether this kernel grants PR_SET_MEMORY_MERGE: asked by a throwaway process, so the
    test runner itself stays as it is."""
    probe = "from common import samepage; raise SystemExit(samepage.ask_kernel(True) is not None)"
    return subprocess.run([sys.executable, "-c", probe], cwd=REPO, check=False).returncode == 0


def private_dirty(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Private_Dirty:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no Private_Dirty for {pid}")


def test_memory_merge_reaches_every_session_process(pop3d, site):
    message = b"Subject: merged\r\n\r\nbody\r\n"
    deliver(site.maildir("alice"), message)
    server = pop3d("memory_merge = yes\nmemory_merge_after = 0.3\n")
    client = server.login()
    try:
        kid = serving_process(server.daemon, client.sock)  # the child, or the pool's worker
        log = server.daemon.log()
        if kernel_merges():
            wait_for(lambda: merge_any(kid), what="the session's process asking for merging")
            # A fork master never asks: only its held sessions are worth ksmd's scanning.
            assert merge_any(server.daemon.pid) is pooled()
            assert "memory_merge: the kernel merges" in log or "until ksmd is started" in log
        else:
            assert "memory_merge: this kernel cannot merge a process's pages" in log
        assert client.stat() == (1, len(message))
    finally:
        client.quit()


def test_a_short_fork_session_never_asks_for_merging(pop3d):
    server = pop3d("process_model = fork\nmemory_merge = yes\nmemory_merge_after = 3600\n")
    client = server.login()
    try:
        kid = serving_process(server.daemon, client.sock)
        assert client.stat() == (0, 0)
        client.noop()
        assert merge_any(kid) is not True
        assert merge_any(server.daemon.pid) is not True
    finally:
        client.quit()


def test_memory_merge_is_off_by_default(pop3d):
    server = pop3d()
    client = server.login()
    try:
        kid = serving_process(server.daemon, client.sock)
        assert merge_any(server.daemon.pid) is not True
        assert merge_any(kid) is not True
        assert "memory_merge" not in server.daemon.log()
    finally:
        client.quit()


@pytest.mark.skipif(not kernel_merges(), reason="this kernel cannot merge a process's pages")
def test_hup_turns_merging_on_for_the_sessions_forked_after_it(pop3d):
    server = pop3d("process_model = fork\n")
    before = server.login()
    old_kid = serving_process(server.daemon, before.sock)
    text = server.config_file.read_text()
    merging = "[common]\nmemory_merge = yes\nmemory_merge_after = 0.3\n"
    server.config_file.write_text(text.replace("[common]\n", merging, 1))
    os.kill(server.daemon.pid, signal.SIGHUP)
    wait_for(lambda: reloads(server.daemon) == 1, what="the reload")
    after = server.login("bob")
    try:
        new_kid = serving_process(server.daemon, after.sock)
        wait_for(lambda: merge_any(new_kid), what="the new session asking for merging")
        after.noop()
        before.noop()  # waited past the offer too, but a running session keeps its settings
        assert merge_any(old_kid) is False
    finally:
        after.quit()
        before.quit()


def ksmd_settable() -> bool:
    return os.access(samepage.KSM_RUN, os.W_OK) and kernel_merges()


@pytest.mark.skipif(not ksmd_settable(), reason="needs root and a kernel with KSM")
def test_held_fork_sessions_give_their_copied_pages_back_once_ksmd_runs(pop3d):
    already = samepage.ksmd_running()
    config = "process_model = fork\nmemory_merge = yes\nmemory_merge_after = 0.2\n"
    server = pop3d(config, users=HELD)
    clients = [server.login(user, password) for user, password in HELD.items()]
    try:
        kids = [serving_process(server.daemon, client.sock) for client in clients]
        wait_for(lambda: all(merge_any(kid) for kid in kids), what="every session asking")
        before = [private_dirty(kid) for kid in kids]
        with samepage.Ksmd(5000) as ksmd:
            _waited, scans = ksmd.settle(3, timeout=120)
            after = [private_dirty(kid) for kid in kids]
        assert scans >= 3
        assert max(after) < 2 * MIB, [round(size / MIB, 2) for size in after]
        if not already:
            assert sum(after) < sum(before) / 2, (before, after)
        for client in clients:  # every merged session still answers
            assert client.stat() == (0, 0)
    finally:
        for client in clients:
            client.quit()
