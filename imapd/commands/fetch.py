"""FETCH and UID FETCH (RFC 3501 6.4.5, 6.4.8, 7.4.2), with MODSEQ and CHANGEDSINCE (RFC 7162
3.1.4) and the VANISHED modifier of QRESYNC (3.2.6).

Message files are read only when an item needs the content (Decimail's lazy loading, seed 001):
FLAGS, UID, MODSEQ, RFC822.SIZE and INTERNALDATE come from the file name and inode. A body fetch
without PEEK sets \\Seen (read-write mailboxes) and the response then carries the new FLAGS.
"""

from __future__ import annotations

from common.mailbox import Entry
from common.maildir import StoreError, to_crlf
from imapd import responses as r
from imapd.commands.base import expect, enable_condstore, SELECTED, Result, Spec, store_errors
from imapd.message import MessageView
from imapd.parser import BodySection, Command, FetchArgs
from imapd.qresync import vanished_earlier
from imapd.responses import bad
from imapd.selected import Selected
from imapd.session import Session

CONTENT_ITEMS = frozenset({"ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822", "RFC822.HEADER",
                           "RFC822.TEXT"})


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
                line = vanished_earlier(view, list(args.seqset.resolve(highest)),
                                        args.changedsince)
            if line is not None:
                session.send(line)
        targets = [(seq, e) for seq, e in targets if e.modseq > args.changedsince]
    if args.marks_seen and not view.readonly:
        with store_errors():
            mark_seen(view, [e for _seq, e in targets])
    if view.condstore and "MODSEQ" not in items:
        # RFC 7162 3.1: once CONDSTORE is on, every untagged FETCH carries MODSEQ.
        items.append("MODSEQ")
    needs_content = any(isinstance(i, BodySection) or i in CONTENT_ITEMS for i in items)
    failed = 0
    for seq, entry in targets:
        try:
            message = load(view, entry) if needs_content else None
            response = render(view, seq, entry, items, message, args.marks_seen)
        except StoreError:
            # Expunged by another session meanwhile (its size or content is gone too): nothing
            # to send for it; the EXPUNGE follows at a later command (RFC 3501 7.4.1).
            failed += 1
            continue
        session.send(response)
    if failed:
        return r.EXPUNGE_ISSUED
    return "FETCH completed"


def mark_seen(view: Selected, entries: list[Entry]) -> None:
    changed = []
    for entry in entries:
        if "S" not in entry.letters and view.mailbox.set_letters(entry, entry.letters + "S"):
            changed.append(entry)
    if changed:
        view.mailbox.commit_flags(changed)
        for entry in changed:
            view.reported[entry.uid] = entry.letters


def load(view: Selected, entry: Entry) -> MessageView:
    return MessageView(to_crlf(view.mailbox.read(entry)))


def render(view: Selected, seq: int, entry: Entry, items: list, message: MessageView | None,
           flags_changed: bool) -> bytes:
    parts: list[bytes] = []
    has_flags = False
    for item in items:
        if isinstance(item, BodySection):
            parts.append(item.label.encode() + b" " + r.literal(section_data(message, item)))
            continue
        if item == "FLAGS":
            has_flags = True
        parts.append(simple_item(view, entry, item, message))
    if flags_changed and not has_flags and not view.readonly:
        parts.append(b"FLAGS " + r.flag_list(view.flags_of(entry)).encode())
    return b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"


def simple_item(view: Selected, entry: Entry, item: str, message: MessageView | None) -> bytes:
    if item == "UID":
        return b"UID %d" % entry.uid
    if item == "FLAGS":
        return b"FLAGS " + r.flag_list(view.flags_of(entry)).encode()
    if item == "MODSEQ":
        return b"MODSEQ (%d)" % entry.modseq
    if item == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % view.mailbox.size(entry)
    if item == "INTERNALDATE":
        return b"INTERNALDATE " + r.internal_date(view.mailbox.internal_date(entry)).encode()
    if message is None:
        raise RuntimeError("content item without a loaded message")
    if item == "ENVELOPE":
        return b"ENVELOPE " + message.envelope()
    if item == "BODYSTRUCTURE":
        return b"BODYSTRUCTURE " + message.bodystructure()
    if item == "BODY":
        return b"BODY " + message.body()
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
        data = data[start:start + count]
    return data


COMMANDS = {"FETCH": Spec(cmd_fetch, SELECTED, may_expunge=False)}
