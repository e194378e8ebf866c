"""SORT and THREAD on a big mailbox (issue 16): imapd beside the reference Dovecot.

    sudo .venv/bin/python bench/sortthread.py 10000 --nice -15
    sudo .venv/bin/python bench/sortthread.py 100000 --nice -15 --tuned --cache /var/tmp/x
    .venv/bin/python bench/sortthread.py 2000 --no-dovecot --passes 2

The same N realistic messages as the big-mailbox benchmark (bench/bigmailbox.py seed_big, of
`--kind`: auto takes issue 15's small ones from 50,000 messages on; `--cache DIR` generates
them once and copies them from there) go into a maildir of each server's own; both servers
start (compare.py start_ours / start_dovecot, `--tuned` for Dovecot's high-performance mode),
and each pass opens one session per server, the servers taking turns, and times:

    LOGIN + SELECT INBOX, then each of COMMANDS in order, then LOGOUT (not timed)

Pass 1 is cold: no cache or index of either server yet and, as root, the page cache dropped
first (`/proc/sys/vm/drop_caches`), so the first SORT reads every header from the disk. Later
passes are warm: each server has its own on-disk caches (ours: the folder's message cache with
the sort facts; Dovecot's index), and our child is a fresh process each time. It prints one
table of seconds and whether the two servers' answers were identical for each command. Nothing
is asserted; loopback only; everything started is stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import bigmailbox
import compare
import load

COMMANDS = (
    "SORT (SUBJECT) UTF-8 ALL",
    "SORT (REVERSE DATE) UTF-8 ALL",
    "SORT (FROM SIZE) UTF-8 ALL",
    "SORT (DISPLAYFROM) UTF-8 ALL",
    "THREAD REFERENCES UTF-8 ALL",
    "THREAD ORDEREDSUBJECT UTF-8 ALL",
    "SORT RETURN (COUNT MIN MAX) (ARRIVAL) UTF-8 UNSEEN",
)
OP_TIMEOUT = 600.0
TARGET = 2.0  # issue 15: SORT and THREAD of the big folder within 2x Dovecot


def session(port: int, user: str) -> tuple[list[float], list[bytes]]:
    """One session: (seconds of SELECT and each command, the untagged answer of each)."""
    conn = login(port, user)
    try:
        begin = time.monotonic()
        command(conn, "b", "SELECT INBOX")
        times, answers = [time.monotonic() - begin], []
        for n, text in enumerate(COMMANDS):
            begin = time.monotonic()
            lines = command(conn, f"c{n}", text)
            times.append(time.monotonic() - begin)
            answers.append(
                b"".join(
                    line
                    for line in lines
                    if line.split(b" ", 2)[1] in (b"SORT", b"THREAD", b"ESEARCH")
                ).replace(f"c{n}".encode(), b"")
            )
        command(conn, "z", "LOGOUT")
        return times, answers
    finally:
        conn.close()


def login(port: int, user: str) -> load.Conn:
    """A logged-in connection; a login that fails at first (Dovecot's auth process may still be
    starting) is tried again for a while."""
    deadline = time.monotonic() + 30
    while True:
        conn = load.Conn("127.0.0.1", port, OP_TIMEOUT)
        conn.read_line()
        try:
            command(conn, "a", f"LOGIN {user} {load.DEFAULT_PASSWORD}")
            return conn
        except load.ProtocolError:
            conn.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def command(conn: load.Conn, tag: str, text: str) -> list[bytes]:
    conn.send(f"{tag} {text}\r\n".encode())
    lines = []
    while True:
        line = conn.read_line()
        if line.startswith(tag.encode() + b" "):
            if not line.startswith(tag.encode() + b" OK"):
                raise load.ProtocolError(f"{text}: {line!r}")
            return lines
        lines.append(line)


def drop_caches() -> bool:
    if os.geteuid() != 0:
        return False
    os.sync()
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("messages", nargs="?", type=int, default=10000)
    parser.add_argument("--passes", type=int, default=3, help="1 cold, the rest warm")
    parser.add_argument("--no-dovecot", action="store_true")
    parser.add_argument("--nice", type=int, default=None, help="run at this niceness (root)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--kind", choices=("auto", *bigmailbox.KINDS), default="auto")
    parser.add_argument("--cache", type=Path, help="generate the messages once into DIR")
    parser.add_argument("--tuned", action="store_true", help="Dovecot's high-performance mode")
    parser.add_argument(
        "--no-drop", action="store_true", help="keep the page cache for the cold pass"
    )
    args = parser.parse_args(argv)
    if args.nice is not None:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    want_dovecot = not args.no_dovecot and os.geteuid() == 0 and shutil.which("dovecot")
    work = Path(tempfile.mkdtemp(prefix="sortthread-"))
    work.chmod(0o755)  # Dovecot's auth and mail processes run as other users
    user = bigmailbox.big_user(args.messages)
    servers: list[compare.Server] = []
    try:
        mails = {"imapd": work / "mail-ours", "dovecot": work / "mail-dovecot"}
        folders = [mails["imapd"] / user] + ([mails["dovecot"] / user] if want_dovecot else [])
        kind = bigmailbox.kind_for(args.messages, args.kind)
        seeded = bigmailbox.seed_big(folders, user, args.messages, kind=kind, cache=args.cache)
        compare.log(
            f"{seeded.messages} {kind} messages, {seeded.bytes / 2**20:.0f} MiB"
            f" in {seeded.seconds:.1f} s"
        )
        servers.append(compare.start_ours("imap", work, mails["imapd"], [user], None, False))
        if want_dovecot:
            servers.append(
                compare.start_dovecot(
                    "imap", work, mails["dovecot"], 1, args.tuned, compare.REFERENCE, user
                )
            )
        results: dict[str, list[list[float]]] = {s.name: [] for s in servers}
        answers: dict[str, list[bytes]] = {}
        for number in range(args.passes):
            for server in servers:
                dropped = drop_caches() if number == 0 and not args.no_drop else False
                times, answer = session(server.port, user)
                results[server.name].append(times)
                answers[server.name] = answer
                compare.log(
                    f"pass {number + 1} {server.name}: {sum(times):.2f} s"
                    + (" (page cache dropped)" if dropped else "")
                )
        print_table(results, answers)
    finally:
        for server in servers:
            server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def print_table(results: dict[str, list[list[float]]], answers: dict[str, list[bytes]]) -> None:
    """Seconds per step, cold (pass 1) and warm (the best later pass), and with both servers
    the ratios and the issue's target: each SORT and THREAD within TARGET x Dovecot."""
    names = list(results)
    both = len(names) > 1
    header = "| step | " + " | ".join(f"{n} cold | {n} warm" for n in names)
    extra = " ratio cold | ratio warm | same answer |" if both else ""
    print()
    print(header + " |" + extra)
    print("|---" * (1 + 2 * len(names) + 3 * both) + "|")
    verdicts = []
    for index, step in enumerate(["LOGIN + SELECT INBOX", *COMMANDS]):
        cells = []
        figures = {}
        for name in names:
            passes = results[name]
            warm = [p[index] for p in passes[1:]]
            figures[name] = (passes[0][index], min(warm) if warm else None)
            cells.append(f"{passes[0][index]:.2f} s")
            cells.append(f"{min(warm):.2f} s" if warm else "-")
        line = f"| {step} | " + " | ".join(cells) + " |"
        if both:
            ours, theirs = figures[names[0]], figures[names[1]]
            ratios = [
                a / b if a is not None and b else None for a, b in zip(ours, theirs, strict=True)
            ]
            line += "".join(f" {r:.2f}x |" if r is not None else " - |" for r in ratios)
            same = len({answers[n][index - 1] for n in names}) == 1 if index else None
            line += {True: " yes |", False: " no |", None: " |"}[same]
            if index:
                verdicts.append((step, ratios, same))
        print(line)
    if verdicts:
        print(f"\ntargets (issue 15: SORT and THREAD within {TARGET:g}x Dovecot, cold and warm):")
        for step, ratios, same in verdicts:
            ok = all(r is not None and r <= TARGET for r in ratios) and same
            shown = " / ".join(f"{r:.2f}x" if r is not None else "-" for r in ratios)
            print(
                f"  {step}: {shown}{'' if same else ', answers differ'}: {'PASS' if ok else 'FAIL'}"
            )


if __name__ == "__main__":
    sys.exit(main())
