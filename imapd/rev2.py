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
- LITERAL-, ESEARCH, SEARCHRES, BINARY, MOVE, UNSELECT, UIDPLUS, LIST-STATUS, STATUS=SIZE,
  SPECIAL-USE and the rest rev2 takes in are offered to every session already.

What rev2 only deprecates is kept for rev2 sessions too, as it costs them nothing: LSUB, CHECK,
the RFC822 FETCH items.
"""

from __future__ import annotations

from imapd.parser import And, Key, Not, Or, SearchNode, encode_mailbox
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


def list_line(session: Session, name: str) -> bytes:
    """The LIST response SELECT and EXAMINE send for the mailbox (RFC 9051 6.3.2)."""
    tree = session.require_tree()
    attributes = ["\\HasChildren" if tree.has_children(name) else "\\HasNoChildren"]
    use = tree.special_use(name)
    if use:
        attributes.append(use)
    return b'* LIST (%s) "." %s\r\n' % (" ".join(attributes).encode(), encode_mailbox(name))
