"""The prefetch helper of a big FETCH (imapd/prefetch.py): a forked process derives every second
message's size, ENVELOPE and searched headers; the values are those the session derives itself;
a message that vanished comes back as a StoreError; a helper that dies leaves the rest to the
session; the helper is reaped whatever happens; and a FETCH of a folder's envelopes that uses it
answers what a FETCH from the cache answers."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from common.store import StoreError, maildir
from common.store.mailbox import Mailbox
from imapd import prefetch
from imapd.message import MessageView
from support.daemons import wait_for
from support.imap import start_imapd


def folder_of(path: Path, count: int) -> Mailbox:
    maildir.ensure_maildir(path)
    for number in range(count):
        maildir.deliver(
            path,
            b"From: =?utf-8?q?J=C3=BCrgen?= <j%d@example.org>\nTo: a@b, c@d (C)\n"
            b"Subject: number %d\nDate: Mon, 2 Sep 2024 10:00:00 +0000\n\nbody %d\n"
            % (number, number, number),
        )
    box = Mailbox(path)
    box.sync()
    return box


def no_children() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_the_helper_derives_what_the_session_would(tmp_path: Path) -> None:
    box = folder_of(tmp_path / "box", 9)
    entries = box.snapshot().entries
    helper = prefetch.Prefetch(box.read, entries, -1)
    try:
        for index, entry in enumerate(entries):
            if not helper.mine(index):
                continue
            size, envelope, headers = helper.get(entry) or (0, b"", b"")
            data = box.read(entry)
            assert (size, envelope, headers) == prefetch.derive(data)
            assert envelope == MessageView(maildir.to_crlf(data)).envelope()
            assert size == len(maildir.to_crlf(data))
    finally:
        helper.close()
    assert no_children()


def test_a_vanished_message_and_a_dead_helper(tmp_path: Path) -> None:
    box = folder_of(tmp_path / "box", 8)
    entries = box.snapshot().entries
    os.unlink(box.path / entries[3].subdir / entries[3].name)  # the helper's second message
    real_read = box.read

    def read(entry):  # the helper dies at its third message
        if entry is entries[5]:
            os._exit(3)
        return real_read(entry)

    helper = prefetch.Prefetch(read, entries, -1)
    try:
        assert helper.get(entries[1]) is not None
        with pytest.raises(StoreError):
            helper.get(entries[3])
        assert helper.get(entries[5]) is None  # then the session derives it
        assert helper.get(entries[7]) is None
    finally:
        helper.close()
    assert no_children()


def test_a_big_first_fetch_of_envelopes(daemons, site):
    """2,500 messages never seen: the first FETCH of envelopes (with a helper) answers what the
    second one (from the cache) answers, and what one after the cache was deleted answers; no
    helper is left behind."""
    path = site.mail / "alice"
    maildir.ensure_maildir(path)
    for number in range(2500):
        maildir.deliver(
            path,
            b"From: Someone %d <s%d@example.org>\nSubject: =?utf-8?b?w6Q=?= %d\n\nbody\n"
            % (number, number, number),
        )
    server = start_imapd(daemons, site)
    client = server.raw_login()
    client.ok("SELECT INBOX")
    first = client.ok("UID FETCH 1:* (UID RFC822.SIZE ENVELOPE)")
    second = client.ok("UID FETCH 1:* (UID RFC822.SIZE ENVELOPE)")
    assert len(first) == 2500 and first == second
    assert re.search(rb'ENVELOPE \(NIL "=\?utf-8\?b\?w6Q=\?= 7" \(\("Someone 7"', first[7])
    client.ok("LOGOUT")
    # The cache is disposable: deleted, it is rebuilt, and the answers are the same.
    cache = path / "maildaemons-cache"
    wait_for(cache.exists, what="the cache written at LOGOUT")
    cache.unlink()
    client = server.raw_login()
    client.ok("SELECT INBOX")
    assert client.ok("UID FETCH 1:* (UID RFC822.SIZE ENVELOPE)") == first
    client.ok("LOGOUT")
    server.assert_healthy()
