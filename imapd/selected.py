"""The selected mailbox as one session sees it: sequence numbers, UIDs, flags last reported.

RFC 3501 sections 5.2 and 7.4.1: changes by other sessions (new mail, expunges, flag changes) are
reported as untagged EXISTS/RECENT/EXPUNGE/FETCH at the next command that may carry them. EXPUNGE is
never sent during FETCH, STORE or SEARCH (the non-UID forms): a vanished message then stays in the
sequence until a later command may report it, so sequence numbers never shift under the client.

Once CONDSTORE is enabled (RFC 7162 3.1), unsolicited FETCH responses carry UID and MODSEQ; once
QRESYNC is enabled (3.2.10.2), expunges are reported as one `VANISHED <uids>` instead of EXPUNGEs.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Protocol

from common.store import SEEN, Entry, Mailbox, Snapshot
from imapd import flags as imapflags
from imapd.parser import SeqSet
from imapd.responses import PERMANENT_TEXT, ImapError, bad, flag_list, untagged

MAX_RANGE_END = 1 << 64  # above any number a sequence set can hold
UID = attrgetter("uid")


class Watcher(Protocol):
    """Something that reports on the view's changes too (the update contexts of RFC 5267 4,
    imapd/contexts.py): after the other changes, and before expunges are reported."""

    def updates(self, view: Selected) -> list[bytes]: ...

    def expunging(self, view: Selected, uids: set[int]) -> list[bytes]: ...


@dataclass
class Selected:
    name: str
    mailbox: Mailbox
    readonly: bool
    condstore: bool = False
    qresync: bool = False
    rev2: bool = False  # IMAP4rev2 (imapd/rev2.py): no \Recent, $Junk and $NotJunk defined
    entries: list[Entry] = field(default_factory=list)  # by sequence number - 1, UID order
    # uid -> letters this session reported since the last refresh (a STORE, a \Seen by FETCH),
    # so that refresh does not report them a second time.
    reported: dict[int, str] = field(default_factory=dict)
    recent: UidSet = field(default_factory=lambda: UidSet())
    gone: set[int] = field(default_factory=set)  # vanished, EXPUNGE not yet sent
    uidvalidity: int = 0
    uidnext: int = 1
    highestmodseq: int = 1
    keywords: tuple[str, ...] = ()  # as last announced in FLAGS
    watcher: Watcher | None = None
    saved: frozenset[int] = frozenset()  # UIDs a SEARCH RETURN (SAVE) saved: "$" (RFC 5182)
    # (letters, recent) -> rendered FLAGS item: a folder has few distinct combinations
    _flags_text: dict[tuple[str, bool], bytes] = field(default_factory=dict)

    @classmethod
    def open(cls, mailbox: Mailbox, snap: Snapshot, readonly: bool) -> Selected:
        """The view of a mailbox just opened (FolderTree.open), from the snapshot of that open,
        which claimed \\Recent unless `readonly`."""
        view = cls(mailbox.name, mailbox, readonly)
        view._take(snap)
        view.entries = snap.entries  # a list of its own: Mailbox.snapshot() copies
        view.recent = UidSet(e.uid for e in view.entries if snap.is_recent(e))
        mailbox.drain_changes()  # the snapshot has them all
        return view

    def _take(self, snap: Snapshot) -> None:
        self.uidvalidity, self.uidnext = snap.uidvalidity, snap.uidnext
        self.highestmodseq = snap.highestmodseq

    # -- changes -----------------------------------------------------------------------------

    def refresh(self, allow_expunge: bool, force: bool = False) -> list[bytes]:
        """Untagged responses for what changed since the last refresh. `force` reads the folder
        even when its stamp says nothing moved (the caller needs a fresh HIGHESTMODSEQ). Only
        what the mailbox says changed is looked at, never the whole folder."""
        if force or (allow_expunge and self.gone):
            snap = self.mailbox.resync(claim_recent=not self.readonly)
        else:
            polled = self.mailbox.poll(claim_recent=not self.readonly)
            if polled is None:
                # Nothing moved, but this session may have changed flags: new MODSEQs.
                self.highestmodseq = self.mailbox.highestmodseq()
                return self.watched()
            snap = polled
        self._take(snap)
        touched, expunged = self.mailbox.drain_changes()
        out = []
        self.gone |= {uid for uid in expunged if self.find(uid) is not None}
        if allow_expunge and self.gone:
            out.extend(self.expunged(self.gone))
        out.extend(self._flag_changes(touched))
        out.extend(self._arrivals(snap))
        out.extend(self.watched())
        self.reported.clear()
        # Keywords are read after the FETCH lines named theirs: whatever those show is
        # announced first (RFC 3501 7.2.6), even a keyword created while they were made.
        return self.new_keywords() + out

    def watched(self) -> list[bytes]:
        return self.watcher.updates(self) if self.watcher is not None else []

    def held_back(self) -> list[bytes]:
        """With QRESYNC, for a command that ends with expunges it could not report: the MODSEQs
        it did report may be newer than those expunges (RFC 7162 6), and a client that lost the
        connection now would resynchronize from the highest MODSEQ it saw and never learn of
        them. A HIGHESTMODSEQ just below the oldest, which the client must take over any MODSEQ
        it saw, keeps them in its next resynchronization."""
        if not (self.qresync and self.gone):
            return []
        expunged = self.mailbox.expunged_at(self.gone)
        if expunged is None:
            return []
        return [untagged(f"OK [HIGHESTMODSEQ {expunged - 1}] Expunges pending")]

    def flag_lines(self) -> list[bytes]:
        """FLAGS and PERMANENTFLAGS (RFC 3501 7.2.6, 7.1): at SELECT, and again whenever a
        session creates a keyword in this folder."""
        keywords = self.mailbox.keywords.all()
        self.keywords = tuple(keywords)
        defined = imapflags.defined_flags(self.mailbox.keywords)
        if self.rev2:  # RFC 9051 2.3.2: the keywords of junk filtering (imapd/rev2.py)
            extra = [k for k in ("$Junk", "$NotJunk") if k not in defined]
            defined, keywords = [*defined, *extra], [*keywords, *extra]
        permanent = () if self.readonly else (*imapflags.STORABLE_FLAGS, *keywords, "\\*")
        return [
            untagged(f"FLAGS {flag_list(defined)}"),
            untagged(f"OK [PERMANENTFLAGS {flag_list(permanent)}] {PERMANENT_TEXT}"),
        ]

    def new_keywords(self) -> list[bytes]:
        """FLAGS and PERMANENTFLAGS again when the folder has keywords this session was not
        told about yet; sent before any response that shows them."""
        if tuple(self.mailbox.keywords.all()) == self.keywords:
            return []
        self._flags_text.clear()
        return self.flag_lines()

    def expunged(self, uids: set[int]) -> list[bytes]:
        """Remove `uids` from the view; `* n EXPUNGE` for each, highest sequence number first
        so every number sent is valid at the moment it is sent, or with QRESYNC one
        `* VANISHED <uids>` naming only messages this client was told about (RFC 7162 3.2.10.2)."""
        notes = []  # the watcher's, numbered as the client numbers the messages before this
        if self.watcher is not None:
            notes = self.watcher.expunging(
                self, {uid for uid in uids if self.find(uid) is not None}
            )
        out = []
        removed = []
        seqs = sorted((seq for uid in uids if (seq := self.seq_of_uid(uid))), reverse=True)
        for seq in seqs:
            entry = self.entries.pop(seq - 1)
            self.reported.pop(entry.uid, None)
            self.recent.discard(entry.uid)
            out.append(b"* %d EXPUNGE\r\n" % seq)
            removed.append(entry.uid)
        self.gone -= uids
        if self.qresync:
            return notes + ([vanished_line(removed, earlier=False)] if removed else [])
        return notes + out

    def safe_highestmodseq(self) -> int | None:
        """HIGHESTMODSEQ for a response code: the value of the last full read, and only when
        every change up to it has been reported (an expunge still pending would be missed by a
        client that resynchronizes from this value later)."""
        return None if self.gone else self.highestmodseq

    def _flag_changes(self, touched: set[int]) -> list[bytes]:
        out = []
        for uid in sorted(touched):
            seq = self.seq_of_uid(uid)
            if seq is None or uid in self.gone:
                continue
            entry = self.entries[seq - 1]
            if self.reported.get(uid) != entry.letters:
                # RFC 7162 3.1 and 3.2.4: with CONDSTORE, unsolicited FETCH carries UID too.
                out.append(self.flags_response(seq, entry, with_uid=self.condstore))
        return out

    def _arrivals(self, snap: Snapshot) -> list[bytes]:
        entries = snap.entries
        highest = self.entries[-1].uid if self.entries else 0
        fresh = entries[bisect.bisect_right(entries, highest, key=UID) :]
        if not fresh:
            return []
        for entry in fresh:
            self.entries.append(entry)
            if snap.is_recent(entry):
                self.recent.add(entry.uid)
        if self.rev2:  # RFC 9051: no RECENT response
            return [b"* %d EXISTS\r\n" % len(self.entries)]
        return [b"* %d EXISTS\r\n" % len(self.entries), self.recent_line()]

    def recent_line(self) -> bytes:
        """`* n RECENT` (RFC 3501 7.3.2): the messages \\Recent in this session alone (the
        store's claim, common/store Mailbox.sync), or in a read-only one those no session has
        claimed yet (RFC 3501 2.3.2)."""
        return b"* %d RECENT\r\n" % len(self.recent)

    # -- lookups -------------------------------------------------------------------------------

    def save_caches(self) -> None:
        self.mailbox.save_caches()

    def flags_of(self, entry: Entry) -> list[str]:
        recent = entry.uid in self.recent and not self.rev2
        return imapflags.to_imap(entry.letters, self.mailbox.keywords, recent)

    def flags_item(self, entry: Entry) -> bytes:
        """`FLAGS (...)` for a FETCH response, rendered once per combination of letters."""
        key = (entry.letters, entry.uid in self.recent and not self.rev2)
        text = self._flags_text.get(key)
        if text is None:
            text = b"FLAGS " + flag_list(self.flags_of(entry)).encode("utf-8", "replace")
            self._flags_text[key] = text
        return text

    def flags_response(self, seq: int, entry: Entry, with_uid: bool) -> bytes:
        parts = []
        if with_uid:
            parts.append(f"UID {entry.uid}")
        parts.append(self.flags_item(entry).decode("utf-8", "replace"))
        if self.condstore:
            parts.append(f"MODSEQ ({entry.modseq})")
        return f"* {seq} FETCH ({' '.join(parts)})\r\n".encode("utf-8", "replace")

    def resolve(self, seqset: SeqSet, uid: bool) -> list[tuple[int, Entry]]:
        """(sequence number, entry) pairs a set names, ascending. Bad sequence numbers are BAD
        (RFC 3501 9: a number beyond the mailbox); UIDs that do not exist are simply skipped.
        `$` names the saved result whichever the form (RFC 5182 2.1), expunged members gone.
        A UID set is looked up range by range (the view is in UID order), not message by
        message."""
        if seqset.saved:
            return [(seq, e) for seq, e in enumerate(self.entries, 1) if e.uid in self.saved]
        if uid:
            highest = self.entries[-1].uid if self.entries else 0
            found: list[tuple[int, Entry]] = []
            for low, high in seqset.resolve(highest):
                first = bisect.bisect_left(self.entries, low, key=UID)
                last = bisect.bisect_right(self.entries, high, key=UID)
                found.extend(zip(range(first + 1, last + 1), self.entries[first:last], strict=True))
            return found
        count = len(self.entries)
        if count == 0 or seqset.out_of_range(count):
            raise bad("Invalid message sequence number")
        return [(seq, self.entries[seq - 1]) for seq in seqset.iter_values(count)]

    def find(self, uid: int) -> Entry | None:
        seq = self.seq_of_uid(uid)
        return None if seq is None else self.entries[seq - 1]

    def seq_of_uid(self, uid: int) -> int | None:
        index = bisect.bisect_left(self.entries, uid, key=UID)
        if index < len(self.entries) and self.entries[index].uid == uid:
            return index + 1
        return None

    def seq_of(self, entry: Entry) -> int:
        seq = self.seq_of_uid(entry.uid)
        if seq is None:
            raise ImapError("Message is gone")
        return seq

    def unseen_first(self) -> int | None:
        for seq, entry in enumerate(self.entries, 1):
            if SEEN not in entry.letters:
                return seq
        return None


class UidSet:
    """A set of UIDs as a sorted array: the \\Recent UIDs of the first session on a folder of
    100,000 new messages take 400 KB, not the 4 MB of a set of ints. add, discard, in, len."""

    __slots__ = ("_uids",)

    def __init__(self, uids: Iterable[int] = ()) -> None:
        self._uids = array("I", sorted(uids))  # each once (a folder's UIDs are)

    def _index(self, uid: int) -> int:
        return bisect.bisect_left(self._uids, uid)

    def __contains__(self, uid: object) -> bool:
        if not isinstance(uid, int):
            return False
        index = self._index(uid)
        return index < len(self._uids) and self._uids[index] == uid

    def __len__(self) -> int:
        return len(self._uids)

    def __iter__(self) -> Iterator[int]:
        return iter(self._uids)

    def add(self, uid: int) -> None:
        index = self._index(uid)
        if index == len(self._uids) or self._uids[index] != uid:
            self._uids.insert(index, uid)

    def discard(self, uid: int) -> None:
        index = self._index(uid)
        if index < len(self._uids) and self._uids[index] == uid:
            del self._uids[index]


def vanished_line(uids: list[int], earlier: bool) -> bytes:
    """`* VANISHED [(EARLIER)] <uid set>` (RFC 7162 3.2.10); `uids` must not be empty."""
    label = b"VANISHED (EARLIER) " if earlier else b"VANISHED "
    return b"* " + label + str(SeqSet.from_values(uids)).encode() + b"\r\n"


def member(ranges: tuple[tuple[int, int], ...], value: int) -> bool:
    """Whether `value` lies in sorted, disjoint ranges: a bisection, so a client's set of ten
    thousand ranges against a big mailbox costs milliseconds, not minutes."""
    index = bisect.bisect_right(ranges, (value, MAX_RANGE_END)) - 1
    return index >= 0 and ranges[index][0] <= value <= ranges[index][1]
