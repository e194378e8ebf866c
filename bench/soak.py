"""Soak (issue 17): mixed POP3, IMAP and MSMP traffic against the real daemons for a set time, about
1% of the sessions hostile, every message a client reads checked byte for byte; at the end the
whole mail store is checked against what every client was told.

    .venv/bin/python bench/soak.py --minutes 10 [--process-model pool] [--clients 6] [--nice -15]

It runs the reliability suite's own code (tests/support: the rig of imapd, pop3d, msmpd and
mailstatd on one site, the ledger of what clients were told, the storm of sessions on one
mailbox), with bigger numbers: `--clients` threads run whole sessions back to back, each on
accounts of its own (POP3: STAT, LIST, UIDL, RETR checked, sometimes DELE+QUIT; IMAP: SELECT,
FETCH checked, STORE, APPEND, EXPUNGE; MSMP: STAT, LIST, ADD and DELE of users who come and
go), an MTA delivers into every account, a storm of ten sessions works on one mailbox, and one
session in a hundred is hostile (binary junk, a 1 MiB line, NULs, a command cut short, hostile
user names, a literal too large). It prints, every `--every` seconds and at the end: sessions
completed by kind, errors by kind (a hostile session's refusals are not errors; a daemon that
died, a dropped session, a wrong byte are), zombie children, and each master's RSS and open
descriptors (with the pool model's workers), at the start and now. Nothing is asserted; the
exit status is 1 when there were errors or the store check failed. The suite itself has a long
form too (README "Reliability"): MAILDAEMONS_STORM_SECONDS and MAILDAEMONS_CRASH_ROUNDS raised.

Loopback only; every daemon started is stopped (TERM) at the end, the site removed unless
`--keep`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.clients import LineClient  # noqa: E402
from support.daemons import MODEL_ENV, DaemonFactory, child_pids, is_zombie, workers  # noqa: E402
from support.hostile import HOSTILE_NAMES, attacks, fd_count, vm_rss_kib  # noqa: E402
from support.imap import crlf  # noqa: E402
from support.mailstore import INBOX, check_users_file, message_id  # noqa: E402
from support.reliability import Account, Rig, pop_wire  # noqa: E402
from support.site import MailSite  # noqa: E402
from support.storm import Storm  # noqa: E402

SESSION_KINDS = {"pop3": 35, "imap": 45, "msmp": 10, "status": 9, "hostile": 1}
# Mailboxes stay about this size (the MTA waits while one is full, IMAP expunges more from a big
# one): a steady state, so that memory that grows over the run is not just bigger mailboxes.
STEADY_MESSAGES = 40


class Soak:
    def __init__(self, rig: Rig, clients: int, seed: int) -> None:
        self.rig = rig
        self.seed = seed
        self.lock = threading.Lock()
        self.done: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.stop = threading.Event()
        self.accounts = [[rig.account() for _ in range(4)] for _ in range(clients)]
        self.churn: dict[str, bool] = {}  # MSMP's users who come and go: last acknowledged

    def error(self, kind: str, text: str) -> None:
        with self.lock:
            self.errors[kind] += 1
            self.examples.setdefault(kind, text[:300])

    def count(self, kind: str) -> None:
        with self.lock:
            self.done[kind] += 1

    # -- the sessions ------------------------------------------------------------------------

    def client(self, number: int) -> None:
        rng = random.Random(f"{self.seed}-{number}")
        kinds, weights = zip(*SESSION_KINDS.items(), strict=True)
        while not self.stop.is_set():
            kind = rng.choices(kinds, weights)[0]
            account = rng.choice(self.accounts[number])
            try:
                getattr(self, kind)(account, rng)
                self.count(kind)
            except (EOFError, OSError) as exc:
                self.error(f"{kind}: dropped", repr(exc))
            except AssertionError as exc:
                self.error(f"{kind}: reply", str(exc))

    def pop3(self, account: Account, rng: random.Random) -> None:
        client = account.pop()
        try:
            client.send(b"STAT\r\nUIDL\r\n")
            assert client.line().startswith(b"+OK ")
            numbers = [int(x.split(b" ")[0]) for x in client.until(b".\r\n").split(b"\r\n")[1:-2]]
            doomed = []
            for number in rng.sample(numbers, min(3, len(numbers))):
                client.send(b"RETR %d\r\n" % number)
                assert client.line().startswith(b"+OK "), "RETR refused"
                wire = client.until(b".\r\n")
                ident = message_id(wire.replace(b"\r\n", b"\n")) or ""
                sent = account.ledger.messages.get(ident)
                if sent is None or pop_wire(sent) != wire:
                    self.error("content", f"RETR {number} of {account.user}: {wire[:100]!r}")
                elif rng.random() < 0.2:
                    doomed.append((number, ident))
            for number, ident in doomed:
                client.send(b"DELE %d\r\n" % number)
                assert client.line().startswith(b"+OK")
                account.ledger.maybe_gone(ident)
            client.send(b"QUIT\r\n")
            assert client.line().startswith(b"+OK "), "QUIT refused"
            for _number, ident in doomed:
                account.ledger.removed(ident)
        finally:
            client.close()

    def imap(self, account: Account, rng: random.Random) -> None:
        client = account.select()
        try:
            client.ok("ENABLE QRESYNC")
            for line in client.ok("UID FETCH 1:* (UID FLAGS BODY.PEEK[])"):
                body = re.search(rb"BODY\[\] \{(\d+)\}\r\n", line)
                if body is None:
                    continue
                data = line[body.end() : body.end() + int(body.group(1))]
                sent = account.ledger.messages.get(message_id(data.replace(b"\r\n", b"\n")) or "")
                if sent is None or crlf(sent) != data:
                    self.error("content", f"FETCH of {account.user}: {data[:100]!r}")
            client.ok(f"STORE 1:* {rng.choice('+-')}FLAGS (\\Seen)")
            if rng.random() < 0.5:
                account.append(client, rng.choice([400, 3000, 30000]))
            present = sorted(account.ledger.present(INBOX))
            if len(present) > 8 and rng.random() < (0.9 if len(present) > STEADY_MESSAGES else 0.2):
                ident = rng.choice(present)
                uids = {
                    m.group(2).decode(): int(m.group(1))
                    for line in client.ok("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (X-Rel-Id)])")
                    if (m := re.match(rb"\* \d+ FETCH \(UID (\d+) .*X-Rel-Id: (\S+)", line, re.S))
                }
                if ident in uids:
                    account.ledger.maybe_gone(ident)
                    client.ok(f"UID STORE {uids[ident]} +FLAGS.SILENT (\\Deleted)")
                    client.ok(f"UID EXPUNGE {uids[ident]}")
                    account.ledger.removed(ident)
            client.ok("LOGOUT")
        finally:
            client.close()

    def msmp(self, account: Account, rng: random.Random) -> None:
        client = self.rig.msmp()
        try:
            user = f"churn{rng.randrange(20)}"
            adding = rng.random() < 0.6
            client.send(b"STAT\r\n")
            assert client.line().startswith(b"+OK"), "STAT refused"
            client.until(b".\r\n")
            client.send((f"ADD {user} pw-{user}" if adding else f"DELE {user}").encode() + b"\r\n")
            reply = client.line()
            if reply.startswith(b"+OK"):
                with self.lock:
                    self.churn[user] = adding
            else:
                assert b"does not exist" in reply, reply
            client.send(b"QUIT\r\n")
            assert client.line().startswith(b"+OK")
        finally:
            client.close()

    def status(self, account: Account, rng: random.Random) -> None:
        """A short IMAP session that only looks: LIST and STATUS."""
        client = account.imap()
        try:
            client.ok('LIST "" "*"')
            client.ok("STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)")
            client.ok("LOGOUT")
        finally:
            client.close()

    def hostile(self, account: Account, rng: random.Random) -> None:
        """Bad input: refused or cut off, never a crash, never a change to anyone's mail."""
        daemon = rng.choice([self.rig.imapd, self.rig.pop3d, self.rig.msmpd])
        assert daemon is not None
        sock = daemon.connect(10)
        try:
            LineClient(sock).line()
            first = {"imapd": b"a LOGIN ", "pop3d": b"USER ", "msmpd": b"USER "}[daemon.name]
            choice = rng.randrange(6)
            if choice < 4:
                list(attacks(first).values())[choice](sock)
            elif choice == 4:
                name = rng.choice(HOSTILE_NAMES).encode("utf-8", "surrogateescape")
                sock.sendall(first + name + b" x\r\n" + b"PASS x\r\n" * (daemon.name != "imapd"))
            else:
                sock.sendall(b"a APPEND INBOX {4294967296+}\r\nxyz\r\n")
            with contextlib.suppress(OSError):
                sock.settimeout(2)
                sock.recv(65536)
        except (OSError, EOFError):
            pass  # the server may cut a hostile client off: that is its right
        finally:
            sock.close()
        assert daemon.proc.poll() is None, f"{daemon.name} died of hostile input"

    def mta(self) -> None:
        rng = random.Random(self.seed)
        while not self.stop.wait(0.05):
            account = rng.choice(rng.choice(self.accounts))
            if len(account.ledger.present(INBOX)) < STEADY_MESSAGES + 10:
                account.deliver(rng.choice([500, 2000, 20000]))
                self.count("deliveries")

    def storm(self, account: Account) -> None:
        while not self.stop.is_set():
            storm = Storm(account, imap_sessions=6, pop3=True, deliveries=False, movers=True)
            storm.run(30)  # a round at most this long: then its sessions log out, and again
            for text in storm.errors:
                self.error(f"storm: {text.split(':', 1)[0]}", text)
            self.count("storm rounds")


