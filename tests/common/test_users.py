"""common/users.py: password schemes, the Dovecot passwd-file, and locked atomic changes."""

from __future__ import annotations

import ast
import base64
import hashlib
import multiprocessing
import os
import pty
import re
import shutil
import subprocess
import sys
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


@pytest.mark.parametrize(
    "scheme", ["ARGON2ID", "ARGON2I", "PBKDF2", "SSHA512", "SSHA256", "PLAIN", "CLEARTEXT"]
)
def test_hash_password_round_trip(scheme):
    passwords = ["pw", "with spaces and : colons", "ünïcödé", "x" * 200]
    if scheme.startswith("ARGON2"):  # 64 MiB a verification: two of them say as much
        passwords = passwords[1:3]
    for password in passwords:
        made = hash_password(password, scheme)
        assert made.startswith("{" + scheme + "}")
        assert verify_password(made, password)
        assert not verify_password(made, password + "!")


def test_new_hashes_are_salted_and_default_is_argon2id():
    first, second = hash_password("pw"), hash_password("pw")
    assert first.startswith("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$") and first != second
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
    assert name == "alice" and stored.startswith("{ARGON2ID}")
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
    assert users.DEFAULT_SCHEME == "ARGON2ID" and users.PBKDF2_ROUNDS >= 10000


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


# -- ARGON2ID and Dovecot ----------------------------------------------------------------------

needs_doveadm = pytest.mark.skipif(shutil.which("doveadm") is None, reason="no doveadm (Dovecot)")


def doveadm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["doveadm", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "stored, password, ok",
    [
        ("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$bad", "pw", False),
        ("{ARGON2ID}garbage", "pw", False),
        ("{ARGON2I}" + hash_password("pw", "ARGON2ID")[len("{ARGON2ID}") :], "pw", False),
        (  # 4 GiB asked for: refused, not computed
            "{ARGON2ID}$argon2id$v=19$m=4194304,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "",
            False,
        ),
        ("{PBKDF2}$1$salt$99999999999$00", "pw", False),
        ("{PBKDF2}$1$salt$1000$zz", "pw", False),
        ("{PBKDF2}$1$salt$1000$\u00e9\u00e9", "pw", False),
        ("{SHA256}" + base64.b64encode(hashlib.sha256(b"pw").digest() + b"x").decode(), "pw", 0),
    ],
)
def test_malformed_hashes_never_match_and_never_raise(stored, password, ok):
    assert verify_password(stored, password) is bool(ok)


@needs_doveadm
@pytest.mark.parametrize("scheme", ["ARGON2ID", "PBKDF2", "SHA512-CRYPT", "SSHA512"])
def test_dovecot_verifies_ours_and_we_verify_dovecots(scheme):
    password = "s3cret with space:colon \u00fcn\u00efc\u00f6d\u00e9"
    ours = hash_password(password, scheme)
    result = doveadm("pw", "-t", ours, "-p", password)
    assert result.returncode == 0 and "(verified)" in result.stdout, result
    assert doveadm("pw", "-t", ours, "-p", password + "x").returncode != 0
    made = doveadm("pw", "-s", scheme, "-p", password)
    assert made.returncode == 0, made
    theirs = made.stdout.strip()
    assert theirs.startswith("{" + scheme + "}")
    assert verify_password(theirs, password)
    assert not verify_password(theirs, password + "x")


@needs_doveadm
def test_our_argon2id_looks_like_dovecots():
    theirs = doveadm("pw", "-s", "ARGON2ID", "-p", "pw").stdout.strip()
    ours = hash_password("pw")
    params = re.compile(r"^\{ARGON2ID\}\$argon2id\$v=19\$m=65536,t=3,p=1\$[A-Za-z0-9+/]{22}\$")
    assert params.match(theirs) and params.match(ours), (theirs, ours)
    assert len(ours) == len(theirs)


def test_comparisons_are_constant_time_by_construction():
    """Every comparison of a secret in users.py goes through hmac.compare_digest (or the argon2
    library): no `==` on a digest, a hash or a password."""
    source = Path(users.__file__).read_text()
    tree = ast.parse(source)
    suspicious = []
    for node in ast.walk(tree):
        equality = isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
        )
        if equality:
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            if names & {"digest", "expected", "key", "result", "candidate", "password", "data"}:
                suspicious.append(ast.unparse(node))
    assert suspicious == []
    assert source.count("compare_digest") >= 4


# -- the cache of verified logins ------------------------------------------------------------


