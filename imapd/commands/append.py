"""APPEND (RFC 3501 6.3.11) with APPENDUID (RFC 4315): the message appears atomically, written
to tmp/, fsynced and renamed into cur/ (common/store Mailbox.append). A message sent as a
literal8 (BINARY, RFC 3516 4.3) has its binary parts stored in base64 (imapd/binary.py)."""

from __future__ import annotations

from common.store import MailboxNotFound, TooManyKeywords, to_lf
from imapd import binary
from imapd import flags as imapflags
from imapd import responses as r
from imapd.commands.base import expect, store_errors
from imapd.parser import AppendArgs, Command, parse_append
from imapd.responses import ImapError
from imapd.session import Session
from imapd.states import AUTHENTICATED, Result, Spec


def cmd_append(session: Session, command: Command) -> Result:
    expect(command, AppendArgs)
    args = command.args
    tree = session.require_tree()
    if not args.message:
        raise ImapError("Empty message", "CANNOT")
    with store_errors():
        try:
            # Opening syncs: messages delivered since anyone looked get their UIDs first.
            mailbox, _snap = tree.open(args.mailbox)
        except MailboxNotFound:
            raise ImapError(*r.TRYCREATE) from None
        try:
            letters = imapflags.to_letters(args.flags, mailbox.keywords, create=True)
        except TooManyKeywords:
            raise ImapError("Too many keywords in this mailbox", "LIMIT") from None
        date = args.internal_date.timestamp() if args.internal_date else None
        validity, uid = mailbox.append(to_lf(binary.storable(args.message)), letters, date)
    return ("APPEND completed", f"APPENDUID {validity} {uid}")


COMMANDS = {"APPEND": Spec(parse_append, cmd_append, AUTHENTICATED)}
