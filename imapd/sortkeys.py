"""What SORT and THREAD compare, as pure functions over one message's header fields.

RFC 5256 2.1 (the base subject, exactly as its steps (1)-(7) say), 2.2 (the sent date), 3
(the addr-mailbox of the first From/To/Cc address), 7 (strings collate with i;unicode-casemap,
RFC 5051), RFC 5957 3 (the display value of an address), and the message IDs THREAD=REFERENCES
links by (RFC 5256 3, RFC 5322 3.6.4). `SortFacts` gathers all of them for one message; it is
derived from the header alone, so a folder's disposable cache keeps it, a column per fact
(imapd/sorting.py).

Choices where the RFCs leave room, all as Dovecot does: a Date field that is missing or cannot
be read gives no sent date (the caller then uses the INTERNALDATE, RFC 5256 2.2); a readable
date with an unreadable time is at 00:00:00 and one with an unknown zone is UTC; References
wins over In-Reply-To, of which only the first message ID counts; a message ID is valid when
it is `<left@right>` without spaces.
"""

from __future__ import annotations

import calendar
import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from imapd import envelope
from imapd.envelope import MISSING_DOMAIN, Address
from imapd.message import parse_date
from imapd.mimetext import header_text

_WSP_RUN = re.compile(r"[ \t\r\n]+")
# The subject-extraction grammar of RFC 5256 2.1 on a casemapped (upper-case) subject whose
# whitespace is already single spaces: subj-blob, subj-refwd and subj-leader.
_BLOB = r"\[[^\[\]]*\] ?"
_REFWD = rf"(?:RE|FWD?) ?(?:{_BLOB})?:"
_LEADER = re.compile(rf"(?:{_BLOB})*{_REFWD}| ")
_BLOB_RE = re.compile(_BLOB)
_TIME = re.compile(r"(?<!\d)(\d{1,2}):(\d{2})(?::(\d{2}))?(?!\d)")
_NUMERIC_ZONE = re.compile(r"([+-])(\d{2})(\d{2})(?!\d)")
_NAMED_ZONE = re.compile(r"(?<![A-Za-z])(UT|GMT|[ECMP][SD]T)(?![A-Za-z])", re.IGNORECASE)
_ZONES = {"UT": 0, "GMT": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5}
_ZONES |= {"MST": -7, "MDT": -6, "PST": -8, "PDT": -7}
_MSG_ID = re.compile(r"<([^<>\s@]+@[^<>\s@]+)>")


@functools.lru_cache(maxsize=4096)
def _casemap_char(char: str) -> str:
    """RFC 5051 2: the simple titlecase mapping, then the full decomposition. Python exposes
    full case mappings only; where one gives several characters the simple one is the
    character itself or its upper-case form."""
    title = char.title()
    if len(title) != 1:
        upper = char.upper()
        title = upper if len(upper) == 1 else char
    return unicodedata.normalize("NFKD", title)


def casemap(text: str) -> str:
    """The i;unicode-casemap form of `text` (RFC 5051): two strings are equal under the
    collation when their forms are equal, and order as the forms do (code point order is the
    UTF-8 octet order the collation names)."""
    if text.isascii():
        return text.upper()
    return "".join(_casemap_char(char) for char in text)


# -- RFC 5256 2.1: the base subject ---------------------------------------------------------


def base_subject(subject: str) -> tuple[str, bool]:
    """(base subject, whether it is a reply or forward) of a decoded Subject value.

    The base subject is casemapped; "reply or forward" (RFC 5256 3, REFERENCES step 5) means
    that the extraction removed a subj-refwd, a "(fwd)" trailer or a subj-fwd wrapper."""
    # (1) Encoded words are decoded by the caller; tabs and continuations become spaces, and
    # runs of spaces one space.
    text = _WSP_RUN.sub(" ", casemap(subject))
    reply = False
    while True:
        # (2) Remove trailing subj-trailer ("(fwd)" / WSP) until none is left.
        while True:
            if text.endswith(" "):
                text = text[:-1]
            elif text.endswith("(FWD)"):
                text, reply = text[:-5], True
            else:
                break
        # (3)-(5) Remove leading subj-leader, and a leading subj-blob when something is left
        # after it, until neither applies.
        while True:
            leader = _LEADER.match(text)
            if leader is not None:
                reply = reply or leader.group() != " "
                text = text[leader.end() :]
                continue
            blob = _BLOB_RE.match(text)
            if blob is not None and blob.end() < len(text):
                text = text[blob.end() :]
                continue
            break
        # (6) A "[fwd: ... ]" wrapper goes, and the extraction starts again at (2).
        if text.startswith("[FWD:") and text.endswith("]"):
            text, reply = text[5:-1], True
            continue
        # (7) What is left is the base subject.
        return text, reply


