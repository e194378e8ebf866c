"""IDLE (RFC 2177): push EXISTS/RECENT/EXPUNGE (or VANISHED)/FETCH while the client waits.

States: authenticated and selected (with nothing selected there is nothing to push but the
keepalive). Replies: `+ idling`, then untagged updates as changes happen, `* OK Still here` every
`idle_keepalive` seconds of silence (0: never), and `tag OK` on DONE (in any case), `tag BAD` on
any other line (it ends the IDLE), `* BYE` when the IDLE outlasts `idle_timeout` (30 minutes).

The child waits on the socket and on the folder at once: between polls of the socket it looks at
the folder (the mtimes of new/ and cur/ and the uidlist's change log; the new log records, or a
listing of a directory another program changed, only when one of them moved), so a delivery, a
flag change or an expunge by any session or program is pushed within POLL_INTERVAL plus the
time to read what changed. Decimail used a database trigger (seed 001); a
Maildir needs none.
"""

from __future__ import annotations

import time

from common.lineio import LineTooLong
from imapd import responses as r
from imapd.parser import Command, literal_at_end, parse_no_args
from imapd.responses import bad
from imapd.session import Session
from imapd.states import AUTHENTICATED, Abort, Result, Spec

POLL_INTERVAL = 0.25


def cmd_idle(session: Session, command: Command) -> Result:
    session.send(b"+ idling\r\n")
    session.io.flush()
    keepalive = session.settings.get_float("idle_keepalive")
    deadline = time.monotonic() + session.settings.get_float("idle_timeout")
    last_sent = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise Abort(r.BYE_TIMEOUT)
        if session.io.wait_readable(min(POLL_INTERVAL, deadline - now)):
            return end_of_idle(session)
        before = session.io.bytes_out
        session.report(allow_expunge=True)
        if keepalive > 0 and time.monotonic() - last_sent >= keepalive:
            session.untagged("OK Still here")
        session.io.flush()
        if session.io.bytes_out != before:
            last_sent = time.monotonic()


def end_of_idle(session: Session) -> Result:
    """The client spoke: DONE ends the IDLE; anything else ends it too, with BAD."""
    try:
        line = session.io.readline()
    except LineTooLong:
        raise bad(r.LINE_TOO_LONG) from None
    if line.strip().upper() == b"DONE":
        return "IDLE terminated"
    found = literal_at_end(line)
    if found is not None and found[1]:
        # A non-synchronizing literal is on its way already: its octets are not commands.
        session.discard_literal(found[0])
        session.skip_rest_of_command()
    raise bad("Expected DONE")


COMMANDS = {"IDLE": Spec(parse_no_args, cmd_idle, AUTHENTICATED)}
