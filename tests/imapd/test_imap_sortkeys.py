"""Unit tests for what SORT and THREAD compare (imapd/sortkeys.py) and for the threading
algorithms over ready-made facts (imapd/sorting.py): RFC 5256 2.1 base subjects step by step,
2.2 sent dates, RFC 5957 display values, i;unicode-casemap, message IDs, and the REFERENCES
steps each in isolation."""

from __future__ import annotations

import calendar

import pytest

from imapd.envelope import Address
from imapd.sorting import (
    Message,
    Node,
    members,
    orderedsubject,
    references,
    scanner,
    siblings,
    subject_groups,
    subject_text,
)
from imapd.sortkeys import (
    COLUMN_FIELDS,
    COLUMNS,
    SortFacts,
    base_subject,
    casemap,
    column_values,
    display_key,
    first_address,
    mailbox_key,
    message_ids,
    sent_time,
)
from support.sortref import generate

# -- RFC 5256 2.1 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        ("hello", "HELLO", False),
        ("Re: hello", "HELLO", True),
        ("RE: re: Re:hello", "HELLO", True),
        ("Fwd: hello", "HELLO", True),
        ("fw: hello", "HELLO", True),
        ("Re [2]: hello", "HELLO", True),  # subj-refwd with a blob before the colon
        ("Re[2]:hello", "HELLO", True),
        ("[list] hello", "HELLO", False),  # step (4): a leading blob goes when text is left
        ("[list] Re: hello", "HELLO", True),  # a leader is *subj-blob subj-refwd
        ("Re: [list] Re: hello", "HELLO", True),
        ("[a][b] x", "X", False),
        ("[tag]", "[TAG]", False),  # step (4): the last blob is the base when nothing follows
        ("[a] [b]", "[B]", False),
        ("hello (fwd)", "HELLO", True),  # step (2): subj-trailer, a forward
        ("hello (fwd) (FWD)  ", "HELLO", True),
        ("[fwd: hello]", "HELLO", True),  # step (6)
        ("Re: [fwd: Re: hello (fwd)]", "HELLO", True),  # (6) then again from (2)
        ("[fwd: hello", "[FWD: HELLO", False),  # no trailer: not a subj-fwd
        ("  spaced \t  out  ", "SPACED OUT", False),  # (1) tabs and runs of spaces
        ("line\r\n folded", "LINE FOLDED", False),
        ("Re:", "", True),
        ("", "", False),
        ("Reply: hello", "REPLY: HELLO", False),  # "re" must be followed by the colon
        ("Re : hello", "HELLO", True),
        ("Fwd:Re: other (fwd) (fwd)", "OTHER", True),
    ],
)
def test_base_subject(subject, base, reply):
    assert base_subject(subject) == (base, reply)


def test_base_subject_compares_case_and_unicode_insensitively():
    assert base_subject("Re: Héllo")[0] == base_subject("HÉLLO")[0]
    # i;unicode-casemap decomposes: a precomposed and a combining form are equal.
    assert base_subject("e\u0301t\u00e9")[0] == base_subject("\u00e9te\u0301")[0]
    assert casemap("abc") == casemap("ABC") == "ABC"
    # RFC 5051 titlecases first (U+FB01 has no simple titlecase), then decomposes.
    assert casemap("\ufb01") == "fi"


# -- RFC 5256 2.2 ------------------------------------------------------------------------------


def utc(*args: int) -> int:
    return calendar.timegm((*args, 0, 0, 0))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # The RFC's own example: -0800 at 16:01:33 is 00:01:33 UTC the next day.
        ("31 Dec 2000 16:01:33 -0800", utc(2001, 1, 1, 0, 1, 33)),
        ("Mon, 7 Feb 1994 21:52:25 -0800 (PST)", utc(1994, 2, 8, 5, 52, 25)),
        ("Tue, 1 Jan 2001 00:01:33 +0530", utc(2000, 12, 31, 18, 31, 33)),
        ("1 Jan 2001 10:00 EST", utc(2001, 1, 1, 15, 0, 0)),
        ("1 Jan 2001 10:00:00 GMT", utc(2001, 1, 1, 10, 0, 0)),
        ("1 Jan 2001 10:00:00 XYZ", utc(2001, 1, 1, 10, 0, 0)),  # unknown zone: UTC
        ("1 Jan 2001 10:00:00 +0099", utc(2001, 1, 1, 10, 0, 0)),  # invalid zone: UTC
        ("1 Jan 2001 25:61:00 +0100", utc(2001, 1, 1, 0, 0, 0) - 3600),  # bad time: 00:00:00
        ("1 Jan 2001", utc(2001, 1, 1, 0, 0, 0)),
        ("1 Jan 99 10:00 GMT", utc(1999, 1, 1, 10, 0, 0)),
        ("Thu Jan  4 12:00:00 2001", utc(2001, 1, 4, 12, 0, 0)),
        ("garbage", None),
        (None, None),
        ("", None),
    ],
)
def test_sent_time(value, expected):
    assert sent_time(value) == expected


