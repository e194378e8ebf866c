"""A big folder (10,000 messages) changed between the commands of a session: another IMAP session
stores flags and expunges, a POP3 session deletes, an MTA delivers, another program renames files
(a flag change, as mutt or Dovecot make one) and removes some, and the session itself stores.
Every response the session gets is checked against a fresh listing of the folder (its files, and
the UIDs and MODSEQs a fresh reader of the uidlist finds), and its view must come to equal it:
at once for changes made through our daemons, within the second of mtime trust for those of
other programs (common/store/mailbox.py). CHANGEDSINCE names exactly the messages whose MODSEQ a
fresh reader finds above the given one, foreign renames included (RFC 7162)."""

from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path

import pytest

from common.store.flags import letters_of
from common.store.uidlist import UidStore
from support.imap import Raw, start_imapd
from support.site import deliver

COUNT = 10_000
PASSWORD = "pw"
LETTER_FLAGS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
FETCH = re.compile(rb"\* (\d+) FETCH \((.*)\)\r\n")


def generate(maildir: Path) -> None:
    """COUNT small messages in new/, written straight (as a fast MTA would leave them)."""
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for number in range(COUNT):
        name = f"{1600000000 + number}.M{number}P1.big"
        text = b"From: sender%d@example.org\nSubject: message %d\n\nbody\n" % (number, number)
        (maildir / "new" / name).write_bytes(text)


def truth(maildir: Path) -> tuple[dict[int, frozenset[str]], dict[int, int], int]:
    """A fresh listing: ({uid: flags} of every file, {uid: modseq}, HIGHESTMODSEQ), the UIDs from a
    fresh reader of the uidlist. Every file must have one."""
    table = UidStore(maildir).load()
    assert table is not None
    by_key = {e.key: e for e in table.entries}
    flags: dict[int, frozenset[str]] = {}
    modseqs: dict[int, int] = {}
    for sub in ("new", "cur"):
        for name in os.listdir(maildir / sub):
            entry = by_key.get(name.split(":", 1)[0])
            assert entry is not None, f"{sub}/{name} has no UID"
            flags[entry.uid] = frozenset(LETTER_FLAGS[c] for c in letters_of(name))
            modseqs[entry.uid] = entry.modseq
    return flags, modseqs, table.highestmodseq


class View:
    """What a client knows of the selected folder, kept from the server's responses."""

    def __init__(self, client: Raw) -> None:
        self.client = client
        self.uids: list[int | None] = []
        self.flags: dict[int, frozenset[str]] = {}

    def fetched(self, line: bytes) -> tuple[int, int | None, frozenset[str] | None]:
        found = FETCH.fullmatch(line)
        assert found is not None, line
        seq, items = int(found.group(1)), found.group(2)
        uid = re.search(rb"UID (\d+)", items)
        flags = re.search(rb"FLAGS \(([^)]*)\)", items)
        names = frozenset(flags.group(1).decode().split()) - {"\\Recent"} if flags else None
        return seq, int(uid.group(1)) if uid else None, names

    def apply(self, lines: list[bytes], now: dict[int, frozenset[str]]) -> None:
        """Take the untagged responses of one command; each must agree with the folder now."""
        for line in lines:
            if found := re.fullmatch(rb"\* (\d+) EXISTS\r\n", line):
                count = int(found.group(1))
                assert count >= len(self.uids), line
                self.uids += [None] * (count - len(self.uids))
            elif found := re.fullmatch(rb"\* (\d+) EXPUNGE\r\n", line):
                seq = int(found.group(1))
                assert 1 <= seq <= len(self.uids), line
                gone = self.uids.pop(seq - 1)
                assert gone is None or gone not in now, f"UID {gone} reported gone, still there"
                self.flags.pop(gone or 0, None)
            elif line.startswith(b"* ") and b" FETCH (" in line:
                seq, uid, flags = self.fetched(line)
                known = self.uids[seq - 1]
                assert uid is None or known in (None, uid), (line, known)
                uid = uid or known
                assert uid is not None, line
                self.uids[seq - 1] = uid
                if flags is not None:
                    assert flags == now.get(uid), (line, now.get(uid))
                    self.flags[uid] = flags
            elif not re.match(rb"\* (\d+ RECENT|FLAGS|OK)", line):
                raise AssertionError(f"unexpected {line!r}")

    def learn_new(self, now: dict[int, frozenset[str]]) -> None:
        """UIDs and flags of the messages known only from EXISTS, as a client asks for them."""
        if None in self.uids:
            first = self.uids.index(None) + 1
            lines = self.client.ok(f"FETCH {first}:* (UID FLAGS)")
            self.apply(lines, now)

    def as_dict(self) -> dict[int | None, frozenset[str] | None]:
        return {uid: self.flags.get(uid or 0) for uid in self.uids}


def settle(view: View, maildir: Path) -> None:
    """NOOP until the session's view is the folder's: at once after our daemons' changes, within
    the mtime trust of a second after another program's (then each NOOP is checked too)."""
    deadline = time.monotonic() + 5
    while True:
        now, _modseqs, _highest = truth(maildir)
        view.apply(view.client.ok("NOOP"), now)
        view.learn_new(now)
        if view.as_dict() == now or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert view.as_dict() == now, "the session's view is not the folder's"


