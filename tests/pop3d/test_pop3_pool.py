"""The pool process model itself, whatever model the rest of the run uses: a dead worker
replaced while the others go on, a worker retired after `worker_lifetime` sessions, the number
of workers following HUP, titles, limits held across workers (a full worker leaves connections
to another; with none left the busy reply), and the POP3 maildrop lock between two sessions of
one worker."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from support.clients import LineClient
from support.daemons import WORKER_TITLE, is_zombie, title, wait_for, workers

POOL = "process_model = pool\n"
SESSION_PID = re.compile(r"\[(\d+)\]: \{(\d+)\} \S+ connect$", re.M)


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and not is_zombie(pid)


def pool_workers(server, count: int) -> list[int]:
    return wait_for(
        lambda: len(found := workers(server.daemon.pid)) == count and found,
        what=f"{count} workers",
    )


def sessions(server) -> int:
    total = 0
    for pid in workers(server.daemon.pid):
        found = WORKER_TITLE.search(title(pid))
        total += int(found.group(1)) if found else 0
    return total


def quiet(server) -> None:
    """Every session so far (at least the start-up probe's) has ended and is counted out: as many
    `session end` lines as `connect` lines, and the titles count none (a title is set after
    the session is counted out, and a session's own title comes before its `connect`)."""

    def done() -> bool:
        log = server.daemon.log()
        ends = len(re.findall(r"\} \S+ session end", log))
        started = len(SESSION_PID.findall(log))  # at least the start-up probe's
        return started and ends == started and sessions(server) == 0

    wait_for(done, what="every session over")


def newest_worker(server) -> int:
    """The worker that serves the newest session: the `connect` line with the highest session
    number (workers log concurrently, so not necessarily the last line)."""
    found = SESSION_PID.findall(server.daemon.log())
    return int(max(found, key=lambda pid_number: int(pid_number[1]))[0])


def test_titles_name_the_master_and_each_worker(pop3d):
    server = pop3d(POOL + "workers = 2\n")
    kids = pool_workers(server, 2)
    quiet(server)
    assert title(server.daemon.pid) == b"pop3d: master (2 workers)"
    assert sorted(title(k) for k in kids) == [
        b"pop3d: worker 1 (0 sessions)",
        b"pop3d: worker 2 (0 sessions)",
    ]
    client = server.raw_login()
    wait_for(lambda: sessions(server) == 1, what="one session counted")
    assert title(newest_worker(server)).endswith(b" (1 sessions)")
    client.send(b"QUIT\r\n")
    assert client.line().startswith(b"+OK")
    wait_for(lambda: sessions(server) == 0, what="no session counted")


def test_a_killed_worker_takes_its_sessions_and_is_replaced(pop3d):
    server = pop3d(POOL + "workers = 2\n")
    pool_workers(server, 2)
    survivor = server.raw_login("alice")
    keep = newest_worker(server)
    # A session in the other worker: open sessions until one lands there.
    victim = None
    for _ in range(50):
        client = server.raw_login("bob")
        if newest_worker(server) != keep:
            victim = client
            break
        client.send(b"QUIT\r\n")
        client.line()
    assert victim is not None, "every session went to one worker"
    doomed = newest_worker(server)
    os.kill(doomed, signal.SIGKILL)
    assert victim.closed()
    wait_for(lambda: f"Dead Child pid: {doomed}\n" in server.daemon.log(), what="the reaping")
    replaced = pool_workers(server, 2)
    assert doomed not in replaced and keep in replaced
    survivor.send(b"STAT\r\n")
    assert survivor.line().startswith(b"+OK ")
    survivor.send(b"QUIT\r\n")
    assert survivor.line().startswith(b"+OK")
    server.assert_serving()  # bob's maildrop lock went with the killed worker too
    fresh = server.login("bob")
    fresh.quit()


def test_worker_lifetime_retires_a_worker_after_its_last_session(pop3d):
    server = pop3d(POOL + "workers = 1\nworker_lifetime = 4\n")
    [first] = pool_workers(server, 1)
    held = server.raw_login("alice")
    assert newest_worker(server) == first
    for _ in range(10):  # more sessions, until the worker has served its lifetime
        if len(workers(server.daemon.pid)) == 2:
            break
        client = server.raw()
        client.send(b"QUIT\r\n")
        assert client.line().startswith(b"+OK")
        client.close()
    kids = pool_workers(server, 2)  # the replacement, while the first finishes its session
    assert title(first).endswith(b"retiring")
    assert "worker 1 retiring after 4 sessions" in server.daemon.log()
    fresh = server.login("bob")
    assert newest_worker(server) in set(kids) - {first}
    fresh.quit()
    held.send(b"STAT\r\n")
    assert held.line().startswith(b"+OK ")
    held.send(b"QUIT\r\n")
    assert held.line().startswith(b"+OK")
    wait_for(lambda: not alive(first), what="the retired worker gone")
    assert pool_workers(server, 1) == [k for k in kids if k != first]


def test_hup_follows_the_number_of_workers(pop3d, site):
    server = pop3d(POOL + "workers = 1\n")
    pool_workers(server, 1)
    server.config_file.write_text(site.config(POOL + "workers = 3\n"))
    server.daemon.proc.send_signal(signal.SIGHUP)
    pool_workers(server, 3)
    server.config_file.write_text(site.config(POOL + "workers = 1\n"))
    server.daemon.proc.send_signal(signal.SIGHUP)
    pool_workers(server, 1)
    server.assert_serving()


def test_a_full_worker_leaves_connections_to_another_and_limits_hold_across(pop3d):
    server = pop3d(POOL + "workers = 2\nworker_sessions = 1\nmax_per_address = 0\n")
    pool_workers(server, 2)
    quiet(server)
    first = server.raw_login("alice")
    second = server.raw_login("bob")  # the first worker is full: the other takes it
    newest = sorted(SESSION_PID.findall(server.daemon.log()), key=lambda f: int(f[1]))[-2:]
    assert len({pid for pid, _number in newest}) == 2
    refused = LineClient(server.daemon.connect())  # both full: accepted, told, closed
    assert refused.line() == b"-ERR [SYS/TEMP] Too many connections, try again later\r\n"
    assert refused.closed()
    for client in (first, second):
        client.send(b"QUIT\r\n")
        assert client.line().startswith(b"+OK")


def test_max_per_address_holds_across_workers(pop3d):
    server = pop3d(POOL + "workers = 2\nworker_sessions = 1\nmax_per_address = 1\n")
    pool_workers(server, 2)
    quiet(server)
    first = server.raw_login("alice")
    # The other worker has room, but this address has its one session (in the first worker).
    refused = LineClient(server.daemon.connect())
    assert refused.line() == (
        b"-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n"
    )
    assert refused.closed()
    first.send(b"QUIT\r\n")
    assert first.line().startswith(b"+OK")


def test_the_maildrop_lock_excludes_a_session_of_the_same_worker(pop3d):
    server = pop3d(POOL + "workers = 1\n")
    pool_workers(server, 1)
    holder = server.raw_login("alice")
    other = server.raw()
    other.send(b"USER alice\r\nPASS secret\r\n")
    assert other.line() == b"+OK\r\n"
    assert other.line() == b"-ERR [IN-USE] Maildrop already locked by another session\r\n"
    holder.send(b"QUIT\r\n")
    assert holder.line().startswith(b"+OK")
    other.send(b"USER alice\r\nPASS secret\r\n")  # the refused session goes on, and now gets it
    assert other.line() == b"+OK\r\n"
    assert other.line().startswith(b"+OK Logged in")
    other.send(b"QUIT\r\n")
    assert other.line().startswith(b"+OK")


def test_workers_end_when_the_master_is_killed(pop3d):
    """A SIGKILLed master leaves no worker serving on unwatched: each says goodbye to its
    sessions and exits, as at TERM."""
    server = pop3d(POOL + "workers = 2\n")
    kids = pool_workers(server, 2)
    client = server.raw_login("alice")
    server.daemon.proc.kill()
    server.daemon.proc.wait(10)
    assert client.line() == b"-ERR [SYS/TEMP] Server shutting down, try again later\r\n"
    assert client.closed()
    for pid in kids:
        wait_for(lambda p=pid: not alive(p), what=f"worker {pid} gone")


def allowed_cpus(pid: int) -> set[int]:
    """The CPUs a process may run on, from /proc (`0-1`, `0,2-3`)."""
    text = Path(f"/proc/{pid}/status").read_text()
    listed = re.search(r"^Cpus_allowed_list:\s*(\S+)$", text, re.M)
    assert listed is not None
    cpus: set[int] = set()
    for part in listed.group(1).split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def test_with_a_worker_per_cpu_each_runs_on_its_own(pop3d):
    cpus = sorted(os.sched_getaffinity(0))
    server = pop3d(POOL)  # workers = 0: one per CPU; worker_cpu_affinity = auto
    kids = pool_workers(server, len(cpus))
    for kid in kids:
        slot = int(re.search(rb"worker (\d+)", title(kid)).group(1))  # type: ignore[union-attr]
        assert allowed_cpus(kid) == {cpus[slot - 1]}
    server.assert_serving()


def test_worker_cpu_affinity_no_leaves_the_workers_to_the_scheduler(pop3d):
    cpus = set(os.sched_getaffinity(0))
    server = pop3d(POOL + "worker_cpu_affinity = no\n")
    for kid in pool_workers(server, len(cpus)):
        assert allowed_cpus(kid) == cpus
    server.assert_serving()
