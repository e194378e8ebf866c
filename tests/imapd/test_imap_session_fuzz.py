"""Property-based fuzzing of IMAP commands through the session's own dispatcher and handlers,
in-process, logged in and (mostly) with INBOX selected: whatever the commands, no exception
escapes but the session's end and the client going away, the response stream is well formed
(every line `* `, `+ ` or a command's tag, CRLF-terminated, literals exactly as long as they
say), every command gets its tagged completion, and no log line holds a password."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from common.lineio import ConnectionClosed
from common.session import SessionEnd
from imapd.commands import COMMANDS
from imapd.session import Session
from support.imapfuzz import TOKENS, plausible
from support.inprocess import Harness
from support.site import deliver

PASSWORD = "Zq-alice-secret"
LITERAL_AT_END = re.compile(rb"\{(\d+)\}$")
STATUS = re.compile(rb"^(\S+) (OK|NO|BAD)( |$)")


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    root = tmp_path_factory.mktemp("imap-fuzz")
    harness = Harness(Session, COMMANDS, "imapd", root, {"alice": PASSWORD}, "idle_keepalive = 0\n")
    template = root / "template"
    for n, body in enumerate([b"Subject: one\n\nbody\n", b"Subject: two\n\n", b""]):
        deliver(template, body, name=f"{1700000000 + n}.M{n}P1.fuzz", subdir="cur")
    harness.template = template  # type: ignore[attr-defined]
    return harness


def restore(harness: Harness) -> Path:
    maildir = harness.settings.path("mail_base") / "alice"
    shutil.rmtree(maildir, ignore_errors=True)
    shutil.copytree(harness.template, maildir)  # type: ignore[attr-defined]
    return maildir


def responses(stream: bytes) -> list[bytes]:
    """The stream cut into responses, each checked: its lines end in CRLF, a literal `{n}` at
    a line's end is followed by exactly n octets and the response goes on after them."""
    found = []
    pos = 0
    while pos < len(stream):
        start = pos
        while True:
            end = stream.find(b"\r\n", pos)
            assert end >= 0, stream[start : start + 300]
            segment = stream[pos:end]
            assert b"\n" not in segment and b"\r" not in segment, segment[:300]
            match = LITERAL_AT_END.search(segment)
            if match is None:
                pos = end + 2
                break
            pos = end + 2 + int(match.group(1))
            assert pos <= len(stream), "a literal longer than the stream"
        found.append(stream[start:pos])
    return found


def check_stream(stream: bytes, tags: list[bytes]) -> None:
    completed = []
    for response in responses(stream):
        if response.startswith(b"* BAD "):  # a command whose tag could not be read
            completed.append(b"*")
            continue
        if response.startswith((b"* ", b"+ ")):
            continue
        match = STATUS.match(response)
        assert match is not None, response[:300]
        completed.append(match.group(1))
    # A completion for each command, in order (`* BAD` for one whose tag could not be read;
    # the last may have none when the session ended during it).
    named = [t for t in completed if t != b"*"]
    assert named == [t for t in tags if t in named][: len(named)]
    assert len(completed) in (len(tags), len(tags) - 1), (completed, tags)


@given(
    select=st.booleans(),
    commands=st.lists(st.one_of(plausible(), plausible(), TOKENS), min_size=1, max_size=6),
    continuations=st.lists(st.one_of(TOKENS, st.just(b"DONE"), st.just(b"*")), max_size=3),
)
@example(
    select=True,
    commands=[b"t1 IDLE", b"t1 FETCH 1:* (BODY[] BODYSTRUCTURE)"],
    continuations=[b"DONE"],
)
@example(select=True, commands=[b"t1 COMPRESS DEFLATE", b"t1 CAPABILITY"], continuations=[])
@example(
    select=True, commands=[b"t1 UID MOVE 1:* Trash", b"t1 EXPUNGE", b"t1 CLOSE"], continuations=[]
)
@example(select=False, commands=[b"t1 AUTHENTICATE PLAIN"], continuations=[b"!!"])
@example(
    select=True,
    commands=[b"t1 APPEND INBOX {3+}\r\nx\r\n", b"t1 STATUS INBOX (MESSAGES)"],
    continuations=[],
)
def test_any_commands_in_a_session(
    harness: Harness, select: bool, commands: list[bytes], continuations: list[bytes]
) -> None:
    restore(harness)
    harness.capture.lines.clear()
    session = harness.session(65536, continuations)
    sent = [f"a0 LOGIN alice {PASSWORD}".encode()] + ([b"a1 SELECT INBOX"] if select else [])
    sent += commands
    tags = []  # of the commands dispatched
    try:
        for raw in sent:
            if session.finished:
                break
            tags.append(raw.split(b" ", 1)[0])
            session.dispatch(raw)
    except SessionEnd as end:
        session.io.write(end.reply)
    except ConnectionClosed:
        pass
    finally:
        session.release()
    check_stream(b"".join(session.io.replies), tags)
    for line in harness.capture.lines:
        assert "Zq-" not in line, line
