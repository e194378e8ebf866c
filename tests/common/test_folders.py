"""The Maildir++ folder tree (common/store/folders.py, common/store/names.py): folders `.Name`,
modified UTF-7 on disk, create/delete/rename with inferiors, RENAME INBOX, refused names,
subscriptions, special use and quota from `maildirsize`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.store import maildir
from common.store.errors import MailboxExists, MailboxNotFound, MailboxRefused
from common.store.folders import DEFAULT_FOLDERS, FolderTree
from common.store.mailbox import Mailbox
from common.store.names import InvalidName, UndecodableName, check_folder, check_username


@pytest.fixture
def tree(tmp_path: Path) -> FolderTree:
    root = tmp_path / "mail" / "alice"
    tree = FolderTree(root)
    tree.ensure_inbox()
    return tree


def put(tree: FolderTree, name: str, count: int = 1) -> list[int]:
    box = Mailbox(tree.path(name))
    return [
        box.append(f"Subject: {name} {n}\n\nbody\n".encode(), "S", None)[1] for n in range(count)
    ]


def dirs(tree: FolderTree) -> list[str]:
    return sorted(n for n in os.listdir(tree.root) if n.startswith(".") and n != ".")


def test_inbox_and_defaults(tmp_path: Path) -> None:
    tree = FolderTree(tmp_path / "bob")
    assert tree.names() == ["INBOX"]
    tree.ensure_inbox(DEFAULT_FOLDERS)
    assert maildir.is_maildir(tree.root)
    assert tree.names() == ["INBOX", *sorted(DEFAULT_FOLDERS)]
    assert sorted(tree.subscriptions()) == sorted(DEFAULT_FOLDERS)
    assert tree.special_use("Sent") == "\\Sent" and tree.special_use("Trash") == "\\Trash"
    assert tree.special_use("INBOX") is None
    # Only on first login: a deleted default folder is not re-created.
    tree.delete("Junk")
    tree.ensure_inbox(DEFAULT_FOLDERS)
    assert "Junk" not in tree.names()


def test_defaults_when_an_mta_made_the_inbox_first(tmp_path: Path) -> None:
    """A real server's new account: the MTA delivered before the first login."""
    root = tmp_path / "carol"
    maildir.ensure_maildir(root)
    maildir.deliver(root, b"Subject: welcome\n\nhi\n")
    tree = FolderTree(root)
    tree.ensure_inbox(DEFAULT_FOLDERS)
    assert tree.names() == ["INBOX", *sorted(DEFAULT_FOLDERS)]
    assert sorted(tree.subscriptions()) == sorted(DEFAULT_FOLDERS)
    assert len(Mailbox(root).sync().entries) == 1


def test_no_defaults_for_an_account_that_has_folders(tmp_path: Path) -> None:
    """An account moved from another server keeps its own folders and subscriptions only."""
    root = tmp_path / "dave"
    maildir.ensure_maildir(root / ".Sent Items")
    (root / "subscriptions").write_text("Sent Items\n")
    tree = FolderTree(root)
    tree.ensure_inbox(DEFAULT_FOLDERS)
    assert tree.names() == ["INBOX", "Sent Items"]
    assert tree.subscriptions() == ["Sent Items"]
    subscribed_only = FolderTree(tmp_path / "erin")
    maildir.ensure_maildir(subscribed_only.root)
    (subscribed_only.root / "subscriptions").write_text("INBOX\n")
    subscribed_only.ensure_inbox(DEFAULT_FOLDERS)
    assert subscribed_only.names() == ["INBOX"]


def test_create_and_exists(tree: FolderTree) -> None:
    tree.create("Projects")
    tree.create("Projects.2024")
    assert dirs(tree) == [".Projects", ".Projects.2024"]
    assert (tree.root / ".Projects" / "maildirfolder").exists()
    assert all((tree.root / ".Projects" / sub).is_dir() for sub in ("cur", "new", "tmp"))
    assert tree.exists("Projects") and tree.exists("inbox") and not tree.exists("Nope")
    assert tree.names() == ["INBOX", "Projects", "Projects.2024"]
    with pytest.raises(MailboxExists):
        tree.create("Projects")
    with pytest.raises(MailboxExists):
        tree.create("INBOX")
    with pytest.raises(MailboxExists):
        tree.create("Inbox")
    assert tree.has_children("Projects") and not tree.has_children("Projects.2024")


