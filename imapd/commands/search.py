"""SEARCH and UID SEARCH (RFC 3501 6.4.4, 6.4.8), ESEARCH results (RFC 4731) with PARTIAL and
UPDATE (RFC 5267 4.3, 4.4: CONTEXT=SEARCH) and the MODSEQ criterion (RFC 7162 3.1.5)."""

from __future__ import annotations

import dataclasses

from common.store import Entry
from imapd import rev2
from imapd.commands.base import enable_condstore, expect
from imapd.commands.context import start_updates
from imapd.contexts import DATA_OPTIONS, esearch_head, result_data, save_result, wanted_data
from imapd.parser import Command, SearchArgs, parse_search_command
from imapd.responses import ImapError
from imapd.search import search
from imapd.session import Session
from imapd.states import SELECTED, Result, Spec

CHARSETS = frozenset({"US-ASCII", "UTF-8"})


def check_charset(charset: str | None) -> None:
    if charset is not None and charset not in CHARSETS:
        raise ImapError("Charset not supported", "BADCHARSET (US-ASCII UTF-8)")


def cmd_search(session: Session, command: Command) -> Result:
    args = expect(command, SearchArgs)
    view = session.require_selected()
    if args.return_opts is not None and "SAVE" in args.return_opts:
        view.saved = frozenset()  # a SEARCH that fails saves the empty result (RFC 5182 2.1)
    check_charset(args.charset)
    rev2.check_search(session, args.criteria)
    if args.return_opts is None and view.rev2:
        # RFC 9051 6.4.4: IMAP4rev2 answers every SEARCH with ESEARCH, ALL by default.
        args = dataclasses.replace(args, return_opts=("ALL",))
    if args.uses_modseq:
        enable_condstore(session)
    found = search(view, args.criteria)
    if args.return_opts is not None:
        options = wanted_data(args.return_opts)
        if "SAVE" in options:
            save_result(view, options, found)
        if DATA_OPTIONS & set(options) or "UPDATE" in options or "SAVE" not in options:
            session.send(esearch_line(command, options, found, args.uses_modseq, args.partial))
        if "UPDATE" in args.return_opts:
            return start_updates(session, command, args.criteria, None, found, "SEARCH completed")
        return "SEARCH completed"
    numbers = [e.uid if command.uid else seq for seq, e in found]
    line = "* SEARCH" + "".join(f" {n}" for n in numbers)
    if args.uses_modseq and found:
        # RFC 7162 3.1.6: the highest MODSEQ of the messages returned.
        line += f" (MODSEQ {max(e.modseq for _seq, e in found)})"
    session.send(line.encode() + b"\r\n")
    return "SEARCH completed"


def esearch_line(
    command: Command,
    options: tuple[str, ...],
    found: list[tuple[int, Entry]],
    uses_modseq: bool,
    partial: tuple[int, int] | None = None,
    ordered: bool = False,
) -> bytes:
    """RFC 4731 3.1-3.2: `* ESEARCH (TAG "t") [UID] MIN MAX ALL COUNT [PARTIAL] [MODSEQ]`, in
    the order of `found` when `ordered` (ESORT). Without a match only COUNT 0 (and PARTIAL with
    NIL) is there; MODSEQ (RFC 7162 3.1.10) is that of the messages returned: MIN's or MAX's
    alone, or the highest of all that matched."""
    parts = [esearch_head(command.tag, command.uid)]
    numbers = [e.uid if command.uid else seq for seq, e in found]
    parts.extend(result_data(options, numbers, partial, ordered))
    if uses_modseq and found:
        returned = found
        if not {"ALL", "COUNT", "PARTIAL"} & set(options):
            returned = [found[0]] * ("MIN" in options) + [found[-1]] * ("MAX" in options)
        if returned:
            parts.append(f"MODSEQ {max(e.modseq for _seq, e in returned)}")
    return (" ".join(parts) + "\r\n").encode()


COMMANDS = {"SEARCH": Spec(parse_search_command, cmd_search, SELECTED, uid=True, may_expunge=False)}
