"""Checks on user and folder names before they become paths (DESIGN.md "Storage"), and the one
rule for the name INBOX.

A name that passes can be joined to a directory without escaping it: no `/`, no `..`, no control
bytes, no leading dot, bounded length. A folder name holds no control character of any kind (C0,
DEL, C1) and no line or paragraph separator either (U+2028, U+2029), as RFC 6855 3 asks of
mailbox names: a client of either name form (modified UTF-7 or UTF-8) can then show and send
every name. INBOX is the only folder name matched in any case (RFC 3501 5.1); every other name is
case-sensitive.
"""

from __future__ import annotations

MAX_USERNAME = 40  # seed 003, MSMP section 4: "the limit set by POP3"
MAX_FOLDER = 200
USERNAME_FORBIDDEN = set("/\\:#$ \t\"'`*?[]{}()<>|;&!~,=%")
FOLDER_FORBIDDEN = set("/\\")
INBOX = "INBOX"


class InvalidName(ValueError):
    """A user or folder name that must not touch the file system."""


class UndecodableName(str):
    """A folder name as a client sent it that is not valid modified UTF-7 (RFC 3501 5.1.3), the
    form names take on the wire and on disk (`a&b` is an atom, but no name): it denotes no
    folder, so every operation on it is refused, as Dovecot refuses it, and a LIST pattern of it
    matches nothing."""

    __slots__ = ()


def check_username(name: str) -> str:
    """Return `name` when it is safe as a Maildir directory name, else raise InvalidName."""
    if not name or len(name) > MAX_USERNAME:
        raise InvalidName("bad length")
    if name[0] in ".-" or name in (".", ".."):
        raise InvalidName("leading dot or dash")
    for char in name:
        if ord(char) < 0x21 or ord(char) > 0x7E or char in USERNAME_FORBIDDEN:
            raise InvalidName(f"character {char!r} not allowed")
    return name


def is_valid_username(name: str) -> bool:
    try:
        check_username(name)
    except InvalidName:
        return False
    return True


def check_folder(name: str) -> str:
    """A Maildir++ folder name (hierarchy separator '.'), not INBOX itself."""
    if isinstance(name, UndecodableName):
        raise InvalidName("not valid modified UTF-7")
    if not name or len(name.encode("utf-8")) > MAX_FOLDER:
        raise InvalidName("bad length")
    if name.startswith(".") or name.endswith(".") or ".." in name:
        raise InvalidName("empty hierarchy level")
    for char in name:
        if _is_control(char) or char in FOLDER_FORBIDDEN:
            raise InvalidName(f"character {char!r} not allowed")
    return name


def _is_control(char: str) -> bool:
    """C0, DEL, C1, LINE SEPARATOR, PARAGRAPH SEPARATOR (RFC 6855 3)."""
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F or code in (0x2028, 0x2029)


def is_inbox(name: str) -> bool:
    """Whether a folder name means INBOX (in any case)."""
    return name.upper() == INBOX


def canonical_name(name: str) -> str:
    """The folder name as stored and reported: INBOX in capitals, any other name unchanged."""
    return INBOX if is_inbox(name) else name
