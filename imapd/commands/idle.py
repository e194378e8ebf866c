"""IDLE (RFC 2177): push EXISTS/RECENT/EXPUNGE (or VANISHED)/FETCH while the client waits.

States: authenticated and selected (with nothing selected there is nothing to push but the
keepalive). Replies: `+ idling`, then untagged updates as changes happen, `* OK Still here` every
`idle_keepalive` seconds of silence (0: never), and `tag OK` on DONE (in any case), `tag BAD` on
any other line (it ends the IDLE), `* BYE` when the IDLE outlasts `idle_timeout` (30 minutes).

The session waits on the socket and on the folder at once: between polls of the socket it looks
at the folder (the mtimes of new/ and cur/ and the uidlist's change log; the new log records, or a
listing of a directory another program changed, only when one of them moved), so a delivery, a
flag change or an expunge by any session or program is pushed within POLL_INTERVAL plus the time
to read what changed. In the pool model the worker's folder watcher (inotify,
common/store/watch.py) wakes the session as soon as the folder changes instead, and it looks on
its own only every WATCHED_RECHECK seconds (a change made on another host of an NFS mail base,
which inotify does not see): thousands of idling sessions cost no timer each. Decimail used a
database trigger (seed 001); a Maildir needs none.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from common.lineio import LineTooLong
from common.store import MTIME_TRUST_AGE
from imapd import responses as r
from imapd.parser import Command, literal_at_end, parse_no_args
from imapd.responses import bad
from imapd.session import Session
from imapd.states import AUTHENTICATED, Abort, Result, Spec

if TYPE_CHECKING:  # the pool model's (common/pool.py); a forked child never loads it
    from common.store.watch import Watch

POLL_INTERVAL = 0.25
WATCHED_RECHECK = 30.0


def cmd_idle(session: Session, command: Command) -> Result:
    with contextlib.ExitStack() as stack:
        # Watching before the continuation: a change the client makes as soon as it reads
        # `+ idling` must find the watch in place.
        watch = folder_watch(session)
        if watch is not None:
            stack.enter_context(watch)
        session.send(b"+ idling\r\n")
        session.io.flush()
        return idle_loop(session, watch)


def folder_watch(session: Session) -> Watch | None:
    """The worker's watch on the selected folder (pool model), or None: poll it."""
    watcher = session.services.watcher
    if watcher is None or session.selected is None:
        return None
    return watcher.watch(session.selected.mailbox)


def idle_loop(session: Session, watch: Watch | None) -> Result:
    keepalive = session.settings.get_float("idle_keepalive")
    deadline = time.monotonic() + session.settings.get_float("idle_timeout")
    last_sent = time.monotonic()
    wake = watch.fileno() if watch is not None else None
    # After a change the folder is looked at as often as without a watch until its directories
    # settle: a second change within one mtime tick wakes nobody the store would believe
    # (common/store/mailbox.MTIME_TRUST_AGE). So too at the start: a change made just before
    # the watch was set up may still be within such a tick.
    settle_until = last_sent + MTIME_TRUST_AGE + POLL_INTERVAL
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise Abort(r.BYE_TIMEOUT)
        wait = POLL_INTERVAL if watch is None or now < settle_until else WATCHED_RECHECK
        if keepalive > 0:
            wait = min(wait, max(0.0, last_sent + keepalive - now))
        if session.io.wait_readable(min(wait, deadline - now), wake):
            return end_of_idle(session)
        if watch is not None and watch.clear():
            settle_until = time.monotonic() + MTIME_TRUST_AGE + POLL_INTERVAL
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
