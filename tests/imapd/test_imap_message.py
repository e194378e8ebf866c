"""Unit tests for imapd.message (with imapd.mime, imapd.mimefields, imapd.mimetext and
imapd.envelope): ENVELOPE, BODY, BODYSTRUCTURE, BODY[section] and the SEARCH helpers.

The corpus (tests/corpus/*.eml) is stored with LF line ends, as in a Maildir, and handed to
MessageView in CRLF form, as the server does. Expected sizes are octets of the CRLF form; a
part's body ends before the CRLF that precedes its boundary (RFC 2046 5.1.1) and its line
count is the number of line ends in it. Every output is also checked against the RFC 3501
grammar by a strict little parser here, and read back with IMAPClient's response parser.
"""

from __future__ import annotations

import datetime
import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from imapclient.response_parser import parse_fetch_response

from imapd import envelope as env
from imapd.message import MessageView, known_fields, parse_date
from imapd.mime import MAX_DEPTH, find_parts, split_header
from imapd.mimefields import parse_content_type, parse_params
from imapd.mimetext import decode_base64, header_text
from imapd.search import searched_headers
from support.paths import CORPUS

NAMES = sorted(p.name for p in CORPUS.glob("*.eml"))


def load(name: str) -> bytes:
    """A corpus message in CRLF form."""
    return (CORPUS / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def view(name: str) -> MessageView:
    return MessageView(load(name))


# --- a strict reader for the RFC 3501 syntax these outputs use -----------------------------------

_LITERAL = re.compile(rb"\{(\d+)\}\r\n")
_NUMBER = re.compile(rb"\d+")


def parse_imap(data: bytes) -> object:
    """Parse one value: list, NIL, number, quoted string or literal (RFC 3501 9). Raises
    ValueError on anything else, including SP errors, bad quoted chars and NUL in a literal."""
    value, pos = _item(data, 0)
    if pos != len(data):
        raise ValueError(f"trailing data at {pos}")
    return value


def _item(data: bytes, pos: int) -> tuple[object, int]:
    head = data[pos : pos + 1]
    if head == b"(":
        return _list(data, pos + 1)
    if head == b'"':
        return _quoted(data, pos + 1)
    if head == b"{":
        m = _LITERAL.match(data, pos)
        if m is None:
            raise ValueError(f"bad literal at {pos}")
        size = int(m.group(1))
        body = data[m.end() : m.end() + size]
        if len(body) != size or b"\x00" in body:
            raise ValueError("short literal or NUL")
        return body, m.end() + size
    if data.startswith(b"NIL", pos):
        return None, pos + 3
    m = _NUMBER.match(data, pos)
    if m is None:
        raise ValueError(f"unexpected {data[pos : pos + 10]!r} at {pos}")
    return int(m.group()), m.end()


def _list(data: bytes, pos: int) -> tuple[list[object], int]:
    items: list[object] = []
    while True:
        item, pos = _item(data, pos)
        items.append(item)
        nxt = data[pos : pos + 1]
        if nxt == b")":
            return items, pos + 1
        if nxt == b" ":
            pos += 1
        elif not (nxt == b"(" and isinstance(item, list)):  # body parts are back to back
            raise ValueError(f"bad separator {nxt!r} at {pos}")


def _quoted(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    while pos < len(data):
        char = data[pos]
        if char == 0x22:
            return bytes(out), pos + 1
        if char == 0x5C:
            pos += 1
            if data[pos : pos + 1] not in (b'"', b"\\"):
                raise ValueError("bad quoted-pair")
            char = data[pos]
        elif char in (0, 10, 13) or char > 0x7F:
            raise ValueError(f"char {char:#x} in quoted string")
        out.append(char)
        pos += 1
    raise ValueError("unterminated quoted string")


def check_nstring(value: object) -> None:
    assert value is None or isinstance(value, bytes), value


def check_envelope(value: object) -> None:
    assert isinstance(value, list) and len(value) == 10, value
    for index in (0, 1, 8, 9):
        check_nstring(value[index])
    for addresses in value[2:8]:
        if addresses is None:
            continue
        assert isinstance(addresses, list) and addresses
        depth = 0
        for address in addresses:
            assert isinstance(address, list) and len(address) == 4
            for part in address:
                check_nstring(part)
            if address[3] is None:  # group marker: start has a mailbox, end has none
                depth += 1 if address[2] is not None else -1
                assert depth in (0, 1)
        assert depth == 0


def check_params(value: object) -> None:
    if value is None:
        return
    assert isinstance(value, list) and len(value) % 2 == 0 and value
    assert all(isinstance(v, bytes) for v in value)


def check_extensions(rest: list[object]) -> None:
    """body-fld-dsp, body-fld-lang, body-fld-loc."""
    assert len(rest) == 3, rest
    dsp, lang, loc = rest
    if dsp is not None:
        assert isinstance(dsp, list) and len(dsp) == 2 and isinstance(dsp[0], bytes)
        check_params(dsp[1])
    if isinstance(lang, list):
        assert lang and all(isinstance(tag, bytes) for tag in lang)
    else:
        check_nstring(lang)
    check_nstring(loc)


def check_body(node: object, extended: bool) -> None:
    """The RFC 3501 body / body-type-1part / body-type-mpart shape, recursively."""
    assert isinstance(node, list) and node
    if isinstance(node[0], list):
        index = 0
        while isinstance(node[index], list):
            check_body(node[index], extended)
            index += 1
        assert isinstance(node[index], bytes)
        rest = node[index + 1 :]
        if extended:
            assert len(rest) == 4
            check_params(rest[0])
            check_extensions(rest[1:])
        else:
            assert rest == []
        return
    ctype, subtype, params, cid, desc, encoding, size = node[:7]
    assert isinstance(ctype, bytes) and isinstance(subtype, bytes) and isinstance(encoding, bytes)
    check_params(params)
    check_nstring(cid)
    check_nstring(desc)
    assert isinstance(size, int)
    rest = node[7:]
    if ctype.upper() == b"MESSAGE" and subtype.upper() == b"RFC822":
        check_envelope(rest[0])
        check_body(rest[1], extended)
        assert isinstance(rest[2], int)
        rest = rest[3:]
    elif ctype.upper() == b"TEXT":
        assert isinstance(rest[0], int)
        rest = rest[1:]
    if extended:
        assert len(rest) == 4
        check_nstring(rest[0])
        check_extensions(rest[1:])
    else:
        assert rest == []


def imaplib_records(data: bytes) -> list[bytes | tuple[bytes, bytes]]:
    """Cut a response with literals into the records imaplib hands to IMAPClient."""
    records: list[bytes | tuple[bytes, bytes]] = []
    start = 0
    while (m := _LITERAL.search(data, start)) is not None:
        size = int(m.group(1))
        records.append((data[start : m.start()] + b"{%d}" % size, data[m.end() : m.end() + size]))
        start = m.end() + size
    records.append(data[start:])
    return records


# --- the corpus ----------------------------------------------------------------------------------

ALICE = b'(("Alice Example" NIL "alice" "example.net"))'
EXPECTED_ENVELOPE = {
    "bad_boundary.eml": b'("Tue, 5 Mar 2024 01:02:03 +0000" "Bad boundary" '
    + b'((NIL NIL "bad" "example.com")) ' * 3
    + b"NIL NIL NIL NIL NIL)",
    "base64_rfc2231.eml": b'("Wed, 31 Jan 2024 08:00:00 +0100" "Attachment with RFC 2231 name" '
    + b'((NIL NIL "sender" "example.com")) ' * 3
    + b'((NIL NIL "receiver" "example.com")) NIL NIL NIL NIL)',
    "digest.eml": b'("Tue, 5 Mar 2024 01:02:03 +0000" "Digest" '
    + b'((NIL NIL "digest" "example.com")) ' * 3
    + b"NIL NIL NIL NIL NIL)",
    # duplicate fields: the first one counts
    "duplicate_headers.eml": b'("Tue, 5 Mar 2024 01:02:03 +0000" "First subject" '
    + b'((NIL NIL "first" "example.com")) ' * 3
    + b"NIL NIL NIL NIL NIL)",
    # 8-bit header bytes pass through in literals; a quoted string never carries them
    "eightbit_headers.eml": b'("Fri, 6 Sep 2024 07:08:09 +0200" '
    b'{28}\r\nGr\xc3\xbc\xc3\x9fe "quoted" \\ backslash '
    + b'(({11}\r\nJos\xe9 Garc\xeda NIL "jose" "example.es")) ' * 3
    + b'(({7}\r\nM\xc3\xbcller NIL "mueller" "example.de")) NIL NIL NIL NIL)',
    "empty_body.eml": b'("Tue, 5 Mar 2024 01:02:03 +0000" "Empty body" '
    + b'((NIL NIL "empty" "example.com")) ' * 3
    + b"NIL NIL NIL NIL NIL)",
    # encoded words are passed through undecoded, also inside a quoted display name
    "encoded_words.eml": b'("Sun, 1 Dec 2024 10:00:00 +0100" '
    b'"=?utf-8?q?Gr=C3=BC=C3=9Fe?= aus =?ISO-8859-1?B?S/Zsbg==?=" '
    + b'(("=?utf-8?b?SsO8cmdlbg==?=" NIL "juergen" "example.de")) ' * 3
    + b'(("=?utf-8?q?Ren=C3=A9e?=" NIL "renee" "example.fr")) NIL NIL NIL NIL)',
    # empty Sender defaults to From; groups; a source route; a comment as name; no domain
    "groups.eml": b'("Thu, 13 Feb 1969 23:32:54 -0330" "Groups" '
    b'(("Boss" NIL "boss" "example.com")) (("Boss" NIL "boss" "example.com")) '
    b'(("Smith, John" NIL "john.smith" "example.com")) '
    b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) '
    b'((NIL NIL "Team" NIL)("Ann A." NIL "ann" "example.com")("Bob B" NIL "bob" "example.com")'
    b'(NIL NIL NIL NIL)("Carol" "@relay.example,@hop.example" "carol" "example.com")) '
    b'((NIL NIL "localonly" "MISSING_DOMAIN")) NIL NIL)',
    "header_only.eml": b'("Tue, 5 Mar 2024 01:02:03 +0000" "Header only" '
    + b'((NIL NIL "hdr" "example.com")) ' * 3
    + b"NIL NIL NIL NIL NIL)",
    # unfolding removes CRLF only: the tab and the two spaces stay
    "long_folded.eml": b'("Tue, 5 Mar 2024 01:02:03 +0000" "This subject is deliberately very '
    b"long so that it has to be folded\tacross several lines by the sending agent, with a tab "
    b'and  two spaces on the continuation lines" '
    + b'((NIL NIL "folder" "example.com")) ' * 3
    + b"("
    + b"".join(b'("Person %d" NIL "person%d" "example.com")' % (i, i) for i in range(1, 31))
    + b') NIL NIL NIL "<very-long-message-id-0123456789abcdef@folded.example.com>")',
    # an mbox "From " line is no From: field; "Subject :" (obs WSP before colon) is one
    "mbox_junk.eml": b'(NIL "spaced colon" NIL NIL NIL NIL NIL NIL NIL NIL)',
    "missing_close.eml": b'("Tue, 5 Mar 2024 01:02:03 +0000" "Missing closing boundary" '
    + b'((NIL NIL "noclose" "example.com")) ' * 3
    + b"NIL NIL NIL NIL NIL)",
    "nested_multipart.eml": b'("Mon, 7 Feb 1994 21:52:25 -0800" "Nested parts" '
    + (ALICE + b" ") * 3
    + b'(("Bob" NIL "bob" "example.org")) NIL NIL NIL "<nested@example.net>")',
    "no_content_type.eml": b'("Fri, 21 Nov 97 09:55:06 GMT" "Plain old RFC 822" '
    + b'((NIL NIL "old" "example.edu")) ' * 3
    + b'((NIL NIL "someone" "example.org")) NIL NIL NIL NIL)',
    "no_final_newline.eml": b'("Tue, 5 Mar 2024 01:02:03 +0000" "No final newline" '
    + b'((NIL NIL "nonl" "example.com")) ' * 3
    + b"NIL NIL NIL NIL NIL)",
    "quoted_printable.eml": b'("Sat, 29 Feb 2020 12:00:00 +0100" "QP body" '
    + b'((NIL NIL "qp" "example.com")) ' * 3
    + b'((NIL NIL "reader" "example.com")) NIL NIL NIL NIL)',
    "rfc822_attached.eml": b'("Tue, 02 Jan 2024 09:00:00 +0000" "Fwd: original" '
    + b'(("Forwarder" NIL "fwd" "example.com")) ' * 3
    + b'((NIL NIL "list" "example.com")) NIL NIL NIL "<outer@example.com>")',
    "threading.eml": b'("Mon, 15 Jul 2024 18:30:00 -0700" "Re: thread" '
    b'(("Replier" NIL "re" "example.net")) (("Mailing List" NIL "list-bounces" "example.net")) '
    b'((NIL NIL "list" "example.net")) ((NIL NIL "list" "example.net")) NIL NIL '
    b'"<reply-1@example.net>" "<reply-2@example.net>")',
}

ASCII = b'("charset" "us-ascii")'
EXT0 = b" NIL NIL NIL NIL"  # md5, disposition, language, location all absent


def _text(subtype: bytes, params: bytes, enc: bytes, size: int, lines: int) -> bytes:
    return b'("TEXT" "%s" %s NIL NIL "%s" %d %d' % (subtype, params, enc, size, lines) + EXT0 + b")"


EXPECTED_BODYSTRUCTURE = {
    # the boundary never occurs: one empty text/plain part, as a multipart needs a part
    "bad_boundary.eml": b"("
    + _text(b"PLAIN", ASCII, b"7BIT", 0, 0)
    + b' "MIXED" ("boundary" "declared") NIL NIL NIL)',
    # RFC 2231: name*= in ISO-8859-1 and filename*0*..*2 in UTF-8, given as one UTF-8 value
    "base64_rfc2231.eml": b"("
    + _text(b"PLAIN", b'("charset" "UTF-8")', b"BASE64", 32, 0)
    + b'("APPLICATION" "OCTET-STREAM" ("name" {12}\r\nr\xc3\xa9sum\xc3\xa9.txt) NIL NIL "BASE64" '
    b'16 NIL ("attachment" ("filename" {22}\r\n\xe2\x82\xac rates for 2024.txt)) NIL NIL)'
    b' "MIXED" ("boundary" "----=_Part_0_123.456") NIL NIL NIL)',
    # in a digest a part without Content-Type is message/rfc822 (RFC 2046 5.1.5)
    "digest.eml": b'(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 60 (NIL "first digest entry" '
    + b'((NIL NIL "one" "example.com")) ' * 3
    + b"NIL NIL NIL NIL NIL) "
    + _text(b"PLAIN", ASCII, b"7BIT", 6, 1)
    + b" 4"
    + EXT0
    + b")"
    + _text(b"PLAIN", ASCII, b"7BIT", 16, 1)
    + b' "DIGEST" ("boundary" "d") NIL NIL NIL)',
    "duplicate_headers.eml": _text(b"PLAIN", b'("charset" "utf-8")', b"7BIT", 5, 1),
    "eightbit_headers.eml": _text(b"PLAIN", b'("charset" "iso-8859-1")', b"8BIT", 7, 1),
    "empty_body.eml": _text(b"PLAIN", ASCII, b"7BIT", 0, 0),
    "encoded_words.eml": _text(b"PLAIN", b'("charset" "utf-8")', b"8BIT", 10, 1),
    "groups.eml": _text(b"PLAIN", ASCII, b"7BIT", 7, 1),
    "header_only.eml": _text(b"PLAIN", ASCII, b"7BIT", 0, 0),
    "long_folded.eml": _text(b"PLAIN", ASCII, b"7BIT", 9, 1),
    # a comment after a parameter is dropped; an invalid transfer encoding is 7BIT
    "mbox_junk.eml": _text(b"PLAIN", b'("charset" "us-ascii" "format" "flowed")', b"7BIT", 6, 1),
    # without the close delimiter the last part runs to the end of the message
    "missing_close.eml": b"("
    + _text(b"PLAIN", ASCII, b"7BIT", 5, 0)
    + _text(b"HTML", ASCII, b"7BIT", 32, 2)
    + b' "ALTERNATIVE" ("boundary" "b1") NIL NIL NIL)',
    "nested_multipart.eml": b"(("
    + _text(b"PLAIN", ASCII, b"7BIT", 16, 1)
    + b"("
    + _text(b"HTML", b'("charset" "utf-8")', b"7BIT", 46, 1)
    + b'("IMAGE" "PNG" NIL "<logo@example.net>" NIL "BASE64" 12 NIL ("inline" NIL) NIL NIL)'
    b' "RELATED" ("boundary" "rel" "type" "text/html") NIL NIL NIL)'
    b' "ALTERNATIVE" ("boundary" "alt") NIL NIL NIL)'
    b'("APPLICATION" "PDF" ("name" "report.pdf") NIL "The report" "BASE64" 12 '
    b'"Q2hlY2sgSW50ZWdyaXR5IQ==" ("attachment" ("filename" "report.pdf")) ("en" "de") '
    b'"http://example.net/report.pdf") "MIXED" ("boundary" "outer") NIL NIL NIL)',
    "no_content_type.eml": _text(b"PLAIN", ASCII, b"7BIT", 39, 2),
    "no_final_newline.eml": _text(b"PLAIN", ASCII, b"7BIT", 18, 1),
    "quoted_printable.eml": _text(b"PLAIN", b'("charset" "utf-8")', b"QUOTED-PRINTABLE", 51, 2),
    "rfc822_attached.eml": b"("
    + _text(b"PLAIN", ASCII, b"7BIT", 15, 1)
    + b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 386 ("Mon, 01 Jan 2024 23:59:59 -0500" "original" '
    + b'(("Original Sender" NIL "orig" "example.org")) ' * 3
    + b'((NIL NIL "fwd" "example.com")) NIL NIL NIL "<inner@example.org>") ('
    + _text(b"PLAIN", b'("charset" "utf-8")', b"7BIT", 12, 0)
    + _text(b"HTML", b'("charset" "utf-8")', b"7BIT", 18, 0)
    + b' "ALTERNATIVE" ("boundary" "inner-b") NIL NIL NIL) 17 NIL ("inline" NIL) NIL NIL)'
    b' "MIXED" ("boundary" "XYZ") NIL NIL NIL)',
    "threading.eml": _text(b"PLAIN", ASCII, b"7BIT", 17, 1),
}


def test_corpus_is_complete() -> None:
    assert len(NAMES) >= 12
    assert set(NAMES) == set(EXPECTED_ENVELOPE) == set(EXPECTED_BODYSTRUCTURE)


@pytest.mark.parametrize("name", NAMES)
def test_envelope(name: str) -> None:
    assert view(name).envelope() == EXPECTED_ENVELOPE[name]


@pytest.mark.parametrize("name", NAMES)
def test_bodystructure(name: str) -> None:
    assert view(name).bodystructure() == EXPECTED_BODYSTRUCTURE[name]


def test_body_has_no_extension_data() -> None:
    assert view("rfc822_attached.eml").body() == (
        b'(("TEXT" "PLAIN" ("charset" "us-ascii") NIL NIL "7BIT" 15 1)'
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 386 ("Mon, 01 Jan 2024 23:59:59 -0500" "original" '
        + b'(("Original Sender" NIL "orig" "example.org")) '
        * 3
        + b'((NIL NIL "fwd" "example.com")) NIL NIL NIL "<inner@example.org>") '
        b'(("TEXT" "PLAIN" ("charset" "utf-8") NIL NIL "7BIT" 12 0)'
        b'("TEXT" "HTML" ("charset" "utf-8") NIL NIL "7BIT" 18 0) "ALTERNATIVE") 17) "MIXED")'
    )
    assert view("no_content_type.eml").body() == (
        b'("TEXT" "PLAIN" ("charset" "us-ascii") NIL NIL "7BIT" 39 2)'
    )


@pytest.mark.parametrize("name", NAMES)
def test_output_follows_the_grammar(name: str) -> None:
    message = view(name)
    check_envelope(parse_imap(message.envelope()))
    check_body(parse_imap(message.bodystructure()), extended=True)
    check_body(parse_imap(message.body()), extended=False)


@pytest.mark.parametrize("name", NAMES)
def test_imapclient_reads_the_output(name: str) -> None:
    message = view(name)
    data = (
        b"7 (ENVELOPE "
        + message.envelope()
        + b" BODY "
        + message.body()
        + b" BODYSTRUCTURE "
        + message.bodystructure()
        + b")"
    )
    parsed = parse_fetch_response(imaplib_records(data))[7]
    subject = message.header_values("Subject")
    assert (parsed[b"ENVELOPE"].subject is None) == (not subject)
    multipart = message.bodystructure().startswith(b"((")
    assert parsed[b"BODYSTRUCTURE"].is_multipart == multipart
    assert parsed[b"BODY"].is_multipart == multipart


def test_envelope_reads_only_the_header() -> None:
    message = view("nested_multipart.eml")
    message.envelope()
    assert message.root._ctype is None and message.root._children is None
    assert message.envelope() is message.envelope()  # computed once


# --- BODY[section] (RFC 3501 6.4.5) --------------------------------------------------------------

NESTED_ALT = (
    b"--alt\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nPlain version.\r\n\r\n"
    b'--alt\r\nContent-Type: multipart/related; boundary="rel"; type="text/html"\r\n\r\n'
    b"--rel\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
    b'<p>HTML <img src="cid:logo@example.net"></p>\r\n\r\n'
    b"--rel\r\nContent-Type: image/png\r\nContent-ID: <logo@example.net>\r\n"
    b"Content-Transfer-Encoding: base64\r\nContent-Disposition: inline\r\n\r\n"
    b"iVBORw0KGgo=\r\n--rel--\r\n\r\n--alt--\r\n"
)
INNER_HEADER = (
    b"From: Original Sender <orig@example.org>\r\nTo: fwd@example.com\r\nSubject: original\r\n"
    b"Date: Mon, 01 Jan 2024 23:59:59 -0500\r\nMessage-ID: <inner@example.org>\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="inner-b"\r\n\r\n'
)
INNER_TEXT = (
    b"--inner-b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nInner plain.\r\n"
    b"--inner-b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<b>Inner html.</b>\r\n"
    b"--inner-b--\r\n"
)
SUBJECT_FOLDED = (
    b"Subject: This subject is deliberately very long so that it has to be folded\r\n"
    b"\tacross several lines by the sending agent, with a tab and\r\n"
    b"  two spaces on the continuation lines\r\n"
)

# fmt: off
SECTIONS = [
    # (message, parts, text, fields, expected)
    ("nested_multipart.eml", (1,), "", (), NESTED_ALT),
    ("nested_multipart.eml", (1,), "MIME",
     (), b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'),
    ("nested_multipart.eml", (1, 1), "", (), b"Plain version.\r\n"),
    ("nested_multipart.eml", (1, 1), "MIME", (),
     b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"),
    ("nested_multipart.eml", (1, 2, 1), "", (),
     b'<p>HTML <img src="cid:logo@example.net"></p>\r\n'),
    ("nested_multipart.eml", (1, 2, 2), "", (), b"iVBORw0KGgo="),
    ("nested_multipart.eml", (2,), "", (), b"JVBERi0xLjQK"),
    ("nested_multipart.eml", (3,), "", (), None),
    ("nested_multipart.eml", (0,), "", (), None),
    ("nested_multipart.eml", (1, 3), "", (), None),
    ("nested_multipart.eml", (1, 1, 1), "", (), None),
    ("nested_multipart.eml", (2,), "HEADER", (), None),  # not a message/rfc822 part
    ("nested_multipart.eml", (2,), "TEXT", (), None),
    ("nested_multipart.eml", (), "MIME", (), None),  # MIME needs a part number
    ("rfc822_attached.eml", (2,), "", (), INNER_HEADER + INNER_TEXT),
    ("rfc822_attached.eml", (2,), "HEADER", (), INNER_HEADER),
    ("rfc822_attached.eml", (2,), "TEXT", (), INNER_TEXT),
    ("rfc822_attached.eml", (2,), "MIME", (),
     b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"),
    ("rfc822_attached.eml", (2,), "HEADER.FIELDS", ("SUBJECT", "FROM"),
     b"From: Original Sender <orig@example.org>\r\nSubject: original\r\n\r\n"),
    ("rfc822_attached.eml", (2,), "HEADER.FIELDS.NOT",
     ("FROM", "TO", "DATE", "MESSAGE-ID", "MIME-VERSION", "CONTENT-TYPE"),
     b"Subject: original\r\n\r\n"),
    ("rfc822_attached.eml", (2, 1), "", (), b"Inner plain."),
    ("rfc822_attached.eml", (2, 2), "", (), b"<b>Inner html.</b>"),
    ("rfc822_attached.eml", (2, 2), "MIME", (), b"Content-Type: text/html; charset=utf-8\r\n\r\n"),
    ("rfc822_attached.eml", (2, 3), "", (), None),
    ("rfc822_attached.eml", (1,), "", (), b"See attached.\r\n"),
    # a message that is not multipart has only part 1: its body; 1.MIME is its header
    ("no_content_type.eml", (1,), "", (), b"No MIME headers at all.\r\nSecond line.\r\n"),
    ("no_content_type.eml", (1,), "MIME", (), load("no_content_type.eml")[:-39]),
    ("no_content_type.eml", (1,), "HEADER", (), None),
    ("no_content_type.eml", (2,), "", (), None),
    ("no_content_type.eml", (1, 1), "", (), None),
    ("no_content_type.eml", (), "HEADER.FIELDS", ("SUBJECT", "X-NOT-THERE"),
     b"Subject: Plain old RFC 822\r\n\r\n"),
    ("no_content_type.eml", (), "HEADER.FIELDS", ("X-NOT-THERE",), b"\r\n"),
    # no blank line in the message, so none in header fetches (RFC 3501 6.4.5)
    ("header_only.eml", (), "HEADER", (), load("header_only.eml")),
    ("header_only.eml", (), "HEADER.FIELDS", ("SUBJECT",), b"Subject: Header only\r\n"),
    ("header_only.eml", (), "TEXT", (), b""),
    ("header_only.eml", (1,), "", (), b""),
    ("empty_body.eml", (), "TEXT", (), b""),
    ("empty_body.eml", (), "HEADER.FIELDS.NOT", ("FROM", "DATE"), b"Subject: Empty body\r\n\r\n"),
    ("no_final_newline.eml", (), "TEXT", (), b"line one\r\nline two"),
    ("no_final_newline.eml", (1,), "", (), b"line one\r\nline two"),
    ("long_folded.eml", (), "HEADER.FIELDS", ("SUBJECT",), SUBJECT_FOLDED + b"\r\n"),
    ("duplicate_headers.eml", (), "HEADER.FIELDS", ("SUBJECT",),
     b"Subject: First subject\r\nSubject: Second subject\r\n\r\n"),
    ("mbox_junk.eml", (), "HEADER.FIELDS.NOT", ("SUBJECT", "CONTENT-TYPE", "X-EMPTY"),
     b"From someone@example.com Mon Jan  1 00:00:00 2024\r\nthis line is not a header\r\n"
     b"Content-Transfer-Encoding: ?invalid\r\n\r\n"),
    ("mbox_junk.eml", (), "HEADER.FIELDS", ("SUBJECT",), b"Subject : spaced colon\r\n\r\n"),
    ("digest.eml", (1,), "HEADER", (),
     b"From: one@example.com\r\nSubject: first digest entry\r\n\r\n"),
    ("digest.eml", (1,), "MIME", (), b"\r\n"),  # an empty MIME header is just the blank line
    ("digest.eml", (1, 1), "", (), b"One.\r\n"),
    ("digest.eml", (2,), "", (), b"Not a message.\r\n"),
    ("bad_boundary.eml", (1,), "", (), b""),  # the empty stand-in part
    ("missing_close.eml", (2,), "", (), b"<i>second</i>\r\nruns to the end\r\n"),
    ("base64_rfc2231.eml", (1,), "", (), b"SGlkZGVuIHRyZWFzdXJlIGluc2lkZS4K"),
]
# fmt: on


@pytest.mark.parametrize(("name", "parts", "text", "fields", "expected"), SECTIONS)
def test_section(
    name: str, parts: tuple[int, ...], text: str, fields: tuple[str, ...], expected: bytes | None
) -> None:
    assert view(name).section(parts, text, fields) == expected


@pytest.mark.parametrize("name", NAMES)
def test_whole_message_header_and_text(name: str) -> None:
    raw = load(name)
    message = MessageView(raw)
    assert message.section((), "", ()) == raw
    assert message.header_bytes() + message.text_bytes() == raw
    assert message.section((), "HEADER", ()) == message.header_bytes()
    assert message.section((), "TEXT", ()) == message.text_bytes()


def test_header_split_variants() -> None:
    assert split_header(b"A: b\r\n\r\nbody", 0, 12) == (8, True)
    assert split_header(b"\r\nbody", 0, 6) == (2, True)  # no header at all
    assert split_header(b"A: b\r\n", 0, 6) == (6, False)
    assert split_header(b"A: b\n\nbody", 0, 10) == (6, True)  # bare LF is tolerated
    assert split_header(b"", 0, 0) == (0, False)


def test_bare_lf_message_still_parses() -> None:
    message = MessageView(b"Subject: lf\nContent-Type: text/plain\n\nbody\n")
    assert message.header_values("subject") == ["lf"]
    assert message.section((), "HEADER.FIELDS", ("SUBJECT",)) == b"Subject: lf\r\n\r\n"
    assert message.text_bytes() == b"body\n"


# --- multipart details (RFC 2046 5.1.1) ----------------------------------------------------------


def test_boundary_that_prefixes_another_does_not_cut_it() -> None:
    raw = (
        b'Content-Type: multipart/mixed; boundary="abc"\r\n\r\n--abc\r\n'
        b'Content-Type: multipart/alternative; boundary="abcd"\r\n\r\n'
        b"--abcd\r\n\r\none\r\n--abcd\r\n\r\ntwo\r\n--abcd--\r\n--abc--\r\n"
    )
    message = MessageView(raw)
    assert message.section((1, 1), "", ()) == b"one"
    assert message.section((1, 2), "", ()) == b"two"
    assert message.section((2,), "", ()) is None


def test_boundary_transport_padding_and_close_suffix() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\npreamble\r\n--b \t\r\n\r\nx\r\n"
        b"--b-- trailing words\r\n--b\r\n\r\nepilogue is no part\r\n"
    )
    message = MessageView(raw)
    assert message.section((1,), "", ()) == b"x"
    assert message.section((2,), "", ()) is None


def test_find_parts_spans() -> None:
    buf = b"X\r\n--b\r\n\r\nA\r\n--b\r\n--b--\r\n"
    # part 1 is "\r\nA" (an empty header, then "A"); part 2 is empty
    assert find_parts(buf, 3, len(buf), "b") == [(8, 11), (18, 18)]
    assert find_parts(buf, 3, len(buf), "zz") == []


def test_multipart_without_boundary_gets_an_empty_part() -> None:
    message = MessageView(b"Content-Type: multipart/mixed\r\n\r\nno parts\r\n")
    assert message.bodystructure() == (
        b'(("TEXT" "PLAIN" ("charset" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)'
        b' "MIXED" NIL NIL NIL NIL)'
    )
    assert message.section((1,), "", ()) == b""


def test_deep_nesting_is_cut_off_without_recursion_errors() -> None:
    raw = b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    for level in range(400):
        if level % 2:
            raw = b"Content-Type: message/rfc822\r\n\r\n" + raw
        else:
            head = b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % level
            raw = head + b"--b%d\r\n" % level + raw + b"\r\n--b%d--\r\n" % level
    message = MessageView(raw)
    structure = parse_imap(message.bodystructure())
    check_body(structure, extended=True)
    assert message.bodystructure().count(b'"OCTET-STREAM"') == 1
    assert message.section((1,) * (MAX_DEPTH // 2), "", ()) is not None
    assert message.section((1,) * 300, "", ()) is None
    assert message.body_contains("leaf") is False  # below the cut: not searched


# --- Content-* values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ("TEXT", "PLAIN", (("charset", "us-ascii"),))),
        ("text", ("TEXT", "PLAIN", (("charset", "us-ascii"),))),  # invalid: the default
        ("Text/HTML", ("TEXT", "HTML", (("charset", "us-ascii"),))),
        ("text/plain; CHARSET=UTF-8", ("TEXT", "PLAIN", (("charset", "UTF-8"),))),
        ("image/png;", ("IMAGE", "PNG", ())),
        (
            '(comment) application / pdf ; name = "a;b.pdf" ; x',
            ("APPLICATION", "PDF", (("name", "a;b.pdf"),)),
        ),
        ('multipart/mixed; boundary="a\\"b"', ("MULTIPART", "MIXED", (("boundary", 'a"b'),))),
        ('x/y; a="unclosed', ("X", "Y", (("a", "unclosed"),))),
    ],
)
def test_content_type(value: str | None, expected: tuple[object, ...]) -> None:
    assert tuple(parse_content_type(value, in_digest=False)) == expected


def test_content_type_default_in_digest() -> None:
    assert tuple(parse_content_type(None, in_digest=True)) == ("MESSAGE", "RFC822", ())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("; a=1; b=2", [("a", "1"), ("b", "2")]),
        ("; A=1; a=2", [("a", "1")]),  # the first one counts
        (
            "; title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A",
            [("title", "This is ***fun***")],
        ),
        (
            "; title*0*=us-ascii'en'This%20is%20even%20more%20; title*1*=%2A%2A%2Afun%2A%2A%2A%20;"
            ' title*2="isn\'t it!"',
            [("title", "This is even more ***fun*** isn't it!")],
        ),
        ("; n*1=b; n*0=a", [("n", "ab")]),  # sections in any order
        ("; name=plain; name*=utf-8''ext", [("name", "ext")]),
        ("; f*=utf-8''%E2%82%AC", [("f", "\xe2\x82\xac")]),  # UTF-8 octets of the euro sign
        ("; f*=x-unknown''%FF", [("f", "\xff")]),  # unknown charset: the octets as they are
        ("; f*=utf-8''%zz%", [("f", "%zz%")]),
        (";;;; =x; y; z=", [("z", "")]),
    ],
)
def test_params_and_rfc2231(text: str, expected: list[tuple[str, str]]) -> None:
    assert parse_params(text) == expected


def test_disposition_language_and_location_extensions() -> None:
    raw = (
        b"Content-Type: text/plain\r\nContent-Disposition: INLINE; filename=a.txt\r\n"
        b"Content-Language: fr\r\nContent-Location: a.txt\r\nContent-Description: d\r\n"
        b"Content-ID: <id@x>\r\n\r\nx"
    )
    assert MessageView(raw).bodystructure() == (
        b'("TEXT" "PLAIN" ("charset" "us-ascii") "<id@x>" "d" "7BIT" 1 0 NIL'
        b' ("INLINE" ("filename" "a.txt")) "fr" "a.txt")'
    )


# --- addresses (RFC 5322 3.4) and IMAP strings ---------------------------------------------------

A = env.Address
# fmt: off
ADDRESSES = [
    ("", []),
    ("a@b", [A(None, None, "a", "b")]),
    ("Mary Smith <mary@x.test>", [A("Mary Smith", None, "mary", "x.test")]),
    ('"Joe Q. Public" <john.q.public@example.com>',
     [A("Joe Q. Public", None, "john.q.public", "example.com")]),
    ("Joe Q. Public <jqp@example.com>", [A("Joe Q. Public", None, "jqp", "example.com")]),
    ('"Giant; \\"Big\\" Box" <sys@example.net>',
     [A('Giant; "Big" Box', None, "sys", "example.net")]),
    ("<boss@nil.test>", [A(None, None, "boss", "nil.test")]),
    ("jdoe@example.org (John Doe)", [A("John Doe", None, "jdoe", "example.org")]),
    ("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
     [A("Pete", None, "pete", "silly.test")]),
    ('"john doe"@example.com', [A(None, None, "john doe", "example.com")]),
    ("john . doe @ example . com", [A(None, None, "john.doe", "example.com")]),
    ("x@[192.0.2.1]", [A(None, None, "x", "[192.0.2.1]")]),
    ("<@a.test,@b.test:joe@c.test>", [A(None, "@a.test,@b.test", "joe", "c.test")]),
    ("A Group:Ed <c@a.test>,joe@where.test;",
     [A(None, None, "A Group", None), A("Ed", None, "c", "a.test"),
      A(None, None, "joe", "where.test"), env.GROUP_END]),
    ("Empty:;", [A(None, None, "Empty", None), env.GROUP_END]),
    ("Open: a@b", [A(None, None, "Open", None), A(None, None, "a", "b"), env.GROUP_END]),
    ("a@b,, ,c@d", [A(None, None, "a", "b"), A(None, None, "c", "d")]),
    ("<>", [A(None, None, env.MISSING_MAILBOX, env.MISSING_DOMAIN)]),
    ("Name <unclosed@x", [A("Name", None, "unclosed", "x")]),
    ("=?utf-8?q?a,b?= <e@x>", [A("=?utf-8?q?a,b?=", None, "e", "x")]),
    ("(only a comment)", []),
]
# fmt: on
# What address lists are made of, everyday and not: the fast paths must agree with the parser
# on any list of them.
ADDRESS_WORDS = ["a", "Doe", "J\xe9r", "=?utf-8?q?J=C3=B6rg?=", "MISSING_MAILBOX", "x.test", "(c)"]
ADDRESS_FORMS = ["{n} <{l}@{d}>", '"{n}" <{l}@{d}>', "<{l}@{d}>", "{l}@{d}", "{l}@{d} ({n})"]
ADDRESS_GLUE = [",", ", ", ",\t", " , ", ";", " ", ":", "\\", '"', "<", "@", "\r\n "]


def render_address(form: str, name: list[str], local: str, domain: str) -> str:
    return form.format(n=" ".join(name), l=local, d=domain)


ADDRESS = st.builds(
    render_address,
    st.sampled_from(ADDRESS_FORMS),
    st.lists(st.sampled_from(ADDRESS_WORDS), max_size=3),
    st.sampled_from(ADDRESS_WORDS),
    st.sampled_from(ADDRESS_WORDS),
)
ADDRESS_LIST = st.lists(st.one_of(ADDRESS, st.sampled_from(ADDRESS_GLUE)), max_size=8).map("".join)


@pytest.mark.parametrize(("value", "expected"), ADDRESSES)
def test_parse_addresses(value: str, expected: list[env.Address]) -> None:
    assert env.parse_addresses(value) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("John Doe <jd@x>", '"John Doe" <jd@x>'),
        ("jd@x (John Doe)", '"John Doe" <jd@x>'),
        ("John  Doe\r\n <jd@x>", '"John Doe" <jd@x>'),
        ("Bee <b@x>, c@d", "Bee <b@x>, <c@d>"),
        ('"J\\"o" <j@x>', '"J\\"o" <j@x>'),
        ("=?utf-8?q?J=C3=B6rg?= M <j@x>", "=?utf-8?q?J=C3=B6rg?= M <j@x>"),
        ("Mary (the boss) Smith <m@x> (comment)", '"Mary Smith" <m@x>'),
        ("friends: a@x, Bee <b@x>;, z@y", "friends: <a@x>, Bee <b@x>;, <z@y>"),
        ("undisclosed-recipients:;", "undisclosed-recipients:;"),
        ("Open: a@b", "Open: <a@b>;"),
        ("<@r.x,@s.x:a@b>", "<@r.x,@s.x:a@b>"),
        ("< sp @ x >", "<sp@x>"),
        ("<>", "<>"),
        ('"Only"', "<Only@>"),
        ("", ""),
    ],
)
def test_addresses_text(value: str, text: str) -> None:
    """The canonical form SEARCH FROM/TO/CC/BCC matches besides the field as written."""
    assert env.addresses_text(env.parse_addresses(value)) == text


LIST_TEXTS = [
    *(value for value, _addresses in ADDRESSES),
    "John Doe <jd@x>",
    "jd@x (John Doe)",
    "jd@x ( John Doe\t)",
    "jd@x ()",
    "Bee <b@x>, c@d",
    '"J o" <j@x>, "" <e@x>,\t"Solo" <s@x>',
    "=?utf-8?q?J=C3=B6rg?= M <j@x>",
    "=?utf-8?q?a?= =?utf-8?q?b?= <ab@x>, plain@y",
    "Name.With.Dots <d@x>",
    "a@b.c (x) , d@e",
    "MISSING_MAILBOX@x",
    "Someone <a@MISSING_DOMAIN>",
    "J\xe9r\xf4me <j@x>",
    " a@b ",
    "\ta@b,\tc@d",
]


@pytest.mark.parametrize("value", LIST_TEXTS)
def test_list_text_agrees_with_the_parser(value: str) -> None:
    """The fast path of the canonical form writes what the parser's addresses would."""
    assert env.list_text(value) == env.addresses_text(env.parse_addresses(value))


@given(ADDRESS_LIST)
def test_list_text_agrees_with_the_parser_on_anything(value: str) -> None:
    assert env.list_text(value) == env.addresses_text(env.parse_addresses(value))
    assert env.addresses(value) == env.address_list(env.parse_addresses(value))


@pytest.mark.parametrize(
    "value",
    [
        "a@b",
        "a.b@c.d",
        "Mary Smith <mary@x.test>",
        "Mary   Smith<mary@x.test>",
        '"Quoted, Name" <q@x.test>',
        '"" <q@x.test>',
        "a@b, C D <c@d>,e@f",
        "J\xe9r\xf4me <j@x>",
        "=?utf-8?q?Andr=C3=A9?= <a@x>",
        " a@b ",
        "\ta@b,\tc@d",
    ],
)
def test_fast_path_agrees_with_the_tokenizer(value: str) -> None:
    assert env._SIMPLE_LIST.fullmatch(value)
    assert env.parse_addresses(value) == env.parse_address_tokens(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", b'"plain"'),
        ("", b'""'),
        ('say "hi" \\o/', b'"say \\"hi\\" \\\\o/"'),
        ("tab\there", b'"tab\there"'),
        ("caf\xc3\xa9", b"{5}\r\ncaf\xc3\xa9"),
        ("line\r\nbreak", b"{11}\r\nline\r\nbreak"),
        ("nul\x00dropped", b'"nuldropped"'),
    ],
)
def test_imap_string(text: str, expected: bytes) -> None:
    assert env.imap_string(text) == expected


