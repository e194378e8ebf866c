"""IMAP flags <-> Maildir file-name letters (maildir(5), Dovecot's mapping) and keywords.

\\Draft D, \\Flagged F, \\Answered R, \\Seen S, \\Deleted T; `P` (passed) is shown as the keyword
$Forwarded, as mutt and Dovecot-using clients expect. Other keywords are letters a-z kept in the
folder's `dovecot-keywords` (common/store Keywords). The letters are the store's; only their IMAP
names live here. \\Recent is per session, never stored.
"""

from __future__ import annotations

from collections.abc import Iterable

from common.store import DRAFT, FLAGGED, PASSED, REPLIED, SEEN, TRASHED, Keywords, keyword_letters

LETTER_FLAGS = {
    DRAFT: "\\Draft",
    FLAGGED: "\\Flagged",
    REPLIED: "\\Answered",
    SEEN: "\\Seen",
    TRASHED: "\\Deleted",
    PASSED: "$Forwarded",
}
FLAG_LETTERS = {flag.lower(): letter for letter, flag in LETTER_FLAGS.items()}
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
STORABLE_FLAGS = (*SYSTEM_FLAGS, "$Forwarded")  # then the keywords, then \* (PERMANENTFLAGS)


def to_imap(letters: str, keywords: Keywords, recent: bool = False) -> list[str]:
    """IMAP flags of a message from its file-name letters."""
    flags = [LETTER_FLAGS[c] for c in letters if c in LETTER_FLAGS]
    named = keyword_letters(letters)
    if named:
        flags.extend(keywords.decode(named))
    if recent:
        flags.append("\\Recent")
    return flags


def to_letters(flags: Iterable[str], keywords: Keywords, create: bool = True) -> str:
    """File-name letters for IMAP flags; unknown keywords are added to the folder when `create`."""
    letters = []
    names = []
    for flag in flags:
        letter = FLAG_LETTERS.get(flag.lower())
        if letter:
            letters.append(letter)
        elif not flag.startswith("\\"):
            names.append(flag)
    letters.append(keywords.letters_for(names, create))
    return "".join(sorted(set("".join(letters))))


def defined_flags(keywords: Keywords) -> list[str]:
    """FLAGS response: system flags and every keyword this folder has."""
    return [*SYSTEM_FLAGS, "$Forwarded", *keywords.all()]