# -- figures ------------------------------------------------------------------------------------


Figures = tuple[int, int, int, int, int]


def process_figures(rig: Rig) -> dict[str, Figures]:
    """Per daemon: master RSS KiB, master open fds, zombie children (of it and its workers),
    and the pool model's workers' RSS KiB and open fds together (0 in the fork model)."""
    found = {}
    for daemon in rig.daemons():
        pid = daemon.pid
        kids = child_pids(pid)
        zombies = sum(1 for kid in kids if is_zombie(kid))
        zombies += sum(1 for kid in kids for grand in child_pids(kid) if is_zombie(grand))
        pool = workers(pid)
        with contextlib.suppress(OSError, AssertionError):
            found[daemon.name] = (
                vm_rss_kib(pid),
                fd_count(pid),
                zombies,
                sum(vm_rss_kib(w) for w in pool),
                sum(fd_count(w) for w in pool),
            )
    return found


def report(soak: Soak, start: dict[str, Figures], elapsed: float, final: bool = False) -> None:
    now = process_figures(soak.rig)
    print(f"--- {elapsed / 60:.1f} min{' (end)' if final else ''}")
    sessions = sum(v for k, v in soak.done.items() if k not in ("deliveries", "storm rounds"))
    print(f"sessions completed: {sessions} ({dict(sorted(soak.done.items()))})")
    print(f"errors: {sum(soak.errors.values())} {dict(sorted(soak.errors.items()))}")
    for name, (rss, fds, zombies, wrss, wfds) in sorted(now.items()):
        rss0, fds0, _, wrss0, wfds0 = start.get(name, (0, 0, 0, 0, 0))
        line = (
            f"  {name:9} master RSS {rss0 / 1024:.1f} -> {rss / 1024:.1f} MiB, "
            f"open fds {fds0} -> {fds}, zombies {zombies}"
        )
        if wrss:
            line += (
                f"; workers RSS {wrss0 / 1024:.1f} -> {wrss / 1024:.1f} MiB, fds {wfds0} -> {wfds}"
            )
        print(line)
    sys.stdout.flush()