def test_envelope_empty_and_absent_fields() -> None:
    raw = b"Subject:\r\nDate: \r\nFrom: a@b\r\nReply-To: (nobody)\r\nTo:\r\n\r\n"
    assert MessageView(raw).envelope() == (
        b'("" "" ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) NIL NIL NIL NIL NIL)'
    )
    assert MessageView(b"").envelope() == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


# --- SEARCH helpers (RFC 3501 6.4.4) -------------------------------------------------------------


def test_header_values_are_unfolded_and_decoded() -> None:
    message = view("encoded_words.eml")
    assert message.header_values("Subject") == ["Grüße aus Köln"]
    assert message.header_values("FROM") == ["Jürgen <juergen@example.de>"]
    assert message.header_values("x-absent") == []
    assert message.header_values("") == []
    assert view("duplicate_headers.eml").header_values("subject") == [
        "First subject",
        "Second subject",
    ]
    assert view("long_folded.eml").header_values("Message-ID") == [
        "<very-long-message-id-0123456789abcdef@folded.example.com>"
    ]
    assert view("mbox_junk.eml").header_values("X-Empty") == [""]
    # raw 8-bit: UTF-8 where it decodes, else windows-1252
    eightbit = view("eightbit_headers.eml")
    assert eightbit.header_values("From") == ["José García <jose@example.es>"]
    assert eightbit.header_values("To") == ['"Müller" <mueller@example.de>']


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),  # whitespace between encoded words goes
        ("=?utf-8?q?a?= x =?utf-8?q?b?=", "a x b"),
        ("=?utf-8?b?w6k=?=", "é"),
        ("=?utf-8?q?=C3?= =?utf-8?q?=A9?=", "é"),  # a character split over two words
        ("=?utf-8*en?q?hi?=", "hi"),  # RFC 2231 language suffix
        ("=?x-nonsense?q?ok?=", "ok"),
        ("=?utf-8?b?!!!?=", ""),
        ("=?idna?q?=FF=FF?=", "\ufffd\ufffd"),
        ("no words", "no words"),
    ],
)
def test_header_text(value: str, expected: str) -> None:
    assert header_text(value) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("groups.eml", datetime.date(1969, 2, 13)),
        ("no_content_type.eml", datetime.date(1997, 11, 21)),  # two-digit year
        ("threading.eml", datetime.date(2024, 7, 15)),  # in its own zone, not UTC's 16th
        ("mbox_junk.eml", None),
    ],
)
def test_sent_date(name: str, expected: datetime.date | None) -> None:
    assert view(name).sent_date() == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Tue, 1 Jul 2003 10:52:37 +0200", datetime.date(2003, 7, 1)),
        ("1 Jul 49 00:00 GMT", datetime.date(2049, 7, 1)),
        ("1 Jul 50 00:00 GMT", datetime.date(1950, 7, 1)),
        ("1 Jul 103 00:00 GMT", datetime.date(2003, 7, 1)),
        ("12 Sept 2024 10:00", datetime.date(2024, 9, 12)),
        ("01-Jan-2024", datetime.date(2024, 1, 1)),
        ("Mon Jan  2 15:04:05 2006", datetime.date(2006, 1, 2)),
        ("31 Feb 2024", None),
        ("32 Jan 2024", None),
        ("1 Foo 2024", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_date(value: str | None, expected: datetime.date | None) -> None:
    assert parse_date(value) == expected


@pytest.mark.parametrize(
    ("name", "needle", "expected"),
    [
        ("quoted_printable.eml", "café", True),
        ("quoted_printable.eml", "CAFÉ AU LAIT", True),
        ("quoted_printable.eml", "softbreak", True),  # soft line break removed
        ("quoted_printable.eml", "equals: =", True),
        ("quoted_printable.eml", "=C3", False),
        ("base64_rfc2231.eml", "hidden TREASURE", True),
        ("base64_rfc2231.eml", "SGlkZGVu", False),
        ("base64_rfc2231.eml", "rates", False),  # only text parts are searched
        ("encoded_words.eml", "grüße", True),
        ("encoded_words.eml", "GRÜSSE", True),  # full Unicode case folding: ß folds to ss
        ("encoded_words.eml", "grüsze", False),
        ("eightbit_headers.eml", "señor", True),  # iso-8859-1 body
        ("rfc822_attached.eml", "inner html", True),
        ("rfc822_attached.eml", "Original Sender", True),  # the encapsulated header is body
        ("rfc822_attached.eml", "Fwd:", False),
        ("nested_multipart.eml", "plain version", True),
        ("nested_multipart.eml", "preamble", False),
        ("no_content_type.eml", "second LINE", True),
        ("header_only.eml", "Header only", False),
        ("header_only.eml", "", True),
    ],
)
def test_body_contains(name: str, needle: str, expected: bool) -> None:
    assert view(name).body_contains(needle) is expected


def test_text_contains_header_or_body() -> None:
    message = view("rfc822_attached.eml")
    assert message.text_contains("fwd: ORIGINAL")
    assert message.text_contains("list@example.com")
    assert message.text_contains("Inner plain")
    assert not message.text_contains("nowhere to be found")
    assert view("encoded_words.eml").text_contains("Köln")  # decoded header


# --- never raise ---------------------------------------------------------------------------------

SNIPPETS = [
    b"\r\n",
    b"\r\n\r\n",
    b"--",
    b"--outer\r\n",
    b"\r\n--alt--\r\n",
    b"=?utf-8?q?",
    b"?=",
    b'"',
    b"(",
    b")",
    b"<",
    b">",
    b"@",
    b":",
    b";",
    b",",
    b"\\",
    b"\x00",
    b"\xff\xfe",
    b"\r",
    b"\n",
    b" ",
    b"\t",
    b"[",
    b"]",
    b"=",
    b"=4",
    b"=\r\n",
    b"*0*=",
    b"%",
    b"'",
    b"Content-Type: multipart/mixed; boundary=x\r\n",
    b"\r\n--x\r\n",
    b"\r\n--x--\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: multipart/digest; boundary=x\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"; name*0*=utf-8''%E2%82; name*1*=%AC",
    b"=?x?b?!!!?=",
    b"From: a:b;c,<d@e>\r\n",
    b"Content-Type: text/plain; charset=idna\r\n",
    b"Date: 99 Xyz 99999\r\n",
]
SECTION_PATHS = [(), (1,), (2,), (3,), (1, 1), (1, 2), (2, 1), (2, 2), (1, 1, 1), (2, 1, 2)]
SECTION_TEXTS = ["", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"]


def mutate(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 6)):
        pos = rng.randint(0, len(data))
        op = rng.randrange(10)
        if op < 5:
            data = data[:pos] + rng.choice(SNIPPETS) + data[pos:]
        elif op < 7:
            data = data[:pos] + data[pos + rng.randint(1, 60) :]
        elif op < 9 and data:
            index = rng.randrange(len(data))
            data = data[:index] + bytes([rng.randrange(256)]) + data[index + 1 :]
        else:
            data = data[: pos + 1] + data[rng.randint(0, len(data)) :][:200] + data[pos + 1 :]
    return data


def exercise(raw: bytes) -> None:
    """Call every method; outputs must have the right types and follow the grammar."""
    message = MessageView(raw)
    check_envelope(parse_imap(message.envelope()))
    check_body(parse_imap(message.bodystructure()), extended=True)
    check_body(parse_imap(message.body()), extended=False)
    assert message.header_bytes() + message.text_bytes() == raw
    for parts in SECTION_PATHS:
        for text in SECTION_TEXTS:
            fields = ("SUBJECT", "FROM") if text.startswith("HEADER.") else ()
            result = message.section(parts, text, fields)
            assert result is None or isinstance(result, bytes)
    for name in ("From", "subject", "Content-Type", "X-None"):
        assert all(isinstance(v, str) for v in message.header_values(name))
    assert message.sent_date() is None or isinstance(message.sent_date(), datetime.date)
    assert isinstance(message.body_contains("a"), bool)
    assert isinstance(message.text_contains("é"), bool)


@pytest.mark.parametrize("name", NAMES)
def test_fuzz_mutated_corpus(name: str) -> None:
    rng = random.Random(f"imap-message-{name}")
    raw = load(name)
    for _ in range(40):
        exercise(mutate(rng, raw))


def test_fuzz_random_bytes() -> None:
    rng = random.Random(3501)
    alphabet = b"ab:;,<>@\"()\\ \t\r\n=?-*'%\x00\xe9"
    for _ in range(150):
        exercise(rng.randbytes(rng.randint(0, 400)))
        exercise(bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 400))))
        exercise(b"".join(rng.choice(SNIPPETS) for _ in range(rng.randint(0, 40))))


