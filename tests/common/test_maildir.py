"""common/store/maildir.py: delivery only through tmp/, names, flags and keys, CRLF sizes, listing,
reading and removing across renames, and the POP3 maildrop lock."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal

import pytest

from common.store import maildir
from common.store.errors import MailboxNotFound, MessageGone, StoreBusy, StoreError
from common.store.flags import flags_suffix
from common.store.maildir import MessageFile, crlf_size, deliver, to_crlf, to_lf
from common.store.maildrop import MaildropLock


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "alice"
    maildir.ensure_maildir(path)
    return path


# -- delivery --------------------------------------------------------------------------------


def test_deliver_goes_through_tmp(folder, monkeypatch):
    renames = []
    real_rename = os.rename

    def recording_rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        def where(name, dir_fd):  # relative to a directory fd: what that fd is
            base = os.readlink(f"/proc/self/fd/{dir_fd}") if dir_fd is not None else ""
            return os.path.join(base, os.fspath(name))

        renames.append((where(src, src_dir_fd), where(dst, dst_dir_fd)))
        real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(os, "rename", recording_rename)
    data = b"Subject: x\n\nbody\n"
    message = deliver(folder, data)
    assert len(renames) == 1
    src, dst = renames[0]
    assert os.path.dirname(src) == str(folder / "tmp")
    assert os.path.dirname(dst) == str(folder / "new")
    assert os.listdir(folder / "tmp") == []
    assert (folder / message.relpath).read_bytes() == data
    assert message.subdir == "new" and message.letters == ""
    assert message.stored_size("S") == len(data)
    assert message.stored_size("W") == len(to_crlf(data))
    assert maildir.message_size(folder, message) == len(to_crlf(data))


def test_deliver_with_flags_goes_to_cur(folder):
    message = deliver(folder, b"x\n", flags="S!FS")
    assert message.subdir == "cur"
    assert message.name.endswith(":2,FS") and message.letters == "FS"
    assert deliver(folder, b"y\n", subdir="cur").name.endswith(":2,")


def test_failed_delivery_leaves_nothing(folder, tmp_path):
    (folder / "new").rmdir()
    with pytest.raises(StoreError):
        deliver(folder, b"Subject: lost?\n\n")
    assert os.listdir(folder / "tmp") == [], "no half message left in tmp/"
    with pytest.raises(MailboxNotFound):
        deliver(tmp_path / "nosuchfolder", b"x")
    assert not (tmp_path / "nosuchfolder").exists()


def test_delivered_names_are_unique(folder):
    names = {deliver(folder, b"%d\n" % n).key for n in range(300)}
    assert len(names) == 300
    assert len(os.listdir(folder / "new")) == 300


# -- names, keys, flags ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, key, flags, size_s, size_w",
    [
        ("1700000000.M1P2.host", "1700000000.M1P2.host", "", None, None),
        ("1700000000.M1P2.host:2,S", "1700000000.M1P2.host", "S", None, None),
        ("1700000000.M1P2.host,S=10,W=12:2,FRS", "1700000000.M1P2.host,S=10,W=12", "FRS", 10, 12),
        ("1700000000.M1P2.host,S=7:2,", "1700000000.M1P2.host,S=7", "", 7, None),
        ("1700000000.M1P2.host:1,experimental", "1700000000.M1P2.host", "", None, None),
        ("1700000000.M1P2.ho\\072st:2,T", "1700000000.M1P2.ho\\072st", "T", None, None),
    ],
)
def test_message_file_parse(name, key, flags, size_s, size_w):
    message = MessageFile("cur", name)
    assert message.key == key
    assert message.letters == flags
    assert message.stored_size("S") == size_s
    assert message.stored_size("W") == size_w
    assert message.relpath == f"cur/{name}"


@pytest.mark.parametrize(
    "given, suffix",
    [
        ("", ":2,"),
        ("S", ":2,S"),
        ("TSRPFD", ":2,DFPRST"),
        ("SSS", ":2,S"),
        ("S!1 :,", ":2,S"),
        ("baS", ":2,Sab"),  # keyword letters a-z follow the system flags
    ],
)
def test_flags_suffix(given, suffix):
    assert flags_suffix(given) == suffix


# -- CRLF form and size ----------------------------------------------------------------------

CRLF_TABLE = [
    (b"", b""),
    (b"a", b"a"),  # no final line end is added (RFC 822 octets as stored; as Dovecot)
    (b"a\n", b"a\r\n"),
    (b"a\r\n", b"a\r\n"),
    (b"\n", b"\r\n"),
    (b"\r", b"\r"),
    (b"\r\n", b"\r\n"),
    (b"\n\r", b"\r\n\r"),
    (b"\r\r\n", b"\r\r\n"),
    (b"a\rb\n", b"a\rb\r\n"),
    (b"a\r\n\nb", b"a\r\n\r\nb"),
    (b".\n..\n", b".\r\n..\r\n"),
    (b"x" * 1_000_000, b"x" * 1_000_000),
    (b"\n" * 1000, b"\r\n" * 1000),
    (b"\x00\xff\n", b"\x00\xff\r\n"),
]


@pytest.mark.parametrize("data, wire", CRLF_TABLE, ids=range(len(CRLF_TABLE)))
def test_to_crlf_and_crlf_size_agree(data, wire):
    assert to_crlf(data) == wire
    assert crlf_size(data) == len(wire)


def test_crlf_size_exhaustive_over_short_inputs():
    """Every string up to 7 bytes over the bytes that matter: sizes agree, no bare LF is sent."""
    for length in range(8):
        for chars in itertools.product((b"\r", b"\n", b".", b"a"), repeat=length):
            data = b"".join(chars)
            wire = to_crlf(data)
            assert crlf_size(data) == len(wire), data
            assert wire.count(b"\n") == wire.count(b"\r\n"), data
            assert wire.endswith(b"\r\n") == data.endswith(b"\n"), data
            assert to_crlf(wire) == wire, data


def test_to_lf_round_trip():
    for data in (b"a\nb\n", b"\n\n", b"x\ry\n", b""):
        assert to_lf(to_crlf(data)) == data


# -- listing, reading, removing --------------------------------------------------------------


def test_list_messages_order_and_hidden_files(folder):
    (folder / "new" / "1700000002.M1.host").write_bytes(b"2")
    (folder / "cur" / "1700000001.M1.host:2,S").write_bytes(b"1")
    (folder / "new" / "900000000.M1.host").write_bytes(b"0")
    (folder / "new" / ".nfs000123").write_bytes(b"hidden")
    names = [m.name for m in maildir.list_messages(folder)]
    assert names == ["900000000.M1.host", "1700000001.M1.host:2,S", "1700000002.M1.host"]
    with pytest.raises(MailboxNotFound):
        maildir.list_messages(folder.parent / "nobody")


def test_read_and_remove_follow_renames(folder):
    first = deliver(folder, b"one\n")
    second = deliver(folder, b"two\n")
    os.rename(folder / first.relpath, folder / "cur" / (first.name + ":2,S"))
    assert maildir.read_message(folder, first) == b"one\n"
    assert first.relpath == f"cur/{first.name}" and first.name.endswith(":2,S")
    os.rename(folder / second.relpath, folder / "cur" / (second.name + ":2,RS"))
    stale = MessageFile("new", second.name)
    assert maildir.remove_messages(folder, [stale]) == []
    assert [m.key for m in maildir.list_messages(folder)] == [first.key]
    gone = MessageFile("new", "1.gone.host")
    with pytest.raises(StoreError):
        maildir.read_message(folder, gone)
    assert maildir.remove_messages(folder, [gone]) == [], "already gone is not a failure"


def test_reads_follow_many_renames_and_a_vanished_message_is_gone(folder):
    """Every file-level read follows renames in a bounded loop: new/ -> cur/, then flags
    changed again and again between the lookup and the open, as a busy session makes them."""
    message = deliver(folder, b"Subject: x\n\nbody\n")
    stale = MessageFile(message.subdir, message.name)
    os.rename(folder / message.relpath, folder / "cur" / (message.name + ":2,"))
    renames = iter([":2,S", ":2,FS", ":2,F", ":2,FRS"])
    real_find = maildir.find_by_key

    def find_then_rename(where, key):  # another session renames right after each lookup
        found = real_find(where, key)
        suffix = next(renames, None)
        if found is not None and suffix is not None:
            os.rename(where / found.relpath, where / "cur" / (found.key + suffix))
        return found

    maildir.find_by_key = find_then_rename  # type: ignore[assignment]
    try:
        assert maildir.read_header(folder, stale) == b"Subject: x\n\n"
    finally:
        maildir.find_by_key = real_find  # type: ignore[assignment]
    assert stale.name.endswith(":2,FRS")
    assert maildir.modification_time(folder, MessageFile("new", message.name)) > 0
    os.unlink(folder / stale.relpath)
    for read in (maildir.read_message, maildir.read_header, maildir.modification_time):
        with pytest.raises(MessageGone):
            read(folder, MessageFile("cur", stale.name))


def test_a_file_that_keeps_moving_is_a_store_error_not_gone(folder):
    message = deliver(folder, b"x\n")

    def always_moved(path):
        raise FileNotFoundError(path)

    with pytest.raises(StoreError) as raised:
        maildir.follow(folder, message, always_moved)
    assert not isinstance(raised.value, MessageGone)
    with pytest.raises(StoreError):  # another error than ENOENT is no reason to look again
        maildir.follow(folder, message, lambda path: os.rmdir(path))


def test_remove_reports_what_stayed(folder):
    kept = deliver(folder, b"x\n")
    (folder / kept.relpath).unlink()
    (folder / kept.relpath).mkdir()
    assert maildir.remove_messages(folder, [kept]) == [kept]


def test_message_size_counts_when_the_name_has_no_w(folder):
    (folder / "new" / "1700000000.M1.host").write_bytes(b"a\nb\r\nc")
    [message] = maildir.list_messages(folder)
    assert maildir.message_size(folder, message) == len(b"a\r\nb\r\nc")


@pytest.mark.parametrize("user", ["../etc", "a/b", "", ".."])
def test_user_maildir_refuses_unsafe_names(tmp_path, user):
    with pytest.raises(StoreError):
        maildir.user_maildir(tmp_path, user)


# -- the maildrop lock -----------------------------------------------------------------------


def _try_lock(path: str, result: multiprocessing.queues.Queue) -> None:
    lock = MaildropLock(maildir.Path(path))
    try:
        lock.acquire()
    except StoreBusy:
        result.put("busy")
        return
    result.put("locked")
    lock.release()


def _hold_lock(path: str, ready: multiprocessing.synchronize.Event) -> None:
    MaildropLock(maildir.Path(path)).acquire()
    ready.set()
    signal.pause()


def test_maildrop_lock_is_exclusive_between_processes(folder):
    context = multiprocessing.get_context("fork")
    results = context.Queue()

    def attempt() -> str:
        proc = context.Process(target=_try_lock, args=(str(folder), results))
        proc.start()
        proc.join(10)
        return results.get(timeout=10)

    lock = MaildropLock(folder)
    lock.acquire()
    assert attempt() == "busy"
    lock.release()
    assert attempt() == "locked"
    ready = context.Event()
    holder = context.Process(target=_hold_lock, args=(str(folder), ready))
    holder.start()
    assert ready.wait(10)
    assert attempt() == "busy"
    os.kill(holder.pid, signal.SIGKILL)  # a killed session frees its maildrop
    holder.join(10)
    assert attempt() == "locked"


def test_maildrop_lock_on_a_missing_folder(tmp_path):
    with pytest.raises(MailboxNotFound):
        MaildropLock(tmp_path / "nobody").acquire()
