"""Two sessions IDLE on one mailbox (one plain, one with QRESYNC) while a third appends, copies,
moves and expunges: every update pushed keeps each idler's sequence numbers right, every session
ends with the same view, and no message is lost or duplicated on disk (RFC 2177, RFC 3501 7.4.1,
RFC 6851, RFC 7162 3.2.10)."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter

from common.store.folders import FolderTree
from common.store.mailbox import Mailbox
from support.daemons import wait_for
from support.imap import Raw, shared_imapd
from support.site import deliver

SEEDED = 30


shared = shared_imapd("imap-ext-concurrency", "idle_keepalive = 0\n")


def message(mid: str) -> bytes:
    return f"From: x@example.org\nSubject: {mid}\nMessage-ID: <{mid}>\n\nbody of {mid}\n".encode()


class Idler:
    """A session in IDLE whose pushed updates are read by a thread and applied to a model of
    the client's view: a list of UIDs (None for a message only known from EXISTS)."""

    def __init__(self, client: Raw, qresync: bool) -> None:
        self.client = client
        self.qresync = qresync
        self.model: list[int | None] = [uid for uid in fetch_uids(client)]
        self.lines: list[bytes] = []
        self.errors: list[str] = []
        self.done = threading.Event()
        client.send(b"i1 IDLE\r\n")
        assert client.line() == b"+ idling\r\n"
        client.sock.settimeout(60)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                line = self.client.line()
                if line.startswith(b"i1 "):
                    assert line == b"i1 OK IDLE terminated\r\n", line
                    return
                self.lines.append(line)
                self.apply(line)
        except Exception as exc:  # reported by finish()
            self.errors.append(repr(exc))
        finally:
            self.done.set()

    def apply(self, line: bytes) -> None:
        if found := re.fullmatch(rb"\* (\d+) EXISTS\r\n", line):
            count = int(found.group(1))
            assert count >= len(self.model), (line, len(self.model))
            self.model += [None] * (count - len(self.model))
        elif found := re.fullmatch(rb"\* (\d+) EXPUNGE\r\n", line):
            assert not self.qresync, line
            seq = int(found.group(1))
            assert 1 <= seq <= len(self.model), (line, len(self.model))
            del self.model[seq - 1]
        elif found := re.fullmatch(rb"\* VANISHED ([\d:,]+)\r\n", line):
            assert self.qresync, line
            for uid in expand(found.group(1).decode()):
                if uid in self.model:
                    self.model.remove(uid)
                else:  # a message it knew only from EXISTS: one of the unnamed ones
                    self.model.remove(None)
        elif re.fullmatch(rb"\* (\d+) RECENT\r\n", line) or b" FETCH (" in line:
            pass
        else:
            raise AssertionError(f"unexpected push {line!r}")

    def finish(self) -> list[int]:
        self.client.send(b"DONE\r\n")
        assert self.done.wait(30), "IDLE did not end"
        self.thread.join(5)
        assert not self.errors, (self.errors, self.lines)
        self.client.sock.settimeout(10)
        for line in self.client.ok("NOOP"):
            self.apply(line)
        final = fetch_uids(self.client)
        assert len(final) == len(self.model), (self.model, final, self.lines)
        for uid, seen in zip(final, self.model, strict=True):
            assert seen is None or seen == uid, (self.model, final, self.lines)
        return final


