"""The parts the pool model rests on, without daemons: locks that exclude another session of the
same process (OFD locks, per-thread link locks and temporary names), the counts shared by the
workers (session limits across workers), a session's snapshot of the runtime settings, and the
folder watcher that wakes IDLE."""

from __future__ import annotations

import os
import select
import threading
from pathlib import Path

import pytest

from common import pool
from common.config import RuntimeState, Settings
from common.relay.errors import LockBusyError
from common.relay.lock import relay_lock
from common.server import Limits
from common.store import Mailbox, StoreBusy
from common.store.atomic import atomic_write, locked
from common.store.maildrop import MaildropLock
from common.store.watch import FolderWatcher
from support.site import deliver


def in_thread(function):
    """Run `function` on another thread of this process; its result or exception."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    return outcome


def test_the_maildrop_lock_excludes_another_thread_of_the_process(tmp_path):
    holder = MaildropLock(tmp_path)
    holder.acquire()
    other = MaildropLock(tmp_path)
    outcome = in_thread(other.acquire)
    assert isinstance(outcome.get("error"), StoreBusy)
    holder.release()
    assert "error" not in in_thread(other.acquire)
    other.release()


def test_the_relay_lock_excludes_another_thread_of_the_process(tmp_path):
    path = tmp_path / "open-smtp.lock"
    with relay_lock(path, 1.0):

        def second() -> None:
            with relay_lock(path, 0):
                pass

        assert isinstance(in_thread(second).get("error"), LockBusyError)
    assert "error" not in in_thread(second)


def test_link_locks_exclude_another_thread_and_temp_names_differ(tmp_path):
    target = tmp_path / "uidlist"
    entered = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with locked(target):
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(10)
    outcome = in_thread(lambda: locked(target, timeout=0.05).__enter__())
    assert outcome.get("error") is not None  # LockBusy: held by the other thread
    release.set()
    holder.join(10)
    # Two threads replacing one file at once each write a temporary file of their own.
    barrier = threading.Barrier(2)

    def write(data: bytes) -> None:
        barrier.wait(10)
        atomic_write(target, data, fsync=False)

    threads = [threading.Thread(target=write, args=(bytes([65 + n]) * 100000,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert target.read_bytes() in (b"A" * 100000, b"B" * 100000)
    assert [p.name for p in tmp_path.iterdir()] == ["uidlist"]


def test_shared_counts_hold_the_limits_across_rows():
    counts = pool.SharedCounts(4)
    assert counts.open_session(0, "192.0.2.1", 3, 2) == ("", 1)
    assert counts.open_session(1, "192.0.2.1", 3, 2) == ("", 2)
    # A third from that address, whichever worker accepts it, is over max_per_address.
    assert counts.open_session(2, "192.0.2.1", 3, 2) == ("address", 0)
    assert counts.open_session(2, "192.0.2.2", 3, 2) == ("", 3)
    # Three in all: max_children holds across the workers.
    assert counts.open_session(3, "192.0.2.3", 3, 2) == ("children", 0)
    counts.close_session(1, "192.0.2.1")
    assert counts.open_session(3, "192.0.2.1", 3, 2) == ("", 4)  # numbers never repeat
    counts.clear(3)  # the master, after worker 3 died with its session
    assert counts.open_session(0, "192.0.2.4", 3, 0)[0] == ""
    assert counts.open_session(0, "192.0.2.5", 0, 0)[0] == ""  # 0: no limit


def test_shared_counts_see_a_row_first_used_late():
    counts = pool.SharedCounts(130)
    counts.set_capacity(0, 4)
    counts.open_session(0, "192.0.2.1", 2, 0)
    assert not counts.room_elsewhere(0)
    counts.set_capacity(97, 4)  # a worker given a row no check had looked at yet
    assert counts.room_elsewhere(0)
    counts.open_session(97, "192.0.2.2", 2, 0)
    assert counts.open_session(0, "192.0.2.3", 2, 0) == ("children", 0)
    counts.open_session(97, "192.0.2.4", 0, 0)
    assert counts.fewer_elsewhere(97)  # 2 sessions there, 1 in row 0


def test_shared_counts_know_which_workers_have_room():
    counts = pool.SharedCounts(3)
    counts.set_capacity(0, 1)
    counts.set_capacity(1, 2)
    counts.open_session(0, "a", 0, 0)
    assert counts.room_elsewhere(0)
    counts.open_session(1, "a", 0, 0)
    counts.open_session(1, "a", 0, 0)
    assert not counts.room_elsewhere(0)
    counts.set_capacity(2, 5)  # a new worker
    assert counts.room_elsewhere(0)


def test_a_busier_worker_knows_a_less_busy_one_accepts():
    counts = pool.SharedCounts(3)
    for row in (0, 1):
        counts.set_capacity(row, 4)
    counts.open_session(0, "a", 0, 0)
    assert counts.fewer_elsewhere(0)  # 1 session here, 0 in worker 1
    assert not counts.fewer_elsewhere(1)
    counts.open_session(1, "b", 0, 0)
    assert not counts.fewer_elsewhere(0)  # as busy as each other: take it
    counts.open_session(0, "c", 0, 0)
    counts.set_capacity(1, 0)  # worker 1 stops accepting (retiring, full or stopping)
    assert not counts.fewer_elsewhere(0)
    counts.set_capacity(1, 4)
    assert counts.fewer_elsewhere(0)
    counts.set_capacity(2, 4)  # a new worker, idle: the rows of the unused slots are 0
    assert counts.fewer_elsewhere(1)


@pytest.mark.parametrize(
    ("setting", "workers", "allowed", "cpus"),
    [
        ("auto", 0, {0, 1}, [0, 1]),  # one per CPU: worker N on the Nth
        ("auto", 2, {2, 5}, [2, 5]),  # the CPUs of a cpuset, in order
        ("auto", 1, {0, 1}, [None]),  # fewer workers than CPUs: left to the scheduler
        ("auto", 3, {0, 1}, [None, None, None]),
        ("yes", 3, {0, 1}, [0, 1, 0]),  # round the CPUs
        ("no", 0, {0, 1}, [None, None]),
    ],
)
def test_worker_cpu(monkeypatch, setting, workers, allowed, cpus):
    monkeypatch.setattr(pool.os, "sched_getaffinity", lambda _pid: allowed)
    limits = Limits(0, 0, 1.0, workers=workers, worker_cpu_affinity=setting)
    assert [pool.worker_cpu(limits, slot) for slot in range(1, len(cpus) + 1)] == cpus


def test_shared_counts_are_shared_with_a_forked_process():
    counts = pool.SharedCounts(2)
    pid = os.fork()
    if pid == 0:
        code = 0 if counts.open_session(1, "a", 0, 0) == ("", 1) else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert counts.open_session(0, "a", 0, 2) == ("", 2)
    assert counts.open_session(0, "a", 0, 2) == ("address", 0)


def test_a_session_snapshot_keeps_its_runtime_settings(tmp_path):
    settings = Settings("pop3d", overrides={"state_dir": str(tmp_path), "transformer": "cat"})
    settings.runtime.set("transformer", "tac")
    session = settings.snapshot()
    assert session.get("transformer") == "tac"
    settings.runtime.set("transformer", "rev")  # another session's SET
    assert session.get("transformer") == "tac"  # this one keeps what it started with
    assert settings.get("transformer") == "rev"  # the next session sees it
    assert settings.snapshot().get("transformer") == "rev"


def readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def test_the_folder_watcher_wakes_the_watches_of_a_changed_folder(tmp_path):
    watcher = FolderWatcher()
    one, other = tmp_path / "one", tmp_path / "other"
    for folder in (one, other):
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True)
    try:
        first = watcher.watch(Mailbox(one))
        second = watcher.watch(Mailbox(one))
        elsewhere = watcher.watch(Mailbox(other))
        assert first and second and elsewhere
        assert len(watcher.folders) == 2  # one inotify watch pair per folder
        deliver(one, b"Subject: x\n\nx\n")
        assert readable(watcher.fileno(), 10)
        watcher.dispatch()
        assert readable(first.fileno(), 0) and readable(second.fileno(), 0)
        assert not readable(elsewhere.fileno(), 0)
        assert first.clear() and not first.clear()
        for watch in (first, second, elsewhere):
            watch.close()
        assert watcher.folders == {} and watcher.by_descriptor == {}
    finally:
        watcher.close()


def test_the_folder_watcher_declines_a_missing_folder(tmp_path):
    watcher = FolderWatcher()
    try:
        assert watcher.watch(Mailbox(Path(tmp_path / "gone"))) is None
    finally:
        watcher.close()


@pytest.mark.parametrize("workers, expected", [(3, 3), (0, pool.default_workers())])
def test_worker_count(workers, expected):
    from common.server import Limits

    assert pool.worker_count(Limits(1, 1, 1.0, workers=workers)) == expected


def test_snapshots_of_the_same_runtime_values_share_what_they_parsed(tmp_path):
    """A pool worker's sessions parse each typed setting once between them; a session's own SET
    and a change by another process each start values of their own."""
    settings = Settings("pop3d", overrides={"state_dir": str(tmp_path), "mail_base": "/srv/a"})
    first, second = settings.snapshot(), settings.snapshot()
    assert first.path("mail_base") == Path("/srv/a")
    assert second.path("mail_base") is first.path("mail_base")  # parsed once
    first.runtime.set("maildir", "/srv/b")  # this session's SET (msmpd)
    assert first.path("mail_base") == Path("/srv/b")
    assert second.path("mail_base") == Path("/srv/a")  # the other keeps what it started with
    assert settings.snapshot().path("mail_base") == Path("/srv/b")
    RuntimeState(tmp_path).set("maildir", "/srv/c")  # another process's SET
    third = settings.snapshot()
    assert third.path("mail_base") == Path("/srv/c")
    assert second.path("mail_base") == Path("/srv/a") and first.path("mail_base") == Path("/srv/b")
