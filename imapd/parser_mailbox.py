"""Mailbox-level commands: SELECT/EXAMINE, CREATE, LIST/LSUB, STATUS.

RFC 3501 6.3.1-6.3.10 and section 9, with RFC 4466 2.1-2.2 (command parameters), RFC 7162
3.1.8/3.2.5 (CONDSTORE, QRESYNC), RFC 5258 (LIST-EXTENDED), RFC 5819 (LIST-STATUS) and RFC 6154
(SPECIAL-USE, CREATE-SPECIAL-USE). Import the public names from `imapd.parser`.
"""

from __future__ import annotations

from dataclasses import dataclass

from imapd.parser_base import MAX_NUMBER64, ParseError, Reader, SeqSet, UndecodableName

__all__ = [
    "CreateArgs",
    "ListArgs",
    "QResync",
    "SelectArgs",
    "StatusArgs",
    "parse_create",
    "parse_list",
    "parse_lsub",
    "parse_select",
    "parse_status",
]

STATUS_ITEMS = frozenset(
    {
        "MESSAGES",
        "RECENT",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "HIGHESTMODSEQ",
        "DELETED",
        "DELETED-STORAGE",
        "APPENDLIMIT",
        "SIZE",
        "MAILBOXID",
    }
)
"""RFC 3501, RFC 7162 3.1.7 (HIGHESTMODSEQ), RFC 9208 (DELETED, DELETED-STORAGE), RFC 7889
(APPENDLIMIT), RFC 8438 (SIZE) and RFC 8474 (MAILBOXID)."""
LIST_SELECT_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
LIST_RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
USE_ATTRIBUTES = {
    attr.lower(): attr
    for attr in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
}


@dataclass(frozen=True, slots=True)
class CreateArgs:
    """CREATE mailbox [(USE (attrs))] (RFC 3501 6.3.3, RFC 6154 3).

    ``use`` holds the special-use attributes, known ones in canonical case; unknown ``\\X`` ones
    are kept as sent so the handler can answer NO [USEATTR].
    """

    mailbox: str
    use: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class QResync:
    """SELECT ... (QRESYNC (uidvalidity modseq [known-uids] [seq-match-data])) (RFC 7162 3.2.5).

    ``seq_match`` is (known sequence numbers, their UIDs). Neither set contains ``*``.
    """

    uidvalidity: int
    modseq: int
    known_uids: SeqSet | None = None
    seq_match: tuple[SeqSet, SeqSet] | None = None


@dataclass(frozen=True, slots=True)
class SelectArgs:
    """SELECT / EXAMINE mailbox [(CONDSTORE) / (QRESYNC (...))] (RFC 3501 6.3.1, RFC 7162).

    ``condstore`` is True only for an explicit CONDSTORE parameter (QRESYNC implies it too).
    """

    mailbox: str
    condstore: bool = False
    qresync: QResync | None = None


@dataclass(frozen=True, slots=True)
class ListArgs:
    """LIST / LSUB (RFC 3501 6.3.8-9; RFC 5258; RFC 5819; RFC 6154).

    ``patterns`` are decoded (imapd/names.py) but not INBOX-folded; those that are not modified
    UTF-7 are left out, and all of them when the reference is not (they match nothing).
    ``select_opts`` and ``return_opts`` are upper-cased; ``status_items`` are the RETURN
    (STATUS (...)) items. ``extended`` is True when any RFC 5258 syntax was used (options or a
    parenthesized pattern list).
    """

    reference: str
    patterns: tuple[str, ...]
    select_opts: tuple[str, ...] = ()
    return_opts: tuple[str, ...] = ()
    status_items: tuple[str, ...] = ()
    extended: bool = False


@dataclass(frozen=True, slots=True)
class StatusArgs:
    """STATUS mailbox (items) (RFC 3501 6.3.10, RFC 7162 3.1.6); items upper-cased."""

    mailbox: str
    items: tuple[str, ...]


def parse_create(reader: Reader, uid: bool) -> CreateArgs:
    """create = "CREATE" SP mailbox [SP "(" create-param ... ")"] (RFC 4466 2.2, RFC 6154 5.2)."""
    reader.sp()
    mailbox = reader.mailbox()
    use: list[str] = []
    if reader.try_sp():
        for _ in reader.paren_list():
            if reader.keyword() != "USE":
                raise ParseError(None, "Unknown CREATE parameter")
            reader.sp()
            for _ in reader.paren_list():
                use.append(_use_attribute(reader))
    reader.end()
    return CreateArgs(mailbox, tuple(dict.fromkeys(use)))


def _use_attribute(reader: Reader) -> str:
    if not reader.try_char(0x5C):
        raise ParseError(None, "Invalid special-use attribute")
    attr = "\\" + reader.atom().decode("ascii")
    return USE_ATTRIBUTES.get(attr.lower(), attr)


def parse_select(reader: Reader, uid: bool) -> SelectArgs:
    """select = "SELECT" SP mailbox [select-params] (RFC 4466 2.1, RFC 7162 3.1.8, 3.2.5)."""
    reader.sp()
    mailbox = reader.mailbox()
    condstore = False
    qresync = None
    if reader.try_sp():
        for _ in reader.paren_list():
            param = reader.keyword()
            if param == "CONDSTORE":
                condstore = True
            elif param == "QRESYNC":
                reader.sp()
                qresync = _qresync(reader)
            else:
                raise ParseError(None, "Unknown SELECT parameter")
    reader.end()
    return SelectArgs(mailbox, condstore, qresync)


