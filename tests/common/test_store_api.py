"""The store's front door (common/store/__init__.py) as protocol code uses it, on tmp_path:
FolderTree.open by name, the Mailbox poll, header reads and reclaimable space,
the POP3 Maildrop (lock, listing with CRLF sizes, deletions only at commit, the login stamp), and
creating and retiring a user's maildir."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from common.store import (
    INBOX,
    TRASHED,
    FolderTree,
    MailboxNotFound,
    MailboxRefused,
    Maildrop,
    StoreBusy,
    StoreError,
    canonical_name,
    create_user_maildir,
    is_inbox,
    retire_user_maildir,
)
from common.store import maildir as files
from common.store.accounts import DELETED_DIR
from common.store.flags import flags_suffix, letters_of, with_letters
from common.store.mailbox import Mailbox
from common.store.uidlist import UIDLIST

CTX = multiprocessing.get_context("fork")
MESSAGE = b"From: a@example.org\nSubject: hi\n\nline one\nline two\n"


def age(*paths: Path, seconds: float = 10.0) -> None:
    """Set mtimes into the past, as if the folder had been still for a while."""
    then = time.time() - seconds
    for path in paths:
        os.utime(path, (then, then))


# -- names and flags -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["INBOX", "inbox", "InBoX", "iNBOX"])
def test_inbox_in_any_case(name: str) -> None:
    assert is_inbox(name)
    assert canonical_name(name) == INBOX


@pytest.mark.parametrize("name", ["INBOX.x", "INBOXES", "Inbox2", "Sent", "inbo"])
def test_other_names_are_kept_as_they_are(name: str) -> None:
    assert not is_inbox(name)
    assert canonical_name(name) == name


def test_flag_letters_in_names() -> None:
    assert letters_of("1.M2.host,S=5:2,FS") == "FS"
    assert letters_of("1.M2.host,S=5") == ""
    assert with_letters("1.M2.host", "SFS") == "1.M2.host:2,FS"
    assert flags_suffix("Sa?x") == ":2,Sax"  # unknown letters dropped, keywords kept


# -- FolderTree.open ---------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> FolderTree:
    tree = FolderTree.for_user(tmp_path, "alice")
    tree.ensure_inbox()
    return tree


@pytest.mark.parametrize("name", ["INBOX", "inbox", "Inbox", "iNbOx"])
def test_open_inbox_in_any_case(tree: FolderTree, name: str) -> None:
    files.deliver(tree.root, MESSAGE)
    mailbox, snap = tree.open(name)
    assert mailbox.name == INBOX
    assert mailbox.path == tree.root
    assert [e.uid for e in snap.entries] == [1]


def test_open_a_folder_gives_it_its_name(tree: FolderTree) -> None:
    tree.create("Sent")
    mailbox, snap = tree.open("Sent")
    assert mailbox.name == "Sent"
    assert snap.entries == []
    assert (mailbox.path / UIDLIST).exists()  # opened means synced


def test_open_a_missing_folder(tree: FolderTree) -> None:
    with pytest.raises(MailboxNotFound):
        tree.open("Nowhere")
    with pytest.raises(MailboxNotFound):
        tree.open("sent")  # only INBOX is case-insensitive
    assert not (tree.root / ".Nowhere").exists()


@pytest.mark.parametrize("name", ["a/b", "INBOX.child", "..x", ""])
def test_open_a_refused_name(tree: FolderTree, name: str) -> None:
    with pytest.raises(MailboxRefused):
        tree.open(name)


def test_open_claims_recent_only_when_asked(tree: FolderTree) -> None:
    files.deliver(tree.root, MESSAGE)
    _mailbox, snap = tree.open(INBOX)
    assert [snap.is_recent(e) for e in snap.entries] == [True]
    assert os.listdir(tree.root / "new")  # not claimed: still new for everyone
    _mailbox, snap = tree.open(INBOX, claim_recent=True)
    assert [snap.is_recent(e) for e in snap.entries] == [True]
    assert not os.listdir(tree.root / "new")
    _mailbox, snap = tree.open(INBOX, claim_recent=True)
    assert [snap.is_recent(e) for e in snap.entries] == [False]  # claimed by the opener before


def test_for_user_refuses_unsafe_names(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        FolderTree.for_user(tmp_path, "../etc")


def test_subscribe_stores_inbox_in_capitals(tree: FolderTree) -> None:
    tree.subscribe("inbox", True)
    assert tree.subscriptions() == [INBOX]
    tree.subscribe("Inbox", False)
    assert tree.subscriptions() == []


# -- Mailbox: the change stamp, poll, header, reclaimable space ----------------------------------


def test_poll(tree: FolderTree) -> None:
    """poll() looks at the folder again only when something moved, and lists a directory once
    more when its mtime settles (a second change in the same mtime tick would not show)."""
    mailbox, _snap = tree.open(INBOX)
    assert mailbox.poll() is None  # nothing moved since the open
    age(tree.root / "new", tree.root / "cur")
    assert mailbox.poll() is not None  # the mtimes moved: listed again
    assert mailbox.poll() is None  # ... and settled: nothing to do now
    files.deliver(tree.root, MESSAGE)
    snap = mailbox.poll()
    assert snap is not None and len(snap.entries) == 1
    assert mailbox.resync().entries == snap.entries


def test_read_and_read_header(tree: FolderTree) -> None:
    files.deliver(tree.root, MESSAGE)
    mailbox, snap = tree.open(INBOX)
    [entry] = snap.entries
    assert mailbox.read(entry) == MESSAGE
    assert mailbox.read_header(entry) == b"From: a@example.org\nSubject: hi\n\n"


def test_reclaimable_size_counts_unshared_files_only(tree: FolderTree) -> None:
    tree.create("Archive")
    files.deliver(tree.root, MESSAGE, flags=TRASHED)
    files.deliver(tree.root, MESSAGE + b"more\n", flags=TRASHED)
    inbox, snap = tree.open(INBOX)
    archive, _ = tree.open("Archive")
    archive.copy_in(inbox, snap.entries[:1])  # a hard link: expunging frees nothing of it
    assert inbox.reclaimable_size(snap.entries) == len(MESSAGE) + 5
    assert inbox.reclaimable_size([]) == 0


# -- the POP3 maildrop ---------------------------------------------------------------------------


def _try_open(base: str, result: multiprocessing.queues.Queue) -> None:
    try:
        drop = Maildrop.open(Path(base), "bob")
    except StoreBusy:
        result.put("busy")
        return
    result.put("opened")
    drop.release()


def test_maildrop_is_exclusive(tmp_path: Path) -> None:
    results = CTX.Queue()

    def attempt() -> str:
        proc = CTX.Process(target=_try_open, args=(str(tmp_path), results))
        proc.start()
        proc.join(10)
        return results.get(timeout=10)

    drop = Maildrop.open(tmp_path, "bob")
    assert attempt() == "busy"
    drop.release()
    drop.release()  # twice is fine (QUIT, then the end of the session)
    assert attempt() == "opened"


def test_maildrop_is_created_when_missing(tmp_path: Path) -> None:
    drop = Maildrop.open(tmp_path, "carol")
    assert files.is_maildir(tmp_path / "carol")
    assert drop.messages == []
    drop.release()


def test_maildrop_refuses_unsafe_names(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Maildrop.open(tmp_path, "../carol")


def test_maildrop_lists_crlf_sizes(tmp_path: Path) -> None:
    folder = tmp_path / "bob"
    files.ensure_maildir(folder)
    delivered = files.deliver(folder, MESSAGE)  # the name carries ,W=
    (folder / "cur" / "1700000000.M1.mta:2,S").write_bytes(b"a\nb\n")  # no size in the name
    drop = Maildrop.open(tmp_path, "bob")
    sizes = {m.key: m.size for m in drop.messages}
    assert sizes == {"1700000000.M1.mta": 6, delivered.key: len(files.to_crlf(MESSAGE))}
    assert [m.deleted for m in drop.messages] == [False, False]
    again = Mailbox(folder)  # the size is cached for the next login
    assert [again.known_size(e) for e in again.sync().entries] == [6, len(files.to_crlf(MESSAGE))]
    assert drop.read(drop.messages[0]) == b"a\nb\n"
    drop.release()


def test_maildrop_deletes_only_at_commit(tmp_path: Path) -> None:
    folder = tmp_path / "bob"
    files.ensure_maildir(folder)
    for _ in range(3):
        files.deliver(folder, MESSAGE)
    drop = Maildrop.open(tmp_path, "bob")
    drop.messages[0].deleted = drop.messages[2].deleted = True
    assert len(files.list_messages(folder)) == 3  # DELE marks only
    drop.release()
    assert len(files.list_messages(folder)) == 3  # no commit, no deletion

    drop = Maildrop.open(tmp_path, "bob")
    kept = drop.messages[1].key
    drop.messages[0].deleted = drop.messages[2].deleted = True
    assert drop.commit() == []
    drop.release()
    assert [m.key for m in files.list_messages(folder)] == [kept]


def test_maildrop_commit_reports_what_stayed(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "bob"
    files.ensure_maildir(folder)
    files.deliver(folder, MESSAGE)
    drop = Maildrop.open(tmp_path, "bob")
    drop.messages[0].deleted = True

    def refuse(path) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(files.os, "unlink", refuse)
    assert drop.commit() == [drop.messages[0]]
    monkeypatch.undo()
    drop.release()
    assert len(files.list_messages(folder)) == 1


def test_maildrop_login_stamp(tmp_path: Path) -> None:
    assert Maildrop.last_login(tmp_path, "bob") is None
    assert Maildrop.last_login(tmp_path, "../bob") is None
    drop = Maildrop.open(tmp_path, "bob")
    assert Maildrop.last_login(tmp_path, "bob") is None  # opening alone is no login
    before = time.time()
    drop.stamp_login()
    last = Maildrop.last_login(tmp_path, "bob")
    assert last is not None and before - 1 <= last <= time.time() + 1
    drop.release()


# -- a user's maildir as a whole (MSMP ADD and DELE) ---------------------------------------------


def test_create_user_maildir(tmp_path: Path) -> None:
    create_user_maildir(tmp_path, "dave")
    assert sorted(os.listdir(tmp_path / "dave")) == ["cur", "new", "tmp"]
    create_user_maildir(tmp_path, "dave")  # again: left as it is
    with pytest.raises(StoreError):
        create_user_maildir(tmp_path, "../dave")


def test_retire_user_maildir_moves_it_aside(tmp_path: Path) -> None:
    create_user_maildir(tmp_path, "dave")
    files.deliver(tmp_path / "dave", MESSAGE)
    first = retire_user_maildir(tmp_path, "dave")
    assert first is not None and first.parent == tmp_path / DELETED_DIR
    assert first.name.startswith("dave.")
    assert not (tmp_path / "dave").exists()
    assert len(files.list_messages(first)) == 1  # the mail is kept
    create_user_maildir(tmp_path, "dave")
    second = retire_user_maildir(tmp_path, "dave")
    assert second is not None and second != first and first.exists()


def test_retire_user_maildir_without_one(tmp_path: Path) -> None:
    assert retire_user_maildir(tmp_path, "nobody") is None
    assert not (tmp_path / DELETED_DIR).exists()
    with pytest.raises(StoreError):
        retire_user_maildir(tmp_path, "../nobody")
