"""The uidlist's change log (common/store/uidlist.py): record format, torn and damaged tails,
duplicate records, compaction and its generations, a stale log after a compaction killed
half-way, migration from version 1, and records from a later version."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.store import maildir, uidlist
from common.store.atomic import atomic_write
from common.store.errors import StoreError
from common.store.mailbox import Mailbox
from common.store.uidlist import (
    UIDLIST,
    UIDLIST_LOG,
    UidStore,
    log_header,
    log_line,
    parse,
    read_log,
)


def folder_with(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "box"
    maildir.ensure_maildir(folder)
    for number in range(count):
        maildir.deliver(folder, b"Subject: %d\n\nbody\n" % number, subdir="cur")
    return folder


def state(folder: Path) -> list[tuple[int, int, str]]:
    loaded = UidStore(folder).load()
    assert loaded is not None
    return [(e.uid, e.modseq, e.name) for e in loaded.entries]


def test_log_lines_carry_a_crc_and_end_in_a_newline() -> None:
    line = log_line("F 7 12 :1700000000.M1P1.host:2,S")
    assert line.endswith("\n") and line[8] == " "
    records, end = read_log(line.encode(), 0)
    assert records == ["F 7 12 :1700000000.M1P1.host:2,S"] and end == len(line)
    damaged = line.replace("12", "13").encode()
    assert read_log(damaged, 0) == ([], 0)


def test_a_flag_change_appends_one_line(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, 50)
    box = Mailbox(folder)
    entries = box.sync().entries
    base, log = (folder / UIDLIST).read_bytes(), (folder / UIDLIST_LOG).read_bytes()
    assert box.set_letters(entries[7], "FS")
    box.commit_flags([entries[7]])
    assert (folder / UIDLIST).read_bytes() == base, "the base is not rewritten"
    added = (folder / UIDLIST_LOG).read_bytes()[len(log) :]
    assert added.count(b"\n") == 1 and b" F 8 " in added
    assert state(folder)[7] == (8, entries[7].modseq, entries[7].name)


def test_torn_tail_is_ignored_then_cut_off_by_the_next_writer(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, 5)
    box = Mailbox(folder)
    entries = box.sync().entries
    before = state(folder)
    torn = log_line(f"F 2 99 :{entries[1].key}:2,S").encode()[:-9]  # killed mid-write
    with open(folder / UIDLIST_LOG, "ab") as handle:
        handle.write(torn)
    assert state(folder) == before, "a torn record is not applied"
    other = Mailbox(folder)
    snap = other.sync()
    assert other.set_letters(snap.entries[3], "F")
    other.commit_flags([snap.entries[3]])
    data = (folder / UIDLIST_LOG).read_bytes()
    assert torn not in data, "the torn tail was cut before appending"
    records, end = read_log(data, data.index(b"\n") + 1)
    assert end == len(data) and records[-1].startswith("F 4 ")
    box.sync()
    assert [e.letters for e in box.snapshot().entries] == ["", "", "", "F", ""]


def test_damaged_record_stops_the_reader_and_is_cut_by_the_writer(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, 3)
    box = Mailbox(folder)
    box.sync()
    good = log_line("R 1 :whatever").encode()
    with open(folder / UIDLIST_LOG, "ab") as handle:
        handle.write(b"00000000 F 2 50 :bad crc\n" + good)
    loaded = UidStore(folder).load()
    assert loaded is not None and loaded.highestmodseq < 50
    box.append(b"Subject: new\n\nbody\n", "", None)
    data = (folder / UIDLIST_LOG).read_bytes()
    assert b"bad crc" not in data
    assert [uid for uid, _m, _n in state(folder)] == [1, 2, 3, 4]


def test_duplicate_records_change_nothing(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, 4)
    box = Mailbox(folder)
    entries = box.sync().entries
    box.set_letters(entries[0], "S")
    box.commit_flags([entries[0]])
    box.expunge([entries[2]])
    box.append(b"Subject: x\n\nbody\n", "F", None)
    before = UidStore(folder).load()
    assert before is not None
    data = (folder / UIDLIST_LOG).read_bytes()
    records = data[data.index(b"\n") + 1 :]
    with open(folder / UIDLIST_LOG, "ab") as handle:
        handle.write(records + records)  # every record twice more
    after = UidStore(folder).load()
    assert after is not None
    assert [(e.uid, e.modseq, e.name) for e in after.entries] == [
        (e.uid, e.modseq, e.name) for e in before.entries
    ]
    assert (after.uidnext, after.highestmodseq, after.tombstones) == (
        before.uidnext,
        before.highestmodseq,
        before.tombstones,
    )


def test_compaction_starts_a_new_generation_and_readers_follow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uidlist, "COMPACT_MIN_BYTES", 600)
    folder = folder_with(tmp_path, 20)
    reader, writer = Mailbox(folder), Mailbox(folder)
    held = reader.sync().entries
    first = parse((folder / UIDLIST).read_bytes())
    assert first is not None
    entries = writer.sync().entries
    for entry in entries:
        assert writer.set_letters(entry, "S")
        writer.commit_flags([entry])
    second = parse((folder / UIDLIST).read_bytes())
    assert second is not None and second.generation != first.generation
    log = (folder / UIDLIST_LOG).read_bytes()
    assert log.startswith(log_header(second.generation)) and len(log) < 600
    snap = reader.poll()
    assert snap is not None
    assert [e.letters for e in snap.entries] == ["S"] * 20
    assert all(a is b for a, b in zip(held, snap.entries, strict=True)), "the same entries"
    touched, expunged = reader.drain_changes()
    assert touched == {e.uid for e in held} and not expunged
    assert state(folder) == [(e.uid, e.modseq, e.name) for e in entries]


def test_a_log_of_another_generation_is_stale(tmp_path: Path) -> None:
    """A compaction killed between its two renames leaves the new base and the old log: the
    log's records are in the base already, and it is not applied a second time."""
    folder = folder_with(tmp_path, 3)
    box = Mailbox(folder)
    entries = box.sync().entries
    box.set_letters(entries[1], "T")
    box.commit_flags([entries[1]])
    old_log = (folder / UIDLIST_LOG).read_bytes()
    table = UidStore(folder).load()
    assert table is not None
    UidStore(folder).compact(table)  # a new base and log...
    (folder / UIDLIST_LOG).write_bytes(old_log)  # ... then the old log back: the kill
    before = state(folder)
    assert before == [(e.uid, e.modseq, e.name) for e in entries]
    again = Mailbox(folder)
    again.append(b"Subject: x\n\nbody\n", "", None)  # the next writer starts a fresh log
    current = parse((folder / UIDLIST).read_bytes())
    assert current is not None
    assert (folder / UIDLIST_LOG).read_bytes().startswith(log_header(current.generation))
    assert state(folder)[:3] == before


