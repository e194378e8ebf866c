"""Property-based fuzzing of the IMAP command parser (imapd/parser.py `parse_command` with the
one COMMANDS table) and its helpers: whatever the bytes, it returns a Command of the table or
raises ParseError, nothing else; the BAD reply a ParseError becomes is one well-formed line; a
parsed command keeps its tag. Commands are built from the grammar's own pieces (every command
name, atoms, quoted strings with escapes, literals that tell the truth or lie, lists, sequence
sets, fetch items, search keys) as well as from raw bytes."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from imapd import responses as r
from imapd.commands import COMMANDS
from imapd.parser import (
    Command,
    ParseError,
    literal_at_end,
    parse_command,
    parse_sasl_response,
)
from support.imapfuzz import COMMAND_BYTES, TAG


def check_outcome(raw: bytes) -> Command | None:
    try:
        command = parse_command(raw, COMMANDS)
    except ParseError as error:
        assert isinstance(error.message, str) and error.message, raw
        assert error.tag is None or TAG.fullmatch(error.tag.encode("ascii")), raw
        reply = r.tagged(error.tag or "*", "BAD", error.message)
        assert reply.endswith(b"\r\n") and b"\r" not in reply[:-2] and b"\n" not in reply[:-2]
        return None
    assert command.name in COMMANDS, raw
    assert raw.startswith(command.tag.encode("ascii") + b" "), raw
    assert TAG.fullmatch(command.tag.encode("ascii")), raw
    return command


@given(COMMAND_BYTES)
@example(b"a LOGIN {5}\r\nalice {3}\r\npw")
@example(b"a LOGIN {5}\r\nali")  # a literal that announces more than it holds
@example(b"a FETCH 1 BODY[" + b"1." * 5000 + b"]")
@example(b"a SEARCH " + b"(" * 5000 + b"ALL" + b")" * 5000)
@example(b"a SEARCH " + b"NOT " * 5000 + b"ALL")
@example(b"a STORE 1:99999999999999999999 FLAGS (\\Seen)")
@example(b'a APPEND INBOX (\\Seen) "31-Dec-9999 23:59:59 +9999" {0}\r\n')
@example(b"a CREATE &" + b"A" * 3000 + b"-")
@example(b"a UID")
def test_parse_command_raises_only_parse_error(raw: bytes) -> None:
    check_outcome(raw)


@given(st.binary(max_size=40))
def test_literal_at_end_and_sasl_responses(line: bytes) -> None:
    found = literal_at_end(line)
    if found is not None:
        size, plus = found
        assert size >= 0 and isinstance(plus, bool) and line.endswith(b"}")
    try:
        decoded = parse_sasl_response(line)
    except ParseError as error:
        assert error.message
    else:
        assert decoded is None or isinstance(decoded, bytes)
