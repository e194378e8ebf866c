"""common/users.py: password schemes, the Dovecot passwd-file, and locked atomic changes."""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
import os
import warnings
from pathlib import Path

import pytest

from common import users
from common.store.names import InvalidName
from common.users import (
    UserDB,
    UserFileError,
    add_or_update,
    delete,
    hash_password,
    verify_password,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import crypt
    except ImportError:
        crypt = None  # type: ignore[assignment]

needs_crypt = pytest.mark.skipif(crypt is None, reason="no crypt(3) in this Python")


# -- schemes ---------------------------------------------------------------------------------


def pbkdf2(password: str, salt: str = "0123456789abcdef", rounds: int = 1000) -> str:
    """Dovecot's PBKDF2 format, computed here independently."""
    key = hashlib.pbkdf2_hmac("sha1", password.encode(), salt.encode(), rounds, 20)
    return f"{{PBKDF2}}$1${salt}${rounds}${key.hex()}"


def salted(name: str, password: str, salt: bytes = b"NaCl1234") -> str:
    digest = hashlib.new(name, password.encode() + salt).digest()
    return base64.b64encode(digest + salt).decode()


@pytest.mark.parametrize(
    "stored, password, ok",
    [
        ("{PLAIN}secret", "secret", True),
        ("{PLAIN}secret", "Secret", False),
        ("{PLAIN}secret", "", False),
        ("{plain}pw with spaces", "pw with spaces", True),
        ("{CLEARTEXT}x", "x", True),
        ("{PLAIN}", "", True),
        (pbkdf2("pw"), "pw", True),
        (pbkdf2("pw"), "pw2", False),
        ("{PBKDF2}$1$salt$notanumber$00", "pw", False),
        ("{PBKDF2}garbage", "pw", False),
        ("{SSHA512}" + salted("sha512", "pw"), "pw", True),
        ("{SSHA512}" + salted("sha512", "pw"), "px", False),
        ("{SSHA256}" + salted("sha256", "pw"), "pw", True),
        ("{SHA256}" + base64.b64encode(hashlib.sha256(b"pw").digest()).decode(), "pw", True),
        ("{SHA256.HEX}" + hashlib.sha256(b"pw").hexdigest(), "pw", True),
        ("{SHA1}" + base64.b64encode(hashlib.sha1(b"pw").digest()).decode(), "pw", True),
        ("{SSHA512}!!!not base64", "pw", False),
        ("{NOSUCHSCHEME}pw", "pw", False),
        ("{SHA512-CRYPT}$6$broken", "pw", False),
    ],
)
def test_verify_password(stored, password, ok):
    assert verify_password(stored, password) is ok


@needs_crypt
def test_sha512_crypt_and_bare_crypt():
    hashed = crypt.crypt("pw", crypt.mksalt(crypt.METHOD_SHA512))
    assert verify_password("{SHA512-CRYPT}" + hashed, "pw")
    assert not verify_password("{SHA512-CRYPT}" + hashed, "pw ")
    assert verify_password(hashed, "pw"), "a bare hash is Dovecot's CRYPT"
    made = hash_password("pw", "SHA512-CRYPT")
    assert made.startswith("{SHA512-CRYPT}$6$")
    assert verify_password(made, "pw") and not verify_password(made, "wp")


@pytest.mark.parametrize("scheme", ["PBKDF2", "SSHA512", "PLAIN", "CLEARTEXT"])
def test_hash_password_round_trip(scheme):
    for password in ("pw", "with spaces and : colons", "ünïcödé", "x" * 200):
        made = hash_password(password, scheme)
        assert made.startswith("{" + scheme + "}")
        assert verify_password(made, password)
        assert not verify_password(made, password + "!")


def test_new_hashes_are_salted_and_default_is_pbkdf2():
    first, second = hash_password("pw"), hash_password("pw")
    assert first.startswith("{PBKDF2}$1$") and first != second
    assert hash_password("pw", "SSHA512") != hash_password("pw", "SSHA512")


def test_unsupported_scheme_is_refused():
    with pytest.raises(UserFileError):
        hash_password("pw", "ROT13")


# -- the file --------------------------------------------------------------------------------

DOVECOT_FILE = (
    "# users for maildaemons and dovecot\n"
    "\n"
    "alice:{PLAIN}alice-pw:1001:1001::/home/alice:/bin/false:userdb_quota_rule=*:storage=1G\n"
    f"bob:{pbkdf2('bob-pw')}\n"
    "carol:{PLAIN}carol-pw::::::\n"
    "broken line without colon\n"
)


def test_userdb_reads_dovecot_lines(tmp_path):
    path = tmp_path / "users"
    path.write_text(DOVECOT_FILE)
    db = UserDB(path, {"dave": "dave-pw", "alice": "inline-pw"})
    db.load()
    assert db.names() == ["alice", "bob", "carol", "dave"]
    assert db.verify("bob", "bob-pw") and db.verify("carol", "carol-pw")
    assert db.verify("dave", "dave-pw")
    assert db.verify("alice", "inline-pw"), "-u on the command line wins over the file"
    assert not db.verify("alice", "alice-pw")
    assert not db.verify("nobody", "x") and not db.exists("nobody")
    assert not db.exists("broken line without colon")


def test_userdb_sees_changes_without_reload(tmp_path):
    path = tmp_path / "users"
    path.write_text("alice:{PLAIN}one\n")
    db = UserDB(path)
    db.load()
    assert db.verify("alice", "one")
    add_or_update(path, "alice", "two", "PLAIN")
    add_or_update(path, "erin", "three")
    assert db.verify("alice", "two") and not db.verify("alice", "one")
    assert db.verify("erin", "three")
    delete(path, "erin")
    assert not db.exists("erin")


def test_userdb_load_errors(tmp_path):
    with pytest.raises(UserFileError, match="not found"):
        UserDB(tmp_path / "missing").load()
    UserDB(tmp_path / "missing", {"a": "b"}).load()  # -u users alone are enough
    with pytest.raises(UserFileError):
        UserDB(tmp_path).load()  # a directory: unreadable


def test_add_update_delete_keep_everything_else(tmp_path):
    path = tmp_path / "users"
    path.write_text(DOVECOT_FILE)
    path.chmod(0o640)
    assert add_or_update(path, "alice", "new-alice-pw") is False
    assert add_or_update(path, "zoe", "zoe-pw", "SSHA512") is True
    lines = path.read_text().splitlines()
    original = DOVECOT_FILE.splitlines()
    assert lines[:2] == original[:2]
    name, stored, *extra = lines[2].split(":")
    assert name == "alice" and stored.startswith("{PBKDF2}")
    assert ":".join(extra) == "1001:1001::/home/alice:/bin/false:userdb_quota_rule=*:storage=1G"
    assert lines[3:6] == original[3:6]
    assert lines[6].startswith("zoe:{SSHA512}")
    assert os.stat(path).st_mode & 0o777 == 0o640, "the mode survives the rewrite"
    db = UserDB(path)
    db.load()
    assert db.verify("alice", "new-alice-pw") and db.verify("zoe", "zoe-pw")
    assert delete(path, "carol") is True
    assert delete(path, "carol") is False
    assert "carol" not in path.read_text()
    assert path.read_text().count("\n") == len(original)
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["users"], "no lock or temp file is left behind"


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "a:b", ".hidden", "x" * 41, "sp ace"])
def test_add_refuses_unsafe_names(tmp_path, name):
    with pytest.raises(InvalidName):
        add_or_update(tmp_path / "users", name, "pw")
    assert not (tmp_path / "users").exists()


