"""Property-based fuzzing of POP3 command lines through the session's own dispatcher, in-process:
whatever the client sends, in any state, no exception escapes but the documented ones (the
session's end, the client going away), every reply is one well-formed `+OK`/`-ERR` line or a
well-formed multi-line reply, mail changes only through DELE+QUIT, and no log line ever holds a
password."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from common.lineio import ConnectionClosed
from common.session import SessionEnd
from pop3d.commands import COMMANDS
from pop3d.session import HARD_MAX_LINE, Session, State
from support.inprocess import Harness, check_line, check_multiline
from support.site import deliver

PASSWORD = "Zq-alice-secret"
MESSAGES = [
    b"Subject: one\n\n.starts with a dot\n..two dots\nend\n",
    b"Subject: two\n\nno final newline",
    b"",
]
VERBS = [*COMMANDS, "STLS", "XTND", "", "USER\x00", "PASS\tx", "\u00c4POP"]
# Passwords only where passwords go (PASSWORD_LINES): a user name the client sends is logged.
WORDS = st.one_of(
    st.sampled_from(
        ["alice", "1", "2", "3", "0", "-1", "99999999999", "\u00b2", "*", "=", "PLAIN"]
    ),
    st.sampled_from(["LOGIN", "a" * 300, "../alice", "/etc/passwd", "al\x00ice", "\uff0f"]),
    st.text(max_size=20),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
)
PASSWORDS = st.one_of(st.just(PASSWORD), st.text(max_size=10).map(lambda t: "Zq-" + t))
PASSWORD_LINES = st.one_of(
    PASSWORDS.map(lambda pw: f"PASS {pw}"),
    PASSWORDS.map(lambda pw: "AUTH PLAIN " + base64.b64encode(f"\0alice\0{pw}".encode()).decode()),
    PASSWORDS.map(lambda pw: "AUTH PLAIN " + base64.b64encode(f"a\0alice\0{pw}".encode()).decode()),
    PASSWORDS.map(lambda pw: f"AUTH PLAIN {pw}"),
    PASSWORDS.map(lambda pw: f"APOP alice {pw}"),
)
LINES = st.one_of(
    st.tuples(st.sampled_from(VERBS), st.lists(WORDS, max_size=4)).map(
        lambda vw: " ".join([vw[0], *vw[1]]).encode("utf-8", "surrogateescape")
    ),
    PASSWORD_LINES.map(lambda line: line.encode("utf-8", "surrogateescape")),
    st.binary(max_size=300),
)
LOGIN = [b"USER alice", f"PASS {PASSWORD}".encode()]
USER_FIELD = re.compile(r"(for user |user=)\S*")


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    root = tmp_path_factory.mktemp("pop3-fuzz")
    harness = Harness(Session, COMMANDS, "pop3d", root, {"alice": PASSWORD})
    harness.maildir = root / "mail" / "alice"  # type: ignore[attr-defined]
    return harness


def restock(maildir: Path) -> dict[str, bytes]:
    """The maildir holds exactly MESSAGES again (a QUIT may have removed some)."""
    for sub in ("cur", "new"):
        for file in (maildir / sub).glob("*") if (maildir / sub).exists() else []:
            file.unlink()
    for n, data in enumerate(MESSAGES):
        deliver(maildir, data, name=f"{1700000000 + n}.M{n}P1.fuzz")
    return snapshot(maildir)


def snapshot(maildir: Path) -> dict[str, bytes]:
    return {
        p.name.split(":")[0]: p.read_bytes()
        for sub in ("cur", "new")
        for p in sorted((maildir / sub).iterdir())
    }


def check_reply(data: bytes) -> None:
    if data.count(b"\r\n") > 1 or (data.startswith(b"+OK") and data.endswith(b"\r\n.\r\n")):
        check_multiline(data)
    else:
        check_line(data, (b"+OK", b"-ERR", b"+ "))


@given(
    login=st.booleans(),
    lines=st.lists(LINES, min_size=1, max_size=8),
    continuations=st.lists(
        st.one_of(
            WORDS.map(lambda w: w.encode("utf-8", "surrogateescape")),
            PASSWORDS.map(lambda pw: base64.b64encode(pw.encode())),
            PASSWORDS.map(str.encode),
            st.binary(max_size=40),
        ),
        max_size=3,
    ),
)
@example(login=True, lines=[b"PASS " + PASSWORD.encode(), b"LIST", b"QUIT"], continuations=[])
@example(login=False, lines=[b"APOP alice \xc3\xa9\xc3\xa9"], continuations=[])
@example(login=False, lines=[b"AUTH LOGIN"], continuations=[b"YWxpY2U=", b"!!!"])
@example(login=False, lines=[b"AUTH PLAIN"], continuations=[b"x" * (HARD_MAX_LINE + 10)])
@example(login=True, lines=[b"TOP 1 99999999999999999999", b"RETR 2", b"UIDL 3"], continuations=[])
def test_any_command_lines(
    harness: Harness, login: bool, lines: list[bytes], continuations: list[bytes]
) -> None:
    before = restock(harness.maildir)  # type: ignore[attr-defined]
    harness.capture.lines.clear()
    session = harness.session(255, continuations)
    try:
        for line in (LOGIN if login else []) + lines:
            if session.finished:
                break
            session.dispatch(line)
    except SessionEnd as end:
        check_line(end.reply, (b"-ERR",))
    except ConnectionClosed:
        pass  # the scripted client ran out of SASL lines: the loop closes quietly
    finally:
        quit_seen = session.state is State.UPDATE
        session.release()
    for reply in session.io.replies:
        check_reply(reply)
    if not quit_seen:
        assert snapshot(harness.maildir) == before  # type: ignore[attr-defined]
    for line in harness.capture.lines:
        # A user name is logged as the client sent it, and a SASL exchange may have sent a
        # password where the name goes: the client's doing. Anywhere else, no password.
        line = USER_FIELD.sub(r"\1<user>", line)
        assert "Zq-" not in line, line
