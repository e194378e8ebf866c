"""The log file handler (common/logs.py): a rename is noticed within a second, HUP at once."""

from __future__ import annotations

import logging
import os
from pathlib import Path

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
