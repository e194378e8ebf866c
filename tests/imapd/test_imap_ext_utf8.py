"""UTF-8 mailbox names over real sockets: UTF8=ACCEPT (RFC 6855) and IMAP4rev2 (RFC 9051 5.1)
switch a session from modified UTF-7 to UTF-8 names both ways, the store keeps modified UTF-7 on
disk, and a session that enabled neither sees exactly what it saw before. Then the utf8-literal
of APPEND and CATENATE (RFC 6855 4), the names refused (not UTF-8: BAD; control characters and
separators: NO, nothing created), and OLDNAME for a denormalized name in a rev2 session (RFC 9051
6.3.2, 6.3.4-6, 6.3.9.7)."""

from __future__ import annotations

import re
import unicodedata

import pytest

from support.imap import Raw, crlf, folders, shared_imapd

shared = shared_imapd("imap-ext-utf8")

# Names and their modified UTF-7 forms, written out by hand (RFC 3501 5.1.3): UTF-16BE, base64
# with "," for "/", no padding, between "&" and "-".
ARGER, ARGER_7 = "Ärger", b"&AMQ-rger"
NIHON_7 = b"&ZeVnLA-"  # 日本: U+65E5 U+672C
OL, OL_7 = "Öl", b"&ANY-l"
UBER_7 = b"&ANw-ber"  # Über
AKE = "Åke"  # NFC: U+00C5
AKE_NFD = "A\u030ake"  # A and COMBINING RING ABOVE
AKE_7 = b"&AMU-ke"
OHM_SIGN = "\u2126hm"  # OHM SIGN; NFC makes it U+03A9 GREEK CAPITAL LETTER OMEGA
OMEGA = "\u03a9hm"


def q(name: str) -> bytes:
    """A name as a quoted string of UTF-8 octets."""
    return b'"' + name.encode() + b'"'


def enable(client: Raw, what: str) -> Raw:
    assert client.ok(f"ENABLE {what}") == [f"* ENABLED {what}\r\n".encode()]
    return client


def utf8_session(account, enabler: str = "UTF8=ACCEPT") -> Raw:
    return enable(account.raw_login(), enabler)


def test_advertised_and_enabled(shared):
    account = shared.account()
    client = account.raw()
    assert b"UTF8=ACCEPT" in client.ok("CAPABILITY")[0].split()
    assert client.status("ENABLE UTF8=ACCEPT") == b"BAD"  # authenticated state only
    client.ok(f'LOGIN {account.user} "{account.passwords[account.user]}"')
    assert client.ok("ENABLE utf8=accept") == [b"* ENABLED UTF8=ACCEPT\r\n"]
    assert client.ok("ENABLE UTF8=ACCEPT") == [b"* ENABLED\r\n"]  # once
    # RFC 5161: ENABLE changes no capability.
    assert b"UTF8=ACCEPT" in client.ok("CAPABILITY")[0].split()


