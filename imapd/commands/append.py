"""APPEND (RFC 3501 6.3.11) with APPENDUID (RFC 4315), several messages at once (MULTIAPPEND,
RFC 3502), messages joined from text and parts of stored messages (CATENATE, RFC 4469), literal8
(BINARY, RFC 3516 4.3), messages with UTF-8 headers as utf8-literals (UTF8=ACCEPT, RFC 6855 4)
and a size limit (APPENDLIMIT, RFC 7889).

Every message is written to tmp/ and fsynced before any is renamed into cur/, and all get their
UIDs in one uidlist update (common/store Mailbox.append_all): a MULTIAPPEND that fails for one
message appends none (RFC 3502 6.3.11). A message sent as a literal8 has its binary parts stored
in base64 (imapd/binary.py).

States: authenticated and selected. Replies: OK [APPENDUID validity uids]; NO [TRYCREATE] for a
mailbox that does not exist; NO [TOOBIG] for a message over the limit (max_literal); NO [BADURL
url] for a CATENATE URL that names nothing this user may read; NO [CANNOT] for an empty message;
BAD for a utf8-literal before ENABLE UTF8=ACCEPT (as Cyrus answers it).

A message whose headers hold 8-bit octets is stored as sent in any session, UTF8=ACCEPT enabled
or not. RFC 6855 4 would have such an APPEND refused (NO) before ENABLE UTF8=ACCEPT; we take it
on purpose: IMAP4rev1 tools that move mail between servers (imapsync, mbsync, offlineimap) copy
old messages with raw 8-bit headers as they are and do not enable UTF8=ACCEPT, and refusing them
would strand that mail on the old server.
"""

from __future__ import annotations

from common.store import MailboxNotFound, StoreError, TooManyKeywords, to_crlf, to_lf
from imapd import binary
from imapd import flags as imapflags
from imapd import responses as r
from imapd.commands.base import expect, store_errors
from imapd.imapurl import MessageUrl, parse_message_url
from imapd.message import MessageView
from imapd.parser import (
    AppendArgs,
    BodySection,
    CatPart,
    Command,
    ParseError,
    SeqSet,
    parse_append,
    parse_fetch,
)
from imapd.parser_base import Reader
from imapd.responses import ImapError, bad
from imapd.session import Session
from imapd.states import AUTHENTICATED, Result, Spec


def cmd_append(session: Session, command: Command) -> Result:
    args = expect(command, AppendArgs)
    if "UTF8=ACCEPT" not in session.enabled and any(m.uses_utf8 for m in args.messages):
        raise bad("UTF8 needs ENABLE UTF8=ACCEPT first")
    tree = session.require_tree()
    limit = session.settings.get_int("max_literal")
    if any(m.catenate is None and not m.data for m in args.messages):
        raise ImapError("Empty message", "CANNOT")
    with store_errors():
        try:
            # Opening syncs: messages delivered since anyone looked get their UIDs first.
            mailbox, _snap = tree.open(args.mailbox)
        except MailboxNotFound:
            raise ImapError(*r.TRYCREATE) from None
        prepared = []
        for message in args.messages:
            data = message.data
            if message.catenate is not None:
                data = catenate(session, message.catenate, limit)
            if len(data) > limit:
                raise ImapError(*r.MESSAGE_TOO_LARGE)
            if not data:
                raise ImapError("Empty message", "CANNOT")
            try:
                letters = imapflags.to_letters(message.flags, mailbox.keywords, create=True)
            except TooManyKeywords:
                raise ImapError("Too many keywords in this mailbox", "LIMIT") from None
            date = message.internal_date.timestamp() if message.internal_date else None
            prepared.append((to_lf(binary.storable(data)), letters, date))
        validity, uids = mailbox.append_all(prepared)
    return ("APPEND completed", f"APPENDUID {validity} {SeqSet.from_values(uids)}")


# -- CATENATE (RFC 4469) -------------------------------------------------------------------------


def catenate(session: Session, parts: tuple[CatPart, ...], limit: int) -> bytes:
    """The message a CATENATE builds: its TEXT parts and the data its URLs name, in order."""
    chunks = []
    total = 0
    for part in parts:
        data = url_data(session, part.value) if part.kind == "URL" else part.value
        total += len(data)
        if total > limit:
            raise ImapError(*r.MESSAGE_TOO_LARGE)
        chunks.append(data)
    return b"".join(chunks)


def url_data(session: Session, raw: bytes) -> bytes:
    """What an IMAP URL names (RFC 4469 5, RFC 5092), for this user only; NO [BADURL] for a
    URL that does not parse, names another user, a mailbox or message that is not there, a
    UIDVALIDITY that is not the mailbox's, or a section the message does not have."""
    text = raw.decode("utf-8", "replace")
    refused = ImapError("Bad or unknown URL", "BADURL " + "".join(c for c in text if c != "]"))
    try:
        url = parse_message_url(text)
    except ValueError:
        raise refused from None
    if url.user is not None and url.user != session.user:
        raise refused
    try:
        message = url_message(session, url)
    except (MailboxNotFound, StoreError, OSError):
        raise refused from None
    if message is None:
        raise refused
    data = section_of(message, url.section)
    if data is None:
        raise refused
    if url.partial is not None:
        start, count = url.partial
        data = data[start : None if count is None else start + count]
    return data


def url_message(session: Session, url: MessageUrl) -> MessageView | None:
    name = url.mailbox
    if name is None:  # relative to the selected mailbox
        if session.selected is None:
            return None
        name = session.selected.name
    mailbox, snap = session.require_tree().open(name)
    if url.uidvalidity is not None and url.uidvalidity != snap.uidvalidity:
        return None
    entry = next((e for e in snap.entries if e.uid == url.uid), None)
    if entry is None:
        return None
    return MessageView(to_crlf(mailbox.read(entry)))


def section_of(message: MessageView, spec: str) -> bytes | None:
    """BODY[spec] of the message (RFC 5092 isection is an IMAP section spec)."""
    try:
        args = parse_fetch(Reader(b"1 BODY.PEEK[" + spec.encode("ascii", "replace") + b"]"), False)
    except ParseError:
        return None
    item = args.items[0]
    if not isinstance(item, BodySection) or item.partial is not None:
        return None
    return message.section(item.parts, item.text, item.fields)


COMMANDS = {"APPEND": Spec(parse_append, cmd_append, AUTHENTICATED)}
