"""The disposable per-folder message cache (common/store/msgcache.py) and header-only reads."""

from __future__ import annotations

from pathlib import Path

from common.store import maildir
from common.store.msgcache import CACHE_FILE, MessageCache, parse, serialize


def test_round_trip_with_crlf_values_and_spaces_in_keys(tmp_path: Path) -> None:
    cache = MessageCache(tmp_path)
    cache.put("1700000000.M1P1.host", "envelope", b'("x" {3}\r\nabc NIL)')
    cache.put("odd key with spaces", "envelope", b"")
    cache.put("1700000000.M1P1.host", "bodystructure", b"\n\n")
    cache.save()
    again = MessageCache(tmp_path)
    assert again.get("1700000000.M1P1.host", "envelope") == b'("x" {3}\r\nabc NIL)'
    assert again.get("1700000000.M1P1.host", "bodystructure") == b"\n\n"
    assert again.get("odd key with spaces", "envelope") == b""
    assert again.get("missing", "envelope") is None


def test_prunes_messages_that_are_gone(tmp_path: Path) -> None:
    cache = MessageCache(tmp_path)
    cache.put("a", "envelope", b"A")
    cache.put("b", "envelope", b"B")
    cache.save(keep={"b"})
    assert parse((tmp_path / CACHE_FILE).read_bytes()) == {"b": {"envelope": b"B"}}


def test_damaged_file_keeps_what_is_intact(tmp_path: Path) -> None:
    data = serialize({"a": {"envelope": b"AAA"}, "b": {"envelope": b"BBB"}})
    assert parse(data[:-3]) == {"a": {"envelope": b"AAA"}}
    assert parse(b"garbage\n" + data) == {}
    (tmp_path / CACHE_FILE).write_bytes(b"\x00\xff junk")
    assert MessageCache(tmp_path).get("a", "envelope") is None


def test_unchanged_cache_is_not_rewritten(tmp_path: Path) -> None:
    MessageCache(tmp_path).save()
    assert not (tmp_path / CACHE_FILE).exists()


def test_read_header_stops_at_the_blank_line(tmp_path: Path) -> None:
    folder = tmp_path / "box"
    maildir.ensure_maildir(folder)
    body = b"x" * 100_000
    message = maildir.deliver(folder, b"Subject: a\nFrom: b\n\n" + body)
    assert maildir.read_header(folder, message) == b"Subject: a\nFrom: b\n\n"
    crlf = maildir.deliver(folder, b"Subject: a\r\n\r\nbody\r\n")
    assert maildir.read_header(folder, crlf) == b"Subject: a\r\n\r\n"
    headless = maildir.deliver(folder, b"Subject: only a header\n")
    assert maildir.read_header(folder, headless) == b"Subject: only a header\n"
    long_header = b"X-Long: " + b"y" * 20_000 + b"\n\nbody"
    message = maildir.deliver(folder, long_header)
    assert maildir.read_header(folder, message) == long_header[:-4]
