"""MULTIAPPEND (RFC 3502), CATENATE (RFC 4469), APPENDLIMIT (RFC 7889) and LITERAL- (RFC 7888)
over real sockets: several messages appended all or none, messages built from text and parts of
stored messages named by IMAP URLs, the size limit advertised and kept, and non-synchronizing
literals limited to 4096 octets when LITERAL+ is switched off."""

from __future__ import annotations

import re

import pytest

from support.imap import crlf, message_files, shared_imapd, start_imapd, tree
from support.site import deliver

LIMIT = 20_000
shared = shared_imapd("imap-ext-append", f"max_literal = {LIMIT}\n")

DRAFT = crlf(
    b"From: alice@example.com\nSubject: draft\nMIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed; boundary=B\n\n"
    b"--B\nContent-Type: text/plain\n\nthe text\n"
    b"--B\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
    b"AAECAw==\n--B--\n"
)
FORWARDED = crlf(b"From: bob@example.com\nSubject: forwarded\n\nold body\n")


@pytest.fixture
def account(shared):
    server = shared.account()
    drafts = server.maildir() / ".Drafts"
    for name, raw in (("1.M1P1.d:2,S", DRAFT), ("2.M2P1.d:2,", FORWARDED)):
        deliver(drafts, raw.replace(b"\r\n", b"\n"), subdir="cur", name=name)
    (drafts / "maildirfolder").touch()
    return server


def appended(client, tag: str, data: bytes) -> bytes:
    """Send a command that carries literals (each `{n+}`); return its tagged line."""
    client.send(tag.encode() + b" " + data + b"\r\n")
    _lines, done = client.until_tagged(tag)
    return done


def lit(data: bytes) -> bytes:
    return b"{%d+}\r\n" % len(data) + data


def test_capabilities(account):
    line = account.raw().ok("CAPABILITY")[0]
    assert b" MULTIAPPEND " in line and b" CATENATE " in line
    assert f" APPENDLIMIT={LIMIT} ".encode() in line


def test_multiappend_rfc_3502_example(account):
    client = account.raw_login()
    one = crlf(b"Date: Mon, 7 Feb 1994 21:52:25 -0800\nSubject: afternoon meeting\n\nHello\n")
    two = crlf(b"Date: Mon, 7 Feb 1994 22:43:04 -0800\nSubject: afternoon meeting 2\n\nbye\n")
    done = appended(
        client,
        "A003",
        b"APPEND saved-messages (\\Seen) "
        + lit(one)
        + b' (\\Seen) " 7-Feb-1994 12:00:00 +0000" '
        + lit(two),
    )
    assert done.startswith(b"A003 NO [TRYCREATE] ")
    client.ok("CREATE saved-messages")
    done = appended(
        client,
        "A004",
        b"APPEND saved-messages (\\Seen) "
        + lit(one)
        + b' (\\Seen) " 7-Feb-1994 12:00:00 +0000" '
        + lit(two)
        + b" "
        + lit(b"Subject: third\r\n\r\n3\r\n"),
    )
    found = re.match(rb"A004 OK \[APPENDUID (\d+) 1:3\] ", done)
    assert found, done
    client.ok("SELECT saved-messages")
    assert client.ok("FETCH 1:3 (FLAGS INTERNALDATE BODY.PEEK[])") == [
        # New to the folder, so \Recent in the session that selects it first (RFC 3501 2.3.2).
        b'* 1 FETCH (FLAGS (\\Seen \\Recent) INTERNALDATE "%s" BODY[] {%d}\r\n%s)\r\n'
        % (client.ok("FETCH 1 (INTERNALDATE)")[0].split(b'"')[1], len(one), one),
        b'* 2 FETCH (FLAGS (\\Seen \\Recent) INTERNALDATE "%s" BODY[] {%d}\r\n%s)\r\n'
        % (client.ok("FETCH 2 (INTERNALDATE)")[0].split(b'"')[1], len(two), two),
        b'* 3 FETCH (FLAGS (\\Recent) INTERNALDATE "%s" BODY[] {21}\r\n'
        b"Subject: third\r\n\r\n3\r\n)\r\n" % client.ok("FETCH 3 (INTERNALDATE)")[0].split(b'"')[1],
    ]
    assert client.ok("UID SEARCH ON 7-Feb-1994") == [b"* SEARCH 2\r\n"]  # its date kept


