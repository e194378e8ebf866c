"""Turns: the sessions of one pool worker run their Python one at a time, a stretch each.

Threads of one process share one interpreter lock, which CPython lets go at every blocking
system call and which a waiting thread then takes. A pool session makes about a hundred such
calls (stats of the folder's files, reads, sends); with several sessions of a worker busy at
once the lock changed hands at nearly every one, each change a futex wake and a context switch
on both sides: 0.57 ms more CPU per IMAP session at 16 clients than at one (bench/run_imap.sh).

A worker's `Turns` lets one session run at a time, the others waiting on a lock of their own
rather than on the interpreter's, so the interpreter's lock has no waiter and a system call
costs what it costs in a process of its own. A session holds the turn while it works on a
command and gives it up when it waits for its client (LineIO: before it sends what it has and
polls), for a password hash, and while it waits for a lock another session may hold. The turn
passes to the longest waiter. Nobody waits for it longer than `wait` (5 ms): a session that has
waited that long runs beside the holder as threads always may, so a long command (a SORT of a
big folder) cannot stall the others for longer, and a lock wait forgotten here cannot
deadlock.

In the fork model nobody has a seat and every call here does nothing.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Iterator

TURN_WAIT = 0.005  # seconds a session waits for the turn before running anyway

_local = threading.local()


class Turns:
    """One worker's turn and the queue of the sessions waiting for it."""

    def __init__(self, wait: float = TURN_WAIT) -> None:
        self.wait = wait
        self._mutex = threading.Lock()
        self._taken = False
        self._queue: collections.deque[Seat] = collections.deque()

    def _take(self, seat: Seat) -> bool:
        with self._mutex:
            if not self._taken:
                self._taken = True
                return True
            self._queue.append(seat)
        if seat.baton.acquire(timeout=self.wait):
            return True
        with self._mutex:
            try:
                self._queue.remove(seat)
                return False
            except ValueError:
                pass  # handed over between the timeout and here: the baton is free
        seat.baton.acquire()
        return True

    def _give(self) -> None:
        with self._mutex:
            if self._queue:
                self._queue.popleft().baton.release()  # the turn passes, still taken
            else:
                self._taken = False


class Seat:
    """One session's place at its worker's turns: whether it holds the turn now."""

    def __init__(self, turns: Turns) -> None:
        self.turns = turns
        self.held = False
        self.baton = threading.Lock()
        self.baton.acquire()  # released by whoever hands the turn to this seat

    def take(self) -> None:
        if not self.held:
            self.held = self.turns._take(self)

    def give(self) -> None:
        if self.held:
            self.held = False
            self.turns._give()

    @contextlib.contextmanager
    def aside(self) -> Iterator[None]:
        """The turn given up for the block, then taken again (waited for, at most the bound)."""
        self.give()
        try:
            yield
        finally:
            self.take()


def sit(turns: Turns) -> Seat:
    """The calling thread's session takes a seat and waits for its first turn."""
    seat = Seat(turns)
    _local.seat = seat
    seat.take()
    return seat


def leave() -> None:
    """The calling thread's session is over: its turn goes to the next."""
    seat = current()
    if seat is not None:
        seat.give()
        _local.seat = None


def current() -> Seat | None:
    return getattr(_local, "seat", None)


def sleep(seconds: float) -> None:
    """time.sleep, the turn given to the others meanwhile."""
    with aside():
        time.sleep(seconds)


@contextlib.contextmanager
def aside() -> Iterator[None]:
    """Let the other sessions run while this one waits (a lock, a hash, a child process)."""
    seat = current()
    if seat is None or not seat.held:
        yield
        return
    with seat.aside():
        yield
