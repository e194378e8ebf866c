"""Symbolic links planted inside a Maildir are never followed (common/store/maildir.py): a message
file, cur/ or tmp/, a folder, the root's own files, the temp names of atomic writes and the POP3
lock. Whatever the link points at is never read, listed, written or created."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.store import maildir
from common.store.atomic import atomic_write
from common.store.errors import MailboxNotFound, MailboxRefused, StoreError
from common.store.folders import FolderTree
from common.store.mailbox import Mailbox
from common.store.maildrop import Maildrop

SECRET = b"root:x:0:0:this must never be served\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file and a whole Maildir outside the user's tree."""
    place = tmp_path / "elsewhere"
    for sub in ("cur", "new", "tmp"):
        (place / sub).mkdir(parents=True)
    (place / "secret").write_bytes(SECRET)
    (place / "cur" / "1700000000.M1P1.other:2,S").write_bytes(b"Subject: other's\n\nmail\n")
    return place


@pytest.fixture
def tree(tmp_path: Path) -> FolderTree:
    tree = FolderTree(tmp_path / "mail" / "alice")
    tree.ensure_inbox()
    maildir.deliver(tree.root, b"Subject: mine\n\nbody\n")
    return tree


def test_a_linked_message_is_not_listed_nor_read(tree: FolderTree, outside: Path) -> None:
    (tree.root / "cur" / "1700000001.evil:2,").symlink_to(outside / "secret")
    (tree.root / "new" / "1700000002.evil").symlink_to(outside / "secret")
    os.mkfifo(tree.root / "cur" / "1700000003.fifo:2,")  # would block a reader forever
    (tree.root / "cur" / "1700000004.dir:2,").mkdir()
    listed = maildir.list_messages(tree.root)
    assert len(listed) == 1 and listed[0].subdir == "new"  # only the delivered message
    box, snap = tree.open("INBOX")
    assert len(snap.entries) == 1 and box.read(snap.entries[0]).startswith(b"Subject: mine")
    drop = Maildrop.open(tree.root.parent, "alice")
    assert [drop.read(m) for m in drop.messages] == [b"Subject: mine\n\nbody\n"]
    drop.release()
    with pytest.raises(StoreError):  # named directly (a race): still not read through the link
        maildir.read_message(tree.root, maildir.MessageFile("cur", "1700000001.evil:2,"))
    with pytest.raises(StoreError):
        maildir.read_header(tree.root, maildir.MessageFile("cur", "1700000001.evil:2,"))


@pytest.mark.parametrize("sub", ["cur", "new"])
def test_a_linked_cur_or_new_is_no_maildir(tree: FolderTree, outside: Path, sub: str) -> None:
    os.rename(tree.root / sub, tree.root / f"{sub}.real")
    (tree.root / sub).symlink_to(outside / sub)
    with pytest.raises(MailboxNotFound):
        tree.open("INBOX")
    with pytest.raises(StoreError):
        maildir.list_messages(tree.root)
    with pytest.raises(StoreError):
        Maildrop.open(tree.root.parent, "alice")


def test_a_linked_tmp_sends_no_delivery_elsewhere(tree: FolderTree, outside: Path) -> None:
    os.rename(tree.root / "tmp", tree.root / "tmp.real")
    (tree.root / "tmp").symlink_to(outside / "tmp")
    box, _snap = tree.open("INBOX")
    with pytest.raises(StoreError):
        box.append(b"Subject: x\n\ny\n", "", None)
    assert os.listdir(outside / "tmp") == []


def test_a_linked_folder_is_not_a_folder(tree: FolderTree, outside: Path) -> None:
    (tree.root / ".Evil").symlink_to(outside)
    assert "Evil" not in tree.names()
    for action in (
        lambda: tree.open("Evil"),
        lambda: tree.create("Evil"),
        lambda: tree.delete("Evil"),
        lambda: tree.rename("Evil", "Good"),
        lambda: tree.exists("Evil"),
    ):
        with pytest.raises(MailboxRefused):
            action()
    assert sorted(os.listdir(outside)) == ["cur", "new", "secret", "tmp"]
    assert (outside / "secret").read_bytes() == SECRET


def test_root_files_are_not_read_through_links(tree: FolderTree, outside: Path) -> None:
    (outside / "lines").write_text("INBOX\nsecret-folder-name\n")
    for name in ("subscriptions", "maildaemons-special-use", "maildirsize", "dovecot-keywords"):
        (tree.root / name).symlink_to(outside / "lines")
    with pytest.raises(OSError):
        tree.subscriptions()
    assert tree.quota() == {} and tree.special_use("secret-folder-name") is None
    box, snap = tree.open("INBOX")
    assert box.keywords.decode("abc") == []


def test_atomic_write_replaces_a_planted_temp_link(tmp_path: Path, outside: Path) -> None:
    target = tmp_path / "subscriptions"
    (tmp_path / f".subscriptions.{os.getpid()}.tmp").symlink_to(outside / "secret")
    atomic_write(target, b"INBOX\n")
    assert target.read_bytes() == b"INBOX\n" and not target.is_symlink()
    assert (outside / "secret").read_bytes() == SECRET


def test_pop3_lock_and_login_stamp_are_not_links(tree: FolderTree, outside: Path) -> None:
    (tree.root / "maildaemons-pop3.lock").symlink_to(outside / "secret")
    with pytest.raises(StoreError):
        Maildrop.open(tree.root.parent, "alice")
    (tree.root / "maildaemons-pop3.lock").unlink()
    (tree.root / "maildaemons-pop3-lastlogin").symlink_to(outside / "secret")
    before = os.stat(outside / "secret").st_mtime_ns
    drop = Maildrop.open(tree.root.parent, "alice")
    drop.stamp_login()
    drop.release()
    assert os.stat(outside / "secret").st_mtime_ns == before


def test_unicode_look_alikes_and_long_names_stay_inside(tree: FolderTree) -> None:
    for name in ("a\uff0fb", "\u2024\u2024", "x\u2215y", "\uff0e\uff0e"):
        tree.create(name)
        path = tree.path(name)
        assert path.parent == tree.root and "/" not in path.name[1:]
        assert Mailbox(path).sync().entries == []
    with pytest.raises(MailboxRefused):
        tree.create("\U0001f600" * 50)  # 200 octets of UTF-8, 270 once modified UTF-7
    for bad in ("../x", "/etc", "a/b", "a\0b", "..", "a..b", "x" * 201):
        with pytest.raises(MailboxRefused):
            tree.create(bad)
    assert sorted(os.listdir(tree.root.parent)) == ["alice"]
