"""IMAP4rev2 (RFC 9051) beside IMAP4rev1: a session is rev2 once it sends ENABLE IMAP4rev2
(RFC 9051 3, 6.3.1), and from then on differs where Appendix E says the protocols differ:

- no \\Recent: FETCH never shows it, SELECT and new mail send no RECENT, and the keys that
  name it (SEARCH RECENT, NEW, OLD; STATUS RECENT) are not in the grammar, so BAD;
- SEARCH answers with ESEARCH, as if RETURN (ALL) were given (RFC 9051 6.4.4);
- SELECT and EXAMINE send the mailbox's LIST response in place of OK [UNSEEN] (6.3.2);
- LIST names a mailbox that is only a level of the hierarchy \\NonExistent, as LIST-EXTENDED
  does (LIST-EXTENDED is part of rev2);
- FLAGS and PERMANENTFLAGS name the keywords rev2 defines for junk filtering, $Junk and
  $NotJunk (2.3.2), which clients then store as any keyword;
- mailbox names are UTF-8, not modified UTF-7 (5.1; imapd/names.py, as after ENABLE
  UTF8=ACCEPT), put in Normalization Form C; when that changed a name the client gave SELECT,
  EXAMINE, CREATE, RENAME or DELETE, an untagged LIST says so with the OLDNAME extended data
  item (6.3.2, 6.3.4-6, 6.3.9.7);
- LITERAL-, ESEARCH, SEARCHRES, BINARY, MOVE, UNSELECT, UIDPLUS, LIST-STATUS, STATUS=SIZE,
  SPECIAL-USE and the rest rev2 takes in are offered to every session already.

OLDNAME is sent for that normalization only, which is all RFC 9051 asks of a server that does
it. A RENAME with names already normalized gets no untagged LIST, and LIST does not remember
renames: 6.3.6 leaves announcing a rename to other sessions (a MAY) to the server, and we do not
announce one.

What rev2 only deprecates is kept for rev2 sessions too, as it costs them nothing: LSUB, CHECK,
the RFC822 FETCH items.
"""

from __future__ import annotations

import contextlib

from common.store import StoreError
from imapd.parser import And, Command, Key, Not, Or, SearchNode
from imapd.responses import bad
from imapd.session import Session

ENABLE_NAME = "IMAP4REV2"
JUNK_KEYWORDS = ("$Junk", "$NotJunk")


def is_rev2(session: Session) -> bool:
    return ENABLE_NAME in session.enabled


def names_recent(node: SearchNode) -> bool:
    """Whether a search program uses \\Recent (RECENT, NEW and OLD all do)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, And | Or):
            stack.extend(current.items)
        elif isinstance(current, Not):
            stack.append(current.item)
        elif isinstance(current, Key) and current.name == "FLAG" and current.text == "\\Recent":
            return True
    return False


def check_search(session: Session, criteria: SearchNode) -> None:
    """BAD for RECENT, NEW and OLD in a rev2 session."""
    if is_rev2(session) and names_recent(criteria):
        raise bad("RECENT, NEW and OLD are not in IMAP4rev2")


def check_status(session: Session, items: tuple[str, ...]) -> None:
    """BAD for STATUS RECENT in a rev2 session."""
    if is_rev2(session) and "RECENT" in items:
        raise bad("STATUS RECENT is not in IMAP4rev2")


def list_line(session: Session, name: str, supplied: str | None = None) -> bytes:
    """The LIST response for an existing mailbox that SELECT and EXAMINE send (RFC 9051 6.3.2),
    with OLDNAME when the client spelled the name otherwise (`supplied`, 6.3.9.7)."""
    tree = session.require_tree()
    attributes = ["\\HasChildren" if tree.has_children(name) else "\\HasNoChildren"]
    use = tree.special_use(name)
    if use:
        attributes.append(use)
    return _list_response(session, attributes, name, supplied)


def _list_response(
    session: Session, attributes: list[str], name: str, supplied: str | None
) -> bytes:
    line = b'* LIST (%s) "." %s' % (" ".join(attributes).encode(), session.mailbox_name(name))
    if supplied is not None:
        line += b' ("OLDNAME" (%s))' % session.mailbox_name(supplied)
    return line + b"\r\n"


def report_created(session: Session, command: Command, sent: str, name: str) -> None:
    """After CREATE of `name`, sent as `sent`: LIST with OLDNAME when normalizing changed the
    name (RFC 9051 6.3.4)."""
    supplied = command.supplied(sent)
    if is_rev2(session) and supplied is not None:
        _send_list(session, name, supplied)


def _send_list(session: Session, name: str, supplied: str) -> None:
    # The command has done its work: a LIST that cannot be read just now is left out (the
    # client learns the name from its next LIST), never turned into a NO.
    with contextlib.suppress(StoreError, OSError):
        session.send(list_line(session, name, supplied))


def report_deleted(session: Session, command: Command, name: str) -> None:
    """After DELETE: LIST (\\NonExistent) with OLDNAME when normalizing changed the name
    (RFC 9051 6.3.5)."""
    supplied = command.supplied(name)
    if is_rev2(session) and supplied is not None:
        session.send(_list_response(session, ["\\NonExistent"], name, supplied))


def report_renamed(session: Session, command: Command, old: str, new: str, sent: str) -> None:
    """After RENAME of `old` to `new` (sent as `sent`): when normalizing changed either name,
    LIST of the new name with OLDNAME the existing name as the client gave it (RFC 9051 6.3.6)."""
    supplied_old, supplied_new = command.supplied(old), command.supplied(sent)
    if is_rev2(session) and (supplied_old is not None or supplied_new is not None):
        _send_list(session, new, supplied_old or old)
