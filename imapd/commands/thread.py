"""THREAD and UID THREAD (RFC 5256 4): ORDEREDSUBJECT and REFERENCES (imapd/sorting.py).

States: selected. Replies: `* THREAD (...)...`; BAD for an algorithm not offered; NO
[BADCHARSET] for a charset other than US-ASCII and UTF-8.
"""

from __future__ import annotations

from imapd import rev2
from imapd.commands.base import enable_condstore, expect
from imapd.commands.search import check_charset
from imapd.parser import Command, ThreadArgs, parse_thread
from imapd.responses import bad
from imapd.search import search
from imapd.session import Session
from imapd.sorting import ALGORITHMS, thread
from imapd.states import SELECTED, Result, Spec


def cmd_thread(session: Session, command: Command) -> Result:
    args = expect(command, ThreadArgs)
    if args.algorithm not in ALGORITHMS:
        raise bad("Unknown threading algorithm")
    check_charset(args.charset)
    rev2.check_search(session, args.criteria)
    view = session.require_selected()
    if args.uses_modseq:
        enable_condstore(session)
    found = search(view, args.criteria)
    threads = thread(view, found, args.algorithm, command.uid, session.io.sock.fileno())
    session.send(b"* THREAD " + threads.encode() + b"\r\n" if threads else b"* THREAD\r\n")
    return "THREAD completed"


COMMANDS = {"THREAD": Spec(parse_thread, cmd_thread, SELECTED, uid=True, may_expunge=False)}
