"""SIGKILL at random points (issue 17): of the process serving a session (its child in the fork
model, its worker with every session the worker has in the pool model) during RETR, DELE+QUIT,
APPEND (small, and a 20 MB literal), COPY, MOVE, EXPUNGE, STORE and RENAME; of the master while
sessions run; of mailstatd and msmpd in the middle of a command.

After every kill the store is checked byte for byte (support/mailstore.py): every message a
client was told about exists exactly once, whole; none is half-written in cur/ or new/; every
uidlist parses and keeps the UIDs and UIDVALIDITY of the messages that were there; the users
files parse. And the daemon serves on: the next session of the same user gets its mailbox
(the killed process's locks are broken or gone with it).

Each operation runs CRASH_ROUNDS rounds, the kill delay drawn from a seeded generator within a
window that covers the command's work; how many kills landed before the reply is printed
(support/figures.py), never asserted. MAILDAEMONS_CRASH_ROUNDS=30 runs many more (README
"Reliability").
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable

import pytest

from support.clients import LineClient
from support.daemons import serving_process, wait_for
from support.figures import note
from support.imap import crlf
from support.mailstore import INBOX, StoreState, check_users_file, uid_map
from support.reliability import (
    Account,
    Rig,
    gone,
    pop_wire,
    tagged_status,
)

CRASH_ROUNDS = int(os.environ.get("MAILDAEMONS_CRASH_ROUNDS", "3"))
BIG = 20 * 1024 * 1024
OUTCOMES: Counter[str] = Counter()


def kill_after(pid: int, delay: float) -> None:
    time.sleep(delay)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# Per operation, the span the kill delay is drawn from: it learns from each round (a reply that
# came first shrinks it to that delay, a kill that came first widens it), so that the kills
# spread over the command's own work on this machine, however fast it is today.
WINDOWS: dict[str, float] = {}


def kill_at_random(what: str, pid: int, rng: random.Random, first: float) -> float:
    delay = rng.uniform(0, WINDOWS.setdefault(what, first))
    kill_after(pid, delay)
    return delay


def learn(what: str, delay: float, replied: bool) -> None:
    WINDOWS[what] = max(delay, 1e-4) if replied else WINDOWS[what] * 1.5


def settle(rig: Rig, pid: int) -> None:
    """The killed process is gone and reaped, and its master serves the next session."""
    wait_for(lambda: gone(pid), what=f"killed process {pid} gone")
    for daemon in (rig.imapd, rig.pop3d):
        assert daemon.proc.poll() is None, daemon.log()[-2000:]


def check(account: Account, before: object, renames: dict[str, str] | None = None) -> None:
    account.check(before=before, renames=renames or {})
    check_users_file(account.rig.site.root / "users")


def imap_round(
    account: Account,
    rng: random.Random,
    command: bytes,
    window: float,
    acked: Callable[[], None],
    doubt: Callable[[], None],
    what: str,
    folder: str = INBOX,
    progress: Callable[[], str] | None = None,
) -> None:
    """Send `command` in a selected session, SIGKILL its process after a random delay within
    `window`, and tell the ledger what the client learnt: `acked` when the tagged OK came,
    `doubt` (before sending: whatever came of it) otherwise. `progress` says how far the
    command got when it was killed (for the figures)."""
    client = account.select(folder)
    pid = serving_process(account.rig.imapd, client.sock)
    before = uid_map(account.maildir)
    doubt()
    tag = client.tag()
    client.send(tag.encode() + b" " + command + b"\r\n")
    delay = kill_at_random(what, pid, rng, window)
    status = tagged_status(client, tag)
    learn(what, delay, status is not None)
    done = "replied" if status else "killed first"
    if progress is not None and not status:
        done += f", {progress()}"
    OUTCOMES[f"{what}: {done}"] += 1
    if status == b"OK":
        acked()
    else:
        assert status is None, (what, status)  # killed before it answered, never a NO
    client.close()
    settle(account.rig, pid)
    check(account, before)


@pytest.fixture(scope="module", autouse=True)
def figures() -> object:
    yield
    note(
        "crash rounds (kill before or after the reply)",
        "\n".join(f"  {k}: {v}" for k, v in sorted(OUTCOMES.items())),
    )


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    return random.Random(request.node.name)


def fill(account: Account, count: int, folder: str = INBOX, size: int = 2000) -> list[str]:
    ids = [account.deliver(size=size, folder=folder, subdir="cur") for _ in range(count)]
    client = account.select(folder)  # UIDs for all, written
    client.ok("LOGOUT")
    return ids


# -- IMAP -------------------------------------------------------------------------------------


def test_kill_during_append(account: Account, rng: random.Random) -> None:
    fill(account, 3)
    for _ in range(CRASH_ROUNDS * 2):
        ident, data = account.ledger.new(rng.choice([500, 5000, 60000]))
        wire = crlf(data)
        imap_round(
            account,
            rng,
            b"APPEND INBOX (\\Seen) {%d+}\r\n" % len(wire) + wire,
            0.004,
            lambda i=ident: account.ledger.stored(i),
            lambda i=ident: account.ledger.maybe(i),
            "APPEND",
        )


def test_kill_during_a_20_mb_append(account: Account, rng: random.Random) -> None:
    """Killed while the literal arrives, or once it is all there (written, fsynced, renamed):
    never a part of it in cur/ or new/."""
    fill(account, 2)
    ident, data = account.ledger.new(BIG)
    wire = crlf(data)
    for round_ in range(max(2, CRASH_ROUNDS - 1)):
        client = account.select()
        pid = serving_process(account.rig.imapd, client.sock)
        before = uid_map(account.maildir)
        account.ledger.maybe(ident)
        head = b"a APPEND INBOX {%d+}\r\n" % len(wire)
        # Round 0: killed while the literal arrives; later rounds: after all of it was sent.
        cut = rng.randrange(len(wire) // 10, len(wire)) if round_ == 0 else len(wire)
        client.send(head + wire[:cut])
        if cut < len(wire):
            kill_after(pid, 0)
        else:
            client.send(b"\r\n")
            kill_after(pid, rng.uniform(0, 0.15))
        status = tagged_status(client, "a")
        OUTCOMES[f"APPEND 20 MB: {'replied' if status else 'killed first'}"] += 1
        if status == b"OK":
            account.ledger.stored(ident)
        client.close()
        settle(account.rig, pid)
        check(account, before)
        if status == b"OK":
            ident, data = account.ledger.new(BIG)
            wire = crlf(data)


def test_kill_during_copy_and_move(account: Account, rng: random.Random) -> None:
    ids = fill(account, 24)
    client = account.imap()
    for n in range(CRASH_ROUNDS):
        client.ok(f"CREATE Copies{n}")
    client.ok("CREATE Moved")
    client.ok("LOGOUT")
    for n in range(CRASH_ROUNDS):  # each round into a folder of its own: one copy each
        target = f"Copies{n}"
        imap_round(
            account,
            rng,
            f"COPY 1:* {target}".encode(),
            0.01,
            lambda t=target: [account.ledger.stored(i, t) for i in ids],
            lambda t=target: [account.ledger.maybe(i, t) for i in ids],
            "COPY",
            progress=lambda t=target: how_many(account, t, ids),
        )
    present = sorted(account.ledger.present(INBOX))
    for n in range(CRASH_ROUNDS):
        batch = present[n * 6 : n * 6 + 6]
        if not batch:
            break
        uids = uid_of(account, batch)
        imap_round(
            account,
            rng,
            b"UID MOVE %s Moved" % ",".join(map(str, uids)).encode(),
            0.01,
            lambda b=batch: [moved(account, i, INBOX, "Moved") for i in b],
            lambda b=batch: [account.ledger.moving(i, INBOX, "Moved") for i in b],
            "MOVE",
            progress=lambda b=batch: how_many(account, "Moved", b),
        )


def how_many(account: Account, folder: str, ids: list[str]) -> str:
    """`n of m there`: how many of `ids` are in `folder` now."""
    there = StoreState.read(account.maildir).ids(folder)
    return f"{sum(1 for i in ids if there[i])} of {len(ids)} there"


def moved(account: Account, ident: str, source: str, target: str) -> None:
    account.ledger.removed(ident, source)
    account.ledger.stored(ident, target)
    account.ledger.fate(ident).across = None


def uid_of(account: Account, ids: list[str]) -> list[int]:
    client = account.select()
    lines = client.ok("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (X-Rel-Id)])")
    client.ok("LOGOUT")
    found = {}
    for line in lines:
        match = re.match(rb"\* \d+ FETCH \(UID (\d+) .*X-Rel-Id: (\S+)", line, re.S)
        if match:
            found[match.group(2).decode()] = int(match.group(1))
    return [found[i] for i in ids]


def test_kill_during_store_and_expunge(account: Account, rng: random.Random) -> None:
    fill(account, 40)
    for _ in range(CRASH_ROUNDS):
        flags = rng.choice(["\\Seen", "\\Flagged \\Answered", "$Label1"])
        imap_round(
            account,
            rng,
            f"STORE 1:* +FLAGS ({flags})".encode(),
            0.003,
            lambda: None,
            lambda: None,
            "STORE",
        )
    for _ in range(CRASH_ROUNDS):
        present = sorted(account.ledger.present(INBOX))
        doomed = rng.sample(present, min(6, len(present) - 2))
        client = account.select()
        client.ok(
            b"UID STORE %s +FLAGS.SILENT (\\Deleted)"
            % ",".join(map(str, uid_of(account, doomed))).encode()
        )
        client.ok("LOGOUT")
        imap_round(
            account,
            rng,
            b"EXPUNGE",
            0.01,
            lambda d=doomed: [account.ledger.removed(i) for i in d],
            lambda d=doomed: [account.ledger.maybe_gone(i) for i in d],
            "EXPUNGE",
            progress=lambda d=doomed: f"{len(d) - int(how_many(account, INBOX, d)[0])} gone",
        )


def test_kill_during_rename(account: Account, rng: random.Random) -> None:
    fill(account, 10, folder="Old0")
    for n in range(CRASH_ROUNDS):
        old, new = f"Old{n}", f"Old{n + 1}"
        client = account.imap()
        pid = serving_process(account.rig.imapd, client.sock)
        before = uid_map(account.maildir)
        account.ledger.renaming(old, new)
        client.send(b"r RENAME %s %s\r\n" % (old.encode(), new.encode()))
        delay = kill_at_random("RENAME", pid, rng, 0.002)
        status = tagged_status(client, "r")
        learn("RENAME", delay, status is not None)
        OUTCOMES[f"RENAME: {'replied' if status else 'killed first'}"] += 1
        client.close()
        settle(account.rig, pid)
        there = account.folder(new).is_dir()
        assert status is None or (status == b"OK") == there
        check(account, before, {old: new} if there else {})
        account.ledger.rename_settled(old, new, there)
        if not there:  # the next round renames the folder by its next name
            os.rename(account.folder(old), account.folder(new))
            account.ledger.renamed(old, new)


# -- POP3 -------------------------------------------------------------------------------------


def pop_session(account: Account) -> tuple[object, int]:
    client = account.pop()
    return client, serving_process(account.rig.pop3d, client.sock)


def test_kill_during_retr(account: Account, rng: random.Random) -> None:
    ids = fill(account, 2, size=2 * 1024 * 1024)
    for _ in range(CRASH_ROUNDS):
        before = uid_map(account.maildir)
        client, pid = pop_session(account)
        client.send(b"DELE 2\r\nRETR 1\r\n")
        kill_after(pid, rng.uniform(0, 0.03))
        data = b""
        with contextlib.suppress(EOFError, OSError):
            client.line()
            client.line()
            data = client.until(b".\r\n")
        OUTCOMES[f"RETR: {'whole' if data else 'cut'}"] += 1
        assert not data or data == pop_wire(account.ledger.messages[ids[0]])
        client.close()
        settle(account.rig, pid)
        check(account, before)  # nothing deleted: no QUIT reached UPDATE
    account.pop().close()  # the maildrop lock went with the killed process


def test_kill_during_dele_and_quit(account: Account, rng: random.Random) -> None:
    fill(account, 30, size=800)
    for _ in range(CRASH_ROUNDS):
        before = uid_map(account.maildir)
        client, pid = pop_session(account)
        client.send(b"UIDL\r\n")
        listing = client.until(b".\r\n").split(b"\r\n")[1:-2]
        numbers = [int(line.split(b" ")[0]) for line in listing]
        doomed = rng.sample(numbers, min(5, len(numbers)))
        ids = {}
        for number in doomed:
            client.send(b"TOP %d 0\r\n" % number)
            head = client.until(b".\r\n")
            ident = re.search(rb"X-Rel-Id: (\S+)", head)
            assert ident is not None
            ids[number] = ident.group(1).decode()
            account.ledger.maybe_gone(ids[number])
        client.send(b"".join(b"DELE %d\r\n" % n for n in doomed) + b"QUIT\r\n")
        delay = kill_at_random("DELE+QUIT", pid, rng, 0.01)
        replies = []
        with contextlib.suppress(EOFError, OSError):
            for _ in range(len(doomed) + 1):
                replies.append(client.line())
        quit_ok = len(replies) == len(doomed) + 1 and replies[-1].startswith(b"+OK ")
        learn("DELE+QUIT", delay, quit_ok)
        there = how_many(account, INBOX, list(ids.values()))
        OUTCOMES[f"DELE+QUIT: {'replied' if quit_ok else 'killed first, ' + there}"] += 1
        if quit_ok:
            for ident in ids.values():
                account.ledger.removed(ident)
        client.close()
        settle(account.rig, pid)
        check(account, before)


# -- the master, mailstatd, msmpd ---------------------------------------------------------------


def listening(port: int) -> bool:
    """Whether any process has a listening socket on `port` (the kernel's tables)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    return True
    return False


def test_kill_of_the_master_while_sessions_run(own_rig: Callable[..., Rig]) -> None:
    """No orphan keeps the listening socket, a new master starts on the same port at once, and
    the sessions that ran finish (fork model: the children serve on to the end) or end with a
    goodbye (pool model: the workers see their master gone); what was acknowledged stays."""
    rig = own_rig()
    account = rig.account()
    fill(account, 5)
    imap = account.select()
    pop = account.pop()
    ident = account.append(imap)
    for daemon in (rig.imapd, rig.pop3d):
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(10)
    for daemon in (rig.imapd, rig.pop3d):
        wait_for(lambda d=daemon: not listening(d.port), what=f"{daemon.name}'s port closed")
    rig.imapd = rig.start("imapd", port=rig.imapd.port)
    rig.pop3d = rig.start("pop3d", port=rig.pop3d.port)
    fresh = account.select()
    assert fresh.status("NOOP") == b"OK"
    for client, bye in ((imap, b"t"), (pop, b"")):
        with contextlib.suppress(EOFError, OSError):
            client.send(b"t99 LOGOUT\r\n" if bye else b"QUIT\r\n")
            client.sock.settimeout(10)
            while client.line():
                pass
        client.close()
    fresh.ok("LOGOUT")
    assert ident in account.ledger.present()
    account.check()
    rig.assert_healthy()


def test_kill_of_msmpd_mid_add_and_dele(own_rig: Callable[..., Rig]) -> None:
    """msmpd's session killed in the middle of ADD (the users file rewritten under its lock, a
    maildir made) and DELE (the users file, then the maildir moved aside): the users file
    parses and holds every acknowledged change, the users added log in, and the mail of every
    user is whole, in its maildir or moved aside under .deleted/."""
    rig = own_rig(msmpd=True, stats=True)
    rng = random.Random("msmpd")
    accounts = {}
    for _ in range(CRASH_ROUNDS + 1):
        account = rig.account()
        fill(account, 2, size=500)
        accounts[account.user] = account
    names = set(check_users_file(rig.site.root / "users"))
    added = {}
    for n in range(CRASH_ROUNDS * 2):
        user = f"new{n}" if n % 2 == 0 else rng.choice(sorted(names & set(accounts)))
        command = f"ADD {user} pw{n}" if n % 2 == 0 else f"DELE {user}"
        admin = rig.msmp()
        pid = serving_process(rig.msmpd, admin.sock)  # type: ignore[arg-type]
        admin.send(command.encode() + b"\r\n")
        delay = kill_at_random(command.split()[0], pid, rng, 0.01)
        reply = b""
        with contextlib.suppress(EOFError, OSError):
            reply = admin.line()
        learn(command.split()[0], delay, bool(reply))
        OUTCOMES[f"msmpd {command.split()[0]}: {'replied' if reply else 'killed first'}"] += 1
        admin.close()
        wait_for(lambda p=pid: gone(p), what="the killed msmpd session gone")
        now = set(check_users_file(rig.site.root / "users"))
        if reply.startswith(b"+OK"):
            assert (user in now) == command.startswith("ADD"), (command, reply)
        assert now - {user} == names - {user}, "only that user changed"
        if user in now and command.startswith("ADD"):
            added[user] = f"pw{n}"
        names = now
    for user, password in added.items():
        client = LineClient(socket.create_connection(("127.0.0.1", rig.pop3d.port), timeout=10))
        client.line()
        client.send(f"USER {user}\r\nPASS {password}\r\nQUIT\r\n".encode())
        assert client.line() == b"+OK\r\n"
        assert client.line().startswith(b"+OK Logged in"), user
        client.close()
    for user, account in accounts.items():
        if account.maildir.is_dir():
            account.check()
        else:  # deleted: its maildir moved aside whole
            [retired] = (rig.site.mail / ".deleted").glob(f"{user}.*")
            account.ledger.check(retired)
    assert rig.msmpd is not None and rig.msmpd.proc.poll() is None
    rig.assert_healthy()


def test_kill_of_mailstatd_mid_query(own_rig: Callable[..., Rig]) -> None:
    """mailstatd killed while msmpd asks it (STAT): msmpd answers -ERR and its session goes on,
    sessions of the other daemons go on unaffected (stats are never waited for), and a
    mailstatd started again answers, its figures read back from its state file."""
    rig = own_rig(msmpd=True, stats=True)
    assert rig.stats is not None
    account = rig.account()
    fill(account, 2)
    admin = rig.msmp()
    rng = random.Random("mailstatd")
    admin.send(b"STAT\r\n")
    kill_after(rig.stats.pid, rng.uniform(0, 0.005))
    rig.stats.proc.wait(10)
    first = admin.line()
    if first.startswith(b"+OK"):
        admin.until(b".\r\n")
    else:
        assert first.startswith(b"-ERR Statistics unavailable"), first
    OUTCOMES[f"mailstatd STAT: {'answered' if first.startswith(b'+OK') else 'killed first'}"] += 1
    admin.send(b"STAT\r\n")
    assert admin.line().startswith(b"-ERR Statistics unavailable")
    for _ in range(3):  # the others serve on without their collector
        client = account.select()
        account.append(client)
        client.ok("LOGOUT")
        pop = account.pop()
        pop.send(b"QUIT\r\n")
        assert pop.line().startswith(b"+OK")
    rig.stats = rig.start("mailstatd")
    admin.send(b"STAT\r\n")
    assert admin.line().startswith(b"+OK")
    admin.until(b".\r\n")
    admin.send(b"QUIT\r\n")
    assert admin.line().startswith(b"+OK")
    account.check()
    rig.assert_healthy()