def check_changedsince(view: View, maildir: Path, since: int) -> None:
    """CHANGEDSINCE names exactly the messages whose MODSEQ is above `since`."""
    _now, modseqs, _highest = truth(maildir)
    lines = view.client.ok(f"UID FETCH 1:* (UID) (CHANGEDSINCE {since})")
    got = {int(m.group(1)) for line in lines if (m := re.search(rb"UID (\d+)", line))}
    assert got == {uid for uid, modseq in modseqs.items() if modseq > since}


def check_search(client: Raw, maildir: Path) -> None:
    """SEARCH FROM and SUBJECT over the whole folder, from the headers (the first time) and
    from the cache of searched headers (the second), alone and inside a larger criterion."""
    table = UidStore(maildir).load()
    assert table is not None
    uid_of = {int(re.search(r"\.M(\d+)P", e.key).group(1)): e.uid for e in table.entries}
    wanted = sorted(uid_of[n] for n in uid_of if "123" in str(n) and str(n).startswith("123"))
    for _pass in range(2):
        assert search(client, 'UID SEARCH FROM "SENDER123"') == wanted
        assert search(client, 'UID SEARCH SUBJECT "message 123"') == wanted
        assert search(client, 'UID SEARCH NOT NOT FROM "sender123"') == wanted
        assert search(client, 'UID SEARCH FROM "nobody"') == []


def search(client: Raw, command: str) -> list[int]:
    [line] = client.ok(command)
    return sorted(int(n) for n in line.split()[2:])


@pytest.mark.parametrize("rounds", [6])
def test_a_big_folder_changed_by_everyone_between_commands(daemons, site, pop3d, rounds):
    maildir = site.mail / "alice"
    generate(maildir)
    imapd = start_imapd(daemons, site, users={"alice": PASSWORD})
    pop3 = pop3d(users={"alice": PASSWORD})
    rng = random.Random(15)
    client = imapd.raw_login()
    client.ok("ENABLE CONDSTORE")
    view = View(client)
    selected = client.ok("SELECT INBOX")
    now, _modseqs, _highest = truth(maildir)
    view.apply(selected, now)
    assert len(view.uids) == COUNT
    view.apply(client.ok("FETCH 1:* (UID FLAGS)"), now)
    assert view.as_dict() == now and len(now) == COUNT
    check_search(client, maildir)
    other = imapd.raw_login()
    other.ok("SELECT INBOX")
    for round_ in range(rounds):
        _now, _modseqs, since = truth(maildir)
        uids = sorted(uid for uid in view.uids if uid is not None)
        # another IMAP session: flags on and off, then an expunge
        picks = rng.sample(uids, 60)
        other.ok(f"UID STORE {','.join(map(str, picks[:40]))} +FLAGS (\\Flagged \\Seen)")
        other.ok(f"UID STORE {','.join(map(str, picks[40:]))} +FLAGS (\\Deleted)")
        other.ok(f"UID EXPUNGE {','.join(map(str, picks[40:]))}")
        # another program renames files (a flag change) and removes some, an MTA delivers
        names = sorted(os.listdir(maildir / "cur"))
        for name in rng.sample(names, 30):
            key, letters = name.split(":", 1)[0], letters_of(name)
            target = f"{key}:2,{''.join(sorted(set(letters) ^ {'R'}))}"
            os.rename(maildir / "cur" / name, maildir / "cur" / target)
        for name in rng.sample(sorted(set(os.listdir(maildir / "cur")) - set(names)), 5):
            os.unlink(maildir / "cur" / name)
        for number in range(25):
            deliver(maildir, b"From: mta@example.org\nSubject: new %d\n\nbody\n" % number)
        # a POP3 session deletes two messages
        pop = pop3.login("alice", PASSWORD)
        pop.dele(1 + round_)
        pop.dele(COUNT // 2)
        pop.quit()
        settle(view, maildir)
        check_changedsince(view, maildir, since)
        # the session itself
        mine = rng.sample(sorted(uid for uid in view.uids if uid is not None), 20)
        now, _modseqs, _highest = truth(maildir)
        stored = client.ok(f"UID STORE {','.join(map(str, mine))} +FLAGS (\\Answered)")
        view.apply(stored, truth(maildir)[0])
        assert all(b"\\Answered" in line for line in stored) and len(stored) == 20
    settle(view, maildir)
    _now, modseqs, highest = truth(maildir)
    assert max(modseqs.values()) <= highest
    # a new session agrees with the one that followed all along
    fresh = View(imapd.raw_login())
    now, _modseqs, _highest = truth(maildir)
    fresh.apply(fresh.client.ok("SELECT INBOX"), now)
    fresh.apply(fresh.client.ok("FETCH 1:* (UID FLAGS)"), now)
    assert fresh.as_dict() == view.as_dict() == now
    imapd.assert_healthy()
