"""Mailbox names on the wire (RFC 3501 5.1.3, RFC 9051 5.1, RFC 6855 3): the one place that turns
the octets a client sent into the name the store knows, and a name into the octets sent back.
The parser (imapd/parser_base.py, parser_mailbox.py) decodes with it and `encode_mailbox`
(imapd/parser.py) quotes what it encodes; nothing else converts a mailbox name.

A session speaks one of two forms:

- Until it enables IMAP4rev2 or UTF8=ACCEPT, names are modified UTF-7 (common/utf7.py), decoded
  strictly: octets that are no modified UTF-7 (`a&b`, 8-bit bytes) make an UndecodableName, which
  names no folder (the store refuses it: NO).
- Once it enabled either, names are UTF-8 in atoms, quoted strings and literals, and `&` is just a
  character. Octets that are not UTF-8 are no string at all (ValueError here, BAD from the parser:
  RFC 6855 3). A name is put in Unicode Normalization Form C, as RFC 9051 5.1 lets a server do
  with a denormalized name in every command; `decode_mailbox` also returns the name as sent when
  that changed it, for the OLDNAME the command reports (RFC 9051 6.3.9.7). Patterns are
  normalized the same way, so they match the stored names.

The store keeps every name as Unicode text and writes it to disk in modified UTF-7 (Maildir++
folder names, as Courier and Dovecot keep them), so both kinds of session see the same folders
under their own spelling, and the names a folder may have are the store's one rule
(common/store/names.py check_folder).
"""

from __future__ import annotations

import unicodedata

from common.store import UndecodableName, canonical_name
from common.utf7 import decode_mutf7, encode_mutf7

__all__ = ["NOT_UTF8", "decode_mailbox", "decode_pattern", "mailbox_octets"]

NOT_UTF8 = "Mailbox name is not valid UTF-8"


def decode_mailbox(raw: bytes, utf8: bool = False) -> tuple[str, str | None]:
    """mailbox (RFC 3501 9): the name, with only the whole name INBOX folded (the store's one
    rule for it), and the name as sent when normalizing a UTF-8 name changed it (else None).
    ValueError for octets that are not UTF-8 in a UTF-8 session."""
    name, supplied = _decode(raw, utf8)
    return canonical_name(name), supplied


def decode_pattern(raw: bytes, utf8: bool = False) -> str:
    """list-mailbox (RFC 3501 9): a LIST or LSUB pattern or reference, decoded as a name is
    (wildcards are ASCII and pass through) but not INBOX-folded; ValueError as for a name."""
    return _decode(raw, utf8)[0]


def _decode(raw: bytes, utf8: bool) -> tuple[str, str | None]:
    if not utf8:
        try:
            return decode_mutf7(raw), None
        except ValueError:
            return UndecodableName(raw.decode("latin-1")), None
    try:
        supplied = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(NOT_UTF8) from None
    if raw.isascii() or unicodedata.is_normalized("NFC", supplied):
        return supplied, None
    return unicodedata.normalize("NFC", supplied), supplied


def mailbox_octets(name: str, utf8: bool = False) -> bytes:
    """A stored name as the session spells it: modified UTF-7, or UTF-8 (RFC 9051 5.1, RFC 6855
    3: only to a client that enabled it)."""
    return name.encode("utf-8") if utf8 else encode_mutf7(name)
