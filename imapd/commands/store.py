"""STORE and UID STORE (RFC 3501 6.4.6), with UNCHANGEDSINCE (RFC 7162 3.1.3): messages changed
since the given MODSEQ are left alone and named in `OK [MODIFIED set]`."""

from __future__ import annotations

from common.store import Entry, TooManyKeywords
from imapd import flags as imapflags
from imapd import responses as r
from imapd.commands.base import enable_condstore, expect, store_errors
from imapd.parser import Command, SeqSet, StoreArgs, parse_store
from imapd.responses import ImapError
from imapd.selected import Selected
from imapd.session import Session
from imapd.states import SELECTED, Result, Spec


def cmd_store(session: Session, command: Command) -> Result:
    expect(command, StoreArgs)
    args = command.args
    view = session.require_selected()
    if view.readonly:
        raise ImapError(*r.READ_ONLY)
    if args.unchangedsince is not None:
        enable_condstore(session)
    targets = view.resolve(args.seqset, command.uid)
    try:
        wanted = imapflags.to_letters(args.flags, view.mailbox.keywords, create=args.mode != "-")
    except TooManyKeywords:
        raise ImapError("Too many keywords in this mailbox", "LIMIT") from None
    modified = []
    if args.unchangedsince is not None:
        modified = [(seq, e) for seq, e in targets if e.modseq > args.unchangedsince]
        targets = [(seq, e) for seq, e in targets if e.modseq <= args.unchangedsince]
    with store_errors():
        changed = apply(view, [e for _seq, e in targets], args.mode, wanted)
        if changed:
            view.mailbox.commit_flags(changed)
    # A keyword this STORE created is announced before the first FETCH that shows it, here
    # and (at their next command) in every other session with the folder selected.
    for line in view.new_keywords():
        session.send(line)
    for seq, entry in targets:
        view.reported[entry.uid] = entry.letters
        # RFC 7162 3.1.3: a CONDSTORE client learns each new MODSEQ, even with .SILENT.
        if not args.silent or (view.condstore and entry in changed):
            session.send(view.flags_response(seq, entry, with_uid=command.uid))
    if modified:
        numbers = [e.uid if command.uid else seq for seq, e in modified]
        return ("Conditional STORE failed", f"MODIFIED {SeqSet.from_values(numbers)}")
    return "STORE completed"


def apply(view: Selected, entries: list[Entry], mode: str, wanted: str) -> list[Entry]:
    """Rename each file to its new flags; return the entries whose flags changed."""
    changed = []
    for entry in entries:
        current = set(entry.letters)
        if mode == "+":
            target = current | set(wanted)
        elif mode == "-":
            target = current - set(wanted)
        else:
            target = set(wanted)
        if target != current and view.mailbox.set_letters(entry, "".join(target)):
            changed.append(entry)
    return changed


COMMANDS = {"STORE": Spec(parse_store, cmd_store, SELECTED, uid=True, may_expunge=False)}