# -- RFC 5256 2.2: the sent date -----------------------------------------------------------


def sent_time(value: str | None) -> int | None:
    """The Date field as seconds since the epoch in UTC, or None when there is no readable
    date (RFC 5256 2.2; the caller falls back to the INTERNALDATE)."""
    day = parse_date(value)
    if value is None or day is None:
        return None
    seconds = 0
    zone_from = 0
    clock = _TIME.search(value)
    if clock is not None:
        hour, minute, second = int(clock.group(1)), int(clock.group(2)), int(clock.group(3) or 0)
        if hour < 24 and minute < 60 and second <= 60:
            seconds = hour * 3600 + minute * 60 + min(second, 59)
        zone_from = clock.end()
    return calendar.timegm(day.timetuple()) + seconds - _zone_offset(value[zone_from:])


def _zone_offset(rest: str) -> int:
    """The zone after the time in seconds east of UTC; 0 (UTC) when missing or unknown."""
    numeric = _NUMERIC_ZONE.search(rest)
    if numeric is not None:
        hours, minutes = int(numeric.group(2)), int(numeric.group(3))
        if minutes >= 60:
            return 0
        offset = hours * 3600 + minutes * 60
        return -offset if numeric.group(1) == "-" else offset
    named = _NAMED_ZONE.search(rest)
    return _ZONES[named.group(1).upper()] * 3600 if named is not None else 0


# -- addresses (RFC 5256 3, RFC 5957 3) ------------------------------------------------------


def first_address(value: str | None) -> Address | None:
    """The first address structure of an address header, as ENVELOPE has it (a group's start
    counts: its addr-mailbox is the group name)."""
    return envelope.first_address(value)


def mailbox_key(address: Address | None) -> str:
    """SORT FROM/TO/CC: the addr-mailbox, casemapped; "" when there is none."""
    if address is None or address.mailbox is None:
        return ""
    return casemap(header_text(address.mailbox))


def display_key(address: Address | None) -> str:
    """SORT DISPLAYFROM/DISPLAYTO (RFC 5957 3): the decoded display name when it is not
    empty, else addr-mailbox@addr-host, else the addr-mailbox, else ""; casemapped."""
    if address is None:
        return ""
    if address.name is not None:
        name = header_text(address.name).strip()
        if name:
            return casemap(name)
    if address.mailbox is None:
        return ""
    mailbox = header_text(address.mailbox)
    if address.host is not None and address.host != MISSING_DOMAIN:
        return casemap(f"{mailbox}@{header_text(address.host)}")
    return casemap(mailbox)


# -- message IDs (RFC 5256 3 REFERENCES, RFC 5322 3.6.4) -------------------------------------


def message_ids(value: str | None) -> list[str]:
    """The valid message IDs in a field, in order, without their angle brackets (compared
    case-sensitively, RFC 5256 3)."""
    if not value:
        return []
    return _MSG_ID.findall(value)


