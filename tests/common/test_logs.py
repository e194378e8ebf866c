"""The log file handler (common/logs.py): a rename is noticed within a second, HUP at once;
a session's lines written directly, as logging would write them."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import logs


def test_a_renamed_log_file_is_noticed_within_the_recheck(tmp_path: Path, monkeypatch):
    path = tmp_path / "imapd.log"
    handler = logs.LogFileHandler(str(path), encoding="utf-8")
    handler.setFormatter(logs.LineFormatter("imapd"))
    log = logging.getLogger("test-logs-rename")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.warning("one")
        os.rename(path, tmp_path / "imapd.log.1")
        log.warning("two")  # within the second: still the open file, now renamed
        clock = [handler._checked + logs.LogFileHandler.RECHECK]
        monkeypatch.setattr(logs.time, "monotonic", lambda: clock[0])
        log.warning("three")  # a second later: the rename is seen, a new file opened
    finally:
        log.removeHandler(handler)
        handler.close()
    old = (tmp_path / "imapd.log.1").read_text()
    assert "one" in old and "two" in old and "three" not in old
    assert "three" in path.read_text()


# -- a session's INFO lines, written directly (logs.DirectLines) -------------------------------

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} imapd\[(\d+)\]: (.*)$")


@pytest.fixture
def daemon_log(tmp_path: Path) -> Iterator[tuple[logging.Logger, Path]]:
    """The daemon's logging as setup() makes it (a file), put back as it was afterwards."""
    root, path = logging.getLogger(), tmp_path / "imapd.log"
    saved = (root.handlers[:], root.level, logs._handler)
    root.handlers = []
    logs._handler = None
    log = logs.setup("imapd", str(path))
    try:
        yield log, path
    finally:
        if logs._handler is not None:
            logs._handler.close()
        root.handlers, root.level, logs._handler = saved[0], saved[1], saved[2]


def alone() -> None:
    """The daemon's handler alone on the root logger, as in a daemon: pytest adds its own
    for each test (they would take every line logging's way)."""
    logging.getLogger().handlers = [logs._handler]  # type: ignore[list-item]


def lines(path: Path) -> list[tuple[int, str]]:
    found = [LINE.match(line) for line in path.read_text().splitlines()]
    assert all(found), path.read_text()
    return [(int(m[1]), m[2]) for m in found if m]


def test_session_lines_are_written_directly_as_logging_would(daemon_log, monkeypatch):
    log, path = daemon_log
    alone()
    session = logs.SessionLog(log, 5, "192.0.2.7")
    took = []
    monkeypatch.setattr(log, "_log", lambda *args, **kwargs: took.append(args))
    session.info("connect")
    session.info("login %s=%s", "user", "bob")
    session.info("%(who)s left", {"who": "bob"})
    assert took == []  # none took logging's way
    pid = os.getpid()
    assert lines(path) == [
        (pid, "{5} 192.0.2.7 connect"),
        (pid, "{5} 192.0.2.7 login user=bob"),
        (pid, "{5} 192.0.2.7 bob left"),
    ]


def test_another_handler_or_a_level_takes_loggings_way(daemon_log):
    log, path = daemon_log
    alone()
    session = logs.SessionLog(log, 6, "192.0.2.8")
    seen: list[str] = []
    capture = logging.Handler()
    capture.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger().addHandler(capture)
    try:
        session.info("login %s=%s", "user", "carol")
    finally:
        logging.getLogger().removeHandler(capture)
    assert seen == ["{6} 192.0.2.8 login user=carol"]  # the other handler had it too
    log.setLevel(logging.WARNING)
    try:
        session.info("not written")
    finally:
        log.setLevel(logging.NOTSET)
    assert [text for _, text in lines(path)] == ["{6} 192.0.2.8 login user=carol"]


def test_a_bad_format_is_reported_by_logging_and_the_session_goes_on(daemon_log, capsys):
    log, path = daemon_log
    alone()
    session = logs.SessionLog(log, 7, "192.0.2.9")
    session.info("two %s %s", "one")  # a mistake in our code: logging reports it on stderr
    session.info("next")
    assert "Logging error" in capsys.readouterr().err
    assert [text for _, text in lines(path)] == ["{7} 192.0.2.9 next"]


def test_a_renamed_log_file_is_noticed_by_direct_lines_too(daemon_log, monkeypatch):
    log, path = daemon_log
    alone()
    session = logs.SessionLog(log, 8, "192.0.2.10")
    session.info("one")
    os.rename(path, path.with_name("imapd.log.1"))
    handler = logs._handler
    assert isinstance(handler, logs.LogFileHandler)
    clock = [handler._checked + logs.LogFileHandler.RECHECK]
    monkeypatch.setattr(logs.time, "monotonic", lambda: clock[0])
    session.info("two")
    assert [text for _, text in lines(path.with_name("imapd.log.1"))] == ["{8} 192.0.2.10 one"]
    assert [text for _, text in lines(path)] == ["{8} 192.0.2.10 two"]