def _qresync(reader: Reader) -> QResync:
    """QRESYNC (uidvalidity mod-sequence-value [known-uids] [seq-match-data]) (RFC 7162 3.2.5)."""
    reader.expect(0x28, "(")
    uidvalidity = reader.nz_number()
    reader.sp()
    modseq = reader.number(MAX_NUMBER64)  # lenient: 0 accepted, like CHANGEDSINCE
    known_uids = seq_match = None
    if not reader.try_char(0x29):
        reader.sp()
        if reader.peek() != 0x28:
            known_uids = _starless_seqset(reader)
            if reader.try_char(0x29):
                return QResync(uidvalidity, modseq, known_uids)
            reader.sp()
        seq_match = _seq_match_data(reader)
        reader.expect(0x29, ")")
    return QResync(uidvalidity, modseq, known_uids, seq_match)


def _seq_match_data(reader: Reader) -> tuple[SeqSet, SeqSet]:
    """seq-match-data = "(" known-sequence-set SP known-uid-set ")"."""
    reader.expect(0x28, "(")
    numbers = _starless_seqset(reader)
    reader.sp()
    uids = _starless_seqset(reader)
    reader.expect(0x29, ")")
    return numbers, uids


def _starless_seqset(reader: Reader) -> SeqSet:
    seqset = reader.seqset()
    if seqset.has_star or seqset.saved:
        raise ParseError(
            None, '"*" is not allowed here' if seqset.has_star else '"$" is not allowed here'
        )
    return seqset


def parse_list(reader: Reader, uid: bool) -> ListArgs:
    """list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]."""
    reader.sp()
    select_opts: tuple[str, ...] = ()
    extended = reader.peek() == 0x28
    if extended:
        select_opts = _list_select_opts(reader)
        reader.sp()
    reference = reader.mailbox()
    reader.sp()
    if reader.peek() == 0x28:
        extended = True
        patterns = tuple(reader.pattern() for _ in reader.paren_list())
        if not patterns:
            raise ParseError(None, "Empty mailbox pattern list")
    else:
        patterns = (reader.pattern(),)
    return_opts: tuple[str, ...] = ()
    status_items: tuple[str, ...] = ()
    if reader.try_sp():
        extended = True
        return_opts, status_items = _list_return_opts(reader)
    reader.end()
    reference, patterns = _matchable(reference, patterns)
    return ListArgs(reference, patterns, select_opts, return_opts, status_items, extended)


def _matchable(reference: str, patterns: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """Reference and patterns without those that are no names (UndecodableName: not modified
    UTF-7): they can match no name, so LIST and LSUB answer OK without them (as Dovecot), where
    another command naming such a mailbox gets NO."""
    if isinstance(reference, UndecodableName):
        return "", ()
    return reference, tuple(p for p in patterns if not isinstance(p, UndecodableName))


def _list_select_opts(reader: Reader) -> tuple[str, ...]:
    """list-select-opts (RFC 5258 6, RFC 6154 6); RECURSIVEMATCH needs a base option."""
    options = tuple(dict.fromkeys(reader.keyword() for _ in reader.paren_list()))
    if any(option not in LIST_SELECT_OPTIONS for option in options):
        raise ParseError(None, "Unknown LIST selection option")
    if "RECURSIVEMATCH" in options and not {"SUBSCRIBED", "SPECIAL-USE"} & set(options):
        raise ParseError(None, "RECURSIVEMATCH needs another selection option")
    return options


def _list_return_opts(reader: Reader) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """list-return-opts = "RETURN" SP "(" [return-option *(SP return-option)] ")"."""
    if reader.keyword() != "RETURN":
        raise ParseError(None, "Unexpected extra arguments")
    reader.sp()
    options: list[str] = []
    status_items: tuple[str, ...] = ()
    for _ in reader.paren_list():
        option = reader.keyword()
        if option not in LIST_RETURN_OPTIONS:
            raise ParseError(None, "Unknown LIST return option")
        if option == "STATUS":
            reader.sp()
            status_items = _status_items(reader)
        options.append(option)
    return tuple(dict.fromkeys(options)), status_items


def parse_lsub(reader: Reader, uid: bool) -> ListArgs:
    """lsub = "LSUB" SP mailbox SP list-mailbox (RFC 3501 6.3.9)."""
    reader.sp()
    reference = reader.mailbox()
    reader.sp()
    pattern = reader.pattern()
    reader.end()
    return ListArgs(*_matchable(reference, (pattern,)))


def parse_status(reader: Reader, uid: bool) -> StatusArgs:
    """status = "STATUS" SP mailbox SP "(" status-att *(SP status-att) ")" (RFC 3501 6.3.10)."""
    reader.sp()
    mailbox = reader.mailbox()
    reader.sp()
    items = _status_items(reader)
    reader.end()
    return StatusArgs(mailbox, items)


def _status_items(reader: Reader) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(reader.keyword() for _ in reader.paren_list()))
    if not items:
        raise ParseError(None, "Empty STATUS item list")
    if any(item not in STATUS_ITEMS for item in items):
        raise ParseError(None, "Unknown STATUS item")
    return items