# -- addresses (RFC 5256 3, RFC 5957 3) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "mailbox", "display"),
    [
        ('"Zed" <zed@example.com>', "ZED", "ZED"),
        ("alice@example.com, bob@example.com", "ALICE", "ALICE@EXAMPLE.COM"),
        ("Bob <bob@example.org>", "BOB", "BOB"),
        ("=?utf-8?q?=C3=89mile?= <emile@x.fr>", "EMILE", casemap("Émile")),
        ('"" <empty@x>', "EMPTY", "EMPTY@X"),  # an empty display name does not count
        ("undisclosed-recipients:;", "UNDISCLOSED-RECIPIENTS", "UNDISCLOSED-RECIPIENTS"),
        ("MAILER-DAEMON", "MAILER-DAEMON", "MAILER-DAEMON"),  # no domain: the mailbox alone
        ("(Dave) dave@x", "DAVE", "DAVE"),  # a comment is the personal name
        (None, "", ""),
        ("", "", ""),
    ],
)
def test_address_keys(value, mailbox, display):
    address = first_address(value)
    assert mailbox_key(address) == mailbox
    assert display_key(address) == display


def test_display_key_of_a_bare_structure():
    assert display_key(Address(None, None, "who", "where.example")) == "WHO@WHERE.EXAMPLE"
    assert display_key(Address("  ", None, "who", None)) == "WHO"
    assert display_key(None) == ""


def test_message_ids():
    assert message_ids("<a@b> <c@d>\r\n <e@f>") == ["a@b", "c@d", "e@f"]
    assert message_ids("<no-at> junk <x y@z> <ok@x>") == ["ok@x"]
    assert message_ids(None) == []


def test_facts_prefer_references_and_round_trip_through_the_cache_columns():
    facts = SortFacts.from_fields(
        {
            "SUBJECT": "Re: [list] Hi\x1fthere",
            "DATE": "1 Jan 2001 10:00:00 +0000",
            "FROM": "A <a@x>",
            "MESSAGE-ID": "<own@x>",
            "REFERENCES": "<r1@x> <r2@x>",
            "IN-REPLY-TO": "<ignored@x>",
        }
    )
    assert facts.references == ("r1@x", "r2@x")
    assert facts.thread_root == "r1@x"
    assert facts.reply and facts.subject == "HI\x1fTHERE"
    columns = facts.columns()
    assert set(columns) == set(COLUMNS)
    assert SortFacts.from_columns(columns) == facts
    assert columns["subject"] == b"HI\x1fTHERE" and columns["thread"] == b"1 own@x r1@x r2@x"
    only_reply_to = SortFacts.from_fields({"IN-REPLY-TO": "<p1@x> <p2@x>"})
    assert only_reply_to.references == ("p1@x",)
    assert SortFacts.from_fields({"MESSAGE-ID": "<m@x>"}).thread_root == "m@x"
    nothing = SortFacts.from_fields({"SUBJECT": "\udcff \u00e9t\u00e9"})
    assert SortFacts.from_columns(nothing.columns()) == nothing
    assert nothing.columns()["thread"] == b"0 " and nothing.columns()["sent"] == b""
    for damage in ({"sent": b"soon"}, {"thread": b"2 x"}, {"subject": b"\xff"}):
        assert SortFacts.from_columns({**columns, **damage}) is None, damage
    assert SortFacts.from_columns({k: v for k, v in columns.items() if k != "cc"}) is None


# -- the threading algorithms over ready-made facts ------------------------------------------------


def item(seq: int, sent: int, subject: str = "", msgid: str = "", refs: str = "") -> Message:
    """A message with `msgid` and References `refs` (short names, `<a> <b>`, given a domain)."""
    fields = {"SUBJECT": subject, "REFERENCES": refs.replace(">", "@t>")}
    if msgid:
        fields["MESSAGE-ID"] = f"<{msgid}@t>"
    facts = SortFacts.from_fields(fields)
    return Message.of(seq, None, facts, float(sent))  # type: ignore[arg-type]


def text(roots: list[Node]) -> str:
    return "".join(f"({members(root, lambda i: i.seq)})" for root in roots)