def expand(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        out += range(int(low), int(high or low) + 1)
    return out


def fetch_uids(client: Raw) -> list[int]:
    lines = client.ok("FETCH 1:* (UID)")
    return [int(m.group(1)) for line in lines if (m := re.search(rb"UID (\d+)", line))]


def test_two_idlers_and_a_busy_third_session_agree(shared):
    server = shared.account()
    maildir = server.maildir()
    for n in range(SEEDED):
        deliver(
            maildir,
            message(f"seed{n}@example.org"),
            subdir="cur",
            name=f"{1700000000 + n}.M{n}P3.conc:2,",
        )
    worker = server.raw_login()  # the first login makes the default folders, Archive too
    plain = Idler(server.raw_select(), qresync=False)
    modern = server.raw_login()
    modern.ok("ENABLE QRESYNC")
    modern.ok("SELECT INBOX")
    qresync = Idler(modern, qresync=True)

    worker.ok("SELECT INBOX")
    expected = Counter(f"seed{n}@example.org" for n in range(SEEDED))  # Message-ID -> copies
    archived: Counter[str] = Counter()
    for round_ in range(4):
        for n in range(5):
            mid = f"new{round_}-{n}@example.org"
            worker.ok(b"APPEND INBOX {%d+}\r\n" % len(message(mid)) + message(mid))
            expected[mid] += 1
        worker.ok("NOOP")
        uids = fetch_uids(worker)
        # Move two, delete-and-expunge two, UID EXPUNGE one of two marked, copy one in place.
        moved, deleted = uids[:2], uids[2:4]
        mids = mids_of(worker, uids[:7])
        worker.ok(f"UID MOVE {moved[0]},{moved[1]} Archive")
        for uid in moved:
            expected[mids[uid]] -= 1
            archived[mids[uid]] += 1
        worker.ok(f"UID STORE {deleted[0]},{deleted[1]} +FLAGS.SILENT (\\Deleted)")
        worker.ok("EXPUNGE")
        expected.subtract(mids[uid] for uid in deleted)
        worker.ok(f"UID STORE {uids[4]},{uids[5]} +FLAGS.SILENT (\\Deleted)")
        worker.ok(f"UID EXPUNGE {uids[4]}")
        expected[mids[uids[4]]] -= 1
        worker.ok(f"UID STORE {uids[5]} -FLAGS.SILENT (\\Deleted)")
        worker.ok(f"UID COPY {uids[6]} INBOX")  # a second copy: a new message of its own
        expected[mids[uids[6]]] += 1

    truth = fetch_uids(worker)
    wait_for(
        lambda: len(plain.model) == len(truth) and len(qresync.model) == len(truth),
        timeout=20,
        what="both idlers to catch up",
    )
    assert plain.finish() == qresync.finish() == fetch_uids(worker) == truth

    # On disk: every message as many times as it should be, in the folder it should be in.
    inbox = mids_on_disk(Mailbox(maildir))
    archive = mids_on_disk(Mailbox(FolderTree(maildir).path("Archive")))
    assert archive == +archived
    assert inbox == +expected
    assert sum(inbox.values()) == len(truth) == SEEDED + 20 - 8 - 8 - 4 + 4


def mids_of(client: Raw, uids: list[int]) -> dict[int, str]:
    lines = client.ok(
        f"UID FETCH {','.join(map(str, uids))} (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
    )
    out = {}
    for line in lines:
        uid = re.search(rb"UID (\d+)", line)
        mid = re.search(rb"<([^>]+)>", line)
        if uid and mid:
            out[int(uid.group(1))] = mid.group(1).decode()
    return out


def mids_on_disk(box: Mailbox) -> Counter[str]:
    counts: Counter[str] = Counter()
    for entry in box.sync().entries:
        mid = re.search(rb"<([^>]+)>", box.read(entry)).group(1).decode()  # type: ignore[union-attr]
        counts[mid] += 1
    return counts


def test_idlers_see_deliveries_racing_with_expunges(shared):
    """An MTA delivering while another session expunges: both idlers end where the disk is."""
    server = shared.account()
    maildir = server.maildir()
    for n in range(10):
        deliver(
            maildir,
            message(f"r{n}@example.org"),
            subdir="cur",
            name=f"{1700001000 + n}.M{n}P4.race:2,",
        )
    worker = server.raw_select()
    modern = server.raw_login()
    modern.ok("ENABLE QRESYNC")
    modern.ok("SELECT INBOX")
    idlers = [Idler(server.raw_select(), qresync=False), Idler(modern, qresync=True)]
    for n in range(20):
        deliver(maildir, message(f"late{n}@example.org"))
        if n % 4 == 0:
            worker.ok("NOOP")
            worker.ok("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
            worker.ok("EXPUNGE")
        if n % 5 == 0:
            time.sleep(0.05)  # let some deliveries fall into separate polls (no timing asserted)
    worker.ok("NOOP")
    truth = fetch_uids(worker)
    assert len(truth) == 10 + 20 - 10
    wait_for(
        lambda: all(len(i.model) == len(truth) for i in idlers),
        timeout=20,
        what="both idlers to catch up",
    )
    assert [i.finish() for i in idlers] == [truth, truth]
