"""IDLE (RFC 2177): push EXISTS/EXPUNGE/FETCH while the client waits, until DONE.

The child polls the folder (directory mtimes, then a listing only when something moved) every
POLL_INTERVAL and the socket in between, so a change by any session or by delivery into new/ is
pushed within a second. Decimail used a database trigger (seed 001); a Maildir needs none.
"""

from __future__ import annotations

import time

from common.lineio import LineTooLong
from imapd.commands.base import AUTHENTICATED, Result, Spec, report
from imapd.parser import Command
from imapd.responses import bad
from imapd.session import Abort, Session
from imapd import responses as r

POLL_INTERVAL = 0.5


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
            try:
                line = session.io.readline()
            except LineTooLong:
                raise bad(r.LINE_TOO_LONG) from None
            if line.strip().upper() == b"DONE":
                return "IDLE terminated"
            raise bad("Expected DONE")
        before = session.io.bytes_out
        report(session, allow_expunge=True)
        if keepalive > 0 and time.monotonic() - last_sent >= keepalive:
            session.untagged("OK Still here")
        session.io.flush()
        if session.io.bytes_out != before:
            last_sent = time.monotonic()


COMMANDS = {"IDLE": Spec(cmd_idle, AUTHENTICATED)}
