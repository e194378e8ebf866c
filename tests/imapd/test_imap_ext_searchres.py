"""SEARCHRES (RFC 5182) over real sockets: RETURN (SAVE) keeps a SEARCH or SORT result that `$`
names in later commands (FETCH, STORE, COPY, SEARCH, their UID forms), MIN/MAX saved alone, the
result losing expunged messages and emptied by a failed SEARCH or a new SELECT."""

from __future__ import annotations

import pytest

from support.imap import shared_imapd
from support.site import deliver

shared = shared_imapd("imap-ext-searchres")


@pytest.fixture
def client(shared):
    server = shared.account()
    senders = ["Smith", "Jones", "Smith", "Brown", "Jones", "Green"]
    for n, sender in enumerate(senders, 1):
        flags = "F" if n in (2, 4, 5, 6) else ""
        deliver(
            server.maildir(),
            f"From: {sender} <{sender.lower()}@example.com>\nSubject: m{n}\n\nbody\n".encode(),
            subdir="cur",
            name=f"{1700000000 + n}.M{n}P6.sr:2,{flags}",
        )
    client = server.raw_select()
    client.ok("UID STORE 1 +FLAGS (\\Deleted)")
    client.ok("EXPUNGE")  # sequence numbers 1..5 are UIDs 2..6
    return client


def test_rfc_5182_examples(client):
    # A282: SAVE alone answers nothing but the tagged OK.
    assert client.ok('SEARCH RETURN (SAVE) FLAGGED NOT FROM "Smith"') == []
    assert client.ok("FETCH $ (UID)") == [
        b"* 1 FETCH (UID 2)\r\n",
        b"* 3 FETCH (UID 4)\r\n",
        b"* 4 FETCH (UID 5)\r\n",
        b"* 5 FETCH (UID 6)\r\n",
    ]
    # A301/A302: a UID SEARCH's result, used by UID COPY.
    client.ok("CREATE SavedMessages")
    assert client.ok('UID SEARCH RETURN (SAVE) NOT FROM "Smith" UID 3:5') == []
    _lines, done = client.cmd("UID COPY $ SavedMessages")
    assert b"[COPYUID " in done and b" 4:5 " in done
    # SAVE with MIN and MAX keeps only those; STORE on them.
    tag = f"t{client.counter + 1}"
    assert client.ok("SEARCH RETURN (SAVE MIN MAX) FLAGGED") == [
        f'* ESEARCH (TAG "{tag}") MIN 1 MAX 5\r\n'.encode()
    ]
    assert client.ok("STORE $ +FLAGS.SILENT (\\Answered)") == []
    assert client.ok("SEARCH ANSWERED") == [b"* SEARCH 1 5\r\n"]
    assert client.ok("SEARCH $ FROM jones") == [b"* SEARCH 1\r\n"]
    assert client.ok("UID SEARCH OR $ 2") == [b"* SEARCH 2 3 6\r\n"]


def test_sort_save_and_the_saved_result_over_time(client):
    tag = f"t{client.counter + 1}"
    assert client.ok("SORT RETURN (SAVE ALL MAX) (REVERSE SUBJECT) UTF-8 FLAGGED") == [
        f'* ESEARCH (TAG "{tag}") MAX 1 ALL 5,4,3,1\r\n'.encode()
    ]
    assert client.ok("FETCH $ (UID)") == [  # ALL with MAX: the whole result is saved
        b"* 1 FETCH (UID 2)\r\n",
        b"* 3 FETCH (UID 4)\r\n",
        b"* 4 FETCH (UID 5)\r\n",
        b"* 5 FETCH (UID 6)\r\n",
    ]
    client.ok("STORE 3 +FLAGS (\\Deleted)")
    client.ok("EXPUNGE")
    assert client.ok("UID FETCH $ (UID)") == [  # the expunged message left the result
        b"* 1 FETCH (UID 2)\r\n",
        b"* 3 FETCH (UID 5)\r\n",
        b"* 4 FETCH (UID 6)\r\n",
    ]
    # A SEARCH that fails saves the empty result.
    _lines, done = client.cmd("SEARCH RETURN (SAVE) CHARSET KOI8-R ALL")
    assert b"NO [BADCHARSET" in done
    assert client.ok("FETCH $ (UID)") == []
    client.ok("SEARCH RETURN (SAVE) ALL")
    client.ok("SELECT INBOX")  # a new selection starts empty
    assert client.ok("FETCH $ (UID)") == []
    # "$" is a whole sequence set or nothing.
    for bad in (
        "FETCH $,1 (UID)",
        "FETCH $:2 (UID)",
        "SEARCH $1",
        "SELECT INBOX (QRESYNC (1 1 $))",
    ):
        assert client.status(bad) == b"BAD", bad
    client.alive()
