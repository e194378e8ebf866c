"""Evaluating a SEARCH key tree (imapd.parser) against the messages of the selected mailbox.

Keys that need only the file name (flags, UID, sequence, MODSEQ, size from `,W=`) never open the
file; header and body keys load the message once per message, lazily (seed 001's lazy loading).
"""

from __future__ import annotations

import datetime

from common.store import Entry, StoreError, to_crlf
from imapd import flags as imapflags
from imapd import objectid
from imapd.message import MessageView
from imapd.parser import And, Key, Not, Or, SearchNode, SeqSet
from imapd.selected import Selected, member

RangeCache = dict[int, tuple[tuple[int, int], ...]]
ADDRESS_KEYS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "TO": "To"}


class Candidate:
    """One message under test, loading its content only when a key needs it."""

    __slots__ = ("_message", "entry", "ranges", "seq", "view")

    def __init__(self, view: Selected, seq: int, entry: Entry, ranges: RangeCache) -> None:
        self.view, self.seq, self.entry, self.ranges = view, seq, entry, ranges
        self._message: MessageView | None = None

    def within(self, seqset: SeqSet | None, value: int, highest: int) -> bool:
        """Whether `value` is in the set; each set is resolved once per SEARCH, not per message."""
        if seqset is None:
            return False
        if seqset.saved:  # "$" names messages whether the key is UID or not (RFC 5182 2.1)
            return self.entry.uid in self.view.saved
        ranges = self.ranges.get(id(seqset))
        if ranges is None:
            ranges = self.ranges[id(seqset)] = seqset.resolve(highest)
        return member(ranges, value)

    @property
    def message(self) -> MessageView:
        if self._message is None:
            try:
                raw = to_crlf(self.view.mailbox.read(self.entry))
            except StoreError:
                raw = b""
            self._message = MessageView(raw)
        return self._message


def search(view: Selected, criteria: SearchNode) -> list[tuple[int, Entry]]:
    ranges: RangeCache = {}  # the tree (and so every id in it) lives for the whole search
    return [
        (seq, entry)
        for seq, entry in enumerate(view.entries, 1)
        if safe_matches(criteria, Candidate(view, seq, entry, ranges))
    ]


def safe_matches(criteria: SearchNode, item: Candidate) -> bool:
    """A message another session expunged meanwhile (its size is gone with it) matches nothing."""
    try:
        return matches(criteria, item)
    except StoreError:
        return False


def matches(node: SearchNode, item: Candidate) -> bool:
    if isinstance(node, And):
        return all(matches(child, item) for child in node.items)
    if isinstance(node, Or):
        return any(matches(child, item) for child in node.items)
    if isinstance(node, Not):
        return not matches(node.item, item)
    return key_matches(node, item)


def key_matches(key: Key, item: Candidate) -> bool:  # noqa: PLR0911 (a table of key kinds)
    name, entry, view = key.name, item.entry, item.view
    if name == "ALL":
        return True
    if name == "FLAG":
        return has_flag(item, key.text)
    if name == "UID":
        return item.within(key.seqset, entry.uid, view.entries[-1].uid if view.entries else 0)
    if name == "SEQSET":
        return item.within(key.seqset, item.seq, len(view.entries))
    if name == "MODSEQ":
        return entry.modseq >= key.number
    if name == "LARGER":
        return view.mailbox.size(entry) > key.number
    if name == "SMALLER":
        return view.mailbox.size(entry) < key.number
    if name in ("BEFORE", "ON", "SINCE"):
        day = datetime.date.fromtimestamp(view.mailbox.internal_date(entry))
        return compare_date(name, day, key.date)
    if name in ("SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"):  # RFC 8514 5
        day = datetime.date.fromtimestamp(view.mailbox.save_date(entry))
        return compare_date(name[5:], day, key.date)
    if name in ("EMAILID", "THREADID"):  # RFC 8474 6
        ids = {"EMAILID": objectid.email_id, "THREADID": objectid.thread_id}
        return ids[name](view, entry) == key.text
    if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        sent = item.message.sent_date()
        return sent is not None and compare_date(name[4:], sent, key.date)
    return text_matches(key, item)


def text_matches(key: Key, item: Candidate) -> bool:
    needle = key.text.lower()
    if key.name in ADDRESS_KEYS:
        values = item.message.address_values(ADDRESS_KEYS[key.name])
        return any(needle in v.lower() for v in values)
    if key.name == "SUBJECT":
        return any(needle in v.lower() for v in item.message.header_values("Subject"))
    if key.name == "HEADER":
        values = item.message.header_values(key.header)
        return bool(values) and (not needle or any(needle in v.lower() for v in values))
    if key.name == "BODY":
        return item.message.body_contains(key.text)
    if key.name == "TEXT":
        return item.message.text_contains(key.text)
    return False


def has_flag(item: Candidate, flag: str) -> bool:
    if flag == "\\Recent":
        return item.entry.uid in item.view.recent
    letter = imapflags.FLAG_LETTERS.get(flag.lower())
    if letter:
        return letter in item.entry.letters
    lowered = flag.lower()
    names = item.view.mailbox.keywords.decode(item.entry.letters)
    return any(n.lower() == lowered for n in names)


def compare_date(kind: str, day: datetime.date, wanted: datetime.date | None) -> bool:
    if wanted is None:
        return False
    if kind == "BEFORE":
        return day < wanted
    if kind == "ON":
        return day == wanted
    return day >= wanted
