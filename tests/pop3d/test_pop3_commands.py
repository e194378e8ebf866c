"""pop3d end to end with poplib: every RFC 1939 command in every state, CAPA (RFC 2449), AUTH
(RFC 5034), the response codes, the maildrop lock, UIDL stability and deletion only at QUIT."""

from __future__ import annotations

import base64
import hashlib
import os
import poplib
import re
import threading
from pathlib import Path

import pytest

from support.daemons import wait_for
from support.pop3 import POP3_USERS
from support.site import deliver

MESSAGES = [
    b"From: a@example.org\nSubject: one\n\nfirst body\nsecond line\n",
    b"From: b@example.org\nSubject: two\n\n.\n..dots\nend\n",
    b"Subject: three\n\nno final newline",
]


def crlf(data: bytes) -> bytes:
    """The wire form, computed independently of common.store: no line end is added."""
    return re.sub(rb"\r?\n", b"\r\n", data)


def fill(maildir: Path, messages: list[bytes] = MESSAGES) -> list[Path]:
    return [deliver(maildir, data) for data in messages]


def uid_of(path: Path) -> bytes:
    return path.name.split(":", 1)[0].encode()


def login_when_free(server, user: str = "alice") -> poplib.POP3:
    """Log in once the session that held the maildrop has gone ([IN-USE] until then)."""

    def attempt() -> poplib.POP3 | None:
        try:
            return server.login(user)
        except poplib.error_proto as exc:
            assert b"[IN-USE]" in exc.args[0]
            return None

    return wait_for(attempt, what="the maildrop lock to be released")


def err(call, *args) -> str:
    with pytest.raises(poplib.error_proto) as info:
        call(*args)
    return str(info.value.args[0], "ascii")


# -- AUTHORIZATION ---------------------------------------------------------------------------


