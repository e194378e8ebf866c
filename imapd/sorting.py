"""SORT (RFC 5256 3, RFC 5957 4) and THREAD (RFC 5256 3: ORDEREDSUBJECT and REFERENCES) over
the messages a SEARCH program matched in the selected mailbox.

The header facts of each message (imapd/sortkeys.py) come from the folder's disposable cache
(common/store/msgcache.py, field `sortkeys`) or from the message header, read through the store
(`Mailbox.read_header`, which reads no more of a large message than its header), and are cached
for the next time. Sizes and internal dates come from the store as FETCH has them.

Every order ends in the mailbox order (sequence numbers): RFC 5256 3 makes it the tie-breaker of
SORT, and 2.2 that of equal sent dates. The thread trees are walked without recursion, so a
reply chain as long as the mailbox is no danger.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from common.store import Entry, Mailbox, StoreError, to_crlf
from imapd.message import MessageView
from imapd.parser import SortKey
from imapd.selected import Selected
from imapd.sortkeys import SortFacts

CACHE_FIELD = "sortkeys"
# The header fields SortFacts reads; only these are looked up.
FACT_FIELDS = ("DATE", "SUBJECT", "FROM", "TO", "CC", "MESSAGE-ID", "REFERENCES", "IN-REPLY-TO")

Found = list[tuple[int, Entry]]  # (sequence number, entry), as imapd.search returns them

# The facts decoded in this process, per open mailbox: a session that sorts again (or keeps a
# sorted update context) decodes each message's facts once. Gone with the Mailbox object.
_decoded: weakref.WeakKeyDictionary[Mailbox, dict[str, SortFacts]] = weakref.WeakKeyDictionary()


def facts_of(view: Selected, entry: Entry) -> SortFacts:
    """The sort facts of one message: decoded already, in the folder's cache, or read from its
    header (then cached). A message that cannot be read any more (expunged meanwhile) has
    empty facts, which are not kept."""
    memo = _decoded.setdefault(view.mailbox, {})
    facts = memo.get(entry.key)
    if facts is not None:
        return facts
    cached = view.mailbox.cached(entry, CACHE_FIELD)
    facts = SortFacts.decode(cached) if cached is not None else None
    if facts is None:
        try:
            header = view.mailbox.read_header(entry)
        except (StoreError, OSError):
            return SortFacts.from_fields({})
        root = MessageView(to_crlf(header)).root
        values = {name: value for name in FACT_FIELDS if (value := root.first(name)) is not None}
        facts = SortFacts.from_fields(values)
        view.mailbox.remember(entry, CACHE_FIELD, facts.encode())
    memo[entry.key] = facts
    return facts


@dataclass
class Item:
    """One message being sorted or threaded."""

    seq: int
    entry: Entry
    facts: SortFacts
    sent: float  # RFC 5256 2.2, with the INTERNALDATE when the Date field gives none


def gather(view: Selected, found: Found) -> list[Item]:
    items = []
    for seq, entry in found:
        facts = facts_of(view, entry)
        sent = facts.sent if facts.sent is not None else arrival(view, entry)
        items.append(Item(seq, entry, facts, sent))
    return items


def arrival(view: Selected, entry: Entry) -> float:
    try:
        return view.mailbox.internal_date(entry)
    except StoreError:  # expunged meanwhile: it sorts first, and goes at the next EXPUNGE
        return 0.0


def size(view: Selected, entry: Entry) -> int:
    try:
        return view.mailbox.size(entry)
    except (StoreError, OSError):
        return 0


# -- SORT ------------------------------------------------------------------------------------


def sort_keys(view: Selected) -> dict[str, Callable[[Item], object]]:
    """Each sort criterion of RFC 5256 3 and RFC 5957 4 as a key function."""
    return {
        "ARRIVAL": lambda item: arrival(view, item.entry),
        "CC": lambda item: item.facts.cc,
        "DATE": lambda item: item.sent,
        "FROM": lambda item: item.facts.from_,
        "SIZE": lambda item: size(view, item.entry),
        "SUBJECT": lambda item: item.facts.subject,
        "TO": lambda item: item.facts.to,
        "DISPLAYFROM": lambda item: item.facts.display_from,
        "DISPLAYTO": lambda item: item.facts.display_to,
    }


def sort_messages(view: Selected, found: Found, program: tuple[SortKey, ...]) -> Found:
    """The matched messages in the order of the sort program (RFC 5256 3): each criterion in
    turn decides, REVERSE reversing only its own; the mailbox order decides the rest."""
    items = gather(view, found)
    keys = sort_keys(view)
    # Stable sorts from the last criterion to the first give the lexicographic order, and
    # Python's sort stays stable with reverse=True, so equal items keep the mailbox order.
    for criterion in reversed(program):
        items.sort(key=keys[criterion.name], reverse=criterion.reverse)  # type: ignore[arg-type]
    return [(item.seq, item.entry) for item in items]


# -- THREAD ----------------------------------------------------------------------------------


@dataclass(eq=False)
class Node:
    """A message in a thread tree, or a dummy standing for one that is not there."""

    item: Item | None = None  # None: a dummy
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)

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


def thread_orderedsubject(view: Selected, found: Found) -> list[Node]:
    return orderedsubject(gather(view, found))


def orderedsubject(items: list[Item]) -> list[Node]:
    """ORDEREDSUBJECT: messages grouped by base subject, each group by sent date; the first of
    a group is its root, the second its child and the rest siblings of the second; the
    groups in the order of their first messages' sent dates."""
    items = sorted(items, key=lambda item: (item.facts.subject, item.sent, item.seq))
    roots: list[Node] = []
    for item in items:
        last = roots[-1] if roots else None
        if (
            last is not None
            and last.item is not None
            and last.item.facts.subject == (item.facts.subject)
        ):
            last.children.append(Node(item, last))
        else:
            roots.append(Node(item))
    roots.sort(key=date_key)
    return roots