def run_soak(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="maildaemons-soak-"))
    factory = DaemonFactory(root)
    status = 1
    try:
        rig = Rig(
            factory, MailSite.create(root), accounts=4 * args.clients + 2, msmpd=True, stats=True
        )
        soak = Soak(rig, args.clients, args.seed)
        storm_account = rig.account()
        for group in soak.accounts:
            for account in group:
                for _ in range(6):
                    account.deliver(subdir="cur")
        for _ in range(20):
            storm_account.deliver()
        start = process_figures(rig)
        print(
            f"soak: {args.minutes} min, {args.clients} clients, process model "
            f"{os.environ.get(MODEL_ENV) or 'fork'}, site {root}"
        )
        threads = [threading.Thread(target=soak.client, args=(n,)) for n in range(args.clients)]
        threads.append(threading.Thread(target=soak.mta))
        threads.append(threading.Thread(target=soak.storm, args=(storm_account,)))
        began = time.monotonic()
        for thread in threads:
            thread.start()
        deadline = began + args.minutes * 60
        while time.monotonic() < deadline:
            time.sleep(min(args.every, max(0.0, deadline - time.monotonic())))
            report(soak, start, time.monotonic() - began)
        soak.stop.set()
        for thread in threads:
            thread.join(120)
        report(soak, start, time.monotonic() - began, final=True)
        for kind, text in sorted(soak.examples.items()):
            print(f"  first {kind}: {text}")
        problems = check_store(soak, [*[a for g in soak.accounts for a in g], storm_account])
        print(f"store check: {problems or 'every message as the clients were told'}")
        trouble = {
            d.name: sum(d.log().count(w) for w in ("Traceback", "internal error", "crashed"))
            for d in rig.daemons()
        }
        print(f"tracebacks, internal errors and crashes logged: {trouble}")
        status = 0 if not soak.errors and not problems and not any(trouble.values()) else 1
    finally:
        factory.stop_all()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return status


def check_store(soak: Soak, accounts: list[Account]) -> str:
    """'' when every account's store is what its clients were told, and MSMP's users are."""
    problems = []
    for account in accounts:
        try:
            account.check()
        except AssertionError as exc:
            problems.append(f"{account.user}: {str(exc)[:500]}")
    names = set(check_users_file(soak.rig.site.root / "users"))
    churned = {u for u in names if u.startswith("churn")}
    if churned != {u for u, present in soak.churn.items() if present}:
        problems.append(f"users file: {sorted(churned)} vs {soak.churn}")
    return "; ".join(problems)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=6, help="threads of short sessions")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between reports")
    parser.add_argument("--process-model", choices=("fork", "pool"), default="fork")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--keep", action="store_true", help="keep the site (logs, mail)")
    parser.add_argument("--nice", type=int, default=None, help="run at this niceness (root)")
    args = parser.parse_args()
    if args.nice is not None:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    os.environ[MODEL_ENV] = args.process_model
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # TERM ends it through finally
    return run_soak(args)


if __name__ == "__main__":
    sys.exit(main())
