"""FETCH over the wire for the message corpus (tests/corpus/*.eml): BODYSTRUCTURE, BODY, ENVELOPE
and every body section, checked three ways: exact responses worked out by hand for chosen
messages, invariants that must hold for every message (a part's size is the length of its
section, header and body of a part lie back to back in BODY[], ...), and the MIME tree Python's
email package sees in the well-formed ones."""

from __future__ import annotations

import email
import email.policy
import re

import pytest

from support.daemons import DaemonFactory
from support.imap import Raw, crlf, start_imapd
from support.paths import CORPUS
from support.site import MailSite, deliver

FILES = sorted(CORPUS.glob("*.eml"))
WELL_FORMED = [
    "base64_rfc2231",
    "digest",
    "empty_body",
    "encoded_words",
    "groups",
    "header_only",
    "long_folded",
    "nested_multipart",
    "no_content_type",
    "no_final_newline",
    "quoted_printable",
    "rfc822_attached",
    "threading",
]


@pytest.fixture(scope="module")
def corpus_server(tmp_path_factory):
    """One server for the module, alice's INBOX holding the corpus in file-name order."""
    root = tmp_path_factory.mktemp("fetch")
    site = MailSite.create(root)
    maildir = site.maildir("alice")
    for number, path in enumerate(FILES, 1):
        deliver(
            maildir,
            path.read_bytes(),
            subdir="cur",
            name=f"{1700000000 + number}.M{number}P1.corpus:2,S",
        )
    factory = DaemonFactory(root)
    try:
        yield start_imapd(factory, site)
    finally:
        factory.stop_all()


@pytest.fixture
def session(corpus_server):
    client = corpus_server.raw_login()
    client.ok("EXAMINE INBOX")
    yield client
    client.ok("LOGOUT")
    client.close()


def number_of(name: str) -> int:
    return [p.stem for p in FILES].index(name) + 1


# -- reading responses ------------------------------------------------------------------------


class Atom(bytes):
    """An atom (or a FETCH item name), told apart from a string."""


_ATOM = re.compile(rb"[^ ()\[\]{\"]+(\[[^\]]*\](<\d+>)?)?")


def parse(data: bytes, pos: int = 0):
    """One IMAP value at `pos`: (value, next position). Lists are Python lists, NIL is None."""
    char = data[pos : pos + 1]
    if char == b"(":
        items = []
        pos += 1
        while data[pos : pos + 1] != b")":
            if data[pos : pos + 1] == b" ":
                pos += 1
                continue
            item, pos = parse(data, pos)
            items.append(item)
        return items, pos + 1
    if char == b'"':
        out = bytearray()
        pos += 1
        while data[pos] != 0x22:
            if data[pos] == 0x5C:
                pos += 1
            out.append(data[pos])
            pos += 1
        return bytes(out), pos + 1
    if char == b"{":
        end = data.index(b"}", pos)
        start = end + 3
        size = int(data[pos + 1 : end])
        return data[start : start + size], start + size
    match = _ATOM.match(data, pos)
    assert match, data[pos : pos + 40]
    token = match.group()
    if token == b"NIL":
        return None, match.end()
    if token.isdigit():
        return int(token), match.end()
    return Atom(token), match.end()


def fetch(client: Raw, number: int, items: str) -> dict[bytes, object]:
    lines = client.ok(f"FETCH {number} ({items})")
    assert len(lines) == 1, lines
    prefix = b"* %d FETCH " % number
    assert lines[0].startswith(prefix) and lines[0].endswith(b")\r\n"), lines[0][:100]
    values, end = parse(lines[0], len(prefix))
    assert end == len(lines[0]) - 2, "junk after the FETCH response"
    return {bytes(values[i]): values[i + 1] for i in range(0, len(values), 2)}


def raw_fetch(client: Raw, number: int, items: str) -> bytes:
    lines = client.ok(f"FETCH {number} ({items})")
    assert len(lines) == 1, lines
    return lines[0]


# -- exact responses, worked out by hand ------------------------------------------------------

