"""Unit tests of the Maildir++ store (common/store/maildir.py, mailbox.py) on tmp_path, no sockets.

UIDs: strictly ascending, never reused, stable across new Mailbox objects ("restarts") and under
concurrent syncs; flags as file-name letters, changed by anyone; keywords in dovecot-keywords;
append crash safety; copy (hard link) and move (rename), atomic per message; expunge.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

import common.store.mailbox as mailbox_module
from common.store import maildir, memory
from common.store.errors import StoreError, TooManyKeywords
from common.store.flags import letters_of
from common.store.mailbox import Mailbox, Snapshot
from common.store.maildrop import Maildrop
from common.store.uidlist import UidStore

CTX = multiprocessing.get_context("fork")


def message(number: int, body: str = "hello") -> bytes:
    return (
        f"From: a@example.org\nTo: b@example.org\nSubject: test {number}\n"
        f"Message-ID: <m{number}@example.org>\n\n{body} {number}\n"
    ).encode()


def make_folder(path: Path) -> Path:
    maildir.ensure_maildir(path)
    return path


def deliver_many(folder: Path, count: int, start: int = 0, subdir: str = "new") -> list[str]:
    keys = []
    for number in range(start, start + count):
        keys.append(maildir.deliver(folder, message(number), subdir=subdir).key)
    return keys


def uids(snap: Snapshot) -> list[int]:
    return [entry.uid for entry in snap.entries]


def by_key(snap: Snapshot) -> dict[str, int]:
    return {entry.key: entry.uid for entry in snap.entries}


def uidlist_of(folder: Path):
    """The folder's table as a new reader loads it: base file and change log."""
    loaded = UidStore(folder).load()
    assert loaded is not None, "uidlist unreadable"
    return loaded


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "alice")


# -- UIDs ------------------------------------------------------------------------------------


def test_uids_ascend_in_delivery_order(inbox: Path) -> None:
    keys = deliver_many(inbox, 5)
    snap = Mailbox(inbox).sync()
    assert uids(snap) == [1, 2, 3, 4, 5]
    assert [entry.key for entry in snap.entries] == keys
    assert snap.uidnext == 6
    more = deliver_many(inbox, 3, start=5)
    snap = Mailbox(inbox).sync()
    assert uids(snap) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [entry.key for entry in snap.entries][5:] == more


def test_uids_never_reused_after_expunge(inbox: Path) -> None:
    deliver_many(inbox, 4)
    box = Mailbox(inbox)
    snap = box.sync()
    removed = box.expunge([snap.entries[1], snap.entries[3]])
    assert [e.uid for e in removed] == [2, 4]
    assert uids(box.sync()) == [1, 3]
    deliver_many(inbox, 1, start=10)
    assert uids(box.sync()) == [1, 3, 5]
    # Everything expunged, then a new message: still no reuse, also after a "restart".
    box.expunge(box.sync().entries)
    assert uids(box.sync()) == []
    deliver_many(inbox, 1, start=11)
    assert uids(Mailbox(inbox).sync()) == [6]


def test_uids_never_reused_when_files_vanish_outside(inbox: Path) -> None:
    """Another program (a POP3 client, an MUA on the Maildir) deletes the newest messages."""
    deliver_many(inbox, 3)
    snap = Mailbox(inbox).sync()
    for entry in snap.entries[1:]:
        os.unlink(inbox / entry.subdir / entry.name)
    assert uids(Mailbox(inbox).sync()) == [1]
    deliver_many(inbox, 1, start=3)
    assert uids(Mailbox(inbox).sync()) == [1, 4]


def test_uids_and_uidvalidity_stable_across_restarts(inbox: Path) -> None:
    deliver_many(inbox, 3)
    first = Mailbox(inbox).sync(claim_recent=True)
    # A "restart": fresh objects, the derived size cache deleted, flags changed meanwhile.
    (inbox / "maildaemons-sizes").unlink(missing_ok=True)
    second = Mailbox(inbox).sync()
    assert by_key(second) == by_key(first)
    assert second.uidvalidity == first.uidvalidity
    third = Mailbox(inbox).sync()
    assert third.uidvalidity == first.uidvalidity and by_key(third) == by_key(first)


def test_uidvalidity_is_a_valid_nz_number(inbox: Path) -> None:
    snap = Mailbox(inbox).sync()
    assert 0 < snap.uidvalidity < 2**32
    assert snap.uidnext == 1 and snap.entries == []


