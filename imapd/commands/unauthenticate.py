"""UNAUTHENTICATE (RFC 8437): back to the not-authenticated state on the same connection, so a
client can log in as another user without reconnecting.

States: authenticated and selected. Replies: OK. The selected mailbox is closed without an
expunge (as UNSELECT does, its caches saved), and everything the login brought goes: the user,
the mailbox tree, ENABLEd extensions and the update contexts (they hang on the selected view).
What belongs to the connection stays: COMPRESS (RFC 8437 3 lets compression outlive the login)
and the count of failed logins, so that logging out does not buy more guesses.
"""

from __future__ import annotations

from common.logs import printable
from imapd.parser import Command, parse_no_args
from imapd.session import Session
from imapd.states import AUTHENTICATED, Result, Spec, State


def cmd_unauthenticate(session: Session, command: Command) -> Result:
    if session.selected is not None:
        session.selected.save_caches()
    session.log.info("unauthenticate user=%s", printable(session.user or "-"))
    session.selected = None
    session.tree = None
    session.enabled = set()
    session.user = None
    session.state = State.NOT_AUTHENTICATED
    session.title("unauthenticated")
    return "UNAUTHENTICATE completed"


COMMANDS = {"UNAUTHENTICATE": Spec(parse_no_args, cmd_unauthenticate, AUTHENTICATED)}
