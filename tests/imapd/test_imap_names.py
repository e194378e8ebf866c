"""imapd/names.py and the parser around it: mailbox names as modified UTF-7 or as UTF-8 (RFC
3501 5.1.3, RFC 9051 5.1, RFC 6855 3), Normalization Form C and the names as sent that OLDNAME
reports (RFC 9051 6.3.9.7), and the utf8-literal of APPEND (RFC 6855 4)."""

from __future__ import annotations

import unicodedata

import pytest

from imapd.commands import COMMANDS
from imapd.names import NOT_UTF8, decode_mailbox, decode_pattern, mailbox_octets
from imapd.parser import (
    AppendArgs,
    CatPart,
    Command,
    CreateArgs,
    ListArgs,
    ParseError,
    RenameArgs,
    SelectArgs,
    UndecodableName,
    encode_mailbox,
    parse_command,
)
from imapd.parser_append import AppendMessage

NFD = "A\u030ake"  # A + COMBINING RING ABOVE
NFC = "\u00c5ke"


def parse8(raw: bytes) -> Command:
    """The parser with UTF-8 names (a session that enabled IMAP4rev2 or UTF8=ACCEPT)."""
    return parse_command(raw, COMMANDS, utf8=True)


@pytest.mark.parametrize(
    ("raw", "utf8", "name", "supplied"),
    [
        (b"&AMQ-rger", False, "Ärger", None),
        (b"inbox", False, "INBOX", None),
        ("Ärger.日本".encode(), True, "Ärger.日本", None),
        (b"inbox", True, "INBOX", None),  # INBOX folding is no normalization
        (b"a&b", True, "a&b", None),  # "&" is a character in UTF-8
        (b"&AMQ-rger", True, "&AMQ-rger", None),
        (NFD.encode(), True, NFC, NFD),
        ("\u2126".encode(), True, "\u03a9", "\u2126"),  # OHM SIGN
    ],
)
def test_decode_mailbox(raw: bytes, utf8: bool, name: str, supplied: str | None) -> None:
    assert decode_mailbox(raw, utf8) == (name, supplied)
    assert unicodedata.is_normalized("NFC", name)


@pytest.mark.parametrize("raw", [b"\xff", b"\xc3", b"a\xc3(", b"\xed\xa0\x80", b"\xc0\xae"])
def test_not_utf8(raw: bytes) -> None:
    with pytest.raises(ValueError, match=NOT_UTF8):
        decode_mailbox(raw, utf8=True)
    with pytest.raises(ValueError, match=NOT_UTF8):
        decode_pattern(raw, utf8=True)
    # In modified UTF-7 the same octets are a name that names nothing.
    assert isinstance(decode_mailbox(raw)[0], UndecodableName)


def test_patterns() -> None:
    assert decode_pattern(b"inbox*") == "inbox*"  # not folded
    assert decode_pattern(b"&AMQ-*") == "Ä*"
    assert decode_pattern("A\u030a%".encode(), utf8=True) == "\u00c5%"
    assert isinstance(decode_pattern(b"&A*"), UndecodableName)


@pytest.mark.parametrize(
    ("name", "octets", "rev1", "utf8"),
    [
        ("INBOX", b"INBOX", b"INBOX", b"INBOX"),
        ("Ärger.日本", b"&AMQ-rger.&ZeVnLA-", b"&AMQ-rger.&ZeVnLA-", '"Ärger.日本"'.encode()),
        ("a&b", b"a&-b", b"a&-b", b"a&b"),
        ("Sent Items", b"Sent Items", b'"Sent Items"', b'"Sent Items"'),
        ('Ä"\\', b'&AMQ-"\\', b'"&AMQ-\\"\\\\"', '"Ä\\"\\\\"'.encode()),
    ],
)
def test_encode_both_ways(name: str, octets: bytes, rev1: bytes, utf8: bytes) -> None:
    assert mailbox_octets(name) == octets
    assert mailbox_octets(name, utf8=True) == name.encode()
    assert encode_mailbox(name) == rev1
    assert encode_mailbox(name, utf8=True) == utf8
    # What goes out comes back as the same name, in either session.
    assert parse_command(b"a SELECT " + rev1, COMMANDS).args == SelectArgs(name)
    assert parse8(b"a SELECT " + utf8).args == SelectArgs(name)