def _add_user(path: str, number: int, start: multiprocessing.synchronize.Event) -> None:
    start.wait(10)
    add_or_update(Path(path), f"user{number:02d}", f"pw{number}", "PLAIN")


def _update_keeper(path: str, start: multiprocessing.synchronize.Event) -> None:
    start.wait(10)
    for round_ in range(5):
        add_or_update(Path(path), "keeper", f"keeper-{round_}", "PLAIN")


def test_twenty_processes_adding_users_lose_nothing(tmp_path):
    path = tmp_path / "users"
    path.write_text("# header\nkeeper:{PLAIN}x:1:2::/home/keeper:/bin/sh\n")
    context = multiprocessing.get_context("fork")
    start = context.Event()
    procs = [context.Process(target=_add_user, args=(str(path), n, start)) for n in range(20)]
    procs.append(context.Process(target=_update_keeper, args=(str(path), start)))
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    db = UserDB(path)
    db.load()
    assert all(db.verify(f"user{n:02d}", f"pw{n}") for n in range(20))
    assert db.verify("keeper", "keeper-4")
    text = path.read_text()
    assert text.startswith("# header\nkeeper:{PLAIN}keeper-4:1:2::/home/keeper:/bin/sh\n")
    assert len(text.splitlines()) == 22
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users"]


def test_module_default_scheme_is_strong():
    assert users.DEFAULT_SCHEME == "PBKDF2" and users.PBKDF2_ROUNDS >= 10000


def test_user_limit_is_checked_under_the_lock(tmp_path: Path) -> None:
    from multiprocessing import get_context

    path = tmp_path / "users"
    path.write_text("a:{PLAIN}x\nb:{PLAIN}x\n")
    ctx = get_context("fork")
    with ctx.Pool(8) as pool:
        results = pool.starmap(_add_limited, [(str(path), f"u{n}") for n in range(8)])
    assert results.count(True) == 1  # one place was left under the limit of 3
    assert len([line for line in path.read_text().splitlines() if line]) == 3
    with pytest.raises(users.UserLimitReached):
        users.add_or_update(path, "late", "pw", limit=3)
    assert users.add_or_update(path, "a", "new", limit=3) is False  # updates never count


def _add_limited(path: str, name: str) -> bool:
    try:
        return users.add_or_update(Path(path), name, "pw", scheme="PLAIN", limit=3)
    except users.UserLimitReached:
        return False
