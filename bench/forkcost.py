"""The floor of a fork-per-connection server in Python: what fork() and _exit() cost by themselves.

    .venv/bin/python bench/forkcost.py [--count 2000] [--module pop3d.main] [--gc-freeze]

Imports the daemon's module (so the process has the master's memory), then forks `count` children
one after the other; each child exits at once (`bare`), or first touches its memory the way a
session does (`touch`: a full gc.collect(), which writes to every tracked object as a whole session
never would, as an upper bound of copy-on-write). Prints wall time, the parent's CPU in fork() and
the children's CPU (fork return, copy-on-write faults, exit teardown) per child, and so the highest
rate of sessions a fork-per-connection server could reach per CPU before doing any protocol work.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import resource
import sys
import time


def run(count: int, touch: bool) -> tuple[float, float, float]:
    """(wall, parent CPU, children CPU) in seconds per child."""
    before_self = resource.getrusage(resource.RUSAGE_SELF)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            if touch:
                gc.collect()
            os._exit(0)
        os.waitpid(pid, 0)
    wall = time.perf_counter() - start
    after_self = resource.getrusage(resource.RUSAGE_SELF)
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    parent = after_self.ru_utime + after_self.ru_stime - before_self.ru_utime - before_self.ru_stime
    children = (
        after_children.ru_utime
        + after_children.ru_stime
        - before_children.ru_utime
        - before_children.ru_stime
    )
    return wall / count, parent / count, children / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument(
        "--module",
        default="pop3d.main",
        help="import this first, as the daemon's master does (default pop3d.main)",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() before forking (objects then never scanned in a child)",
    )
    args = parser.parse_args(argv)
    if args.module:
        importlib.import_module(args.module)
    if args.gc_freeze:
        gc.freeze()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    freeze = "on" if args.gc_freeze else "off"
    print(
        f"parent: {args.module or 'bare python'} imported, maxrss {rss:.1f} MiB, "
        f"{len(gc.get_objects())} gc-tracked objects, gc.freeze {freeze}"
    )
    for touch in (False, True):
        wall, parent, children = run(args.count, touch)
        total = parent + children
        label = "touch:" if touch else "bare:"
        print(
            f"  {label:6} {wall * 1000:6.3f} ms wall per fork+exit+wait, "
            f"CPU {parent * 1000:6.3f} ms parent + {children * 1000:6.3f} ms child = "
            f"{total * 1000:6.3f} ms -> at most {1 / total if total else 0:7.0f} forks/s per CPU"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
