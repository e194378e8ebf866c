"""Run a daemon of ours with per-child measurements, for the benchmark (daemon code unchanged).

    python bench/profile_server.py run DIR [--cprofile] -- pop3d -f -l 127.0.0.1 -p 21111 ...
    python bench/profile_server.py report DIR [--top 30]

`run` imports the daemon's module (pop3d -> pop3d.main, imapd -> imapd.main), wraps
`common.server.ForkingServer` and `os.fork`, and then calls the daemon's own `main`. Each child
appends one JSON line to DIR/children.jsonl when its session ends: time from the master's fork()
call to the child running, the handler's wall time, its CPU, its page faults and the garbage
collections it ran (count and time per generation). The master writes DIR/master.json at exit:
fork() durations and the time per accepted connection. With --cprofile each child also runs its
handler under cProfile and dumps DIR/child-PID.prof. `report` prints the medians and, when there are
profiles, the merged top functions by own time and by cumulative time.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import cProfile
import gc
import glob
import importlib
import json
import os
import pstats
import resource
import statistics
import sys
import time
from pathlib import Path

MODULES = {"pop3d": "pop3d.main", "imapd": "imapd.main", "imapgw": "imapd.gateway",
           "msmpd": "msmpd.main"}


class GcTimer:
    """gc.callbacks hook: collections and seconds per generation."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._start = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            generation = info.get("generation", 0)
            self.count[generation] += 1
            self.seconds[generation] += time.perf_counter() - self._start


def install(out_dir: Path, use_cprofile: bool) -> None:
    from common import server

    out_dir.mkdir(parents=True, exist_ok=True)
    fork_times: list[float] = []
    accept_times: list[float] = []
    state = {"before_fork": 0.0}
    real_fork = os.fork
    master_pid = os.getpid()

    def timed_fork() -> int:
        state["before_fork"] = time.perf_counter()
        pid = real_fork()
        if pid:
            fork_times.append(time.perf_counter() - state["before_fork"])
        return pid

    os.fork = timed_fork  # type: ignore[assignment]

    from common import lineio

    original_flush = lineio.LineIO.flush
    first_send = {"at": 0.0}

    def flush(self: lineio.LineIO) -> None:
        if not first_send["at"] and self._outbuf:
            first_send["at"] = time.perf_counter()
        original_flush(self)

    lineio.LineIO.flush = flush  # type: ignore[method-assign]
    original_start = server.ForkingServer._start_session
    original_child = server.ForkingServer._run_child

    def start_session(self: server.ForkingServer, conn: object, address: str) -> None:
        begin = time.perf_counter()
        original_start(self, conn, address)  # type: ignore[arg-type]
        accept_times.append(time.perf_counter() - begin)

    def run_child(self: server.ForkingServer, conn: object, address: str, session: int) -> None:
        started = time.perf_counter()
        fork_to_child = started - state["before_fork"]
        cpu = time.process_time()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        timer = GcTimer()
        gc.callbacks.append(timer)
        profile = cProfile.Profile() if use_cprofile else None
        handler = self.handler

        def measured(*args: object) -> int:
            if profile is not None:
                profile.enable()
            try:
                return handler(*args)  # type: ignore[arg-type]
            finally:
                if profile is not None:
                    profile.disable()
                record(started, fork_to_child, cpu, usage, timer, profile)

        self.handler = measured  # type: ignore[assignment]
        original_child(self, conn, address, session)  # type: ignore[arg-type]

    def record(started: float, fork_to_child: float, cpu: float, usage: resource.struct_rusage,
               timer: GcTimer, profile: cProfile.Profile | None) -> None:
        now = resource.getrusage(resource.RUSAGE_SELF)
        line = {
            "pid": os.getpid(),
            "fork_to_child": fork_to_child,
            "child_to_greeting": first_send["at"] - started if first_send["at"] else 0.0,
            "child_wall": time.perf_counter() - started,
            "child_cpu": time.process_time() - cpu,
            "cpu_since_fork": time.process_time(),
            "minflt": now.ru_minflt - usage.ru_minflt,
            "minflt_total": now.ru_minflt,
            "majflt": now.ru_majflt - usage.ru_majflt,
            "gc_count": timer.count,
            "gc_seconds": timer.seconds,
        }
        fd = os.open(out_dir / "children.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
        finally:
            os.close(fd)
        if profile is not None:
            with contextlib.suppress(OSError):
                profile.dump_stats(str(out_dir / f"child-{os.getpid()}.prof"))

    def dump_master() -> None:
        if os.getpid() != master_pid:
            return
        (out_dir / "master.json").write_text(json.dumps({
            "fork_seconds": fork_times, "accept_seconds": accept_times,
            "objects_tracked": len(gc.get_objects()),
            "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))

    atexit.register(dump_master)
    server.ForkingServer._start_session = start_session  # type: ignore[method-assign]
    server.ForkingServer._run_child = run_child  # type: ignore[method-assign]


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.3f}" if values else "-"


def report(out_dir: Path, top: int) -> None:
    path = out_dir / "children.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print(f"children measured: {len(rows)}")
    if rows:
        for key in ("fork_to_child", "child_to_greeting", "child_wall", "child_cpu",
                    "cpu_since_fork"):
            print(f"  {key:16} median {median_ms([r[key] for r in rows])} ms")
        faults = statistics.median(r["minflt"] for r in rows)
        since_fork = statistics.median(r["minflt_total"] for r in rows)
        print(f"  minflt           median {faults:.0f} page faults in the handler,"
              f" {since_fork:.0f} since fork")
        for gen in range(3):
            counts = [r["gc_count"][gen] for r in rows]
            secs = [r["gc_seconds"][gen] for r in rows]
            print(f"  gc gen{gen}          {sum(counts) / len(rows):.2f} per child, "
                  f"{sum(secs) / len(rows) * 1000:.3f} ms per child (mean)")
    master = out_dir / "master.json"
    if master.exists():
        data = json.loads(master.read_text())
        print(f"master: fork() median {median_ms(data['fork_seconds'])} ms over "
              f"{len(data['fork_seconds'])}, per accepted connection "
              f"{median_ms(data['accept_seconds'])} ms, gc-tracked objects "
              f"{data['objects_tracked']}, maxrss {data['maxrss_kib'] / 1024:.1f} MiB")
    profiles = sorted(glob.glob(str(out_dir / "child-*.prof")))
    if profiles:
        stats = pstats.Stats(profiles[0])
        for name in profiles[1:]:
            stats.add(name)
        stats.files = []  # not the list of every profile file in the header
        stats.strip_dirs()
        print(f"\nmerged cProfile of {len(profiles)} children (times summed over all of them)")
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    run = sub.add_parser("run")
    run.add_argument("dir", type=Path)
    run.add_argument("--cprofile", action="store_true")
    run.add_argument("daemon", choices=sorted(MODULES))
    run.add_argument("args", nargs=argparse.REMAINDER)
    rep = sub.add_parser("report")
    rep.add_argument("dir", type=Path)
    rep.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    if args.mode == "report":
        report(args.dir, args.top)
        return 0
    module = importlib.import_module(MODULES[args.daemon])
    install(args.dir, args.cprofile)
    daemon_args = args.args[1:] if args.args[:1] == ["--"] else args.args
    module.main(daemon_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
