"""LIST extensions over real sockets: SPECIAL-USE and CREATE-SPECIAL-USE (RFC 6154), LIST-EXTENDED
(RFC 5258: selection and return options, several patterns, \\NonExistent, \\Subscribed,
RECURSIVEMATCH with CHILDINFO) and LIST-STATUS (RFC 5819)."""

from __future__ import annotations

import re

import pytest

from support.imap import shared_imapd
from support.site import deliver

DEFAULTS = {
    "Archive": "\\Archive",
    "Drafts": "\\Drafts",
    "Junk": "\\Junk",
    "Sent": "\\Sent",
    "Trash": "\\Trash",
}


shared = shared_imapd("imap-ext-list")


@pytest.fixture
def account(shared):
    return shared.account()


def listing(lines: list[bytes]) -> dict[str, tuple[set[str], str]]:
    """name -> (attributes, extended data) of LIST responses."""
    out = {}
    for line in lines:
        found = re.fullmatch(rb'\* LIST \(([^)]*)\) "\." ("[^"]*"|\S+)( \(.*\))?\r\n', line)
        if found:
            name = found.group(2).decode().strip('"')
            out[name] = (set(found.group(1).decode().split()), (found.group(3) or b"").decode())
    return out


# -- SPECIAL-USE ---------------------------------------------------------------------------------


def test_a_new_account_gets_the_special_use_folders(account):
    client = account.raw_login()  # the first login creates the Maildir and its folders
    found = listing(client.ok('LIST "" *'))
    assert set(found) == {"INBOX", *DEFAULTS}
    for name, use in DEFAULTS.items():
        assert use in found[name][0], found[name]
    assert found["INBOX"][0] == {"\\HasNoChildren"}
    # They are subscribed, as clients expect of a fresh account.
    assert set(listing([line.replace(b"LSUB", b"LIST") for line in client.ok('LSUB "" *')])) == set(
        DEFAULTS
    )
    # The selection option returns only those; the return option asks for the attributes.
    assert set(listing(client.ok('LIST (SPECIAL-USE) "" *'))) == set(DEFAULTS)
    found = listing(client.ok('LIST "" % RETURN (SPECIAL-USE)'))
    assert found["Sent"][0] == {"\\HasNoChildren", "\\Sent"}
    imapc = account.client()
    assert imapc.find_special_folder(b"\\Sent") == "Sent"
    assert imapc.find_special_folder(b"\\Trash") == "Trash"
    imapc.logout()


def test_create_special_use(account):
    client = account.raw_login()
    client.ok("CREATE Saved (USE (\\Archive))")
    client.ok('CREATE "All Mail" (USE (\\All))')
    lines, done = client.cmd("CREATE Odd (USE (\\Bogus))")
    assert re.match(rb"t\d+ NO \[USEATTR\] ", done), done
    assert client.status("CREATE Odd (USE (Archive))") == b"BAD"  # not an attribute
    assert client.status("CREATE Odd (FOO (\\All))") == b"BAD"
    found = listing(client.ok('LIST (SPECIAL-USE) "" *'))
    assert "\\Archive" in found["Saved"][0] and "\\All" in found["All Mail"][0]
    assert "Odd" not in listing(client.ok('LIST "" *'))


# -- LIST-EXTENDED -------------------------------------------------------------------------------


def tree_for(account):
    """Folders A, A.B, A.B.C, D.E (D does not exist: another server left the tree so; CREATE
    would have made D too), and subscriptions on INBOX, A.B.C, D.E and Gone, a name renamed
    away since."""
    client = account.raw_login()
    for name in ("A", "A.B", "A.B.C", "Gone"):
        client.ok(f"CREATE {name}")
    for sub in ("cur", "new", "tmp"):
        (account.path / ".D.E" / sub).mkdir(parents=True)
    for name in ("INBOX", "A.B.C", "D.E", "Gone"):
        client.ok(f"SUBSCRIBE {name}")
    client.ok("RENAME Gone Moved")  # the subscription stays with the old name
    return client


def test_return_options_and_several_patterns(account):
    client = tree_for(account)
    found = listing(client.ok('LIST "" ("A*" "INBOX") RETURN (SUBSCRIBED CHILDREN)'))
    assert found == {
        "INBOX": ({"\\HasNoChildren", "\\Subscribed"}, ""),
        "Archive": ({"\\HasNoChildren", "\\Archive", "\\Subscribed"}, ""),
        "A": ({"\\HasChildren"}, ""),
        "A.B": ({"\\HasChildren"}, ""),
        "A.B.C": ({"\\HasNoChildren", "\\Subscribed"}, ""),
    }
    # Without RETURN (SUBSCRIBED), no \Subscribed.
    assert listing(client.ok('LIST () "" "A.B.C"')) == {"A.B.C": ({"\\HasNoChildren"}, "")}