@pytest.mark.timeout(30)
def test_hostile_sizes_stay_linear() -> None:
    """Inputs that would be quadratic for a naive parser finish quickly."""
    big = 200_000
    for header in (
        b"Content-Type: text/plain" + b";" * big,
        b"Content-Type: text/plain; a=b" * (big // 30),
        b"To: " + b"a " * big + b"@x" + b":" * big,
        b"To: " + b"<" * big,
        b"To: " + b"(" * big,
        b"To: " + b'"' + b"\\" * big,
        b"Subject: " + b"=?utf-8?q?a?= " * (big // 14),
        b"Content-Type: text/plain; " + b"".join(b"p%d*%d*=x;" % (i, i % 999) for i in range(9999)),
    ):
        exercise(header + b"\r\n\r\nbody\r\n")
    parts = b"".join(b"--b\r\n\r\n%d\r\n" % i for i in range(20_000))
    exercise(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts)


def test_searched_headers_take_any_input() -> None:
    """SEARCH FROM/TO/CC/BCC/SUBJECT's view of a header (each address field as written and
    written out canonically) on the mutated corpus and on hostile address fields: five groups
    of values, never an exception."""
    rng = random.Random("imap-message-addresses")
    for name in NAMES:
        for _ in range(10):
            data = mutate(rng, load(name))
            header = data[: split_header(data, 0, len(data))[0]]
            assert searched_headers(known_fields(header)).count(b"\1") == 4
    big = 50_000
    for field in (b"a " * big + b"@x" + b":" * big, b"<" * big, b"(" * big, b"g: " * big):
        value = searched_headers(known_fields(b"To: " + field + b"\r\n\r\n"))
        assert value.split(b"\1")[1].count(b"\0") in (1, 2)


def test_address_fields_match_as_written_and_canonically() -> None:
    value = searched_headers(known_fields(b'From: jd@x (John  Doe)\r\nTo: "A B" <a@b>\r\n\r\n'))
    from_values = value.split(b"\1")[0].split(b"\0")[1:]
    assert from_values == [b"jd@x (john  doe)", b'"john  doe" <jd@x>']
    assert value.split(b"\1")[1].split(b"\0")[1:] == [b'"a b" <a@b>']


def test_base64_decoding_is_lenient() -> None:
    assert decode_base64(b"YWJj\r\nZGVm\r\n") == b"abcdef"
    assert decode_base64(b"YWJjZA") == b"abcd"
    assert decode_base64(b"Y") == b""
    assert decode_base64(b"!!YW*Jj") == b"abc"