def test_version_1_is_migrated_keeping_uids_and_modseqs(tmp_path: Path) -> None:
    folder = tmp_path / "box"
    maildir.ensure_maildir(folder)
    names = ["1600000000.M1P1.old:2,S", "1600000001.M2P1.old:2,RS", "1600000002.M3P1.old"]
    for sub, name in zip(("cur", "cur", "new"), names, strict=True):
        (folder / sub / name).write_bytes(b"Subject: x\n\nbody\n")
    (folder / UIDLIST).write_bytes(
        b"M1 V4242 N31 H77\n10 70 S 1600000000.M1P1.old\n20 75 S 1600000001.M2P1.old\n"
        b"30 77 - 1600000002.M3P1.old\n- 60 5:6\n"
    )
    snap = Mailbox(folder).sync()
    assert snap.uidvalidity == 4242 and snap.uidnext == 31
    assert [(e.uid, e.subdir, e.name) for e in snap.entries] == [
        (10, "cur", names[0]),
        (20, "cur", names[1]),
        (30, "new", names[2]),
    ]
    # The letters changed while we were away (R added): a new MODSEQ; the others keep theirs.
    assert [e.modseq for e in snap.entries] == [70, 78, 77]
    data = (folder / UIDLIST).read_bytes()
    assert data.startswith(b"M2 V4242 N31 H78 R31 G") and b"- 60 5:6\n" in data
    assert Mailbox(folder).vanished_since(10) == [(5, 6)]


def test_records_of_a_later_version_are_skipped_and_kept(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, 2)
    box = Mailbox(folder)
    entries = box.sync().entries
    with open(folder / UIDLIST_LOG, "a") as handle:
        handle.write(log_line("Z something new 1 2 3"))
        handle.write(log_line(f"A 3 90 S1700000000 Ox12 :{entries[0].key}.copy"))
    (folder / "cur" / f"{entries[0].key}.copy").write_bytes(b"Subject: c\n\nbody\n")
    loaded = UidStore(folder).load()
    assert loaded is not None and [e.uid for e in loaded.entries] == [1, 2, 3]
    assert loaded.entries[2].extra == "S1700000000 Ox12"
    box.append(b"Subject: x\n\nbody\n", "", None)  # appends after them, cuts nothing
    assert b"Z something new" in (folder / UIDLIST_LOG).read_bytes()
    table = UidStore(folder).load()
    assert table is not None
    UidStore(folder).compact(table)
    assert b"\nX 3 S1700000000 Ox12\n" in (folder / UIDLIST).read_bytes()


