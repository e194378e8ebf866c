"""imapd end to end with imaplib and imapclient: every RFC 3501 command in its states, response
codes, flags and keywords, \\Recent, UIDs across sessions and restarts, and a Maildir that another
server (Dovecot, Courier) wrote."""

from __future__ import annotations

import datetime
import imaplib
import os
import re

import imapclient
import pytest

from support.imap import crlf, message_files, shared_imapd, tree
from support.site import deliver

UTC = datetime.UTC

SIMPLE = b"From: a@example.org\nTo: b@example.org\nSubject: simple\n\nhello\n"


shared = shared_imapd("imap-commands")


@pytest.fixture
def account(shared):
    """The module's server, logging in as a user (with a mailbox) of this test alone."""
    return shared.account()


def message(subject: str, body: str = "body\n", extra: str = "") -> bytes:
    return (
        f"From: Sender <sender@example.org>\nTo: rcpt@example.org\nSubject: {subject}\n"
        f"Date: Mon, 01 Jan 2024 12:00:00 +0000\n{extra}\n{body}"
    ).encode()


def imap_error(call, *args) -> str:
    with pytest.raises(imaplib.IMAP4.error) as info:
        call(*args)
    return str(info.value)


def imapclient_error(call, *args, **kwargs) -> str:
    with pytest.raises(imapclient.exceptions.IMAPClientError) as info:
        call(*args, **kwargs)
    return str(info.value)


# -- any state and not authenticated --------------------------------------------------------


def test_capability_noop_logout(account):
    server = account
    client = imaplib.IMAP4("127.0.0.1", server.port, timeout=10)
    assert "IMAP4REV1" in client.capabilities
    assert "AUTH=PLAIN" in client.capabilities
    assert client.noop()[0] == "OK"
    typ, data = client.capability()
    assert typ == "OK" and b"IMAP4rev1" in data[0]
    typ, data = client.logout()
    assert typ == "BYE"


@pytest.mark.parametrize("state", ["not authenticated", "authenticated", "selected"])
def test_capability_noop_logout_in_every_state(account, state):
    server = account
    client = imaplib.IMAP4("127.0.0.1", server.port, timeout=10)
    if state != "not authenticated":
        client.login(server.user, server.passwords[server.user])
    if state == "selected":
        client.select("INBOX")
    typ, data = client.capability()
    assert typ == "OK" and data[0].startswith(b"IMAP4rev1 ")
    assert client.noop()[0] == "OK"
    assert client.logout()[0] == "BYE"


def test_login_failure_then_success(account):
    server = account
    client = imaplib.IMAP4("127.0.0.1", server.port, timeout=10)
    assert "AUTHENTICATIONFAILED" in imap_error(client.login, server.user, "Wr0ngPa55")
    assert "AUTHENTICATIONFAILED" in imap_error(client.login, "nobody", "pw")
    assert client.login(server.user, server.passwords[server.user])[0] == "OK"
    assert client.noop()[0] == "OK"
    client.logout()
    log = server.log()
    assert f"imap auth failed for user {server.user} from 127.0.0.1" in log
    assert "Wr0ngPa55" not in log


def test_login_with_quoted_password_containing_a_space(account):
    server = account
    assert " " in server.passwords[server.user]
    client = server.imaplib()
    assert client.select("INBOX")[0] == "OK"
    client.logout()


def test_authenticate_plain(account):
    server = account
    client = imaplib.IMAP4("127.0.0.1", server.port, timeout=10)
    user, password = server.user, server.passwords[server.user]
    typ, _ = client.authenticate("PLAIN", lambda _challenge: f"\0{user}\0{password}".encode())
    assert typ == "OK"
    assert client.select("INBOX")[0] == "OK"
    client.logout()
    other = imapclient.IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10)
    other.plain_login(user, password)
    assert other.select_folder("INBOX")[b"EXISTS"] == 0
    other.logout()
    failing = imapclient.IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10)
    with pytest.raises(imapclient.exceptions.LoginError):
        failing.plain_login(user, "nope")
    failing.logout()


# -- SELECT and EXAMINE ---------------------------------------------------------------------------


