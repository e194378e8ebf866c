"""COPY and UID COPY (RFC 3501 6.4.7, COPYUID of RFC 4315), MOVE and UID MOVE (RFC 6851).

A copy is a hard link into the target's cur/ (content never changes in a Maildir); a move is a
rename, so each message is in one folder or the other at every instant, never both, never none,
whenever the child dies. MOVE answers `* OK [COPYUID ...]` first, then the EXPUNGEs (or one
VANISHED with QRESYNC, and the new HIGHESTMODSEQ in the tagged OK: RFC 6851 4.3, 4.4).
"""

from __future__ import annotations

from common.store import MailboxNotFound
from imapd import responses as r
from imapd.commands.base import expect, highestmodseq_code, store_errors
from imapd.parser import Command, CopyArgs, SeqSet, parse_copy
from imapd.responses import ImapError
from imapd.session import Session
from imapd.states import SELECTED, Result, Spec


def cmd_copy(session: Session, command: Command) -> Result:
    return transfer(session, command, move=False)


def cmd_move(session: Session, command: Command) -> Result:
    return transfer(session, command, move=True)


def transfer(session: Session, command: Command, move: bool) -> Result:
    expect(command, CopyArgs)
    view = session.require_selected()
    if move and view.readonly:
        raise ImapError(*r.READ_ONLY)
    tree = session.require_tree()
    name = command.args.mailbox
    entries = [e for _seq, e in view.resolve(command.args.seqset, command.uid)]
    if any(e.uid in view.gone for e in entries):
        # Expunged by another session, the EXPUNGE not sent yet: copy none (RFC 5530).
        raise ImapError(*r.EXPUNGE_ISSUED)
    with store_errors():
        if not entries:
            if not tree.exists(name):
                raise ImapError(*r.TRYCREATE)
            return f"{'MOVE' if move else 'COPY'} completed"
        try:
            # Opening syncs: earlier deliveries get their UIDs before the copies do.
            destination, _snap = tree.open(name)
        except MailboxNotFound:
            raise ImapError(*r.TRYCREATE) from None
        new_uids = destination.copy_in(view.mailbox, entries, move=move)
        validity = destination.sync().uidvalidity
    code = (
        f"COPYUID {validity} {SeqSet.from_values(e.uid for e in entries)} "
        f"{SeqSet.from_values(new_uids)}"
    )
    if not move:
        return ("COPY completed", code)
    session.untagged(f"OK [{code}] Moved")
    with store_errors():
        view.mailbox.sync()
    for line in view.expunged({e.uid for e in entries}):
        session.send(line)
    return ("MOVE completed", highestmodseq_code(session, view))


COMMANDS = {
    "COPY": Spec(parse_copy, cmd_copy, SELECTED, uid=True),
    "MOVE": Spec(parse_copy, cmd_move, SELECTED, uid=True),
}
