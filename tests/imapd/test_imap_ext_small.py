"""The small extensions over real sockets: CAPABILITY lists exactly what is complete, NAMESPACE
(RFC 2342), ID (RFC 2971), ENABLE (RFC 5161), UNSELECT (RFC 3691), CHILDREN (RFC 3348), SASL-IR
(RFC 4959) with AUTH=PLAIN and AUTH=LOGIN, and LITERAL+ (RFC 7888); bad input gets the RFC's
response and the session goes on."""

from __future__ import annotations

import base64
import imaplib
import re

import pytest

from support.imap import SHARED_PASSWORD, crlf, shared_imapd
from support.site import deliver

ADVERTISED = [
    "IMAP4rev1",
    "IMAP4rev2",
    "LITERAL+",
    "SASL-IR",
    "AUTH=PLAIN",
    "AUTH=LOGIN",
    "ID",
    "ENABLE",
    "UTF8=ACCEPT",
    "IDLE",
    "NAMESPACE",
    "UNSELECT",
    "UIDPLUS",
    "MOVE",
    "CHILDREN",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "ESEARCH",
    "SORT",
    "SORT=DISPLAY",
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
    "ESORT",
    "CONTEXT=SEARCH",
    "CONTEXT=SORT",
    "SEARCHRES",
    "BINARY",
    "MULTIAPPEND",
    "CATENATE",
    "APPENDLIMIT=67108864",
    "STATUS=SIZE",
    "OBJECTID",
    "SAVEDATE",
    "UNAUTHENTICATE",
    "CONDSTORE",
    "QRESYNC",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "QUOTA=RES-MESSAGE",
    "COMPRESS=DEFLATE",
]


shared = shared_imapd("imap-ext-small")


@pytest.fixture
def account(shared):
    return shared.account()


NUL = "\0"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_capability_lists_every_complete_extension_in_every_state(account):
    expected = [("* CAPABILITY " + " ".join(ADVERTISED) + "\r\n").encode()]
    client = account.raw()
    assert client.ok("CAPABILITY") == expected
    _lines, done = client.cmd(f'LOGIN {account.user} "{SHARED_PASSWORD}"')
    assert done.endswith(b"[CAPABILITY " + " ".join(ADVERTISED).encode() + b"] Logged in\r\n")
    client.ok("SELECT INBOX")
    assert client.ok("CAPABILITY") == expected


def test_namespace(account):
    client = account.raw_login()
    assert client.ok("NAMESPACE") == [b'* NAMESPACE (("" ".")) NIL NIL\r\n']
    imapc = account.client()
    personal = imapc.namespace().personal
    assert [(p, s) for p, s in personal] == [("", ".")]
    imapc.logout()
    before = account.raw()
    assert before.status("NAMESPACE") == b"BAD"  # not before login
    before.alive()


def test_id_in_every_state_and_logged(account):
    client = account.raw()
    lines = client.ok('ID ("name" "Thunderbird" "version" "128.0" "os" NIL)')
    assert len(lines) == 1 and re.fullmatch(
        rb'\* ID \("name" "maildaemons" "version" "[^"]+"\)\r\n', lines[0]
    )
    assert client.ok("ID NIL") == lines
    client.ok(f'LOGIN {account.user} "{SHARED_PASSWORD}"')
    assert client.ok('ID ("name" "K-9 Mail")') == lines
    assert client.status("ID") == b"BAD"
    assert client.status('ID ("name")') == b"BAD"
    client.alive()
    assert "client id: name=Thunderbird version=128.0 os=NIL" in account.log()
    imapc = account.client()
    answer = imapc.id_({"name": "imapclient"})[0]
    assert dict(zip(answer[::2], answer[1::2], strict=True))[b"name"] == b"maildaemons"
    imapc.logout()


