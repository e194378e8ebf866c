"""The one COMMANDS table of imapd, built from the command modules.

Each module declares its commands as `Spec` entries (imapd/states.py): the argument parser, the
handler, the states the command is allowed in and its flags. Adding a command is one entry; the
parser (imapd/parser.parse_command) and the session's dispatcher (imapd/session.py) both read
this table.
"""

from __future__ import annotations

from imapd.commands import (
    append,
    auth,
    compress,
    context,
    copy,
    fetch,
    general,
    idle,
    mailboxes,
    search,
    select,
    sort,
    store,
    thread,
    unauthenticate,
)
from imapd.states import Spec

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
    sort,
    thread,
    context,
    idle,
    compress,
    unauthenticate,
):
    COMMANDS.update(_module.COMMANDS)
