"""The IMAP ENVELOPE of a message, its RFC 5322 address parser, and IMAP string output.

RFC 3501 7.4.2 (ENVELOPE, address structures, group syntax), RFC 3501 9 (string, nstring:
quoted or literal), RFC 5322 3.4 (address-list, group, mailbox, angle-addr, addr-spec) with the
obsolete forms of 4.4 (source routes, phrases with "."). Header values are octet strings (see
`imapd.mime`): they are written back byte for byte, encoded words included (RFC 3501 leaves
decoding to the client).

Deliberate choices where RFC 3501 is silent (they follow Dovecot): a mailbox without a domain
gets host "MISSING_DOMAIN" (a NIL host would read as a group marker), an empty local part gets
"MISSING_MAILBOX", a quoted local part is given unquoted, and an addr-spec's trailing comment
becomes the personal name. Where a header appears twice the first one counts (RFC 5322 allows
one; Dovecot takes the last, UW imapd and Python's email the first).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from imapd.strings import literal, string

MISSING_DOMAIN = "MISSING_DOMAIN"
MISSING_MAILBOX = "MISSING_MAILBOX"

_TOKENS = re.compile(
    r"""(?P<ws>[ \t\r\n]+)
      | (?P<ew>=\?[^?\s]+\?[QqBb]\?[^?\s]*\?=)
      | "(?P<qs>(?:[^"\\]|\\.)*)(?:"|\\?\Z)
      | (?P<dl>\[(?:[^\]\\]|\\.)*(?:\]|\\?\Z))
      | (?P<sp>[<>@,;:.])
      | (?P<atom>[^ \t\r\n()<>@,;:."\[\]\\]+)
      | (?P<paren>\()
      | (?P<junk>.)""",
    re.VERBOSE | re.DOTALL,
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_SPECIAL = re.compile(r'[\x00\r\n"\\]')  # what a quoted string cannot carry as it is
# Fast path for the everyday forms `a@b`, `a@b (Name)`, `Name <a@b>` and `"Name" <a@b>`,
# comma-separated, without escapes, other comments, groups, routes or dots in an unquoted name:
# the same result as the tokenizer, several times quicker (ENVELOPE is computed for every
# message of a mailbox).
_WORD = r'[^\s"<>(),.;:@\\\[\]]+'
_DOT_ATOM = r'[^\s"<>(),;:@\\\[\]]+'
_SIMPLE = (
    rf'(?:({_WORD}(?:[ \t]+{_WORD})*)[ \t]*|"([^"\\]*)"[ \t]*)?'
    rf"<({_DOT_ATOM})@({_DOT_ATOM})>|({_DOT_ATOM})@({_DOT_ATOM})(?:[ \t]*\(([^()\\]*)\))?"
)
_SIMPLE_ADDRESS = re.compile(_SIMPLE)
_SIMPLE_LIST = re.compile(rf"[ \t]*(?:{_SIMPLE})(?:[ \t]*,[ \t]*(?:{_SIMPLE}))*[ \t]*")
# The groups of one _SIMPLE_ADDRESS match (str, or None for a group that did not take part:
# typed as re.Match.groups() is).
SimpleMatch = tuple[str | Any, ...]
_GROUPS = re.Match.groups


@functools.lru_cache(maxsize=64)
def simple_matches(value: str) -> tuple[SimpleMatch, ...] | None:
    """The fast path's matches of an everyday address list, or None for any other value.
    ENVELOPE and the cached SEARCH text (list_text) both ask, for the same values of one
    message: each list is scanned once."""
    if not _SIMPLE_LIST.fullmatch(value):
        return None
    return tuple(map(_GROUPS, _SIMPLE_ADDRESS.finditer(value)))


class Address(NamedTuple):
    """An RFC 3501 address structure: (name adl mailbox host); a group start has only
    `mailbox` (the group name) and a group end has all four None."""

    name: str | None
    adl: str | None
    mailbox: str | None
    host: str | None


GROUP_END = Address(None, None, None, None)


class Token(NamedTuple):
    """One lexical token of a structured header: kind is "word" (atom, quoted string or
    encoded word), "dl" (domain literal), "comment", or the special character itself."""

    kind: str
    text: str
    space_before: bool


# --- IMAP strings (RFC 3501 4.3, 9) -------------------------------------------------------


def imap_string(text: str) -> bytes:
    """An octet string as an IMAP string: quoted (at any length) when every octet is a 7-bit
    TEXT-CHAR, else a literal. NUL cannot be sent in either form (CHAR8 excludes it) and is
    dropped."""
    if text.isascii() and not _SPECIAL.search(text):
        return b'"' + text.encode("ascii") + b'"'  # the everyday case, without a second look
    if "\x00" in text:
        text = text.replace("\x00", "")
    if text.isascii():
        return string(text.encode("ascii"), limit=None)
    return literal(text.encode("latin-1", "replace"))


def nstring(text: str | None) -> bytes:
    """`imap_string`, or NIL for None (RFC 3501 9 nstring)."""
    return b"NIL" if text is None else imap_string(text)


# --- RFC 5322 3.4 address lists -----------------------------------------------------------


def tokenize(text: str) -> list[Token]:
    """Split a structured header value into tokens; comments nest (RFC 5322 3.2.2)."""
    tokens: list[Token] = []
    pos, size, space = 0, len(text), False
    while pos < size:
        m = _TOKENS.match(text, pos)
        if m is None:  # unreachable: the last branch matches any character
            break
        kind = m.lastgroup
        pos = m.end()
        if kind == "ws":
            space = True
            continue
        if kind == "paren":
            body, pos = _read_comment(text, pos)
            tokens.append(Token("comment", body, space))
            space = True
            continue
        if kind == "qs":
            tokens.append(Token("word", _QUOTED_PAIR.sub(r"\1", m.group("qs")), space))
        elif kind == "sp":
            tokens.append(Token(m.group(), m.group(), space))
        elif kind in ("ew", "atom", "junk"):
            tokens.append(Token("word", m.group(), space))
        else:
            tokens.append(Token("dl", m.group(), space))
        space = False
    return tokens


def _read_comment(text: str, pos: int) -> tuple[str, int]:
    """Read a (possibly nested) comment after its "("; return its text and the end offset."""
    depth, out, size = 1, [], len(text)
    while pos < size:
        char = text[pos]
        pos += 1
        if char == "\\" and pos < size:
            out.append(text[pos])
            pos += 1
            continue
        if char == ")":
            depth -= 1
            if depth == 0:
                break
        elif char == "(":
            depth += 1
        out.append(char)
    return "".join(out), pos


def parse_addresses(value: str | None) -> list[Address]:
    """Parse an address-list (RFC 5322 3.4) into RFC 3501 address structures, with group
    start/end markers. Lenient: a missing ";" or ">" is implied at the end of the value."""
    if not value:
        return []
    matches = simple_matches(value)
    if matches is not None:
        return [_address(groups) for groups in matches]
    return parse_address_tokens(value)


def first_address(value: str | None) -> Address | None:
    """parse_addresses(value)[0], None when there is none: what SORT FROM, TO and CC compare,
    without making the other addresses of an everyday list."""
    if not value:
        return None
    matches = simple_matches(value)
    if matches is not None:
        return _address(matches[0])
    addresses = parse_address_tokens(value)
    return addresses[0] if addresses else None


def parse_address_tokens(value: str) -> list[Address]:
    """`parse_addresses` without the fast path: the full tokenizing parser."""
    out: list[Address] = []
    current: list[Token | list[Token]] = []
    in_group = False
    is_phrase = True  # no "@" and no angle-addr yet: a ":" here starts a group
    tokens = tokenize(value)
    pos = 0
    while pos < len(tokens):
        tok = tokens[pos]
        pos += 1
        if tok.kind == "<":
            end = next((i for i in range(pos, len(tokens)) if tokens[i].kind == ">"), len(tokens))
            current.append(tokens[pos:end])
            pos, is_phrase = end + 1, False
        elif tok.kind in (",", ";"):
            _flush(current, out)
            is_phrase = True
            if tok.kind == ";" and in_group:
                out.append(GROUP_END)
                in_group = False
        elif tok.kind == ":" and not in_group and is_phrase:
            out.append(Address(None, None, _phrase(current), None))
            current.clear()
            in_group = True
        else:
            current.append(tok)
            is_phrase = is_phrase and tok.kind != "@"
    _flush(current, out)
    if in_group:
        out.append(GROUP_END)
    return out


def _address(groups: SimpleMatch) -> Address:
    """An Address from the groups of a `_SIMPLE_ADDRESS` match."""
    words, quoted_name, mailbox, host, bare, bare_host, comment = groups
    if mailbox is None:
        # addr-spec with at most one plain comment: the comment is the personal name, as the
        # full parser has it (_addr_spec)
        personal = comment.strip(" \t") if comment else None
        return Address(personal or None, None, bare, bare_host)
    name = " ".join(words.split()) if words else quoted_name or None
    return Address(name, None, mailbox, host)


def _flush(items: list[Token | list[Token]], out: list[Address]) -> None:
    """Turn the tokens of one mailbox into an Address (if there is one) and clear them."""
    angle = next((i for i, t in enumerate(items) if isinstance(t, list)), None)
    if angle is not None:
        spec = items[angle]
        phrase = [t for t in items[:angle] if isinstance(t, Token)]
        out.append(_name_addr(phrase, spec if isinstance(spec, list) else []))
    else:
        tokens = [t for t in items if isinstance(t, Token)]
        if any(t.kind != "comment" for t in tokens):
            out.append(_addr_spec(tokens))
    items.clear()


def _name_addr(phrase: list[Token], spec: list[Token]) -> Address:
    """`[display-name] "<" [route ":"] addr-spec ">"` (RFC 5322 3.4, obs-route 4.4)."""
    name = _phrase(phrase) or None
    adl = None
    words = [t for t in spec if t.kind != "comment"]
    if words and words[0].kind == "@":
        colon = next((i for i, t in enumerate(words) if t.kind == ":"), None)
        if colon is not None:
            adl = _join(words[:colon], route=True) or None
            words = words[colon + 1 :]
    mailbox, host = _split_spec(words)
    return Address(name, adl, mailbox, host)


def _addr_spec(tokens: list[Token]) -> Address:
    """A bare addr-spec; its last comment, if any, is the personal name."""
    comments = [t.text for t in tokens if t.kind == "comment"]
    mailbox, host = _split_spec([t for t in tokens if t.kind != "comment"])
    name = comments[-1].strip(" \t") if comments else None
    return Address(name or None, None, mailbox, host)


def _split_spec(words: list[Token]) -> tuple[str, str]:
    """Split addr-spec tokens at the last "@" into (local part, domain)."""
    at = max((i for i, t in enumerate(words) if t.kind == "@"), default=None)
    local = _join(words if at is None else words[:at])
    domain = None if at is None else _join(words[at + 1 :])
    return local or MISSING_MAILBOX, domain or MISSING_DOMAIN


def _join(words: list[Token], route: bool = False) -> str:
    """Join local-part, domain or route tokens; dots bind tightly (RFC 5322 obs-local-part)."""
    out: list[str] = []
    prev = ""
    for tok in words:
        if route and tok.kind == "@" and out and prev != ",":
            out.append(",")
        if tok.kind == "word" and prev == "word" and tok.space_before:
            out.append(" ")
        out.append(tok.text)
        prev = tok.kind
    return "".join(out)


def _phrase(items: Sequence[Token | list[Token]]) -> str:
    """A display name from its words (RFC 5322 3.2.5 phrase, obs-phrase with "."): quoted
    strings unquoted, comments dropped, whitespace between words collapsed to one space."""
    out: list[str] = []
    for tok in items:
        if not isinstance(tok, Token) or tok.kind == "comment":
            continue
        if out and tok.space_before and tok.kind != ".":
            out.append(" ")
        out.append(tok.text)
    return "".join(out)


# --- addresses as text, for SEARCH FROM/TO/CC/BCC ------------------------------------------

_ATEXT_WORD = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")


def addresses_text(addresses: list[Address]) -> str:
    """An address list written out in one canonical form: `Name <local@domain>` (the name
    quoted when it is more than one atom), `group: a, b;`, comments and folding gone. SEARCH
    matches this as well as the field as written, so `John Doe <jd@x>` finds
    `jd@x (John Doe)` and `"John  Doe" <jd@x>`, as Dovecot's search does."""
    items: list[str] = []
    group: tuple[str, list[str]] | None = None  # (name, members) while inside a group
    for address in addresses:
        if address.host is None:  # a group's start (its name in `mailbox`) or its end
            if group is not None:
                items.append(_group_text(*group))
            group = None if address.mailbox is None else (address.mailbox, [])
        elif group is not None:
            group[1].append(_mailbox_text(address))
        else:
            items.append(_mailbox_text(address))
    if group is not None:
        items.append(_group_text(*group))
    return ", ".join(items)


def list_text(value: str) -> str:
    """addresses_text(parse_addresses(value)), written straight from the fast path's matches
    when the value is an everyday list (SEARCH caches it for every address field of a big
    folder, most of them different)."""
    # A local part or domain named like the placeholders would be written as missing.
    matches = simple_matches(value)
    if matches is None or "MISSING_" in value:
        return addresses_text(parse_addresses(value))
    items = []
    for words, quoted_name, mailbox, host, bare, bare_host, comment in matches:
        if mailbox is None:  # addr-spec: its comment is the name (_address)
            name = comment.strip(" \t") if comment else ""
            mailbox, host = bare, bare_host
        else:
            name = " ".join(words.split()) if words else quoted_name or ""
        if name:
            items.append(f"{_display_name(name)} <{mailbox}@{host}>")
        else:
            items.append(f"<{mailbox}@{host}>")
    return ", ".join(items)


def _group_text(name: str, members: list[str]) -> str:
    return f"{_display_name(name)}:{' ' if members else ''}{', '.join(members)};"


def _mailbox_text(address: Address) -> str:
    local = "" if address.mailbox in (None, MISSING_MAILBOX) else address.mailbox
    domain = "" if address.host in (None, MISSING_DOMAIN) else address.host
    # `local@` without a domain, as Dovecot writes it: a search for "@" finds it there too.
    spec = (f"{address.adl}:" if address.adl else "") + (f"{local}@{domain}" if local else "")
    name = _display_name(address.name) if address.name else ""
    return f"{name} <{spec}>" if name else f"<{spec}>"


def _display_name(name: str) -> str:
    """A phrase as written back: one atom as it is, encoded words left bare (RFC 2047 5 forbids
    them inside quotes; the caller decodes them), anything else quoted."""
    if _ATEXT_WORD.fullmatch(name) or "=?" in name:
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- ENVELOPE (RFC 3501 7.4.2) --------------------------------------------------------------


def address_list(addresses: list[Address]) -> bytes:
    """A parenthesised list of address structures, or NIL when there are none."""
    if not addresses:
        return b"NIL"
    return (
        b"("
        + b"".join(
            b"(%s %s %s %s)"
            % (nstring(a.name), nstring(a.adl), nstring(a.mailbox), nstring(a.host))
            for a in addresses
        )
        + b")"
    )


def addresses(value: str | None) -> bytes:
    """address_list(parse_addresses(value)), written straight from the fast path's matches when
    the value is an everyday list (ENVELOPE renders some 100,000 of these for a big folder)."""
    if not value:
        return b"NIL"
    matches = simple_matches(value)
    if matches is None:
        return address_list(parse_address_tokens(value))
    out = []
    for words, quoted_name, mailbox, host, bare, bare_host, comment in matches:
        personal: str | None
        if mailbox is None:
            personal = comment.strip(" \t") if comment else None
            mailbox, host = bare, bare_host
        else:
            personal = " ".join(words.split()) if words else quoted_name
        whole = (personal or "") + mailbox + host
        if whole.isascii() and not _SPECIAL.search(whole):  # all three quoted as they are
            if personal:
                out.append(f'("{personal}" NIL "{mailbox}" "{host}")'.encode("ascii"))
            else:
                out.append(f'(NIL NIL "{mailbox}" "{host}")'.encode("ascii"))
        else:
            out.append(
                b"(%s NIL %s %s)"
                % (nstring(personal or None), imap_string(mailbox), imap_string(host))
            )
    return b"(" + b"".join(out) + b")"


# The header fields ENVELOPE shows (upper-case names), RFC 3501 7.4.2.
ENVELOPE_FIELDS = (
    "DATE",
    "SUBJECT",
    "FROM",
    "SENDER",
    "REPLY-TO",
    "TO",
    "CC",
    "BCC",
    "IN-REPLY-TO",
    "MESSAGE-ID",
)


def render_envelope(fields: dict[str, list[str]]) -> bytes:
    """The ENVELOPE for a header, given its fields' values (upper-case name -> values in order;
    the first one counts).

    Absent Date, Subject, In-Reply-To or Message-ID is NIL and a present but empty one is "";
    an absent or empty Sender or Reply-To is set to From (RFC 3501 7.4.2)."""
    get = fields.get
    from_list = addresses(_first(get("FROM")))
    sender = addresses(_first(get("SENDER"))) if "SENDER" in fields else b"NIL"
    reply_to = addresses(_first(get("REPLY-TO"))) if "REPLY-TO" in fields else b"NIL"
    items = [
        nstring(_first(get("DATE"))),
        nstring(_first(get("SUBJECT"))),
        from_list,
        from_list if sender == b"NIL" else sender,
        from_list if reply_to == b"NIL" else reply_to,
        addresses(_first(get("TO"))),
        addresses(_first(get("CC"))) if "CC" in fields else b"NIL",
        addresses(_first(get("BCC"))) if "BCC" in fields else b"NIL",
        nstring(_first(get("IN-REPLY-TO"))),
        nstring(_first(get("MESSAGE-ID"))),
    ]
    return b"(" + b" ".join(items) + b")"


def _first(values: list[str] | None) -> str | None:
    return values[0] if values else None
