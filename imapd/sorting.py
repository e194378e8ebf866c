"""SORT (RFC 5256 3, RFC 5957 4) and THREAD (RFC 5256 3: ORDEREDSUBJECT and REFERENCES) over
the messages a SEARCH program matched in the selected mailbox.

The header facts of each message (imapd/sortkeys.py) come from the folder's disposable cache
(common/store/msgcache.py), one field per fact: a SORT of a whole folder reads the columns its
program names, each in one read, and sorts lists of keys in C. A message the cache does not
have yet is read (its header only, `Mailbox.read_header`), and all its facts are cached for the
next time. Sizes and arrival times (INTERNALDATE in seconds) come from the store's own columns.

Every order ends in the mailbox order (sequence numbers): RFC 5256 3 makes it the tie-breaker of
SORT, and 2.2 that of equal sent dates; the sorts are stable, so a list in mailbox order keeps
it among equal keys. Strings are compared as the cache keeps them, in UTF-8, whose octet order
is the code point order the collation names. The thread trees are walked without recursion, so
a reply chain as long as the mailbox is no danger.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import common.store.memory as memory
from common.store import Entry, StoreError
from imapd.message import FieldScanner
from imapd.parser import SortKey
from imapd.prefetch import Values, Work, prefetching
from imapd.selected import Selected
from imapd.sortkeys import COLUMN_FIELDS, COLUMNS, SortFacts, column_values

# The cache's field of each column of SortFacts.columns().
CACHE_FIELDS = {name: "sort-" + name for name in COLUMNS}
# The column each string criterion compares, and the one of DATE.
STRING_KEYS = {
    "SUBJECT": "subject",
    "FROM": "from",
    "TO": "to",
    "CC": "cc",
    "DISPLAYFROM": "displayfrom",
    "DISPLAYTO": "displayto",
}
COLUMN_OF = {**STRING_KEYS, "DATE": "sent"}

Found = list[tuple[int, Entry]]  # (sequence number, entry), as imapd.search returns them
# THREAD of this many messages or more is kept in the folder (Mailbox.remember_for).
KEEP_THREADS = 1000
_NUMBER = re.compile(r"(\d+)")
# A base subject as threading compares it: decoded, as the cache keeps it, or its cached rank.
Subject = str | bytes | int


class Facts:
    """The cached columns of some messages (`entries`, in mailbox order), read as asked. A
    message the cache lacks an asked column of has its header read once for all the asked
    columns and those derived from the same header fields (FROM gives DISPLAYFROM too), which
    are cached; a first SORT by one criterion reads only what it needs, as Dovecot's does.
    Many messages are derived with a helper on a second CPU (imapd/prefetch.py; `close`: the
    client's connection, which the helper closes)."""

    def __init__(self, view: Selected, entries: list[Entry], close: int = -1) -> None:
        self.view, self.entries, self.close = view, entries, close
        self.columns: dict[str, list[bytes]] = {}
        self.ranked: dict[str, array[int] | None] = {}

    def column(self, name: str) -> list[bytes]:
        """Each message's value of one column of SortFacts.columns()."""
        if name not in self.columns:
            self.load((name,))
        return self.columns[name]

    def load(self, names: Iterable[str]) -> None:
        """Read the columns `names` (those not read yet), deriving what is missing."""
        wanted = [name for name in dict.fromkeys(names) if name not in self.columns]
        if not wanted:
            return
        mailbox = self.view.mailbox
        read = {name: mailbox.cached_column(self.entries, CACHE_FIELDS[name]) for name in wanted}
        missing = sorted({i for values in read.values() if None in values for i in _nones(values)})
        if missing:
            derived = siblings(name for name, values in read.items() if None in values)
            for i, values_of in zip(missing, self.derive(missing, derived), strict=True):
                for name, values in read.items():
                    if values[i] is None:
                        values[i] = values_of[name]
        for name, values in read.items():
            self.columns[name] = cast(list[bytes], values)  # none missing now

    def derive(self, indices: list[int], names: tuple[str, ...]) -> Iterator[dict[str, bytes]]:
        """The columns `names` of the messages at `indices`, from their headers, cached; those
        of a message that cannot be read any more (expunged meanwhile) are empty, not cached."""
        view, entries = self.view, [self.entries[i] for i in indices]
        mailbox = view.mailbox
        work = columns_work(view, names)
        cached = [CACHE_FIELDS[name] for name in names]
        with prefetching(work, entries, _always, self.close) as helper:
            for index, entry in enumerate(entries):
                try:
                    values = (
                        helper.get(entry) if helper is not None and helper.mine(index) else None
                    )
                    if values is None:
                        values = work(entry)
                except StoreError:
                    yield EMPTY_COLUMNS
                    continue
                mailbox.remember_all(entry, None, dict(zip(cached, values, strict=True)))
                yield dict(zip(names, values, strict=True))

    def sent(self) -> list[int]:
        """RFC 5256 2.2: the sent date of each, the arrival time where the Date field gives
        none (or the cached value is damaged)."""
        dates = self.column("sent")
        if all(dates):
            with contextlib.suppress(ValueError):
                return list(map(int, dates))
        mailbox, entries = self.view.mailbox, self.entries
        return [
            seconds if (seconds := number(date)) is not None else mailbox.arrival(entries[i])
            for i, date in enumerate(dates)
        ]

    def ranks(self, name: str) -> array[int] | None:
        """The cached ranks of a string column's values (common/store/msgcache.py RANKED), or
        None."""
        if name in self.columns:  # derived or read already: the values are at hand
            return None
        if name not in self.ranked:
            self.ranked[name] = self.view.mailbox.cached_ranks(self.entries, CACHE_FIELDS[name])
        return self.ranked[name]

    def order(self, name: str) -> array[int] | None:
        """All the messages in the order of a string column's values, as the cache keeps it
        (common/store/msgcache.py ORDERED), or None."""
        if name in self.columns:
            return None
        return self.view.mailbox.cached_order(self.entries, CACHE_FIELDS[name])

    def arrivals(self) -> list[int]:
        return self.view.mailbox.arrivals(self.entries)

    def sizes(self) -> list[int]:
        try:
            return self.view.mailbox.sizes(self.entries)
        except (StoreError, OSError):
            return [size(self.view, entry) for entry in self.entries]


EMPTY = SortFacts.from_fields({})
EMPTY_COLUMNS = EMPTY.columns()


def siblings(names: Iterable[str]) -> tuple[str, ...]:
    """The columns `names` and those derived from the same header fields, in COLUMNS order."""
    fields = {field for name in names for field in COLUMN_FIELDS[name]}
    return tuple(name for name in COLUMNS if fields.issuperset(COLUMN_FIELDS[name]))


@functools.lru_cache(maxsize=16)
def scanner(fields: frozenset[str]) -> FieldScanner:
    return FieldScanner(tuple(sorted(fields)))


def _nones(values: list[bytes | None]) -> list[int]:
    return [i for i, value in enumerate(values) if value is None]


def _always(entry: Entry) -> bool:
    return True


def columns_work(view: Selected, names: tuple[str, ...]) -> Work:
    """The columns `names` of one message, from its header; StoreError when it is gone.
    Reads and computes only (it may run in the prefetch helper)."""
    read_header = view.mailbox.read_header
    scan = scanner(frozenset(field for name in names for field in COLUMN_FIELDS[name]))

    def work(entry: Entry) -> Values:
        try:
            header = read_header(entry)
        except OSError as exc:
            raise StoreError(str(exc)) from None
        first = {name: found[0] for name, found in scan(header).items()}
        values = column_values(first, names)
        return tuple(values[name] for name in names)

    return work


def number(data: bytes) -> int | None:
    try:
        return int(data)
    except ValueError:
        return None


def thread_root(view: Selected, entry: Entry) -> str:
    """SortFacts.thread_root of one message (RFC 8474 THREADID), from the folder's cache or
    its header (then cached); "" when it has none or cannot be read any more."""
    facts = Facts(view, [entry])
    reply, own, references = split_thread(facts.column("thread")[0])
    root = references[0] if references else own
    return root.decode("utf-8", "surrogatepass")


def split_thread(value: bytes) -> tuple[bool, bytes, list[bytes]]:
    """(reply, message ID, references) of a "thread" column's value."""
    reply, _space, ids = value.partition(b" ")
    own, *references = ids.split(b" ")
    return reply == b"1", own, references


@dataclass(slots=True)
class Item:
    """One message being sorted by an update context (imapd/contexts.py): its facts, and its
    sent date (RFC 5256 2.2, the INTERNALDATE where the Date field gives none)."""

    seq: int
    entry: Entry
    facts: SortFacts
    sent: float


def gather(view: Selected, found: Found) -> list[Item]:
    """Every fact of each message, for sorting by any program (update contexts)."""
    facts = Facts(view, [entry for _seq, entry in found])
    facts.load(COLUMNS)
    columns = [facts.column(name) for name in COLUMNS]
    sent = facts.sent()
    items = []
    for index, (seq, entry) in enumerate(found):
        values = {name: column[index] for name, column in zip(COLUMNS, columns, strict=True)}
        item_facts = SortFacts.from_columns(values) or EMPTY
        items.append(Item(seq, entry, item_facts, sent[index]))
    return items


def size(view: Selected, entry: Entry) -> int:
    try:
        return view.mailbox.size(entry)
    except (StoreError, OSError):
        return 0


# -- SORT ------------------------------------------------------------------------------------


def sort_keys(view: Selected) -> dict[str, Callable[[Item], object]]:
    """Each sort criterion of RFC 5256 3 and RFC 5957 4 as a key function on one gathered
    item (the update contexts of imapd/contexts.py order new messages with these)."""

    return {
        "ARRIVAL": lambda item: view.mailbox.arrival(item.entry),
        "CC": lambda item: item.facts.cc,
        "DATE": lambda item: item.sent,
        "FROM": lambda item: item.facts.from_,
        "SIZE": lambda item: size(view, item.entry),
        "SUBJECT": lambda item: item.facts.subject,
        "TO": lambda item: item.facts.to,
        "DISPLAYFROM": lambda item: item.facts.display_from,
        "DISPLAYTO": lambda item: item.facts.display_to,
    }


def key_column(facts: Facts, name: str) -> Sequence[bytes] | Sequence[int]:
    """The key of each message for one sort criterion: for a string, the ranks of the values
    when the cache has them (numbers sort faster), else the values."""
    if name == "ARRIVAL":
        return facts.arrivals()
    if name == "DATE":
        return facts.sent()
    if name == "SIZE":
        return facts.sizes()
    return facts.ranks(STRING_KEYS[name]) or facts.column(STRING_KEYS[name])


def sort_messages(
    view: Selected, found: Found, program: tuple[SortKey, ...], close: int = -1
) -> Found:
    """The matched messages in the order of the sort program (RFC 5256 3): each criterion in
    turn decides, REVERSE reversing only its own; the mailbox order decides the rest. (`close`:
    see Facts.)"""
    order = sort_order(view, found, program, close)
    with memory.paused_gc():
        return [found[i] for i in order]


def sort_order(
    view: Selected, found: Found, program: tuple[SortKey, ...], close: int = -1
) -> list[int]:
    """sort_messages() as the places in `found` of the messages in order."""
    with memory.paused_gc():  # lists of 100,000 keys, none of them garbage
        facts = Facts(view, [entry for _seq, entry in found], close)
        names = [STRING_KEYS.get(criterion.name) for criterion in program]
        ranked = [name for name in names if name and facts.ranks(name) is not None]
        facts.load(
            COLUMN_OF[criterion.name]
            for criterion in program
            if criterion.name in COLUMN_OF and COLUMN_OF[criterion.name] not in ranked
        )
        kept = facts.order(names[0]) if len(program) == 1 and names[0] in ranked else None
        order = list(range(len(found))) if kept is None else list(kept)
        if kept is not None and not program[0].reverse:
            return order  # the cache has this very order
        # Stable sorts from the last criterion to the first give the lexicographic order, and
        # Python's sort stays stable with reverse=True, so equal items keep the mailbox order
        # (from a kept order, a REVERSE is one reversal of its runs of equal keys).
        for criterion in reversed(program):
            keys = key_column(facts, criterion.name)
            order.sort(key=keys.__getitem__, reverse=criterion.reverse)
        return order


# -- THREAD ----------------------------------------------------------------------------------


class Message:
    """A message being threaded: what the algorithms look at, as plain attributes (some
    100,000 of these are made for a THREAD of a big folder)."""

    __slots__ = ("entry", "message_id", "references", "reply", "sent", "seq", "subject")

    def __init__(  # noqa: PLR0913 (one value per fact)
        self,
        seq: int,
        entry: Entry,
        sent: float,
        subject: Subject,
        reply: bool,
        message_id: str | bytes,
        references: Sequence[str | bytes],
    ) -> None:
        self.seq, self.entry, self.sent = seq, entry, sent
        self.subject, self.reply = subject, reply
        self.message_id, self.references = message_id, references

    @classmethod
    def of(cls, seq: int, entry: Entry, facts: SortFacts, sent: float) -> Message:
        return cls(seq, entry, sent, facts.subject, facts.reply, facts.message_id, facts.references)


def thread_messages(
    view: Selected, found: Found, close: int = -1, linked: bool = True
) -> list[Message]:
    """The facts THREAD needs of each message, read as columns (bytes, as the cache has them:
    the algorithms only compare them); without `linked` (ORDEREDSUBJECT) no message IDs."""
    facts = Facts(view, [entry for _seq, entry in found], close)
    if not linked:
        # ORDEREDSUBJECT only compares subjects: their cached ranks do, when there are some.
        ranks = facts.ranks("subject")
        facts.load(("sent",) if ranks is not None else ("subject", "sent"))
        subjects: Sequence[bytes | int] = ranks if ranks is not None else facts.column("subject")
        return [
            Message(seq, entry, sent, subject, False, b"", ())
            for (seq, entry), subject, sent in zip(found, subjects, facts.sent(), strict=True)
        ]
    facts.load(("subject", "thread", "sent"))
    subjects, dates = facts.column("subject"), facts.sent()
    messages = []
    threads = facts.column("thread")
    for (seq, entry), subject, thread, sent in zip(found, subjects, threads, dates, strict=True):
        reply, own, references = split_thread(thread)
        messages.append(Message(seq, entry, sent, subject, reply, own, references))
    return messages


class Node:
    """A message in a thread tree, or a dummy standing for one that is not there."""

    __slots__ = ("children", "item", "parent")

    def __init__(self, item: Message | None = None, parent: Node | None = None) -> None:
        self.item = item  # None: a dummy
        self.parent = parent
        self.children: list[Node] = []

    @property
    def dummy(self) -> bool:
        return self.item is None


def date_key(node: Node) -> tuple[float, int]:
    """Sent date, then mailbox order; a dummy sorts as its first child (RFC 5256 3)."""
    while node.item is None:
        if not node.children:
            return (0.0, 0)
        node = node.children[0]
    return (node.item.sent, node.item.seq)


_SEQ, _SENT, _SUBJECT = (operator.attrgetter(name) for name in ("seq", "sent", "subject"))


def orderedsubject(items: list[Message]) -> list[Node]:
    """ORDEREDSUBJECT: messages grouped by base subject, each group by sent date; the first of
    a group is its root, the second its child and the rest siblings of the second; the
    groups in the order of their first messages' sent dates."""
    roots = []
    for group in subject_groups(items):
        root = Node(group[0])
        root.children = [Node(item, root) for item in group[1:]]
        roots.append(root)
    return roots


def subject_groups(items: list[Message]) -> list[list[Message]]:
    """ORDEREDSUBJECT's threads as lists: each the messages of one base subject by sent date
    (then mailbox order), the lists by their first message's."""
    # Stable sorts, last key first: by subject, then sent date, then mailbox order.
    items = sorted(items, key=_SEQ)
    items.sort(key=_SENT)
    items.sort(key=_SUBJECT)
    groups: list[list[Message]] = []
    subject: Subject | None = None
    for item in items:
        if groups and item.subject == subject:
            groups[-1].append(item)
        else:
            groups.append([item])
            subject = item.subject
    groups.sort(key=lambda group: (group[0].sent, group[0].seq))
    return groups


def subject_text(groups: list[list[Message]], number: Callable[[Message], int]) -> str:
    """render(orderedsubject(...)) straight from the groups: `(1)`, `(1 2)`, `(1 (2)(3))`."""
    out = []
    for group in groups:
        if len(group) == 1:
            out.append(f"({number(group[0])})")
        elif len(group) == 2:
            out.append(f"({number(group[0])} {number(group[1])})")
        else:
            branches = "".join(f"({number(item)})" for item in group[1:])
            out.append(f"({number(group[0])} {branches})")
    return "".join(out)


def thread(view: Selected, found: Found, algorithm: str, uid: bool, close: int = -1) -> str:
    """THREAD's thread lists (render) of the matched messages by ORDEREDSUBJECT or REFERENCES,
    numbered by UID or sequence number (`close`: see Facts). The threads of a big set are kept
    in the folder, by UID (Mailbox.remember_for: they depend on the messages' contents only),
    and given again while the set is the same, as Dovecot keeps its thread index."""
    kind = f"thread-{algorithm.lower()}"
    entries = [entry for _seq, entry in found]
    kept = view.mailbox.derived_for(kind, entries) if len(found) >= KEEP_THREADS else None
    if kept is not None:
        text = kept.decode("ascii")
    else:
        text = threads(view, found, algorithm, close)
        if len(found) >= KEEP_THREADS:
            view.mailbox.remember_for(kind, entries, text.encode("ascii"))
    return text if uid else by_sequence(text, found)


def threads(view: Selected, found: Found, algorithm: str, close: int = -1) -> str:
    """The thread lists, by UID. Some 100,000 nodes and messages live at once and are never
    garbage while the trees are built: the cyclic collector is kept out, and the trees are
    taken apart afterwards, so reference counting frees them."""
    number = operator.attrgetter("entry.uid")
    with memory.paused_gc():
        if algorithm == "ORDEREDSUBJECT":  # no tree needed to write it
            groups = subject_groups(thread_messages(view, found, close, linked=False))
            return subject_text(groups, number)
        roots = ALGORITHMS[algorithm](thread_messages(view, found, close))
        text = render(roots, number)
        take_apart(roots)
    return text


def by_sequence(text: str, found: Found) -> str:
    """Thread lists by UID renumbered by sequence number (the same text in a folder where
    every message's sequence number is its UID, as in one nothing was ever expunged from)."""
    if all(seq == entry.uid for seq, entry in found):
        return text
    with memory.paused_gc():
        sequence = {str(entry.uid): str(seq) for seq, entry in found}
        parts = _NUMBER.split(text)  # text, number, text, ..., text
        parts[1::2] = map(sequence.__getitem__, parts[1::2])
    return "".join(parts)


def take_apart(roots: list[Node]) -> None:
    """No node refers to its parent any more: the trees hold no cycle."""
    stack = list(roots)
    while stack:
        node = stack.pop()
        node.parent = None
        stack.extend(node.children)


def references(items: list[Message]) -> list[Node]:
    """REFERENCES (RFC 5256 3): link by References/In-Reply-To (step 1), gather the roots (2),
    prune dummies (3), sort the roots (4), merge threads by base subject (5), sort every set
    of siblings (6). `items` are in mailbox order."""
    roots = prune(link(items))
    for root in roots:
        if root.item is None:
            root.children.sort(key=date_key)
    roots.sort(key=date_key)
    roots = merge_subjects(roots)
    sort_siblings(roots)
    return roots


def link(items: list[Message]) -> list[Node]:
    """Steps 1 and 2: the parent/child links, and the nodes left without a parent. Messages
    are taken in mailbox order, so a duplicated Message-ID belongs to its first message (the
    others are as if they had none) and links made first stay."""
    by_id: dict[str | bytes, Node] = {}
    nodes = [Node(item) for item in items]
    for node, item in zip(nodes, items, strict=True):
        own = item.message_id
        if own and own not in by_id:
            by_id[own] = node
    for node, item in zip(nodes, items, strict=True):
        # 1.A: the references link each other in order, a dummy standing for each missing
        # message; a message that has a parent keeps it, and no link may close a loop.
        last: Node | None = None
        for ref in item.references:
            parent = last
            last = by_id.get(ref)
            if last is None:
                last = by_id[ref] = Node()
            if parent is not None and last.parent is None and not reaches(last, parent):
                attach(parent, last)
        # 1.B: the message's own parent is its last reference, whatever an earlier message's
        # References said (they may have been cut short); none when it has no references.
        if node.parent is not last:
            detach(node)
            if last is not None and not reaches(node, last):
                attach(last, node)
    # The roots: the messages in mailbox order, then the dummies in the order first named.
    roots = [node for node in nodes if node.parent is None]
    roots += [n for n in by_id.values() if n.item is None and n.parent is None]
    return roots


def reaches(ancestor: Node, node: Node) -> bool:
    """Whether `ancestor` is `node` or one of its ancestors (a link would close a loop)."""
    current: Node | None = node
    while current is not None:
        if current is ancestor:
            return True
        current = current.parent
    return False


def attach(parent: Node, child: Node) -> None:
    child.parent = parent
    parent.children.append(child)


def detach(child: Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
        child.parent = None


def postorder(roots: list[Node]) -> list[Node]:
    """Every node below `roots` that has children, children before their parents, without
    recursion."""
    out: list[Node] = []
    stack = [node for node in roots if node.children]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(child for child in node.children if child.children)
    out.reverse()
    return out


def prune(roots: list[Node]) -> list[Node]:
    """Step 3: a dummy without children goes; one with children goes and its children take its
    place, except that several children are not promoted to the root level."""
    for node in postorder(roots):
        node.children = pruned(node, node.children)
    return pruned(None, roots)


def pruned(parent: Node | None, nodes: list[Node]) -> list[Node]:
    """The children of `parent` (None: the root level) after step 3."""
    out: list[Node] = []
    for node in nodes:
        if node.item is None:
            if not node.children:
                continue
            if parent is not None or len(node.children) == 1:
                for child in node.children:
                    child.parent = parent
                out.extend(node.children)
                continue
        out.append(node)
    return out


def subject_of(node: Node) -> Message | None:
    """The message whose base subject is the thread's (step 5.B.i): the node, or a dummy's
    first child."""
    if node.item is not None:
        return node.item
    return node.children[0].item if node.children else None


def thread_subject(node: Node) -> Subject:
    item = subject_of(node)
    return item.subject if item is not None else ""


def merge_subjects(roots: list[Node]) -> list[Node]:
    """Step 5: threads at the root level with the same base subject come together. Where a
    new dummy lands among the roots does not matter: step 6 sorts them again."""
    subjects = [
        node.item.subject if node.item is not None else thread_subject(node) for node in roots
    ]
    table: dict[Subject, Node] = {}
    for node, subject in zip(roots, subjects, strict=True):  # 5.B: one thread per subject
        if not subject:
            continue
        held = table.get(subject)
        if held is None or (
            held.item is not None and (node.item is None or (is_reply(held) and not is_reply(node)))
        ):
            table[subject] = node
    gone: set[int] = set()
    for node, subject in zip(roots, subjects, strict=True):  # 5.C
        held = table.get(subject) if subject else None
        if held is None or held is node or node.parent is not None:
            continue
        if held.item is None and node.item is None:
            for child in node.children:
                attach(held, child)
            gone.add(id(node))
        elif held.item is None or (is_reply(node) and not is_reply(held)):
            attach(held, node)
        else:
            dummy = Node()
            attach(dummy, held)
            attach(dummy, node)
            table[subject] = dummy
    kept = [n for n in roots if n.parent is None and id(n) not in gone]
    known = {id(n) for n in kept}
    return kept + [
        n for n in table.values() if n.item is None and n.parent is None and id(n) not in known
    ]


ALGORITHMS = {"ORDEREDSUBJECT": orderedsubject, "REFERENCES": references}


def is_reply(node: Node) -> bool:
    return node.item is not None and node.item.reply


def sort_siblings(roots: list[Node]) -> None:
    """Step 6: every set of siblings by sent date, the deepest first (a dummy sorts by its
    first child, which must be in place before)."""
    for node in postorder(roots):
        if len(node.children) > 1:
            node.children.sort(key=date_key)
    roots.sort(key=date_key)


def render(roots: list[Node], number: Callable[[Message], int]) -> str:
    """The THREAD response's thread lists (RFC 5256 4): a chain is `(1 2 3)`, branches are
    nested lists `(1 (2)(3 4))`, a dummy shows only its branches `((2)(3))`."""
    return "".join(f"({members(root, number)})" for root in roots)


def members(root: Node, number: Callable[[Message], int]) -> str:
    """thread-members / thread-nested of one thread, built without recursion: the stack holds
    nodes still to write and the parentheses around them."""
    out: list[str] = []
    stack: list[Node | str] = [root]
    while stack:
        top = stack.pop()
        if isinstance(top, str):
            out.append(top)
            continue
        node, words = top, []
        while node.item is not None:  # a chain of only children is one run of numbers
            words.append(str(number(node.item)))
            if len(node.children) != 1:
                break
            node = node.children[0]
        out.append(" ".join(words))
        if node.children and (node.dummy or len(node.children) > 1):
            if words:
                out.append(" ")
            for child in reversed(node.children):
                stack.extend((")", child, "("))
    return "".join(out)