EXACT_BODYSTRUCTURE = {
    "threading": b'("TEXT" "PLAIN" ("charset" "us-ascii") NIL NIL "7BIT" 17 1 NIL NIL NIL NIL)',
    "no_content_type": b'("TEXT" "PLAIN" ("charset" "us-ascii") NIL NIL "7BIT" 39 2 NIL NIL NIL '
    b"NIL)",
    # No line end is added: 18 octets and one line end, as Dovecot counts them.
    "no_final_newline": b'("TEXT" "PLAIN" ("charset" "us-ascii") NIL NIL "7BIT" 18 1 NIL NIL NIL '
    b"NIL)",
    "empty_body": b'("TEXT" "PLAIN" ("charset" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)',
    "quoted_printable": b'("TEXT" "PLAIN" ("charset" "utf-8") NIL NIL "QUOTED-PRINTABLE" 51 2 '
    b"NIL NIL NIL NIL)",
    "digest": b'(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 60 (NIL "first digest entry" ((NIL NIL '
    b'"one" "example.com")) ((NIL NIL "one" "example.com")) ((NIL NIL "one" '
    b'"example.com")) NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("charset" "us-ascii") NIL '
    b'NIL "7BIT" 6 1 NIL NIL NIL NIL) 4 NIL NIL NIL NIL)("TEXT" "PLAIN" ("charset" '
    b'"us-ascii") NIL NIL "7BIT" 16 1 NIL NIL NIL NIL) "DIGEST" ("boundary" "d") NIL '
    b"NIL NIL)",
    "missing_close": b'(("TEXT" "PLAIN" ("charset" "us-ascii") NIL NIL "7BIT" 5 0 NIL NIL NIL '
    b'NIL)("TEXT" "HTML" ("charset" "us-ascii") NIL NIL "7BIT" 32 2 NIL NIL NIL '
    b'NIL) "ALTERNATIVE" ("boundary" "b1") NIL NIL NIL)',
    "rfc822_attached": b'(("TEXT" "PLAIN" ("charset" "us-ascii") NIL NIL "7BIT" 15 1 NIL NIL NIL '
    b'NIL)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 386 ("Mon, 01 Jan 2024 '
    b'23:59:59 -0500" "original" (("Original Sender" NIL "orig" '
    b'"example.org")) (("Original Sender" NIL "orig" "example.org")) '
    b'(("Original Sender" NIL "orig" "example.org")) ((NIL NIL "fwd" '
    b'"example.com")) NIL NIL NIL "<inner@example.org>") (("TEXT" "PLAIN" '
    b'("charset" "utf-8") NIL NIL "7BIT" 12 0 NIL NIL NIL NIL)("TEXT" "HTML" '
    b'("charset" "utf-8") NIL NIL "7BIT" 18 0 NIL NIL NIL NIL) "ALTERNATIVE" '
    b'("boundary" "inner-b") NIL NIL NIL) 17 NIL ("inline" NIL) NIL NIL) '
    b'"MIXED" ("boundary" "XYZ") NIL NIL NIL)',
    "nested_multipart": b'((("TEXT" "PLAIN" ("charset" "us-ascii") NIL NIL "7BIT" 16 1 NIL NIL '
    b'NIL NIL)(("TEXT" "HTML" ("charset" "utf-8") NIL NIL "7BIT" 46 1 NIL NIL '
    b'NIL NIL)("IMAGE" "PNG" NIL "<logo@example.net>" NIL "BASE64" 12 NIL '
    b'("inline" NIL) NIL NIL) "RELATED" ("boundary" "rel" "type" "text/html")'
    b' NIL NIL NIL) "ALTERNATIVE" ("boundary" "alt") NIL NIL NIL)("APPLICATION"'
    b' "PDF" ("name" "report.pdf") NIL "The report" "BASE64" 12 '
    b'"Q2hlY2sgSW50ZWdyaXR5IQ==" ("attachment" ("filename" "report.pdf")) '
    b'("en" "de") "http://example.net/report.pdf") "MIXED" ("boundary" '
    b'"outer") NIL NIL NIL)',
}