def thread_references(view: Selected, found: Found) -> list[Node]:
    return references(gather(view, found))


def references(items: list[Item]) -> list[Node]:
    """REFERENCES (RFC 5256 3): link by References/In-Reply-To (step 1), gather the roots (2),
    prune dummies (3), sort the roots (4), merge threads by base subject (5), sort every set
    of siblings (6). `items` are in mailbox order."""
    roots = prune(link(items))
    for root in roots:
        if root.dummy:
            root.children.sort(key=date_key)
    roots.sort(key=date_key)
    roots = merge_subjects(roots)
    sort_siblings(roots)
    return roots


def link(items: list[Item]) -> list[Node]:
    """Steps 1 and 2: the parent/child links, and the nodes left without a parent. Messages
    are taken in mailbox order, so a duplicated Message-ID belongs to its first message (the
    others are as if they had none) and links made first stay."""
    by_id: dict[str, Node] = {}
    nodes = [Node(item) for item in items]
    for node in nodes:
        own = node.item.facts.message_id if node.item is not None else ""
        if own and own not in by_id:
            by_id[own] = node
    for node in nodes:
        references = node.item.facts.references if node.item is not None else ()
        # 1.A: the references link each other in order, a dummy standing for each missing
        # message; a message that has a parent keeps it, and no link may close a loop.
        chain = [by_id.setdefault(ref, Node()) for ref in references]
        for parent, child in zip(chain, chain[1:], strict=False):
            if child.parent is None and not reaches(child, parent):
                attach(parent, child)
        # 1.B: the message's own parent is its last reference, whatever an earlier message's
        # References said (they may have been cut short); none when it has no references.
        last = chain[-1] if chain else None
        if node.parent is not last:
            detach(node)
            if last is not None and not reaches(node, last):
                attach(last, node)
    everything = {id(n): n for n in nodes} | {id(n): n for n in by_id.values()}
    return [n for n in everything.values() if n.parent is None]


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
    """Every node below `roots`, children before their parents, without recursion."""
    out: list[Node] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.children)
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
        if node.dummy:
            if not node.children:
                continue
            if parent is not None or len(node.children) == 1:
                for child in node.children:
                    child.parent = parent
                out.extend(node.children)
                continue
        out.append(node)
    return out


def subject_of(node: Node) -> Item | None:
    """The item whose base subject is the thread's (step 5.B.i): the node, or a dummy's
    first child."""
    if node.item is not None:
        return node.item
    return node.children[0].item if node.children else None


def thread_subject(node: Node) -> str:
    item = subject_of(node)
    return item.facts.subject if item is not None else ""


def merge_subjects(roots: list[Node]) -> list[Node]:
    """Step 5: threads at the root level with the same base subject come together. Where a
    new dummy lands among the roots does not matter: step 6 sorts them again."""
    table: dict[str, Node] = {}
    for node in roots:  # 5.B: one thread per base subject takes the others in
        subject = thread_subject(node)
        if not subject:
            continue
        held = table.get(subject)
        if held is None or (
            not held.dummy and (node.dummy or (is_reply(held) and not is_reply(node)))
        ):
            table[subject] = node
    gone: set[int] = set()
    for node in roots:  # 5.C
        subject = thread_subject(node)
        held = table.get(subject) if subject else None
        if held is None or held is node or node.parent is not None:
            continue
        if held.dummy and node.dummy:
            for child in node.children:
                attach(held, child)
            gone.add(id(node))
        elif held.dummy or (is_reply(node) and not is_reply(held)):
            attach(held, node)
        else:
            dummy = Node()
            attach(dummy, held)
            attach(dummy, node)
            table[subject] = dummy
    kept = [n for n in roots if n.parent is None and id(n) not in gone]
    return kept + [n for n in table.values() if n.dummy and n.parent is None and n not in kept]


def is_reply(node: Node) -> bool:
    return node.item is not None and node.item.facts.reply


def sort_siblings(roots: list[Node]) -> None:
    """Step 6: every set of siblings by sent date, the deepest first (a dummy sorts by its
    first child, which must be in place before)."""
    for node in postorder(roots):
        node.children.sort(key=date_key)
    roots.sort(key=date_key)


def render(roots: list[Node], number: Callable[[Item], int]) -> str:
    """The THREAD response's thread lists (RFC 5256 4): a chain is `(1 2 3)`, branches are
    nested lists `(1 (2)(3 4))`, a dummy shows only its branches `((2)(3))`."""
    return "".join(f"({members(root, number)})" for root in roots)


def members(root: Node, number: Callable[[Item], int]) -> str:
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
