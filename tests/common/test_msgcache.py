"""The disposable per-folder message cache (common/store/msgcache.py) and header-only reads."""

from __future__ import annotations

from pathlib import Path

from common.store import maildir
from common.store.msgcache import CACHE_FILE, MessageCache, key_crc

KEY = "1700000000.M1P1.host"


def test_round_trip_with_crlf_values_and_sizes(tmp_path: Path) -> None:
    cache = MessageCache(tmp_path)
    cache.put(7, 3, key_crc(KEY), "envelope", b'("x" {3}\r\nabc NIL)')
    cache.put(7, 9, key_crc("odd key with spaces"), "envelope", b"")
    cache.put(7, 3, key_crc(KEY), "bodystructure", b"\n\n")
    cache.put_size(7, 3, key_crc(KEY), 1234)
    cache.put_size(7, 12, key_crc("only a size"), 5)
    assert cache.get(7, 3, key_crc(KEY), "envelope") == b'("x" {3}\r\nabc NIL)', (
        "before the save too"
    )
    cache.save(7, [3, 9, 12])
    again = MessageCache(tmp_path)
    assert again.get(7, 3, key_crc(KEY), "envelope") == b'("x" {3}\r\nabc NIL)'
    assert again.get(7, 3, key_crc(KEY), "bodystructure") == b"\n\n"
    assert again.get(7, 3, key_crc(KEY), "body") is None
    assert again.get(7, 9, key_crc("odd key with spaces"), "envelope") == b""
    assert (again.size(7, 3, key_crc(KEY)), again.size(7, 12, key_crc("only a size"))) == (1234, 5)
    assert again.size(7, 9, key_crc("odd key with spaces")) is None
    assert again.get(7, 4, key_crc(KEY), "envelope") is None, "no such UID"


def test_another_message_or_uidvalidity_is_a_miss(tmp_path: Path) -> None:
    cache = MessageCache(tmp_path)
    cache.put(7, 3, key_crc(KEY), "envelope", b"E")
    cache.save(7, [3])
    assert MessageCache(tmp_path).get(7, 3, key_crc("another key"), "envelope") is None
    assert MessageCache(tmp_path).get(8, 3, key_crc(KEY), "envelope") is None
    assert MessageCache(tmp_path).size(8, 3, key_crc(KEY)) is None


def test_new_values_merge_with_the_stored_ones(tmp_path: Path) -> None:
    first = MessageCache(tmp_path)
    for uid in range(1, 6):
        first.put(7, uid, key_crc(f"k{uid}"), "envelope", b"E%d" % uid)
    first.save(7, range(1, 6))
    second = MessageCache(tmp_path)
    second.put(7, 2, key_crc("k2"), "headers", b"H2")
    second.put_size(7, 4, key_crc("k4"), 40)
    second.put(7, 6, key_crc("k6"), "envelope", b"E6")
    second.save(7, [1, 2, 4, 5, 6])  # 3 was expunged
    third = MessageCache(tmp_path)
    assert [third.get(7, u, key_crc(f"k{u}"), "envelope") for u in range(1, 7)] == [
        b"E1",
        b"E2",
        None,
        b"E4",
        b"E5",
        b"E6",
    ]
    assert (
        third.get(7, 2, key_crc("k2"), "headers") == b"H2" and third.size(7, 4, key_crc("k4")) == 40
    )


def test_prunes_messages_that_are_gone(tmp_path: Path) -> None:
    cache = MessageCache(tmp_path)
    for uid in range(1, 11):
        cache.put(7, uid, key_crc(f"k{uid}"), "envelope", b"x")
    cache.save(7, range(1, 11))
    size = (tmp_path / CACHE_FILE).stat().st_size
    MessageCache(tmp_path).save(7, range(2, 11))  # one gone of ten: not worth a rewrite
    assert (tmp_path / CACHE_FILE).stat().st_size == size
    MessageCache(tmp_path).save(7, range(1, 6))
    assert (tmp_path / CACHE_FILE).stat().st_size < size
    again = MessageCache(tmp_path)
    assert (
        again.get(7, 5, key_crc("k5"), "envelope") == b"x"
        and again.get(7, 6, key_crc("k6"), "envelope") is None
    )


def test_damaged_file_is_empty(tmp_path: Path) -> None:
    cache = MessageCache(tmp_path)
    cache.put(7, 1, key_crc("a"), "envelope", b"AAA")
    cache.save(7, [1])
    data = (tmp_path / CACHE_FILE).read_bytes()
    for damaged in (data[:-30], b"\x00\xff junk", b"maildaemons-cache 1\n", data[:40]):
        (tmp_path / CACHE_FILE).write_bytes(damaged)
        assert MessageCache(tmp_path).get(7, 1, key_crc("a"), "envelope") in (None, b"AAA")
    (tmp_path / CACHE_FILE).write_bytes(b"\x00\xff junk")
    assert MessageCache(tmp_path).get(7, 1, key_crc("a"), "envelope") is None


def test_unchanged_cache_is_not_rewritten(tmp_path: Path) -> None:
    MessageCache(tmp_path).save(7, [1, 2])
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