EXACT_ENVELOPE = {
    "threading": b'("Mon, 15 Jul 2024 18:30:00 -0700" "Re: thread" (("Replier" NIL "re" '
    b'"example.net")) (("Mailing List" NIL "list-bounces" "example.net")) ((NIL NIL '
    b'"list" "example.net")) ((NIL NIL "list" "example.net")) NIL NIL '
    b'"<reply-1@example.net>" "<reply-2@example.net>")',
    "groups": b'("Thu, 13 Feb 1969 23:32:54 -0330" "Groups" (("Boss" NIL "boss" "example.com")) '
    b'(("Boss" NIL "boss" "example.com")) (("Smith, John" NIL "john.smith" '
    b'"example.com")) ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) ((NIL '
    b'NIL "Team" NIL)("Ann A." NIL "ann" "example.com")("Bob B" NIL "bob" '
    b'"example.com")(NIL NIL NIL NIL)("Carol" "@relay.example,@hop.example" "carol" '
    b'"example.com")) ((NIL NIL "localonly" ',
    "encoded_words": b'("Sun, 1 Dec 2024 10:00:00 +0100" "=?utf-8?q?Gr=C3=BC=C3=9Fe?= aus '
    b'=?ISO-8859-1?B?S/Zsbg==?=" (("=?utf-8?b?SsO8cmdlbg==?=" NIL "juergen" '
    b'"example.de"))',
    "header_only": b'("Tue, 5 Mar 2024 01:02:03 +0000" "Header only" ((NIL NIL "hdr" '
    b'"example.com")) ((NIL NIL "hdr" "example.com")) ((NIL NIL "hdr" '
    b'"example.com")) NIL NIL NIL NIL NIL)',
}


@pytest.mark.parametrize("name", sorted(EXACT_BODYSTRUCTURE))
def test_exact_bodystructure(session, name):
    line = raw_fetch(session, number_of(name), "BODYSTRUCTURE")
    assert (
        line
        == b"* %d FETCH (BODYSTRUCTURE " % number_of(name) + EXACT_BODYSTRUCTURE[name] + b")\r\n"
    )


@pytest.mark.parametrize("name", sorted(EXACT_ENVELOPE))
def test_exact_envelope(session, name):
    line = raw_fetch(session, number_of(name), "ENVELOPE")
    assert line.startswith(b"* %d FETCH (ENVELOPE " % number_of(name) + EXACT_ENVELOPE[name])


def test_folded_and_eight_bit_headers_in_the_envelope(session):
    envelope = fetch(session, number_of("long_folded"), "ENVELOPE")[b"ENVELOPE"]
    assert envelope[1] == (
        b"This subject is deliberately very long so that it has to be folded"
        b"\tacross several lines by the sending agent, with a tab and  two "
        b"spaces on the continuation lines"
    )
    assert envelope[9] == b"<very-long-message-id-0123456789abcdef@folded.example.com>"
    assert len(envelope[5]) == 30
    raw = (CORPUS / "eightbit_headers.eml").read_bytes()
    envelope = fetch(session, number_of("eightbit_headers"), "ENVELOPE")[b"ENVELOPE"]
    subject = re.search(rb"^Subject: (.*)$", raw, re.M).group(1)
    assert envelope[1] == subject  # 8-bit bytes, a quote and a backslash survive
    assert envelope[2][0][2:] == [b"jose", b"example.es"]
    duplicated = fetch(session, number_of("duplicate_headers"), "ENVELOPE")[b"ENVELOPE"]
    assert duplicated[1] == b"First subject"
    assert duplicated[2][0][2] == b"first"


