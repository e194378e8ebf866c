"""IMAP4rev1 command parser: pure bytes-to-values functions, no I/O, no session.

Implements the command grammar of RFC 3501 section 9 with the extension syntax we serve:
LITERAL+ (RFC 7888), UIDPLUS (RFC 4315), MOVE (RFC 6851), IDLE (RFC 2177), NAMESPACE
(RFC 2342), ID (RFC 2971), ENABLE (RFC 5161), UNSELECT (RFC 3691), SASL-IR (RFC 4959),
LIST-EXTENDED (RFC 5258) with LIST-STATUS (RFC 5819) and SPECIAL-USE (RFC 6154), ESEARCH
(RFC 4731), CONDSTORE/QRESYNC (RFC 7162), QUOTA (RFC 9208) and COMPRESS (RFC 4978).

The session hands `parse_command` one whole command as it came on the wire: the first line
and, after each line ending in a literal ``{n}``/``{n+}`` (see `literal_at_end`), the line
break, the n literal octets and the rest, with the final line break stripped. The result is a
`Command` whose ``args`` is a per-command frozen dataclass (None for commands without
arguments); the helpers `parser_base`, `parser_fetch`, `parser_mailbox`, `parser_search` and
`utf7` hold the rest, and every public name is re-exported here. Anything malformed raises
`ParseError`, and nothing else is ever raised.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from common.utf7 import decode_mutf7, encode_mutf7
from imapd.names import mailbox_octets
from imapd.parser_append import (
    AppendMessage,
    CatPart,
    parse_append_message,
    starts_append_message,
)
from imapd.parser_base import (
    ATOM_RE,
    MAX_DEPTH,
    MAX_NUMBER64,
    ParseError,
    Reader,
    SeqSet,
    UndecodableName,
    parse_date,
    parse_date_time,
)
from imapd.parser_binary import BinarySection
from imapd.parser_fetch import MACROS, SIMPLE_ITEMS, BodySection, FetchArgs, FetchItem, parse_fetch
from imapd.parser_mailbox import (
    CreateArgs,
    ListArgs,
    QResync,
    SelectArgs,
    StatusArgs,
    parse_create,
    parse_list,
    parse_lsub,
    parse_select,
    parse_status,
)
from imapd.parser_search import And, Key, Not, Or, SearchArgs, SearchNode, parse_search
from imapd.parser_sort import (
    CancelUpdateArgs,
    SortArgs,
    SortKey,
    ThreadArgs,
    parse_cancelupdate,
    parse_sort,
    parse_thread,
)
from imapd.strings import quoted

__all__ = [
    "MACROS",
    "MAX_DEPTH",
    "SIMPLE_ITEMS",
    "And",
    "AppendArgs",
    "ArgParser",
    "Args",
    "AuthenticateArgs",
    "BodySection",
    "Command",
    "CompressArgs",
    "CopyArgs",
    "CreateArgs",
    "EnableArgs",
    "ExpungeArgs",
    "FetchArgs",
    "FetchItem",
    "Grammar",
    "IdArgs",
    "Key",
    "ListArgs",
    "LoginArgs",
    "MailboxArgs",
    "Not",
    "Or",
    "ParseError",
    "QResync",
    "QuotaArgs",
    "RenameArgs",
    "SearchArgs",
    "SearchNode",
    "SelectArgs",
    "SeqSet",
    "StatusArgs",
    "StoreArgs",
    "UndecodableName",
    "decode_mutf7",
    "encode_mailbox",
    "encode_mutf7",
    "literal_at_end",
    "tag_of",
    "parse_append",
    "parse_authenticate",
    "parse_command",
    "parse_compress",
    "parse_copy",
    "parse_create",
    "parse_date",
    "parse_date_time",
    "parse_enable",
    "parse_expunge",
    "parse_fetch_command",
    "parse_search_command",
    "parse_fetch",
    "parse_getquota",
    "parse_id",
    "parse_list",
    "parse_login",
    "parse_lsub",
    "parse_mailbox_only",
    "parse_no_args",
    "parse_rename",
    "parse_sasl_response",
    "parse_search",
    "parse_select",
    "parse_setquota",
    "parse_status",
    "AppendMessage",
    "BinarySection",
    "CatPart",
    # SORT, THREAD, CANCELUPDATE (imapd/parser_sort.py)
    "CancelUpdateArgs",
    "SortArgs",
    "SortKey",
    "ThreadArgs",
    "parse_cancelupdate",
    "parse_sort",
    "parse_thread",
    "parse_store",
]

# tag = 1*<any ASTRING-CHAR except "+"> (RFC 3501 9).
_TAG_RE = re.compile(rb"[!#$&',-\[\]^-z|}~]+")
_BASE64_RE = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


# -- argument dataclasses -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginArgs:
    """LOGIN userid password (RFC 3501 6.2.3), both decoded as UTF-8."""

    user: str
    password: str


@dataclass(frozen=True, slots=True)
class AuthenticateArgs:
    """AUTHENTICATE mechanism [initial-response] (RFC 3501 6.2.2, RFC 4959).

    ``mechanism`` is upper-cased; ``initial_response`` is the decoded base64 (``=`` gives b""),
    None when absent.
    """

    mechanism: str
    initial_response: bytes | None = None


@dataclass(frozen=True, slots=True)
class MailboxArgs:
    """A single mailbox: DELETE, SUBSCRIBE, UNSUBSCRIBE, GETQUOTAROOT."""

    mailbox: str


@dataclass(frozen=True, slots=True)
class RenameArgs:
    """RENAME existing new (RFC 3501 6.3.5)."""

    old: str
    new: str


@dataclass(frozen=True, slots=True)
class AppendArgs:
    """APPEND mailbox [(flags)] ["date-time"] literal (RFC 3501 6.3.11): the first message's
    flags, date and octets; ``catenate`` when that message is a CATENATE (RFC 4469, then
    ``message`` is empty), ``more`` the further messages of a MULTIAPPEND (RFC 3502); ``utf8``
    when the first message came as a utf8-literal (RFC 6855 4)."""

    mailbox: str
    flags: tuple[str, ...]
    internal_date: datetime.datetime | None
    message: bytes
    catenate: tuple[CatPart, ...] | None = None
    more: tuple[AppendMessage, ...] = ()
    utf8: bool = False

    @property
    def messages(self) -> tuple[AppendMessage, ...]:
        """Every message of the command, in order."""
        first = AppendMessage(
            self.flags, self.internal_date, self.message, self.catenate, self.utf8
        )
        return (first, *self.more)


@dataclass(frozen=True, slots=True)
class StoreArgs:
    """STORE seqset [(UNCHANGEDSINCE n)] [+-]FLAGS[.SILENT] flags (RFC 3501 6.4.6, RFC 7162).

    ``mode`` is "" (replace), "+" (add) or "-" (remove).
    """

    seqset: SeqSet
    mode: str
    silent: bool
    flags: tuple[str, ...]
    unchangedsince: int | None = None


@dataclass(frozen=True, slots=True)
class CopyArgs:
    """COPY / MOVE (and the UID forms) seqset mailbox (RFC 3501 6.4.7, RFC 6851)."""

    seqset: SeqSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class ExpungeArgs:
    """EXPUNGE (seqset None) or UID EXPUNGE seqset (RFC 3501 6.4.3, RFC 4315 2.1)."""

    seqset: SeqSet | None = None


@dataclass(frozen=True, slots=True)
class IdArgs:
    """ID NIL / ID (field value ...) (RFC 2971 3.1); None for NIL, values may be None."""

    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, slots=True)
class EnableArgs:
    """ENABLE capability ... (RFC 5161 3.1), upper-cased."""

    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QuotaArgs:
    """GETQUOTA / SETQUOTA quota-root (RFC 9208 4.1-4.2)."""

    root: str


@dataclass(frozen=True, slots=True)
class CompressArgs:
    """COMPRESS mechanism (RFC 4978 3), upper-cased; the handler checks for DEFLATE."""

    mechanism: str


Args = (
    LoginArgs
    | AuthenticateArgs
    | MailboxArgs
    | CreateArgs
    | RenameArgs
    | SelectArgs
    | ListArgs
    | StatusArgs
    | AppendArgs
    | FetchArgs
    | StoreArgs
    | CopyArgs
    | SearchArgs
    | ExpungeArgs
    | IdArgs
    | EnableArgs
    | QuotaArgs
    | CompressArgs
    | SortArgs
    | ThreadArgs
    | CancelUpdateArgs
    | None
)
# Parses a command's arguments after its name: (reader, UID-prefixed) -> the arguments.
ArgParser = Callable[[Reader, bool], Args]


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed command. ``name`` is upper-case; ``UID FETCH`` is ``FETCH`` with uid=True.

    ``denormalized`` holds (name, name as sent) for each UTF-8 mailbox name of the command that
    was not in Normalization Form C (imapd/names.py): what OLDNAME reports (RFC 9051 6.3.9.7).
    """

    tag: str
    name: str
    args: Args
    uid: bool = False
    denormalized: tuple[tuple[str, str], ...] = ()

    def supplied(self, name: str) -> str | None:
        """How the client spelled mailbox `name` when normalizing changed it, else None."""
        return next((sent for found, sent in self.denormalized if found == name), None)


