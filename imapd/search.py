"""Evaluating a SEARCH key tree (imapd.parser) against the messages of the selected mailbox.

Keys that need only the file name (flags, UID, sequence, MODSEQ, size from `,W=`) never open the
file; header and body keys load the message once per message, lazily (seed 001's lazy loading).

FROM, TO, CC, BCC and SUBJECT are answered from the folder's cache when it has the message's
searched headers (`searched_headers`, cached by FETCH ENVELOPE or by an earlier SEARCH): their
decoded values, lower-cased, so a match is one substring test on bytes. BODY reads every message
(as it must), and settles most of them without decoding: when the needle is ASCII and the message
is ASCII with no transfer encoding, no encapsulated message and only charsets that read ASCII as
ASCII, its text parts are pieces of its body as stored, so a needle not in the body is in none of
them; the others, and every hit, take the exact path (MessageView.body_contains).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable

from common.store import Entry, StoreError, memory, to_crlf
from common.store.flags import letters_of
from imapd import flags as imapflags
from imapd import objectid
from imapd.message import MessageView, canonical_addresses, known_fields
from imapd.mime import split_header
from imapd.mimetext import header_text, text_codec
from imapd.parser import And, Key, Not, Or, SearchNode, SeqSet
from imapd.selected import Selected, member

RangeCache = dict[int, tuple[tuple[int, int], ...]]

BULK = 100  # a SEARCH of more messages than this takes the cached headers in one walk
ADDRESS_KEYS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "TO": "To", "SUBJECT": "Subject"}
# The cached searched headers (common/store/msgcache.py field): for each of SEARCHED, each value
# of that field as "\0" + value.lower(), the groups joined by "\1", in UTF-8. A needle holds no
# NUL (RFC 3501 CHAR8), so it never matches across two values.
SEARCH_FIELDS = "headers"
SEARCHED = ("FROM", "TO", "CC", "BCC", "SUBJECT")
_CHARSET = re.compile(rb"charset\s*=\s*\"?([^\s\";]*)")
_UNSAFE = (b"base64", b"quoted-printable", b"message/", b"digest")


def searched_headers(fields: dict[str, list[str]]) -> bytes:
    """The value SEARCH_FIELDS caches for a message, from known_fields() of its header."""
    groups = []
    for name in SEARCHED:
        values = []
        for value in fields.get(name, ()):
            # header_text gives an ASCII value without encoded words back as it is
            text = value if value.isascii() and "=?" not in value else header_text(value)
            values.append(b"\0" + text.lower().encode("utf-8", "surrogatepass"))
            if name != "SUBJECT":
                # An address field matches as written and as its addresses written out in one
                # form (imapd.message.canonical_addresses), as with Dovecot.
                canonical = canonical_addresses(value)
                if canonical != text:
                    values.append(b"\0" + canonical.lower().encode("utf-8", "surrogatepass"))
        groups.append(b"".join(values))
    return b"\1".join(groups)


class Candidate:
    """One message under test, loading its content only when a key needs it."""

    __slots__ = ("_headers", "_message", "_raw", "entry", "ranges", "seq", "view")

    def __init__(self, view: Selected, seq: int, entry: Entry, ranges: RangeCache) -> None:
        self.view, self.seq, self.entry, self.ranges = view, seq, entry, ranges
        self._message: MessageView | None = None
        self._raw: bytes | None = None
        self._headers: bytes | None = None

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

    def raw(self) -> bytes:
        """The stored bytes (LF line ends); empty when the message is gone."""
        if self._raw is None:
            try:
                self._raw = self.view.mailbox.read(self.entry)
            except StoreError:
                self._raw = b""
        return self._raw

    @property
    def message(self) -> MessageView:
        if self._message is None:
            self._message = MessageView(to_crlf(self.raw()))
        return self._message

    def headers(self) -> bytes:
        """The searched headers: from the cache, else from the message (then cached)."""
        if self._headers is None:
            mailbox = self.view.mailbox
            cached = mailbox.cached(self.entry, SEARCH_FIELDS)
            if cached is None:
                try:
                    if self._raw is None:
                        header = mailbox.read_header(self.entry)
                    else:
                        header = self._raw[: split_header(self._raw, 0, len(self._raw))[0]]
                    cached = searched_headers(known_fields(header))
                except StoreError:  # expunged meanwhile: it matches nothing
                    return b"\1" * (len(SEARCHED) - 1)
                mailbox.remember(self.entry, SEARCH_FIELDS, cached)
            self._headers = cached
        return self._headers


def search(view: Selected, criteria: SearchNode) -> list[tuple[int, Entry]]:
    ranges: RangeCache = {}  # the tree (and so every id in it) lives for the whole search
    entries = view.entries
    by_name = name_filter(criteria)
    if by_name is not None:  # ALL, or a flag of the file names: no message to look at
        # A pair per message of a big folder, no garbage among them: no collector passes.
        with memory.paused_gc():
            if by_name is any_name:
                return list(enumerate(entries, 1))
            return [(seq, e) for seq, e in enumerate(entries, 1) if by_name(e.name)]
    headers: list[bytes | None] = []
    if len(entries) > BULK and uses_headers(criteria):
        headers = view.mailbox.cached_column(entries, SEARCH_FIELDS)
        if isinstance(criteria, Key):
            return search_headers(view, criteria, headers)
    found = []
    for seq, entry in enumerate(entries, 1):
        item = Candidate(view, seq, entry, ranges)
        if headers:
            item._headers = headers[seq - 1]
        if safe_matches(criteria, item):
            found.append((seq, entry))
    return found


def name_filter(node: SearchNode) -> Callable[[str], bool] | None:
    """For ALL (any_name), a system flag kept in the file name (`\\Seen`, `UNSEEN`...),
    or NOT one: a test of the file name that a search of a whole folder runs without a
    Candidate per message; None for anything else."""
    negated = isinstance(node, Not)
    key = node.item if isinstance(node, Not) else node
    if not isinstance(key, Key):
        return None
    if key.name == "ALL" and not negated:
        return any_name
    letter = imapflags.FLAG_LETTERS.get((key.text or "").lower()) if key.name == "FLAG" else None
    if letter is None:
        return None
    if negated:
        return lambda name: letter not in letters_of(name)
    return lambda name: letter in letters_of(name)


def any_name(name: str) -> bool:
    return True


def uses_headers(node: SearchNode) -> bool:
    if isinstance(node, (And, Or)):
        return any(uses_headers(child) for child in node.items)
    if isinstance(node, Not):
        return uses_headers(node.item)
    return node.name in ADDRESS_KEYS


def search_headers(
    view: Selected, key: Key, headers: list[bytes | None]
) -> list[tuple[int, Entry]]:
    """A search for one of FROM, TO, CC, BCC, SUBJECT over the cached searched headers: one
    substring test per message (text_matches for the messages the cache does not have)."""
    index = SEARCHED.index(key.name)
    needle = key.text.lower().encode("utf-8", "surrogatepass")
    found = []
    for seq, (entry, blob) in enumerate(zip(view.entries, headers, strict=True), 1):
        if blob is None:
            if safe_matches(key, Candidate(view, seq, entry, {})):
                found.append((seq, entry))
            continue
        segment = blob.split(b"\1", index + 1)[index]
        if (needle in segment) if needle else bool(segment):
            found.append((seq, entry))
    return found


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
        segment = item.headers().split(b"\1")[SEARCHED.index(key.name)]
        if not needle:
            return bool(segment)
        return needle.encode("utf-8", "surrogatepass") in segment
    if key.name == "HEADER":
        values = item.message.header_values(key.header)
        return bool(values) and (not needle or any(needle in v.lower() for v in values))
    if key.name == "BODY":
        if not_in_body(item.raw(), key.text):
            return False
        return item.message.body_contains(key.text)
    if key.name == "TEXT":
        return item.message.text_contains(key.text)
    return False


def not_in_body(data: bytes, needle: str) -> bool:
    """True when SEARCH BODY `needle` surely does not match the stored message `data`, without
    decoding it (see the module docstring); False means "look closer"."""
    folded = needle.casefold()
    if not folded.isascii() or "\r" in folded or "\n" in folded or not folded:
        return False
    start = data.find(b"\n\n")
    body = data[start + 2 :] if start >= 0 else b""
    if not body.isascii():
        return False
    lowered = data.lower()
    if any(marker in lowered for marker in _UNSAFE):
        return False
    for charset in _CHARSET.findall(lowered):
        if not ascii_safe(charset.decode("ascii", "replace")):
            return False
    return folded.encode("ascii") not in body.lower()


def ascii_safe(charset: str) -> bool:
    """Whether a charset decodes ASCII bytes to the same characters whatever comes around them
    (not so: UTF-7, UTF-16, ISO-2022, HZ, EBCDIC...)."""
    codec = text_codec(charset) or "utf-8"
    return codec in ("utf-8", "ascii", "latin-1") or codec.startswith(
        ("iso8859", "cp125", "koi8", "mac-", "cp437", "cp85")
    )


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