def test_sections_of_an_attached_message(session):
    number = number_of("rfc822_attached")
    data = fetch(
        session,
        number,
        "BODY.PEEK[2] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] "
        "BODY.PEEK[2.MIME] BODY.PEEK[2.1] BODY.PEEK[2.1.MIME] BODY.PEEK[2.2] "
        "BODY.PEEK[2.HEADER.FIELDS (Subject Message-ID)] "
        "BODY.PEEK[2.HEADER.FIELDS.NOT (Subject)] BODY.PEEK[2.TEXT]<2.7> "
        "BODY.PEEK[1]",
    )
    assert data[b"BODY[2.MIME]"] == (
        b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
    )
    assert data[b"BODY[2]"] == data[b"BODY[2.HEADER]"] + data[b"BODY[2.TEXT]"]
    assert data[b"BODY[2.HEADER]"].startswith(b"From: Original Sender <orig@example.org>\r\n")
    assert data[b"BODY[2.HEADER]"].endswith(b'boundary="inner-b"\r\n\r\n')
    assert data[b"BODY[2.TEXT]"].startswith(b"--inner-b\r\n")
    assert data[b"BODY[2.1]"] == b"Inner plain."
    assert data[b"BODY[2.1.MIME]"] == b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    assert data[b"BODY[2.2]"] == b"<b>Inner html.</b>"
    fields = [k for k in data if k.startswith(b"BODY[2.HEADER.FIELDS (")][0]
    assert data[fields] == b"Subject: original\r\nMessage-ID: <inner@example.org>\r\n\r\n"
    nots = [k for k in data if k.startswith(b"BODY[2.HEADER.FIELDS.NOT")][0]
    assert b"Subject" not in data[nots] and data[nots].startswith(b"From: ")
    assert data[b"BODY[2.TEXT]<2>"] == b"inner-b"
    assert data[b"BODY[1]"] == b"See attached.\r\n"


def test_sections_of_a_nested_multipart(session):
    number = number_of("nested_multipart")
    data = fetch(
        session,
        number,
        "BODY.PEEK[1] BODY.PEEK[1.1] BODY.PEEK[1.2] BODY.PEEK[1.2.1] "
        "BODY.PEEK[1.2.2] BODY.PEEK[1.2.2.MIME] BODY.PEEK[2] BODY.PEEK[9] "
        "BODY.PEEK[1.1.1]",
    )
    assert data[b"BODY[1.1]"] == b"Plain version.\r\n"
    assert data[b"BODY[1.2.1]"] == b'<p>HTML <img src="cid:logo@example.net"></p>\r\n'
    assert data[b"BODY[1.2.2]"] == b"iVBORw0KGgo="
    assert data[b"BODY[1.2.2.MIME]"].startswith(b"Content-Type: image/png\r\n")
    assert data[b"BODY[1]"].startswith(b"--alt\r\n") and data[b"BODY[1]"].endswith(b"--alt--\r\n")
    assert data[b"BODY[1.2]"].startswith(b"--rel\r\n")
    assert data[b"BODY[2]"] == b"JVBERi0xLjQK"
    assert data[b"BODY[9]"] == b"" and data[b"BODY[1.1.1]"] == b""


def test_partial_fetches(session):
    number = number_of("threading")
    whole = crlf((CORPUS / "threading.eml").read_bytes())
    data = fetch(
        session,
        number,
        "BODY.PEEK[]<0.10> BODY.PEEK[]<300.1000> BODY.PEEK[TEXT]<0.8> "
        "BODY.PEEK[HEADER]<5.5> BODY.PEEK[1]<100.10>",
    )
    assert data[b"BODY[]<0>"] == whole[:10]
    assert data[b"BODY[]<300>"] == whole[300:]
    assert data[b"BODY[TEXT]<0>"] == b"Threaded"
    assert data[b"BODY[HEADER]<5>"] == whole[5:10]
    assert data[b"BODY[1]<100>"] == b""
    lines = session.ok(f"FETCH {number} BODY.PEEK[]<{len(whole)}.5>")
    assert lines == [b"* %d FETCH (BODY[]<%d> {0}\r\n)\r\n" % (number, len(whole))]


# -- invariants for every message ------------------------------------------------------------


def children(structure: list) -> list[list]:
    """A multipart's body parts: the lists before its subtype string."""
    found = []
    for item in structure:
        if not isinstance(item, list):
            return found
        found.append(item)
    raise AssertionError("multipart without a subtype")


def leaves(structure: list, path: str, out: list) -> None:
    """(part number, leaf structure) for every part; message/rfc822 parts and their insides."""
    if isinstance(structure[0], list):
        for index, child in enumerate(children(structure), 1):
            leaves(child, f"{path}.{index}" if path else str(index), out)
        return
    number = path or "1"  # a message that is not multipart has only part 1, its body
    out.append((number, structure))
    if structure[0].upper() == b"MESSAGE" and structure[1].upper() == b"RFC822":
        inner = structure[8]
        if isinstance(inner[0], list):
            leaves(inner, number, out)
        else:
            out.append((f"{number}.1", inner))


