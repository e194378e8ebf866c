"""RFC 3501 where imapd differed from it and from Dovecot, over real sockets: \\Recent for every
message new to IMAP (APPEND, COPY, MOVE, delivery anywhere), claimed by one session."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from support.daemons import child_pids, pooled, sessions_running, wait_for
from support.imap import Raw, crlf, shared_imapd

shared = shared_imapd("imap-rfc3501")


@pytest.fixture
def account(shared):
    return shared.account()


def message(n: int, extra: str = "") -> bytes:
    return f"From: a@example.org\nSubject: m{n}\n{extra}\nbody {n}\n".encode()


def append(client: Raw, mailbox: str, data: bytes, flags: str = "") -> list[bytes]:
    wire = crlf(data)
    return client.ok(f"APPEND {mailbox} {flags} {{{len(wire)}+}}\r\n".encode() + wire)


def searched(client: Raw, criteria: str) -> list[int]:
    lines = [line for line in client.ok(f"SEARCH {criteria}") if line.startswith(b"* SEARCH")]
    assert len(lines) == 1, lines
    return [int(n) for n in lines[0].split()[2:]]


def status(client: Raw, mailbox: str, items: str) -> bytes:
    (line,) = client.ok(f"STATUS {mailbox} ({items})")
    return line


# -- \Recent (RFC 3501 2.3.2) -------------------------------------------------------------


def test_appended_copied_and_moved_messages_are_recent_in_one_session(account):
    """A message is \\Recent in the first session that sees it, however it came, STATUS
    RECENT counts those no session has seen, and EXAMINE leaves them for the next SELECT."""
    writer = account.raw_login()
    append(writer, "INBOX", message(1))
    append(writer, "INBOX", message(2), "(\\Seen)")
    writer.ok("CREATE Box")
    assert status(writer, "INBOX", "RECENT MESSAGES") == b"* STATUS INBOX (RECENT 2 MESSAGES 2)\r\n"

    examiner = account.raw_login()
    assert b"* 2 RECENT\r\n" in examiner.ok("EXAMINE INBOX")
    assert examiner.ok("FETCH 1:* (FLAGS)") == [
        b"* 1 FETCH (FLAGS (\\Recent))\r\n",
        b"* 2 FETCH (FLAGS (\\Seen \\Recent))\r\n",
    ]
    assert searched(examiner, "RECENT") == [1, 2]
    assert searched(examiner, "NEW") == [1]  # \Recent and not \Seen
    assert searched(examiner, "OLD") == []
    assert status(writer, "INBOX", "RECENT") == b"* STATUS INBOX (RECENT 2)\r\n"

    first = account.raw_login()
    assert b"* 2 RECENT\r\n" in first.ok("SELECT INBOX")
    assert searched(first, "RECENT") == [1, 2]
    assert status(first, "INBOX", "RECENT") == b"* STATUS INBOX (RECENT 2)\r\n"  # its own
    assert status(writer, "INBOX", "RECENT") == b"* STATUS INBOX (RECENT 0)\r\n"
    later = account.raw_login()
    assert b"* 0 RECENT\r\n" in later.ok("SELECT INBOX")
    assert later.ok("FETCH 1:* (FLAGS)") == [
        b"* 1 FETCH (FLAGS ())\r\n",
        b"* 2 FETCH (FLAGS (\\Seen))\r\n",
    ]
    assert searched(later, "OLD") == [1, 2] and searched(later, "NEW") == []

    # COPY and MOVE make messages new to the target (RFC 3501 6.4.7, RFC 6851).
    first.ok("COPY 1 Box")
    first.ok("MOVE 2 Box")
    assert status(writer, "Box", "RECENT MESSAGES") == b"* STATUS Box (RECENT 2 MESSAGES 2)\r\n"
    lines = later.ok("SELECT Box")
    assert b"* 2 RECENT\r\n" in lines
    assert later.ok("FETCH 1:* (FLAGS)") == [
        b"* 1 FETCH (FLAGS (\\Recent))\r\n",
        b"* 2 FETCH (FLAGS (\\Seen \\Recent))\r\n",
    ]
    assert b"* 0 RECENT\r\n" in account.raw_login().ok("SELECT Box")

    # An APPEND to the selected mailbox is \Recent in the appending session (6.3.11).
    assert append(first, "INBOX", message(3)) == [b"* 2 EXISTS\r\n", b"* 2 RECENT\r\n"]
    assert first.ok("FETCH 2 (FLAGS)") == [b"* 2 FETCH (FLAGS (\\Recent))\r\n"]
    lines = later.ok("SELECT INBOX")
    assert b"* 2 EXISTS\r\n" in lines and b"* 0 RECENT\r\n" in lines


def test_a_delivery_into_cur_is_recent_once(account):
    """Another program putting a file straight into cur/ (a second server, procmail, a backup
    restore) has made a message new to IMAP as much as an MTA writing into new/."""
    maildir = account.maildir()
    a, b = account.raw_select(), account.raw_select()
    path = maildir / "cur" / "1700000001.M1P1.elsewhere:2,S"
    path.write_bytes(message(1))
    lines_a, lines_b = a.ok("NOOP"), b.ok("NOOP")
    assert b"* 1 EXISTS\r\n" in lines_a and b"* 1 EXISTS\r\n" in lines_b
    counts = sorted(
        int(m.group(1)) for line in lines_a + lines_b if (m := re.match(rb"\* (\d+) RECENT", line))
    )
    assert counts == [0, 1]


# -- new keywords (RFC 3501 7.2.6, 7.1 PERMANENTFLAGS) --------------------------------------


def announced_before_use(lines: list[bytes], keyword: bytes) -> None:
    """`keyword` is in a FLAGS and a PERMANENTFLAGS line that come before any other line
    naming it."""
    flags = next(i for i, line in enumerate(lines) if line.startswith(b"* FLAGS ("))
    permanent = next(i for i, line in enumerate(lines) if b"[PERMANENTFLAGS (" in line)
    assert keyword in lines[flags].split(b"(", 1)[1], lines
    assert re.search(rb"PERMANENTFLAGS \(.*\b" + keyword + rb"\b.* \\\*\)", lines[permanent]), lines
    first_use = min(
        (i for i, line in enumerate(lines) if keyword in line and i not in (flags, permanent)),
        default=len(lines),
    )
    assert flags < first_use and permanent < first_use, lines


def test_new_keywords_are_announced_before_any_fetch_in_every_session(account):
    writer = account.raw_login()
    append(writer, "INBOX", message(1))
    writer.ok("CREATE Other")
    append(writer, "Other", message(2))
    account.claim_recent()
    account.claim_recent("Other")
    a, b = account.raw_select(), account.raw_select()
    c = account.raw_select("Other")

    # STORE creates one: the storing session hears FLAGS and PERMANENTFLAGS first.
    lines = a.ok("STORE 1 +FLAGS (Fresh)")
    announced_before_use(lines, b"Fresh")
    assert lines[-1] == b"* 1 FETCH (FLAGS (Fresh))\r\n"
    lines = b.ok("NOOP")
    announced_before_use(lines, b"Fresh")
    assert lines[-1] == b"* 1 FETCH (FLAGS (Fresh))\r\n"

    # APPEND with a new keyword into a mailbox two other sessions have selected.
    append(writer, "INBOX", message(3), "(Appended)")
    last = []
    for client in (a, b):
        lines = client.ok("FETCH 2 (FLAGS)")
        announced_before_use(lines, b"Appended")
        last.append(lines[-1])
    assert sorted(last) == [  # \Recent in whichever session claimed it
        b"* 2 FETCH (FLAGS (Appended \\Recent))\r\n",
        b"* 2 FETCH (FLAGS (Appended))\r\n",
    ]

    # COPY brings the source's keywords into a folder selected by another session.
    a.ok("COPY 1:2 Other")
    lines = c.ok("NOOP")
    announced_before_use(lines, b"Fresh")
    announced_before_use(lines, b"Appended")
    assert b"* 3 EXISTS\r\n" in lines
    assert c.ok("FETCH 2:3 (FLAGS)") == [
        b"* 2 FETCH (FLAGS (Fresh \\Recent))\r\n",
        b"* 3 FETCH (FLAGS (Appended \\Recent))\r\n",
    ]
    for client in (a, b, c):
        assert client.ok("NOOP") == [], "announced once"
    # A read-only session learns the names too, with an empty PERMANENTFLAGS.
    examiner = account.raw_login()
    examiner.ok("EXAMINE Other")
    writer.ok("SELECT Other")
    writer.ok("STORE 1 +FLAGS (Late)")
    lines = examiner.ok("NOOP")
    assert lines[0].startswith(b"* FLAGS (") and b"Late" in lines[0]
    assert lines[1].startswith(b"* OK [PERMANENTFLAGS ()] ")
    assert lines[2:] == [b"* 1 FETCH (FLAGS (Late))\r\n"]


# -- BODY[HEADER.FIELDS] echoes the field list as sent (RFC 3501 7.4.2) ---------------------


def test_header_fields_section_is_echoed_as_sent(account):
    client = account.raw_login()
    data = b"From: a@example.org\nSubject: hi\nX-Y1: z\nTo: b@example.org\n\nbody\n"
    append(client, "INBOX", data)
    client.ok("SELECT INBOX")
    client.send(
        b"f1 FETCH 1 (BODY.PEEK[HEADER.FIELDS (FROM FROM)] "
        b'BODY.PEEK[HEADER.FIELDS (from "Subject" {4}\r\n'
    )
    assert client.line().startswith(b"+ ")
    client.send(b"X-Y1)] BODY.PEEK[HEADER.FIELDS.NOT (to From to)])\r\n")
    lines, done = client.until_tagged("f1")
    assert done == b"f1 OK FETCH completed\r\n"
    found = {
        b"FROM FROM": b"From: a@example.org\r\n\r\n",
        b'from "Subject" "X-Y1"': b"From: a@example.org\r\nSubject: hi\r\nX-Y1: z\r\n\r\n",
    }
    items = [b"BODY[HEADER.FIELDS (%s)] {%d}\r\n%s" % (k, len(v), v) for k, v in found.items()]
    nots = b"Subject: hi\r\nX-Y1: z\r\n\r\n"
    items.append(b"BODY[HEADER.FIELDS.NOT (to From to)] {%d}\r\n%s" % (len(nots), nots))
    assert lines == [b"* 1 FETCH (" + b" ".join(items) + b")\r\n"]


# -- SEARCH FROM/TO/CC/BCC (RFC 3501 6.4.4) ------------------------------------------------

ADDRESS_FIELDS = [
    "John Doe <jd@example.com>",
    '"Doe, John" <jd@example.com>',
    "jd@example.com (John Doe)",
    "=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <jm@example.org>",
    '"=?UTF-8?Q?J=C3=B6rg?=" <jq@example.org>',
    "=?ISO-8859-1?B?SvZyZw==?= <jb@example.org>",
    "John  Doe\n  <folded@example.com>",
    "< spaced @ example.com >",
    '"J\\"o\\\\e" <esc@example.com>',
    "undisclosed-recipients:;",
    'friends: a@example.net, "Bee" <b@example.net>;',
    "Some One <some.one@EXAMPLE.COM>",
    "<@route.example:routed@example.com>",
    "plain@example.com",
    "Mary (the boss) Smith <ms@example.com> (comment)",
    "=?UTF-8?B?5pel5pys?= <jp@example.jp>",
    "broken <no-close@example.com",
    '"Quoted Only"',
    "a@b.c, d@e.f",
    "Zed =?UTF-8?Q?Z=C3=A9?= Zim <z@example.com>",
]
# (needle, what Dovecot 2.3.19 finds with SEARCH FROM on these, what the field as written adds:
# comments, the spacing as typed, a bare address list). Dovecot's side was recorded from a
# private Dovecot (/work/shared/reference/dovecot) with the same messages, UID per field above.
ADDRESS_SEARCHES = [
    ("john", [1, 2, 3, 7], []),
    ("John Doe", [1, 3, 7], []),
    ('"John Doe"', [1, 3, 7], []),
    ("Doe, John", [2], []),
    ("<jd@example.com>", [1, 2, 3], []),
    ("jd@example.com (John Doe)", [], [3]),
    ("Doe <jd", [], [1]),
    ("Jörg", [4, 5, 6], []),
    ("jörg müller", [4], []),
    ("=?UTF-8?", [], []),
    ("spaced@example.com", [8], []),
    ("< spaced", [], [8]),
    ('J\\"o', [9], []),
    ("undisclosed-recipients:;", [10], []),
    ("friends:", [11], []),
    ("bee", [11], []),
    ('"Bee"', [], [11]),
    ("some.one@example.com", [12], []),
    ("@route.example:", [13], []),
    ("Mary Smith", [15], []),
    ("the boss", [], [15]),
    ("(comment)", [], [15]),
    ("日本", [16], []),
    ("no-close", [17], []),
    ("Quoted Only", [18], []),
    ("<d@e.f>", [19], []),
    ("a@b.c, d@e.f", [], [19]),
    ("Zed Zé Zim", [20], []),
]


def test_search_address_keys_match_every_form_of_the_field(account):
    """A needle matches the field as written (comments, group syntax, display names; encoded
    words decoded) or its address list written out canonically: everything Dovecot finds, and
    what the text as typed adds."""
    client = account.raw_login()
    for n, field in enumerate(ADDRESS_FIELDS, 1):
        append(client, "INBOX", f"From: {field}\nSubject: m{n}\n\nbody\n".encode())
    client.ok("SELECT INBOX")
    wrong = []
    for needle, dovecot, as_written in ADDRESS_SEARCHES:
        data = needle.encode()
        client.send(b"s UID SEARCH CHARSET UTF-8 FROM {%d}\r\n" % len(data))
        assert client.line().startswith(b"+ ")
        client.send(data + b"\r\n")
        lines, done = client.until_tagged("s")
        assert done.startswith(b"s OK"), done
        found = [int(n) for n in lines[0].split()[2:]]
        if found != sorted(dovecot + as_written):
            wrong.append((needle, found, sorted(dovecot + as_written)))
    assert wrong == []


def test_search_to_cc_bcc_use_the_same_forms(account):
    client = account.raw_login()
    fields = "To: friends: a@example.net;\nCc: jd@example.com (John Doe)\nBcc: Mary (x) Smith <m@x>"
    append(client, "INBOX", f"From: z@example.org\n{fields}\n\nbody\n".encode())
    append(client, "INBOX", b"From: John Doe <jd@example.com>\nTo: m@x\n\nbody\n")
    client.ok("SELECT INBOX")
    assert searched(client, 'TO "friends: <a@example.net>;"') == [1]
    assert searched(client, 'CC "\\"John Doe\\" <jd@example.com>"') == [1]
    assert searched(client, 'CC "(John Doe)"') == [1]
    assert searched(client, 'BCC "Mary Smith"') == [1]
    assert searched(client, 'TO "<m@x>"') == [2]
    assert searched(client, 'FROM "<jd@example.com>"') == [2]
    assert searched(client, 'OR CC "John Doe" FROM "John Doe"') == [1, 2]


# -- LSUB and LIST (SUBSCRIBED) of names whose mailbox is gone (RFC 3501 6.3.6, RFC 5258) ----


def listing(client: Raw, command: str) -> dict[bytes, set[bytes]]:
    """name -> attributes of the LIST or LSUB responses (special-use folders left out)."""
    out = {}
    for line in client.ok(command):
        found = re.fullmatch(rb'\* (?:LIST|LSUB) \(([^)]*)\) "\." (\S+)(?: \(.*\))?\r\n', line)
        assert found, line
        if found.group(2) not in (b"Sent", b"Drafts", b"Trash", b"Junk", b"Archive"):
            out[found.group(2)] = set(found.group(1).split())
    return out


def test_subscribed_names_of_deleted_mailboxes_are_listed(account):
    client = account.raw_login()
    for name in ("Gone", "Kept", "Old", "Parent", "Parent.Child"):
        client.ok(f"CREATE {name}")
        client.ok(f"SUBSCRIBE {name}")
    client.ok("DELETE Gone")
    client.ok("RENAME Old New")
    client.ok("DELETE Parent.Child")
    client.ok("DELETE Parent")
    client.ok("UNSUBSCRIBE Parent")
    # LSUB lists each name as subscribed: \Noselect there would mean "not subscribed".
    assert listing(client, 'LSUB "" *') == {
        b"Gone": set(),
        b"Kept": set(),
        b"Old": set(),
        b"Parent.Child": set(),
    }
    assert listing(client, 'LSUB "" %') == {
        b"Gone": set(),
        b"Kept": set(),
        b"Old": set(),
        b"Parent": {b"\\Noselect"},
    }
    assert listing(client, 'LIST (SUBSCRIBED) "" *') == {
        b"Gone": {b"\\Subscribed", b"\\NonExistent"},
        b"Kept": {b"\\Subscribed", b"\\HasNoChildren"},
        b"Old": {b"\\Subscribed", b"\\NonExistent"},
        b"Parent.Child": {b"\\Subscribed", b"\\NonExistent"},
    }
    assert listing(client, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" %') == {
        b"Gone": {b"\\Subscribed", b"\\NonExistent"},
        b"Kept": {b"\\Subscribed", b"\\HasNoChildren"},
        b"Old": {b"\\Subscribed", b"\\NonExistent"},
        b"Parent": {b"\\NonExistent"},  # no child exists either
    }
    lines = client.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" Par%')
    assert lines == [b'* LIST (\\NonExistent) "." Parent ("CHILDINFO" ("SUBSCRIBED"))\r\n']
    names = listing(client, 'LIST "" *')
    assert b"Gone" not in names and b"New" in names and b"Old" not in names
    # The name is still subscribed when its mailbox comes back; UNSUBSCRIBE works on it.
    client.ok("CREATE Gone")
    assert listing(client, 'LIST (SUBSCRIBED) "" Gone') == {
        b"Gone": {b"\\Subscribed", b"\\HasNoChildren"}
    }
    client.ok("UNSUBSCRIBE Old")
    assert b"Old" not in listing(client, 'LSUB "" *')


# -- mailbox names of atom characters (RFC 3501 9, 5.1.3) -------------------------------------

ATOM_SPECIALS_IN_NAMES = "!#$&'+,-.0123456789:;<=>?@^_`|}~[]"
ALL_ATOM_CHARS = "!#$&'+,-.0123456789:;<=>?@^_`|}~"  # not modified UTF-7: "&'" shifts nothing


def test_a_name_of_any_atom_characters_gets_no_never_bad(account):
    client = account.raw_login()
    append(client, "INBOX", message(1))
    client.ok("SELECT INBOX")
    for command in (
        f"COPY 1 {ALL_ATOM_CHARS}",
        f"MOVE 1 {ALL_ATOM_CHARS}",
        f"SELECT {ALL_ATOM_CHARS}",
        f"EXAMINE {ALL_ATOM_CHARS}",
        f"STATUS {ALL_ATOM_CHARS} (MESSAGES)",
        f"CREATE {ALL_ATOM_CHARS}",
        f"DELETE {ALL_ATOM_CHARS}",
        f"RENAME {ALL_ATOM_CHARS} x",
        f"RENAME INBOX {ALL_ATOM_CHARS}",
        f"SUBSCRIBE {ALL_ATOM_CHARS}",
        f"GETQUOTAROOT {ALL_ATOM_CHARS}",
        "SELECT &Jjo",
        'SELECT "caf\u00e9"',
        "STATUS Nope&Stuff (MESSAGES)",
        "SELECT no.such.box",
    ):
        lines, done = client.cmd(command.encode())
        assert re.match(rb"t\d+ NO ", done), (command, lines, done)
    lines, done = client.cmd(f"APPEND {ALL_ATOM_CHARS} {{3+}}\r\nabc".encode())
    assert re.match(rb"t\d+ NO ", done), done
    client.ok(f"UNSUBSCRIBE {ALL_ATOM_CHARS}")  # removes nothing, as for any name not listed
    # A LIST pattern or reference of them answers at once, and matches nothing.
    assert client.ok(f'LIST "" {ALL_ATOM_CHARS}') == []
    assert client.ok(f"LIST {ALL_ATOM_CHARS} *") == []
    assert client.ok(f'LSUB "" {ALL_ATOM_CHARS}') == []
    assert client.ok(f'LIST "" ({ALL_ATOM_CHARS} INBOX)') == [
        b'* LIST (\\HasNoChildren) "." INBOX\r\n'
    ]
    # A failed SELECT leaves no mailbox selected (RFC 3501 6.3.1); the session goes on.
    assert client.status("FETCH 1 (UID)") == b"BAD"
    client.ok("SELECT INBOX")
    assert client.ok("FETCH 1 (UID)") == [b"* 1 FETCH (UID 1)\r\n"]


def test_names_with_each_atom_character_work(account):
    client = account.raw_login()
    names = [f"x{c}y" if c != "&" else "x&-y" for c in ATOM_SPECIALS_IN_NAMES if c != "."]
    for name in names:
        client.ok(f"CREATE {name}")
        client.ok(f"SELECT {name}")
        wire = f'"{name}"' if "]" in name else name  # "]" is no atom character in responses
        assert client.ok(f"STATUS {name} (MESSAGES)") == [
            f"* STATUS {wire} (MESSAGES 0)\r\n".encode()
        ]
    listed = [line.rsplit(b" ", 1)[1].strip(b'"\r\n') for line in client.ok('LIST "" x*')]
    assert sorted(listed) == sorted(n.encode() for n in names)


def test_a_line_that_cannot_announce_a_literal_is_answered_at_once(account):
    """`{n}` at the end of a line is a literal only where a token may start: otherwise the
    server would wait for octets the client never meant to send."""
    client = account.raw_login()
    for line in (b"s1 SELECT foo{5}", b's2 SELECT "foo {5}', b's3 LOGIN "a\\" {2}'):
        client.send(line + b"\r\n")
        reply = client.line()
        assert reply.startswith(line.split(b" ")[0] + b" BAD "), (line, reply)
    client.send(b"s4 SELECT {5}\r\n")  # a real literal still is one
    assert client.line().startswith(b"+ ")
    client.send(b"INBOX\r\n")
    _lines, done = client.until_tagged("s4")
    assert done.startswith(b"s4 OK")


# -- hierarchy (RFC 3501 6.3.3-6.3.5) --------------------------------------------------------


def test_create_makes_superiors_so_rename_and_delete_work_on_them(account):
    client = account.raw_login()
    client.ok("CREATE a.b")
    append(client, "a.b", message(1))
    validity = re.search(rb"UIDVALIDITY (\d+)", status(client, "a.b", "UIDVALIDITY"))
    assert listing(client, 'LIST "" a*') == {
        b"a": {b"\\HasChildren"},  # a folder of its own: no \Noselect
        b"a.b": {b"\\HasNoChildren"},
    }
    assert b"[READ-WRITE]" in client.cmd("SELECT a")[1]
    client.ok("UNSELECT")
    client.ok("RENAME a c")
    assert listing(client, 'LIST "" *') == {
        b"INBOX": {b"\\HasNoChildren"},
        b"c": {b"\\HasChildren"},
        b"c.b": {b"\\HasNoChildren"},
    }
    moved = status(client, "c.b", "MESSAGES UIDVALIDITY")
    assert moved.startswith(b"* STATUS c.b (MESSAGES 1 UIDVALIDITY ")
    assert validity is not None and validity.group(1) in moved
    # RENAME into a new level creates its superiors too.
    client.ok("RENAME c.b x.y.z")
    assert set(listing(client, 'LIST "" *')) == {b"INBOX", b"c", b"x", b"x.y", b"x.y.z"}
    # DELETE of a child and then of its parent both work; a parent with inferiors stays.
    lines, done = client.cmd("DELETE x")
    assert re.match(rb"t\d+ NO ", done), done
    for name in ("x.y.z", "x.y", "x", "c"):
        client.ok(f"DELETE {name}")
    assert set(listing(client, 'LIST "" *')) == {b"INBOX"}


def test_a_level_without_a_folder_of_its_own_can_be_renamed(account):
    """A tree another server left (`.Lists.Python`, no `.Lists`): RENAME moves the inferiors,
    as Dovecot does, instead of NO [NONEXISTENT]."""
    maildir = account.maildir()
    for sub in ("cur", "new", "tmp"):
        (maildir / ".Lists.Python" / sub).mkdir(parents=True)
    client = account.raw_login()
    assert listing(client, 'LIST "" L*') == {
        b"Lists": {b"\\Noselect", b"\\HasChildren"},
        b"Lists.Python": {b"\\HasNoChildren"},
    }
    client.ok("RENAME Lists Groups")
    assert listing(client, 'LIST "" *') == {
        b"INBOX": {b"\\HasNoChildren"},
        b"Groups": {b"\\HasChildren"},
        b"Groups.Python": {b"\\HasNoChildren"},
    }


# -- octets are the stored octets (RFC 3501 2.3.4, 6.4.5) -----------------------------------


def test_a_message_without_a_final_line_end_is_served_as_stored(account):
    """BODY[], RFC822.SIZE and the sections agree with the stored message in CRLF form, with
    no CRLF added at its end (as Dovecot serves it); APPEND keeps what the client sent."""
    stored = b"From: a@example.org\nSubject: x\n\nline one\nline two"
    wire = b"From: a@example.org\r\nSubject: x\r\n\r\nline one\r\nline two"
    (account.maildir() / "new" / "1700000001.M1P1.mta").write_bytes(stored)
    client = account.raw_select()
    appended = b"Subject: y\r\n\r\nno end"
    append(client, "INBOX", appended)
    lines = client.ok("FETCH 1:2 (RFC822.SIZE BODY.PEEK[] BODY.PEEK[TEXT])")
    texts = (b"line one\r\nline two", b"no end")
    assert lines == [
        b"* %d FETCH (RFC822.SIZE %d BODY[] {%d}\r\n%s BODY[TEXT] {%d}\r\n%s)\r\n"
        % (n, len(data), len(data), data, len(text), text)
        for n, (data, text) in enumerate(((wire, texts[0]), (appended, texts[1])), 1)
    ]
    lines = client.ok("FETCH 1 (BODYSTRUCTURE)")
    assert b' "7BIT" 18 1 ' in lines[0], lines  # 18 octets, one line end: nothing added
    assert client.ok("SEARCH LARGER 53") == [b"* SEARCH\r\n"]  # 53 octets, not 55
    assert client.ok("SEARCH LARGER 52") == [b"* SEARCH 1\r\n"]


# -- a new account's special-use folders (RFC 6154) -------------------------------------------


def test_first_login_makes_the_special_use_folders_though_an_mta_made_the_inbox(account):
    maildir = account.maildir()  # as Postfix leaves it before the user's first login
    (maildir / "new" / "1700000001.M1P1.mta").write_bytes(message(1))
    client = account.raw_login()
    lines = client.ok('LIST "" % RETURN (SUBSCRIBED SPECIAL-USE)')
    assert sorted(lines) == sorted(
        f'* LIST (\\HasNoChildren {use} \\Subscribed) "." {name}\r\n'.encode()
        for name, use in (
            ("Archive", "\\Archive"),
            ("Drafts", "\\Drafts"),
            ("Junk", "\\Junk"),
            ("Sent", "\\Sent"),
            ("Trash", "\\Trash"),
        )
    ) + [b'* LIST (\\HasNoChildren) "." INBOX\r\n']
    assert b"* 1 EXISTS\r\n" in client.ok("SELECT INBOX")
    client.ok("DELETE Junk")
    client.ok("LOGOUT")
    again = account.raw_login()  # only the first login makes them: Junk stays deleted
    names = {line.rsplit(b" ", 1)[1].strip() for line in again.ok('LIST "" %')}
    assert names == {b"INBOX", b"Archive", b"Drafts", b"Sent", b"Trash"}


# -- LOGOUT (RFC 3501 6.1.3) ---------------------------------------------------------------------


def test_logout_answers_bye_and_ok_only_in_a_busy_folder(account):
    maildir = account.maildir()
    for n in range(3):
        (maildir / "cur" / f"170000000{n}.M{n}P1.host:2,").write_bytes(message(n))
    account.claim_recent()
    leaving, busy = account.raw_select(), account.raw_select()
    busy.ok("STORE 1 +FLAGS (\\Seen)")
    busy.ok("STORE 2 +FLAGS (\\Deleted)")
    busy.ok("EXPUNGE")
    (maildir / "new" / "1700000009.M9P1.host").write_bytes(message(9))
    lines, done = leaving.cmd("LOGOUT")
    assert lines == [b"* BYE maildaemons IMAP4rev1 server logging out\r\n"]
    assert re.fullmatch(rb"t\d+ OK Logout completed\r\n", done)
    assert leaving.closed()


# -- the process title ------------------------------------------------------------------------


def titles(account) -> list[str]:
    """The process titles of the server's session children (/proc/<pid>/cmdline)."""
    found = []
    for pid in child_pids(account.daemon.pid):
        try:
            found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue  # ended meanwhile
    return [title.strip() for title in found]