def test_command_keeps_the_names_as_sent() -> None:
    command = parse8(b'a RENAME "' + NFD.encode() + b'" "\xe2\x84\xa6"')
    assert command.args == RenameArgs(NFC, "\u03a9")
    assert command.denormalized == ((NFC, NFD), ("\u03a9", "\u2126"))
    assert command.supplied(NFC) == NFD and command.supplied("\u03a9") == "\u2126"
    assert command.supplied("other") is None
    plain = parse8('a CREATE "Ärger."'.encode())
    assert plain.args == CreateArgs("Ärger.") and plain.denormalized == ()
    # A literal carries a UTF-8 name too; a rev1 session keeps its names exactly.
    assert parse8(b"a SELECT {%d}\r\n%s" % (len(NFD.encode()), NFD.encode())).args == SelectArgs(
        NFC
    )
    assert parse_command(b"a SELECT &AMU-ke", COMMANDS).denormalized == ()


@pytest.mark.parametrize(
    "raw",
    [
        b'a CREATE "\xff"',
        b"a SELECT {1}\r\n\xc3",
        b'a RENAME "x" "\xc3("',
        b'a LIST "\xff" *',
        b'a LIST "" ("a" "\xff")',
        b'a LSUB "" "\xfe*"',
        b'a STATUS "\xff" (MESSAGES)',
        b'a APPEND "\xff" {1+}\r\nx',
        b'a COPY 1 "\xff"',
    ],
)
def test_invalid_utf8_is_bad(raw: bytes) -> None:
    with pytest.raises(ParseError) as caught:
        parse8(raw)
    assert caught.value.tag == "a" and caught.value.message == NOT_UTF8


def test_list_patterns_in_utf8() -> None:
    args = parse8(b'a LIST "" ("' + NFD.encode() + b'*" "&AMQ-*")').args
    assert args == ListArgs("", (NFC + "*", "&AMQ-*"), extended=True)


MESSAGE = "Subject: Grüße\r\n\r\nx\r\n".encode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b"a APPEND INBOX UTF8 (~{%d}\r\n%s)" % (len(MESSAGE), MESSAGE),
            AppendArgs("INBOX", (), None, MESSAGE, utf8=True),
        ),
        (
            b"a APPEND INBOX (\\Seen) utf8 ({%d+}\r\n%s)" % (len(MESSAGE), MESSAGE),
            AppendArgs("INBOX", ("\\Seen",), None, MESSAGE, utf8=True),
        ),
        (
            b"a APPEND INBOX {1}\r\nx UTF8 (~{1}\r\ny)",
            AppendArgs("INBOX", (), None, b"x", more=(AppendMessage((), None, b"y", utf8=True),)),
        ),
        (
            b'a APPEND INBOX CATENATE (UTF8 (~{1}\r\nh) TEXT {1}\r\nb URL "/INBOX;UID=1")',
            AppendArgs(
                "INBOX",
                (),
                None,
                b"",
                catenate=(
                    CatPart("UTF8", b"h"),
                    CatPart("TEXT", b"b"),
                    CatPart("URL", b"/INBOX;UID=1"),
                ),
            ),
        ),
    ],
)
def test_append_utf8_literal(raw: bytes, expected: AppendArgs) -> None:
    args = parse_command(raw, COMMANDS).args
    assert args == expected
    assert isinstance(args, AppendArgs)
    assert any(message.uses_utf8 for message in args.messages)


@pytest.mark.parametrize(
    "raw",
    [
        b"a APPEND INBOX UTF8 ~{1}\r\nx",
        b"a APPEND INBOX UTF8 (x)",
        b"a APPEND INBOX UTF8 (~{1}\r\nx",
        b"a APPEND INBOX UTF8",
        b"a APPEND INBOX CATENATE (UTF8 x)",
        b"a APPEND INBOX UTF9 (~{1}\r\nx)",
    ],
)
def test_append_utf8_literal_errors(raw: bytes) -> None:
    with pytest.raises(ParseError):
        parse_command(raw, COMMANDS)
