"""A storm of sessions on one mailbox, for a bounded time: IMAP sessions that fetch (checking every
body byte for byte), flag, expunge, append and move; a POP3 session that lists, RETRs (checked
too), DELEs and QUITs; an MTA that delivers into new/. What each client was told goes into the
account's ledger (support/mailstore.py), so the store's end state can be checked afterwards.

Every reply is judged as it comes: an IMAP tagged reply must be OK, or `NO [EXPUNGEISSUED]` (a
concurrent expunge, RFC 5530), a POP3 reply `+OK`, or the `-ERR` of a message another session
removed. Anything else, a connection that ends unasked, or a body that differs from what was
sent, is an error of the kind it names (`Storm.errors`). The IMAP sessions ENABLE QRESYNC, so
expunges come as `VANISHED <uids>`: each client knows exactly which of its messages went.

tests/reliability/test_races.py and test_concurrency.py run it for STORM_SECONDS; bench/soak.py
runs it (and more) for minutes.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from support.imap import Raw, crlf
from support.mailstore import INBOX, message_id
from support.reliability import Account, pop_wire

# Long enough for thousands of commands on this 2-core machine, short enough for CI.
STORM_SECONDS = float(os.environ.get("MAILDAEMONS_STORM_SECONDS", "4"))
FETCH_LINE = re.compile(rb"^\* \d+ FETCH \(")
UID_ITEM = re.compile(rb"[( ]UID (\d+)")
BODY_ITEM = re.compile(rb"BODY\[\] \{(\d+)\}\r\n")
VANISHED = re.compile(rb"^\* VANISHED (?:\(EARLIER\) )?(\S+)")
EXPUNGE_ISSUED = re.compile(rb"^\S+ NO \[EXPUNGEISSUED\] ")
TAGGED_OK = re.compile(rb"^\S+ OK\b")


def uid_set(text: bytes) -> list[int]:
    uids: list[int] = []
    for part in text.decode().split(","):
        low, _, high = part.partition(":")
        uids.extend(range(int(low), int(high or low) + 1))
    return uids


@dataclass
class Storm:
    """The workload on `account`; `run(seconds)` returns figures, `errors` what went wrong."""

    account: Account
    imap_sessions: int = 10
    pop3: bool = True
    deliveries: bool = True
    movers: bool = False  # IMAP sessions MOVE messages to "Archive" too
    seed: int = 17
    errors: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Messages one client is removing (expunge, MOVE, POP3 DELE): no other client removes them
    # too, so a MOVE cut short can be held to "in one of its two folders".
    claimed: set[str] = field(default_factory=set)

    def run(self, seconds: float) -> dict[str, int]:
        if self.movers:
            client = self.account.imap()
            client.cmd('CREATE "Archive"')
            client.ok("LOGOUT")
        deadline = time.monotonic() + seconds
        threads = [
            threading.Thread(target=self._guard, args=(self._imap, n, deadline))
            for n in range(self.imap_sessions)
        ]
        if self.pop3:
            threads.append(threading.Thread(target=self._guard, args=(self._pop3, 0, deadline)))
        if self.deliveries:
            threads.append(threading.Thread(target=self._guard, args=(self._mta, 0, deadline)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + 60)
        return dict(self.counts)

    # -- bookkeeping ---------------------------------------------------------------------------

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    def error(self, kind: str, text: str) -> None:
        with self.lock:
            self.errors.append(f"{kind}: {text}")

    def claim(self, ident: str) -> bool:
        with self.lock:
            if ident in self.claimed:
                return False
            self.claimed.add(ident)
            return True

    def _guard(self, work, number: int, deadline: float) -> None:  # type: ignore[no-untyped-def]
        try:
            work(random.Random(f"{self.seed}-{work.__name__}-{number}"), deadline)
        except (EOFError, OSError) as exc:
            self.error("dropped", f"{work.__name__} {number}: {exc!r}")
        except AssertionError as exc:
            self.error("reply", f"{work.__name__} {number}: {exc}")

    # -- an IMAP session -------------------------------------------------------------------------

    def _imap(self, rng: random.Random, deadline: float) -> None:
        client = self.account.imap()
        client.ok("ENABLE QRESYNC")
        known: dict[int, str] = {}  # UID -> X-Rel-Id, as this session last saw them
        self._judge(client, known, *client.cmd("SELECT INBOX"))
        self._fetch(client, known, "1:*")
        actions = [self._fetch_some, self._flag, self._flag_all, self._expunge, self._append]
        actions.append(self._noop)
        weights = [4, 2, 2, 2, 2, 1]
        if self.movers:
            actions.append(self._move)
            weights.append(1)
        while time.monotonic() < deadline:
            rng.choices(actions, weights)[0](client, known, rng)
            self.count("imap commands")
        self._judge(client, known, *client.cmd("LOGOUT"))
        assert client.closed(), "LOGOUT did not close"
        self.count("imap sessions")

    def _judge(self, client: Raw, known: dict[int, str], lines: list[bytes], done: bytes) -> bool:
        """Take what the untagged lines say; True when the tagged reply is OK."""
        for line in lines:
            vanished = VANISHED.match(line)
            if vanished:
                for uid in uid_set(vanished.group(1)):
                    ident = known.pop(uid, None)
                    if ident is not None:
                        self.account.ledger.removed(ident, INBOX)
            elif FETCH_LINE.match(line):
                self._check_fetch(line, known)
            elif line.startswith(b"* BYE") and done.split(b" ")[1:2] != [b"OK"]:
                self.error("bye", line.decode(errors="replace").strip())
        if TAGGED_OK.match(done):
            return True
        if not EXPUNGE_ISSUED.match(done):
            self.error("imap reply", done.decode(errors="replace").strip())
        return False

    def _check_fetch(self, line: bytes, known: dict[int, str]) -> None:
        uid = UID_ITEM.search(line)
        body = BODY_ITEM.search(line)
        if uid is None or body is None:
            return
        data = line[body.end() : body.end() + int(body.group(1))]
        ident = message_id(data.replace(b"\r\n", b"\n"))
        sent = self.account.ledger.messages.get(ident or "")
        if sent is None or crlf(sent) != data:
            self.error("content", f"UID {uid.group(1).decode()}: {data[:120]!r}")
            return
        known[int(uid.group(1))] = ident or ""
        self.count("bodies checked")

    def _fetch(self, client: Raw, known: dict[int, str], uids: str) -> None:
        self._judge(
            client,
            known,
            *client.cmd(f"UID FETCH {uids} (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"),
        )

    def _fetch_some(self, client: Raw, known: dict[int, str], rng: random.Random) -> None:
        if rng.random() < 0.3 or not known:
            self._fetch(client, known, "1:*")
            return
        low = rng.choice(sorted(known))
        self._fetch(client, known, f"{low}:{low + rng.randint(0, 8)}")

    def _flag(self, client: Raw, known: dict[int, str], rng: random.Random) -> None:
        if not known:
            return
        # One message or a run of them: many renames of the same files, as mail clients
        # that mark a whole folder read make them.
        uids = sorted(known)
        low = rng.choice(uids)
        which = f"{low}" if rng.random() < 0.5 else f"{low}:{low + rng.randint(1, 20)}"
        sign = rng.choice("+-")
        flag = rng.choice(["\\Seen", "\\Flagged", "\\Answered", "$Work"])
        self._judge(client, known, *client.cmd(f"UID STORE {which} {sign}FLAGS ({flag})"))

    def _flag_all(self, client: Raw, known: dict[int, str], rng: random.Random) -> None:
        """Every message of the folder renamed at once: a client marking all read."""
        flags = rng.choice(["\\Seen", "\\Seen \\Flagged", "\\Answered"])
        # UID STORE: a folder emptied by the others is no bad sequence set (1:* of none).
        sign = rng.choice("+-")
        self._judge(client, known, *client.cmd(f"UID STORE 1:* {sign}FLAGS ({flags})"))

    def _expunge(self, client: Raw, known: dict[int, str], rng: random.Random) -> None:
        if len(known) < 5:
            return
        uid = rng.choice(sorted(known))
        if not self.claim(known[uid]):
            return
        self.account.ledger.maybe_gone(known[uid], INBOX)
        if self._judge(client, known, *client.cmd(f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")):
            self._judge(client, known, *client.cmd(f"UID EXPUNGE {uid}"))
            self.count("imap expunges")

    def _append(self, client: Raw, known: dict[int, str], rng: random.Random) -> None:
        ident, data = self.account.ledger.new(rng.choice([300, 900, 4000]))
        self.account.ledger.maybe(ident, INBOX)
        wire = crlf(data)
        lines, done = client.cmd(b"APPEND INBOX {%d+}\r\n" % len(wire) + wire)
        if self._judge(client, known, lines, done):
            appended = re.search(rb"\[APPENDUID \d+ (\d+)\]", done)
            if appended:
                known[int(appended.group(1))] = ident
            self.account.ledger.stored(ident, INBOX)
            self.count("imap appends")

    def _move(self, client: Raw, known: dict[int, str], rng: random.Random) -> None:
        if len(known) < 5:
            return
        uid = rng.choice(sorted(known))
        ident = known[uid]
        ledger = self.account.ledger
        if not self.claim(ident):
            return
        ledger.moving(ident, INBOX, "Archive")
        lines, done = client.cmd(f'UID MOVE {uid} "Archive"')
        if self._judge(client, known, lines, done):
            ledger.stored(ident, "Archive")
            ledger.removed(ident, INBOX)
            self.count("imap moves")

    def _noop(self, client: Raw, known: dict[int, str], rng: random.Random) -> None:
        self._judge(
            client, known, *client.cmd(rng.choice(["NOOP", "UID SEARCH SINCE 1-Jan-2020", "CHECK"]))
        )

    # -- a POP3 session at a time ---------------------------------------------------------------

    def _pop3(self, rng: random.Random, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._pop3_session(rng)
            self.count("pop3 sessions")

    def _pop3_session(self, rng: random.Random) -> None:
        client = self.account.pop()
        try:
            client.send(b"UIDL\r\n")
            listing = client.until(b".\r\n").split(b"\r\n")[1:-2]
            numbers = [int(line.split(b" ")[0]) for line in listing]
            ids: dict[int, str] = {}
            for number in rng.sample(numbers, min(len(numbers), 4)):
                client.send(b"RETR %d\r\n" % number)
                reply = client.line()
                if reply.startswith(b"+OK "):
                    wire = client.until(b".\r\n")
                    ident = message_id(
                        wire.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n") + b"\n\n"
                    )
                    sent = self.account.ledger.messages.get(ident or "")
                    if sent is None or pop_wire(sent) != wire:
                        self.error("content", f"RETR {number}: {wire[:120]!r}")
                    elif ident is not None:
                        ids[number] = ident
                    self.count("pop3 retrs")
                elif reply != b"-ERR Message %d was removed by another session\r\n" % number:
                    self.error("pop3 reply", reply.decode(errors="replace").strip())
                else:
                    self.count("pop3 retrs of vanished messages")
            doomed = [n for n in ids if rng.random() < 0.3 and self.claim(ids[n])]
            for number in doomed:
                client.send(b"DELE %d\r\n" % number)
                assert client.line() == b"+OK Message %d deleted\r\n" % number
                self.account.ledger.maybe_gone(ids[number], INBOX)
            client.send(b"QUIT\r\n")
            reply = client.line()
            if not reply.startswith(b"+OK "):
                self.error("pop3 reply", reply.decode(errors="replace").strip())
                return
            for number in doomed:
                self.account.ledger.removed(ids[number], INBOX)
            self.count("pop3 deletions", len(doomed))
        finally:
            with contextlib.suppress(OSError):
                client.close()

    # -- the MTA ---------------------------------------------------------------------------------

    def _mta(self, rng: random.Random, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.account.deliver(rng.choice([400, 2000]))
            self.count("deliveries")
            time.sleep(0.02)