@pytest.mark.parametrize("enabler", ["UTF8=ACCEPT", "IMAP4rev2"])
def test_names_round_trip_both_ways(shared, enabler):
    account = shared.account()
    utf8 = utf8_session(account, enabler)
    rev1 = account.raw_login()
    name = f"{ARGER}.日本"

    # CREATE in UTF-8: on disk and to the other session in modified UTF-7.
    utf8.ok(b"CREATE " + q(name))
    assert {"." + ARGER_7.decode(), "." + (ARGER_7 + b"." + NIHON_7).decode()} <= set(
        folders(account.path)
    )
    assert utf8.ok('LIST "" "Ä*"') == [
        b'* LIST (\\HasChildren) "." ' + q(ARGER) + b"\r\n",
        b'* LIST (\\HasNoChildren) "." ' + q(name) + b"\r\n",
    ]
    assert rev1.ok('LIST "" &AMQ-*') == [
        b'* LIST (\\HasChildren) "." ' + ARGER_7 + b"\r\n",
        b'* LIST (\\HasNoChildren) "." ' + ARGER_7 + b"." + NIHON_7 + b"\r\n",
    ]

    # STATUS, APPEND and SELECT by the UTF-8 name; the rev1 session counts the same message.
    message = crlf(b"Subject: hi\n\nbody\n")
    utf8.send(b"a1 APPEND " + q(name) + b" {%d+}\r\n%s\r\n" % (len(message), message))
    assert utf8.until_tagged("a1")[1].startswith(b"a1 OK [APPENDUID ")
    assert utf8.ok(b"STATUS " + q(name) + b" (MESSAGES)") == [
        b"* STATUS " + q(name) + b" (MESSAGES 1)\r\n"
    ]
    assert rev1.ok(b"STATUS " + ARGER_7 + b"." + NIHON_7 + b" (MESSAGES)") == [
        b"* STATUS " + ARGER_7 + b"." + NIHON_7 + b" (MESSAGES 1)\r\n"
    ]
    lines = utf8.ok(b"SELECT " + q(name))
    assert b"* 1 EXISTS\r\n" in lines
    if enabler == "IMAP4rev2":
        assert b'* LIST (\\HasNoChildren) "." ' + q(name) + b"\r\n" in lines
    assert utf8.ok("FETCH 1 (BODY.PEEK[])")[0].endswith(message + b")\r\n")
    utf8.ok("UNSELECT")

    # RENAME moves the inferior along; both sessions see the new names in their own form.
    utf8.ok(b"RENAME " + q(ARGER) + b" " + q(OL))
    assert utf8.ok('LIST "" "*l*"') == [
        b'* LIST (\\HasChildren) "." ' + q(OL) + b"\r\n",
        b'* LIST (\\HasNoChildren) "." ' + q(f"{OL}.日本") + b"\r\n",
    ]
    assert rev1.ok('LIST "" &ANY-*') == [
        b'* LIST (\\HasChildren) "." ' + OL_7 + b"\r\n",
        b'* LIST (\\HasNoChildren) "." ' + OL_7 + b"." + NIHON_7 + b"\r\n",
    ]

    # The other way: a name the rev1 session makes in modified UTF-7.
    rev1.ok(b"CREATE " + UBER_7)
    assert utf8.ok('LIST "" "Ü*"') == [b'* LIST (\\HasNoChildren) "." ' + q("Über") + b"\r\n"]
    utf8.ok(b"SUBSCRIBE " + q("Über"))
    assert rev1.ok(b'LSUB "" &ANw-*') == [b'* LSUB () "." ' + UBER_7 + b"\r\n"]
    assert utf8.ok('LSUB "" "Ü*"') == [b'* LSUB () "." ' + q("Über") + b"\r\n"]

    # DELETE by UTF-8 name; nothing of them is left.
    for gone in (f"{OL}.日本", OL, "Über"):
        utf8.ok(b"DELETE " + q(gone))
    assert rev1.ok('LIST "" &ANY-*') == []
    assert not [f for f in folders(account.path) if f.startswith(".&A")]


def test_literal_and_ampersand_in_utf8(shared):
    account = shared.account()
    utf8 = utf8_session(account)
    rev1 = account.raw_login()
    # A name as a literal (LITERAL+), and "&", which is just a character in UTF-8 names.
    raw = f"{ARGER}.x".encode()
    utf8.send(b"a1 CREATE {%d+}\r\n%s\r\n" % (len(raw), raw))
    assert utf8.until_tagged("a1")[1].startswith(b"a1 OK")
    utf8.ok(b'CREATE "a&b"')
    assert rev1.ok('LIST "" a*') == [b'* LIST (\\HasNoChildren) "." a&-b\r\n']
    assert rev1.ok('LIST "" &AMQ-*') == [
        b'* LIST (\\HasChildren) "." ' + ARGER_7 + b"\r\n",
        b'* LIST (\\HasNoChildren) "." ' + ARGER_7 + b".x\r\n",
    ]
    assert utf8.ok('LIST "" a*') == [b'* LIST (\\HasNoChildren) "." a&b\r\n']  # an atom
    # "&-" in a UTF-8 session is the two characters, no folder here.
    assert utf8.status(b"SELECT a&-b") == b"NO"