def test_courier_sent_folder_is_served(tree: FolderTree) -> None:
    """A `.Sent` folder as Courier/Dovecot left it, with cur/ files flagged `:2,S`."""
    sent = tree.root / ".Sent"
    maildir.ensure_maildir(sent)
    (sent / "maildirfolder").touch()
    (sent / "cur" / "1600000000.M1P1.host,S=20:2,S").write_bytes(b"Subject: sent\n\nhi\n")
    (sent / "courierimapuiddb").write_text("1 1600000000 2\n1 1600000000.M1P1.host,S=20\n")
    assert "Sent" in tree.names()
    assert tree.special_use("Sent") == "\\Sent"
    snap = Mailbox(tree.path("Sent")).sync(claim_recent=True)
    # New to IMAP here, so \Recent to the first session, wherever the file is (as Dovecot).
    assert [(e.uid, e.letters, snap.is_recent(e)) for e in snap.entries] == [(1, "S", True)]
    again = Mailbox(tree.path("Sent")).sync(claim_recent=True)
    assert [(e.uid, again.is_recent(e)) for e in again.entries] == [(1, False)]


def test_delete(tree: FolderTree) -> None:
    tree.create("Old")
    put(tree, "Old", 2)
    tree.subscribe("Old", True)
    tree.delete("Old")
    assert dirs(tree) == [] and "Old" in tree.subscriptions()  # RFC 3501 6.3.6
    with pytest.raises(MailboxNotFound):
        tree.delete("Old")
    with pytest.raises(MailboxRefused):
        tree.delete("INBOX")
    tree.create("A")
    tree.create("A.B")
    with pytest.raises(MailboxRefused):
        tree.delete("A")
    tree.delete("A.B")
    tree.delete("A")
    assert tree.names() == ["INBOX"]


def test_rename_moves_inferiors_and_messages(tree: FolderTree) -> None:
    for name in ("A", "A.B", "A.B.C", "AB"):
        tree.create(name)
    uids = put(tree, "A.B", 3)
    before = Mailbox(tree.path("A.B")).sync()
    tree.rename("A", "X")
    assert tree.names() == ["INBOX", "AB", "X", "X.B", "X.B.C"]
    after = Mailbox(tree.path("X.B")).sync()
    assert [e.uid for e in after.entries] == uids
    assert after.uidvalidity == before.uidvalidity
    # Into a new hierarchy level (its superior is created, RFC 3501 6.3.5), and onto names
    # that exist.
    tree.rename("X.B.C", "Y.Z")
    assert {"Y", "Y.Z"} <= set(tree.names()) and "X.B.C" not in tree.names()
    with pytest.raises(MailboxExists):
        tree.rename("X", "AB")
    with pytest.raises(MailboxExists):
        tree.rename("X", "INBOX")
    with pytest.raises(MailboxNotFound):
        tree.rename("Nope", "Other")
    with pytest.raises(MailboxRefused):
        tree.rename("X", "X.Sub")


def test_create_makes_every_superior_a_folder(tree: FolderTree) -> None:
    """RFC 3501 6.3.3: `CREATE a.b.c` creates `a` and `a.b` too, so that RENAME and DELETE
    can work on every level; a superior that exists is kept as it is."""
    tree.create("Keep")
    put(tree, "Keep")
    tree.create("Keep.Sub.Leaf")
    assert tree.names() == ["INBOX", "Keep", "Keep.Sub", "Keep.Sub.Leaf"]
    assert all((tree.path(n) / "maildirfolder").exists() for n in tree.names()[1:])
    assert len(Mailbox(tree.path("Keep")).sync().entries) == 1
    with pytest.raises(MailboxExists):
        tree.create("Keep.Sub")
    tree.rename("Keep.Sub", "Moved")
    assert tree.names() == ["INBOX", "Keep", "Moved", "Moved.Leaf"]
    tree.delete("Moved.Leaf")
    tree.delete("Moved")
    assert tree.names() == ["INBOX", "Keep"]