def strip_extensions(structure: list) -> list:
    """BODY is BODYSTRUCTURE without extension data (RFC 3501 7.4.2)."""
    if isinstance(structure[0], list):
        parts = children(structure)
        return [*(strip_extensions(c) for c in parts), structure[len(parts)]]
    basic = structure[:7]
    kind = (structure[0].upper(), structure[1].upper())
    if kind == (b"MESSAGE", b"RFC822"):
        return [*basic, structure[7], strip_extensions(structure[8]), structure[9]]
    if kind[0] == b"TEXT":
        return [*basic, structure[7]]
    return basic


def raw_header(data: bytes, name: bytes) -> bytes | None:
    """The first `name:` field of the top-level header, unfolded (CRLF removed)."""
    head = crlf(data).split(b"\r\n\r\n", 1)[0] + b"\r\n"
    for field in re.split(rb"\r\n(?![ \t])", head):
        key, colon, value = field.partition(b":")
        if colon and key.strip().lower() == name.lower() and b" " not in key.strip():
            return value.replace(b"\r\n", b"").strip(b" \t")
    return None


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_corpus_message(session, path):
    check_message(session, number_of(path.stem), path.read_bytes())


def nested(depth: int) -> bytes:
    head = b"Subject: deep\nContent-Type: multipart/mixed; boundary=b0\n\n"
    opening = b"".join(
        b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (n, n + 1) for n in range(depth)
    )
    closing = b"".join(b"--b%d--\n" % n for n in range(depth, -1, -1))
    return head + opening + b"--b%d\nContent-Type: text/plain\n\nbottom\n" % depth + closing


SYNTHETIC = {
    "no header": b"\nJust a body\n",
    "no blank line": b"Subject: only a header",
    "top-level message/rfc822": (
        b"Subject: outer\nContent-Type: message/rfc822\n\n"
        b"Subject: inner\nFrom: a@example.org\n\ninner body\n"
    ),
    "rfc822 of a single part": (
        b"Subject: o\nContent-Type: multipart/mixed; boundary=z\n\n--z\n"
        b"Content-Type: message/rfc822\n\nSubject: i\n\ntext\n--z--\n"
    ),
    "part without headers": (
        b"Content-Type: multipart/mixed; boundary=x\n\n--x\n\n"
        b"no headers here\n--x\nContent-Type: text/html\n\n<p>\n--x--\n"
    ),
    "multipart without boundary": b"Content-Type: multipart/mixed\n\n--x\n\nhm\n--x--\n",
    "boundary with spaces": (
        b'Content-Type: multipart/alternative; boundary="a b c"\n\n'
        b"--a b c\nContent-Type: text/plain\n\none\n--a b c\n"
        b"Content-Type: text/plain\n\ntwo\n--a b c--\n"
    ),
    "binary body": b"Subject: bin\nContent-Type: application/octet-stream\n\n\x00\x01\xff\n",
    "crlf on disk": b"Subject: crlf\r\nContent-Type: text/plain\r\n\r\nline\r\n",
    "long line": b"Subject: " + b"s" * 5000 + b"\n\n" + b"b" * 20000 + b"\n",
    "deep nesting": nested(40),
    "empty multipart": b"Content-Type: multipart/mixed; boundary=e\n\n--e--\n",
    "param junk": (
        b'Content-Type: text/plain; ; charset="utf-8"; =x; name=\n'
        b"Content-Disposition: ;;\nContent-Language: ,\n\nx\n"
    ),
}


@pytest.fixture(scope="module")
def synthetic_server(corpus_server):
    folder = corpus_server.site.mail / "alice" / ".Synthetic"
    for number, data in enumerate(SYNTHETIC.values(), 1):
        deliver(folder, data, subdir="cur", name=f"{1700000000 + number}.M{number}P9.syn:2,")
    return corpus_server


@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_odd_messages(synthetic_server, name):
    client = synthetic_server.raw_login()
    client.ok("EXAMINE Synthetic")
    check_message(client, list(SYNTHETIC).index(name) + 1, SYNTHETIC[name])
    client.ok("LOGOUT")


