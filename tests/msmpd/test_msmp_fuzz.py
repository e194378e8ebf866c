"""Property-based fuzzing of MSMP command lines through the session's own dispatcher, in-process:
no exception escapes but the session's end, every reply is one well-formed `+OK`/`-ERR` line of
at most 512 octets or a well-formed multi-line reply, nothing is written outside the site, and
no log line holds a password."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import common.users
from common.session import SessionEnd
from msmpd.commands import COMMANDS
from msmpd.replies import MAX_LINE
from msmpd.session import Session
from support.inprocess import Harness, check_line, check_multiline

ADMIN_PASSWORD = "Zq-admin-secret"
NEW_PASSWORD = "Zq-new-user-secret"
VERBS = [*COMMANDS, "", "ADD\x00", "\u00c4DD", "add", "SET\tmaildir"]
WORDS = st.one_of(
    # Not "maildir": SET maildir / then ADD bin would make /bin/cur on the test machine.
    # Passwords only where passwords go (PASSWORDS): a name the client sends is logged.
    st.sampled_from(["admin", "bob", "transformer", "GET"]),
    st.sampled_from(
        ["../etc", "/etc/passwd", "a" * 41, "b\x00b", "\uff0fetc", "\u2024\u2024", ".hidden"]
    ),
    st.text(max_size=20),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
)
PASSWORDS = st.one_of(
    st.sampled_from([ADMIN_PASSWORD, NEW_PASSWORD]),
    st.text(max_size=10).map(lambda t: "Zq-" + t),
)
LINES = st.one_of(
    st.tuples(st.sampled_from(VERBS), st.lists(WORDS, max_size=3)).map(
        lambda vw: " ".join([vw[0], *vw[1]]).encode("utf-8", "surrogateescape")
    ),
    st.tuples(st.sampled_from(["PASS", "pass", "ADD bob", "ADD x\t"]), PASSWORDS).map(
        lambda vp: f"{vp[0]} {vp[1]}".encode("utf-8", "surrogateescape")
    ),
    st.binary(max_size=200),
)
LOGIN = [b"USER admin", f"PASS {ADMIN_PASSWORD}".encode()]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    root = tmp_path_factory.mktemp("msmp-fuzz")
    return Harness(Session, COMMANDS, "msmpd", root, {"admin": ADMIN_PASSWORD}, "max_users = 50\n")


@pytest.fixture(autouse=True)
def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """ADD's hashing is not what is fuzzed here: a cheap scheme keeps the examples fast."""
    real = common.users.hash_password
    monkeypatch.setattr(common.users, "hash_password", lambda pw, scheme="": real(pw, "SSHA512"))


def outside_files(root: Path) -> set[str]:
    return {str(p) for p in root.parent.iterdir()}


def check_reply(data: bytes) -> None:
    if data.count(b"\r\n") > 1:
        check_multiline(data)
        lines = data.split(b"\r\n")[:-1]
    else:
        check_line(data, (b"+OK", b"-ERR"))
        lines = [data[:-2]]
    assert all(len(line) + 2 <= MAX_LINE + 2 for line in lines), data[:200]


@given(login=st.booleans(), lines=st.lists(LINES, min_size=1, max_size=6))
@example(login=True, lines=[f"ADD bob {NEW_PASSWORD}".encode(), b"LIST", b"LIST bob"])
@example(login=True, lines=[b"ADD ../etc x", b"DELE /etc", b"LOGS ..", b"LIST a\xc3\xbfb"])
@example(login=True, lines=[b"SET transformer " + "\u00fc".encode() * 100, b"GET transformer"])
@example(login=True, lines=[b"SET maildir " + "\u00fc".encode() * 100, b"GET maildir"])
@example(login=False, lines=[b"PASS " + ADMIN_PASSWORD.encode(), b"USER admin", b"PASS x"])
def test_any_command_lines(harness: Harness, login: bool, lines: list[bytes]) -> None:
    root = harness.settings.path("state_dir").parent
    around = outside_files(root)
    harness.capture.lines.clear()
    session = harness.session(MAX_LINE)
    try:
        for line in (LOGIN if login else []) + lines:
            if session.finished:
                break
            session.dispatch(line)
    except SessionEnd as end:
        check_line(end.reply, (b"-ERR",))
    for reply in session.io.replies:
        check_reply(reply)
    assert outside_files(root) == around
    assert not (root / "mail" / ".." / "etc").exists()
    for line in harness.capture.lines:
        assert "Zq-" not in line, line
    (root / "state" / "runtime.json").unlink(missing_ok=True)  # SET lasts one example