def test_a_level_without_a_folder_of_its_own_can_be_renamed(tree: FolderTree) -> None:
    """`.Lists.Python` without `.Lists`, as Courier or Dovecot may leave a tree."""
    maildir.ensure_maildir(tree.root / ".Lists.Python")
    put(tree, "Lists.Python")
    assert tree.names() == ["INBOX", "Lists.Python"]
    with pytest.raises(MailboxNotFound):
        tree.delete("Lists")
    tree.rename("Lists", "Groups")
    assert tree.names() == ["INBOX", "Groups", "Groups.Python"]
    assert len(Mailbox(tree.path("Groups.Python")).sync().entries) == 1
    with pytest.raises(MailboxNotFound):
        tree.rename("Lists", "Other")


def test_rename_onto_existing_inferior_changes_nothing(tree: FolderTree) -> None:
    """`B.x` exists without `B` (another server left it so): renaming `A` (with `A.x`) to `B`
    would have to merge `A.x` into `B.x`; it is refused before anything moves (it used to move
    `A` and then fail)."""
    for name in ("A", "A.x"):
        tree.create(name)
    maildir.ensure_maildir(tree.root / ".B.x")
    put(tree, "A.x")
    with pytest.raises(MailboxExists):
        tree.rename("A", "B")
    assert tree.names() == ["INBOX", "A", "A.x", "B.x"]
    assert len(Mailbox(tree.path("A.x")).sync().entries) == 1


def test_rename_inbox_moves_messages_out(tree: FolderTree) -> None:
    tree.create("Keep")
    box = Mailbox(tree.root)
    box.keywords.letters_for(["$Label1", "Work"], create=True)
    box.append(b"Subject: one\n\nbody\n", "Sb", None)
    maildir.deliver(tree.root, b"Subject: two\n\nbody\n")  # still in new/
    tree.rename("INBOX", "Old Mail")
    assert maildir.list_messages(tree.root) == []
    assert tree.names() == ["INBOX", "Keep", "Old Mail"]
    old = Mailbox(tree.path("Old Mail"))
    snap = old.sync()
    assert len(snap.entries) == 2
    assert sorted(old.read(e) for e in snap.entries) == [
        b"Subject: one\n\nbody\n",
        b"Subject: two\n\nbody\n",
    ]
    flagged = next(e for e in snap.entries if "S" in e.letters)
    assert old.keywords.decode(flagged.letters) == ["Work"], "keywords moved with the messages"
    # INBOX is still there, empty, and takes new mail.
    assert Mailbox(tree.root).sync().entries == []
    put(tree, "INBOX")
    with pytest.raises(MailboxExists):
        tree.rename("INBOX", "Keep")


@pytest.mark.parametrize(
    "name",
    [
        "..",
        "../x",
        "a..b",
        ".hidden",
        "trailing.",
        "a/b",
        "/etc",
        "a\\b",
        "tab\there",
        "nl\nx",
        "nul\x00",
        "del\x7f",
        "",
        "x" * 201,
        "INBOX.child",
        "inbox.Child",
    ],
)
def test_unsafe_folder_names_are_refused(tree: FolderTree, name: str) -> None:
    with pytest.raises(MailboxRefused):
        tree.create(name)
    with pytest.raises(MailboxRefused):
        tree.path(name)
    assert dirs(tree) == []
    assert sorted(os.listdir(tree.root.parent)) == ["alice"]


@pytest.mark.parametrize("name", ["a/b", "..", "a.", "\x01", ""])
def test_check_folder(name: str) -> None:
    with pytest.raises(InvalidName):
        check_folder(name)


@pytest.mark.parametrize("name", ["../bob", "a/b", ".x", "-x", "a b", "", "x" * 41, "é"])
def test_check_username(name: str) -> None:
    with pytest.raises(InvalidName):
        check_username(name)


def test_a_name_that_is_not_modified_utf7_denotes_no_folder(tree: FolderTree) -> None:
    """`a&b` as sent (UndecodableName) is not the folder `a&b` (sent as `a&-b`)."""
    tree.create("a&b")
    sent = UndecodableName("a&b")
    for call in (tree.create, tree.delete, tree.exists, tree.open, tree.path):
        with pytest.raises(MailboxRefused, match="modified UTF-7"):
            call(sent)
    with pytest.raises(MailboxRefused):
        tree.rename("a&b", sent)
    assert tree.names() == ["INBOX", "a&b"]