def check_message(session: Raw, number: int, stored: bytes) -> None:
    """What must hold for every message, whatever its MIME structure."""
    top = fetch(
        session,
        number,
        "RFC822.SIZE BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT] "
        "RFC822.HEADER BODY BODYSTRUCTURE ENVELOPE",
    )
    whole = top[b"BODY[]"]
    assert whole == crlf(stored)
    assert top[b"RFC822.SIZE"] == len(whole)
    assert top[b"BODY[HEADER]"] + top[b"BODY[TEXT]"] == whole
    assert top[b"RFC822.HEADER"] == top[b"BODY[HEADER]"]
    structure = top[b"BODYSTRUCTURE"]
    assert strip_extensions(structure) == top[b"BODY"]
    envelope = top[b"ENVELOPE"]
    assert len(envelope) == 10
    for index, field in ((0, b"Date"), (1, b"Subject"), (8, b"In-Reply-To"), (9, b"Message-ID")):
        value = raw_header(stored, field)
        assert envelope[index] == (value or None), (field, envelope[index], value)
    parts: list = []
    leaves(structure, "", parts)
    for part, leaf in parts:
        data = fetch(session, number, f"BODY.PEEK[{part}] BODY.PEEK[{part}.MIME]")
        body, mime = data[b"BODY[%s]" % part.encode()], data[b"BODY[%s.MIME]" % part.encode()]
        assert leaf[6] == len(body), (part, leaf[:7])
        assert mime + body in whole, part  # a part's header and body lie back to back
        kind = (leaf[0].upper(), leaf[1].upper())
        if kind[0] == b"TEXT":
            assert leaf[7] == body.count(b"\r\n"), (part, leaf[7])
        if kind == (b"MESSAGE", b"RFC822"):
            assert leaf[9] == body.count(b"\r\n")
            inner = fetch(session, number, f"BODY.PEEK[{part}.HEADER] BODY.PEEK[{part}.TEXT]")
            assert (
                inner[b"BODY[%s.HEADER]" % part.encode()] + inner[b"BODY[%s.TEXT]" % part.encode()]
                == body
            )


def python_tree(message: email.message.Message) -> list:
    kind = [
        message.get_content_maintype().upper().encode(),
        message.get_content_subtype().upper().encode(),
    ]
    if message.is_multipart() and kind[0] == b"MULTIPART":
        return [python_tree(part) for part in message.get_payload()] + [kind[1]]
    if kind == [b"MESSAGE", b"RFC822"]:
        return [*kind, python_tree(message.get_payload()[0])]
    return kind


def imap_tree(structure: list) -> list:
    if isinstance(structure[0], list):
        parts = children(structure)
        return [imap_tree(c) for c in parts] + [structure[len(parts)].upper()]
    kind = [structure[0].upper(), structure[1].upper()]
    if kind == [b"MESSAGE", b"RFC822"]:
        return [*kind, imap_tree(structure[8])]
    return kind


@pytest.mark.parametrize("name", WELL_FORMED)
def test_mime_tree_matches_python_email(session, name):
    stored = (CORPUS / f"{name}.eml").read_bytes()
    parsed = email.message_from_bytes(stored, policy=email.policy.compat32)
    structure = fetch(session, number_of(name), "BODYSTRUCTURE")[b"BODYSTRUCTURE"]
    assert imap_tree(structure) == python_tree(parsed)


def test_fetch_of_appended_messages_round_trips(corpus_server):
    """APPEND every corpus message and get back exactly its CRLF form and size."""
    client = corpus_server.raw_login()
    client.ok("CREATE Appended")
    for path in FILES:
        wire = crlf(path.read_bytes())
        client.ok(b"APPEND Appended {%d+}\r\n" % len(wire) + wire)
    client.ok("SELECT Appended")
    for number, path in enumerate(FILES, 1):
        data = fetch(client, number, "RFC822.SIZE BODY.PEEK[]")
        assert data[b"BODY[]"] == crlf(path.read_bytes()), path.stem
        assert data[b"RFC822.SIZE"] == len(data[b"BODY[]"])
    client.ok("CLOSE")
    client.ok("DELETE Appended")
    client.ok("LOGOUT")
