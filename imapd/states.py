"""What a command declares and what it may raise, with no session behind it: the session states
of RFC 3501 section 3, the sets a command table entry allows, the entry itself, and the goodbye.

A leaf module: the session, the command modules and the parser's tests all import it, and it
imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from common.session import SessionEnd
from imapd.parser import ArgParser
from imapd.responses import untagged


class State(Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
NOT_AUTHENTICATED = frozenset({State.NOT_AUTHENTICATED})
AUTHENTICATED = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})

# A handler returns its tagged OK text, or (text, response code); it raises ImapError for NO/BAD.
Result = str | tuple[str, str]


@dataclass(frozen=True)
class Spec:
    """One command: how its arguments parse, who handles it, and when it is allowed."""

    parse: ArgParser  # (reader, uid) -> the arguments' dataclass (imapd/parser.py)
    handler: Callable[..., Result]  # (session, command) -> Result
    states: frozenset[State]
    uid: bool = False  # may be prefixed with UID
    # RFC 3501 7.4.1: no EXPUNGE responses while FETCH, STORE or SEARCH run (their UID forms may).
    may_expunge: bool = True


class Abort(SessionEnd):
    """End the session after sending `* BYE text`."""

    def __init__(self, text: str) -> None:
        super().__init__(untagged(f"BYE {text}"), text)
