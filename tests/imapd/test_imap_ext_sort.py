"""SORT, SORT=DISPLAY, THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256, RFC 5957) and
ESORT (RFC 5267 3) over real sockets: the RFCs' examples, random mailboxes checked against the
independent reference in tests/support/sortref.py, imapclient's sort() and thread(), and bad
input."""

from __future__ import annotations

import os
import re

import pytest

from support.imap import crlf, shared_imapd
from support.site import deliver
from support.sortref import (
    generate,
    messages,
    render,
    sort,
    thread_orderedsubject,
    thread_references,
)

shared = shared_imapd("imap-ext-sort")


def fill(maildir, raws: list[bytes], internal: list[int] | None = None, after: int = 0) -> None:
    """Deliver `raws` into cur/ so that UID n is sequence number n (`after` messages given to
    the folder before them)."""
    for n, raw in enumerate(raws, after + 1):
        path = deliver(maildir, raw, subdir="cur", name=f"{1700000000 + n}.M{n}P5.sort:2,")
        if internal is not None:
            os.utime(path, (internal[n - after - 1], internal[n - after - 1]))


def msg(subject: str, date: str, extra: str = "") -> bytes:
    return f"Subject: {subject}\nDate: {date}\n{extra}\nbody\n".encode()


def numbers(line: bytes, verb: str) -> list[int]:
    assert line.startswith(f"* {verb}".encode()), line
    return [int(n) for n in line.split()[2:]]


def test_rfc_5256_sort_examples(shared):
    server = shared.account()
    day = "Feb 1994 10:00:00 +0000"
    fill(
        server.maildir(),
        [
            msg("b", f"1 {day}"),
            msg("c", f"1 {day}"),
            msg("Re: a", f"2 {day}"),
            msg("a", f"1 {day}"),
            msg("[list] a", f"3 {day}"),
        ],
    )
    client = server.raw_select()
    # A283: SORT (SUBJECT REVERSE DATE) UTF-8 ALL -> * SORT 5 3 4 1 2
    assert client.ok("SORT (SUBJECT REVERSE DATE) UTF-8 ALL") == [b"* SORT 5 3 4 1 2\r\n"]
    # A284: nothing matches -> a bare * SORT
    assert client.ok('SORT (SUBJECT) US-ASCII TEXT "not in mailbox"') == [b"* SORT\r\n"]
    assert client.ok("SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994 NOT SUBJECT c") == [
        b"* SORT 3 4 5 1\r\n"
    ]
    assert client.ok("UID SORT (REVERSE SUBJECT) UTF-8 ALL") == [b"* SORT 2 1 3 4 5\r\n"]
    # REVERSE reverses only its criterion: equal messages stay in mailbox order.
    assert client.ok("SORT (REVERSE DATE) UTF-8 ALL") == [b"* SORT 5 3 1 2 4\r\n"]


def test_rfc_5256_thread_examples(shared):
    server = shared.account()
    # The shape of RFC 5256 section 4's example, (2)(3 6 (4 23)(44 7 96)), in a mailbox of 96
    # messages of which the SEARCH program picks these eight.
    wanted = {
        2: ("m2", ""),
        3: ("m3", ""),
        4: ("m4", "<m3@t> <m6@t>"),
        6: ("m6", "<m3@t>"),
        7: ("m7", "<m3@t> <m6@t> <m44@t>"),
        23: ("m23", "<m3@t> <m6@t> <m4@t>"),
        44: ("m44", "<m3@t> <m6@t>"),
        96: ("m96", "<m3@t> <m6@t> <m44@t> <m7@t>"),
    }
    order = {2: 1, 3: 2, 6: 3, 4: 5, 23: 6, 44: 7, 7: 8, 96: 9}
    raws = []
    for n in range(1, 97):
        if n in wanted:
            own, refs = wanted[n]
            extra = f"Message-ID: <{own}@t>\n" + (f"References: {refs}\n" if refs else "")
            subject = "wanted alone" if n == 2 else "wanted"
            raws.append(msg(subject, f"{order[n]} Mar 2000 10:00:00 +0000", extra))
        else:
            raws.append(msg(f"filler {n}", "1 Jan 2000 10:00:00 +0000"))
    fill(server.maildir(), raws)
    client = server.raw_select()
    assert client.ok("THREAD REFERENCES UTF-8 SUBJECT wanted") == [
        b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\n"
    ]
    # The ORDEREDSUBJECT example's forms: a lone message, a pair, a root with siblings.
    assert client.ok("THREAD ORDEREDSUBJECT UTF-8 SUBJECT wanted") == [
        b"* THREAD (2)(3 (6)(4)(23)(44)(7)(96))\r\n"
    ]
    assert client.ok('THREAD ORDEREDSUBJECT UTF-8 TEXT "gewp"') == [b"* THREAD\r\n"]


