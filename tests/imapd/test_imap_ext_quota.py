"""QUOTA (RFC 9208), read-only, from a Maildir++ `maildirsize` over real sockets: GETQUOTAROOT,
GETQUOTA, SETQUOTA refused, the STATUS items DELETED and DELETED-STORAGE, and bad input."""

from __future__ import annotations

import re

import pytest

from support.imap import shared_imapd
from support.site import deliver

shared = shared_imapd("imap-ext-quota")


@pytest.fixture
def account(shared):
    return shared.account()


def test_no_maildirsize_means_no_quota_root(account):
    account.maildir()
    client = account.raw_login()
    assert client.ok("GETQUOTAROOT INBOX") == [b"* QUOTAROOT INBOX\r\n"]
    lines, done = client.cmd('GETQUOTA ""')
    assert re.match(rb"t\d+ NO \[NONEXISTENT\] ", done), done


def test_quota_from_maildirsize(account):
    maildir = account.maildir()
    # Maildir++: the limits, then one line per change (bytes, messages), summed.
    (maildir / "maildirsize").write_text("10485760S,1000C\n5000 3\n2000 1\n-500 -1\n")
    client = account.raw_login()
    client.ok("CREATE Work")
    assert client.ok("GETQUOTAROOT INBOX") == [
        b'* QUOTAROOT INBOX ""\r\n',
        b'* QUOTA "" (STORAGE 7 10240 MESSAGE 3 1000)\r\n',
    ]
    assert client.ok("GETQUOTAROOT Work")[0] == b'* QUOTAROOT Work ""\r\n'
    assert client.ok('GETQUOTA ""') == [b'* QUOTA "" (STORAGE 7 10240 MESSAGE 3 1000)\r\n']
    lines, done = client.cmd('GETQUOTA "user.other"')
    assert re.match(rb"t\d+ NO \[NONEXISTENT\] ", done), done
    # Read-only: SETQUOTA is refused (no QUOTASET advertised); its syntax is still checked.
    lines, done = client.cmd('SETQUOTA "" (STORAGE 512)')
    assert re.match(rb"t\d+ NO \[NOPERM\] ", done), done
    assert client.status('SETQUOTA "" (STORAGE)') == b"BAD"
    # A storage-only maildirsize.
    (maildir / "maildirsize").write_text("2048S\n4097 2\n")
    assert client.ok('GETQUOTA ""') == [b'* QUOTA "" (STORAGE 5 2)\r\n']
    imapc = account.client()
    roots, quotas = imapc.get_quota_root("INBOX")
    assert roots.quota_roots == [""] and [(q.resource, q.usage, q.limit) for q in quotas] == [
        ("STORAGE", 5, 2)
    ]
    imapc.logout()


def test_quota_bad_input(account):
    client = account.raw_login()
    lines, done = client.cmd("GETQUOTAROOT Nowhere")
    assert re.match(rb"t\d+ NO \[NONEXISTENT\] ", done), done
    lines, done = client.cmd('GETQUOTAROOT "../etc"')
    assert re.match(rb"t\d+ NO ", done), done
    assert client.status("GETQUOTAROOT") == b"BAD"
    assert client.status("GETQUOTA") == b"BAD"
    fresh = account.raw()
    assert fresh.status('GETQUOTA ""') == b"BAD"  # not before login
    client.alive()
    account.assert_healthy()


def test_status_deleted_and_deleted_storage(account):
    maildir = account.maildir()
    big = b"Subject: big\n\n" + b"x" * 5000 + b"\n"
    for n in range(3):
        deliver(maildir, big, subdir="cur", name=f"{1700000000 + n}.M{n}P11.q:2,")
    client = account.raw_select()
    assert client.ok("STATUS INBOX (DELETED DELETED-STORAGE)") == [
        b"* STATUS INBOX (DELETED 0 DELETED-STORAGE 0)\r\n"
    ]
    client.ok("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    assert client.ok("STATUS INBOX (MESSAGES DELETED DELETED-STORAGE)") == [
        f"* STATUS INBOX (MESSAGES 3 DELETED 2 DELETED-STORAGE {2 * len(big) // 1024})\r\n".encode()
    ]
    # A message that another folder shares (COPY makes a hard link) frees nothing.
    client.ok("CREATE Keep")
    client.ok("COPY 1 Keep")
    assert client.ok("STATUS INBOX (DELETED-STORAGE)") == [
        f"* STATUS INBOX (DELETED-STORAGE {len(big) // 1024})\r\n".encode()
    ]
    assert client.status("STATUS INBOX (SIZE)") == b"OK"  # STATUS=SIZE (RFC 8438)
