"""The turns of a pool worker's sessions (common/turns.py): one at a time, the longest waiter
next, nobody waiting longer than the bound, and nothing at all where no session has a seat."""

from __future__ import annotations

import threading
import time

from common import turns


def seated(turns_: turns.Turns, body, *args):  # type: ignore[no-untyped-def]
    """Run `body(*args)` on a thread of its own, as a session with a seat at `turns_`."""

    def run() -> None:
        turns.sit(turns_)
        try:
            body(*args)
        finally:
            turns.leave()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def all_end(threads: list[threading.Thread], bound: float) -> None:
    """Every thread has ended within `bound` seconds each (none left waiting for a turn)."""
    for thread in threads:
        thread.join(bound)
        assert not thread.is_alive()


def test_sessions_run_one_at_a_time():
    shared = turns.Turns(wait=30.0)
    running, most = [0], [0]
    lock = threading.Lock()

    def work() -> None:
        seat = turns.current()
        assert seat is not None
        for _ in range(50):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.0002)  # lets go of the GIL, not of the turn
            with lock:
                running[0] -= 1
            seat.give()  # as LineIO does while it waits for the client
            seat.take()

    all_end([seated(shared, work) for _ in range(4)], 30)
    assert most[0] == 1
    assert not shared._taken and not shared._queue


def test_the_turn_passes_to_the_longest_waiter():
    shared = turns.Turns(wait=30.0)
    first = turns.Seat(shared)
    first.take()
    order: list[str] = []

    def wait_for_turn(name: str) -> None:
        seat = turns.Seat(shared)
        seat.take()
        order.append(name)
        seat.give()

    b = threading.Thread(target=wait_for_turn, args=("b",))
    b.start()
    while len(shared._queue) < 1:
        time.sleep(0.001)
    c = threading.Thread(target=wait_for_turn, args=("c",))
    c.start()
    while len(shared._queue) < 2:
        time.sleep(0.001)
    first.give()
    first.take()  # behind c now: it waited less long than either
    order.append("a")
    first.give()
    for thread in (b, c):
        thread.join(10)
    assert order == ["b", "c", "a"]
    assert not shared._taken


def test_a_session_waits_no_longer_than_the_bound():
    # The holder never gives its turn (a long SORT, a forgotten wait): the other runs anyway.
    shared = turns.Turns(wait=0.05)
    holder = turns.Seat(shared)
    holder.take()
    other = turns.Seat(shared)
    started = time.monotonic()
    other.take()
    waited = time.monotonic() - started
    assert not other.held and 0.04 <= waited < 5
    assert not shared._queue  # it left the queue
    other.give()  # not held: nothing to give
    holder.give()
    assert not shared._taken
    other.take()
    assert other.held


def test_a_session_aside_lets_another_run():
    shared = turns.Turns(wait=30.0)
    inside = threading.Event()
    ran_meanwhile = threading.Event()

    def long_wait() -> None:
        with turns.aside():
            inside.set()
            assert ran_meanwhile.wait(10)
        assert turns.current().held  # type: ignore[union-attr]

    def other() -> None:
        assert inside.wait(10)
        ran_meanwhile.set()

    first = seated(shared, long_wait)
    assert inside.wait(10)
    all_end([first, seated(shared, other)], 10)
    assert not shared._taken


def test_handing_over_while_the_waiter_gives_up_loses_no_turn():
    # Waits as short as the hand-overs: a waiter times out while it is handed the turn.
    shared = turns.Turns(wait=0.0002)
    count = [0]

    def work() -> None:
        seat = turns.current()
        assert seat is not None
        for _ in range(300):
            seat.give()
            seat.take()
            count[0] += 1

    all_end([seated(shared, work) for _ in range(6)], 60)
    assert count[0] == 1800
    assert not shared._taken and not shared._queue
    seat = turns.Seat(shared)
    seat.take()
    assert seat.held


def test_without_a_seat_nothing_waits():
    # The fork model: one session a process, no seat.
    assert turns.current() is None
    with turns.aside():
        pass
    turns.sleep(0)
    turns.leave()