def test_stale_listing_does_not_drop_records_of_others(
    inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session that listed the folder before another session appended must not drop the
    appended message's record when it reconciles (regression: the message got a second UID)."""
    deliver_many(inbox, 2)
    slow, fast = Mailbox(inbox), Mailbox(inbox)
    slow.sync()
    stale = {sub: maildir.list_names(inbox, sub) for sub in ("new", "cur")}
    _validity, uid = fast.append(message(99), "S", None)
    assert uid == 3
    appended = next(n for n in os.listdir(inbox / "cur") if n not in stale["cur"])
    # `slow` syncs with the listings taken before the append (the race, made certain).
    real = maildir.list_names
    monkeypatch.setattr(maildir, "list_names", lambda f, sub: stale.pop(sub, None) or real(f, sub))
    slow.sync()
    assert by_key(Mailbox(inbox).sync())[appended.split(":")[0]] == 3
    assert uidlist_of(inbox).uidnext == 4


def _syncer(folder: str, stop, results, number: int) -> None:
    box = Mailbox(Path(folder))
    seen: dict[str, int] = {}
    claimed: set[str] = set()  # \Recent in this session: a session keeps its claims
    problems: list[str] = []
    try:
        while True:
            done = stop.is_set()
            snap = box.sync(claim_recent=number % 2 == 0)
            if number % 2 == 0:
                claimed.update(e.key for e in snap.entries if snap.is_recent(e))
            numbers = uids(snap)
            if numbers != sorted(set(numbers)):
                problems.append(f"not strictly ascending: {numbers}")
            for entry in snap.entries:
                if seen.setdefault(entry.key, entry.uid) != entry.uid:
                    problems.append(f"{entry.key} had UID {seen[entry.key]}, now {entry.uid}")
            if UidStore(Path(folder)).load() is None:
                problems.append("uidlist unreadable")
            if done:
                break
    except Exception as exc:  # reported to the parent, which fails the test
        problems.append(repr(exc))
    results.put((number, seen, sorted(claimed), problems[:5]))


def _deliverer(folder: str, count: int, stop) -> None:
    try:
        for number in range(count):
            # An MTA delivers into new/; APPEND, COPY and other tools place files in cur/.
            maildir.deliver(Path(folder), message(number), subdir=("new", "cur")[number % 2])
            if number % 7 == 0:
                time.sleep(0.001)
    finally:
        stop.set()


def test_concurrent_syncs_while_delivering(inbox: Path) -> None:
    """8 processes sync (half claim \\Recent) while a 9th delivers 200 messages: every message
    gets exactly one UID, no UID is given twice, the uidlist is never unreadable, and every
    message is \\Recent in exactly one claiming session (RFC 3501 2.3.2)."""
    stop, results = CTX.Event(), CTX.Queue()
    workers = [CTX.Process(target=_syncer, args=(str(inbox), stop, results, n)) for n in range(8)]
    for worker in workers:
        worker.start()
    feeder = CTX.Process(target=_deliverer, args=(str(inbox), 200, stop))
    feeder.start()
    reports = [results.get(timeout=60) for _ in workers]
    for process in [*workers, feeder]:
        process.join(10)
        assert process.exitcode == 0
    final = Mailbox(inbox).sync()
    assert len(final.entries) == 200
    assert uids(final) == list(range(1, 201)), "a message got more than one UID"
    assert final.uidnext == 201
    final_map = by_key(final)
    claims = [key for _number, _seen, claimed, _problems in reports for key in claimed]
    last = Mailbox(inbox).sync(claim_recent=True)
    claims += [e.key for e in last.entries if last.is_recent(e)]
    assert len(claims) == len(set(claims)), "a message was \\Recent in two sessions"
    assert set(claims) == set(final_map), "a message was never \\Recent"
    for number, seen, _claimed, problems in reports:
        assert problems == [], f"syncer {number}: {problems}"
        for key, uid in seen.items():
            assert final_map[key] == uid, f"syncer {number} saw {key} as UID {uid}"
    assert uidlist_of(inbox).uidnext == 201


# -- flags, keywords, MODSEQ ---------------------------------------------------------------------


def test_courier_style_cur_files_and_flags(inbox: Path) -> None:
    """Files another server left in cur/ with `:2,` info (Courier's name form, ,S= file size)."""
    body = message(1).replace(b"\n", b"\r\n")
    names = [
        f"1600000000.M1P1.courier,S={len(body)}:2,S",
        "1600000001.M2P1.courier:2,FRS",
        "1600000002.M3P1.courier:2,",
        "1600000003.M4P1.courier",
    ]
    for name in names:
        (inbox / "cur" / name).write_bytes(body)
    box = Mailbox(inbox)
    assert box.counts() == (4, 4, 2)  # new to IMAP: unclaimed, whatever their directory
    snap = box.sync(claim_recent=True)
    assert [e.letters for e in snap.entries] == ["S", "FRS", "", ""]
    assert all(snap.is_recent(e) for e in snap.entries), "\\Recent to the first session"
    assert uids(snap) == [1, 2, 3, 4]
    # Sizes are of the CRLF form, also for names without ,W= and for CRLF files.
    assert all(box.size(e) == len(body) for e in snap.entries)
    assert box.read(snap.entries[0]) == body
    assert box.counts() == (4, 0, 2)


def test_flags_round_trip_in_file_names(inbox: Path) -> None:
    deliver_many(inbox, 1)
    box = Mailbox(inbox)
    snap = box.sync(claim_recent=True)
    entry = snap.entries[0]
    assert snap.is_recent(entry) and entry.subdir == "cur" and entry.name.endswith(":2,")
    assert box.set_letters(entry, "TSFD")
    assert entry.name.endswith(":2,DFST")
    modseq = box.commit_flags([entry])
    again = Mailbox(inbox).sync().entries[0]
    assert again.letters == "DFST" and again.modseq == modseq
    assert box.set_letters(entry, "")
    box.commit_flags([entry])
    assert Mailbox(inbox).sync().entries[0].letters == ""


def test_flag_change_by_another_program_gets_new_modseq(inbox: Path) -> None:
    deliver_many(inbox, 2, subdir="cur")
    box = Mailbox(inbox)
    before = box.sync()
    target = before.entries[0]
    # mutt, another IMAP server or a script renames the file's info.
    os.rename(inbox / "cur" / target.name, inbox / "cur" / f"{target.key}:2,RS")
    after = box.sync()
    changed = after.entries[0]
    assert changed.uid == target.uid and changed.letters == "RS"
    assert changed.modseq > before.highestmodseq
    assert after.highestmodseq == changed.modseq
    assert after.entries[1].modseq == before.entries[1].modseq, "untouched message kept MODSEQ"


def test_a_flag_change_never_undoes_one_it_has_not_seen(inbox: Path) -> None:
    """Two sessions change flags of one message, each from what it saw last: each keeps the
    other's change (the second follows the first's rename and applies only its own)."""
    deliver_many(inbox, 1, subdir="cur")
    first, second = Mailbox(inbox), Mailbox(inbox)
    mine = first.sync().entries[0]
    theirs = second.sync().entries[0]
    assert second.set_letters(theirs, theirs.letters + "D")  # \Deleted, say
    second.commit_flags([theirs])
    assert first.set_letters(mine, mine.letters + "F")  # mine still has no D
    first.commit_flags([mine])
    assert Mailbox(inbox).sync().entries[0].letters == "DF"
    assert mine.letters == "DF"
    assert second.set_letters(theirs, "")  # a replacement takes away only what it saw (D)
    second.commit_flags([theirs])
    assert Mailbox(inbox).sync().entries[0].letters == "F"


def test_append_renamed_by_another_session_before_its_uid_is_recorded(
    inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between an APPEND's delivery and the recording of its UID, another session gives the
    file its UID and changes its flags: the APPEND names that UID, and the message has one."""
    deliver_many(inbox, 2, subdir="cur")
    mine, theirs = Mailbox(inbox), Mailbox(inbox)
    mine.sync()
    theirs.sync()
    real_deliver = maildir.deliver

    def deliver_then_race(*args, **kwargs):  # type: ignore[no-untyped-def]
        placed = real_deliver(*args, **kwargs)
        entry = next(e for e in theirs.sync().entries if e.key == placed.key)
        assert theirs.set_letters(entry, "F")
        theirs.commit_flags([entry])
        return placed

    monkeypatch.setattr(maildir, "deliver", deliver_then_race)
    _validity, uid = mine.append(message(9), "S", None)
    table = uidlist_of(inbox)
    assert [e.uid for e in table.entries] == [1, 2, 3] and uid == 3
    assert len({e.key for e in table.entries}) == 3, "one UID per message"


def test_a_flag_change_another_session_recorded_first_gets_one_modseq(inbox: Path) -> None:
    """A session renames a file for new flags; before it records that, another session lists
    the folder and records the rename with a new MODSEQ: the first does not record it again
    (two MODSEQs for one change had idling sessions report the same flags twice)."""
    deliver_many(inbox, 1, subdir="cur")
    mine, theirs = Mailbox(inbox), Mailbox(inbox)
    entry = mine.sync().entries[0]
    before = theirs.sync().highestmodseq
    assert mine.set_letters(entry, "S")
    seen = theirs.resync()  # the listing finds the rename
    assert seen.entries[0].letters == "S" and seen.highestmodseq == before + 1
    assert mine.commit_flags([entry]) == before + 1
    assert entry.modseq == before + 1
    assert theirs.resync().highestmodseq == before + 1, "no second MODSEQ"


def test_pop3_listing_leaves_out_a_message_gone_before_its_size_was_read(
    inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message without `,W=` whose size is read at login, expunged between the listing and
    that read: not listed, and the login goes on."""
    for number in range(3):
        (inbox / "cur" / f"170000000{number}.M1.host:2,").write_bytes(message(number))
    real_sync = Mailbox.sync

    def sync_then_expunge(self: Mailbox, claim_recent: bool = False) -> Snapshot:
        snap = real_sync(self, claim_recent)
        os.unlink(inbox / "cur" / "1700000001.M1.host:2,")  # another session's EXPUNGE
        return snap

    monkeypatch.setattr(Mailbox, "sync", sync_then_expunge)
    drop = Maildrop.open(inbox.parent, inbox.name)
    try:
        assert [m.key for m in drop.messages] == ["1700000000.M1.host", "1700000002.M1.host"]
        assert [m.size for m in drop.messages] == [len(maildir.to_crlf(message(n))) for n in (0, 2)]
    finally:
        drop.release()


def test_a_folder_that_cannot_be_written_is_served_from_memory(
    inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No write permission (or a read-only mount): the stored UIDs while the uidlist knows every
    message; else UIDs derived alike by every session, UIDVALIDITY from the directories'
    mtimes; nothing written, nothing claimed; what changes later gets UIDs in memory."""
    deliver_many(inbox, 3, subdir="cur")
    stored = Mailbox(inbox).sync()
    before = {p.name: p.read_bytes() for p in inbox.iterdir() if p.is_file()}
    writable = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK and writable(path, mode))
    kept = Mailbox(inbox)
    snap = kept.sync(claim_recent=True)
    assert kept.read_only
    assert (snap.uidvalidity, by_key(snap)) == (stored.uidvalidity, by_key(stored))
    deliver_many(inbox, 2, start=10)  # in new/: the uidlist does not know them
    for sub in ("new", "cur"):  # the directories' mtimes: 2001-09-09
        os.utime(inbox / sub, ns=(10**18, 10**18))
    first, second = Mailbox(inbox).sync(), Mailbox(inbox).sync()
    assert first.uidvalidity == second.uidvalidity == 10**9
    assert uids(first) == uids(second) == [1, 2, 3, 4, 5]
    assert by_key(first) == by_key(second)
    assert [e.subdir for e in first.entries] == ["cur"] * 3 + ["new"] * 2, "nothing moved"
    assert {p.name: p.read_bytes() for p in inbox.iterdir() if p.is_file()} == before
    later = maildir.deliver(inbox, message(20), subdir="cur")
    grown = kept.sync()
    assert by_key(grown)[later.key] == stored.uidnext + 2  # after the two from new/
    with pytest.raises(StoreError):
        kept.commit_flags(grown.entries[:1])  # nothing can be written


def test_recent_is_claimed_once(inbox: Path) -> None:
    deliver_many(inbox, 2)
    first, second = Mailbox(inbox), Mailbox(inbox)
    peek = second.sync(claim_recent=False)
    assert all(peek.is_recent(e) and e.subdir == "new" for e in peek.entries)
    claimed = first.sync(claim_recent=True)
    assert all(claimed.is_recent(e) and e.subdir == "cur" for e in claimed.entries)
    later = Mailbox(inbox).sync(claim_recent=True)
    assert not any(later.is_recent(e) for e in later.entries)
    assert uids(later) == uids(claimed) == [1, 2]
    last = Mailbox(inbox).sync()
    assert not any(last.is_recent(e) for e in last.entries), "claimed: gone for all"


def test_appended_copied_and_moved_messages_are_recent_once(tmp_path: Path) -> None:
    """\\Recent is about being new to IMAP, not about new/: APPEND, COPY and MOVE place files
    in cur/, and those messages are \\Recent to the first session that claims them."""
    inbox, other = make_folder(tmp_path / "inbox"), make_folder(tmp_path / ".Other")
    box, target = Mailbox(inbox), Mailbox(other)
    assert box.sync(claim_recent=True).entries == []
    box.append(message(1), "S", None)
    box.append(message(2), "", None)
    peek = Mailbox(inbox).sync()
    assert [peek.is_recent(e) for e in peek.entries] == [True, True]
    assert box.counts() == (2, 2, 1)
    snap = Mailbox(inbox).sync(claim_recent=True)
    entries = snap.entries
    assert [(e.uid, snap.is_recent(e), e.subdir) for e in entries] == [
        (1, True, "cur"),
        (2, True, "cur"),
    ]
    assert box.counts() == (2, 0, 1)
    target.copy_in(box, entries[:1])
    target.copy_in(box, entries[1:], move=True)
    left = Mailbox(inbox).sync(claim_recent=True)
    assert [left.is_recent(e) for e in left.entries] == [False]
    moved = Mailbox(other).sync(claim_recent=True)
    assert [(e.uid, moved.is_recent(e)) for e in moved.entries] == [(1, True), (2, True)]
    again = Mailbox(other).sync(claim_recent=True)
    assert not any(again.is_recent(e) for e in again.entries)


def test_keywords_in_dovecot_keywords(inbox: Path) -> None:
    box = Mailbox(inbox)
    letters = box.keywords.letters_for(["$Forwarded", "Work"], create=True)
    assert letters == "ab"
    assert (inbox / "dovecot-keywords").read_text() == "0 $Forwarded\n1 Work\n"
    assert box.keywords.letters_for(["work", "Unknown"], create=False) == "b"
    assert Mailbox(inbox).keywords.decode("Sba") == ["Work", "$Forwarded"]
    box.append(message(1), "S" + letters, None)
    entry = Mailbox(inbox).sync().entries[0]
    assert entry.letters == "Sab"
    assert sorted(box.keywords.decode(entry.letters)) == ["$Forwarded", "Work"]


# -- append ------------------------------------------------------------------------------------


def test_append_assigns_next_uid_and_keeps_date(inbox: Path) -> None:
    deliver_many(inbox, 2)
    box = Mailbox(inbox)
    box.sync()
    validity, uid = box.append(message(5), "FS", 1_000_000_000.0)
    assert uid == 3 and validity == box.sync().uidvalidity
    entry = box.sync().entries[-1]
    assert entry.letters == "FS" and entry.subdir == "cur"
    assert box.internal_date(entry) == 1_000_000_000.0
    assert box.read(entry) == message(5)
    assert box.size(entry) == len(maildir.to_crlf(message(5)))


def test_message_left_in_tmp_is_invisible(inbox: Path) -> None:
    """A crash after writing to tmp/ and before the rename: nothing half-written is visible."""
    deliver_many(inbox, 1)
    (inbox / "tmp" / "1700000000.M1P99.crashed").write_bytes(message(9)[:20])
    snap = Mailbox(inbox).sync(claim_recent=True)
    assert len(snap.entries) == 1 and snap.uidnext == 2
    assert Mailbox(inbox).counts() == (1, 0, 1)


def test_failed_rename_leaves_nothing(inbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_rename(src, dst, **dir_fds):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    box = Mailbox(inbox)
    monkeypatch.setattr(maildir.os, "rename", broken_rename)
    with pytest.raises(StoreError):
        box.append(message(1), "S", None)
    monkeypatch.undo()
    assert os.listdir(inbox / "tmp") == []
    assert Mailbox(inbox).sync().entries == []


def test_file_name_with_newline_does_not_break_the_uidlist(inbox: Path) -> None:
    deliver_many(inbox, 2)
    before = Mailbox(inbox).sync()
    (inbox / "cur" / "bad\nname:2,S").write_bytes(message(3))
    after = Mailbox(inbox).sync()
    assert after.uidvalidity == before.uidvalidity
    assert by_key(after) == by_key(before)
    assert uidlist_of(inbox).uidvalidity == before.uidvalidity


# -- copy and move -----------------------------------------------------------------------------


def test_copy_keeps_flags_and_remaps_keywords(tmp_path: Path) -> None:
    source = Mailbox(make_folder(tmp_path / "src"))
    target = Mailbox(make_folder(tmp_path / "dst"))
    (source.path / "dovecot-keywords").write_text("0 $Label1\n1 Important\n2 Unused\n")
    (target.path / "dovecot-keywords").write_text("0 Important\n")
    source.append(message(1), "FSab", None)
    source.append(message(2), "R", None)
    entries = source.sync().entries
    new_uids = target.copy_in(source, entries)
    assert new_uids == [1, 2]
    copied = target.sync().entries
    assert copied[0].letters == "FSab"  # a = Important (target's 0), b = $Label1 (added)
    assert (target.path / "dovecot-keywords").read_text() == "0 Important\n1 $Label1\n"
    assert sorted(target.keywords.decode(copied[0].letters)) == ["$Label1", "Important"]
    assert copied[1].letters == "R"
    # A copy is a hard link; the source is untouched.
    src_file = source.path / entries[0].subdir / entries[0].name
    dst_file = target.path / copied[0].subdir / copied[0].name
    assert os.stat(src_file).st_ino == os.stat(dst_file).st_ino
    assert [e.letters for e in source.sync().entries] == ["FSab", "R"]
    assert target.read(copied[0]) == message(1)


@pytest.mark.parametrize("move", [False, True])
def test_failed_copy_or_move_loses_and_duplicates_nothing(tmp_path: Path, move: bool) -> None:
    """A COPY that fails part-way (here the 3rd message has a keyword the full target cannot
    take) leaves the target as it was (RFC 3501 6.4.7), so a retry duplicates nothing; a MOVE
    leaves each message moved or untouched, never in both folders or in neither (RFC 6851 3.3)."""
    source = Mailbox(make_folder(tmp_path / "src"))
    target = Mailbox(make_folder(tmp_path / "dst"))
    target.keywords.letters_for([f"k{n}" for n in range(26)], create=True)
    source.keywords.letters_for(["k0", "Overflow"], create=True)
    for number, letters in enumerate(["S", "a", "Sb"]):
        source.append(message(number), letters, None)
    entries = source.sync().entries
    with pytest.raises(TooManyKeywords):
        target.copy_in(source, entries, move=move)
    assert os.listdir(target.path / "tmp") == []
    in_source = sorted(source.read(e) for e in source.sync().entries)
    in_target = sorted(target.read(e) for e in target.sync().entries)
    if not move:
        assert in_target == [] and target.sync().uidnext == 1
        assert [e.uid for e in source.sync().entries] == [1, 2, 3]
    assert sorted(in_source + in_target) == sorted(message(n) for n in range(3))
    assert message(2) in in_source


def test_copy_of_a_message_renamed_meanwhile(tmp_path: Path) -> None:
    source = Mailbox(make_folder(tmp_path / "src"))
    target = Mailbox(make_folder(tmp_path / "dst"))
    deliver_many(source.path, 1)
    entry = source.sync().entries[0]  # still in new/
    other = Mailbox(source.path)
    other.sync(claim_recent=True)  # another session moved it to cur/
    assert target.copy_in(source, [entry]) == [1]
    assert target.read(target.sync().entries[0]) == message(0)


def test_move_renames_and_source_drops_it(tmp_path: Path) -> None:
    source = Mailbox(make_folder(tmp_path / "src"))
    target = Mailbox(make_folder(tmp_path / "dst"))
    deliver_many(source.path, 3)
    entries = source.sync(claim_recent=True).entries
    inodes = [os.stat(source.path / e.subdir / e.name).st_ino for e in entries]
    source.set_letters(entries[0], "S")
    assert target.copy_in(source, entries[:2], move=True) == [1, 2]
    moved = target.sync().entries
    assert [os.stat(target.path / e.subdir / e.name).st_ino for e in moved] == inodes[:2]
    assert moved[0].letters == "S"
    left = source.sync()
    assert uids(left) == [3]
    assert source.sync().uidnext == 4


def _move_observer(src: str, dst: str, stop, results) -> None:
    """Sync both folders over and over; check by inode that no message is in neither (list the
    source first) and none in both (list the target first)."""
    source, target = Mailbox(Path(src)), Mailbox(Path(dst))
    problems: list[str] = []
    rounds = 0

    def inodes(folder: str) -> set[int]:
        found = set()
        for sub in ("new", "cur"):
            with os.scandir(os.path.join(folder, sub)) as listing:
                found.update(item.inode() for item in listing)
        return found

    try:
        expected = inodes(src) | inodes(dst)
        while not stop.is_set() or rounds < 2:
            rounds += 1
            source.sync()
            target.sync()
            in_src, in_dst = inodes(src), inodes(dst)
            lost = expected - in_src - in_dst
            if lost:
                problems.append(f"{len(lost)} messages in neither folder")
            in_dst2, in_src2 = inodes(dst), inodes(src)
            if in_dst2 & in_src2:
                problems.append(f"{len(in_dst2 & in_src2)} messages in both folders")
    except Exception as exc:
        problems.append(repr(exc))
    results.put((rounds, problems[:5]))


def test_move_is_atomic_per_message(tmp_path: Path) -> None:
    source = Mailbox(make_folder(tmp_path / "src"))
    target = Mailbox(make_folder(tmp_path / "dst"))
    for number in range(500):  # seeded as an MTA would, without an fsync per message
        (source.path / "cur" / f"{1700000000 + number}.M{number}P1.mta:2,").write_bytes(
            message(number)
        )
    entries = source.sync().entries
    stop, results = CTX.Event(), CTX.Queue()
    observer = CTX.Process(
        target=_move_observer, args=(str(source.path), str(target.path), stop, results)
    )
    observer.start()
    try:
        new_uids: list[int] = []
        for start in range(0, 500, 25):  # MOVE commands of 25 messages each
            new_uids += target.copy_in(source, entries[start : start + 25], move=True)
    finally:
        stop.set()
    rounds, problems = results.get(timeout=60)
    observer.join(10)
    assert problems == [] and rounds >= 2
    assert new_uids == list(range(1, 501))
    assert source.sync().entries == []
    moved = target.sync().entries
    assert [e.uid for e in moved] == list(range(1, 501))
    contents = sorted(target.read(e) for e in moved)
    assert contents == sorted(message(n) for n in range(500))


# -- expunge and sizes -------------------------------------------------------------------------


def test_expunge_removes_files_and_records(inbox: Path) -> None:
    deliver_many(inbox, 3)
    box = Mailbox(inbox)
    snap = box.sync(claim_recent=True)
    box.set_letters(snap.entries[1], "T")
    box.commit_flags([snap.entries[1]])
    doomed = [e for e in box.sync().entries if "T" in e.letters]
    assert [e.uid for e in box.expunge(doomed)] == [2]
    assert len(os.listdir(inbox / "cur")) == 2
    assert uids(Mailbox(inbox).sync()) == [1, 3]
    assert [e.uid for e in uidlist_of(inbox).entries] == [1, 3]


def test_expunge_of_a_message_renamed_meanwhile(inbox: Path) -> None:
    deliver_many(inbox, 1, subdir="cur")
    box = Mailbox(inbox)
    entry = box.sync().entries[0]
    os.rename(inbox / "cur" / entry.name, inbox / "cur" / f"{entry.key}:2,ST")
    assert [e.uid for e in box.expunge([entry])] == [1]
    assert os.listdir(inbox / "cur") == []


def test_crlf_sizes(inbox: Path) -> None:
    data = b"Subject: x\n\nline one\nline two"
    stored = maildir.deliver(inbox, data)
    assert stored.stored_size("W") == len(maildir.to_crlf(data)) == maildir.crlf_size(data)
    assert maildir.to_crlf(data).endswith(b"\r\nline two")  # nothing added (as Dovecot)
    plain = inbox / "cur" / "1600000000.M9P9.other:2,S"
    plain.write_bytes(data)
    box = Mailbox(inbox)
    sizes = {e.key: box.size(e) for e in box.sync().entries}
    assert set(sizes.values()) == {len(maildir.to_crlf(data))}
    box.save_caches()
    again = Mailbox(inbox)
    assert [again.known_size(e) for e in again.sync().entries] == [len(maildir.to_crlf(data))] * 2


def test_caches_of_an_older_version_are_rebuilt(inbox: Path) -> None:
    """A cache written when a message without a final line end counted two octets more (an
    older version) is not trusted: it is dropped and the values derived again."""
    data = b"Subject: x\n\nno final newline"
    (inbox / "cur" / "1600000000.M9P9.other:2,S").write_bytes(data)
    (inbox / "maildaemons-cache").write_bytes(b"maildaemons-cache 3 V1.x N1 D0 Fenvelope\nold\n")
    box = Mailbox(inbox)
    entry = box.sync().entries[0]
    assert box.size(entry) == len(maildir.to_crlf(data)) == len(data) + 2  # two line ends
    box.save_caches()
    again = Mailbox(inbox)
    assert again.known_size(again.sync().entries[0]) == len(data) + 2
    assert (inbox / "maildaemons-cache").read_bytes().startswith(b"maildaemons-cache 5 ")


def test_unique_names_differ() -> None:
    names = {maildir.unique_name() for _ in range(1000)}
    assert len(names) == 1000
    assert all("/" not in n and ":" not in n for n in names)


def test_letters_of() -> None:
    assert letters_of("123.M1P2.host,S=5:2,FS") == "FS"
    assert letters_of("123.M1P2.host") == ""


def test_first_sync_of_a_big_folder(inbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first sync of a big folder (made small here) reads its table again from the base it
    wrote, to keep the session's memory small: the same UIDs, \\Recent kept, and the table in
    step with the folder afterwards."""
    monkeypatch.setattr(memory, "BIG_WORK", 20)
    deliver_many(inbox, 60)
    box = Mailbox(inbox)
    snap = box.sync(claim_recent=True)
    assert uids(snap) == list(range(1, 61))
    assert all(snap.is_recent(entry) and entry.claimed for entry in snap.entries)
    assert box.table is not None and box.table.entries[0] is snap.entries[0]
    assert box.poll() is None
    deliver_many(inbox, 1, start=60)
    os.utime(inbox / "new", (time.time() + 5, time.time() + 5))  # a new mtime, surely
    polled = box.poll(claim_recent=True)
    assert polled is not None and uids(polled)[-1] == 61
    assert by_key(Mailbox(inbox).sync()) == by_key(polled)


def settle(folder: Path) -> None:
    """As if the directories were last changed a minute ago (a listing then confirms them)."""
    past = time.time() - 60
    for sub in ("new", "cur"):
        os.utime(folder / sub, (past, past))


def test_a_confirmed_listing_spares_the_next_session_its_listing(
    inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing of settled directories that matched the table stamps the folder; a session
    that reads the same table and finds the same mtimes lists nothing, anything else lists."""
    monkeypatch.setattr(mailbox_module, "LISTED_MIN", 3)
    deliver_many(inbox, 3, subdir="cur")
    settle(inbox)
    first = Mailbox(inbox).sync()
    assert (inbox / "maildaemons-listed").exists()
    listed: list[str] = []
    real = maildir.list_names

    def counting(folder: Path, sub: str) -> list[str]:
        listed.append(sub)
        return real(folder, sub)

    monkeypatch.setattr(maildir, "list_names", counting)
    again = Mailbox(inbox).sync()
    assert listed == [] and by_key(again) == by_key(first)
    # An MTA delivers: new/ changes, and only new/ is listed.
    key = maildir.deliver(inbox, message(9)).key
    after = Mailbox(inbox).sync()
    assert listed == ["new"] and key in by_key(after)
    # Another program renames a file in cur/: cur/ changes, and is listed.
    listed.clear()
    name = next(n for n in os.listdir(inbox / "cur") if n.startswith(next(iter(by_key(first)))))
    os.rename(inbox / "cur" / name, inbox / "cur" / (name.split(":")[0] + ":2,S"))
    seen = Mailbox(inbox).sync()
    assert "cur" in listed
    assert "S" in next(e for e in seen.entries if e.uid == uids(first)[0]).letters


def test_a_small_folder_is_listed_not_stamped(inbox: Path) -> None:
    """Below LISTED_MIN messages a listing costs less than the stamp: none is read or written."""
    deliver_many(inbox, mailbox_module.LISTED_MIN - 1, subdir="cur")
    settle(inbox)
    first = Mailbox(inbox).sync()
    assert not (inbox / "maildaemons-listed").exists()
    deliver_many(inbox, 1, subdir="cur", start=mailbox_module.LISTED_MIN - 1)
    settle(inbox)
    again = Mailbox(inbox).sync()
    assert len(again.entries) == len(first.entries) + 1
    assert (inbox / "maildaemons-listed").exists()


def test_a_stamp_of_another_table_or_a_damaged_one_is_not_trusted(
    inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mailbox_module, "LISTED_MIN", 3)
    deliver_many(inbox, 3, subdir="cur")
    settle(inbox)
    box = Mailbox(inbox)
    snap = box.sync()
    stamp = (inbox / "maildaemons-listed").read_bytes()
    listed: list[str] = []
    real = maildir.list_names
    monkeypatch.setattr(maildir, "list_names", lambda f, s: listed.append(s) or real(f, s))
    # A flag change recorded in the change log: the table is another one now (the directory's
    # new mtime, set back here, cannot vouch for it).
    entry = snap.entries[0]
    mtime = os.stat(inbox / "cur").st_mtime_ns
    assert box.set_letters(entry, "F")
    box.commit_flags([entry])
    os.utime(inbox / "cur", ns=(mtime, mtime))
    (inbox / "maildaemons-listed").write_bytes(stamp)
    Mailbox(inbox).sync()
    assert "cur" in listed
    for damaged in (b"", b"maildaemons-listed 1 junk\n", stamp.replace(b" ", b"  x", 1)):
        listed.clear()
        (inbox / "maildaemons-listed").write_bytes(damaged)
        Mailbox(inbox).sync()
        assert sorted(listed) == ["cur", "new"], damaged


def test_a_value_derived_from_a_set_of_messages(inbox: Path) -> None:
    """Kept for exactly that set of UIDs in that UID space; the last one of each kind."""
    deliver_many(inbox, 4)
    box = Mailbox(inbox)
    entries = box.sync().entries
    assert box.derived_for("thread-x", entries) is None
    box.remember_for("thread-x", entries, b"(1 2)(3 4)")
    box.remember_for("thread-y", entries[:2], b"(1)(2)")
    again = Mailbox(inbox)
    same = again.sync().entries
    assert again.derived_for("thread-x", same) == b"(1 2)(3 4)"
    assert again.derived_for("thread-x", same[:3]) is None, "another set"
    assert again.derived_for("thread-y", same[:2]) == b"(1)(2)"
    again.remember_for("thread-x", same[1:], b"(2)")
    assert again.derived_for("thread-x", same) is None, "only the last one is kept"
    assert again.derived_for("thread-x", same[1:]) == b"(2)"
    (inbox / "maildaemons-set-thread-x").write_bytes(b"junk")
    assert again.derived_for("thread-x", same[1:]) is None
    # A folder whose UIDs started over (a new UIDVALIDITY) shares no set with the old one.
    again.remember_for("thread-x", same, b"(1)")
    for name in ("maildaemons-uidlist", "maildaemons-uidlist.log", "maildaemons-uidvalidity"):
        (inbox / name).unlink(missing_ok=True)
    fresh = Mailbox(inbox)
    renumbered = fresh.sync().entries
    assert [e.uid for e in renumbered] == [e.uid for e in same]
    assert fresh.derived_for("thread-x", renumbered) is None