def test_references_example_shape_of_rfc_5256_section_4():
    # (2)(3 6 (4 23)(44 7 96)): 2 alone; 3 -> 6 -> {4 -> 23, 44 -> 7 -> 96}.
    items = [
        item(2, 1, "a", "m2"),
        item(3, 2, "b", "m3"),
        item(4, 5, "b", "m4", "<m3> <m6>"),
        item(6, 3, "b", "m6", "<m3>"),
        item(7, 8, "b", "m7", "<m3> <m6> <m44>"),
        item(23, 6, "b", "m23", "<m3> <m6> <m4>"),
        item(44, 7, "b", "m44", "<m3> <m6>"),
        item(96, 9, "b", "m96", "<m3> <m6> <m44> <m7>"),
    ]
    assert text(references(items)) == "(2)(3 6 (4 23)(44 7 96))"


def test_references_dummies_are_pruned_and_promoted():
    # A missing root with one child is replaced by that child; with two children it stays a
    # dummy at the root, shown only by its branches.
    one = [item(1, 1, "x", "a", "<missing>")]
    assert text(references(one)) == "(1)"
    two = [item(1, 1, "x", "a", "<missing>"), item(2, 2, "y", "b", "<missing>")]
    assert text(references(two)) == "((1)(2))"
    # Below the root a dummy's children move up into its place.
    nested = [item(1, 1, "x", "a"), item(2, 2, "y", "b", "<a> <gone>")]
    assert text(references(nested)) == "(1 2)"


def test_references_first_message_id_wins_and_loops_are_refused():
    items = [
        item(1, 1, "p", "dup"),
        item(2, 2, "q", "dup"),  # a duplicate ID: this one is as if it had none
        item(3, 3, "r", "c", "<dup>"),
        item(4, 4, "s", "l1", "<l2>"),  # 4 becomes the child of 5
        item(5, 5, "t", "l2", "<l1>"),  # 5 the child of 4 would close a loop: refused
    ]
    assert text(references(items)) == "(1 3)(2)(5 4)"


def test_references_own_references_beat_earlier_guesses():
    # Message 2's References put 3 under x; message 3's own header names 1 as its parent and
    # wins (RFC 5256 step 1.B). Message 4's put 5 under y; 5 has no references: no parent.
    items = [
        item(1, 1, "a", "one"),
        item(2, 2, "b", "two", "<x> <three>"),
        item(3, 3, "c", "three", "<one>"),
        item(4, 4, "d", "four", "<y> <five>"),
        item(5, 5, "e", "five"),
    ]
    assert text(references(items)) == "(1 3 2)(5 4)"


def test_references_merges_threads_by_subject():
    # Step 5: same base subject at the root: a reply joins the non-reply; two non-replies
    # get a dummy parent; an empty subject never merges.
    items = [
        item(1, 1, "topic", "a"),
        item(2, 2, "Re: topic", "b"),
        item(3, 3, "other", "c"),
        item(4, 4, "other", "d"),
        item(5, 5, "", "e"),
        item(6, 6, "", "f"),
    ]
    assert text(references(items)) == "(1 2)((3)(4))(5)(6)"


def test_references_sorts_by_sent_date_then_mailbox_order():
    items = [item(1, 30, "x", "a"), item(2, 10, "y", "b", "<a>"), item(3, 10, "z", "c", "<a>")]
    items += [item(4, 20, "w", "d")]
    assert text(references(items)) == "(4)(1 (2)(3))"


def test_orderedsubject():
    items = [
        item(1, 5, "Re: hello"),
        item(2, 1, "hello"),
        item(3, 9, "other"),
        item(4, 3, "Fwd: hello"),
        item(5, 2, "[x] other"),
        item(6, 4, "third"),
    ]
    # hello: 2 (1), 4 (3), 1 (5); other: 5 (2), 3 (9); third: 6 (4).
    assert text(orderedsubject(items)) == "(2 (4)(1))(5 3)(6)"
    # THREAD writes it from the groups, without a tree.
    assert subject_text(subject_groups(items), lambda i: i.seq) == "(2 (4)(1))(5 3)(6)"


@pytest.mark.parametrize("seed", [1, 2])
def test_columns_derived_one_at_a_time_are_the_facts_columns(seed):
    """What a SORT by one criterion derives of a message is what all its facts give."""
    for generated in generate(seed, 120):
        fields = scanner(frozenset(f for names in COLUMN_FIELDS.values() for f in names))(
            generated.data
        )
        first = {name: values[0] for name, values in fields.items()}
        whole = SortFacts.from_fields(first).columns()
        assert column_values(first, COLUMNS) == whole
        for name in COLUMNS:
            assert column_values(first, [name]) == {name: whole[name]}


def test_columns_derived_together():
    """A column is derived with those of the same header fields, not the others."""
    assert siblings(["subject"]) == ("subject",)
    assert siblings(["displayfrom"]) == ("from", "displayfrom")
    assert siblings(["thread", "sent"]) == ("sent", "subject", "thread")
