"""CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 4) over real sockets: RETURN (UPDATE) results kept
current with ADDTO and REMOVEFROM as other sessions and programs change the mailbox, REMOVEFROM
before EXPUNGE, CANCELUPDATE, the NOUPDATE limit, contexts ending with the mailbox, and a random
run in which a client that applies every update always holds what a fresh SORT answers."""

from __future__ import annotations

import random
import re

import pytest

from support.imap import Raw, shared_imapd
from support.site import deliver

shared = shared_imapd("imap-ext-context")


def message(n: int, subject: str = "", day: int = 1) -> bytes:
    return (
        f"Subject: {subject or f's{n}'}\nDate: {day} Jan 2001 10:00:00 +0000\n\nbody {n}\n".encode()
    )


@pytest.fixture
def account(shared):
    server = shared.account()
    for n in range(1, 6):
        deliver(server.maildir(), message(n), subdir="cur", name=f"{1700000000 + n}.M{n}P4.ctx:2,")
    server.claim_recent()  # the flags here are about \Flagged alone
    return server


def updates(lines: list[bytes], tag: str) -> list[bytes]:
    prefix = f'* ESEARCH (TAG "{tag}")'.encode()
    return [line for line in lines if line.startswith(prefix)]


def test_search_update_follows_flags_arrivals_and_expunges(account):
    client = account.raw_select()
    other = account.raw_select()
    assert client.ok("SEARCH RETURN (ALL UPDATE) FLAGGED") == [b'* ESEARCH (TAG "t3")\r\n']
    other.ok("STORE 2,4 +FLAGS (\\Flagged)")
    assert updates(client.ok("NOOP"), "t3") == [b'* ESEARCH (TAG "t3") ADDTO (0 2,4)\r\n']
    other.ok("STORE 4 -FLAGS (\\Flagged)")
    other.ok("STORE 5 +FLAGS (\\Flagged \\Deleted)")
    assert updates(client.ok("NOOP"), "t3") == [
        b'* ESEARCH (TAG "t3") REMOVEFROM (0 4) ADDTO (0 5)\r\n'
    ]
    # This session's own STORE counts too, reported before its tagged OK.
    lines = client.ok("STORE 1 +FLAGS (\\Flagged)")
    assert lines == [
        b"* 1 FETCH (FLAGS (\\Flagged))\r\n",
        b'* ESEARCH (TAG "t3") ADDTO (0 1)\r\n',
    ]
    # A delivery: EXISTS first, then the new message's number.
    deliver(account.maildir(), message(6), subdir="cur", name="1700000006.M6P4.ctx:2,F")
    lines = client.ok("NOOP")
    assert lines[0] == b"* 6 EXISTS\r\n"
    assert updates(lines, "t3") == [b'* ESEARCH (TAG "t3") ADDTO (0 6)\r\n']
    # An expunge by another session: REMOVEFROM, numbered as before, then the EXPUNGE.
    other.ok("EXPUNGE")
    lines = client.ok("NOOP")
    assert lines[:2] == [b'* ESEARCH (TAG "t3") REMOVEFROM (0 5)\r\n', b"* 5 EXPUNGE\r\n"]
    # Sequence numbers shifted: 6 is now 5, and it is still in the result.
    other.ok("STORE 5 -FLAGS (\\Flagged)")
    assert updates(client.ok("NOOP"), "t3") == [b'* ESEARCH (TAG "t3") REMOVEFROM (0 5)\r\n']


def test_uid_search_update_and_cancelupdate(account):
    client = account.raw_select()
    other = account.raw_select()
    client.ok("UID STORE 1 +FLAGS (\\Deleted)")
    client.ok("EXPUNGE")
    other.ok("NOOP")
    tag = f"t{client.counter + 1}"
    assert client.ok("UID SEARCH RETURN (UPDATE COUNT) UNSEEN") == [
        f'* ESEARCH (TAG "{tag}") UID COUNT 4\r\n'.encode()
    ]
    other.ok("STORE 1 +FLAGS (\\Seen)")  # UID 2
    assert updates(client.ok("NOOP"), tag) == [
        f'* ESEARCH (TAG "{tag}") UID REMOVEFROM (0 2)\r\n'.encode()
    ]
    assert client.status('CANCELUPDATE "nosuch"') == b"NO"
    assert client.status(f'CANCELUPDATE "{tag}" "nosuch"') == b"NO"  # none ends then
    other.ok("STORE 2 +FLAGS (\\Seen)")
    assert updates(client.ok("NOOP"), tag) == [
        f'* ESEARCH (TAG "{tag}") UID REMOVEFROM (0 3)\r\n'.encode()
    ]
    client.ok(f'CANCELUPDATE "{tag}"')
    other.ok("STORE 3 +FLAGS (\\Seen)")
    assert updates(client.ok("NOOP"), tag) == []
    assert client.status(f'CANCELUPDATE "{tag}"') == b"NO"


