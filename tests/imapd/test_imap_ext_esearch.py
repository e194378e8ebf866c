"""ESEARCH (RFC 4731) over real sockets: RETURN options, the UID indicator, empty results, and the
MODSEQ return data of CONDSTORE (RFC 7162 3.1.10)."""

from __future__ import annotations

import re

import pytest

from support.imap import shared_imapd
from support.site import deliver

shared = shared_imapd("imap-ext-esearch")


@pytest.fixture
def client(shared):
    """INBOX with 6 messages; UIDs 1 2 4 5 6 7 (3 was expunged); 2, 5 and 7 \\Seen."""
    server = shared.account()
    maildir = server.maildir()
    for n in range(1, 8):
        deliver(
            maildir,
            f"Subject: e{n}\n\nbody {n}\n".encode(),
            subdir="cur",
            name=f"{1700000000 + n}.M{n}P7.es:2,{'S' if n in (2, 5, 7) else ''}",
        )
    client = server.raw_select()
    client.ok("UID STORE 3 +FLAGS.SILENT (\\Deleted)")
    client.ok("EXPUNGE")
    return client


def test_return_options(client):
    tag = f"t{client.counter + 1}"
    assert client.ok("SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN") == [
        f'* ESEARCH (TAG "{tag}") MIN 1 MAX 5 ALL 1,3,5 COUNT 3\r\n'.encode()
    ]
    tag = f"t{client.counter + 1}"
    assert client.ok("UID SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN") == [
        f'* ESEARCH (TAG "{tag}") UID MIN 1 MAX 6 ALL 1,4,6 COUNT 3\r\n'.encode()
    ]
    tag = f"t{client.counter + 1}"
    assert client.ok("SEARCH RETURN () SEEN") == [  # RETURN () means ALL
        f'* ESEARCH (TAG "{tag}") ALL 2,4,6\r\n'.encode()
    ]
    tag = f"t{client.counter + 1}"
    assert client.ok("UID SEARCH RETURN (COUNT) ALL") == [
        f'* ESEARCH (TAG "{tag}") UID COUNT 6\r\n'.encode()
    ]
    # A plain SEARCH still answers the RFC 3501 way.
    assert client.ok("SEARCH UNSEEN") == [b"* SEARCH 1 3 5\r\n"]


def test_no_match(client):
    tag = f"t{client.counter + 1}"
    assert client.ok("SEARCH RETURN (MIN MAX) SUBJECT nothing-like-this") == [
        f'* ESEARCH (TAG "{tag}")\r\n'.encode()
    ]
    tag = f"t{client.counter + 1}"
    assert client.ok("UID SEARCH RETURN (MIN ALL COUNT) SUBJECT nothing-like-this") == [
        f'* ESEARCH (TAG "{tag}") UID COUNT 0\r\n'.encode()
    ]


def test_modseq_return_data(client):
    # Give messages 3 and 5 (UIDs 4 and 6) newer MODSEQs, 5's the newest.
    client.ok("ENABLE CONDSTORE")
    lines = client.ok("STORE 3 +FLAGS (\\Flagged)")
    low = int(re.search(rb"MODSEQ \((\d+)\)", lines[0]).group(1))  # type: ignore[union-attr]
    lines = client.ok("STORE 5 +FLAGS (\\Flagged)")
    high = int(re.search(rb"MODSEQ \((\d+)\)", lines[0]).group(1))  # type: ignore[union-attr]
    assert high > low
    tag = f"t{client.counter + 1}"
    assert client.ok(f"SEARCH RETURN (MIN) MODSEQ {low}") == [
        f'* ESEARCH (TAG "{tag}") MIN 3 MODSEQ {low}\r\n'.encode()
    ]
    tag = f"t{client.counter + 1}"
    assert client.ok(f"SEARCH RETURN (MAX) MODSEQ {low}") == [
        f'* ESEARCH (TAG "{tag}") MAX 5 MODSEQ {high}\r\n'.encode()
    ]
    tag = f"t{client.counter + 1}"
    assert client.ok(f"UID SEARCH RETURN (ALL) MODSEQ {low}") == [
        f'* ESEARCH (TAG "{tag}") UID ALL 4,6 MODSEQ {high}\r\n'.encode()
    ]
    tag = f"t{client.counter + 1}"
    assert client.ok(f"SEARCH RETURN (COUNT) MODSEQ {high + 1}") == [
        f'* ESEARCH (TAG "{tag}") COUNT 0\r\n'.encode()
    ]
    assert client.ok(f"SEARCH MODSEQ {low}") == [f"* SEARCH 3 5 (MODSEQ {high})\r\n".encode()]
    assert client.ok(f"SEARCH MODSEQ {high + 1}") == [b"* SEARCH\r\n"]


def test_bad_return_options(client):
    assert client.status("SEARCH RETURN (BOGUS) ALL") == b"BAD"
    assert client.status("SEARCH RETURN (MIN") == b"BAD"
    assert client.status("SEARCH RETURN (MIN)") == b"BAD"
    client.alive()


def test_esearch_with_imaplib(shared):
    server = shared.account()
    deliver(server.maildir(), b"Subject: one\n\nbody\n")
    lib = server.imaplib()
    lib.select("INBOX")
    typ, data = lib._simple_command("UID", "SEARCH", "RETURN", "(COUNT MAX)", "ALL")
    assert typ == "OK"
    typ, data = lib._untagged_response(typ, data, "ESEARCH")
    assert re.fullmatch(rb'\(TAG "\w+"\) UID MAX 1 COUNT 1', data[0]), data
    lib.logout()