def test_multiappend_is_all_or_nothing(account):
    before = tree(account.path)
    client = account.raw_login()
    good = crlf(b"Subject: ok\n\nfine\n")
    failures = [
        (lit(good) + b" " + lit(b""), b"NO [CANNOT]"),
        (lit(good) + b' CATENATE (URL "/Drafts/;UID=99")', b"NO [BADURL /Drafts/;UID=99]"),
        (
            lit(good)
            + b" CATENATE (TEXT "
            + lit(b"x" * (LIMIT - 10))
            + b" TEXT "
            + lit(b"y" * 20)
            + b")",
            b"NO [TOOBIG]",
        ),
        (lit(good) + b" (\\Bogus) " + lit(good), b"BAD"),
    ]
    for n, (data, reply) in enumerate(failures):
        done = appended(client, f"f{n}", b"APPEND INBOX " + data)
        assert done.split(b" ", 1)[1].startswith(reply), done
    client.alive()
    assert tree(account.path) == before
    assert not list((account.path / "tmp").iterdir())


def test_catenate_rfc_4469_example(account):
    client = account.raw_login()
    client.ok("SELECT Drafts")
    validity = int(
        re.search(rb"UIDVALIDITY (\d+)", b"".join(client.ok("STATUS Drafts (UIDVALIDITY)"))).group(
            1
        )
    )  # type: ignore[union-attr]
    boundary = b"\r\n--B\r\n"
    url = f"/Drafts;UIDVALIDITY={validity}/;UID=1"
    done = appended(
        client,
        "A003",
        b"APPEND Drafts (\\Seen \\Draft $MDNSent) "
        + f'CATENATE (URL "{url}/;section=HEADER" TEXT '.encode()
        + lit(boundary[2:])
        + f' URL "{url}/;section=1.MIME" URL "{url}/;section=1" TEXT '.encode()
        + lit(boundary)
        + f' URL "/Drafts;UIDVALIDITY={validity}/;UID=2" TEXT '.encode()
        + lit(b"\r\n--B--\r\n")
        + b")",
    )
    assert re.match(rb"A003 OK \[APPENDUID %d 3\] " % validity, done), done
    expected = (
        DRAFT.split(b"\r\n\r\n", 1)[0]
        + b"\r\n\r\n"  # the header with its blank line
        + b"--B\r\n"
        + b"Content-Type: text/plain\r\n\r\n"  # part 1's MIME header
        + b"the text"  # part 1's body
        + boundary
        + FORWARDED
        + b"\r\n--B--\r\n"
    )
    client.ok("NOOP")
    line = client.ok("FETCH 3 (FLAGS BODY.PEEK[])")[0]
    assert b"FLAGS (\\Draft \\Seen $MDNSent \\Recent)" in line  # new to Drafts: \\Recent here
    assert line.endswith(b"{%d}\r\n%s)\r\n" % (len(expected), expected))
    # The new message is a MIME message again: its part 2 is the forwarded one.
    assert client.ok("FETCH 3 (BODY.PEEK[2.MIME])") == [
        b"* 3 FETCH (BODY[2.MIME] {45}\r\nFrom: bob@example.com\r\nSubject: forwarded\r\n\r\n)\r\n"
    ]


