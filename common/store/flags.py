"""Flags in Maildir file names (maildir(5)): the letters after `:2,`, the one place that knows them.

System flags are the upper-case letters D F P R S T (Draft, Flagged, Passed, Replied, Seen,
Trashed); keywords are the lower-case letters a-z, whose names each folder keeps in
`dovecot-keywords` (common/store/keywords.py). The letters of a name are always sorted.
"""

from __future__ import annotations

INFO = ":2,"
DRAFT = "D"
FLAGGED = "F"
PASSED = "P"
REPLIED = "R"
SEEN = "S"
TRASHED = "T"
SYSTEM_LETTERS = "DFPRST"
KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def letters_of(name: str) -> str:
    """The flag letters of a message file name: its info after `:2,` ("" without one)."""
    _, sep, info = name.partition(INFO)
    return info if sep else ""


def with_letters(base: str, letters: str) -> str:
    """`base:2,<letters>`, the letters sorted and each once."""
    return f"{base}{INFO}{''.join(sorted(set(letters)))}"


def flags_suffix(letters: str) -> str:
    """`:2,` and the sorted letters this store knows (system, then keyword letters); any other
    letter is dropped."""
    return with_letters("", "".join(c for c in letters if c in SYSTEM_LETTERS + KEYWORD_LETTERS))


def system_letters(letters: str) -> str:
    return "".join(c for c in letters if c in SYSTEM_LETTERS)


def keyword_letters(letters: str) -> str:
    return "".join(c for c in letters if c in KEYWORD_LETTERS)
