"""SIGKILL in the middle of a change-log append or a compaction (common/store/uidlist.py): a
child process changes flags, delivers and expunges through a Mailbox, with compactions made
frequent, and is killed at random moments or by fault hooks at the worst ones (half a record
written; a new base renamed into place but the old log still there; a new base written but not
renamed). After each kill a fresh reader must find every file with exactly one UID, the UIDs the
child was given unchanged, no UID given to two messages, UIDVALIDITY unchanged, the flags of every
message as its file name says, and every acknowledged flag change with its MODSEQ or a newer one.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from lockfile.linklockfile import LinkLockFile

from common.store import atomic, maildir, uidlist
from common.store.flags import letters_of
from common.store.mailbox import Mailbox

CTX = multiprocessing.get_context("fork")
LETTERS = ("", "S", "FS", "RS", "T", "DS")


def message(number: int) -> bytes:
    return b"From: a@example.org\nSubject: %d\n\nbody %d\n" % (number, number)


def install_fault(fault: str, rng: random.Random) -> None:
    """In the child: die at the chosen moment of a later log write or compaction."""
    if fault == "torn-append":
        real_write = os.write
        countdown = [rng.randint(1, 12)]

        def write(fd: int, data: bytes) -> int:
            if not os.readlink(f"/proc/self/fd/{fd}").endswith(uidlist.UIDLIST_LOG):
                return real_write(fd, data)
            countdown[0] -= 1
            if countdown[0] <= 0 and len(data) > 4:
                real_write(fd, data[: rng.randint(1, len(data) - 1)])
                os.kill(os.getpid(), signal.SIGKILL)
            return real_write(fd, data)

        os.write = write  # type: ignore[assignment]
    elif fault in ("between-renames", "before-base-rename"):
        real_atomic = uidlist.atomic_write

        def atomic_write(path: Path, data: Any, **kwargs: Any) -> None:
            if fault == "before-base-rename" and path.name == uidlist.UIDLIST:
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_bytes(b"".join(data) if not isinstance(data, bytes) else data)
                os.kill(os.getpid(), signal.SIGKILL)
            if fault == "between-renames" and path.name == uidlist.UIDLIST_LOG:
                os.kill(os.getpid(), signal.SIGKILL)
            real_atomic(path, data, **kwargs)

        uidlist.atomic_write = atomic_write  # type: ignore[assignment]


def worker(folder: str, seed: int, acks: Any, fault: str) -> None:
    """Random changes, each acknowledged once the store returned; runs until killed."""
    uidlist.COMPACT_MIN_BYTES = 400  # a compaction every few changes
    rng = random.Random(seed)
    if fault:
        install_fault(fault, rng)
    box = Mailbox(Path(folder))
    number = seed * 1000
    while True:
        entries = box.sync(claim_recent=rng.random() < 0.5).entries
        choice = rng.random()
        if choice < 0.55 and entries:
            entry = rng.choice(entries)
            letters = rng.choice(LETTERS)
            acks.put(("try", entry.key, letters))
            if box.set_letters(entry, letters):
                box.commit_flags([entry])
                acks.put(("flags", entry.key, entry.letters, entry.modseq))
        elif choice < 0.8:
            number += 1
            _validity, uid = box.append(message(number), rng.choice(LETTERS), None)
            found = box.table.find(uid) if box.table is not None else None
            acks.put(("uid", found.key if found else "", uid))
        elif entries:
            entry = rng.choice(entries)
            acks.put(("try-gone", entry.key))
            if box.expunge([entry]):
                acks.put(("gone", entry.key, entry.uid))


class Model:
    """What the parent knows from the acknowledgements and from earlier checks."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.uid_of: dict[str, int] = {}  # key -> UID, for good
        self.key_of: dict[int, str] = {}  # UID -> key, for good
        self.flags: dict[str, tuple[str, int]] = {}  # key -> acked (letters, modseq)
        self.tried: dict[str, str] = {}  # key -> letters of a change perhaps cut short
        self.highest_uid = 0

    def take(self, acks: Any) -> None:
        while not acks.empty():
            ack = acks.get()
            if ack[0] == "try":
                self.tried[ack[1]] = ack[2]
            elif ack[0] == "flags":
                self.flags[ack[1]] = (ack[2], ack[3])
                self.tried.pop(ack[1], None)
            elif ack[0] == "uid" and ack[1]:
                self.remember(ack[1], ack[2])

    def remember(self, key: str, uid: int) -> None:
        was = self.uid_of.setdefault(key, uid)
        assert was == uid, f"{key}: UID {was}, now {uid}"
        other = self.key_of.setdefault(uid, key)
        assert other == key, f"UID {uid} given to {key} and {other}"
        self.highest_uid = max(self.highest_uid, uid)

    def check(self, validity: int) -> None:
        on_disk = {
            name.split(":", 1)[0]: letters_of(name)
            for sub in ("new", "cur")
            for name in os.listdir(self.folder / sub)
        }
        snap = Mailbox(self.folder).sync()  # a fresh reader, after the kill
        assert snap.uidvalidity == validity
        uids = [e.uid for e in snap.entries]
        assert uids == sorted(set(uids)), "UIDs ascending, each once"
        assert {e.key: e.letters for e in snap.entries} == on_disk, "a UID for every file"
        for entry in snap.entries:
            self.remember(entry.key, entry.uid)
            acked = self.flags.get(entry.key)
            if acked is not None and entry.key not in self.tried:
                assert entry.letters == acked[0], f"{entry.key}: acknowledged flags lost"
                assert entry.modseq >= acked[1], f"{entry.key}: MODSEQ went back"
        assert snap.uidnext > self.highest_uid, "a UID handed out would be handed out again"
        assert all(e.modseq <= snap.highestmodseq for e in snap.entries)