def test_sort_update_positions(account):
    client = account.raw_select()
    other = account.raw_select()
    tag = f"t{client.counter + 1}"
    # Subjects s1..s5; sorted REVERSE SUBJECT: 5 4 3 2 1.
    assert client.ok("SORT RETURN (ALL UPDATE) (REVERSE SUBJECT) UTF-8 UNSEEN") == [
        f'* ESEARCH (TAG "{tag}") ALL 5,4,3,2,1\r\n'.encode()
    ]
    other.ok("STORE 2,4 +FLAGS (\\Seen)")
    # Removals at their places before the removal, the last first: 2 at 4, then 4 at 2.
    assert updates(client.ok("NOOP"), tag) == [
        f'* ESEARCH (TAG "{tag}") REMOVEFROM (4 2 2 4)\r\n'.encode()
    ]
    other.ok("STORE 2,4 -FLAGS (\\Seen)")
    assert updates(client.ok("NOOP"), tag) == [
        f'* ESEARCH (TAG "{tag}") ADDTO (2 4 4 2)\r\n'.encode()
    ]
    for n, subject in ((6, "s35"), (7, "s0"), (8, "s36")):
        deliver(
            account.maildir(),
            message(n, subject),
            subdir="cur",
            name=f"{1700000000 + n}.M{n}P4.ctx:2,",
        )
    lines = client.ok("NOOP")
    # 5 4 36 35 3 2 1 0: 8 and 6 land at 3 and 4 (one run), 7 at 8.
    assert updates(lines, tag) == [f'* ESEARCH (TAG "{tag}") ADDTO (3 8,6 8 7)\r\n'.encode()]
    other.ok("STORE 3 +FLAGS (\\Deleted)")
    other.ok("EXPUNGE")
    lines = client.ok("NOOP")
    assert lines[:2] == [
        f'* ESEARCH (TAG "{tag}") REMOVEFROM (5 3)\r\n'.encode(),
        b"* 3 EXPUNGE\r\n",
    ]


def test_contexts_end_with_the_mailbox_and_are_bounded(account):
    client = account.raw_select()
    other = account.raw_select()
    tags = []
    for _ in range(16):
        tags.append(f"t{client.counter + 1}")
        _lines, done = client.cmd("SEARCH RETURN (UPDATE) SEEN")
        assert b"NOUPDATE" not in done
    _lines, done = client.cmd("SEARCH RETURN (UPDATE) SEEN")
    tag = done.split(b" ")[0].decode()
    assert done == f'{tag} OK [NOUPDATE "{tag}"] SEARCH completed\r\n'.encode()
    # A context with a tag already in use replaces the old one.
    client.send(f"{tags[0]} SEARCH RETURN (UPDATE) FLAGGED\r\n".encode())
    _lines, done = client.until_tagged(tags[0])
    assert b"NOUPDATE" not in done
    other.ok("STORE 1 +FLAGS (\\Seen)")
    lines = client.ok("NOOP")
    assert len([line for line in lines if b"ADDTO" in line]) == 15
    client.ok("UNSELECT")
    client.ok("SELECT INBOX")
    other.ok("STORE 2 +FLAGS (\\Seen)")
    assert not [line for line in client.ok("NOOP") if b"ESEARCH" in line]
    assert client.status(f'CANCELUPDATE "{tags[1]}"') == b"NO"


def test_sequence_numbers_in_the_program_stay_with_their_messages(account):
    client = account.raw_select()
    other = account.raw_select()
    tag = f"t{client.counter + 1}"
    client.ok("SEARCH RETURN (UPDATE) 4:5 UNSEEN")
    other.ok("STORE 1 +FLAGS (\\Deleted)")
    other.ok("EXPUNGE")
    client.ok("NOOP")
    # Message 4 was 5: still in the program; the new 3 (was 4) too, and nothing else.
    other.ok("STORE 1:4 +FLAGS (\\Seen)")
    assert updates(client.ok("NOOP"), tag) == [
        f'* ESEARCH (TAG "{tag}") REMOVEFROM (0 3:4)\r\n'.encode()
    ]
    deliver(account.maildir(), message(9), subdir="cur", name="1700000009.M9P4.ctx:2,")
    assert updates(client.ok("NOOP"), tag) == []


