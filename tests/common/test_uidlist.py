"""The per-folder uidlist (common/store/uidlist.py) and the import of Dovecot's dovecot-uidlist and
dovecot-keywords, so a folder that Dovecot served keeps its UIDs, UIDVALIDITY and keywords.

Dovecot's format (maildir-uidlist.c, doc "Maildir Mailbox Format"): header
`3 V<uidvalidity> N<nextuid> G<mailbox guid>` (fields in any order, others possible), then
`<uid>[ <ext>...] :<file name up to ':'>` where each extension is an upper-case letter and a value
(`W<vsize>`, `S<size>`, `G<guid>`...); version 1 (Courier's) is `1 <validity> <next>` then
`<uid> <name>`. dovecot-keywords is `<index> <name>` lines, index 0 being letter a.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.store import maildir
from common.store.mailbox import Mailbox
from common.store.uidlist import (
    DOVECOT_UIDLIST,
    UIDLIST,
    UIDLIST_LOG,
    Entry,
    UidList,
    UidStore,
    parse,
    parse_dovecot,
)

GUID = "G3085f01b7f11094c501100008c4a11c1"
NAMES = [
    "1275660300.M100238P743770V0000000000000030I00000000081274AE_0.mail.example.org,S=3734",
    "1275660301.M200P743771.mail.example.org,S=120,W=124",
    "1275660302.M300P743772.mail.example.org,S=99",
]


def test_serialize_and_parse_round_trip() -> None:
    uids = UidList(1234567890, 7, 12, generation="abc123", lineage="f00d", first_recent=6)
    uids.add(Entry(2, 5, "cur", "a,S=1:2,FS"))
    uids.add(Entry(6, 12, "new", "name with space", extra="Sx1 T2"))
    uids.bury([3, 4, 5])
    data = b"".join(uids.serialize())
    assert data == (
        b"M2 V1234567890 N7 H13 R6 Gabc123 If00d C2\nU 2 6\nQ 5 12\nX 6 Sx1 T2\n- 13 3:5\nL\n"
        b"a,S=1:2,FS\nnew/name with space\n"
    )
    back = parse(data)
    assert back is not None
    assert (back.uidvalidity, back.uidnext, back.highestmodseq) == (1234567890, 7, 13)
    assert back.generation == "abc123" and back.lineage == "f00d"
    assert back.first_recent == 6
    assert back.tombstones == [(13, 3, 5)]
    assert [(e.uid, e.modseq, e.subdir, e.name, e.extra) for e in back.entries] == [
        (2, 5, "cur", "a,S=1:2,FS", ""),
        (6, 12, "new", "name with space", "Sx1 T2"),
    ]
    assert b"".join(back.serialize()) == data, "fields this version does not know are kept"


def test_version_1_file_is_read_with_names_from_keys_and_flags() -> None:
    back = parse(b"M1 V99 N4 H6 R3\n1 3 FS a,S=1\n3 5 - name with space\n- 6 2\n")
    assert back is not None and back.generation == ""
    assert back.first_recent == 3
    assert [(e.uid, e.modseq, e.key, e.letters) for e in back.entries] == [
        (1, 3, "a,S=1", "FS"),
        (3, 5, "name with space", ""),
    ]
    assert back.tombstones == [(6, 2, 2)]


def test_a_file_without_a_first_recent_uid_has_nothing_left_to_claim() -> None:
    back = parse(b"M1 V99 N4 H6\n1 3 FS a,S=1\n")
    assert back is not None and back.first_recent == 4


def test_file_without_recent_mark_has_nothing_to_claim() -> None:
    """A uidlist written before the \\Recent mark existed: its messages were seen already."""
    back = parse(b"M1 V5 N9 H3\n8 3 - key\n")
    assert back is not None and back.first_recent == 9


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"3 V1 N2\n",
        b"M1 N2 H1\n",
        b"M1 V1 N2\nx 1 - key\n",
        b"M1 V1 N2\n1 1 -\n",
        b"M1 Vx N2\n",
        b"M2 V1 N5 H1 Gx\nU 1\nQ 1\nL\na\n",  # no count
        b"M2 V1 N5 H1 Gx C1\nU 1\nQ 1\nbroken line\nL\na\n",
        b"M2 V1 N5 H1 Gx C2\nU 2 1\nQ 1 1\nL\na\nb\n",  # UIDs out of order
        b"M2 V1 N2 H1 Gx C1\nU 3\nQ 1\nL\na\n",  # UIDNEXT below a UID
        b"M2 V1 N5 H1 Gx C2\nU 1 2\nQ 1 1\nL\na\na\n",  # a file twice
        b"M2 V1 N5 H1 Gx C2\nU 1 2\nQ 1\nL\na\nb\n",  # columns of different lengths
        b"M2 V1 N5 H1 Gx C2\nU 1 2\nQ 1 1\nL\na\n",  # truncated
        b"M2 V1 N5 H1 Gx C2\nU 1 2\nQ 1 1\nL\na\nb",
        b"M2 V1 N5 H1 Gx C1\nU 1\nQ 1\nX 2 S5\nL\na\n",  # fields of no message
    ],
)
def test_damaged_or_foreign_files_are_not_ours(data: bytes) -> None:
    assert parse(data) is None


@pytest.mark.parametrize(
    ("text", "validity", "uidnext", "expected"),
    [
        # Version 3 as Dovecot 1.1+ writes it: extension fields, then " :" and the base name.
        (
            f"3 V1275660208 N25022 {GUID}\n25017 :{NAMES[0]}\n25018 W124 :{NAMES[1]}\n"
            f"25020 GFFFF0000 W103 S99 :{NAMES[2]}\n",
            1275660208,
            25022,
            {NAMES[0]: 25017, NAMES[1]: 25018, NAMES[2]: 25020},
        ),
        # Header fields in another order, an unknown header field, blank lines.
        (f"3 {GUID} N30 V99 X7\n\n5 :{NAMES[0]}\n\n", 99, 30, {NAMES[0]: 5}),
        # A name that kept its flags (older writers): the key stops at ':'.
        (f"3 V1 N10 {GUID}\n4 :{NAMES[1]}:2,S\n", 1, 10, {NAMES[1]: 4}),
        # An extension value with ':' in it (a POP3 UIDL) is not the file name.
        (f"3 V1 N10\n4 Pab:cd W5 :{NAMES[2]}\n", 1, 10, {NAMES[2]: 4}),
        # N lower than the highest UID (a damaged header): never hand out a UID twice.
        (f"3 V1 N2\n4 :{NAMES[0]}\n", 1, 5, {NAMES[0]: 4}),
        # Version 1 (Courier-compatible).
        (
            f"1 1275660208 8\n3 {NAMES[0]}\n7 {NAMES[1]}:2,FS\n",
            1275660208,
            8,
            {NAMES[0]: 3, NAMES[1]: 7},
        ),
    ],
)
def test_parse_dovecot(text: str, validity: int, uidnext: int, expected: dict[str, int]) -> None:
    result = parse_dovecot(text.encode())
    assert result is not None
    assert (result.uidvalidity, result.uidnext) == (validity, uidnext)
    assert {e.key: e.uid for e in result.entries} == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2 V1 N1\n",
        "3 N5\n",
        "3 V1 N5\n1 W5\n",
        "3 V1 N5\nfoo :bar\n",
        "1 5\n",
        "3 V1 N5\n2 :a/b\n",
    ],
)
def test_parse_dovecot_refuses_broken_files(text: str) -> None:
    assert parse_dovecot(text.encode()) is None


def dovecot_folder(path: Path) -> Path:
    """A folder as Dovecot left it: cur/ files with flags and keyword letters, uidlist, keywords."""
    maildir.ensure_maildir(path)
    (path / "cur" / f"{NAMES[0]}:2,S").write_bytes(b"Subject: one\n\nbody\n")
    (path / "cur" / f"{NAMES[1]}:2,FSab").write_bytes(b"Subject: two\n\nbody\n")
    (path / "new" / NAMES[2]).write_bytes(b"Subject: three\n\nbody\n")
    (path / DOVECOT_UIDLIST).write_text(
        f"3 V1275660208 N25022 {GUID}\n25017 :{NAMES[0]}\n25018 W124 :{NAMES[1]}\n"
        f"25020 :{NAMES[2]}\n25021 :1275660303.M1P1.gone,S=5\n"
    )
    (path / "dovecot-keywords").write_text("0 $Forwarded\n1 Work\n")
    return path


def test_dovecot_folder_keeps_uids_uidvalidity_and_keywords(tmp_path: Path) -> None:
    folder = dovecot_folder(tmp_path / ".Archive")
    box = Mailbox(folder)
    snap = box.sync(claim_recent=True)
    assert snap.uidvalidity == 1275660208
    assert [(e.uid, e.key) for e in snap.entries] == [
        (25017, NAMES[0]),
        (25018, NAMES[1]),
        (25020, NAMES[2]),
    ]
    assert [e.letters for e in snap.entries] == ["S", "FSab", ""]
    assert box.keywords.decode(snap.entries[1].letters) == ["$Forwarded", "Work"]
    # New mail continues after Dovecot's next UID; the vanished 25021 is never reused.
    maildir.deliver(folder, b"Subject: four\n\nbody\n")
    assert [e.uid for e in box.sync().entries][-1] == 25022
    assert (folder / UIDLIST).exists()
    # A keyword set here is readable by Dovecot: same file, next index.
    assert box.keywords.letters_for(["Later"], create=True) == "c"
    assert (folder / "dovecot-keywords").read_text() == "0 $Forwarded\n1 Work\n2 Later\n"


def test_dovecot_uidlist_is_imported_once(tmp_path: Path) -> None:
    folder = dovecot_folder(tmp_path / "inbox")
    first = Mailbox(folder).sync()
    # Dovecot (or an admin) rewrites its file later: our uidlist is the truth from now on.
    (folder / DOVECOT_UIDLIST).write_text(f"3 V42 N2 {GUID}\n1 :{NAMES[0]}\n")
    second = Mailbox(folder).sync()
    assert second.uidvalidity == first.uidvalidity == 1275660208
    assert [e.uid for e in second.entries] == [e.uid for e in first.entries]


def test_damaged_uidlist_never_reuses_uids_under_the_same_uidvalidity(tmp_path: Path) -> None:
    """Our file damaged after the import (disk full, a bad edit): importing the old Dovecot file
    again would give UIDs we already handed out to other messages; a new UIDVALIDITY must."""
    folder = dovecot_folder(tmp_path / "inbox")
    box = Mailbox(folder)
    box.sync()
    box.append(b"Subject: x\n\nbody\n", "", None)
    gone = box.sync().entries[-1]
    assert gone.uid == 25022
    box.expunge([gone])
    (folder / UIDLIST).write_bytes(b"M1 V1275660208 N25023 H9\ngarbage\n")
    maildir.deliver(folder, b"Subject: y\n\nbody\n")
    snap = Mailbox(folder).sync()
    assert snap.uidvalidity != 1275660208, "UID 25022 would name another message"
    assert [e.uid for e in snap.entries] == [1, 2, 3, 4]


def test_broken_dovecot_uidlist_starts_fresh(tmp_path: Path) -> None:
    folder = dovecot_folder(tmp_path / "inbox")
    (folder / DOVECOT_UIDLIST).write_text("garbage\n")
    snap = Mailbox(folder).sync()
    assert [e.uid for e in snap.entries] == [1, 2, 3]
    assert snap.uidvalidity != 1275660208


def test_update_writes_atomically_and_only_on_change(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    maildir.ensure_maildir(folder)
    store = UidStore(folder)
    assert store.load() is None
    with store.update(None) as tx:
        tx.add("cur", "k:2,")
    table = tx.table
    inode = os.stat(folder / UIDLIST).st_ino
    size = os.stat(folder / UIDLIST_LOG).st_size
    with store.update(table):
        pass
    assert os.stat(folder / UIDLIST).st_ino == inode, "no change, no rewrite"
    assert os.stat(folder / UIDLIST_LOG).st_size == size, "no change, nothing appended"
    with store.update(table) as tx:
        tx.add("cur", "l:2,S")
    assert os.stat(folder / UIDLIST).st_ino == inode, "a change is appended, not rewritten"
    assert os.stat(folder / UIDLIST_LOG).st_size > size
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp") or n.endswith(".lock")]
    again = UidStore(folder).load()
    assert again is not None and again.uidnext == 3
    assert [(e.uid, e.name) for e in again.entries] == [(1, "k:2,"), (2, "l:2,S")]


def test_failed_update_changes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    maildir.ensure_maildir(folder)
    store = UidStore(folder)
    with store.update(None) as tx:
        tx.add("cur", "k:2,")
    table = tx.table
    before = [(folder / name).read_bytes() for name in (UIDLIST, UIDLIST_LOG)]
    with pytest.raises(RuntimeError), store.update(table) as tx:
        tx.add("cur", "l:2,")
        raise RuntimeError("crash in the middle")
    assert [(folder / name).read_bytes() for name in (UIDLIST, UIDLIST_LOG)] == before
    assert not (folder / (UIDLIST + ".lock")).exists()
    with store.update(table) as tx:  # the table is read again: the failed change is not in it
        assert [e.name for e in tx.table.entries] == ["k:2,"]
        assert tx.add("cur", "m:2,").uid == 2