def test_greeting_capa_and_quit_in_authorization(pop3d):
    server = pop3d()
    client = server.pop()
    assert re.fullmatch(rb"\+OK .*<[^<>@ ]+@[^<> ]+>", client.getwelcome())
    caps = client.capa()
    for cap in ("TOP", "USER", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"):
        assert cap in caps
    assert caps["SASL"] == ["PLAIN", "LOGIN"]
    assert caps["IMPLEMENTATION"][0].startswith("maildaemons-")
    assert "LOGIN-DELAY" not in caps
    assert client.quit().startswith(b"+OK")


def test_user_pass_stat_list_uidl(pop3d, site):
    server = pop3d()
    paths = fill(site.maildir("alice"))
    sizes = [len(crlf(m)) for m in MESSAGES]
    client = server.pop()
    assert client.user("alice") == b"+OK"
    assert client.pass_("secret").startswith(b"+OK ")
    assert client.stat() == (3, sum(sizes))
    resp, listing, _ = client.list()
    assert resp.startswith(b"+OK")
    assert listing == [f"{n} {s}".encode() for n, s in enumerate(sizes, 1)]
    assert client.list(2) == f"+OK 2 {sizes[1]}".encode()
    _, uids, _ = client.uidl()
    assert uids == [b"%d %s" % (n, uid_of(p)) for n, p in enumerate(paths, 1)]
    assert client.uidl(3) == b"+OK 3 " + uid_of(paths[2])
    assert client.noop() == b"+OK"
    assert "UIDL" in client.capa(), "CAPA works in TRANSACTION too"
    client.quit()


def test_retr_octets_equal_list_sizes(pop3d, site):
    server = pop3d()
    fill(site.maildir("alice"))
    client = server.login()
    for number, data in enumerate(MESSAGES, 1):
        size = int(client.list(number).split()[2])
        resp, lines, _octets = client.retr(number)
        assert resp == f"+OK {size} octets".encode()
        assert size == len(crlf(data))  # a missing final line end is framing, not counted
        assert b"\r\n".join(lines) == crlf(data).removesuffix(b"\r\n")
    client.quit()


def test_top(pop3d, site):
    server = pop3d()
    fill(site.maildir("alice"))
    client = server.login()
    head = [b"From: a@example.org", b"Subject: one", b""]
    assert client.top(1, 0)[1] == head
    assert client.top(1, 1)[1] == [*head, b"first body"]
    assert client.top(1, 99)[1] == [*head, b"first body", b"second line"]
    assert client.top(2, 2)[1] == [b"From: b@example.org", b"Subject: two", b"", b".", b"..dots"]
    assert client.top(3, 5)[1] == [b"Subject: three", b"", b"no final newline"]
    assert err(client.top, 1, "x").startswith("-ERR")
    assert err(client.top, 9, 0).startswith("-ERR")
    client.quit()


def test_dele_rset_and_deletion_only_at_quit(pop3d, site):
    server = pop3d()
    paths = fill(site.maildir("alice"))
    client = server.login()
    assert client.dele(2) == b"+OK Message 2 deleted"
    assert "already deleted" in err(client.dele, 2)
    assert "already deleted" in err(client.retr, 2)
    assert "already deleted" in err(client.list, 2)
    assert "already deleted" in err(client.top, 2, 0)
    assert "already deleted" in err(client.uidl, 2)
    assert client.stat()[0] == 2
    assert [line.split()[0] for line in client.list()[1]] == [b"1", b"3"]
    assert all(p.exists() for p in paths), "DELE must only mark"
    assert client.rset().startswith(b"+OK")
    assert client.stat()[0] == 3
    client.dele(1)
    client.dele(3)
    assert all(p.exists() for p in paths), "nothing goes before QUIT"
    assert client.quit() == b"+OK maildaemons POP3 server signing off (1 messages left)"
    assert [p.exists() for p in paths] == [False, True, False]
    client = server.login()
    assert client.stat() == (1, len(crlf(MESSAGES[1])))
    assert client.uidl(1) == b"+OK 1 " + uid_of(paths[1])
    client.quit()


def test_no_deletion_without_quit(pop3d, site):
    server = pop3d()
    paths = fill(site.maildir("alice"))
    client = server.login()
    client.dele(1)
    client.dele(2)
    client.close()  # connection dropped: never reaches UPDATE
    client = login_when_free(server)
    assert client.stat()[0] == 3
    client.quit()
    assert all(p.exists() for p in paths)


def test_wrong_state_commands(pop3d, site):
    server = pop3d()
    fill(site.maildir("alice"))
    client = server.raw()
    for command in (
        b"STAT",
        b"LIST",
        b"LIST 1",
        b"UIDL",
        b"RETR 1",
        b"TOP 1 1",
        b"DELE 1",
        b"NOOP",
        b"RSET",
    ):
        client.send(command + b"\r\n")
        assert client.line() == b"-ERR Command not valid in this state\r\n", command
    client.send(b"PASS secret\r\n")
    assert client.line() == b"-ERR USER first\r\n"
    for command in (b"USER", b"USER a b", b"APOP alice", b"AUTH PLAIN x y", b"QUIT now"):
        client.send(command + b"\r\n")
        assert client.line() == b"-ERR Invalid arguments\r\n", command
    client.send(b"USER alice\r\nPASS secret\r\n")
    assert client.line() == b"+OK\r\n"
    assert client.line().startswith(b"+OK Logged in, 3 messages")
    for command in (b"USER alice", b"PASS secret", b"APOP alice 0123", b"AUTH PLAIN", b"AUTH"):
        client.send(command + b"\r\n")
        assert client.line() == b"-ERR Command not valid in this state\r\n", command
    client.send(b"STAT\r\nQUIT\r\n")
    assert client.line().startswith(b"+OK 3 ")
    assert client.line().startswith(b"+OK ")
    assert client.closed()


BAD_ARGUMENTS = [
    (b"RETR", b"-ERR Invalid arguments"),
    (b"RETR 1 2", b"-ERR Invalid arguments"),
    (b"RETR x", b"-ERR No such message"),
    (b"RETR 0", b"-ERR No such message"),
    (b"RETR -1", b"-ERR No such message"),
    (b"RETR 4", b"-ERR No such message"),
    (b"RETR 99999999999999999999", b"-ERR No such message"),
    (b"RETR \xc2\xb2", b"-ERR No such message"),  # '\u00b2'.isdigit() is True; int() fails
    (b"RETR \xd9\xa1", b"-ERR No such message"),  # ARABIC-INDIC DIGIT ONE is not a number here
    (b"LIST 1 2", b"-ERR Invalid arguments"),
    (b"LIST 0", b"-ERR No such message"),
    (b"UIDL 7", b"-ERR No such message"),
    (b"DELE", b"-ERR Invalid arguments"),
    (b"DELE 1x", b"-ERR No such message"),
    (b"TOP 1", b"-ERR Invalid arguments"),
    (b"TOP 1 -1", b"-ERR Invalid arguments"),
    (b"TOP 1 \xc2\xb2", b"-ERR Invalid arguments"),
    (b"TOP x 1", b"-ERR No such message"),
    (b"STAT 1", b"-ERR Invalid arguments"),
    (b"NOOP x", b"-ERR Invalid arguments"),
    (b"RSET x", b"-ERR Invalid arguments"),
    (b"XYZZY", b"-ERR Unknown command"),
    (b"", b"-ERR Unknown command"),
    (b"   ", b"-ERR Unknown command"),
]


def test_bad_arguments_keep_the_session(pop3d, site):
    server = pop3d()
    fill(site.maildir("alice"))
    for command, reply in BAD_ARGUMENTS:
        client = server.raw_login()
        client.send(command + b"\r\nSTAT\r\n")
        assert client.line() == reply + b"\r\n", command
        assert client.line().startswith(b"+OK 3 "), command
        client.send(b"QUIT\r\n")
        assert client.line().startswith(b"+OK")
        client.close()
    assert "Traceback" not in server.daemon.log()


def test_commands_are_case_insensitive(pop3d, site):
    server = pop3d()
    fill(site.maildir("alice"))
    client = server.raw()
    client.send(b"user alice\r\npAsS secret\r\nstat\r\nqUiT\r\n")
    assert client.line() == b"+OK\r\n"
    assert client.line().startswith(b"+OK Logged in")
    assert client.line().startswith(b"+OK 3 ")
    assert client.line().startswith(b"+OK")


# -- authentication --------------------------------------------------------------------------


def test_wrong_password_and_unknown_user_look_alike(pop3d):
    server = pop3d()
    client = server.pop()
    client.user("alice")
    assert err(client.pass_, "wrong") == "-ERR [AUTH] Invalid credentials"
    client.user("nobody")
    assert err(client.pass_, "secret") == "-ERR [AUTH] Invalid credentials"
    client.user("bob")
    assert client.pass_(POP3_USERS["bob"]).startswith(b"+OK"), "password with spaces"
    client.quit()


def test_three_failed_logins_close_the_session(pop3d):
    server = pop3d()
    client = server.raw()
    for attempt in range(3):
        client.send(b"USER alice\r\nPASS nope\r\n")
        assert client.line() == b"+OK\r\n"
        reply = client.line()
        assert reply.startswith(b"-ERR [AUTH] "), (attempt, reply)
    assert b"Too many" in reply
    assert client.closed()
    server.assert_serving()


def test_apop(pop3d):
    server = pop3d()
    client = server.pop()
    timestamp = re.search(rb"<[^>]*>", client.getwelcome()).group(0)
    digest = hashlib.md5(timestamp + b"secret").hexdigest()
    assert err(client._shortcmd, "APOP alice " + "0" * 32) == "-ERR [AUTH] Invalid credentials"
    assert client._shortcmd(f"APOP alice {digest}").startswith(b"+OK Logged in")
    client.quit()
    client = server.pop()
    assert client.apop("bob", POP3_USERS["bob"]).startswith(b"+OK")
    client.quit()


def test_apop_needs_a_plaintext_equivalent_password(pop3d, site):
    pbkdf2 = "{PBKDF2}$1$salt$1000$" + hashlib.pbkdf2_hmac("sha1", b"pw", b"salt", 1000).hex()
    (site.root / "users").write_text(f"carol:{pbkdf2}\n")
    server = pop3d()
    client = server.pop()
    assert err(client.apop, "carol", "pw").startswith("-ERR [AUTH]")
    client.user("carol")
    assert client.pass_("pw").startswith(b"+OK")
    client.quit()


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_auth_plain_with_initial_response(pop3d):
    server = pop3d()
    client = server.raw()
    client.send(b"AUTH PLAIN " + b64(b"\0alice\0secret") + b"\r\nSTAT\r\nQUIT\r\n")
    assert client.line().startswith(b"+OK Logged in")
    assert client.line().startswith(b"+OK 0 0")
    assert client.line().startswith(b"+OK")


def test_auth_plain_without_initial_response_and_authzid(pop3d):
    server = pop3d()
    client = server.raw()
    client.send(b"AUTH PLAIN\r\n")
    assert client.line() == b"+ \r\n"
    client.send(b64(b"alice\0alice\0secret") + b"\r\n")
    assert client.line().startswith(b"+OK Logged in")
    client.send(b"QUIT\r\n")
    assert client.line().startswith(b"+OK")
    client = server.raw()
    client.send(b"AUTH PLAIN " + b64(b"bob\0alice\0secret") + b"\r\n")
    assert client.line() == b"-ERR [AUTH] Invalid credentials\r\n", "no proxy authorization"


def test_auth_login(pop3d):
    server = pop3d()
    client = server.raw()
    client.send(b"AUTH LOGIN\r\n")
    assert base64.b64decode(client.line()[2:]) == b"Username:"
    client.send(b64(b"bob") + b"\r\n")
    assert base64.b64decode(client.line()[2:]) == b"Password:"
    client.send(b64(POP3_USERS["bob"].encode()) + b"\r\n")
    assert client.line().startswith(b"+OK Logged in")
    client.send(b"QUIT\r\n")
    assert client.line().startswith(b"+OK")
    client = server.raw()
    client.send(b"AUTH LOGIN " + b64(b"alice") + b"\r\n")
    assert client.line() == b"+ UGFzc3dvcmQ6\r\n"
    client.send(b64(b"wrong") + b"\r\n")
    assert client.line() == b"-ERR [AUTH] Invalid credentials\r\n"


def test_auth_cancel_broken_base64_and_unknown_mechanism(pop3d):
    server = pop3d()
    client = server.raw()
    client.send(b"AUTH\r\n")
    assert client.until(b".\r\n") == b"+OK SASL mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n"
    client.send(b"AUTH PLAIN\r\n")
    assert client.line() == b"+ \r\n"
    client.send(b"*\r\n")
    assert client.line() == b"-ERR AUTH cancelled\r\n"
    client.send(b"AUTH LOGIN\r\n")
    client.line()
    client.send(b"*\r\n")
    assert client.line() == b"-ERR AUTH cancelled\r\n"
    client.send(b"AUTH PLAIN !!!notbase64\r\n")
    assert client.line() == b"-ERR Invalid base64 data\r\n"
    client.send(b"AUTH PLAIN " + b64(b"no-nul-bytes") + b"\r\n")
    assert client.line() == b"-ERR Invalid base64 data\r\n"
    client.send(b"AUTH LOGIN\r\n")
    client.line()
    client.send(b"\xff\x00junk\r\n")
    assert client.line() == b"-ERR Invalid base64 data\r\n"
    client.send(b"AUTH CRAM-MD5\r\n")
    assert client.line() == b"-ERR Unrecognized authentication mechanism\r\n"
    client.send(b"AUTH PLAIN " + b64(b"\0alice\0secret") + b"\r\n")
    assert client.line().startswith(b"+OK Logged in"), "the session went on"
    client.send(b"QUIT\r\n")
    assert client.line().startswith(b"+OK")


def test_users_file_schemes_and_live_changes(pop3d, site):
    salt = b"saltsalt"
    ssha = base64.b64encode(hashlib.sha512(b"pw-ssha" + salt).digest() + salt).decode()
    lines = [
        "# comment line",
        "plain:{PLAIN}pw-plain:1000:1000::/home/plain:/bin/false:extra=1",
        f"ssha:{{SSHA512}}{ssha}",
        "pbkdf:{PBKDF2}$1$salt$1000$"
        + hashlib.pbkdf2_hmac("sha1", b"pw-pbkdf", b"salt", 1000).hex(),
    ]
    with_crypt = True
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        hashed = crypt.crypt("pw-crypt", crypt.mksalt(crypt.METHOD_SHA512))
        lines.append("crypt:{SHA512-CRYPT}" + hashed)
    except ImportError:
        with_crypt = False
    users = site.root / "users"
    users.write_text("\n".join(lines) + "\n")
    server = pop3d()
    for name in ("plain", "ssha", "pbkdf", *(["crypt"] if with_crypt else [])):
        client = server.pop()
        client.user(name)
        assert err(client.pass_, "wrong").startswith("-ERR [AUTH]")
        client.user(name)
        assert client.pass_(f"pw-{name}").startswith(b"+OK"), name
        client.quit()
    # A user added to the file is seen by the next login, without HUP.
    with open(users, "a") as handle:
        handle.write("dave:{PLAIN}pw-dave\n")
    client = server.login("dave", "pw-dave")
    client.quit()


def test_thirty_inline_users(pop3d):
    users = {f"user{n:02d}": f"pass-{n}" for n in range(30)}
    server = pop3d("", users={**users, "probe": "probe"})
    for name, password in users.items():
        client = server.pop()
        client.user(name)
        assert client.pass_(password).startswith(b"+OK"), name
        client.quit()
    client = server.pop()
    client.user("user00")
    assert err(client.pass_, "pass-1").startswith("-ERR [AUTH]")


def test_first_login_creates_the_maildir(pop3d, site):
    server = pop3d()
    assert not (site.mail / "bob").exists()
    client = server.login("bob")
    assert client.stat() == (0, 0)
    assert client.list()[1] == []
    client.quit()
    assert all((site.mail / "bob" / sub).is_dir() for sub in ("cur", "new", "tmp"))


# -- the maildrop lock -----------------------------------------------------------------------


def test_second_login_is_in_use(pop3d, site):
    server = pop3d()
    fill(site.maildir("alice"))
    first = server.login()
    second = server.pop()
    second.user("alice")
    assert err(second.pass_, "secret").startswith("-ERR [IN-USE]")
    first.dele(1)
    assert first.quit().startswith(b"+OK")
    second.user("alice")
    assert second.pass_("secret").startswith(b"+OK Logged in, 2 messages")
    second.quit()


def test_concurrent_logins_to_one_maildrop(pop3d, site):
    server = pop3d()
    fill(site.maildir("alice"))
    clients = [server.pop() for _ in range(8)]
    for client in clients:
        client.user("alice")
    barrier = threading.Barrier(len(clients))
    replies: list[str] = [""] * len(clients)

    def login(index: int) -> None:
        barrier.wait(timeout=10)
        try:
            replies[index] = clients[index].pass_("secret").decode()
        except poplib.error_proto as exc:
            replies[index] = exc.args[0].decode()

    threads = [threading.Thread(target=login, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    winners = [r for r in replies if r.startswith("+OK")]
    assert len(winners) == 1, replies
    assert all(r.startswith("-ERR [IN-USE]") for r in replies if not r.startswith("+OK"))
    for client in clients:
        client.quit()
    server.assert_serving()


# -- UIDL ------------------------------------------------------------------------------------


def test_uidl_stable_across_sessions_flag_changes_and_restarts(pop3d, site):
    server = pop3d()
    maildir = site.maildir("alice")
    paths = fill(maildir)
    expected = [b"%d %s" % (n, uid_of(p)) for n, p in enumerate(paths, 1)]
    client = server.login()
    assert client.uidl()[1] == expected
    client.quit()
    # Another MUA reads the first message: new/X -> cur/X:2,S, then adds a flag.
    seen = maildir / "cur" / (paths[0].name + ":2,S")
    os.rename(paths[0], seen)
    client = server.login()
    assert client.uidl()[1] == expected
    client.quit()
    os.rename(seen, maildir / "cur" / (paths[0].name + ":2,FS"))
    server.daemon.stop()
    server = pop3d()
    client = server.login()
    assert client.uidl()[1] == expected
    client.quit()


def test_uidl_hashes_names_that_are_no_unique_id(pop3d, site):
    """RFC 1939 7: 1 to 70 characters in 0x21-0x7E. A name that is longer, not ASCII or
    holds a space is given as the MD5 of the name (stable all the same); the others as
    they are, whether or not one of those is in the maildrop."""
    maildir = site.maildir("alice")
    names = [
        "1600000000.M1P1.host",
        "1600000001.M2P2." + "x" * 60,
        "1600000002.M3P3.h\u00f4st",
        "1600000003.M4 P4.host",
    ]
    for name in names:
        deliver(maildir, MESSAGES[0], name=name)
    expected = [
        b"%d %s" % (n, name.encode() if n == 1 else hashlib.md5(name.encode()).hexdigest().encode())
        for n, name in enumerate(names, 1)
    ]
    server = pop3d()
    client = server.login()
    assert client.uidl()[1] == expected
    assert client.uidl(3).split() == [b"+OK", b"3", expected[2].split()[1]]
    client.dele(2)
    client.dele(3)
    client.dele(4)
    assert client.uidl()[1] == expected[:1], "only plain names left: given as they are"
    client.rset()
    client.quit()


def test_flags_changed_during_a_session(pop3d, site):
    server = pop3d()
    maildir = site.maildir("alice")
    paths = fill(maildir)
    client = server.login()
    os.rename(paths[0], maildir / "cur" / (paths[0].name + ":2,S"))
    os.rename(paths[1], maildir / "cur" / (paths[1].name + ":2,RS"))
    assert b"\r\n".join(client.retr(1)[1]) + b"\r\n" == crlf(MESSAGES[0])
    client.dele(2)
    client.quit()
    assert sorted(os.listdir(maildir / "cur")) == [paths[0].name + ":2,S"]
    assert os.listdir(maildir / "new") == [paths[2].name]


# -- response codes from the store -----------------------------------------------------------


def test_sys_temp_when_the_maildrop_is_unusable(pop3d, site):
    server = pop3d()
    site.mail.joinpath("bob").write_text("not a directory")
    client = server.pop()
    client.user("bob")
    assert err(client.pass_, POP3_USERS["bob"]).startswith("-ERR [SYS/TEMP]")
    client.quit()
    server.assert_serving()


def test_sys_temp_when_a_message_cannot_be_read(pop3d, site):
    server = pop3d()
    paths = fill(site.maildir("alice"))
    client = server.login()
    paths[0].unlink()
    paths[0].mkdir()  # a fault in the store: the message is now unreadable
    assert err(client.retr, 1).startswith("-ERR [SYS/TEMP]")
    assert client.retr(2)[0].startswith(b"+OK"), "the session goes on"
    client.quit()


def test_sys_perm_when_a_deletion_fails(pop3d, site):
    server = pop3d()
    paths = fill(site.maildir("alice"))
    client = server.login()
    client.dele(1)
    client.dele(2)
    paths[0].unlink()
    paths[0].mkdir()
    (paths[0] / "x").write_text("keeps rmdir from working too")
    assert err(client.quit).startswith("-ERR [SYS/PERM]")
    assert not paths[1].exists(), "what could be removed was removed"
    assert paths[2].exists()
    server.assert_serving()


def test_login_delay(pop3d, site):
    server = pop3d("[pop3d]\nlogin_delay = 3600\nexpire = NEVER\n")
    site.maildir("alice")
    client = server.pop()
    caps = client.capa()
    assert caps["LOGIN-DELAY"] == ["3600"] and caps["EXPIRE"] == ["NEVER"]
    client.user("alice")
    assert client.pass_("secret").startswith(b"+OK")
    client.quit()
    client = server.pop()
    client.user("alice")
    assert err(client.pass_, "secret").startswith("-ERR [LOGIN-DELAY]")
    client.user("bob")
    assert client.pass_(POP3_USERS["bob"]).startswith(b"+OK"), "first login of bob"
    client.quit()
    client = server.pop()
    client.user("bob")
    assert err(client.pass_, POP3_USERS["bob"]).startswith("-ERR [LOGIN-DELAY]")
