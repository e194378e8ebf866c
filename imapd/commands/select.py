"""SELECT, EXAMINE (RFC 3501 6.3.1-2, CONDSTORE and QRESYNC of RFC 7162 3.1.8, 3.2.5), CLOSE,
UNSELECT (RFC 3691), EXPUNGE and UID EXPUNGE (RFC 3501 6.4.3, RFC 4315 2.1, RFC 7162 3.2.7)."""

from __future__ import annotations

from common.store import TRASHED
from imapd import objectid, rev2
from imapd import responses as r
from imapd.commands.base import expect, highestmodseq_code, store_errors
from imapd.parser import (
    Command,
    ExpungeArgs,
    QResync,
    SelectArgs,
    parse_expunge,
    parse_no_args,
    parse_select,
)
from imapd.qresync import vanished_earlier
from imapd.responses import ImapError, bad
from imapd.selected import Selected, member
from imapd.session import Session
from imapd.states import AUTHENTICATED, SELECTED, Result, Spec, State


def cmd_select(session: Session, command: Command) -> Result:
    return open_mailbox(session, command, readonly=False)


def cmd_examine(session: Session, command: Command) -> Result:
    return open_mailbox(session, command, readonly=True)


def open_mailbox(session: Session, command: Command, readonly: bool) -> Result:
    """Responses: FLAGS, EXISTS, RECENT, OK [UNSEEN/PERMANENTFLAGS/UIDVALIDITY/UIDNEXT/
    HIGHESTMODSEQ], with QRESYNC then VANISHED (EARLIER) and FETCH for what changed."""
    expect(command, SelectArgs)
    args = command.args
    if args.qresync is not None and "QRESYNC" not in session.enabled:
        # RFC 7162 3.2.5: the QRESYNC parameter without ENABLE QRESYNC is BAD.
        raise bad("QRESYNC must be enabled first")
    if session.selected is not None:
        # RFC 7162 3.2.11: everything before this line was about the mailbox now closed.
        session.selected.save_caches()
        session.untagged("OK [CLOSED] Previous mailbox closed")
    # A SELECT that fails leaves no mailbox selected (RFC 3501 6.3.1).
    session.selected, session.state = None, State.AUTHENTICATED
    tree = session.require_tree()
    with store_errors():
        mailbox, snap = tree.open(args.mailbox, claim_recent=not readonly)
        # A folder whose files cannot be written is served read-only, whatever was asked.
        readonly = readonly or mailbox.read_only
        view = Selected.open(mailbox, snap, readonly)
    if args.condstore or args.qresync is not None:
        session.enabled.add("CONDSTORE")
    view.condstore = "CONDSTORE" in session.enabled
    view.qresync = "QRESYNC" in session.enabled
    view.rev2 = rev2.is_rev2(session)
    announce(session, view, command.supplied(args.mailbox))
    if args.qresync is not None and args.qresync.uidvalidity == view.uidvalidity:
        with store_errors():
            resynchronize(session, view, args.qresync)
    session.selected, session.state = view, State.SELECTED
    done = "SELECT completed" if command.name == "SELECT" else "EXAMINE completed"
    return (done, "READ-ONLY" if readonly else "READ-WRITE")


def announce(session: Session, view: Selected, supplied: str | None) -> None:
    """`supplied`: the mailbox name as the client sent it when normalizing changed it, for the
    rev2 LIST response's OLDNAME (RFC 9051 6.3.2)."""
    for line in view.flag_lines():
        session.send(line)
    session.untagged(f"{len(view.entries)} EXISTS")
    if view.rev2:  # RFC 9051 6.3.2: no RECENT and no UNSEEN, the mailbox's LIST instead
        session.send(rev2.list_line(session, view.name, supplied))
    else:
        session.send(view.recent_line())
        unseen = view.unseen_first()
        if unseen is not None:
            session.untagged(f"OK [UNSEEN {unseen}] First unseen")
    session.untagged(f"OK [UIDVALIDITY {view.uidvalidity}] UIDs valid")
    session.untagged(f"OK [UIDNEXT {view.uidnext}] Predicted next UID")
    # Every folder keeps MODSEQs in its uidlist, so HIGHESTMODSEQ always (never NOMODSEQ).
    session.untagged(f"OK [HIGHESTMODSEQ {view.highestmodseq}] Highest")
    mailbox_id = objectid.mailbox_id_line(view)
    if mailbox_id is not None:
        session.send(mailbox_id)


def resynchronize(session: Session, view: Selected, qresync: QResync) -> None:
    """RFC 7162 3.2.5.1: what was expunged since the client's MODSEQ (VANISHED (EARLIER)), then
    the flags of what changed, as `UID FETCH <known-uids> (FLAGS) (CHANGEDSINCE m VANISHED)`."""
    highest = max(view.uidnext - 1, 1)
    wanted = (
        list(qresync.known_uids.resolve(highest))
        if qresync.known_uids is not None
        else [(1, highest)]
    )
    line = vanished_earlier(view, wanted, qresync.modseq, qresync.seq_match)
    if line is not None:
        session.send(line)
    ranges = tuple(wanted)
    for seq, entry in enumerate(view.entries, 1):
        if entry.modseq > qresync.modseq and member(ranges, entry.uid):
            session.send(view.flags_response(seq, entry, with_uid=True))


def cmd_close(session: Session, command: Command) -> Result:
    """Silently expunge (no EXPUNGE or VANISHED responses) unless read-only, then deselect;
    never HIGHESTMODSEQ here (RFC 7162 3.2.8)."""
    view = session.require_selected()
    if not view.readonly:
        with store_errors():
            view.refresh(allow_expunge=False)
            view.mailbox.expunge([e for e in view.entries if TRASHED in e.letters])
    view.save_caches()
    session.selected, session.state = None, State.AUTHENTICATED
    return "CLOSE completed"


def cmd_unselect(session: Session, command: Command) -> Result:
    """RFC 3691: deselect without expunging."""
    session.require_selected().save_caches()
    session.selected, session.state = None, State.AUTHENTICATED
    return "UNSELECT completed"


def cmd_expunge(session: Session, command: Command) -> Result:
    """EXPUNGE removes every \\Deleted message; UID EXPUNGE only those of them in its UID set
    (RFC 4315 2.1). With QRESYNC the removals are one VANISHED and the tagged OK carries the new
    HIGHESTMODSEQ (RFC 7162 3.2.7, 3.2.9)."""
    expect(command, ExpungeArgs)
    view = session.require_selected()
    if view.readonly:
        raise ImapError(*r.READ_ONLY)
    with store_errors():
        for line in view.refresh(allow_expunge=True):
            session.send(line)
        doomed = [e for e in view.entries if TRASHED in e.letters]
        if command.args.seqset is not None:
            named = {e.uid for _seq, e in view.resolve(command.args.seqset, uid=True)}
            doomed = [e for e in doomed if e.uid in named]
        removed = view.mailbox.expunge(doomed)
    for line in view.expunged({e.uid for e in removed}):
        session.send(line)
    return ("EXPUNGE completed", highestmodseq_code(session, view) if removed else "")


COMMANDS = {
    "SELECT": Spec(parse_select, cmd_select, AUTHENTICATED),
    "EXAMINE": Spec(parse_select, cmd_examine, AUTHENTICATED),
    "CLOSE": Spec(parse_no_args, cmd_close, SELECTED),
    "UNSELECT": Spec(parse_no_args, cmd_unselect, SELECTED),
    "EXPUNGE": Spec(parse_expunge, cmd_expunge, SELECTED, uid=True),
}
