"""Evaluating a SEARCH key tree (imapd.parser) against the messages of the selected mailbox.

Keys that need only the file name (flags, UID, sequence, MODSEQ, size from `,W=`) never open the
file; header and body keys load the message once per message, lazily (seed 001's lazy loading).
"""

from __future__ import annotations

import datetime

from common.mailbox import Entry
from common.maildir import StoreError, to_crlf
from imapd import flags as imapflags
from imapd.message import MessageView
from imapd.parser import And, Key, Not, Or, SearchNode
from imapd.selected import Selected

ADDRESS_KEYS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "TO": "To", "SUBJECT": "Subject"}


class Candidate:
    """One message under test, loading its content only when a key needs it."""

    __slots__ = ("_message", "entry", "seq", "view")

    def __init__(self, view: Selected, seq: int, entry: Entry) -> None:
        self.view, self.seq, self.entry = view, seq, entry
        self._message: MessageView | None = None

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
    return [(seq, entry) for seq, entry in enumerate(view.entries, 1)
            if matches(criteria, Candidate(view, seq, entry))]


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
        return key.seqset is not None and key.seqset.contains(entry.uid, view.entries[-1].uid if view.entries else 0)
    if name == "SEQSET":
        return key.seqset is not None and key.seqset.contains(item.seq, len(view.entries))
    if name == "MODSEQ":
        return entry.modseq >= key.number
    if name == "LARGER":
        return view.mailbox.size(entry) > key.number
    if name == "SMALLER":
        return view.mailbox.size(entry) < key.number
    if name in ("BEFORE", "ON", "SINCE"):
        day = datetime.date.fromtimestamp(view.mailbox.internal_date(entry))
        return compare_date(name, day, key.date)
    if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        sent = item.message.sent_date()
        return sent is not None and compare_date(name[4:], sent, key.date)
    return text_matches(key, item)


def text_matches(key: Key, item: Candidate) -> bool:
    needle = key.text.lower()
    if key.name in ADDRESS_KEYS:
        return any(needle in v.lower() for v in item.message.header_values(ADDRESS_KEYS[key.name]))
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
