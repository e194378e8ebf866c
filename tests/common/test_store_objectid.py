"""What the store keeps and derives for OBJECTID and SAVEDATE (common/store/objectid.py): a
folder's MAILBOXID, made once even when many processes ask at the same moment, carried by
RENAME; the save time in a Maildir name."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from common.store import FolderTree
from common.store.objectid import MAILBOXID_FILE, mailbox_id, name_time

CTX = multiprocessing.get_context("fork")


def _ask(folder: str, queue) -> None:  # noqa: ANN001 (a multiprocessing queue)
    queue.put(mailbox_id(Path(folder)))


def test_concurrent_first_requests_agree(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    queue = CTX.Queue()
    workers = [CTX.Process(target=_ask, args=(str(folder), queue)) for _ in range(8)]
    for worker in workers:
        worker.start()
    answers = {queue.get(timeout=10) for _ in workers}
    for worker in workers:
        worker.join(10)
    assert len(answers) == 1
    assert mailbox_id(folder) in answers
    assert sorted(p.name for p in folder.iterdir()) == [MAILBOXID_FILE]  # no leftovers


def test_create_rename_delete(tmp_path):
    tree = FolderTree(tmp_path / "user")
    tree.ensure_inbox()
    tree.create("a")
    first = tree.mailbox_id("a")
    assert (tree.path("a") / MAILBOXID_FILE).exists()  # made with the folder
    tree.rename("a", "b")
    assert tree.mailbox_id("b") == first
    tree.delete("b")
    tree.create("b")
    assert tree.mailbox_id("b") != first
    # A damaged file is replaced by a fresh id rather than failing.
    damaged = tree.mailbox_id("b")
    (tree.path("b") / MAILBOXID_FILE).write_text("not an id!\n")
    repaired = tree.mailbox_id("b")
    assert repaired.startswith("F") and repaired != damaged
    assert tree.mailbox_id("b") == repaired


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("1700000001.M123456P99Q1.host,S=5,W=6", 1700000001.123456),
        ("1700000001.V803I1234M56.host", 1700000001.000056),
        ("1700000001.12345_6.host", 1700000001.0),
        ("1700000001", None),
        ("odd-name", None),
        ("99.M1P1.host", None),
    ],
)
def test_name_time(key, expected):
    assert name_time(key) == expected