def test_catenate_urls(account):
    client = account.raw_login()
    # Relative to the selected mailbox, a partial, and this user's own absolute URL.
    done = appended(client, "r0", b'APPEND INBOX CATENATE (URL ";UID=2")')
    assert b"[BADURL ;UID=2]" in done  # nothing is selected
    client.ok("SELECT Drafts")
    user = account.user
    done = appended(
        client,
        "r1",
        b'APPEND INBOX CATENATE (URL ";UID=2/;SECTION=HEADER" URL "/Drafts/;UID=2/;SECTION=TEXT'
        b'/;PARTIAL=0.3" URL "imap://'
        + user.encode()
        + b'@localhost/%44rafts/;UID=2/;SECTION=TEXT")',
    )
    assert done.startswith(b"r1 OK [APPENDUID "), done
    client.ok("SELECT INBOX")
    assert client.ok("FETCH 1 (BODY.PEEK[TEXT])") == [
        b"* 1 FETCH (BODY[TEXT] {13}\r\noldold body\r\n)\r\n"
    ]
    # Every way to name nothing this user may read is BADURL; the session goes on.
    for url in (
        "/Drafts/;UID=9",
        "/Drafts;UIDVALIDITY=1/;UID=1",
        "/Nosuch/;UID=1",
        "/Drafts/;UID=1/;SECTION=7",
        "/Drafts/;UID=1/;SECTION=BOGUS",
        "imap://someone-else@localhost/Drafts/;UID=1",
        "/Drafts/;UID=1/;URLAUTH=anonymous",
        "/../bob/;UID=1",
        "http://example.com/",
        "/Drafts",
    ):
        done = appended(client, "b", f'APPEND INBOX CATENATE (URL "{url}")'.encode())
        assert done.startswith(b"b NO [BADURL "), (url, done)
    assert client.status("APPEND INBOX CATENATE ()") == b"BAD"
    assert client.status('APPEND INBOX CATENATE (FOO "x")') == b"BAD"
    client.alive()


def test_appendlimit(account):
    client = account.raw_login()
    assert client.ok("STATUS INBOX (APPENDLIMIT MESSAGES)") == [
        f"* STATUS INBOX (APPENDLIMIT {LIMIT} MESSAGES 0)\r\n".encode()
    ]
    assert f"APPENDLIMIT {LIMIT}".encode() in b"".join(
        client.ok('LIST "" "INBOX" RETURN (STATUS (APPENDLIMIT))')
    )
    # Over the limit: a synchronizing literal is refused before it is sent...
    client.send(b"t1 APPEND INBOX {%d}\r\n" % (LIMIT + 1))
    assert client.line() == b"t1 NO [TOOBIG] Message too large\r\n"
    # ... a non-synchronizing one is read, dropped and refused the same way.
    done = appended(client, "t2", b"APPEND INBOX " + lit(b"z" * (LIMIT + 1)))
    assert done == b"t2 NO [TOOBIG] Message too large\r\n"
    done = appended(client, "t3", b"APPEND INBOX " + lit(b"z" * LIMIT))
    assert done.startswith(b"t3 OK ")
    assert len(message_files(account.path)) == 1


def test_literal_minus(daemons, site):
    server = start_imapd(daemons, site, "literal_plus = no\n")
    client = server.raw()
    capabilities = client.ok("CAPABILITY")[0]
    assert b" LITERAL- " in capabilities and b"LITERAL+" not in capabilities
    client.ok(f'LOGIN {server.user} "{server.passwords[server.user]}"')
    small = crlf(b"Subject: s\n\n" + b"x" * 4000 + b"\n")
    assert len(small) <= 4096
    assert appended(client, "n1", b"APPEND INBOX " + lit(small)).startswith(b"n1 OK ")
    big = crlf(b"Subject: b\n\n" + b"x" * 5000 + b"\n")
    done = appended(client, "n2", b"APPEND INBOX " + lit(big))
    assert done.startswith(b"n2 BAD ")
    client.alive()
    client.send(b"n3 APPEND INBOX {%d}\r\n" % len(big))  # synchronizing: any size
    assert client.raw_line().startswith(b"+ ")
    client.send(big + b"\r\n")
    _lines, done = client.until_tagged("n3")
    assert done.startswith(b"n3 OK ")
    assert len(message_files(server.maildir())) == 2
