"""SEARCH and UID SEARCH (RFC 3501 6.4.4, 6.4.8), ESEARCH results (RFC 4731) and the MODSEQ
criterion (RFC 7162 3.1.5)."""

from __future__ import annotations

from imapd.commands.base import expect, SELECTED, Result, Spec
from imapd.parser import Command, SearchArgs, SeqSet
from imapd.responses import ImapError
from imapd.search import search
from imapd.session import Session

CHARSETS = frozenset({"US-ASCII", "UTF-8"})


def cmd_search(session: Session, command: Command) -> Result:
    expect(command, SearchArgs)
    args = command.args
    if args.charset is not None and args.charset not in CHARSETS:
        raise ImapError("Charset not supported", "BADCHARSET (US-ASCII UTF-8)")
    view = session.require_selected()
    if args.uses_modseq:
        view.condstore = True
        session.enabled.add("CONDSTORE")
    found = search(view, args.criteria)
    numbers = [e.uid if command.uid else seq for seq, e in found]
    top_modseq = max((e.modseq for _seq, e in found), default=0)
    if args.return_opts is not None:
        session.send(esearch_line(command, args.return_opts, numbers, top_modseq, args.uses_modseq))
        return "SEARCH completed"
    line = "* SEARCH" + "".join(f" {n}" for n in numbers)
    if args.uses_modseq and numbers:
        line += f" (MODSEQ {top_modseq})"
    session.send(line.encode() + b"\r\n")
    return "SEARCH completed"


def esearch_line(command: Command, options: tuple[str, ...], numbers: list[int],
                 top_modseq: int, uses_modseq: bool) -> bytes:
    parts = [f'* ESEARCH (TAG "{command.tag}")']
    if command.uid:
        parts.append("UID")
    if numbers:
        if "MIN" in options:
            parts.append(f"MIN {min(numbers)}")
        if "MAX" in options:
            parts.append(f"MAX {max(numbers)}")
        if "ALL" in options:
            parts.append(f"ALL {SeqSet.from_values(numbers)}")
    if "COUNT" in options:
        parts.append(f"COUNT {len(numbers)}")
    if uses_modseq and numbers:
        parts.append(f"MODSEQ {top_modseq}")
    return (" ".join(parts) + "\r\n").encode()


COMMANDS = {"SEARCH": Spec(cmd_search, SELECTED, may_expunge=False)}