def test_esort_return_options_and_partial(shared):
    server = shared.account()
    day = "Feb 1994 10:00:00 +0000"
    pairs = [("c", 5), ("a", 1), ("b", 3), ("a", 2)]
    fill(server.maildir(), [msg(subject, f"{d} {day}") for subject, d in pairs])
    client = server.raw_select()
    tag = f"t{client.counter + 1}"
    assert client.ok("SORT RETURN (MIN MAX COUNT ALL) (SUBJECT) UTF-8 ALL") == [
        f'* ESEARCH (TAG "{tag}") MIN 2 MAX 1 ALL 2,4,3,1 COUNT 4\r\n'.encode()
    ]
    tag = f"t{client.counter + 1}"
    assert client.ok("UID SORT RETURN () (REVERSE DATE) UTF-8 ALL") == [
        f'* ESEARCH (TAG "{tag}") UID ALL 1,3:4,2\r\n'.encode()
    ]
    tag = f"t{client.counter + 1}"
    assert client.ok("SORT RETURN (PARTIAL 2:3 COUNT) (SUBJECT) UTF-8 ALL") == [
        f'* ESEARCH (TAG "{tag}") COUNT 4 PARTIAL (2:3 4,3)\r\n'.encode()
    ]
    tag = f"t{client.counter + 1}"
    assert client.ok("SORT RETURN (PARTIAL 5:9 MIN) (SUBJECT) UTF-8 SUBJECT zzz") == [
        f'* ESEARCH (TAG "{tag}") PARTIAL (5:9 NIL)\r\n'.encode()
    ]
    tag = f"t{client.counter + 1}"
    assert client.ok("SEARCH RETURN (PARTIAL 1:2) ALL") == [
        f'* ESEARCH (TAG "{tag}") PARTIAL (1:2 1:2)\r\n'.encode()
    ]


def test_modseq_in_sort_and_thread(shared):
    server = shared.account()
    fill(server.maildir(), [msg("a", "1 Feb 1994 10:00 +0000"), msg("b", "2 Feb 1994 10:00 +0000")])
    client = server.raw_select()
    client.ok("STORE 1 +FLAGS (\\Seen)")
    lines = client.ok("SORT (REVERSE SUBJECT) UTF-8 MODSEQ 1")
    assert re.fullmatch(rb"\* SORT 2 1 \(MODSEQ \d+\)\r\n", lines[-1]), lines
    assert client.ok("THREAD REFERENCES UTF-8 MODSEQ 1") == [b"* THREAD (1)(2)\r\n"]


def test_bad_input(shared):
    server = shared.account()
    fill(server.maildir(), [msg("a", "1 Feb 1994 10:00 +0000")])
    client = server.raw_login()
    assert client.status("SORT (DATE) UTF-8 ALL") == b"BAD"  # no mailbox selected
    client.ok("SELECT INBOX")
    _lines, done = client.cmd("SORT (DATE) KOI8-R ALL")
    assert done.split(b" ")[1:3] == [b"NO", b"[BADCHARSET"]
    _lines, done = client.cmd("THREAD REFS UTF-8 ALL")
    assert b" BAD " in done
    _lines, done = client.cmd("THREAD REFERENCES BIG5 ALL")
    assert b"[BADCHARSET" in done
    for bad in ("SORT (FOO) UTF-8 ALL", "SORT (DATE) UTF-8", "SORT DATE UTF-8 ALL", "THREAD"):
        assert client.status(bad) == b"BAD", bad
    client.alive()


def test_imapclient_sort_and_thread(shared):
    server = shared.account()
    day = "Feb 1994 10:00:00 +0000"
    fill(
        server.maildir(),
        [
            msg("hello", f"1 {day}", "Message-ID: <a@t>\n"),
            msg("Re: hello", f"2 {day}", "Message-ID: <b@t>\nIn-Reply-To: <a@t>\n"),
            msg("other", f"3 {day}", "Message-ID: <c@t>\n"),
            msg("Re: hello", f"4 {day}", "Message-ID: <d@t>\nReferences: <a@t> <b@t>\n"),
        ],
    )
    client = server.client()
    assert {b"SORT", b"THREAD=REFERENCES", b"THREAD=ORDEREDSUBJECT"} <= set(client.capabilities())
    client.select_folder("INBOX")
    assert client.sort(["SUBJECT", "REVERSE DATE"]) == [4, 2, 1, 3]
    assert client.sort("FROM", ["SUBJECT", "other"]) == [3]
    assert client.thread() == ((1, 2, 4), (3,))
    assert client.thread("ORDEREDSUBJECT") == ((1, (2,), (4,)), (3,))
    client.logout()


