"""A straightforward reference for SORT and THREAD (RFC 5256, RFC 5957), written independently of
imapd from the RFC text, and the generator of the random mailboxes the end-to-end tests check
the server against with it.

It takes the easy road wherever it can: Python's email package parses the headers (so the
generator only writes forms where that parse and RFC 3501's agree), the base subject is the
RFC's steps done with plain string operations, and the REFERENCES algorithm is a direct,
recursive transcription of its six steps over small mailboxes.
"""

from __future__ import annotations

import calendar
import email
import email.header
import email.message
import email.utils
import functools
import random
import re
import time
import unicodedata
from dataclasses import dataclass, field

# -- the generator -------------------------------------------------------------------------------

SUBJECT_WORDS = [
    "Re:", "re:", "RE :", "Fwd:", "FW:", "fw:", "Re[2]:", "Re [3]:", "[list]", "[x]", "[]",
    "[fwd:", "]", "(fwd)", "hello", "Hello", "other", "topic", "HÉLLO", "x", ":", "  ", "\t",
]  # fmt: skip
ENCODED = ["=?utf-8?q?h=C3=A9llo?=", "Re: =?utf-8?q?H=C3=A9LLO?=", "Fwd: =?utf-8?b?aMOpbGxv?="]
ADDRESSES = [
    '"Zed" <zed@example.com>',
    "alice@example.com",
    "Bob <bob@example.org>",
    "=?utf-8?q?=C3=89mile?= <emile@x.fr>",
    '"" <empty@x>',
    "carl@Example.COM",
    "dave@x, erin@y",
    "MAILER-DAEMON",
]
ZONES = ["+0000", "-0800", "+0530", "EST", "GMT", "+2359", "-1200", "XYZ"]


@dataclass
class Generated:
    """One generated message: its bytes and its INTERNALDATE."""

    data: bytes
    internal: int