def test_process_title_shows_the_user_after_login(account):
    """`ps` shows who each session is, from LOGIN or AUTHENTICATE on (setproctitle, read back
    from /proc as ps reads it). In the pool model a worker serves many sessions: its title
    counts them, and who each one is stands in the log (`login user=`)."""
    if pooled():
        clients = [account.raw_login() for _ in range(2)]
        wait_for(
            lambda: sessions_running(account.daemon.pid) >= 2,
            what="the workers' titles counting both sessions",
        )
        assert f"login user={account.user}" in account.daemon.log()
        for client in clients:
            client.ok("LOGOUT")
        return
    before = account.raw()
    before.ok("CAPABILITY")
    wait_for(
        lambda: "imapd: - 127.0.0.1 CAPABILITY" in titles(account), what="a title before login"
    )
    before.ok(f'LOGIN {account.user} "{account.passwords[account.user]}"')
    mine = f"imapd: {account.user} 127.0.0.1 "
    wait_for(lambda: f"{mine}logged in" in titles(account), what="the title after LOGIN")
    before.ok("SELECT INBOX")
    wait_for(lambda: f"{mine}SELECT" in titles(account), what="the title after SELECT")
    other = account.raw()
    secret = f"\0{account.user}\0{account.passwords[account.user]}".encode()
    other.ok(b"AUTHENTICATE PLAIN " + base64.b64encode(secret))
    wait_for(
        lambda: (
            titles(account).count(f"{mine}logged in") == 1 and f"{mine}SELECT" in titles(account)
        ),
        what="the title after AUTHENTICATE",
    )