class CountingVerify:
    """Counts the real verifications under UserDB.verify."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = users.verify_password

        def counting(stored: str, password: str) -> bool:
            self.calls += 1
            return real(stored, password)

        monkeypatch.setattr(users, "verify_password", counting)


def test_cache_spares_the_second_verification(tmp_path, monkeypatch):
    path = tmp_path / "users"
    path.write_text(f"alice:{pbkdf2('alice-pw')}\n")
    db = UserDB(path, cache_size=10, cache_ttl=60)
    db.load()
    counter = CountingVerify(monkeypatch)
    assert db.verify("alice", "alice-pw") and db.verify("alice", "alice-pw")
    assert counter.calls == 1 and db.cache.hits == 1
    assert len(db.cache) == 1


def test_cache_never_holds_a_failure_or_the_password(tmp_path, monkeypatch):
    path = tmp_path / "users"
    path.write_text(f"alice:{pbkdf2('alice-pw')}\n")
    db = UserDB(path, cache_size=10, cache_ttl=60)
    counter = CountingVerify(monkeypatch)
    for _ in range(3):
        assert not db.verify("alice", "wrong")
    assert counter.calls == 3 and len(db.cache) == 0
    assert db.verify("alice", "alice-pw")
    assert not db.verify("alice", "wrong"), "a cached success must not admit another password"
    assert not db.verify("bob", "alice-pw")
    entries = list(db.cache._entries)
    assert len(entries) == 1 and len(entries[0]) == 32
    assert b"alice-pw" not in entries[0] and b"alice" not in entries[0]


def test_cache_is_emptied_when_the_users_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "users"
    path.write_text(f"alice:{pbkdf2('alice-pw')}\nbob:{{PLAIN}}b\n")
    db = UserDB(path, cache_size=10, cache_ttl=60)
    db.load()
    assert db.verify("alice", "alice-pw") and len(db.cache) == 1
    add_or_update(path, "bob", "new-bob", "PLAIN")  # another user's change empties it too
    counter = CountingVerify(monkeypatch)
    assert db.verify("alice", "alice-pw") and counter.calls == 1
    add_or_update(path, "alice", "changed", "PBKDF2")
    assert not db.verify("alice", "alice-pw"), "an old password must not outlive its change"
    assert db.verify("alice", "changed")
    delete(path, "alice")
    assert not db.verify("alice", "changed")


def test_cache_is_bounded_in_size_and_lifetime(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(users.time, "monotonic", lambda: clock[0])
    db = UserDB(None, {f"u{n}": f"p{n}" for n in range(10)}, cache_size=3, cache_ttl=5)
    for n in range(10):
        assert db.verify(f"u{n}", f"p{n}")
    assert len(db.cache) == 3
    counter = CountingVerify(monkeypatch)
    assert db.verify("u9", "p9") and counter.calls == 0
    assert db.verify("u0", "p0") and counter.calls == 1, "the oldest entries went first"
    clock[0] += 6
    assert db.verify("u9", "p9") and counter.calls == 2, "an expired entry is verified again"


def test_cache_off(tmp_path, monkeypatch):
    db = UserDB(None, {"a": "b"}, cache_size=0)
    counter = CountingVerify(monkeypatch)
    assert db.verify("a", "b") and db.verify("a", "b")
    assert counter.calls == 2 and len(db.cache) == 0


def test_unknown_users_cost_a_verification_of_the_usual_scheme(tmp_path, monkeypatch):
    """As much as a known user's wrong password: a hash of the scheme most users have."""
    seen = []
    real = users.verify_password
    monkeypatch.setattr(users, "verify_password", lambda s, p: seen.append(s) or real(s, p))
    path = tmp_path / "users"
    path.write_text(f"a:{pbkdf2('x')}\nb:{pbkdf2('y')}\nc:{{PLAIN}}z\n")
    db = UserDB(path, {"d": "w"})
    assert not db.verify("nobody", "pw")
    assert seen[-1].startswith("{PBKDF2}$1$") and not db.verify("nobody", "x")
    assert not UserDB(None, {"a": "b"}).verify("nobody", "pw")
    assert seen[-1].startswith("{PLAIN}")
    assert not UserDB(tmp_path / "absent").verify("nobody", "pw")
    assert seen[-1].startswith("{ARGON2ID}")


def test_load_makes_the_dummy_hash_before_any_fork(tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_dummy_hashes", {})
    path = tmp_path / "users"
    path.write_text(f"a:{pbkdf2('x')}\n")
    UserDB(path).load()
    assert list(users._dummy_hashes) == ["PBKDF2"]


# -- maildaemons-passwd ----------------------------------------------------------------------

PASSWD = [sys.executable, "-m", "common.passwd"]


def passwd(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "maildaemons-passwd"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_passwd_prints_a_hash_read_from_stdin():
    result = passwd(stdin="s3cret pw\n")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("{ARGON2ID}$argon2id$") and "s3cret" not in line
    assert verify_password(line, "s3cret pw")
    result = passwd("-s", "pbkdf2", "-u", "bob", stdin="pw\r\n")
    name, _, stored = result.stdout.strip().partition(":")
    assert name == "bob" and stored.startswith("{PBKDF2}") and verify_password(stored, "pw")


def test_passwd_verifies_and_refuses():
    stored = hash_password("pw", "PBKDF2")
    assert passwd("-t", stored, stdin="pw\n").stdout == "verified\n"
    wrong = passwd("-t", stored, stdin="px\n")
    assert wrong.returncode == 1 and wrong.stdout == "not verified\n"
    empty = passwd(stdin="\n")
    assert empty.returncode == 1 and "empty" in empty.stderr and empty.stdout == ""
    unknown = passwd("-s", "ROT13", stdin="pw\n")
    assert unknown.returncode == 2 and "ROT13" in unknown.stderr
    assert passwd("-u", "../evil", stdin="pw\n").returncode == 2
    assert "ARGON2ID" in passwd("-l").stdout.split()


@needs_doveadm
def test_passwd_output_verifies_with_doveadm():
    stored = passwd(stdin="pw\n").stdout.strip()
    assert doveadm("pw", "-t", stored, "-p", "pw").returncode == 0


def test_passwd_reads_the_terminal_without_echo_twice():
    """Through a pseudo-terminal: two prompts, nothing echoed, the hash printed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child runs the command on the pty
        command = str(Path(sys.executable).parent / "maildaemons-passwd")
        os.execv(command, [command])  # noqa: S606 (no shell wanted)
    output = b""
    try:
        for answer in (b"tty-secret\n", b"tty-secret\n"):
            while b"password: " not in output.rsplit(b"\n", 1)[-1]:
                output += os.read(fd, 1024)
            os.write(fd, answer)
            output += os.read(fd, 1024)
        while True:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, output
    assert b"Enter new password: " in output and b"Retype new password: " in output
    assert b"tty-secret" not in output
    hashed = output.strip().splitlines()[-1].decode()
    assert verify_password(hashed, "tty-secret")