def test_select_reports_mailbox_state(account):
    server = account
    maildir = server.maildir()
    deliver(maildir, message("one"), subdir="cur", name="1700000001.M1P1.host:2,S")
    deliver(maildir, message("two"), name="1700000002.M2P1.host")
    client = server.client()
    info = client.select_folder("INBOX")
    assert info[b"EXISTS"] == 2
    assert info[b"RECENT"] == 2  # both are new to IMAP, wherever the MTA put them (as Dovecot)
    assert info[b"UNSEEN"] == [b"2"]  # the first unseen message
    assert info[b"UIDNEXT"] == 3
    assert info[b"UIDVALIDITY"] > 0
    assert info[b"READ-WRITE"] is True
    assert set(info[b"FLAGS"]) >= {b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Seen", b"\\Draft"}
    assert b"\\*" in info[b"PERMANENTFLAGS"]
    assert b"\\Seen" in info[b"PERMANENTFLAGS"]
    client.logout()


def test_select_missing_mailbox_leaves_nothing_selected(account):
    server = account
    client = server.imaplib()
    assert client.select("INBOX")[0] == "OK"
    typ, data = client.select("Nonexistent")
    assert typ == "NO" and b"Mailbox does not exist" in data[0]
    client.state = "SELECTED"  # imaplib itself would refuse to send FETCH now
    assert "FETCH not allowed now" in imap_error(client.fetch, "1", "(FLAGS)")
    client.state = "AUTH"
    client.logout()


def test_examine_is_read_only(account):
    server = account
    path = deliver(server.maildir(), message("new one"))
    client = server.client()
    info = client.select_folder("INBOX", readonly=True)
    assert b"READ-ONLY" in info and b"READ-WRITE" not in info
    assert info[b"RECENT"] == 1
    client.use_uid = False
    data = client.fetch([1], ["BODY[]"])
    assert data[1][b"BODY[]"] == crlf(message("new one"))
    assert b"\\Seen" not in client.get_flags([1])[1]
    assert "READ-ONLY" in imapclient_error(client.add_flags, [1], [b"\\Deleted"])
    assert "READ-ONLY" in imapclient_error(client.expunge)
    client.logout()
    # EXAMINE changed nothing on disk: the message is still new, unseen and \Recent.
    assert path.exists()
    second = server.client()
    assert second.select_folder("INBOX")[b"RECENT"] == 1
    second.logout()


def test_close_after_examine_expunges_nothing(account):
    server = account
    client = server.client()
    client.append("INBOX", SIMPLE, flags=[b"\\Deleted"])
    client.select_folder("INBOX", readonly=True)
    client.close_folder()
    assert client.select_folder("INBOX")[b"EXISTS"] == 1
    client.unselect_folder()
    client.logout()
    assert len(message_files(server.path)) == 1


# -- mailbox management -------------------------------------------------------------------------


def test_create_list_delete(account):
    server = account
    client = server.client()
    client.create_folder("Projects")
    client.create_folder("Projects.2024")
    client.create_folder("Work.Reports")  # creates its superior too (RFC 3501 6.3.3)
    (server.path / ".Lists.Python" / "cur").mkdir(parents=True)  # a level another server
    (server.path / ".Lists.Python" / "new").mkdir()  # left without a folder of its own
    names = {name: set(flags) for flags, _sep, name in client.list_folders()}
    assert names["INBOX"] >= {b"\\HasNoChildren"}
    assert names["Projects"] >= {b"\\HasChildren"}
    assert names["Projects.2024"] >= {b"\\HasNoChildren"}
    assert names["Work"] >= {b"\\HasChildren"} and b"\\Noselect" not in names["Work"]
    assert names["Lists"] >= {b"\\Noselect", b"\\HasChildren"}
    assert names["Sent"] >= {b"\\HasNoChildren"}
    assert "ALREADYEXISTS" in imapclient_error(client.create_folder, "Projects")
    assert "ALREADYEXISTS" in imapclient_error(client.create_folder, "inbox")
    client.delete_folder("Projects.2024")
    assert "NONEXISTENT" in imapclient_error(client.delete_folder, "Projects.2024")
    assert imapclient_error(client.delete_folder, "INBOX")
    names = {name: set(flags) for flags, _sep, name in client.list_folders()}
    assert names["Projects"] >= {b"\\HasNoChildren"}
    assert "Projects.2024" not in names
    client.logout()
    assert ".Projects" in os.listdir(server.path)
    assert ".Projects.2024" not in os.listdir(server.path)


def test_delete_removes_messages_and_a_selected_mailbox_fails_later(account):
    server = account
    client = server.client()
    client.create_folder("Old")
    client.append("Old", message("old"))
    client.delete_folder("Old")
    assert not client.folder_exists("Old")
    client.create_folder("Old")
    assert client.select_folder("Old")[b"EXISTS"] == 0
    client.logout()


def test_list_wildcards(account):
    server = account
    client = server.client()
    for name in ("a", "a.b", "a.b.c", "ab"):
        client.create_folder(name)
    for sub in ("cur", "new"):  # `x.y` without `x`, as another server may leave it
        (server.path / ".x.y" / sub).mkdir(parents=True)

    def listing(reference: str, pattern: str) -> dict[str, set[bytes]]:
        return {name: set(flags) for flags, _s, name in client.list_folders(reference, pattern)}

    assert set(listing("", "a*")) == {"a", "a.b", "a.b.c", "ab"}  # names are case-sensitive
    assert set(listing("", "a%")) == {"a", "ab"}
    assert set(listing("", "A*")) == {"Archive"}
    assert set(listing("", "a.%")) == {"a.b"}
    assert set(listing("a.", "%")) == {"a.b"}
    assert set(listing("", "%.%")) == {"a.b", "x.y"}
    assert set(listing("", "inbox")) == {"INBOX"}
    assert set(listing("", "%")) == {
        "INBOX",
        "a",
        "ab",
        "x",
        "Archive",
        "Drafts",
        "Junk",
        "Sent",
        "Trash",
    }
    assert listing("", "%")["x"] >= {b"\\Noselect", b"\\HasChildren"}
    assert listing("", "*")["a.b.c"] >= {b"\\HasNoChildren"}
    assert listing("", "nothing*") == {}
    typ, data = client._imap.list('""', '""')
    assert typ == "OK" and data == [b'(\\Noselect) "." ""']
    client.logout()


def test_a_recreated_name_gets_a_new_uidvalidity(account):
    server = account
    client = server.client()
    client.create_folder("Box")
    client.append("Box", message("first life"))
    first = client.folder_status("Box", ["UIDVALIDITY"])[b"UIDVALIDITY"]
    client.delete_folder("Box")
    client.create_folder("Box")  # within the same second, as a script does it
    client.append("Box", message("second life"))
    second = client.folder_status("Box", ["UIDVALIDITY", "UIDNEXT"])
    assert second[b"UIDVALIDITY"] != first  # UID 1 is another message now (RFC 3501 2.3.1.1)
    client.rename_folder("Box", "Moved")
    client.create_folder("Box")
    third = client.folder_status("Box", ["UIDVALIDITY"])[b"UIDVALIDITY"]
    assert third not in (first, second[b"UIDVALIDITY"])
    assert client.folder_status("Moved", ["UIDVALIDITY"])[b"UIDVALIDITY"] == second[b"UIDVALIDITY"]
    client.logout()


def test_rename_moves_inferiors(account):
    server = account
    client = server.client()
    client.create_folder("Old")
    client.create_folder("Old.Child")
    client.append("Old.Child", message("kid"))
    client.rename_folder("Old", "New")
    names = {name for _f, _s, name in client.list_folders()}
    assert {"New", "New.Child"} <= names
    assert not {"Old", "Old.Child"} & names
    client.select_folder("New.Child")
    assert client.search() == [1]
    assert "NONEXISTENT" in imapclient_error(client.rename_folder, "Old", "Other")
    assert "ALREADYEXISTS" in imapclient_error(client.rename_folder, "New", "Sent")
    assert imapclient_error(client.rename_folder, "New", "New")
    assert imapclient_error(client.rename_folder, "New", "New.Child.Grandchild")
    client.logout()


def test_rename_inbox_moves_its_messages_and_keeps_an_empty_inbox(account):
    server = account
    client = server.client()
    client.append("INBOX", message("first"), flags=[b"\\Flagged", b"Important"])
    client.append("INBOX", message("second"))
    client.rename_folder("INBOX", "Archived")
    assert client.select_folder("INBOX")[b"EXISTS"] == 0
    client.select_folder("Archived")
    flags = client.get_flags(client.search())
    # Moved into a new folder: new to IMAP there, so \\Recent to this first session.
    assert sorted(flags.values()) == [(b"\\Flagged", b"Important", b"\\Recent"), (b"\\Recent",)]
    client.logout()


def test_subscribe_unsubscribe_lsub(account):
    server = account
    client = server.client()
    client.create_folder("Lists")
    client.create_folder("Lists.python")
    client.create_folder("Lists.rust")
    client.subscribe_folder("Lists.python")
    client.subscribe_folder("INBOX")
    subscribed = {name for _f, _s, name in client.list_sub_folders()}
    assert {"INBOX", "Lists.python", "Sent", "Drafts", "Trash"} <= subscribed
    assert "Lists.rust" not in subscribed
    # `%` reaches a subscribed name's parent, which is shown \Noselect (not subscribed itself).
    by_name = {name: set(flags) for flags, _s, name in client.list_sub_folders("", "Lists%")}
    assert set(by_name) == {"Lists"}
    assert b"\\Noselect" in by_name["Lists"]
    assert {name for _f, _s, name in client.list_sub_folders("", "Lists.*")} == {"Lists.python"}
    client.unsubscribe_folder("Lists.python")
    assert "Lists.python" not in {name for _f, _s, name in client.list_sub_folders()}
    assert "NONEXISTENT" in imapclient_error(client.subscribe_folder, "Nope")
    client.logout()


def test_status(account):
    server = account
    maildir = server.maildir()
    deliver(maildir, message("unseen, new"))
    deliver(maildir, message("seen"), subdir="cur", name="1700000100.M1P1.host:2,S")
    client = server.client()
    status = client.folder_status(
        "INBOX", ["MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN"]
    )
    assert status[b"MESSAGES"] == 2
    assert status[b"RECENT"] == 2  # no session has seen either yet
    assert status[b"UNSEEN"] == 1
    assert status[b"UIDNEXT"] == 3
    validity = status[b"UIDVALIDITY"]
    assert client.select_folder("INBOX")[b"UIDVALIDITY"] == validity
    client.create_folder("Empty")
    assert client.folder_status("Empty", ["MESSAGES", "UIDNEXT"]) == {b"MESSAGES": 0, b"UIDNEXT": 1}
    assert "NONEXISTENT" in imapclient_error(client.folder_status, "Nope", ["MESSAGES"])
    client.logout()


# -- APPEND ---------------------------------------------------------------------------------


def test_append_flags_date_and_literal(account):
    server = account
    client = server.client()
    when = datetime.datetime(2023, 5, 17, 8, 30, 15, tzinfo=UTC)
    reply = client.append(
        "INBOX", message("appended"), flags=[b"\\Seen", b"$Label1"], msg_time=when
    )
    assert re.match(rb"\[APPENDUID \d+ 1\] ", reply)
    client.select_folder("INBOX")
    data = client.fetch([1], ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY.PEEK[]"])[1]
    # "In either case, the Recent flag is also set" (RFC 3501 6.3.11).
    assert set(data[b"FLAGS"]) == {b"\\Seen", b"$Label1", b"\\Recent"}
    assert data[b"INTERNALDATE"].astimezone(UTC).replace(tzinfo=UTC) == when
    assert data[b"BODY[]"] == crlf(message("appended"))
    assert data[b"RFC822.SIZE"] == len(data[b"BODY[]"])
    client.logout()
    files = message_files(server.path)
    assert len(files) == 1 and files[0].parent.name == "cur"
    assert files[0].read_bytes() == message("appended")  # stored with LF line ends
    assert os.listdir(server.path / "tmp") == []


def test_append_to_missing_mailbox_is_trycreate(account):
    server = account
    client = server.imaplib()
    typ, data = client.append("Missing", None, None, message("x"))
    assert typ == "NO" and b"[TRYCREATE]" in data[0]
    client.logout()


def test_append_to_selected_mailbox_announces_exists(account):
    server = account
    client = server.client()
    client.select_folder("INBOX")
    client.append("INBOX", message("x"))
    _text, responses = client.noop()
    assert (1, b"EXISTS") in responses or client.select_folder("INBOX")[b"EXISTS"] == 1
    client.logout()


# -- CHECK, CLOSE, EXPUNGE --------------------------------------------------------------------


def test_check_close_silently_expunges(account):
    server = account
    client = server.imaplib()
    for n in range(3):
        client.append("INBOX", "(\\Deleted)" if n != 1 else None, None, message(f"m{n}"))
    client.select("INBOX")
    assert client.check()[0] == "OK"
    typ, _ = client.close()
    assert typ == "OK"
    assert client.untagged_responses.get("EXPUNGE") is None
    assert len(message_files(server.path)) == 1
    client.select("INBOX")
    typ, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: m1" in data[0][1]
    client.logout()


def test_expunge_reports_each_message(account):
    server = account
    client = server.client()
    for n in range(5):
        client.append("INBOX", message(f"m{n}"))
    client.select_folder("INBOX")
    client.use_uid = False
    client.add_flags([2, 4, 5], [b"\\Deleted"])
    _text, expunged = client.expunge()
    numbers = [n for n, what in expunged if what == b"EXPUNGE"]
    # Every number is valid when it is sent: 5, 4, 2 or 2, 3, 3 are both right.
    assert numbers in ([5, 4, 2], [2, 3, 3])
    client.use_uid = True
    assert client.search() == [1, 3]
    client.logout()
    assert len(message_files(server.path)) == 2


def test_uid_expunge(account):
    server = account
    client = server.client()
    for n in range(3):
        client.append("INBOX", message(f"m{n}"), flags=[b"\\Deleted"])
    client.select_folder("INBOX")
    client.expunge([2])
    assert client.search() == [1, 3]
    client.logout()


# -- SEARCH ---------------------------------------------------------------------------------

SEARCH_MESSAGES = [
    # (message, flags, internal date): internal dates at noon UTC, so any server zone within
    # +-11 hours gives the same day.
    (
        b"From: Alice Example <alice@example.org>\nTo: bob@example.com\nCc: carol@example.net\n"
        b"Subject: Lunch plans\nDate: Mon, 01 Jan 2024 12:00:00 +0000\n"
        b"Message-ID: <m1@example.org>\n\nLet us meet at noon.\n",
        "(\\Seen)",
        "01-Jan-2024 12:00:00 +0000",
    ),
    (
        b"From: Bob <bob@example.com>\nTo: alice@example.org\nBcc: secret@example.net\n"
        b"Subject: Re: Lunch plans\nDate: Tue, 02 Jan 2024 12:00:00 +0000\n"
        b"In-Reply-To: <m1@example.org>\nX-Priority: 1\n\nNoon works. Bring the report.\n",
        "(\\Answered \\Flagged)",
        "15-Feb-2024 12:00:00 +0000",
    ),
    (
        b"From: Carol <carol@example.net>\nTo: Alice <alice@example.org>\n"
        b"Subject: =?UTF-8?B?w5xiZXJ3ZWlzdW5n?= done\nDate: Sun, 10 Mar 2024 12:00:00 +0000\n"
        b"\n" + b"lorem ipsum dolor\n" * 300,
        "(\\Deleted \\Draft $Work)",
        "10-Mar-2024 12:00:00 +0000",
    ),
]
FOURTH = b"From: dave@example.com\nSubject: hello world\n\nZebra crossing\n"

SEARCH_TABLE = [
    ("ALL", "1 2 3 4"),
    ("ANSWERED", "2"),
    ("UNANSWERED", "1 3 4"),
    ("BCC secret", "2"),
    ("BEFORE 1-Feb-2024", "1"),
    ("BODY noon", "1 2"),
    ("BODY REPORT", "2"),
    ("CC carol", "1"),
    ("DELETED", "3"),
    ("UNDELETED", "1 2 4"),
    ("DRAFT", "3"),
    ("UNDRAFT", "1 2 4"),
    ("FLAGGED", "2"),
    ("UNFLAGGED", "1 3 4"),
    ("FROM bob", "2"),
    ('FROM "example.net"', "3"),
    ("HEADER X-Priority 1", "2"),
    ('HEADER X-Priority ""', "2"),
    ("HEADER Message-ID m1@", "1"),
    ("KEYWORD $Work", "3"),
    ("KEYWORD $work", "3"),
    ("UNKEYWORD $Work", "1 2 4"),
    ("KEYWORD Never", ""),
    ("LARGER 4000", "3"),
    ("SMALLER 4000", "1 2 4"),
    ("NEW", "4"),
    ("OLD", "1 2 3"),
    ("RECENT", "4"),
    ("ON 15-Feb-2024", "2"),
    ("SINCE 1-Mar-2024", "3 4"),
    ("SEEN", "1"),
    ("UNSEEN", "2 3 4"),
    ("SENTBEFORE 2-Jan-2024", "1"),
    ("SENTON 2-Jan-2024", "2"),
    ("SENTSINCE 2-Jan-2024", "2 3"),
    ("SUBJECT lunch", "1 2"),
    ('SUBJECT "re: lunch"', "2"),
    ("TEXT zebra", "4"),
    ("TEXT alice@example.org", "1 2 3"),
    ("TO alice", "2 3"),
    ("UID 2:3", "2 3"),
    ("UID 3:*", "3 4"),
    ("2:*", "2 3 4"),
    ("*", "4"),
    ("1,3", "1 3"),
    ("NOT SEEN", "2 3 4"),
    ("NOT NOT SEEN", "1"),
    ("OR SEEN FLAGGED", "1 2"),
    ("OR (FROM bob) (FROM carol)", "2 3"),
    ("OR OR SEEN FLAGGED DELETED", "1 2 3"),
    ("(SEEN)", "1"),
    ("(OR SEEN DELETED) FROM carol", "3"),
    ("NOT (OR SEEN FLAGGED)", "3 4"),
    ("((SEEN) (FROM alice))", "1"),
    ("SEEN FROM bob", ""),
    ("CHARSET US-ASCII FROM bob", "2"),
    ("CHARSET UTF-8 FROM bob", "2"),
    ("charset utf-8 subject LUNCH", "1 2"),
]


def fill_search_mailbox(server) -> None:
    client = server.raw_login()
    for data, flags, date in SEARCH_MESSAGES:
        wire = crlf(data)
        client.ok(f'APPEND INBOX {flags} "{date}" {{{len(wire)}+}}\r\n'.encode() + wire)
    client.ok("SELECT INBOX")  # this session sees them first: \\Recent no more (OLD)
    client.ok("LOGOUT")
    path = deliver(server.maildir(), FOURTH)
    noon = datetime.datetime(2024, 3, 20, 12, tzinfo=UTC).timestamp()
    os.utime(path, (noon, noon))


def test_search_every_key(account):
    server = account
    fill_search_mailbox(server)
    client = server.raw_select()
    wrong = []
    for criteria, expected in SEARCH_TABLE:
        lines = client.ok(f"SEARCH {criteria}")
        found = [line for line in lines if line.startswith(b"* SEARCH")]
        got = found[0][len(b"* SEARCH") :].strip().decode() if len(found) == 1 else lines
        if got != expected:
            wrong.append((criteria, expected, got))
    assert wrong == []


def test_search_charsets_and_uid_search(account):
    server = account
    fill_search_mailbox(server)
    client = server.raw_select()
    needle = "Überweisung".encode()
    client.send(b"u1 SEARCH CHARSET UTF-8 SUBJECT {%d}\r\n" % len(needle))
    assert client.line().startswith(b"+ ")
    client.send(needle + b"\r\n")
    lines, done = client.until_tagged("u1")
    assert lines == [b"* SEARCH 3\r\n"] and done.startswith(b"u1 OK")
    client.send(b"u2 SEARCH CHARSET UTF-8 BODY {5+}\r\nLOREM\r\n")
    lines, done = client.until_tagged("u2")
    assert lines == [b"* SEARCH 3\r\n"]
    lines, done = client.cmd("SEARCH CHARSET KOI8-R FROM bob")
    assert done.split(b" ", 1)[1].startswith(b"NO [BADCHARSET")
    assert b"UTF-8" in done and b"US-ASCII" in done
    client.ok("STORE 1 +FLAGS (\\Deleted)")
    client.ok("EXPUNGE")  # message 3 is \Deleted too
    assert client.ok("UID SEARCH ALL") == [b"* SEARCH 2 4\r\n"]
    assert client.ok("SEARCH ALL") == [b"* SEARCH 1 2\r\n"]
    assert client.ok("UID SEARCH UID 3:*") == [b"* SEARCH 4\r\n"]
    assert client.ok("UID SEARCH 2") == [b"* SEARCH 4\r\n"]
    client.ok("LOGOUT")


# -- FETCH ----------------------------------------------------------------------------------

THREAD_REPLY = (
    b"From: Replier <re@example.net>\nTo: list@example.net\nCc: a@x.org, b@y.org\n"
    b"Subject: Re: thread\nDate: Mon, 15 Jul 2024 18:30:00 -0700\n"
    b"Message-ID: <reply-2@example.net>\nIn-Reply-To: <reply-1@example.net>\n"
    b"\nThreaded reply.\n"
)
MULTIPART = (
    b"From: a@example.org\nSubject: parts\nMIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed; boundary=BB\n\npreamble\n--BB\n"
    b"Content-Type: text/plain; charset=us-ascii\n\nfirst part\n--BB\n"
    b"Content-Type: application/octet-stream; name=x.bin\n"
    b"Content-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=x.bin\n"
    b"\nAAECAw==\n--BB--\nepilogue\n"
)


def test_fetch_items(account):
    server = account
    client = server.client()
    client.append("INBOX", THREAD_REPLY)
    client.append("INBOX", MULTIPART)
    server.claim_recent()
    client.select_folder("INBOX")
    client.use_uid = False
    data = client.fetch(
        [1],
        [
            "FLAGS",
            "INTERNALDATE",
            "RFC822.SIZE",
            "UID",
            "ENVELOPE",
            "BODY",
            "BODYSTRUCTURE",
            "BODY.PEEK[]",
        ],
    )[1]
    assert data[b"UID"] == 1
    assert data[b"FLAGS"] == ()
    assert isinstance(data[b"INTERNALDATE"], datetime.datetime)
    assert data[b"BODY[]"] == crlf(THREAD_REPLY)
    assert data[b"RFC822.SIZE"] == len(data[b"BODY[]"])
    envelope = data[b"ENVELOPE"]
    assert envelope.subject == b"Re: thread"
    assert envelope.message_id == b"<reply-2@example.net>"
    assert envelope.in_reply_to == b"<reply-1@example.net>"
    assert envelope.from_[0].mailbox == b"re" and envelope.from_[0].host == b"example.net"
    assert envelope.sender == envelope.from_ and envelope.reply_to == envelope.from_
    assert [a.mailbox for a in envelope.cc] == [b"a", b"b"]
    assert envelope.bcc is None
    assert data[b"BODYSTRUCTURE"][:2] == (b"TEXT", b"PLAIN")
    assert data[b"BODY"][:2] == (b"TEXT", b"PLAIN")
    parts = client.fetch(
        [2],
        [
            "BODY.PEEK[1]",
            "BODY.PEEK[2]",
            "BODY.PEEK[2.MIME]",
            "BODY.PEEK[TEXT]",
            "BODY.PEEK[HEADER]",
            "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]",
            "BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT FROM)]",
            "BODY.PEEK[]<10.9>",
            "BODY.PEEK[1]<5.100>",
            "BODY.PEEK[]<9999.5>",
            "RFC822.HEADER",
            "BODYSTRUCTURE",
        ],
    )[2]
    assert parts[b"BODY[1]"] == b"first part"
    assert parts[b"BODY[2]"] == b"AAECAw=="
    assert parts[b"BODY[2.MIME]"].startswith(b"Content-Type: application/octet-stream")
    assert parts[b"BODY[2.MIME]"].endswith(b"filename=x.bin\r\n\r\n")
    assert parts[b"BODY[TEXT]"] == crlf(MULTIPART).split(b"\r\n\r\n", 1)[1]
    assert parts[b"BODY[HEADER]"] == crlf(MULTIPART).split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    assert parts[b"RFC822.HEADER"] == parts[b"BODY[HEADER]"]
    fields = [k for k in parts if k.startswith(b"BODY[HEADER.FIELDS (")]
    assert parts[fields[0]] == b"From: a@example.org\r\nSubject: parts\r\n\r\n"
    nots = [k for k in parts if k.startswith(b"BODY[HEADER.FIELDS.NOT")]
    assert parts[nots[0]].startswith(b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed")
    assert parts[b"BODY[]<10>"] == crlf(MULTIPART)[10:19]
    assert parts[b"BODY[1]<5>"] == b" part"
    assert parts[b"BODY[]<9999>"] == b""
    structure = parts[b"BODYSTRUCTURE"]
    assert structure.is_multipart
    assert structure[1] == b"MIXED"
    assert [part[:2] for part in structure[0]] == [
        (b"TEXT", b"PLAIN"),
        (b"APPLICATION", b"OCTET-STREAM"),
    ]
    assert client.get_flags([1, 2]) == {1: (), 2: ()}  # PEEK and RFC822.HEADER set nothing
    client.logout()


def test_fetch_rfc822_forms_and_macros(account):
    server = account
    client = server.imaplib()
    client.append("INBOX", None, None, THREAD_REPLY)
    client.select("INBOX")
    typ, data = client.fetch("1", "(RFC822.HEADER RFC822.TEXT)")
    assert typ == "OK"
    assert data[0][0].startswith(b"1 (RFC822.HEADER {")
    assert data[0][1] == crlf(THREAD_REPLY).split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    assert data[1] == (b" RFC822.TEXT {17}", b"Threaded reply.\r\n")
    typ, data = client.fetch("1", "FAST")
    assert re.match(rb'1 \(FLAGS \(.*\) INTERNALDATE "[^"]+" RFC822.SIZE \d+\)', data[0])
    typ, data = client.fetch("1", "ALL")
    assert b"ENVELOPE (" in data[0] and b"RFC822.SIZE" in data[0]
    typ, data = client.fetch("1", "FULL")
    assert b"ENVELOPE (" in data[0] and b"BODY (" in data[0]
    typ, data = client.fetch("1", "RFC822")
    assert data[0][1] == crlf(THREAD_REPLY)
    typ, data = client.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0]
    client.logout()


def test_body_fetch_sets_seen_and_reports_flags(account):
    server = account
    client = server.raw_login()
    wire = crlf(SIMPLE)
    client.ok(b"APPEND INBOX {%d+}\r\n" % len(wire) + wire)
    client.ok(b"APPEND INBOX {%d+}\r\n" % len(wire) + wire)
    server.claim_recent()
    client.ok("SELECT INBOX")
    lines = client.ok("FETCH 1 BODY[TEXT]")
    assert lines == [b"* 1 FETCH (BODY[TEXT] {7}\r\nhello\r\n FLAGS (\\Seen))\r\n"]
    lines = client.ok("FETCH 1 BODY[TEXT]")  # already seen: the FLAGS item may come again
    assert lines[0].startswith(b"* 1 FETCH (BODY[TEXT] {7}\r\nhello\r\n")
    lines = client.ok("FETCH 2 (FLAGS BODY.PEEK[TEXT])")
    assert lines == [b"* 2 FETCH (FLAGS () BODY[TEXT] {7}\r\nhello\r\n)\r\n"]
    lines = client.ok("UID FETCH 2 RFC822.TEXT")
    assert lines[0].startswith(b"* 2 FETCH (UID 2 RFC822.TEXT {7}\r\nhello\r\n")
    assert b"FLAGS (\\Seen)" in lines[0]
    client.ok("LOGOUT")


# -- STORE and flags ----------------------------------------------------------------------------


def test_store_variants(account):
    server = account
    client = server.raw_login()
    wire = crlf(SIMPLE)
    for _ in range(3):
        client.ok(b"APPEND INBOX {%d+}\r\n" % len(wire) + wire)
    server.claim_recent()
    client.ok("SELECT INBOX")
    assert client.ok("STORE 1 FLAGS (\\Seen \\Flagged)") == [
        b"* 1 FETCH (FLAGS (\\Flagged \\Seen))\r\n"
    ]
    lines = client.ok("STORE 1 +FLAGS (\\Answered $Label)")
    assert lines == [  # a new keyword: the defined flags again first (RFC 3501 7.2.6)
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded $Label)\r\n",
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded $Label "
        b"\\*)] Flags permitted\r\n",
        b"* 1 FETCH (FLAGS (\\Flagged \\Answered \\Seen $Label))\r\n",
    ]
    assert client.ok("STORE 1 -FLAGS (\\Flagged $Label)") == [
        b"* 1 FETCH (FLAGS (\\Answered \\Seen))\r\n"
    ]
    assert client.ok("STORE 1:2 +FLAGS.SILENT (\\Draft)") == []
    assert client.ok("FETCH 1:2 FLAGS") == [
        b"* 1 FETCH (FLAGS (\\Draft \\Answered \\Seen))\r\n",
        b"* 2 FETCH (FLAGS (\\Draft))\r\n",
    ]
    assert client.ok("STORE 2 FLAGS.SILENT ()") == []
    assert client.ok("STORE 2 +FLAGS \\Deleted") == [b"* 2 FETCH (FLAGS (\\Deleted))\r\n"]
    assert client.ok("UID STORE 3 +FLAGS (\\Seen)") == [b"* 3 FETCH (UID 3 FLAGS (\\Seen))\r\n"]
    assert client.ok("UID STORE 1:* -FLAGS.SILENT (\\Seen)") == []
    assert client.ok("UID FETCH 1:* (FLAGS)") == [
        b"* 1 FETCH (UID 1 FLAGS (\\Draft \\Answered))\r\n",
        b"* 2 FETCH (UID 2 FLAGS (\\Deleted))\r\n",
        b"* 3 FETCH (UID 3 FLAGS ())\r\n",
    ]
    # \Recent cannot be stored; unknown system flags neither.
    assert client.status("STORE 1 +FLAGS (\\Recent)") == b"BAD"
    assert client.status("STORE 1 +FLAGS (\\Bogus)") == b"BAD"
    client.ok("LOGOUT")


def test_flags_and_keywords_persist_across_sessions_and_restarts(imapd, daemons, site):
    server = imapd()
    client = server.client()
    client.append("INBOX", SIMPLE)
    client.select_folder("INBOX")
    client.add_flags([1], [b"\\Flagged", b"\\Answered", b"ProjectX", b"$Junk"])
    select = client.select_folder("INBOX")
    assert {b"ProjectX", b"$Junk"} <= set(select[b"FLAGS"])
    assert {b"ProjectX", b"$Junk", b"\\*"} <= set(select[b"PERMANENTFLAGS"])
    client.logout()
    server.daemon.stop()
    again = imapd()
    other = again.client()
    other.select_folder("INBOX")
    assert set(other.get_flags([1])[1]) == {b"\\Flagged", b"\\Answered", b"ProjectX", b"$Junk"}
    other.logout()
    name = message_files(site.mail / "alice")[0].name
    assert re.search(r":2,FR[a-z]{2}$", name)  # sorted letters, keywords as a-z


def test_recent_belongs_to_one_session(account):
    server = account
    deliver(server.maildir(), SIMPLE)
    first = server.client()
    assert first.select_folder("INBOX")[b"RECENT"] == 1
    assert first.get_flags([1])[1] == (b"\\Recent",)
    assert first.search(["RECENT"]) == [1]
    second = server.client()
    assert second.select_folder("INBOX")[b"RECENT"] == 0
    assert second.get_flags([1])[1] == ()
    first.logout()
    second.logout()
    third = server.client()
    assert third.select_folder("INBOX")[b"RECENT"] == 0
    third.logout()


# -- COPY and UID commands ------------------------------------------------------------------------


def test_copy_and_uid_copy(account):
    server = account
    client = server.client()
    for n in range(3):
        client.append("INBOX", message(f"m{n}"), flags=[b"\\Flagged", b"Tag"] if n == 1 else [])
    client.select_folder("INBOX")
    client.copy([2, 3], "Archive")
    client.use_uid = False
    assert "TRYCREATE" in imapclient_error(client.copy, [1], "Missing")
    client.copy([1], "Archive")
    client.use_uid = True
    client.select_folder("Archive")
    assert client.search() == [1, 2, 3]
    got = client.fetch([1, 2, 3], ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    subjects = [got[u][b"BODY[HEADER.FIELDS (SUBJECT)]"].strip() for u in (1, 2, 3)]
    assert subjects == [b"Subject: m1", b"Subject: m2", b"Subject: m0"]
    # Flags are kept, and a copy is \\Recent (RFC 3501 6.4.7) to the first session there.
    assert set(got[1][b"FLAGS"]) == {b"\\Flagged", b"Tag", b"\\Recent"}
    client.select_folder("INBOX")
    assert client.search() == [1, 2, 3]  # the originals stay
    client.logout()
    assert os.listdir(server.path / ".Archive" / "tmp") == []


def test_uid_fetch_store_search_with_gaps(account):
    server = account
    client = server.raw_login()
    wire = crlf(SIMPLE)
    for _ in range(4):
        client.ok(b"APPEND INBOX {%d+}\r\n" % len(wire) + wire)
    server.claim_recent()
    client.ok("SELECT INBOX")
    client.ok("STORE 2 +FLAGS (\\Deleted)")
    client.ok("EXPUNGE")
    assert client.ok("UID FETCH 1:* UID") == [
        b"* 1 FETCH (UID 1)\r\n",
        b"* 2 FETCH (UID 3)\r\n",
        b"* 3 FETCH (UID 4)\r\n",
    ]
    assert client.ok("UID FETCH 2 UID") == []
    assert client.ok("UID FETCH 10:* UID") == [b"* 3 FETCH (UID 4)\r\n"]
    assert client.ok("UID STORE 2:3 +FLAGS (\\Seen)") == [b"* 2 FETCH (UID 3 FLAGS (\\Seen))\r\n"]
    assert client.ok("UID SEARCH SEEN") == [b"* SEARCH 3\r\n"]
    assert client.ok("UID SEARCH UID 2") == [b"* SEARCH\r\n"]
    client.ok("CREATE Bin")
    lines, done = client.cmd("UID COPY 3:5 Bin")
    assert lines == [] and re.match(rb"t\d+ OK \[COPYUID \d+ 3:4 1:2\] ", done)
    lines, done = client.cmd("COPY 1 Bin")
    assert re.match(rb"t\d+ OK \[COPYUID \d+ 1 3\] ", done)
    client.ok("LOGOUT")


# -- UIDs -------------------------------------------------------------------------------------


def test_uids_ascending_never_reused_stable_across_restarts(imapd, site):
    server = imapd()
    client = server.client()
    for n in range(3):
        client.append("INBOX", message(f"m{n}"))
    info = client.select_folder("INBOX")
    validity = info[b"UIDVALIDITY"]
    client.delete_messages([3])
    client.expunge()
    client.append("INBOX", message("m3"))
    deliver(site.maildir("alice"), message("delivered"))
    client.noop()
    assert client.search() == [1, 2, 4, 5]
    client.logout()
    server.daemon.stop()
    again = imapd()
    other = again.client()
    info = other.select_folder("INBOX")
    assert info[b"UIDVALIDITY"] == validity
    assert info[b"UIDNEXT"] == 6
    assert other.search() == [1, 2, 4, 5]
    got = other.fetch([4, 5], ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    assert got[4][b"BODY[HEADER.FIELDS (SUBJECT)]"].strip() == b"Subject: m3"
    assert got[5][b"BODY[HEADER.FIELDS (SUBJECT)]"].strip() == b"Subject: delivered"
    other.logout()


# -- a Maildir another server wrote ---------------------------------------------------------------

DOVECOT_KEYWORDS = b"0 $Label1\n1 Work\n"


def test_foreign_maildir(account):
    server = account
    root = server.maildir()
    first = message("read and flagged")
    deliver(
        root,
        first,
        subdir="cur",
        name=f"1600000001.M100P200.mx1,S={len(first)},W={len(crlf(first))}:2,FS",
    )
    deliver(
        root,
        message("keywords", extra="X-Mailer: mutt\n"),
        subdir="cur",
        name="1600000002.M101P200.mx1:2,Sab",
    )
    deliver(
        root,
        message("crlf on disk", body="line one\r\nline two\r\n")
        .replace(b"\n", b"\r\n")
        .replace(b"\r\r\n", b"\r\n"),
        subdir="cur",
        name="1600000003.M102P200.mx1:2,",
    )
    deliver(root, message("passed"), subdir="cur", name="1600000004.M103P200.mx1:2,PT")
    (root / "dovecot-keywords").write_bytes(DOVECOT_KEYWORDS)
    sent = root / ".Sent"
    deliver(sent, message("sent by courier"), subdir="cur", name="1600000005.M1P9.mx1:2,S")
    (sent / "maildirfolder").touch()
    courier_sub = root / ".Lists.Python"
    deliver(courier_sub, message("list mail"))
    (root / "subscriptions").write_text("INBOX\nSent\n")
    before = tree(root)

    client = server.client()
    names = {name: set(flags) for flags, _s, name in client.list_folders()}
    assert {"INBOX", "Sent", "Lists", "Lists.Python"} <= set(names)
    assert b"\\Noselect" in names["Lists"]
    info = client.select_folder("INBOX")
    # No uidlist says an IMAP session saw them: \\Recent to the first one (as Dovecot).
    assert info[b"EXISTS"] == 4 and info[b"RECENT"] == 4
    assert {b"$Label1", b"Work"} <= set(info[b"FLAGS"])
    flags = client.get_flags([1, 2, 3, 4])
    assert all(b"\\Recent" in f for f in flags.values())
    flags = {uid: tuple(f for f in found if f != b"\\Recent") for uid, found in flags.items()}
    assert set(flags[1]) == {b"\\Flagged", b"\\Seen"}
    assert set(flags[2]) == {b"\\Seen", b"$Label1", b"Work"}
    assert flags[3] == ()
    assert set(flags[4]) == {b"\\Deleted", b"$Forwarded"}
    data = client.fetch([1, 2, 3, 4], ["RFC822.SIZE", "BODY.PEEK[]"])
    for uid in (1, 2, 3, 4):
        assert data[uid][b"RFC822.SIZE"] == len(data[uid][b"BODY[]"])
    assert data[3][b"BODY[]"].endswith(b"\r\n\r\nline one\r\nline two\r\n")
    assert client.search(["KEYWORD", "Work"]) == [2]
    assert client.search(["UNSEEN"]) == [3, 4]
    client.select_folder("Sent", readonly=True)
    sent_data = client.fetch([1], ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])[1]
    assert sent_data[b"FLAGS"] == (b"\\Seen", b"\\Recent")  # EXAMINE claims nothing
    client.select_folder("Lists.Python")
    assert client.search(["RECENT"]) == [1]
    client.logout()
    # Serving it renamed nothing but the claimed new/ message, and kept every byte.
    after = tree(root)
    assert sorted(after.values()) == sorted(before.values())
    assert {k for k in before if "/new/" not in k} <= set(after)


def test_dovecot_uidlist_is_imported(account):
    server = account
    root = server.maildir()
    deliver(root, message("a"), subdir="cur", name="1600000001.M1P1.mx:2,S")
    deliver(root, message("b"), subdir="cur", name="1600000002.M2P1.mx:2,")
    (root / "dovecot-uidlist").write_text(
        "3 V1234567 N40 G0123456789abcdef\n17 :1600000001.M1P1.mx\n35 :1600000002.M2P1.mx\n"
    )
    client = server.client()
    info = client.select_folder("INBOX")
    assert info[b"UIDVALIDITY"] == 1234567
    assert info[b"UIDNEXT"] == 40
    assert info[b"RECENT"] == 0  # Dovecot's sessions saw them
    assert client.search() == [17, 35]
    client.append("INBOX", message("c"))
    assert client.search() == [17, 35, 40]
    client.logout()


def test_users_cannot_see_each_other(account, shared):
    server = account
    other = shared.account()
    deliver(other.maildir(), SIMPLE)
    client = server.client()
    assert client.select_folder("INBOX")[b"EXISTS"] == 0
    assert imapclient_error(client.select_folder, f"../{other.user}")
    client.logout()
    assert list(tree(server.path)) == []
