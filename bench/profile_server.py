"""Run a daemon of ours with per-child measurements, for the benchmark (daemon code unchanged).

    python bench/profile_server.py run DIR [--cprofile] [--gc-freeze] pop3d -- -f -p 21111 ...
    python bench/profile_server.py report DIR [--top 30] [--per-child]

`run` imports the daemon's module (pop3d -> pop3d.main, imapd -> imapd.main), wraps
`common.server.ForkingServer` and `os.fork`, and then calls the daemon's own `main`. Each child
appends one JSON line to DIR/children.jsonl when its session ends: time from the master's fork()
call to the child running, the handler's wall time, its CPU, its page faults and the garbage
collections it ran (count and time per generation). The master writes DIR/master.json at exit:
fork() durations and the time per accepted connection. With --cprofile each child also runs its
handler under cProfile and dumps DIR/child-PID.prof; --gc-freeze tries gc.freeze() in the master
before it serves (an experiment, not the daemon's behaviour). `report` prints the medians and,
when there are profiles, the merged top functions by own time and by cumulative time.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import cProfile
import functools
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODULES = {
    "pop3d": "pop3d.main",
    "imapd": "imapd.main",
    "imapgw": "imapd.gateway.main",
    "msmpd": "msmpd.main",
}

# Functions timed in each child (inclusive wall time and calls), `module:qualname`; a name that
# does not exist (yet) is skipped. Every module-level reference to a function is replaced, so
# `from x import f` callers are timed too.
TIMED = {
    "pop3d": [
        "common.server:ForkingServer._become_child",
        "common.service:MasterState.session_services",
        "common.relay.settings:RelaySettings.from_config",
        "common.lineio:LineIO.__init__",
        "pop3d.session:make_timestamp",
        "logging:Logger._log",
        "common.stats:StatsClient.send",
        "common.lineio:LineIO.flush",
        "common.lineio:LineIO._wait",
        "pop3d.commands:dispatch",
        "common.users:UserDB.verify",
        "common.users:UserDB.refresh",
        "pop3d.session:Session.authenticate",
        "pop3d.session:Session.open_maildrop",
        "common.store.maildir:ensure_maildir",
        "common.store.maildrop:Maildrop.open",
        "common.store.maildrop:MaildropLock.acquire",
        "common.store.mailbox:Mailbox.sync",
        "common.store.uidlist:UidStore.load",
        "common.store.maildir:list_names",
        "common.store.mailbox:Mailbox.sizes",
        "common.store.maildir:read_message",
        "common.store.maildir:to_crlf",
        "pop3d.commands:cmd_uidl",
        "pop3d.commands:dot_stuff",
        "common.config:Settings.get",
        "pop3d.session:Session.end",
        "common.lineio:LineIO.close",
        # the master's side of a session
        "common.server:ForkingServer._accept_all",
        "common.server:ForkingServer.on_sigchld",
        "common.server:ForkingServer._bury",
        "common.server:ForkingServer._dispatch_signals",
    ],
    # imapd: where a session's time goes, down to what one message of a big FETCH costs
    # (`report --per-child` shows each session on its own, e.g. the big mailbox's cold and warm
    # passes). Not cmd_fetch and the other handlers: COMMANDS holds them directly, `dispatch`
    # times them all.
    "imapd": [
        "imapd.commands:dispatch",
        "imapd.commands.auth:log_in",
        "common.users:UserDB.verify",
        "imapd.commands.select:open_mailbox",
        "imapd.selected:Selected.open",
        "imapd.selected:Selected.refresh",
        "imapd.selected:Selected.resolve",
        "common.store.mailbox:Mailbox.poll",
        "common.store.mailbox:Mailbox.sync",
        "common.store.mailbox:Mailbox._look",
        "common.store.mailbox:Mailbox._claim",
        "common.store.mailbox:Mailbox._reconcile",
        "common.store.mailbox:Mailbox._reread",
        "common.store.mailbox:Mailbox.snapshot",
        "common.store.maildir:list_names",
        "common.store.uidlist:UidStore.load",
        "common.store.uidlist:UidStore.refresh",
        "common.store.uidlist:UidStore._commit",
        "common.store.uidlist:UidStore.compact",
        "common.store.uidlist:parse",
        "common.store.atomic:atomic_write",
        "common.store.atomic:locked",
        "imapd.commands.fetch:mark_seen",
        "common.store.mailbox:Mailbox.set_letters",
        "common.store.mailbox:Mailbox.commit_flags",
        "common.store.mailbox:Mailbox.read",
        "common.store.mailbox:Mailbox.summary",
        "common.store.mailbox:Mailbox.remember_all",
        "common.store.maildir:to_crlf",
        "imapd.message:known_fields",
        "imapd.message:envelope_of",
        "imapd.search:searched_headers",
        "imapd.prefetch:Prefetch.get",
        "imapd.commands.fetch:render",
        "imapd.commands.fetch:section_data",
        "imapd.selected:Selected.flags_item",
        "common.store.maildir:crlf_size",
        "common.store.msgcache:MessageCache.save",
        "imapd.search:search",
        "common.store.memory:release",
        "common.lineio:LineIO.flush",
        "imapd.session:Session.end",
    ],
}
TIMERS: dict[str, list[float]] = {}  # name -> [calls, wall seconds, CPU seconds of the thread]


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


def timed(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    slot = TIMERS.setdefault(name, [0, 0.0, 0.0])
    clock, cpu_clock = time.perf_counter, time.thread_time

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        begin, cpu = clock(), cpu_clock()
        try:
            return func(*args, **kwargs)
        finally:
            slot[0] += 1
            slot[1] += clock() - begin
            slot[2] += cpu_clock() - cpu

    return wrapper


def install_timers(daemon: str) -> None:
    for spec in TIMED.get(daemon, []):
        module_name, _, qualname = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        *owner_path, attr = qualname.split(".")
        owner: Any = module
        for part in owner_path:
            owner = getattr(owner, part, None)
        raw = owner.__dict__.get(attr) if owner is not None else None
        if raw is None:
            continue
        if isinstance(raw, classmethod | staticmethod):
            setattr(owner, attr, type(raw)(timed(spec, raw.__func__)))
            continue
        wrapped = timed(spec, raw)
        setattr(owner, attr, wrapped)
        if not owner_path:  # also every `from module import name` elsewhere
            for other in list(sys.modules.values()):
                for key, value in list(getattr(other, "__dict__", {}).items()):
                    if value is raw:
                        setattr(other, key, wrapped)


def install(out_dir: Path, use_cprofile: bool, daemon: str) -> None:
    from common import server

    install_timers(daemon)

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

    def resumed_in_child() -> None:
        state["resumed"] = time.perf_counter()

    os.register_at_fork(after_in_child=resumed_in_child)

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

    def start_session(self: server.ForkingServer, conn: object, address: str, *more: Any) -> None:
        begin = time.perf_counter()
        original_start(self, conn, address, *more)  # type: ignore[arg-type]
        accept_times.append(time.perf_counter() - begin)

    def run_child(
        self: server.ForkingServer, conn: object, address: str, session: int, *more: Any
    ) -> None:
        started = time.perf_counter()
        fork_to_child = started - state["before_fork"]
        for slot in TIMERS.values():
            slot[0], slot[1], slot[2] = 0, 0.0, 0.0
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
        original_child(self, conn, address, session, *more)  # type: ignore[arg-type]

    def record(
        started: float,
        fork_to_child: float,
        cpu: float,
        usage: resource.struct_rusage,
        timer: GcTimer,
        profile: cProfile.Profile | None,
    ) -> None:
        now = resource.getrusage(resource.RUSAGE_SELF)
        line = {
            "pid": os.getpid(),
            "fork_to_child": fork_to_child,
            "fork_to_python": state.get("resumed", 0.0) - state["before_fork"],
            "child_to_greeting": first_send["at"] - started if first_send["at"] else 0.0,
            "child_wall": time.perf_counter() - started,
            "child_cpu": time.process_time() - cpu,
            "cpu_since_fork": time.process_time(),
            "minflt": now.ru_minflt - usage.ru_minflt,
            "minflt_total": now.ru_minflt,
            "majflt": now.ru_majflt - usage.ru_majflt,
            "gc_count": timer.count,
            "gc_seconds": timer.seconds,
            "timers": {name: slot for name, slot in TIMERS.items() if slot[0]},
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
        (out_dir / "master.json").write_text(
            json.dumps(
                {
                    "fork_seconds": fork_times,
                    "accept_seconds": accept_times,
                    "objects_tracked": len(gc.get_objects()),
                    "timers": {name: slot for name, slot in TIMERS.items() if slot[0]},
                    "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                }
            )
        )

    atexit.register(dump_master)
    server.ForkingServer._start_session = start_session  # type: ignore[method-assign]
    server.ForkingServer._run_child = run_child  # type: ignore[method-assign]


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.3f}" if values else "-"


def report(out_dir: Path, top: int, per_child: bool = False) -> None:
    path = out_dir / "children.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print(f"children measured: {len(rows)}")
    if per_child and rows:
        report_per_child(rows)
    if rows:
        for key in (
            "fork_to_python",
            "fork_to_child",
            "child_to_greeting",
            "child_wall",
            "child_cpu",
            "cpu_since_fork",
        ):
            print(f"  {key:17} median {median_ms([r[key] for r in rows])} ms")
        faults = statistics.median(r["minflt"] for r in rows)
        since_fork = statistics.median(r["minflt_total"] for r in rows)
        print(
            f"  minflt           median {faults:.0f} page faults in the handler,"
            f" {since_fork:.0f} since fork"
        )
        for gen in range(3):
            counts = [r["gc_count"][gen] for r in rows]
            secs = [r["gc_seconds"][gen] for r in rows]
            print(
                f"  gc gen{gen}          {sum(counts) / len(rows):.2f} per child, "
                f"{sum(secs) / len(rows) * 1000:.3f} ms per child (mean)"
            )
        names = sorted(
            {n for r in rows for n in r.get("timers", {})},
            key=lambda n: -sum(r.get("timers", {}).get(n, [0, 0.0])[1] for r in rows),
        )
        if names:
            print("timed functions, per child (mean; inclusive, so nested ones overlap):")
            print(f"  {'wall ms':>8} {'cpu ms':>8} {'calls':>6}")
            for name in names:
                calls, wall, cpu = (
                    sum(r.get("timers", {}).get(name, [0, 0.0, 0.0])[i] for r in rows) / len(rows)
                    for i in range(3)
                )
                print(f"  {wall * 1000:8.3f} {cpu * 1000:8.3f} {calls:6.1f}  {name}")
    master = out_dir / "master.json"
    if master.exists():
        data = json.loads(master.read_text())
        print(
            f"master: fork() median {median_ms(data['fork_seconds'])} ms over "
            f"{len(data['fork_seconds'])}, per accepted connection "
            f"{median_ms(data['accept_seconds'])} ms, gc-tracked objects "
            f"{data['objects_tracked']}, maxrss {data['maxrss_kib'] / 1024:.1f} MiB"
        )
        sessions = max(1, len(data["accept_seconds"]))
        print("master's timed functions, per accepted connection (mean):")
        print(f"  {'wall ms':>8} {'cpu ms':>8} {'calls':>6}")
        timers = sorted(data.get("timers", {}).items(), key=lambda item: -item[1][1])
        for name, (calls, wall, cpu) in timers:
            print(
                f"  {wall / sessions * 1000:8.3f} {cpu / sessions * 1000:8.3f} "
                f"{calls / sessions:6.2f}  {name}"
            )
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


def report_per_child(rows: list[dict]) -> None:
    """Each child (session) in a column of its own, in the order they ended: wall ms / calls."""
    shown = rows[:8]
    print("per child, in the order the sessions ended (wall ms, calls; inclusive):")
    print(f"  {'':44}" + "".join(f" {('pid ' + str(r['pid'])):>18}" for r in shown))
    print(
        f"  {'handler wall / CPU ms':44}"
        + "".join(f" {r['child_wall'] * 1000:>9.1f}/{r['child_cpu'] * 1000:<8.1f}" for r in shown)
    )
    names = sorted(
        {n for r in shown for n in r.get("timers", {})},
        key=lambda n: -max(r.get("timers", {}).get(n, [0, 0.0])[1] for r in shown),
    )
    for name in names:
        cells = []
        for r in shown:
            calls, wall, _cpu = r.get("timers", {}).get(name, [0, 0.0, 0.0])
            cells.append(f" {wall * 1000:>9.1f} {int(calls):>8}" if calls else f" {'-':>18}")
        print(f"  {name[-44:]:44}" + "".join(cells))
    if len(rows) > len(shown):
        print(f"  ({len(rows) - len(shown)} more children not shown)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    run = sub.add_parser("run")
    run.add_argument("dir", type=Path)
    run.add_argument("--cprofile", action="store_true")
    run.add_argument(
        "--gc-freeze",
        action="store_true",
        help="experiment: gc.freeze() in the master just before it serves",
    )
    run.add_argument("daemon", choices=sorted(MODULES))
    run.add_argument("args", nargs=argparse.REMAINDER)
    rep = sub.add_parser("report")
    rep.add_argument("dir", type=Path)
    rep.add_argument("--top", type=int, default=30)
    rep.add_argument(
        "--per-child",
        action="store_true",
        help="also each child's timers in a column of its own (first 8 children)",
    )
    args = parser.parse_args(argv)
    if args.mode == "report":
        report(args.dir, args.top, args.per_child)
        return 0
    module = importlib.import_module(MODULES[args.daemon])
    install(args.dir, args.cprofile, args.daemon)
    if args.gc_freeze:
        from common import server

        serve = server.ForkingServer.serve_forever

        def frozen_serve(self: server.ForkingServer) -> int:
            gc.freeze()
            return serve(self)

        server.ForkingServer.serve_forever = frozen_serve  # type: ignore[method-assign]
    daemon_args = args.args[1:] if args.args[:1] == ["--"] else args.args
    module.main(daemon_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