def test_folder_names_are_modified_utf7_on_disk(tree: FolderTree) -> None:
    for name in ("Entwürfe", "A&B", "日本語.子", "Ärger & Freude"):
        tree.create(name)
    assert dirs(tree) == sorted(
        [".Entw&APw-rfe", ".A&-B", ".&ZeVnLIqe-", ".&ZeVnLIqe-.&W1A-", ".&AMQ-rger &- Freude"]
    )
    assert tree.names() == ["INBOX", "A&B", "Entwürfe", "Ärger & Freude", "日本語", "日本語.子"]
    put(tree, "Entwürfe")
    assert len(Mailbox(tree.root / ".Entw&APw-rfe").sync().entries) == 1
    tree.rename("Entwürfe", "Brouillons été")
    assert ".Brouillons &AOk-t&AOk-" in dirs(tree)


def test_undecodable_directories_are_not_listed(tree: FolderTree) -> None:
    for bad in (".bad&name", ".plain-dir"):
        (tree.root / bad).mkdir()
    maildir.ensure_maildir(tree.root / ".bad&name")
    assert tree.names() == ["INBOX"]


def test_subscriptions(tree: FolderTree) -> None:
    assert tree.subscriptions() == []
    tree.subscribe("News", True)  # subscribing to a name that does not exist is allowed
    tree.subscribe("Entwürfe", True)
    tree.subscribe("News", True)
    assert tree.subscriptions() == ["News", "Entwürfe"]
    assert (tree.root / "subscriptions").read_text(encoding="utf-8") == "News\nEntwürfe\n"
    tree.subscribe("News", False)
    tree.subscribe("News", False)
    assert FolderTree(tree.root).subscriptions() == ["Entwürfe"]


def test_special_use_set_by_create(tree: FolderTree) -> None:
    tree.create("Papierkorb")
    tree.set_special_use("Papierkorb", "\\Trash")
    tree.set_special_use("Sent Items", "\\Sent")
    assert FolderTree(tree.root).special_use("Papierkorb") == "\\Trash"
    assert tree.special_use("Sent Items") == "\\Sent"
    assert tree.special_use("Other") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10000000S,1000C\n", {"S": (0, 10000000), "C": (0, 1000)}),
        # Courier pads lines to 14 bytes; deletions are negative lines.
        (
            "10000000S,1000C\n      3734 1\n        2048 2\n     -3734 -1\n",
            {"S": (2048, 10000000), "C": (2, 1000)},
        ),
        ("500C\n100 1\n", {"C": (1, 500)}),
        ("5000S\n100 1\ngarbage\n1 2 3\n", {"S": (100, 5000)}),
        # More deleted than counted (a recount is due): never negative.
        ("5000S\n-100 -1\n", {"S": (0, 5000)}),
        ("", {}),
        ("no quota here\n", {}),
    ],
)
def test_quota_from_maildirsize(
    tree: FolderTree, text: str, expected: dict[str, tuple[int, int]]
) -> None:
    (tree.root / "maildirsize").write_text(text)
    assert tree.quota() == expected


def test_no_maildirsize_no_quota(tree: FolderTree) -> None:
    assert tree.quota() == {}


def test_special_use_follows_rename_and_goes_with_delete(tmp_path: Path) -> None:
    tree = FolderTree(tmp_path / "u")
    tree.ensure_inbox()
    tree.create("Outbox")
    tree.set_special_use("Outbox", "\\Sent")
    tree.create("Outbox.Old")
    tree.set_special_use("Outbox.Old", "\\Archive")
    tree.rename("Outbox", "Gesendet")
    assert tree.special_use("Gesendet") == "\\Sent"
    assert tree.special_use("Gesendet.Old") == "\\Archive"
    assert tree.special_use("Outbox") is None
    tree.delete("Gesendet.Old")
    tree.create("Gesendet.Old")
    assert tree.special_use("Gesendet.Old") is None
