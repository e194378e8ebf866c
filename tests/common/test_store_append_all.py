"""Mailbox.append_all (common/store/maildir.deliver_all), what MULTIAPPEND stands on: several
messages get consecutive UIDs in one uidlist update, and when any step fails no message stays,
in cur/ or in tmp/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.store import FolderTree, StoreError
from common.store import maildir as files


def inbox(tmp_path: Path):
    tree = FolderTree(tmp_path / "user")
    tree.ensure_inbox()
    return tree.open("INBOX")[0]


def listing(root: Path) -> dict[str, list[str]]:
    return {sub: sorted(os.listdir(root / sub)) for sub in ("cur", "new", "tmp")}


def test_messages_get_consecutive_uids_and_their_flags_and_dates(tmp_path):
    mailbox = inbox(tmp_path)
    validity, first = mailbox.append_all([(b"Subject: a\n\nx\n", "", None)])
    validity2, uids = mailbox.append_all(
        [(b"Subject: b\n\ny\n", "S", 800_000_000.0), (b"Subject: c\n\nz\n", "FS", None)]
    )
    assert validity == validity2
    assert uids == [first[0] + 1, first[0] + 2]
    snap = mailbox.sync()
    assert [(e.uid, e.letters) for e in snap.entries] == [(1, ""), (2, "S"), (3, "FS")]
    assert mailbox.internal_date(snap.entries[1]) == 800_000_000.0
    assert [mailbox.read(e) for e in snap.entries] == [
        b"Subject: a\n\nx\n",
        b"Subject: b\n\ny\n",
        b"Subject: c\n\nz\n",
    ]
    with pytest.raises(ValueError):
        mailbox.append_all([])


@pytest.mark.parametrize("failing_rename", [1, 2, 3])
def test_a_failure_leaves_no_message(tmp_path, monkeypatch, failing_rename):
    mailbox = inbox(tmp_path)
    mailbox.append_all([(b"Subject: before\n\n.\n", "", None)])
    before = listing(mailbox.path)
    calls = {"n": 0}
    real_rename = os.rename

    def rename(src, dst, **dir_fds):
        calls["n"] += 1
        if calls["n"] == failing_rename:
            raise OSError(28, "No space left on device")
        return real_rename(src, dst, **dir_fds)

    monkeypatch.setattr(files.os, "rename", rename)
    messages = [(b"Subject: %d\n\n.\n" % n, "", None) for n in range(3)]
    with pytest.raises(StoreError):
        mailbox.append_all(messages)
    monkeypatch.undo()
    assert listing(mailbox.path) == before
    assert [e.uid for e in mailbox.sync().entries] == [1]
    assert mailbox.append_all(messages)[1] == [2, 3, 4]  # no UID was spent


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    mailbox = inbox(tmp_path)
    real_write = files._write_temp
    calls = {"n": 0}

    def write(tmp_dir, base, data, mtime):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(5, "I/O error")
        real_write(tmp_dir, base, data, mtime)

    monkeypatch.setattr(files, "_write_temp", write)
    with pytest.raises(StoreError):
        mailbox.append_all([(b"a\n", "", None), (b"b\n", "", None)])
    assert listing(mailbox.path) == {"cur": [], "new": [], "tmp": []}
