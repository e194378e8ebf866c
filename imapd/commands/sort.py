"""SORT and UID SORT (RFC 5256 4, display sorts of RFC 5957), with ESORT result options and
PARTIAL (RFC 5267 3, 4.4) and RETURN (UPDATE) contexts (RFC 5267 4.3, CONTEXT=SORT).

States: selected. Replies: `* SORT n...` (with `(MODSEQ n)` when the program has a MODSEQ key,
RFC 7162 3.1.6), or `* ESEARCH` for RETURN; NO [BADCHARSET] for a charset other than US-ASCII
and UTF-8.
"""

from __future__ import annotations

import operator

from imapd import rev2
from imapd.commands.base import enable_condstore, expect
from imapd.commands.context import start_updates
from imapd.commands.search import check_charset, esearch_line
from imapd.contexts import DATA_OPTIONS, save_result, wanted_data
from imapd.parser import Command, SortArgs, parse_sort
from imapd.search import search
from imapd.session import Session
from imapd.sorting import Found, sort_messages, sort_order
from imapd.states import SELECTED, Result, Spec


def cmd_sort(session: Session, command: Command) -> Result:
    args = expect(command, SortArgs)
    view = session.require_selected()
    if args.returns is not None and "SAVE" in args.returns.options:
        view.saved = frozenset()  # a SORT that fails saves the empty result (RFC 5182 2.1)
    check_charset(args.charset)
    rev2.check_search(session, args.criteria)
    if args.uses_modseq:
        enable_condstore(session)
    found = search(view, args.criteria)
    if args.returns is None:
        return plain_sort(session, command, args, found)
    found = sort_messages(view, found, args.program, session.io.sock.fileno())
    options = wanted_data(args.returns.options)
    if "SAVE" in options:
        save_result(view, options, found)
    if DATA_OPTIONS & set(options) or "UPDATE" in options or "SAVE" not in options:
        session.send(
            esearch_line(command, options, found, args.uses_modseq, args.returns.partial, True)
        )
    if "UPDATE" in args.returns.options:
        return start_updates(session, command, args.criteria, args.program, found, "SORT completed")
    return "SORT completed"


def plain_sort(session: Session, command: Command, args: SortArgs, found: Found) -> Result:
    """`* SORT n...`, with `(MODSEQ n)` when the program has a MODSEQ key: the numbers taken
    straight from the order (100,000 of them for a big folder, in C)."""
    view = session.require_selected()
    order = sort_order(view, found, args.program, session.io.sock.fileno())
    if command.uid:
        numbers = [entry.uid for _seq, entry in found]
    else:
        numbers = list(map(operator.itemgetter(0), found))
    line = "".join(("* SORT ", " ".join(map(str, map(numbers.__getitem__, order))))).rstrip()
    if args.uses_modseq and found:
        line += f" (MODSEQ {max(e.modseq for _seq, e in found)})"
    session.send(line.encode() + b"\r\n")
    return "SORT completed"


COMMANDS = {"SORT": Spec(parse_sort, cmd_sort, SELECTED, uid=True, may_expunge=False)}
