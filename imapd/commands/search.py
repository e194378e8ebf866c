"""SEARCH and UID SEARCH (RFC 3501 6.4.4, 6.4.8), ESEARCH results (RFC 4731) and the MODSEQ
criterion (RFC 7162 3.1.5)."""

from __future__ import annotations

from common.store import Entry
from imapd.commands.base import enable_condstore, expect
from imapd.parser import Command, SearchArgs, SeqSet, parse_search_command
from imapd.responses import ImapError
from imapd.search import search
from imapd.session import Session
from imapd.states import SELECTED, Result, Spec

CHARSETS = frozenset({"US-ASCII", "UTF-8"})


def cmd_search(session: Session, command: Command) -> Result:
    expect(command, SearchArgs)
    args = command.args
    if args.charset is not None and args.charset not in CHARSETS:
        raise ImapError("Charset not supported", "BADCHARSET (US-ASCII UTF-8)")
    view = session.require_selected()
    if args.uses_modseq:
        enable_condstore(session)
    found = search(view, args.criteria)
    if args.return_opts is not None:
        session.send(esearch_line(command, args.return_opts, found, args.uses_modseq))
        return "SEARCH completed"
    numbers = [e.uid if command.uid else seq for seq, e in found]
    line = "* SEARCH" + "".join(f" {n}" for n in numbers)
    if args.uses_modseq and found:
        # RFC 7162 3.1.6: the highest MODSEQ of the messages returned.
        line += f" (MODSEQ {max(e.modseq for _seq, e in found)})"
    session.send(line.encode() + b"\r\n")
    return "SEARCH completed"


def esearch_line(
    command: Command, options: tuple[str, ...], found: list[tuple[int, Entry]], uses_modseq: bool
) -> bytes:
    """RFC 4731 3.1-3.2: `* ESEARCH (TAG "t") [UID] MIN MAX ALL COUNT [MODSEQ]`. Without a match
    only COUNT 0 is there (MIN, MAX and ALL are left out); MODSEQ (RFC 7162 3.1.10) is that of
    the messages returned: MIN's or MAX's alone, or the highest of all that matched."""
    parts = [f'* ESEARCH (TAG "{command.tag}")']
    if command.uid:
        parts.append("UID")
    numbers = [e.uid if command.uid else seq for seq, e in found]
    if numbers:
        if "MIN" in options:
            parts.append(f"MIN {numbers[0]}")
        if "MAX" in options:
            parts.append(f"MAX {numbers[-1]}")
        if "ALL" in options:
            parts.append(f"ALL {SeqSet.from_values(numbers)}")
    if "COUNT" in options:
        parts.append(f"COUNT {len(numbers)}")
    if uses_modseq and found:
        returned = found
        if not {"ALL", "COUNT"} & set(options):
            returned = [found[0]] * ("MIN" in options) + [found[-1]] * ("MAX" in options)
        parts.append(f"MODSEQ {max(e.modseq for _seq, e in returned)}")
    return (" ".join(parts) + "\r\n").encode()


COMMANDS = {"SEARCH": Spec(parse_search_command, cmd_search, SELECTED, uid=True, may_expunge=False)}
