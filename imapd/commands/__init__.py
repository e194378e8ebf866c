"""The one COMMANDS table of imapd, built from the command modules, and the dispatcher.

The dispatcher checks the state before it calls a handler (handlers never re-check it), reports
mailbox changes before a selected-state command runs (never EXPUNGE then) and again before the
tagged completion (without EXPUNGE where RFC 3501 7.4.1 forbids it; with QRESYNC, a lower
HIGHESTMODSEQ for the expunges held back), and turns ImapError into `tag NO/BAD`. After the
tagged OK of COMPRESS it switches the connection to DEFLATE (RFC 4978).
"""

from __future__ import annotations

from common.proctitle import set_title
from imapd import responses as r
from imapd.commands import (
    append,
    auth,
    compress,
    copy,
    fetch,
    general,
    idle,
    mailboxes,
    search,
    select,
    store,
)
from imapd.commands.base import SELECTED, Spec, report
from imapd.parser import Command
from imapd.responses import ImapError
from imapd.session import Session

COMMANDS: dict[str, Spec] = {}
for _module in (
    general,
    auth,
    mailboxes,
    select,
    append,
    fetch,
    store,
    copy,
    search,
    idle,
    compress,
):
    COMMANDS.update(_module.COMMANDS)


def dispatch(session: Session, command: Command) -> None:
    spec = COMMANDS.get(command.name)
    if spec is None:
        session.bad_command(command.tag, "Unknown command")
        return
    if session.state not in spec.states:
        session.bad_command(command.tag, f"{command.name} not allowed now")
        return
    set_title("imapd", f"{session.user or '-'} {session.address} {command.name}")
    if spec.states == SELECTED:
        # The command acts on the mailbox as it is now: new messages and flags changed by
        # others are announced first (expunges wait for the report after, when allowed), so a
        # FETCH never returns stale flags and a STORE never undoes another session's change.
        report(session, allow_expunge=False)
    try:
        result = spec.handler(session, command)
    except ImapError as exc:
        if exc.status == "BAD":
            session.bad_command(command.tag, exc.text)
            return
        report(session, command.uid or spec.may_expunge, final=True)
        session.send(r.tagged(command.tag, "NO", exc.text, exc.code))
        return
    text, code = (result, "") if isinstance(result, str) else result
    report(session, command.uid or spec.may_expunge, final=True)
    session.send(r.tagged(command.tag, "OK", text, code))
    if session.compress_due:
        session.start_compression()
    if session.hooks_due:
        session.dispatch_hooks()