def random_subject(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return rng.choice(ENCODED)
    words = [rng.choice(SUBJECT_WORDS) for _ in range(rng.randrange(1, 6))]
    return rng.choice(["", " "]).join(words)


def random_date(rng: random.Random) -> str | None:
    moment = time.gmtime(700_000_000 + rng.randrange(0, 300) * 3600 + rng.choice([0, 0, 59]))
    form = rng.random()
    if form < 0.05:
        return None
    if form < 0.08:
        return "garbage"
    if form < 0.12:
        return time.strftime("%d %b %Y", moment)
    return time.strftime("%a, %d %b %Y %H:%M:%S ", moment) + rng.choice(ZONES)


def generate(seed: int, count: int) -> list[Generated]:
    """`count` messages with colliding subjects, dates, addresses and reference chains."""
    rng = random.Random(seed)
    ids: list[str] = []
    out = []
    for _ in range(count):
        lines = []
        date = random_date(rng)
        if date is not None:
            lines.append(f"Date: {date}")
        for name, chance in (("From", 0.9), ("To", 0.8), ("Cc", 0.4)):
            if rng.random() < chance:
                lines.append(f"{name}: {rng.choice(ADDRESSES)}")
        if rng.random() < 0.95:
            lines.append(f"Subject: {random_subject(rng)}")
        own = f"<m{rng.randrange(0, count * 2)}@t>" if rng.random() < 0.9 else "<not valid>"
        if rng.random() < 0.9:
            lines.append(f"Message-ID: {own}")
        if ids and rng.random() < 0.6:
            known = [*ids, f"<m{rng.randrange(count * 2, count * 3)}@t>"]
            refs = rng.sample(known, min(len(known), rng.randrange(1, 4)))
            name = "References" if rng.random() < 0.7 else "In-Reply-To"
            lines.append(f"{name}: {' '.join(refs)}")
        ids.append(own)
        body = "x" * rng.randrange(0, 400)
        data = ("\n".join(lines) + "\n\n" + body + "\n").encode()
        out.append(Generated(data, 800_000_000 + rng.randrange(0, 2000) * 60))
    return out


# -- the reference -----------------------------------------------------------------------------


def decode(value: str) -> str:
    return str(email.header.make_header(email.header.decode_header(value)))


def collate(text: str) -> str:
    """i;unicode-casemap for the characters the generator writes (RFC 5051)."""
    return unicodedata.normalize("NFKD", text.upper())


def base_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 2.1, step by step."""
    text = " ".join(collate(decode(subject)).replace("\t", " ").split(" "))
    while "  " in text:
        text = text.replace("  ", " ")
    reply = False
    while True:
        while text.endswith(" ") or text.endswith("(FWD)"):  # (2)
            if text.endswith(" "):
                text = text[:-1]
            else:
                text, reply = text[:-5], True
        while True:  # (3) (4) (5)
            if text.startswith(" "):
                text = text[1:]
                continue
            leader = re.match(r"(\[[^\[\]]*\] ?)*(RE|FWD|FW) ?(\[[^\[\]]*\] ?)?:", text)
            if leader:
                text, reply = text[leader.end() :], True
                continue
            blob = re.match(r"\[[^\[\]]*\] ?", text)
            if blob and text[blob.end() :]:
                text = text[blob.end() :]
                continue
            break
        if text.startswith("[FWD:") and text.endswith("]"):  # (6)
            text, reply = text[5:-1], True
            continue
        return text, reply


ZONE_HOURS = {"EST": -5, "GMT": 0}


def sent_date(value: str | None, internal: int) -> int:
    """RFC 5256 2.2 for the forms the generator writes."""
    if value is None:
        return internal
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        only = re.fullmatch(r"(\d+) (\w{3}) (\d{4})", value)
        if only is None:
            return internal
        parsed = email.utils.parsedate_tz(f"{value} 00:00:00 +0000")
    assert parsed is not None  # noqa: S101
    offset = parsed[9] or 0
    if abs(offset) >= 24 * 3600 or offset % 60:  # "+2359" is fine, nonsense is UTC
        offset = 0
    return calendar.timegm(parsed[:6] + (0, 0, 0)) - offset


def first_address(value: str | None) -> tuple[str, str]:
    """(display name, addr-spec) of the first address."""
    if not value:
        return "", ""
    name, spec = email.utils.getaddresses([value])[0]
    return decode(name), spec


def mailbox(value: str | None) -> str:
    return collate(first_address(value)[1].split("@")[0])


def display(value: str | None) -> str:
    name, spec = first_address(value)
    if name.strip():
        return collate(name.strip())
    return collate(spec)


@dataclass
class Message:
    seq: int
    uid: int
    size: int
    internal: int
    headers: email.message.Message
    sent: int = 0
    subject: str = ""
    reply: bool = False

    def header(self, name: str) -> str | None:
        """The first field's value, unfolded."""
        value = self.headers.get(name)
        if value is None:
            return None
        return re.sub(r"\r?\n(?=[ \t])", "", str(value)).strip()

    def __post_init__(self) -> None:
        self.sent = sent_date(self.header("Date"), self.internal)
        self.subject, self.reply = base_subject(self.header("Subject") or "")


def messages(generated: list[Generated], uids: list[int], sizes: list[int]) -> list[Message]:
    return [
        Message(seq, uid, size, g.internal, email.message_from_string(g.data.decode()))
        for seq, (g, uid, size) in enumerate(zip(generated, uids, sizes, strict=True), 1)
    ]


KEYS = {
    "ARRIVAL": lambda m: m.internal,
    "DATE": lambda m: m.sent,
    "SIZE": lambda m: m.size,
    "SUBJECT": lambda m: m.subject,
    "FROM": lambda m: mailbox(m.header("From")),
    "TO": lambda m: mailbox(m.header("To")),
    "CC": lambda m: mailbox(m.header("Cc")),
    "DISPLAYFROM": lambda m: display(m.header("From")),
    "DISPLAYTO": lambda m: display(m.header("To")),
}


def sort(msgs: list[Message], program: list[tuple[str, bool]]) -> list[Message]:
    """RFC 5256 3 with a comparison function: criterion after criterion, then the sequence."""

    def compare(a: Message, b: Message) -> int:
        for name, reverse in program:
            x, y = KEYS[name](a), KEYS[name](b)
            if x != y:
                return (1 if x > y else -1) * (-1 if reverse else 1)
        return a.seq - b.seq

    return sorted(msgs, key=functools.cmp_to_key(compare))


@dataclass(eq=False)
class Container:
    message: Message | None = None
    parent: Container | None = None
    children: list[Container] = field(default_factory=list)


def ids_in(value: str | None) -> list[str]:
    return re.findall(r"<([^<>\s@]+@[^<>\s@]+)>", value or "")


def first_date(c: Container) -> tuple[int, int]:
    node = c
    while node.message is None:
        node = node.children[0]
    return node.message.sent, node.message.seq


def thread_references(msgs: list[Message]) -> list[Container]:
    """RFC 5256 3 REFERENCES, its six steps as written."""
    table: dict[str, Container] = {}
    own: dict[int, Container] = {}
    for m in msgs:
        mine = ids_in(m.header("Message-ID"))
        container = Container(m)
        own[m.seq] = container
        if mine and mine[0] not in table:
            table[mine[0]] = container

    def ancestor(a: Container, b: Container) -> bool:  # a is b or above it
        while b is not None:
            if a is b:
                return True
            b = b.parent  # type: ignore[assignment]
        return False

    for m in msgs:
        refs = ids_in(m.header("References")) or ids_in(m.header("In-Reply-To"))[:1]
        chain = [table.setdefault(r, Container()) for r in refs]
        for parent, child in zip(chain, chain[1:], strict=False):  # step 1.A
            if child.parent is None and not ancestor(child, parent):
                child.parent = parent
                parent.children.append(child)
        me = own[m.seq]  # step 1.B
        target = chain[-1] if chain else None
        if me.parent is not target:
            if me.parent is not None:
                me.parent.children.remove(me)
                me.parent = None
            if target is not None and not ancestor(me, target):
                me.parent = target
                target.children.append(me)
    everything = list(own.values()) + [c for c in table.values() if c.message is None]
    root = [c for c in everything if c.parent is None]  # step 2

    def prune(nodes: list[Container], parent: Container | None) -> list[Container]:  # step 3
        out: list[Container] = []
        for c in nodes:
            c.children = prune(c.children, c)
            if c.message is None:
                if not c.children:
                    continue
                if parent is not None or len(c.children) == 1:
                    for child in c.children:
                        child.parent = parent
                    out.extend(c.children)
                    continue
            out.append(c)
        return out

    root = prune(root, None)
    for c in root:  # step 4
        if c.message is None:
            c.children.sort(key=first_date)
    root.sort(key=first_date)
    subjects: dict[str, Container] = {}  # step 5

    def subject_of(c: Container) -> Message:
        return c.message if c.message is not None else c.children[0].message  # type: ignore

    for c in root:
        s = subject_of(c).subject
        if not s:
            continue
        held = subjects.get(s)
        if held is None or (
            held.message is not None
            and (c.message is None or (held.message.reply and not (c.message.reply)))
        ):
            subjects[s] = c
    result = []
    for c in root:
        s = subject_of(c).subject
        held = subjects.get(s) if s else None
        if held is None or held is c or c.parent is not None:
            if c.parent is None:
                result.append(c)
            continue
        if held.message is None and c.message is None:
            held.children.extend(c.children)
        elif held.message is None or (
            c.message is not None and c.message.reply and not held.message.reply
        ):
            held.children.append(c)
            c.parent = held
        else:
            dummy = Container()
            dummy.children = [held, c]
            held.parent = c.parent = dummy
            subjects[s] = dummy
            result.append(dummy)
    result = [c for c in result if c.parent is None]

    def sort_all(nodes: list[Container]) -> None:  # step 6
        for c in nodes:
            sort_all(c.children)
        nodes.sort(key=first_date)

    sort_all(result)
    return result


def thread_orderedsubject(msgs: list[Message]) -> list[Container]:
    groups: dict[str, list[Message]] = {}
    for m in sorted(msgs, key=lambda m: (m.subject, m.sent, m.seq)):
        groups.setdefault(m.subject, []).append(m)
    threads = []
    for group in groups.values():
        top = Container(group[0])
        top.children = [Container(m, top) for m in group[1:]]
        threads.append(top)
    threads.sort(key=first_date)
    return threads


def render(threads: list[Container], number) -> str:  # noqa: ANN001 (a callable)
    """THREAD response text, recursively."""

    def inner(c: Container) -> str:
        if c.message is None:
            return "".join(f"({inner(k)})" for k in c.children)
        text = str(number(c.message))
        if len(c.children) == 1:
            return f"{text} {inner(c.children[0])}"
        if c.children:
            return text + " " + "".join(f"({inner(k)})" for k in c.children)
        return text

    return "".join(f"({inner(c)})" for c in threads)