PROGRAMS = [
    [("SUBJECT", False)],
    [("DATE", False)],
    [("ARRIVAL", True)],
    [("SIZE", False), ("DATE", True)],
    [("FROM", False), ("SUBJECT", True)],
    [("TO", True)],
    [("CC", False)],
    [("DISPLAYFROM", False), ("DATE", False)],
    [("DISPLAYTO", True), ("SUBJECT", False)],
]


def check_against_the_reference(client, kept, uids: list[int]) -> None:
    """Every program of PROGRAMS, a SORT of part of the mailbox and both THREAD algorithms, by
    sequence number and by UID, as the reference has them; `kept` are the messages in the
    mailbox, in its order, with `uids`."""
    msgs = messages(kept, uids, [len(crlf(g.data)) for g in kept])
    for program in PROGRAMS:
        text = " ".join(f"{'REVERSE ' if r else ''}{name}" for name, r in program)
        expected = [m.seq for m in sort(msgs, program)]
        assert numbers(client.ok(f"SORT ({text}) UTF-8 ALL")[0], "SORT") == expected, text
        expected_uids = [m.uid for m in sort(msgs, program)]
        assert numbers(client.ok(f"UID SORT ({text}) UTF-8 ALL")[0], "SORT") == expected_uids
    # SORT sorts what the SEARCH program matched.
    odd = [m for m in msgs if m.seq % 2]
    some = ",".join(str(m.seq) for m in odd)
    assert numbers(client.ok(f"SORT (SUBJECT DATE) UTF-8 {some}")[0], "SORT") == [
        m.seq for m in sort(odd, [("SUBJECT", False), ("DATE", False)])
    ]
    for algorithm, reference in (
        ("REFERENCES", thread_references),
        ("ORDEREDSUBJECT", thread_orderedsubject),
    ):
        expected_text = render(reference(messages(kept, uids, [0] * len(kept))), lambda m: m.seq)
        assert client.ok(f"THREAD {algorithm} UTF-8 ALL") == [
            f"* THREAD {expected_text}\r\n".encode()
        ], algorithm
        expected_text = render(reference(messages(kept, uids, [0] * len(kept))), lambda m: m.uid)
        assert client.ok(f"UID THREAD {algorithm} UTF-8 ALL") == [
            f"* THREAD {expected_text}\r\n".encode()
        ], algorithm


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_mailboxes_against_the_reference(shared, seed):
    server = shared.account()
    generated = generate(seed, 70)
    fill(server.maildir(), [g.data for g in generated], [g.internal for g in generated])
    client = server.raw_select()
    client.ok("UID STORE 1:10 +FLAGS (\\Deleted)")
    client.ok("EXPUNGE")  # UIDs and sequence numbers now differ
    check_against_the_reference(client, generated[10:], list(range(11, 71)))


def leave(client) -> None:
    """UNSELECT (the folder's cache is written when the folder is left), then LOGOUT."""
    client.ok("UNSELECT")
    client.ok("LOGOUT")


def test_sort_and_thread_from_the_folders_cache(shared):
    """The first SORT or THREAD of a folder derives every message's facts from its header;
    the sessions after it take them from the folder's cache, a column at a time, also after
    messages came and went between sessions, and again after the cache was deleted: the
    answers are the reference's every time."""
    server = shared.account()
    maildir = server.maildir()
    generated = generate(11, 160)
    fill(maildir, [g.data for g in generated[:120]], [g.internal for g in generated[:120]])
    client = server.raw_select()
    check_against_the_reference(client, generated[:120], list(range(1, 121)))
    leave(client)
    cache = maildir / "maildaemons-cache"
    assert cache.exists()
    before = cache.read_bytes()
    client = server.raw_select()  # everything from the cache now
    check_against_the_reference(client, generated[:120], list(range(1, 121)))
    client.ok("UID STORE 3,50:59 +FLAGS (\\Deleted)")
    client.ok("EXPUNGE")
    leave(client)
    assert cache.read_bytes() == before, "nothing new: the cache is not rewritten"
    fill(maildir, [g.data for g in generated[120:]], [g.internal for g in generated[120:]], 120)
    kept = [g for n, g in enumerate(generated, 1) if n != 3 and not 50 <= n <= 59]
    uids = [n for n in range(1, 161) if n != 3 and not 50 <= n <= 59]
    client = server.raw_select()  # the cache has some of them, and some that are gone
    check_against_the_reference(client, kept, uids)
    leave(client)
    assert cache.read_bytes() != before
    cache.unlink()
    client = server.raw_select()
    check_against_the_reference(client, kept, uids)
    leave(client)