def test_session_without_it_is_unchanged(shared):
    account = shared.account()
    rev1 = account.raw_login()
    before = folders(account.path)
    # 8-bit octets are no modified UTF-7: NO, as before; names come as modified UTF-7.
    _lines, done = rev1.cmd(b"CREATE " + q(ARGER))
    assert re.match(rb"t\d+ NO \[CANNOT\] ", done), done
    assert folders(account.path) == before
    rev1.ok(b"CREATE " + ARGER_7)
    assert rev1.ok(b'LIST "" ' + ARGER_7) == [b'* LIST (\\HasNoChildren) "." ' + ARGER_7 + b"\r\n"]
    assert rev1.status(b"SELECT " + q(ARGER)) == b"NO"
    # UNAUTHENTICATE forgets ENABLE with the rest: modified UTF-7 again.
    utf8 = utf8_session(account)
    assert utf8.ok('LIST "" "Ä*"') == [b'* LIST (\\HasNoChildren) "." ' + q(ARGER) + b"\r\n"]
    utf8.ok("UNAUTHENTICATE")
    utf8.ok(f'LOGIN {account.user} "{account.passwords[account.user]}"')
    assert utf8.ok(b'LIST "" &AMQ-*') == [b'* LIST (\\HasNoChildren) "." ' + ARGER_7 + b"\r\n"]


def test_names_refused(shared):
    account = shared.account()
    utf8 = utf8_session(account, "IMAP4rev2")
    before = folders(account.path)
    for command in (
        b'CREATE "\xc3"',  # cut short
        b'CREATE "a\xffb"',
        b"CREATE {2+}\r\n\xed\xa0",  # a surrogate is no UTF-8
        b'RENAME INBOX "\xe6\x97"',
        b'SELECT "\xc0\xae"',  # overlong
        b'LIST "" "\xff*"',
        b'STATUS "\xfe" (MESSAGES)',
    ):
        lines, done = utf8.cmd(command)
        assert re.match(rb"t\d+ BAD Mailbox name is not valid UTF-8\r\n", done), (command, done)
    for name in ("a\u0085b", "a\u2028b", "a\u2029b", "a\u009fb", "a\x7fb"):
        lines, done = utf8.cmd(b"CREATE " + q(name))
        assert re.match(rb"t\d+ NO \[CANNOT\] Invalid mailbox name: character ", done), (
            name,
            done,
        )
    assert folders(account.path) == before
    utf8.alive()