# -- one message -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SortFacts:
    """Everything SORT, THREAD and THREADID need of one message, from its header."""

    sent: int | None  # RFC 5256 2.2, UTC seconds; None: use the INTERNALDATE
    subject: str  # base subject, casemapped
    reply: bool  # the base-subject extraction removed a reply or forward marker
    from_: str
    to: str
    cc: str
    display_from: str
    display_to: str
    message_id: str  # "" when the message has no valid one
    references: tuple[str, ...]  # References, else the first ID of In-Reply-To

    @classmethod
    def from_fields(cls, first: dict[str, str]) -> SortFacts:
        """From the first value of each header field, by upper-case name."""
        get = first.get
        subject, reply = base_subject(header_text(get("SUBJECT") or ""))
        sender = first_address(get("FROM"))
        recipient = first_address(get("TO"))
        own = message_ids(get("MESSAGE-ID"))
        references = message_ids(get("REFERENCES")) or message_ids(get("IN-REPLY-TO"))[:1]
        return cls(
            sent=sent_time(get("DATE")),
            subject=subject,
            reply=reply,
            from_=mailbox_key(sender),
            to=mailbox_key(recipient),
            cc=mailbox_key(first_address(get("CC"))),
            display_from=display_key(sender),
            display_to=display_key(recipient),
            message_id=own[0] if own else "",
            references=tuple(references),
        )

    @property
    def thread_root(self) -> str:
        """The message ID a thread is known by: the first of the References chain, else the
        message's own (RFC 8474 THREADID; "" when neither is there)."""
        return self.references[0] if self.references else self.message_id

    def columns(self) -> dict[str, bytes]:
        """The facts as the folder's cache keeps them, one value per column (COLUMNS): strings
        in UTF-8, whose octet order is their code point order, so a SORT compares them as
        they are; "thread" is the reply mark, the message ID and the references."""
        text = _utf8
        return {
            "sent": _sent_value(self.sent),
            "subject": text(self.subject),
            "from": text(self.from_),
            "to": text(self.to),
            "cc": text(self.cc),
            "displayfrom": text(self.display_from),
            "displayto": text(self.display_to),
            "thread": _thread_value(self.reply, self.message_id, self.references),
        }

    @classmethod
    def from_columns(cls, values: dict[str, bytes]) -> SortFacts | None:
        """The facts `columns` gave; None when a value is missing or damaged."""
        try:
            sent = values["sent"]
            reply, _space, ids = values["thread"].decode("utf-8", "surrogatepass").partition(" ")
            own, *references = ids.split(" ")
            if reply not in ("0", "1") or (sent and not _NUMBER.fullmatch(sent)):
                return None
            text = _text
            return cls(
                sent=int(sent) if sent else None,
                subject=text(values["subject"]),
                reply=reply == "1",
                from_=text(values["from"]),
                to=text(values["to"]),
                cc=text(values["cc"]),
                display_from=text(values["displayfrom"]),
                display_to=text(values["displayto"]),
                message_id=own,
                references=tuple(references),
            )
        except (KeyError, UnicodeDecodeError):
            return None


# The columns of SortFacts.columns(), and the header fields each is derived from.
COLUMN_FIELDS = {
    "sent": ("DATE",),
    "subject": ("SUBJECT",),
    "from": ("FROM",),
    "to": ("TO",),
    "cc": ("CC",),
    "displayfrom": ("FROM",),
    "displayto": ("TO",),
    "thread": ("SUBJECT", "MESSAGE-ID", "REFERENCES", "IN-REPLY-TO"),
}
COLUMNS = tuple(COLUMN_FIELDS)
_NUMBER = re.compile(rb"-?\d+")


def column_values(first: dict[str, str], names: Iterable[str]) -> dict[str, bytes]:
    """SortFacts.from_fields(first).columns(), only the columns `names`: what a SORT by one
    criterion derives of a message the cache does not have yet."""
    get = first.get
    subject: tuple[str, bool] | None = None
    out = {}
    for name in names:
        if name == "sent":
            out[name] = _sent_value(sent_time(get("DATE")))
        elif name in ("subject", "thread"):
            if subject is None:
                subject = base_subject(header_text(get("SUBJECT") or ""))
            if name == "subject":
                out[name] = _utf8(subject[0])
            else:
                own = message_ids(get("MESSAGE-ID"))
                references = message_ids(get("REFERENCES")) or message_ids(get("IN-REPLY-TO"))[:1]
                out[name] = _thread_value(subject[1], own[0] if own else "", references)
        elif name in ("displayfrom", "displayto"):
            out[name] = _utf8(display_key(first_address(get(COLUMN_FIELDS[name][0]))))
        else:
            out[name] = _utf8(mailbox_key(first_address(get(COLUMN_FIELDS[name][0]))))
    return out


def _sent_value(sent: int | None) -> bytes:
    return b"" if sent is None else b"%d" % sent


def _thread_value(reply: bool, message_id: str, references: Sequence[str]) -> bytes:
    return (b"1 " if reply else b"0 ") + _utf8(" ".join((message_id, *references)))


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")
