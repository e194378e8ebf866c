"""The disposable per-folder message cache (common/store/msgcache.py) and header-only reads."""

from __future__ import annotations

from array import array
from pathlib import Path

from common.store import maildir
from common.store.msgcache import CACHE_FILE, MessageCache

SPACE = "1700000000.4f2a9c01d3b5"  # UIDVALIDITY and uidlist lineage
OTHER = "1700000000.0c1d2e3f4a5b"  # the same UIDVALIDITY, UIDs started over


def test_round_trip_with_crlf_values_and_sizes(tmp_path: Path) -> None:
    cache = MessageCache(tmp_path)
    cache.put(SPACE, 3, "envelope", b'("x" {3}\r\nabc NIL)')
    cache.put(SPACE, 9, "envelope", b"")
    cache.put(SPACE, 3, "bodystructure", b"\n\n")
    cache.put_size(SPACE, 3, 1234)
    cache.put_size(SPACE, 12, 5)
    assert cache.get(SPACE, 3, "envelope") == b'("x" {3}\r\nabc NIL)', "before the save too"
    cache.save(SPACE, [3, 9, 12])
    again = MessageCache(tmp_path)
    assert again.get(SPACE, 3, "envelope") == b'("x" {3}\r\nabc NIL)'
    assert again.get(SPACE, 3, "bodystructure") == b"\n\n"
    assert again.get(SPACE, 3, "body") is None
    assert again.get(SPACE, 9, "envelope") == b""
    assert (again.size(SPACE, 3), again.size(SPACE, 12)) == (1234, 5)
    assert again.size(SPACE, 9) is None
    assert again.get(SPACE, 4, "envelope") is None, "no such UID"


def test_another_uid_space_is_a_miss(tmp_path: Path) -> None:
    cache = MessageCache(tmp_path)
    cache.put(SPACE, 3, "envelope", b"E")
    cache.put_size(SPACE, 3, 9)
    cache.save(SPACE, [3])
    assert MessageCache(tmp_path).get(OTHER, 3, "envelope") is None
    assert MessageCache(tmp_path).size(OTHER, 3) is None
    mixed = MessageCache(tmp_path)
    assert mixed.size(SPACE, 3) == 9
    mixed.put_size(OTHER, 4, 1)  # the folder started over meanwhile: the old values go
    assert mixed.size(SPACE, 3) == 9 and mixed.size(OTHER, 3) is None


def test_sizes_of_many_messages_at_once(tmp_path: Path) -> None:
    cache = MessageCache(tmp_path)
    for uid in range(1, 6):
        cache.put_size(SPACE, uid, uid * 10)
    cache.save(SPACE, range(1, 6))
    again = MessageCache(tmp_path)
    assert again.sizes(SPACE, array("I", range(1, 6))) == [10, 20, 30, 40, 50]
    assert again.sizes(SPACE, array("I", [2, 4, 7])) == [20, 40, None]


def test_new_values_merge_with_the_stored_ones(tmp_path: Path) -> None:
    first = MessageCache(tmp_path)
    for uid in range(1, 6):
        first.put(SPACE, uid, "envelope", b"E%d" % uid)
    first.save(SPACE, range(1, 6))
    second = MessageCache(tmp_path)
    second.put(SPACE, 2, "headers", b"H2")
    second.put_size(SPACE, 4, 40)
    second.put(SPACE, 6, "envelope", b"E6")
    second.save(SPACE, [1, 2, 4, 5, 6])  # 3 was expunged
    third = MessageCache(tmp_path)
    assert [third.get(SPACE, u, "envelope") for u in range(1, 7)] == [
        b"E1",
        b"E2",
        None,
        b"E4",
        b"E5",
        b"E6",
    ]
    assert third.get(SPACE, 2, "headers") == b"H2" and third.size(SPACE, 4) == 40


