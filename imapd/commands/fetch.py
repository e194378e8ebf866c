"""FETCH and UID FETCH (RFC 3501 6.4.5, 6.4.8, 7.4.2), with MODSEQ and CHANGEDSINCE (RFC 7162
3.1.4), the VANISHED modifier of QRESYNC (3.2.6) and BINARY[], BINARY.SIZE[] (RFC 3516 4.1,
4.2, imapd/binary.py).

Message files are read only when an item needs the content (Decimail's lazy loading, seed 001):
FLAGS, UID, MODSEQ, RFC822.SIZE and INTERNALDATE come from the file name and inode. A body fetch
without PEEK sets \\Seen (read-write mailboxes) and the response then carries the new FLAGS.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from common.store import SEEN, Entry, MessageGone, StoreError, crlf_size, memory, to_crlf
from imapd import binary, objectid
from imapd import responses as r
from imapd.commands.base import enable_condstore, expect, store_errors
from imapd.message import MessageView, envelope_of, known_fields
from imapd.mime import split_header
from imapd.parser import BinarySection, BodySection, Command, FetchArgs, parse_fetch_command
from imapd.prefetch import MIN_MISSES, Prefetch, Values, Work, prefetching
from imapd.qresync import vanished_earlier
from imapd.responses import ImapError, bad
from imapd.search import searched_headers
from imapd.selected import Selected
from imapd.session import Session
from imapd.states import SELECTED, Result, Spec

# Derived once per message and kept in the folder's disposable cache (common/store/msgcache.py).
CACHED_ITEMS = {"ENVELOPE": "envelope", "BODYSTRUCTURE": "bodystructure", "BODY": "body"}


class Content:
    """One message's content for one FETCH response, read only as far as an item needs: cached
    items need no read at all, an ENVELOPE miss reads only the header (or takes it from the
    whole file when a size miss read that already), and only body items parse the whole file.
    The file is read once per response whatever asks for it."""

    __slots__ = (
        "_envelope",
        "_full",
        "_looked",
        "_new",
        "_new_size",
        "_raw",
        "_size",
        "entry",
        "view",
    )

    def __init__(self, view: Selected, entry: Entry) -> None:
        self.view, self.entry = view, entry
        self._full: MessageView | None = None
        self._raw: bytes | None = None  # the stored bytes (LF line ends)
        self._looked = False  # the cache was asked for size and envelope
        self._size: int | None = None
        self._envelope: bytes | None = None
        self._new: dict[str, bytes] | None = None  # derived here, for the cache (finish())
        self._new_size = False

    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = self.view.mailbox.read(self.entry)
        return self._raw

    def full(self) -> MessageView:
        if self._full is None:
            self._full = MessageView(to_crlf(self.raw()))
        return self._full

    # RFC822.SIZE and ENVELOPE are what a client asks of every message of a folder: the cache
    # is asked for both in one lookup, and what was derived is cached in one call (finish()).

    def _look(self) -> None:
        if not self._looked:
            self._looked = True
            self._size, self._envelope = self.view.mailbox.summary(self.entry)

    def size(self) -> int:
        self._look()
        if self._size is None:
            self._size = crlf_size(self.raw())
            self._new = self._new or {}
            self._new_size = True
        return self._size

    def envelope(self) -> bytes:
        self._look()
        if self._envelope is None:
            data = self._raw if self._raw is not None else self.view.mailbox.read_header(self.entry)
            fields = known_fields(header_block(data))
            self._new = self._new or {}
            self._envelope = self._new["envelope"] = envelope_of(fields)
            # The header is read now: the fields SEARCH looks at are cached with it, so a
            # SEARCH FROM or SUBJECT after a FETCH of envelopes reads no file.
            self._new["headers"] = searched_headers(fields)
        return self._envelope

    def take(self, derived: Derived | None) -> None:
        """Size, ENVELOPE and searched headers derived by the prefetch helper."""
        if derived is not None:
            self._looked = True
            self._size, self._envelope, headers = derived
            self._new = {"envelope": self._envelope, "headers": headers}
            self._new_size = True

    def finish(self) -> None:
        """Cache what this response derived."""
        if self._new is not None:
            size = self._size if self._new_size else None
            self.view.mailbox.remember_all(self.entry, size, self._new)

    def derived(self, item: str) -> bytes:
        """ENVELOPE, BODYSTRUCTURE or BODY, from the cache or computed and cached."""
        if item == "ENVELOPE":
            return self.envelope()
        mailbox, field = self.view.mailbox, CACHED_ITEMS[item]
        value = mailbox.cached(self.entry, field)
        if value is None:
            value = self._compute(item)
            mailbox.remember(self.entry, field, value)
        return value

    def _compute(self, item: str) -> bytes:
        message = self.full()
        return message.bodystructure() if item == "BODYSTRUCTURE" else message.body()


Derived = tuple[int, bytes, bytes]  # size, ENVELOPE, searched headers


def derive(data: bytes) -> Derived:
    """What the cache keeps of a message that a FETCH of sizes and envelopes needs."""
    fields = known_fields(header_block(data))
    return crlf_size(data), envelope_of(fields), searched_headers(fields)


def fetch_work(read: Callable[[Entry], bytes]) -> Work:
    """The prefetch helper's work for a FETCH of sizes and envelopes (`derived` reads it
    back)."""

    def work(entry: Entry) -> Values:
        size, envelope, headers = derive(read(entry))
        return b"%d" % size, envelope, headers

    return work


def derived(values: Values | None) -> Derived | None:
    return None if values is None else (int(values[0]), values[1], values[2])


def header_block(data: bytes) -> bytes:
    """The stored message up to and including its blank line (all of it without one)."""
    return data[: split_header(data, 0, len(data))[0]]


def cmd_fetch(session: Session, command: Command) -> Result:
    expect(command, FetchArgs)
    args = command.args
    view = session.require_selected()
    if args.vanished and "QRESYNC" not in session.enabled:
        raise bad("VANISHED needs ENABLE QRESYNC first")  # RFC 7162 3.2.3
    items = list(args.items)
    if args.changedsince is not None or "MODSEQ" in items:
        enable_condstore(session)
    targets = view.resolve(args.seqset, command.uid)
    if args.changedsince is not None:
        if args.vanished:
            # RFC 7162 3.2.6: the expunged UIDs of the set come before any FETCH response.
            highest = max(view.uidnext - 1, 1)
            with store_errors():
                line = vanished_earlier(view, list(args.seqset.resolve(highest)), args.changedsince)
            if line is not None:
                session.send(line)
        targets = [(seq, e) for seq, e in targets if e.modseq > args.changedsince]
    if args.marks_seen and not view.readonly:
        with store_errors():
            mark_seen(view, [e for _seq, e in targets])
    if view.condstore and "MODSEQ" not in items:
        # RFC 7162 3.1: once CONDSTORE is on, every untagged FETCH carries MODSEQ.
        items.append("MODSEQ")
    gone = unreadable = 0
    with helping(session, view, targets, items) as helper:
        for index, (seq, entry) in enumerate(targets):
            try:
                content = Content(view, entry)
                if helper is not None and helper.mine(index):
                    content.take(derived(helper.get(entry)))
                response = render(view, seq, entry, items, content, args.marks_seen)
                content.finish()
            except MessageGone:
                gone += 1
                continue
            except StoreError as exc:
                session.log.error("cannot fetch UID %d: %s", entry.uid, exc)
                unreadable += 1
                continue
            session.send(response)
    if len(targets) > memory.BIG_WORK:
        memory.release()  # what rendering that many responses used, back to the system
    if unreadable:
        raise ImapError(*r.STORE_FAILED)
    if gone:
        # A message expunged by another session since this one listed it: its file is gone,
        # so its data cannot be sent. RFC 2180 4.1 offers keeping expunged data until every
        # session was told (4.1.1: a Maildir unlinks at EXPUNGE), NIL data (4.1.3: a client
        # cannot tell it from an empty message, and caches it), failing the EXPUNGE (4.1.4:
        # POP3 and other programs expunge without asking us), or what is done here, 4.1.2:
        # FETCH responses for the messages that are still there and a tagged NO, with RFC
        # 5530's EXPUNGEISSUED saying why; the client's next NOOP brings the EXPUNGE (RFC
        # 3501 7.4.1 forbids sending it during FETCH) and it may then FETCH again.
        raise ImapError(*r.EXPUNGE_ISSUED)
    return "FETCH completed"


def helping(
    session: Session, view: Selected, targets: list[tuple[int, Entry]], items: list
) -> contextlib.AbstractContextManager[Prefetch | None]:
    """A prefetch helper (imapd/prefetch.py) for a FETCH of the envelopes of a big folder that
    the cache does not have yet."""
    if "ENVELOPE" not in items or len(targets) < MIN_MISSES:
        return contextlib.nullcontext()
    mailbox = view.mailbox

    def misses(entry: Entry) -> bool:
        return None in mailbox.summary(entry)

    entries = [entry for _seq, entry in targets]
    return prefetching(fetch_work(mailbox.read), entries, misses, session.io.sock.fileno())


def mark_seen(view: Selected, entries: list[Entry]) -> None:
    changed = []
    for entry in entries:
        if SEEN not in entry.letters and view.mailbox.set_letters(entry, entry.letters + SEEN):
            changed.append(entry)
    if changed:
        view.mailbox.commit_flags(changed)
        for entry in changed:
            view.reported[entry.uid] = entry.letters


def render(
    view: Selected, seq: int, entry: Entry, items: list, content: Content, flags_changed: bool
) -> bytes:
    parts: list[bytes] = []
    has_flags = False
    for item in items:
        if isinstance(item, BodySection):
            parts.append(item.label.encode() + b" " + r.literal(section_data(content.full(), item)))
            continue
        if isinstance(item, BinarySection):
            parts.append(item.label.encode() + b" " + binary_data(content.full(), item))
            continue
        if item == "FLAGS":
            has_flags = True
        parts.append(simple_item(view, entry, item, content))
    if flags_changed and not has_flags and not view.readonly:
        parts.append(view.flags_item(entry))
    return b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"


def simple_item(view: Selected, entry: Entry, item: str, content: Content) -> bytes:
    if item == "UID":
        return b"UID %d" % entry.uid
    if item == "FLAGS":
        return view.flags_item(entry)
    if item == "MODSEQ":
        return b"MODSEQ (%d)" % entry.modseq
    if item == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % content.size()
    if item == "INTERNALDATE":
        return b"INTERNALDATE " + r.internal_date(view.mailbox.internal_date(entry)).encode()
    if item in EXTENSION_ITEMS:
        return extension_item(view, entry, item)
    if item in CACHED_ITEMS:
        return item.encode() + b" " + content.derived(item)
    message = content.full()
    if item == "RFC822":
        return b"RFC822 " + r.literal(message.raw)
    if item == "RFC822.HEADER":
        return b"RFC822.HEADER " + r.literal(message.header_bytes())
    return b"RFC822.TEXT " + r.literal(message.text_bytes())


def section_data(message: MessageView, item: BodySection) -> bytes:
    """BODY[section]<partial>: a part that does not exist is the empty string (as Dovecot)."""
    data = message.section(item.parts, item.text, item.fields) or b""
    if item.partial is not None:
        start, count = item.partial
        data = data[start : start + count]
    return data


def binary_data(message: MessageView, item: BinarySection) -> bytes:
    """BINARY[section]<partial> as a literal8 when it holds NUL, else a literal (RFC 3516 4.2:
    the client then knows the data has no NUL without looking); BINARY.SIZE as a number. A
    part that does not exist is empty, as BODY[] has it."""
    try:
        data = binary.section(message, item.parts) or b""
    except binary.UnknownEncoding:
        raise ImapError("Unknown Content-Transfer-Encoding", "UNKNOWN-CTE") from None
    if item.size:
        return b"%d" % len(data)
    if item.partial is not None:
        start, count = item.partial
        data = data[start : start + count]
    return (b"~" + r.literal(data)) if b"\0" in data else r.literal(data)


EXTENSION_ITEMS = frozenset({"EMAILID", "THREADID", "SAVEDATE"})


def extension_item(view: Selected, entry: Entry, item: str) -> bytes:
    """EMAILID and THREADID (RFC 8474 5, imapd/objectid.py), SAVEDATE (RFC 8514 4)."""
    if item == "EMAILID":
        return b"EMAILID (%s)" % objectid.email_id(view, entry).encode()
    if item == "THREADID":
        return b"THREADID (%s)" % objectid.thread_id(view, entry).encode()
    return b"SAVEDATE " + r.internal_date(view.mailbox.save_date(entry)).encode()


COMMANDS = {"FETCH": Spec(parse_fetch_command, cmd_fetch, SELECTED, uid=True, may_expunge=False)}