# -- random run: the client's copy always equals a fresh SORT --------------------------------


def expand(text: str) -> list[int]:
    """A sequence-set in the order written (an ESORT set)."""
    out = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        out.extend(range(int(low), int(high or low) + 1))
    return out


def apply(result: list[int], line: bytes, sorted_: bool) -> None:
    """Apply the ADDTO/REMOVEFROM items of one unsolicited ESEARCH to the client's copy."""
    for kind, payload in re.findall(rb"(ADDTO|REMOVEFROM) \(([^)]*)\)", line):
        words = payload.decode().split()
        for place, numbers in zip(words[::2], words[1::2], strict=True):
            values = expand(numbers)
            if kind == b"REMOVEFROM":
                if sorted_:
                    at = int(place) - 1
                    assert result[at : at + len(values)] == values, (line, result)
                    del result[at : at + len(values)]
                else:
                    result[:] = [n for n in result if n not in values]
            elif sorted_:
                at = int(place) - 1
                result[at:at] = values
            else:
                result[:] = sorted(result + values)


def follow(client: Raw, lines: list[bytes], results: dict[str, list[int]]) -> None:
    """What a client does with unsolicited responses: updates, then EXPUNGE renumbering."""
    for line in lines:
        found = re.match(rb'\* ESEARCH \(TAG "([^"]+)"\)', line)
        if found:
            apply(results[found.group(1).decode()], line, found.group(1) != b"search")
        expunged = re.match(rb"\* (\d+) EXPUNGE", line)
        if expunged:
            number = int(expunged.group(1))
            for result in results.values():
                assert number not in result
                result[:] = [n - (n > number) for n in result]


@pytest.mark.parametrize("seed", [7, 8])
def test_random_changes_keep_the_client_copy_exact(shared, seed):
    rng = random.Random(seed)
    server = shared.account()
    for n in range(1, 13):
        subject, day = rng.choice(["a", "b", "Re: a", "c"]), rng.randrange(1, 9)
        deliver(server.maildir(), message(n, subject, day), subdir="cur")
    client = server.raw_select()
    other = server.raw_select()
    programs = {
        "sort": "SORT RETURN (ALL UPDATE) (SUBJECT REVERSE DATE) UTF-8 UNSEEN",
        "search": "SEARCH RETURN (ALL UPDATE) OR FLAGGED SUBJECT a",
    }
    fresh = {
        "sort": "SORT (SUBJECT REVERSE DATE) UTF-8 UNSEEN",
        "search": "SEARCH OR FLAGGED SUBJECT a",
    }
    results: dict[str, list[int]] = {}
    for tag, text in programs.items():
        client.send(f"{tag} {text}\r\n".encode())
        lines, _done = client.until_tagged(tag)
        found = re.search(rb"ALL ([\d,:]+)", lines[-1])
        results[tag] = expand(found.group(1).decode()) if found else []
    count = 12
    for step in range(30):
        action = rng.random()
        if action < 0.45 and count:
            which = rng.randrange(1, count + 1)
            flag = rng.choice(["\\Seen", "\\Flagged"])
            other.ok(f"STORE {which} {rng.choice('+-')}FLAGS ({flag})")
        elif action < 0.7:
            count += 1
            subject = rng.choice(["a", "b", "Re: a", "c", "d"])
            deliver(server.maildir(), message(100 + step, subject, rng.randrange(1, 9)))
        elif count:
            other.ok(f"STORE {rng.randrange(1, count + 1)} +FLAGS (\\Deleted)")
            other.ok("EXPUNGE")
        count = int(re.search(rb"\* (\d+) EXISTS", b"".join(other.ok("SELECT INBOX"))).group(1))  # type: ignore[union-attr]
        follow(client, client.ok("NOOP"), results)
        for tag, text in fresh.items():
            line = client.ok(text)[-1]
            assert results[tag] == [int(n) for n in line.split()[2:]], (step, tag, line)