def test_nonexistent_names(account):
    client = tree_for(account)
    # A missing level of the hierarchy: \NonExistent for an RFC 5258 client, \Noselect else.
    assert listing(client.ok('LIST "" D')) == {"D": ({"\\Noselect", "\\HasChildren"}, "")}
    assert listing(client.ok('LIST () "" D')) == {"D": ({"\\NonExistent", "\\HasChildren"}, "")}
    # SUBSCRIBED selects subscribed names, the one that is gone included (RFC 5258 3.1).
    found = listing(client.ok('LIST (SUBSCRIBED) "" *'))
    assert found == {
        "INBOX": ({"\\HasNoChildren", "\\Subscribed"}, ""),
        "A.B.C": ({"\\HasNoChildren", "\\Subscribed"}, ""),
        "D.E": ({"\\HasNoChildren", "\\Subscribed"}, ""),
        "Gone": ({"\\NonExistent", "\\Subscribed"}, ""),
        **{name: ({"\\HasNoChildren", use, "\\Subscribed"}, "") for name, use in DEFAULTS.items()},
    }


def test_recursivematch_and_childinfo(account):
    client = tree_for(account)
    found = listing(client.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" %'))
    assert found["A"] == ({"\\HasChildren"}, ' ("CHILDINFO" ("SUBSCRIBED"))')
    assert found["D"] == ({"\\NonExistent", "\\HasChildren"}, ' ("CHILDINFO" ("SUBSCRIBED"))')
    assert found["Gone"] == ({"\\NonExistent", "\\Subscribed"}, "")
    assert found["INBOX"] == ({"\\HasNoChildren", "\\Subscribed"}, "")
    assert "A.B" not in found
    # Without RECURSIVEMATCH, the unsubscribed parents are not there.
    found = listing(client.ok('LIST (SUBSCRIBED) "" %'))
    assert "A" not in found and "D" not in found
    # RECURSIVEMATCH alone (or with REMOTE only) is BAD; unknown options too.
    assert client.status('LIST (RECURSIVEMATCH) "" %') == b"BAD"
    assert client.status('LIST (REMOTE RECURSIVEMATCH) "" %') == b"BAD"
    assert client.status('LIST (BOGUS) "" %') == b"BAD"
    assert client.status('LIST "" % RETURN (BOGUS)') == b"BAD"
    client.alive()


def test_delimiter_query_and_empty_patterns(account):
    client = account.raw_login()
    assert client.ok('LIST "" ""') == [b'* LIST (\\Noselect) "." ""\r\n']
    assert client.ok('LIST () "" ("")') == []  # RFC 5258 3: "" matches nothing here
    assert set(listing(client.ok('LIST () "" ("" "INBOX")'))) == {"INBOX"}


# -- LIST-STATUS -------------------------------------------------------------------------------


def test_list_status(account):
    maildir = account.maildir()
    for n in range(3):
        deliver(
            maildir,
            b"Subject: s\n\nbody\n",
            subdir="cur",
            name=f"{1700000000 + n}.M{n}P2.ls:2,{'S' if n else ''}",
        )
    client = account.raw_login()
    client.ok("CREATE Box.Sub")
    for sub in ("cur", "new"):  # a level without a folder of its own: Other.Sub, no Other
        (account.path / ".Other.Sub" / sub).mkdir(parents=True)
    lines = client.ok('LIST "" * RETURN (STATUS (MESSAGES UNSEEN UIDNEXT))')
    statuses = [line for line in lines if line.startswith(b"* STATUS")]
    names = [line for line in lines if line.startswith(b"* LIST")]
    assert b"* STATUS INBOX (MESSAGES 3 UNSEEN 1 UIDNEXT 4)\r\n" in statuses
    assert b"* STATUS Box (MESSAGES 0 UNSEEN 0 UIDNEXT 1)\r\n" in statuses
    assert b"* STATUS Box.Sub (MESSAGES 0 UNSEEN 0 UIDNEXT 1)\r\n" in statuses
    # Each STATUS follows its LIST line; none for the name that is no folder (Other).
    assert len(statuses) == len(names) - 1
    assert b'* LIST (\\NonExistent \\HasChildren) "." Other\r\n' in names
    assert (
        lines.index(b"* STATUS INBOX (MESSAGES 3 UNSEEN 1 UIDNEXT 4)\r\n")
        == lines.index(b'* LIST (\\HasNoChildren) "." INBOX\r\n') + 1
    )
    # With HIGHESTMODSEQ (a CONDSTORE enabling command) and the selected mailbox too.
    client.ok("SELECT INBOX")
    lines = client.ok('LIST "" INBOX RETURN (STATUS (HIGHESTMODSEQ MESSAGES))')
    assert re.fullmatch(rb"\* STATUS INBOX \(HIGHESTMODSEQ \d+ MESSAGES 3\)\r\n", lines[-1])
    assert client.status('LIST "" * RETURN (STATUS (BOGUS))') == b"BAD"
    assert client.status('LIST "" * RETURN (STATUS ())') == b"BAD"