# -- entry points -------------------------------------------------------------------------------


class Grammar(Protocol):
    """What the parser needs of a command table entry (imapd/states.Spec)."""

    @property
    def parse(self) -> ArgParser: ...

    @property
    def uid(self) -> bool: ...


def parse_command(raw: bytes, grammar: Mapping[str, Grammar], utf8: bool = False) -> Command:
    """Parse one assembled command (see the module docstring) with the commands `grammar`
    knows (the command table), mailbox names in UTF-8 when `utf8` (the session enabled
    IMAP4rev2 or UTF8=ACCEPT), else in modified UTF-7; raise ParseError."""
    if not raw.strip(b" "):
        raise ParseError(None, "Empty command line")
    space = raw.find(b" ")
    tag_bytes = raw if space < 0 else raw[:space]
    if _TAG_RE.fullmatch(tag_bytes) is None:
        raise ParseError(None, "Invalid tag")
    tag = tag_bytes.decode("ascii")
    try:
        return _parse_after_tag(tag, Reader(raw, len(tag_bytes), utf8), grammar)
    except ParseError as error:
        if error.tag is None:
            raise ParseError(tag, error.message) from None
        raise


def _parse_after_tag(tag: str, reader: Reader, grammar: Mapping[str, Grammar]) -> Command:
    if reader.at_end():
        raise ParseError(tag, "Missing command")
    reader.sp()
    name = _command_name(reader)
    uid = name == "UID"
    if uid:
        reader.sp()
        name = _command_name(reader)
    entry = grammar.get(name)
    if uid and (entry is None or not entry.uid):
        raise ParseError(tag, "Unknown UID command")
    if entry is None:
        raise ParseError(tag, "Unknown command")
    args = entry.parse(reader, uid)
    return Command(tag, name, args, uid, tuple(reader.denormalized))


