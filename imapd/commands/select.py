"""SELECT, EXAMINE (RFC 3501 6.3.1-2, CONDSTORE of RFC 7162), CLOSE, UNSELECT (RFC 3691),
EXPUNGE and UID EXPUNGE (RFC 3501 6.4.3, RFC 4315 2.1)."""

from __future__ import annotations

from common.mailbox import Mailbox
from imapd import responses as r
from imapd.commands.base import expect, AUTHENTICATED, SELECTED, Result, Spec, store_errors
from imapd.parser import Command, ExpungeArgs, SelectArgs
from imapd.responses import ImapError
from imapd.selected import Selected
from imapd.session import Session, State


def cmd_select(session: Session, command: Command) -> Result:
    return open_mailbox(session, command, readonly=False)


def cmd_examine(session: Session, command: Command) -> Result:
    return open_mailbox(session, command, readonly=True)


def open_mailbox(session: Session, command: Command, readonly: bool) -> Result:
    expect(command, SelectArgs)
    args = command.args
    # A SELECT that fails leaves no mailbox selected (RFC 3501 6.3.1).
    session.selected, session.state = None, State.AUTHENTICATED
    tree = session.require_tree()
    name = "INBOX" if args.mailbox.upper() == "INBOX" else args.mailbox
    with store_errors():
        if not tree.exists(name):
            raise ImapError(*r.NO_SUCH_MAILBOX)
        view = Selected.open(name, Mailbox(tree.path(name)), readonly)
    view.condstore = "CONDSTORE" in session.enabled or args.condstore or args.qresync is not None
    if view.condstore:
        session.enabled.add("CONDSTORE")
    announce(session, view)
    session.selected, session.state = view, State.SELECTED
    if readonly:
        return ("EXAMINE completed", "READ-ONLY")
    return ("SELECT completed", "READ-WRITE")


def announce(session: Session, view: Selected) -> None:
    for line in view.flag_lines():
        session.send(line)
    session.untagged(f"{len(view.entries)} EXISTS")
    session.untagged(f"{len(view.recent)} RECENT")
    unseen = view.unseen_first()
    if unseen is not None:
        session.untagged(f"OK [UNSEEN {unseen}] First unseen")
    session.untagged(f"OK [UIDVALIDITY {view.uidvalidity}] UIDs valid")
    session.untagged(f"OK [UIDNEXT {view.uidnext}] Predicted next UID")
    session.untagged(f"OK [HIGHESTMODSEQ {view.highestmodseq}] Highest")


def cmd_close(session: Session, command: Command) -> Result:
    """Silently expunge (no EXPUNGE responses) unless read-only, then deselect."""
    view = session.require_selected()
    if not view.readonly:
        with store_errors():
            view.refresh(allow_expunge=False)
            view.mailbox.expunge([e for e in view.entries if "T" in e.letters])
    view.mailbox.sizes.save()
    session.selected, session.state = None, State.AUTHENTICATED
    return "CLOSE completed"


def cmd_unselect(session: Session, command: Command) -> Result:
    session.require_selected().mailbox.sizes.save()
    session.selected, session.state = None, State.AUTHENTICATED
    return "UNSELECT completed"


def cmd_expunge(session: Session, command: Command) -> Result:
    expect(command, ExpungeArgs)
    view = session.require_selected()
    if view.readonly:
        raise ImapError(*r.READ_ONLY)
    with store_errors():
        for line in view.refresh(allow_expunge=True):
            session.send(line)
        doomed = [e for e in view.entries if "T" in e.letters]
        if command.args.seqset is not None:
            named = {e.uid for _seq, e in view.resolve(command.args.seqset, uid=True)}
            doomed = [e for e in doomed if e.uid in named]
        removed = view.mailbox.expunge(doomed)
    for line in view.expunged({e.uid for e in removed}):
        session.send(line)
    return "EXPUNGE completed"


COMMANDS = {
    "SELECT": Spec(cmd_select, AUTHENTICATED),
    "EXAMINE": Spec(cmd_examine, AUTHENTICATED),
    "CLOSE": Spec(cmd_close, SELECTED),
    "UNSELECT": Spec(cmd_unselect, SELECTED),
    "EXPUNGE": Spec(cmd_expunge, SELECTED),
}
