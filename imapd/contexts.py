"""ESEARCH result data for SEARCH and SORT (RFC 4731 3.2, ESORT of RFC 5267 3.2, PARTIAL of
4.4) and the contexts of RFC 5267 4 (CONTEXT=SEARCH, CONTEXT=SORT): a SEARCH or SORT with RETURN
(UPDATE) keeps its result current with unsolicited `ESEARCH (TAG "t") ADDTO / REMOVEFROM`.

A context remembers its result by UID, in its order, and the MODSEQ each message had when it was
last evaluated (every change of a message's flags gives it a new MODSEQ, common/store); after the
selected view changed (imapd/selected.py calls in), only messages that are new or changed are
evaluated again, and a command after which nothing changed costs nothing. Positions: 0 for a
SEARCH (its order is the mailbox's), else 1-based places in the sorted result. ADDTO names runs
at their final places, first run first, so each insertion finds the earlier ones in place;
REMOVEFROM names runs at their places before the removal, last run first, so each stays valid
as the client applies the ones before it. REMOVEFROM for expunged messages comes before the
EXPUNGE (or VANISHED) responses, numbered as the client still numbers them.

Choices (as Dovecot where it has CONTEXT=SEARCH): RETURN (UPDATE) alone returns no initial
data and a RETURN naming no data at all means ALL; sequence numbers in the program are fixed
to their messages when the command runs; at most MAX_CONTEXTS contexts update at once, a
further one completes with `OK [NOUPDATE "tag"]`; CANCELUPDATE with a tag that has no context
is NO and cancels nothing; contexts end when the mailbox is closed.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from common.store import Entry, StoreError
from imapd.parser import And, Key, Not, Or, SearchNode, SeqSet, SortKey
from imapd.search import Candidate, RangeCache, matches
from imapd.selected import Selected
from imapd.sorting import Item, gather, sort_keys

MAX_CONTEXTS = 16
DATA_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "PARTIAL"})


def wanted_data(options: tuple[str, ...]) -> tuple[str, ...]:
    """The result data a RETURN asks for: ALL when it names none and is neither UPDATE nor SAVE
    (RFC 5182 2.1: SAVE alone returns nothing)."""
    if not DATA_OPTIONS & set(options) and not {"UPDATE", "SAVE"} & set(options):
        return ("ALL",)
    return options


def save_result(view: Selected, options: tuple[str, ...], found: list[tuple[int, Entry]]) -> None:
    """RETURN (SAVE) (RFC 5182 2.1): keep the result for `$`, only its first and/or last message
    when MIN and/or MAX is asked for with it (in the result's order: a SORT's for ESORT)."""
    if found and {"MIN", "MAX"} & set(options) and not {"ALL", "COUNT"} & set(options):
        chosen = [found[0]] * ("MIN" in options) + [found[-1]] * ("MAX" in options)
    else:
        chosen = found
    view.saved = frozenset(entry.uid for _seq, entry in chosen)


def ordered_set(numbers: list[int]) -> str:
    """A sequence-set keeping the order of `numbers` (ESORT ALL, RFC 5267 3.2): ascending
    runs become ranges, anything else is listed as it comes."""
    parts: list[str] = []
    start = previous = None
    for number in numbers:
        if previous is not None and number == previous + 1:
            previous = number
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}:{previous}")
        start = previous = number
    if start is not None:
        parts.append(str(start) if start == previous else f"{start}:{previous}")
    return ",".join(parts)


def result_data(
    options: tuple[str, ...], numbers: list[int], partial: tuple[int, int] | None, ordered: bool
) -> list[str]:
    """MIN, MAX, ALL, COUNT and PARTIAL of a result (numbers in result order): for a SORT
    (`ordered`) MIN and MAX are the first and last in sort order. Without a match MIN, MAX and
    ALL are left out (RFC 4731 3.1) and PARTIAL is NIL (RFC 5267 4.4)."""
    render = ordered_set if ordered else (lambda ns: str(SeqSet.from_values(ns)))
    parts = []
    if numbers:
        if "MIN" in options:
            parts.append(f"MIN {numbers[0]}")
        if "MAX" in options:
            parts.append(f"MAX {numbers[-1]}")
        if "ALL" in options:
            parts.append(f"ALL {render(numbers)}")
    if "COUNT" in options:
        parts.append(f"COUNT {len(numbers)}")
    if "PARTIAL" in options and partial is not None:
        low, high = partial
        window = numbers[low - 1 : high]
        parts.append(f"PARTIAL ({low}:{high} {render(window) if window else 'NIL'})")
    return parts


def esearch_head(tag: str, uid: bool) -> str:
    quoted_tag = tag.replace("\\", "\\\\").replace('"', '\\"')
    return f'* ESEARCH (TAG "{quoted_tag}")' + (" UID" if uid else "")


# -- update contexts (RFC 5267 4.3) ----------------------------------------------------------


def freeze(node: SearchNode, view: Selected) -> SearchNode:
    """The program with its message sequence numbers turned into the UIDs they name now, so
    that later renumbering cannot change what it means."""
    if isinstance(node, And):
        return And(tuple(freeze(n, view) for n in node.items))
    if isinstance(node, Or):
        return Or(tuple(freeze(n, view) for n in node.items))
    if isinstance(node, Not):
        return Not(freeze(node.item, view))
    if node.seqset is None or not (node.name == "SEQSET" or node.seqset.saved):
        return node
    count = len(view.entries)
    if node.seqset.saved:
        uids = sorted(view.saved)
    else:
        uids = [view.entries[seq - 1].uid for seq in node.seqset.iter_values(count)]
    if not uids:
        return Not(Key("ALL"))
    return Key("UID", seqset=SeqSet.from_values(uids))


@dataclass
class Context:
    """One search whose result is kept up to date."""

    tag: str
    uid: bool
    criteria: SearchNode  # frozen (see `freeze`)
    program: tuple[SortKey, ...] | None  # None: a SEARCH, in mailbox order
    results: list[int] = field(default_factory=list)  # UIDs in result order
    items: dict[int, Item] = field(default_factory=dict)  # a SORT's sort data, by UID
    evaluated: dict[int, int] = field(default_factory=dict)  # UID -> MODSEQ when evaluated

    def numbering(self, view: Selected) -> Callable[[int], int]:
        """UID -> the number the client knows the message by."""
        if self.uid:
            return lambda uid: uid
        seqs = {entry.uid: seq for seq, entry in enumerate(view.entries, 1)}
        return seqs.__getitem__

    # -- changes ---------------------------------------------------------------------------

    def changes(self, view: Selected) -> str | None:
        """ADDTO/REMOVEFROM for what changed in `view` since the last evaluation."""
        present = {e.uid for e in view.entries}
        self.evaluated = {uid: s for uid, s in self.evaluated.items() if uid in present}
        in_result = set(self.results)
        added: list[tuple[int, Entry]] = []
        removed: set[int] = set()
        ranges: RangeCache = {}
        for seq, entry in enumerate(view.entries, 1):
            if self.evaluated.get(entry.uid) == entry.modseq or entry.uid in view.gone:
                continue
            self.evaluated[entry.uid] = entry.modseq
            try:
                hit = matches(self.criteria, Candidate(view, seq, entry, ranges))
            except StoreError:
                continue  # expunged meanwhile: its REMOVEFROM comes with the expunge
            if hit and entry.uid not in in_result:
                added.append((seq, entry))
            elif not hit and entry.uid in in_result:
                removed.add(entry.uid)
        parts = [self.remove(view, removed), self.add(view, added)]
        return " ".join(p for p in parts if p) or None

    def remove(self, view: Selected, uids: set[int]) -> str:
        """REMOVEFROM for the members of `uids` in the result, numbered as the client
        numbers them now; they leave the result."""
        if not uids & set(self.results):
            return ""
        number = self.numbering(view)
        if self.program is None:
            gone = [number(uid) for uid in self.results if uid in uids]
            payload = f"0 {SeqSet.from_values(gone)}"
        else:
            runs = runs_of([uid in uids for uid in self.results], [number(u) for u in self.results])
            payload = " ".join(f"{place} {ordered_set(ns)}" for place, ns in reversed(runs))
        self.results = [uid for uid in self.results if uid not in uids]
        for uid in uids:
            self.items.pop(uid, None)
        return f"REMOVEFROM ({payload})"

    def add(self, view: Selected, found: list[tuple[int, Entry]]) -> str:
        """ADDTO for messages that now match; they join the result in its order."""
        if not found:
            return ""
        fresh = {entry.uid for _seq, entry in found}
        number = self.numbering(view)
        if self.program is None:
            self.results = sorted([*self.results, *fresh])
            return f"ADDTO (0 {SeqSet.from_values(number(uid) for uid in sorted(fresh))})"
        order = sort_order(view, self.program)
        for item in gather(view, found):
            self.items[item.entry.uid] = item
            bisect.insort(self.results, item.entry.uid, key=lambda uid: order(self.items[uid]))
        runs = runs_of([uid in fresh for uid in self.results], [number(u) for u in self.results])
        return "ADDTO (" + " ".join(f"{place} {ordered_set(ns)}" for place, ns in runs) + ")"

    def expunging(self, view: Selected, uids: set[int]) -> str | None:
        """REMOVEFROM for messages about to be reported expunged."""
        for uid in uids:
            self.evaluated.pop(uid, None)
        return self.remove(view, uids) or None


def runs_of(marked: list[bool], numbers: list[int]) -> list[tuple[int, list[int]]]:
    """(1-based place, numbers) of each run of adjacent marked places."""
    runs: list[tuple[int, list[int]]] = []
    for index, (mark, number) in enumerate(zip(marked, numbers, strict=True)):
        if not mark:
            continue
        if runs and runs[-1][0] + len(runs[-1][1]) == index + 1:
            runs[-1][1].append(number)
        else:
            runs.append((index + 1, [number]))
    return runs


def sort_order(view: Selected, program: tuple[SortKey, ...]) -> Callable[[Item], object]:
    """A key that orders items as `sorting.sort_messages` does (ties by UID, which is the
    mailbox order)."""
    keys = sort_keys(view)

    def compare(a: Item, b: Item) -> int:
        for criterion in program:
            first, second = keys[criterion.name](a), keys[criterion.name](b)
            if first != second:
                less = first < second  # type: ignore[operator]
                return (1 if less else -1) if criterion.reverse else (-1 if less else 1)
        return (a.entry.uid > b.entry.uid) - (a.entry.uid < b.entry.uid)

    return functools.cmp_to_key(compare)


@dataclass
class Contexts:
    """The update contexts of a session's selected mailbox."""

    active: list[Context] = field(default_factory=list)
    # (HIGHESTMODSEQ, messages, highest UID) at the last look: when the view shows the same
    # again, nothing a context could notice has changed.
    seen: tuple[int, int, int] | None = None

    def full(self) -> bool:
        return len(self.active) >= MAX_CONTEXTS

    def start(self, context: Context, view: Selected, found: list[tuple[int, Entry]]) -> None:
        """Start updating `context`, whose result is `found` (in result order) now."""
        self.active = [c for c in self.active if c.tag != context.tag]
        context.results = [entry.uid for _seq, entry in found]
        if context.program is not None:
            context.items = {item.entry.uid: item for item in gather(view, found)}
        context.evaluated = {e.uid: e.modseq for e in view.entries}
        self.active.append(context)
        self.seen = None

    def cancel(self, tags: Iterable[str]) -> bool:
        """End the contexts of `tags`; False (and nothing ended) when one has none."""
        wanted = set(tags)
        if not wanted <= {c.tag for c in self.active}:
            return False
        self.active = [c for c in self.active if c.tag not in wanted]
        return True

    def updates(self, view: Selected) -> list[bytes]:
        stamp = (view.highestmodseq, len(view.entries), view.entries[-1].uid if view.entries else 0)
        if stamp == self.seen:
            return []
        self.seen = stamp
        out = []
        for context in self.active:
            items = context.changes(view)
            if items:
                out.append(f"{esearch_head(context.tag, context.uid)} {items}\r\n".encode())
        return out

    def expunging(self, view: Selected, uids: set[int]) -> list[bytes]:
        out = []
        for context in self.active:
            items = context.expunging(view, uids)
            if items:
                out.append(f"{esearch_head(context.tag, context.uid)} {items}\r\n".encode())
        return out