def _command_name(reader: Reader) -> str:
    match = ATOM_RE.match(reader.data, reader.pos)
    if match is None:
        raise ParseError(None, "Unknown command")
    reader.pos = match.end()
    return match.group().decode("ascii").upper()


def tag_of(line: bytes) -> str | None:
    """The tag a command line starts with, when it is a valid tag followed by a space: for a
    reply to a line that cannot be read whole (too long)."""
    tag, space, _rest = line.partition(b" ")
    if not space or _TAG_RE.fullmatch(tag) is None:
        return None
    return tag.decode("ascii")


def literal_at_end(line: bytes) -> tuple[int, bool] | None:
    """``(size, non_synchronizing)`` when ``line`` ends in ``{n}`` or ``{n+}`` (RFC 7888).

    Sizes are returned however large (over 18 digits reads as 10**18): the session enforces
    its own maximum. A literal starts a token (RFC 3501 9): after a space or "(" (or "~", a
    literal8), never inside a quoted string. A line whose `{n}` cannot be a literal (`a SELECT
    foo{5}`, `a SELECT "x {5}`) is no literal announcement: it goes to the parser, which answers
    BAD at once, instead of the session waiting for octets the client will not send.
    """
    if not line.endswith(b"}"):
        return None
    start = line.rfind(b"{")
    if start < 0:
        return None
    body = line[start + 1 : -1]
    plus = body.endswith(b"+")
    digits = body[:-1] if plus else body
    if not digits or not digits.isdigit():
        return None
    token = start - 1 if line[start - 1 : start] == b"~" else start
    if token < 1 or line[token - 1 : token] not in (b" ", b"(") or _in_quoted(line, token):
        return None
    return (int(digits) if len(digits) <= 18 else 10**18), plus


