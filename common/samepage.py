"""Kernel same-page merging (KSM) for a daemon's sessions.

A forked session copies each page of the master's heap on which it writes a reference count,
and most of those pages end up byte for byte the master's, or every other session's: CPython
3.11 writes the counts of every object it uses, even to read it. A process that sets
`PR_SET_MEMORY_MERGE` (Linux 6.4; inherited by what it forks afterwards) lets the kernel's
ksmd find such pages and share them again, copy-on-write. A pool master sets it for its
workers; a fork-model child sets it once its session has lasted `memory_merge_after` seconds,
from its wait for the client (common/lineio.py), so that only held sessions are scanned.

Nothing is merged while ksmd is off (`/sys/kernel/mm/ksm/run`), which is the system's choice;
nor is anything asked by default (`memory_merge = no`): merged pages let a process time
whether another holds the same bytes, a side channel that has been used over the network.

`Ksmd` turns ksmd on for a while (root) and back, for the bench and the tests.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from pathlib import Path

PR_SET_MEMORY_MERGE = 67  # <linux/prctl.h>, Linux 6.4
PR_GET_MEMORY_MERGE = 68
KSM = Path("/sys/kernel/mm/ksm")
KSM_RUN = KSM / "run"


def ksmd_running(run_file: Path = KSM_RUN) -> bool:
    """True when the kernel's merging thread scans (1 in the `run` file)."""
    try:
        return run_file.read_text().strip() == "1"
    except OSError:
        return False


def libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def ask_kernel(merge: bool) -> str | None:
    """Set this process's PR_SET_MEMORY_MERGE; None on success, else why not."""
    if libc().prctl(PR_SET_MEMORY_MERGE, int(merge), 0, 0, 0) == 0:
        return None
    return os.strerror(ctypes.get_errno())


def kernel_can_merge() -> bool:
    """Whether this kernel knows PR_SET_MEMORY_MERGE (PR_GET_MEMORY_MERGE answers)."""
    return bool(libc().prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0) >= 0)


def start(merge: bool, model: str, log: logging.Logger, run_file: Path = KSM_RUN) -> None:
    """The master, at start and on HUP: a pool master asks at once (its workers inherit it); a
    fork master never, as each of its children asks once its session has lasted
    `memory_merge_after` seconds (`offer_after`). Short sessions never ask: ksmd would scan
    them in vain, and every fork of a merged master pays for its merged pages (the fork model
    did 20% fewer sessions a second with the master merged). Says what the kernel will do."""
    ask_kernel(merge and model == "pool")
    if not merge:
        return
    if not kernel_can_merge():
        log.warning(
            "memory_merge: this kernel cannot merge a process's pages (Linux 6.4 or later with "
            "KSM is needed): every session keeps its own copies"
        )
    elif ksmd_running(run_file):
        log.info("memory_merge: the kernel merges identical pages of the sessions (ksmd runs)")
    else:
        log.info("memory_merge: nothing is merged until ksmd is started (%s is not 1)", run_file)


# When this process asks for merging (monotonic), or None: set in a fork-model child.
_offer_at: float | None = None


def offer_after(seconds: float) -> None:
    """This process asks for merging once it has waited past `seconds` from now."""
    global _offer_at
    _offer_at = time.monotonic() + seconds


def offer_due() -> float | None:
    """Seconds until this process asks for merging, None if it never will (or has)."""
    return None if _offer_at is None else _offer_at - time.monotonic()


def offer_now() -> None:
    global _offer_at
    _offer_at = None
    ask_kernel(True)


class Ksmd:
    """`with Ksmd(pages):` ksmd scans `pages` pages every `sleep_ms` inside; the old settings
    come back at the end."""

    ORDER = ("pages_to_scan", "sleep_millisecs", "run")  # "run" set last, restored first

    def __init__(self, pages: int, sleep_ms: int = 20, base: Path = KSM) -> None:
        self.wanted = {"pages_to_scan": str(pages), "sleep_millisecs": str(sleep_ms), "run": "1"}
        self.base = base
        self.saved: dict[str, str] = {}

    def __enter__(self) -> Ksmd:
        if not (self.base / "run").exists():
            raise OSError(f"{self.base}: this kernel has no KSM")
        for name in self.ORDER:
            self.saved[name] = self.read(name)
            (self.base / name).write_text(self.wanted[name])
        return self

    def __exit__(self, *_exc: object) -> None:
        for name in reversed(self.ORDER):
            if name in self.saved:
                (self.base / name).write_text(self.saved[name])

    def read(self, name: str) -> str:
        return (self.base / name).read_text().strip()

    def full_scans(self) -> int:
        return int(self.read("full_scans"))

    def settle(self, scans: int = 3, timeout: float = 900.0) -> tuple[float, int]:
        """Wait for `scans` more full scans (a page is merged once two scans found it
        unchanged), at most `timeout` s: (seconds waited, scans done)."""
        begin, first = time.monotonic(), self.full_scans()
        while self.full_scans() < first + scans and time.monotonic() - begin < timeout:
            time.sleep(0.1)
        return time.monotonic() - begin, self.full_scans() - first

    def describe(self) -> str:
        return (
            f"ksmd: {self.wanted['pages_to_scan']} pages every {self.wanted['sleep_millisecs']} ms"
        )