def test_append_utf8_literal(shared):
    account = shared.account()
    message = crlf(
        "From: Jörg <j@example.org>\nTo: 日本 <n@example.jp>\nSubject: Grüße\n\nHallo\n".encode()
    )
    literal = b"UTF8 (~{%d+}\r\n%s)" % (len(message), message)
    rev2_only = utf8_session(account, "IMAP4rev2")
    rev2_only.send(b"a1 APPEND INBOX " + literal + b"\r\n")
    assert rev2_only.until_tagged("a1")[1] == b"a1 BAD UTF8 needs ENABLE UTF8=ACCEPT first\r\n"
    rev2_only.alive()

    client = utf8_session(account)
    client.send(b"a2 APPEND INBOX (\\Seen) " + literal + b"\r\n")
    done = client.until_tagged("a2")[1]
    assert done.startswith(b"a2 OK [APPENDUID "), done
    # A synchronizing literal8 inside the parentheses: the server invites it.
    client.send(b"a3 APPEND INBOX UTF8 (~{%d}\r\n" % len(message))
    assert client.raw_line().startswith(b"+ ")
    client.send(message + b")\r\n")
    assert client.until_tagged("a3")[1].startswith(b"a3 OK [APPENDUID ")
    # MULTIAPPEND with two, and CATENATE with a utf8-literal part.
    body = crlf(b"\nsecond body\n")
    client.send(b"a4 APPEND INBOX " + literal + b" () " + literal + b"\r\n")
    done = client.until_tagged("a4")[1]
    assert re.match(rb"a4 OK \[APPENDUID \d+ \d+:\d+\]", done), done
    headers = message.split(b"\r\n\r\n")[0] + b"\r\n"
    client.send(
        b"a5 APPEND INBOX CATENATE (UTF8 (~{%d+}\r\n%s) TEXT {%d+}\r\n%s)\r\n"
        % (len(headers), headers, len(body), body)
    )
    assert client.until_tagged("a5")[1].startswith(b"a5 OK [APPENDUID ")
    client.ok("SELECT INBOX")
    fetched = [client.ok(f"FETCH {n} (BODY.PEEK[])")[0] for n in (1, 2, 3, 4, 5)]
    for line in fetched[:4]:
        assert line.endswith(b"{%d}\r\n%s)\r\n" % (len(message), message)), line
    assert fetched[4].endswith(b"%s%s)\r\n" % (headers, body)), fetched[4]
    assert client.ok("FETCH 1 (FLAGS)") == [b"* 1 FETCH (FLAGS (\\Seen \\Recent))\r\n"]
    # A message with 8-bit headers as a plain literal is taken in any session (imapd/commands/
    # append.py says why).
    plain = account.raw_login()
    plain.send(b"a6 APPEND INBOX {%d+}\r\n%s\r\n" % (len(message), message))
    assert plain.until_tagged("a6")[1].startswith(b"a6 OK [APPENDUID ")
    # Malformed: no literal in the parentheses, or no closing one.
    for bad in (b"UTF8 (x)", b"UTF8 ~{1+}\r\nx", b"UTF8 (~{1+}\r\nx"):
        client.send(b"a7 APPEND INBOX " + bad + b"\r\n")
        assert client.until_tagged("a7")[1].startswith(b"a7 BAD "), bad
    client.alive()