def test_enable(account):
    client = account.raw()
    assert client.status("ENABLE CONDSTORE") == b"BAD"  # not before login
    client.ok(f'LOGIN {account.user} "{SHARED_PASSWORD}"')
    # Unknown capabilities are ignored (RFC 5161 3.1): the ENABLED response is empty.
    assert client.ok("ENABLE X-UNKNOWN UTF8=ONLY") == [b"* ENABLED\r\n"]
    assert client.ok("ENABLE CONDSTORE X-FOO") == [b"* ENABLED CONDSTORE\r\n"]
    assert client.ok("ENABLE condstore") == [b"* ENABLED\r\n"]  # already enabled
    assert client.ok("ENABLE QRESYNC CONDSTORE") == [b"* ENABLED QRESYNC\r\n"]
    assert client.status("ENABLE") == b"BAD"
    client.alive()
    imapc = account.client()
    assert imapc.enable("CONDSTORE", "X-NOPE") == [b"CONDSTORE"]
    imapc.logout()


def test_unselect_leaves_deleted_messages_alone(account):
    maildir = account.maildir()
    for n in range(3):
        deliver(maildir, b"Subject: u\n\nbody\n", subdir="cur", name=f"17000000{n}.M{n}P1.u:2,")
    client = account.raw_select()
    client.ok("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    assert client.ok("UNSELECT") == []
    assert client.status("FETCH 1 FLAGS") == b"BAD"  # no mailbox selected now
    assert client.status("UNSELECT") == b"BAD"
    client.ok("SELECT INBOX")
    assert client.ok("SEARCH DELETED") == [b"* SEARCH 1 2\r\n"]
    client.ok("CLOSE")
    client.ok("SELECT INBOX")
    assert client.ok("SEARCH ALL") == [b"* SEARCH 1\r\n"]
    imapc = account.client()
    imapc.select_folder("INBOX")
    imapc.unselect_folder()
    imapc.logout()


def test_children(account):
    client = account.raw_login()
    client.ok("CREATE Projects.2024.Q1")  # creates Projects and Projects.2024 too
    assert client.status("CREATE Projects.2024") == b"NO"
    client.ok("CREATE Lone")
    for sub in ("cur", "new"):  # a level another server left without a folder of its own
        (account.path / ".Lists.Python" / sub).mkdir(parents=True)
    lines = client.ok('LIST "" *')
    assert b'* LIST (\\HasChildren) "." Projects\r\n' in lines
    assert b'* LIST (\\Noselect \\HasChildren) "." Lists\r\n' in lines
    assert b'* LIST (\\HasChildren) "." Projects.2024\r\n' in lines
    assert b'* LIST (\\HasNoChildren) "." Projects.2024.Q1\r\n' in lines
    assert b'* LIST (\\HasNoChildren) "." Lone\r\n' in lines
    assert b'* LIST (\\HasNoChildren) "." INBOX\r\n' in lines


# -- SASL-IR, AUTHENTICATE PLAIN and LOGIN -----------------------------------------------------


def test_authenticate_plain_with_an_initial_response(account):
    client = account.raw()
    token = b64(f"\0{account.user}\0{SHARED_PASSWORD}".encode())
    lines, done = client.cmd(f"AUTHENTICATE PLAIN {token}")
    assert lines == [] and re.match(rb"t\d+ OK \[CAPABILITY [^]]+\] Logged in\r\n", done)
    client.ok("SELECT INBOX")
    # imaplib sends PLAIN without an initial response: one `+ ` round trip.
    lib = imaplib.IMAP4("127.0.0.1", account.port, timeout=10)
    typ, _ = lib.authenticate("PLAIN", lambda _c: f"\0{account.user}\0{SHARED_PASSWORD}".encode())
    assert typ == "OK"
    lib.logout()


def test_authenticate_login_with_and_without_initial_response(account):
    client = account.raw()
    client.send(b"a1 AUTHENTICATE LOGIN\r\n")
    assert client.line() == b"+ VXNlcm5hbWU6\r\n"  # "Username:"
    client.send(b64(account.user.encode()).encode() + b"\r\n")
    assert client.line() == b"+ UGFzc3dvcmQ6\r\n"  # "Password:"
    client.send(b64(SHARED_PASSWORD.encode()).encode() + b"\r\n")
    assert re.match(rb"a1 OK \[CAPABILITY ", client.line())
    other = account.raw()
    other.send(f"a1 AUTHENTICATE LOGIN {b64(account.user.encode())}\r\n".encode())
    assert other.line() == b"+ UGFzc3dvcmQ6\r\n"
    other.send(b64(SHARED_PASSWORD.encode()).encode() + b"\r\n")
    assert re.match(rb"a1 OK ", other.line())


def test_broken_authentication_gets_the_rfc_response_and_the_session_goes_on(account):
    client = account.raw()
    # Broken base64: in the initial response and in a continuation.
    assert client.status("AUTHENTICATE PLAIN not-base64!") == b"BAD"
    client.send(b"a1 AUTHENTICATE PLAIN\r\n")
    assert client.line() == b"+ \r\n"
    client.send(b"%%%%\r\n")
    assert client.line().startswith(b"a1 BAD ")
    # `*` cancels (RFC 3501 6.2.2: tagged BAD), at either step of LOGIN.
    client.send(b"a2 AUTHENTICATE PLAIN\r\n")
    assert client.line() == b"+ \r\n"
    client.send(b"*\r\n")
    assert client.line() == b"a2 BAD Authentication cancelled\r\n"
    client.send(f"a3 AUTHENTICATE LOGIN {b64(account.user.encode())}\r\n".encode())
    assert client.line() == b"+ UGFzc3dvcmQ6\r\n"
    client.send(b"*\r\n")
    assert client.line() == b"a3 BAD Authentication cancelled\r\n"
    # A PLAIN response that is not three fields, an unknown mechanism, a wrong password and
    # someone else's authorization identity.
    assert client.status(f"AUTHENTICATE PLAIN {b64(b'just-one-field')}") == b"BAD"
    lines, done = client.cmd("AUTHENTICATE CRAM-MD5")
    assert re.match(rb"t\d+ NO ", done), done
    lines, done = client.cmd(f"AUTHENTICATE PLAIN {b64(f'{NUL}{account.user}{NUL}x'.encode())}")
    assert re.match(rb"t\d+ NO \[AUTHENTICATIONFAILED\] ", done), done
    token = b64(f"root\0{account.user}\0{SHARED_PASSWORD}".encode())
    lines, done = client.cmd(f"AUTHENTICATE PLAIN {token}")
    assert re.match(rb"t\d+ NO \[AUTHENTICATIONFAILED\] ", done), done
    # The session goes on: a good login works, and AUTHENTICATE after it is BAD.
    token = b64(f"{account.user}\0{account.user}\0{SHARED_PASSWORD}".encode())
    client.ok(f"AUTHENTICATE PLAIN {token}")
    assert client.status(f"AUTHENTICATE PLAIN {token}") == b"BAD"
    client.ok("SELECT INBOX")


# -- LITERAL+ ------------------------------------------------------------------------------------


def test_literal_plus_needs_no_continuation(account):
    client = account.raw()
    user, password = account.user.encode(), SHARED_PASSWORD.encode()
    lines, done = client.cmd(
        b"LOGIN {%d+}\r\n%s {%d+}\r\n%s" % (len(user), user, len(password), password)
    )
    assert re.match(rb"t\d+ OK ", done), done
    wire = crlf(b"Subject: literal plus\n\nbody\n")
    # Pipelined: three APPENDs in one write, no `+` awaited.
    client.send(
        b"".join(b"p%d APPEND INBOX {%d+}\r\n%s\r\n" % (n, len(wire), wire) for n in range(3))
    )
    for n in range(3):
        _lines, done = client.until_tagged(f"p{n}")
        assert re.match(rb"p\d OK \[APPENDUID \d+ %d\] " % (n + 1), done), done
    assert client.buf == b""  # and no continuation request was ever sent
    assert client.ok("STATUS INBOX (MESSAGES)") == [b"* STATUS INBOX (MESSAGES 3)\r\n"]
