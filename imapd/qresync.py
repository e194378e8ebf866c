"""QRESYNC (RFC 7162 3.2): which UIDs vanished since a MODSEQ, for `SELECT ... (QRESYNC ...)`
(3.2.5) and `UID FETCH ... (CHANGEDSINCE n VANISHED)` (3.2.6), as `* VANISHED (EARLIER)`.

The folder's uidlist keeps tombstones (common/store/uidlist.py), so the answer is exact. When the
tombstones that old were dropped, the answer is every UID in the client's range that is not in the
mailbox (RFC 7162 allows UIDs the client never knew; it ignores them), narrowed by the client's
sequence-match data (3.2.5.2) when it sent some.
"""

from __future__ import annotations

import bisect

from imapd.parser import SeqSet
from imapd.selected import Selected

Ranges = list[tuple[int, int]]


def vanished_earlier(
    view: Selected, wanted: Ranges, modseq: int, seq_match: tuple[SeqSet, SeqSet] | None = None
) -> bytes | None:
    """`* VANISHED (EARLIER) ...` for the UIDs in `wanted` expunged after `modseq`, or None."""
    wanted = clip(wanted, view.uidnext - 1)
    present = [e.uid for e in view.entries]  # ascending: the view is in UID order
    known = view.mailbox.vanished_since(modseq)
    if known is None:
        floor = matched_floor(view, seq_match) if seq_match is not None else 0
        found = without(clip_below(wanted, floor + 1), present)
    else:
        found = without(intersect(merge(known), wanted), present)
    if not found:
        return None
    text = ",".join(str(low) if low == high else f"{low}:{high}" for low, high in found)
    return f"* VANISHED (EARLIER) {text}\r\n".encode()


def merge(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for low, high in sorted(ranges):
        if out and low <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return out


def clip(ranges: Ranges, highest: int) -> Ranges:
    return [(low, min(high, highest)) for low, high in ranges if low <= highest]


def clip_below(ranges: Ranges, lowest: int) -> Ranges:
    return [(max(low, lowest), high) for low, high in ranges if high >= lowest]


def intersect(first: Ranges, second: Ranges) -> Ranges:
    """Both sorted and disjoint."""
    out: Ranges = []
    i = j = 0
    while i < len(first) and j < len(second):
        low = max(first[i][0], second[j][0])
        high = min(first[i][1], second[j][1])
        if low <= high:
            out.append((low, high))
        if first[i][1] < second[j][1]:
            i += 1
        else:
            j += 1
    return out


def without(ranges: Ranges, present: list[int]) -> Ranges:
    """`ranges` minus the sorted UIDs in `present`."""
    out: Ranges = []
    for low, high in ranges:
        start = low
        index = bisect.bisect_left(present, low)
        while index < len(present) and present[index] <= high:
            if present[index] > start:
                out.append((start, present[index] - 1))
            start = present[index] + 1
            index += 1
        if start <= high:
            out.append((start, high))
    return out


def matched_floor(view: Selected, seq_match: tuple[SeqSet, SeqSet]) -> int:
    """The highest UID below which the client's view is known to be right (RFC 7162 3.2.5.2):
    walking the client's (sequence number, UID) pairs in order, the last pair that still holds
    before the first that does not. Nothing below that UID can have vanished unseen."""
    numbers, uids = seq_match
    floor = 0
    pairs = zip(numbers.iter_values(1 << 32), uids.iter_values(1 << 32), strict=False)
    for seq, uid in pairs:
        if seq > len(view.entries) or view.entries[seq - 1].uid != uid:
            break
        floor = uid
    return floor