def test_oldname_for_a_denormalized_name(shared):
    account = shared.account()
    client = utf8_session(account, "IMAP4rev2")
    assert unicodedata.normalize("NFC", AKE_NFD) == AKE and AKE_NFD != AKE

    # CREATE: the name is normalized, and a LIST says so (RFC 9051 6.3.4).
    lines, done = client.cmd(b"CREATE " + q(AKE_NFD))
    assert lines == [
        b'* LIST (\\HasNoChildren) "." ' + q(AKE) + b' ("OLDNAME" (' + q(AKE_NFD) + b"))\r\n"
    ]
    assert done.startswith(b"t") and b" OK [MAILBOXID (" in done
    assert "." + AKE_7.decode() in folders(account.path)
    assert client.ok(b"CREATE " + q(AKE + "2")) == []  # already NFC: nothing to say
    # A trailing separator only announces inferiors: the name is without it, OLDNAME as sent.
    assert client.ok(b"CREATE " + q(AKE_NFD + "x.")) == [
        b'* LIST (\\HasNoChildren) "." '
        + q(AKE + "x")
        + b' ("OLDNAME" ('
        + q(AKE_NFD + "x.")
        + b"))\r\n"
    ]
    client.ok(b"DELETE " + q(AKE + "x"))
    # Every command takes the denormalized form (RFC 9051 5.1), patterns too.
    assert client.ok(b'LIST "" ' + q("A\u030a*")) == [
        b'* LIST (\\HasNoChildren) "." ' + q(AKE) + b"\r\n",
        b'* LIST (\\HasNoChildren) "." ' + q(AKE + "2") + b"\r\n",
    ]
    assert client.ok(b"STATUS " + q(AKE_NFD) + b" (MESSAGES)") == [
        b"* STATUS " + q(AKE) + b" (MESSAGES 0)\r\n"
    ]

    # SELECT and EXAMINE: the mailbox's LIST carries OLDNAME (MUST, 6.3.2).
    for verb in (b"SELECT", b"EXAMINE"):
        lines = client.ok(verb + b" " + q(AKE_NFD))
        wanted = (
            b'* LIST (\\HasNoChildren) "." ' + q(AKE) + b' ("OLDNAME" (' + q(AKE_NFD) + b"))\r\n"
        )
        assert wanted in lines, lines
        lines = client.ok(verb + b" " + q(AKE))
        assert b'* LIST (\\HasNoChildren) "." ' + q(AKE) + b"\r\n" in lines, lines
    client.ok("UNSELECT")

    # RENAME: LIST of the normalized new name, OLDNAME the existing name as sent (6.3.6).
    lines = client.ok(b"RENAME " + q(AKE_NFD) + b" " + q(OHM_SIGN))
    assert lines == [
        b'* LIST (\\HasNoChildren) "." ' + q(OMEGA) + b' ("OLDNAME" (' + q(AKE_NFD) + b"))\r\n"
    ]
    lines = client.ok(b"RENAME " + q(OMEGA) + b" " + q(OHM_SIGN + "2"))
    assert lines == [
        b'* LIST (\\HasNoChildren) "." ' + q(OMEGA + "2") + b' ("OLDNAME" (' + q(OMEGA) + b"))\r\n"
    ]
    assert client.ok(b"RENAME " + q(AKE + "2") + b" " + q(AKE + "3")) == []  # nothing new
    assert client.ok(b'LIST "" ' + q(OMEGA + "2")) == [
        b'* LIST (\\HasNoChildren) "." ' + q(OMEGA + "2") + b"\r\n"  # LIST keeps no history
    ]

    # DELETE: \NonExistent with OLDNAME (6.3.5).
    lines = client.ok(b"DELETE " + q(OHM_SIGN + "2"))
    assert lines == [
        b'* LIST (\\NonExistent) "." '
        + q(OMEGA + "2")
        + b' ("OLDNAME" ('
        + q(OHM_SIGN + "2")
        + b"))\r\n"
    ]
    assert client.ok(b"DELETE " + q(AKE + "3")) == []
    assert not [f for f in folders(account.path) if f.startswith(".&A")]


def test_no_oldname_without_rev2(shared):
    """UTF8=ACCEPT alone normalizes the same way but sends no extended LIST: OLDNAME is
    IMAP4rev2's, and an IMAP4rev1 client did not ask for extended LIST data."""
    account = shared.account()
    client = utf8_session(account)
    assert client.ok(b"CREATE " + q(AKE_NFD)) == []
    assert client.ok(b'LIST "" ' + q(AKE_NFD)) == [
        b'* LIST (\\HasNoChildren) "." ' + q(AKE) + b"\r\n"
    ]
    assert not [line for line in client.ok(b"SELECT " + q(AKE_NFD)) if b"OLDNAME" in line]
    rev1 = account.raw_login()
    assert rev1.ok(b'LIST "" ' + AKE_7) == [b'* LIST (\\HasNoChildren) "." ' + AKE_7 + b"\r\n"]


def test_imaplib_in_utf8_mode(shared):
    """Python's imaplib, a real client: `enable("UTF8=ACCEPT")` switches it to UTF-8 commands
    (it sends names as given, so quoted here) and it reads the UTF-8 names back."""
    account = shared.account()
    client = account.imaplib()
    typ, data = client.enable("UTF8=ACCEPT")
    assert typ == "OK" and client.utf8_enabled, data
    assert client.create(f'"{ARGER}.日本"')[0] == "OK"
    typ, data = client.list('""', '"Ä*"')
    assert typ == "OK" and data == [
        b'(\\HasChildren) "." ' + q(ARGER),
        b'(\\HasNoChildren) "." ' + q(f"{ARGER}.日本"),
    ]
    typ, data = client.select(f'"{ARGER}.日本"')
    assert (typ, data) == ("OK", [b"0"])
    client.logout()