def test_prunes_messages_that_are_gone(tmp_path: Path) -> None:
    cache = MessageCache(tmp_path)
    for uid in range(1, 11):
        cache.put(SPACE, uid, "envelope", b"x")
    cache.save(SPACE, range(1, 11))
    size = (tmp_path / CACHE_FILE).stat().st_size
    MessageCache(tmp_path).save(SPACE, range(2, 11))  # one gone of ten: not worth a rewrite
    assert (tmp_path / CACHE_FILE).stat().st_size == size
    MessageCache(tmp_path).save(SPACE, range(1, 6))
    assert (tmp_path / CACHE_FILE).stat().st_size < size
    again = MessageCache(tmp_path)
    assert again.get(SPACE, 5, "envelope") == b"x" and again.get(SPACE, 6, "envelope") is None


def test_damaged_file_is_empty(tmp_path: Path) -> None:
    cache = MessageCache(tmp_path)
    cache.put(SPACE, 1, "envelope", b"AAA")
    cache.save(SPACE, [1])
    data = (tmp_path / CACHE_FILE).read_bytes()
    for damaged in (data[:-30], b"\x00\xff junk", b"maildaemons-cache 1\n", data[:40]):
        (tmp_path / CACHE_FILE).write_bytes(damaged)
        assert MessageCache(tmp_path).get(SPACE, 1, "envelope") in (None, b"AAA")
    (tmp_path / CACHE_FILE).write_bytes(b"\x00\xff junk")
    assert MessageCache(tmp_path).get(SPACE, 1, "envelope") is None


def test_unchanged_cache_is_not_rewritten(tmp_path: Path) -> None:
    MessageCache(tmp_path).save(SPACE, [1, 2])
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
    # Renamed by another session meanwhile (flags changed): followed, and still the header only.
    moved = maildir.deliver(folder, b"Subject: m\n\nSubject: not a header\n")
    (folder / moved.relpath).rename(folder / "cur" / (moved.key + ":2,S"))
    assert maildir.read_header(folder, moved) == b"Subject: m\n\n"
    assert moved.subdir == "cur"


def test_new_values_in_any_order(tmp_path: Path) -> None:
    cache = MessageCache(tmp_path)
    for uid in (5, 3, 9, 1):
        cache.put(SPACE, uid, "envelope", b"E%d" % uid)
        cache.put_size(SPACE, uid, uid)
    cache.put(SPACE, 3, "headers", b"H3")
    assert [cache.get(SPACE, u, "envelope") for u in (1, 3, 5, 9, 7)] == [
        b"E1",
        b"E3",
        b"E5",
        b"E9",
        None,
    ]
    cache.save(SPACE, [1, 3, 5, 9])
    again = MessageCache(tmp_path)
    assert again.sizes(SPACE, array("I", [1, 3, 5, 9])) == [1, 3, 5, 9]
    assert again.get(SPACE, 3, "headers") == b"H3" and again.get(SPACE, 5, "headers") is None


def test_a_field_first_given_late_leaves_the_earlier_rows_without(tmp_path: Path) -> None:
    """Each field keeps its values by row from its first value on: rows added before it, and
    rows after its last value, have none of it, in the session and once saved."""
    cache = MessageCache(tmp_path)
    for uid in range(1, 8):
        cache.put_many(SPACE, uid, uid * 100, {"envelope": b"E%d" % uid})
    cache.put(SPACE, 5, "sort-subject", b"")  # empty, but there
    cache.put(SPACE, 3, "emailid", b"M3")  # a row before the field's first
    cache.put_many(SPACE, 9, None, {"sort-subject": b"K9"})  # a new row, after a gap in the field
    expected = {
        "envelope": [b"E1", b"E2", b"E3", b"E4", b"E5", b"E6", b"E7", None],
        "sort-subject": [None, None, None, None, b"", None, None, b"K9"],
        "emailid": [None, None, b"M3", None, None, None, None, None],
        "body": [None] * 8,
    }
    uids = [1, 2, 3, 4, 5, 6, 7, 9]
    for field, values in expected.items():
        assert [cache.get(SPACE, u, field) for u in uids] == values, field
        assert cache.column(SPACE, array("I", uids), field) == values, field
    cache.save(SPACE, uids)
    again = MessageCache(tmp_path)
    for field, values in expected.items():
        assert again.column(SPACE, array("I", uids), field) == values, field
    assert again.sizes(SPACE, array("I", uids)) == [100, 200, 300, 400, 500, 600, 700, None]