def _in_quoted(line: bytes, end: int) -> bool:
    """Whether position `end` of a command line lies inside a quoted string."""
    quoted, pos = False, 0
    while pos < end:
        byte = line[pos]
        if quoted and byte == 0x5C:  # a quoted-special escaped inside the string
            pos += 2
            continue
        if byte == 0x22:
            quoted = not quoted
        pos += 1
    return quoted


def parse_sasl_response(line: bytes) -> bytes | None:
    """One AUTHENTICATE continuation line (RFC 3501 6.2.2): decoded bytes, None for ``*``.

    Raises ParseError(None, ...); the session tags it with the AUTHENTICATE command's tag.
    """
    line = line.strip(b" ")
    if line == b"*":
        return None
    return _decode_base64(line)


def encode_mailbox(name: str, utf8: bool = False) -> bytes:
    """A mailbox name for a response, modified UTF-7 or UTF-8 (imapd/names.py), as an atom or
    else quoted (store names hold no CR, LF or NUL)."""
    encoded = mailbox_octets(name, utf8)
    if ATOM_RE.fullmatch(encoded) is not None:
        return encoded
    return quoted(encoded)


def _decode_base64(data: bytes) -> bytes:
    if len(data) % 4 or _BASE64_RE.fullmatch(data) is None:
        raise ParseError(None, "Invalid base64")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError(None, "Invalid base64") from None


# -- per-command parsers: each starts right after the command name -----------------------------


def parse_no_args(reader: Reader, uid: bool) -> None:
    """CAPABILITY NOOP LOGOUT CHECK CLOSE UNSELECT IDLE NAMESPACE STARTTLS."""
    reader.end()


def parse_login(reader: Reader, uid: bool) -> LoginArgs:
    """login = "LOGIN" SP userid SP password (RFC 3501 6.2.3)."""
    reader.sp()
    user = reader.astring()
    reader.sp()
    password = reader.astring()
    reader.end()
    return LoginArgs(reader.utf8(user, "user name"), reader.utf8(password, "password"))


def parse_authenticate(reader: Reader, uid: bool) -> AuthenticateArgs:
    """authenticate = "AUTHENTICATE" SP auth-type [SP (base64 / "=")] (RFC 4959 7)."""
    reader.sp()
    mechanism = reader.keyword()
    response = None
    if reader.try_sp():
        token = reader.atom()
        response = b"" if token == b"=" else _decode_base64(token)
    reader.end()
    return AuthenticateArgs(mechanism, response)


def parse_mailbox_only(reader: Reader, uid: bool) -> MailboxArgs:
    """DELETE / SUBSCRIBE / UNSUBSCRIBE / GETQUOTAROOT SP mailbox."""
    reader.sp()
    mailbox = reader.mailbox()
    reader.end()
    return MailboxArgs(mailbox)


def parse_rename(reader: Reader, uid: bool) -> RenameArgs:
    """rename = "RENAME" SP mailbox SP mailbox (RFC 3501 6.3.5)."""
    reader.sp()
    old = reader.mailbox()
    reader.sp()
    new = reader.mailbox()
    reader.end()
    return RenameArgs(old, new)


def parse_append(reader: Reader, uid: bool) -> AppendArgs:
    """append = "APPEND" SP mailbox [SP flag-list] [SP date-time] SP literal (RFC 3501 6.3.11),
    with more messages, literal8 and CATENATE (imapd/parser_append.py)."""
    reader.sp()
    mailbox = reader.mailbox()
    reader.sp()
    first = parse_append_message(reader)
    more = []
    while reader.try_sp():
        if not starts_append_message(reader):
            raise ParseError(None, "Unexpected extra arguments")
        more.append(parse_append_message(reader))
    reader.end()
    return AppendArgs(
        mailbox,
        first.flags,
        first.internal_date,
        first.data,
        first.catenate,
        tuple(more),
        first.utf8,
    )