@pytest.mark.parametrize("fault", ["", "torn-append", "between-renames", "before-base-rename"])
def test_sigkill_loses_no_flag_and_no_uid(tmp_path: Path, fault: str) -> None:
    folder = tmp_path / "box"
    maildir.ensure_maildir(folder)
    for number in range(40):
        maildir.deliver(folder, message(number))
    first = Mailbox(folder).sync()
    model = Model(folder)
    for entry in first.entries:
        model.remember(entry.key, entry.uid)
    rng = random.Random(f"crash-{fault}")
    kills = 0
    for round_ in range(12):
        # A SimpleQueue writes each acknowledgement before put() returns: a Queue's feeder
        # thread would lose the last ones with the child.
        acks = CTX.SimpleQueue()
        child = CTX.Process(target=worker, args=(str(folder), round_ + 1, acks, fault))
        child.start()
        deadline = time.monotonic() + rng.uniform(0.05, 0.4)
        while time.monotonic() < deadline and child.exitcode is None:
            time.sleep(0.01)
        if child.exitcode is None:
            os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        assert child.exitcode == -signal.SIGKILL, "the child only ever ends by SIGKILL"
        kills += 1
        model.take(acks)
        acks.close()
        model.check(first.uidvalidity)
    assert kills == 12
    assert model.highest_uid > 40, "the children delivered"


def _hold_and_die(path: str, ready: Any) -> None:
    with atomic.locked(Path(path)):
        ready.set()
        os.kill(os.getpid(), signal.SIGKILL)


def _hold(path: str, ready: Any) -> None:
    with atomic.locked(Path(path)):
        ready.set()
        time.sleep(60)


def test_a_lock_left_by_a_killed_process_is_broken_a_live_one_is_not(tmp_path: Path) -> None:
    """Every flag change takes the folder's lock: one left by a SIGKILLed session must not stop
    the folder for STALE_AGE; one held by a live process must not be broken."""
    target = tmp_path / "maildaemons-uidlist"
    ready = CTX.Event()
    dead = CTX.Process(target=_hold_and_die, args=(str(target), ready))
    dead.start()
    dead.join(10)
    assert ready.is_set() and os.path.exists(f"{target}.lock")
    with atomic.locked(target, timeout=5):  # the holder is dead: broken, then taken
        holder = Path(f"{target}.lock").read_text().split()
        assert holder[1] == str(os.getpid())
    assert not [n for n in os.listdir(tmp_path) if n != "maildaemons-uidlist"], "no leftovers"
    ready = CTX.Event()
    live = CTX.Process(target=_hold, args=(str(target), ready))
    live.start()
    try:
        assert ready.wait(10)
        with pytest.raises(atomic.LockBusy), atomic.locked(target, timeout=0.5):
            pass
    finally:
        os.kill(live.pid, signal.SIGKILL)
        live.join(10)
    with atomic.locked(target, timeout=5):
        pass


def _other_hosts_lock(target: Path, age: float) -> Path:
    """A lock taken by a process of another host (NFS), `age` seconds ago."""
    unique = target.parent / "otherhost.example.Thread-1-4242"
    unique.write_text(f"otherhost.example 4242 {unique.name}\n")
    lock = Path(f"{target}.lock")
    os.link(unique, lock)
    os.utime(lock, (time.time() - age, time.time() - age))
    return lock


def test_a_stale_lock_of_another_host_is_broken_after_its_age_only(tmp_path: Path) -> None:
    """A holder on another host cannot be asked whether it lives: its lock is broken once it is
    STALE_AGE old, not before, and its unique file goes with it."""
    target = tmp_path / "maildaemons-uidlist"
    lock = _other_hosts_lock(target, age=5)
    with pytest.raises(atomic.LockBusy), atomic.locked(target, timeout=0.3):
        pass
    assert lock.exists()
    os.utime(lock, (time.time() - atomic.STALE_AGE - 5,) * 2)
    with atomic.locked(target, timeout=5):
        assert Path(f"{target}.lock").read_text().split()[1] == str(os.getpid())
    assert sorted(os.listdir(tmp_path)) == [], "the other host's unique file is gone too"


def test_a_stale_lock_taken_again_meanwhile_is_not_broken(tmp_path: Path) -> None:
    """Two waiters judge one stale lock at once: the first breaks it and takes the folder; the
    second, coming to break what it judged, finds another lock there and leaves it alone."""
    target = tmp_path / "maildaemons-uidlist"
    old = _other_hosts_lock(target, age=atomic.STALE_AGE + 5)
    judged = atomic._identity(str(old))
    with atomic.locked(target, timeout=5):  # the first waiter: broken, then taken
        mine = Path(f"{target}.lock").read_text()
        second = LinkLockFile(str(target))
        assert not atomic._break(second, lambda: atomic._identity(second.lock_file) == judged)
        assert Path(f"{target}.lock").read_text() == mine, "the first waiter's lock stands"