def test_whole_columns_as_stored_and_with_new_values(tmp_path: Path) -> None:
    """column() of the stored rows is one read of the field; this session's values are laid
    over it; a field kept as it was is copied into the next file whole."""
    first = MessageCache(tmp_path)
    for uid in range(1, 7):
        first.put_many(SPACE, uid, uid, {"envelope": b"E%d" % uid, "sort-from": b"f%d" % uid})
    first.put(SPACE, 3, "headers", b"")
    first.save(SPACE, range(1, 7))
    second = MessageCache(tmp_path)
    uids = array("I", range(1, 7))
    assert second.column(SPACE, uids, "envelope") == [b"E%d" % u for u in range(1, 7)]
    assert second.column(SPACE, uids, "headers") == [None, None, b"", None, None, None]
    assert second.column(SPACE, uids, "body") == [None] * 6
    second.put(SPACE, 4, "sort-from", b"new")
    second.put(SPACE, 9, "sort-from", b"f9")  # a message the file does not know yet
    with_new = array("I", [*range(1, 7), 9])
    assert second.column(SPACE, with_new, "sort-from") == [
        *(b"f1", b"f2", b"f3", b"new", b"f5", b"f6"),
        b"f9",
    ]
    assert second.column(SPACE, array("I", [2, 4, 8, 9]), "sort-from") == [
        *(b"f2", b"new", None, b"f9")
    ]
    second.save(SPACE, with_new)
    third = MessageCache(tmp_path)
    assert third.column(SPACE, with_new, "envelope") == [
        *(b"E%d" % u for u in range(1, 7)),
        None,
    ]
    assert third.get(SPACE, 4, "sort-from") == b"new" and third.get(SPACE, 9, "sort-from") == b"f9"
    assert third.sizes(SPACE, with_new) == [1, 2, 3, 4, 5, 6, None]
    third.put(SPACE, 2, "body", b"B2")  # the other fields' blocks are copied as they are
    third.save(SPACE, with_new)
    fourth = MessageCache(tmp_path)
    assert fourth.column(SPACE, with_new, "envelope") == [
        *(b"E%d" % u for u in range(1, 7)),
        None,
    ]
    assert fourth.column(SPACE, with_new, "headers") == [None, None, b"", None, None, None, None]
    assert fourth.get(SPACE, 2, "body") == b"B2"


def test_a_damaged_block_reads_as_misses(tmp_path: Path) -> None:
    cache = MessageCache(tmp_path)
    for uid in range(1, 4):
        cache.put(SPACE, uid, "envelope", b"E" * 100)
    cache.save(SPACE, range(1, 4))
    path = tmp_path / CACHE_FILE
    path.write_bytes(path.read_bytes()[:-150])  # the last values cut off
    damaged = MessageCache(tmp_path)
    assert damaged.column(SPACE, array("I", range(1, 4)), "envelope") == [None] * 3
    assert MessageCache(tmp_path).get(SPACE, 3, "envelope") is None


def test_a_version_4_file_is_rebuilt(tmp_path: Path) -> None:
    (tmp_path / CACHE_FILE).write_bytes(
        b"maildaemons-cache 4 V%s N1 D00000000000000000100 Fenvelope\n" % SPACE.encode()
        + b"\0" * 200
    )
    cache = MessageCache(tmp_path)
    assert cache.get(SPACE, 0, "envelope") is None and cache.size(SPACE, 0) is None
    cache.put(SPACE, 1, "envelope", b"E1")
    cache.save(SPACE, [1])
    assert MessageCache(tmp_path).get(SPACE, 1, "envelope") == b"E1"


def test_a_column_of_a_few_messages_is_looked_up_row_by_row(tmp_path: Path) -> None:
    cache = MessageCache(tmp_path)
    for uid in range(1, 101):
        cache.put(SPACE, uid, "sort-to", b"t%d" % uid)
    cache.save(SPACE, range(1, 101))
    again = MessageCache(tmp_path)
    assert again.column(SPACE, array("I", [7, 99, 150]), "sort-to") == [b"t7", b"t99", None]
    assert again.column(SPACE, array("I", [7, 99]), "body") == [None, None]