def parse_store(reader: Reader, uid: bool) -> StoreArgs:
    """store = "STORE" SP sequence-set [store-modifiers] SP store-att-flags (RFC 7162 3.1.3)."""
    reader.sp()
    seqset = reader.seqset()
    reader.sp()
    unchangedsince = None
    if reader.peek() == 0x28:
        for _ in reader.paren_list():
            if reader.keyword() != "UNCHANGEDSINCE":
                raise ParseError(None, "Unknown STORE modifier")
            reader.sp()
            unchangedsince = reader.number(MAX_NUMBER64)
        reader.sp()
    action = reader.keyword()
    mode = action[0] if action[0] in "+-" else ""
    if action[len(mode) :] not in ("FLAGS", "FLAGS.SILENT"):
        raise ParseError(None, "Expected FLAGS, +FLAGS or -FLAGS")
    reader.sp()
    if reader.peek() == 0x28:
        flags = reader.flag_list()
    else:
        found = [reader.flag()]
        while reader.try_sp():
            found.append(reader.flag())
        flags = tuple(dict.fromkeys(found))
    reader.end()
    return StoreArgs(seqset, mode, action.endswith(".SILENT"), flags, unchangedsince)


def parse_copy(reader: Reader, uid: bool) -> CopyArgs:
    """copy / move = verb SP sequence-set SP mailbox (RFC 3501 6.4.7, RFC 6851 3.1)."""
    reader.sp()
    seqset = reader.seqset()
    reader.sp()
    mailbox = reader.mailbox()
    reader.end()
    return CopyArgs(seqset, mailbox)


def parse_search_command(reader: Reader, uid: bool) -> SearchArgs:
    """SEARCH SP ... (RFC 3501 6.4.4): see `parse_search`."""
    reader.sp()
    args = parse_search(reader, uid)
    reader.end()
    return args


def parse_fetch_command(reader: Reader, uid: bool) -> FetchArgs:
    """FETCH SP ... (RFC 3501 6.4.5): see `parse_fetch`."""
    reader.sp()
    return parse_fetch(reader, uid)


def parse_expunge(reader: Reader, uid: bool) -> ExpungeArgs:
    """EXPUNGE, or UID EXPUNGE SP sequence-set (RFC 4315 2.1)."""
    seqset = None
    if uid:
        reader.sp()
        seqset = reader.seqset()
    reader.end()
    return ExpungeArgs(seqset)


def parse_id(reader: Reader, uid: bool) -> IdArgs:
    """id = "ID" SP id-params-list; "(" *(string SP nstring) ")" / nil (RFC 2971 4)."""
    reader.sp()
    if reader.peek() != 0x28:
        if reader.keyword() != "NIL":
            raise ParseError(None, "Expected ID parameters or NIL")
        reader.end()
        return IdArgs(None)
    params: list[tuple[str, str | None]] = []
    for _ in reader.paren_list():
        field = reader.astring().decode("utf-8", "replace")
        reader.sp()
        value = reader.nstring()
        params.append((field, None if value is None else value.decode("utf-8", "replace")))
    reader.end()
    return IdArgs(tuple(params))


def parse_enable(reader: Reader, uid: bool) -> EnableArgs:
    """enable = "ENABLE" 1*(SP capability) (RFC 5161 4)."""
    reader.sp()
    capabilities = [reader.keyword()]
    while reader.try_sp():
        capabilities.append(reader.keyword())
    return EnableArgs(tuple(dict.fromkeys(capabilities)))


def parse_getquota(reader: Reader, uid: bool) -> QuotaArgs:
    """getquota = "GETQUOTA" SP quota-root-name (RFC 9208 4.2)."""
    reader.sp()
    root = reader.utf8(reader.astring(), "quota root")
    reader.end()
    return QuotaArgs(root)


def parse_setquota(reader: Reader, uid: bool) -> QuotaArgs:
    """setquota = "SETQUOTA" SP quota-root-name SP "(" [resource SP limit *(...)] ")" (RFC 9208
    4.1); the limits are checked for syntax only (quotas are read-only here)."""
    reader.sp()
    root = reader.utf8(reader.astring(), "quota root")
    reader.sp()
    for _ in reader.paren_list():
        reader.atom()
        reader.sp()
        reader.number(MAX_NUMBER64)
    reader.end()
    return QuotaArgs(root)


def parse_compress(reader: Reader, uid: bool) -> CompressArgs:
    """compress = "COMPRESS" SP algorithm (RFC 4978 4)."""
    reader.sp()
    mechanism = reader.keyword()
    reader.end()
    return CompressArgs(mechanism)