def test_the_log_of_a_damaged_base_is_not_applied(tmp_path: Path) -> None:
    """A base that does not parse starts the folder over (new UIDVALIDITY): the old log must
    not be replayed onto the new table."""
    folder = folder_with(tmp_path, 3)
    first = Mailbox(folder).sync()
    box = Mailbox(folder)
    entries = box.sync().entries
    box.set_letters(entries[0], "S")
    box.commit_flags([entries[0]])
    (folder / UIDLIST).write_bytes(b"M2 V1 N2 H1 Gx C1\nU 1\nthis is not a column\n")
    snap = Mailbox(folder).sync()
    assert snap.uidvalidity != first.uidvalidity
    assert [e.uid for e in snap.entries] == [1, 2, 3]
    assert os.path.getsize(folder / UIDLIST_LOG) < 40, "a fresh log"


def test_a_reader_between_the_two_renames_of_a_compaction_follows_the_new_log(
    tmp_path: Path,
) -> None:
    """A reader that loads the new base while the old log is still there (the compaction's
    second rename not done yet) must take up the new log once it comes, though the base does
    not change again (regression: its later records were never applied)."""
    folder = folder_with(tmp_path, 3)
    Mailbox(folder).sync()
    table = UidStore(folder).load()
    assert table is not None
    table.generation = "0123456789ab"
    atomic_write(folder / UIDLIST, table.serialize())  # the compaction's first rename ...
    reader = Mailbox(folder)
    reader.sync()
    atomic_write(folder / UIDLIST_LOG, log_header(table.generation))  # ... and its second
    writer = Mailbox(folder)
    writer.sync()
    writer.append(b"Subject: four\n\nbody\n", "", None)
    _validity, uid = writer.append(b"Subject: five\n\nbody\n", "", None)
    writer.expunge([e for e in writer.sync().entries if e.uid == 4])
    snap = reader.poll()
    assert snap is not None and [e.uid for e in snap.entries] == [1, 2, 3, uid] == [1, 2, 3, 5]


def test_records_it_has_not_read_are_never_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that did not see another's records under the lock (an NFS client's stale
    attributes, made certain here) must fail its change, not cut those records off as a torn
    tail; then it reads the table again and the change goes through."""
    folder = folder_with(tmp_path, 3)
    mine, other = Mailbox(folder), Mailbox(folder)
    entries = mine.sync().entries
    other.sync()
    other.append(b"Subject: theirs\n\nbody\n", "", None)
    theirs = (folder / UIDLIST_LOG).read_bytes()
    real_follow = UidStore._follow_log
    monkeypatch.setattr(UidStore, "_follow_log", lambda self, table, stamp_of=None: True)
    assert mine.set_letters(entries[0], "S")
    with pytest.raises(StoreError):
        mine.commit_flags([entries[0]])
    assert (folder / UIDLIST_LOG).read_bytes() == theirs, "their record is still there"
    monkeypatch.setattr(UidStore, "_follow_log", real_follow)
    snap = mine.sync()
    assert [e.uid for e in snap.entries] == [1, 2, 3, 4]
    assert snap.entries[0].letters == "S" and state(folder)[0][2] == snap.entries[0].name


def test_per_message_fields_go_through_the_log_and_the_base(tmp_path: Path) -> None:
    """Room for per-message data (a save date, an object id): fields given to a new message are
    in its log record, survive a compaction, and read back."""
    folder = folder_with(tmp_path, 1)
    box = Mailbox(folder)
    box.sync()
    with box.uids.update(box.table) as tx:
        tx.add("cur", "1700000000.M9P9.host:2,", extra="S1700000000 O0a1b")
    log = (folder / UIDLIST_LOG).read_bytes()
    assert b" A 2 3 S1700000000 O0a1b :1700000000.M9P9.host:2,\n" in log
    loaded = UidStore(folder).load()
    assert loaded is not None
    assert [(e.uid, e.extra) for e in loaded.entries] == [(1, ""), (2, "S1700000000 O0a1b")]
    UidStore(folder).compact(loaded)
    again = UidStore(folder).load()
    assert again is not None
    assert [(e.uid, e.extra) for e in again.entries] == [(1, ""), (2, "S1700000000 O0a1b")]