def test_ranks_of_sort_fields_are_written_with_the_cache(tmp_path: Path) -> None:
    """Each row's value of a sort field gets its rank among all of them when the cache is
    written (equal values, equal ranks; the octet order); they are given only for messages
    that all have one, and not once this session derived a value of the field."""
    values = {1: b"b", 2: b"a", 3: b"b", 4: b"\xc3\xa9", 5: b"", 6: b"ab"}
    cache = MessageCache(tmp_path)
    for uid, value in values.items():
        cache.put(SPACE, uid, "sort-subject", value)
    cache.put(SPACE, 7, "envelope", b"E")  # no subject: no rank
    assert cache.ranks(SPACE, array("I", values), "sort-subject") is None, "not written yet"
    cache.save(SPACE, range(1, 8))
    again = MessageCache(tmp_path)
    ranks = again.ranks(SPACE, array("I", values), "sort-subject")
    assert ranks is not None and list(ranks) == [4, 2, 4, 5, 1, 3]
    assert list(again.ranks(SPACE, array("I", [2, 6]), "sort-subject") or []) == [2, 3]
    assert again.ranks(SPACE, array("I", [6, 7]), "sort-subject") is None, "7 has no value"
    assert again.ranks(SPACE, array("I", [6, 9]), "sort-subject") is None, "9 is not known"
    assert again.ranks(SPACE, array("I", [1]), "sort-from") is None, "no such field"
    again.put(SPACE, 8, "sort-subject", b"aa")
    assert again.ranks(SPACE, array("I", [1, 2]), "sort-subject") is None, "a new value"
    again.save(SPACE, [1, 2, 4, 5, 6, 7, 8])  # 3 went
    third = MessageCache(tmp_path)
    assert list(third.ranks(SPACE, array("I", [1, 2, 4, 5, 6, 8]), "sort-subject") or []) == [
        *(5, 2, 6, 1, 4, 3)
    ]
    third.put(SPACE, 9, "envelope", b"E9")  # rows change, the subjects do not: ranks kept
    third.save(SPACE, [1, 2, 4, 5, 6, 7, 8, 9])
    fourth = MessageCache(tmp_path)
    assert list(fourth.ranks(SPACE, array("I", [2, 8]), "sort-subject") or []) == [2, 3]


def test_the_order_of_a_sort_field_is_kept_when_every_row_has_a_value(tmp_path: Path) -> None:
    values = {1: b"b", 2: b"a", 3: b"b", 4: b"\xc3\xa9", 5: b""}
    cache = MessageCache(tmp_path)
    for uid, value in values.items():
        cache.put(SPACE, uid, "sort-subject", value)
    cache.put(SPACE, 1, "sort-to", b"t")  # not every row: no order of sort-to
    cache.save(SPACE, range(1, 6))
    again = MessageCache(tmp_path)
    rows = array("I", range(1, 6))
    assert list(again.order(SPACE, rows, "sort-subject") or []) == [4, 1, 0, 2, 3]
    assert again.order(SPACE, array("I", [1, 2]), "sort-subject") is None, "not all the rows"
    assert again.order(SPACE, rows, "sort-to") is None
    assert again.ranks(SPACE, array("I", [1]), "sort-to") is not None
    again.put(SPACE, 6, "envelope", b"E")  # a new row without a subject: no order any more
    again.save(SPACE, range(1, 7))
    third = MessageCache(tmp_path)
    assert third.order(SPACE, array("I", range(1, 7)), "sort-subject") is None
    assert list(third.ranks(SPACE, rows, "sort-subject") or []) == [3, 2, 3, 4, 1]
    third.put(SPACE, 6, "sort-subject", b"a")
    assert third.order(SPACE, array("I", range(1, 7)), "sort-subject") is None, "a new value"
    third.save(SPACE, range(2, 7))  # 1 went, 6 has a value now
    fourth = MessageCache(tmp_path)
    assert list(fourth.order(SPACE, array("I", range(2, 7)), "sort-subject") or []) == [
        *(3, 0, 4, 1, 2)
    ]
