"""The prefetch helper of a big FETCH, SORT or THREAD (imapd/prefetch.py): a forked process
derives three messages of five (sizes, ENVELOPEs and searched headers; sort facts); the values
are those the session derives itself; a message that vanished comes back as a StoreError; a
helper that dies leaves the rest to the session; the helper is reaped whatever happens; and a
FETCH of a folder's envelopes, a SORT or a THREAD that uses it answers what the same command
answers from the cache."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from common.store import StoreError, maildir
from common.store.mailbox import Mailbox
from imapd import prefetch
from imapd.commands import fetch
from imapd.message import MessageView
from support.daemons import wait_for
from support.imap import crlf, start_imapd
from support.site import deliver
from support.sortref import (
    generate,
    messages,
    render,
    sort,
    thread_orderedsubject,
    thread_references,
)


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
    helper = prefetch.Prefetch(fetch.fetch_work(box.read), entries, -1)
    try:
        for index, entry in enumerate(entries):
            if not helper.mine(index):
                continue
            size, envelope, headers = fetch.derived(helper.get(entry)) or (0, b"", b"")
            data = box.read(entry)
            assert (size, envelope, headers) == fetch.derive(data)
            assert envelope == MessageView(maildir.to_crlf(data)).envelope()
            assert size == len(maildir.to_crlf(data))
    finally:
        helper.close()
    assert no_children()


def test_a_vanished_message_and_a_dead_helper(tmp_path: Path) -> None:
    box = folder_of(tmp_path / "box", 8)
    entries = box.snapshot().entries
    theirs = [e for i, e in enumerate(entries) if i % prefetch.SHARE_OF in prefetch.SHARE]
    os.unlink(box.path / theirs[1].subdir / theirs[1].name)  # the helper's second message
    real_read = box.read

    def read(entry):  # the helper dies at its third message
        if entry is theirs[2]:
            os._exit(3)
        return real_read(entry)

    helper = prefetch.Prefetch(fetch.fetch_work(read), entries, -1)
    try:
        assert [helper.mine(i) for i in range(len(entries))] == [e in theirs for e in entries]
        assert helper.get(theirs[0]) is not None
        with pytest.raises(StoreError):
            helper.get(theirs[1])
        assert helper.get(theirs[2]) is None  # then the session derives it
        assert helper.get(theirs[3]) is None
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


def test_a_big_first_sort_and_thread(daemons, site):
    """2,500 messages whose sort facts nobody derived yet: SORT and THREAD (with a helper) give
    the reference's answers (tests/support/sortref.py), and the same from the cache in the next
    session, and after the cache was deleted."""
    path = site.mail / "alice"
    generated = generate(5, 2500)
    for n, message in enumerate(generated, 1):
        file = deliver(path, message.data, subdir="cur", name=f"{1700000000 + n}.M{n}P9.big:2,")
        os.utime(file, (message.internal, message.internal))
    msgs = messages(generated, list(range(1, 2501)), [len(crlf(g.data)) for g in generated])
    programs = {
        "SUBJECT": [("SUBJECT", False)],
        "REVERSE DATE FROM": [("DATE", True), ("FROM", False)],
        "DISPLAYFROM ARRIVAL": [("DISPLAYFROM", False), ("ARRIVAL", False)],
    }
    expected = [
        "* SORT " + " ".join(str(m.seq) for m in sort(msgs, program))
        for program in programs.values()
    ]
    for reference in (thread_references, thread_orderedsubject):
        expected.append("* THREAD " + render(reference(msgs), lambda m: m.seq))
    commands = [f"SORT ({text}) UTF-8 ALL" for text in programs]
    commands += ["THREAD REFERENCES UTF-8 ALL", "THREAD ORDEREDSUBJECT UTF-8 ALL"]
    server = start_imapd(daemons, site)

    def answers() -> list[str]:
        client = server.raw_login()
        client.ok("SELECT INBOX")
        found = [b"".join(client.ok(command)).decode().rstrip("\r\n") for command in commands]
        client.ok("UNSELECT")  # the cache is written when the folder is left
        client.ok("LOGOUT")
        return found

    assert answers() == expected  # derived, three messages of five by the helper
    assert answers() == expected  # from the cache (the threads kept in the folder)
    (path / "maildaemons-cache").unlink()
    assert answers() == expected
    # Another set of messages: the threads kept are not theirs.
    client = server.raw_login()
    client.ok("SELECT INBOX")
    client.ok("UID STORE 10 +FLAGS (\\Deleted)")
    client.ok("EXPUNGE")
    rest = generated[:9] + generated[10:]
    uids = [*range(1, 10), *range(11, 2501)]
    msgs = messages(rest, uids, [len(crlf(g.data)) for g in rest])
    for algorithm, reference in (
        ("REFERENCES", thread_references),
        ("ORDEREDSUBJECT", thread_orderedsubject),
    ):
        for numbered, number in (("", lambda m: m.seq), ("UID ", lambda m: m.uid)):
            answer = client.ok(f"{numbered}THREAD {algorithm} UTF-8 ALL")
            assert answer == [f"* THREAD {render(reference(msgs), number)}\r\n".encode()]
    client.ok("LOGOUT")
    server.assert_healthy()
