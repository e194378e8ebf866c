"""The big-mailbox benchmark of issue 5: one user with N realistic messages, imapd beside Dovecot.

    sudo .venv/bin/python bench/compare.py --protocol imap --big 10000 --big-only --nice -15
    sudo bench/run_imap.sh --big-only                  # the same, through the runner
    sudo .venv/bin/python bench/bigmailbox.py 10000 --nice -15     # shorthand for the first line

`seed_big` writes N messages once per server into a maildir of its own (so neither server's
uidlist, size cache or index files meet the other's): varied sizes (mostly a few KB, HTML
alternatives, attachments up to 700 KB; about 30 KB on average) and varied headers (1-6 Received
hops, DKIM, encoded words, quoted and bare addresses, several recipients, Cc, Reply-To,
In-Reply-To/References, list headers), LF line ends, written straight into new/ under
Postfix-style names without `,S=`/`,W=`, mtimes from the names. Then compare.py's `run_big`
starts both servers and `run_pass` runs `--big-passes` sessions against each, alternating
between them, each session a fresh connection:

    LOGIN + SELECT INBOX                                      (timed together)
    UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)             (timed)
    50 x UID FETCH <random uid> BODY[]                         (timed together; sets \\Seen)
    LOGOUT, then wait for the server to close the connection   (not timed)

Pass 1 is cold: no uidlist, index or size cache yet, every message in new/ (the first SELECT
moves them to cur/), the files in the page cache since they were just written. Passes 2 and
after are warm: each server's own on-disk caches are there; our daemon's child is a fresh process
each time, so it has only what is on disk. The random UIDs are the same for both servers in a
pass (positions in the sorted UID list, seeded by the pass number) and differ between passes.
Checks: the number of FETCH responses is N, every BODY[] literal has the size RFC822.SIZE gave,
and the two servers' totals agree (same content, same CRLF counting).
"""

from __future__ import annotations

import base64
import os
import random
import re
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import load

BIG_FETCH = "UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)"
BODY_FETCH = "UID FETCH {uid} BODY[]"
OP_TIMEOUT = 300.0  # one socket operation; a cold UID FETCH streams, so this is generous
BODY_SEED = 5000
HOST = "mx.bench.example.com"
TARGET_FACTOR = 5.0  # issue 5: warm SELECT + UID FETCH within 5 x Dovecot's

_FETCH_HEAD = re.compile(rb"^\* (\d+) FETCH \(")
_UID = re.compile(rb"[( ]UID (\d+)")
_SIZE = re.compile(rb"[( ]RFC822\.SIZE (\d+)")
_BODY_LITERAL = re.compile(rb"BODY\[\] \{(\d+)\}\r\n")
_EXISTS = re.compile(rb"^\* (\d+) EXISTS")


def big_user(count: int) -> str:
    """`big10k` for 10,000 (as in the reference Dovecot set-up), `big2500` for 2,500."""
    return f"big{count // 1000}k" if count % 1000 == 0 else f"big{count}"


# -- realistic messages ---------------------------------------------------------------------------

FIRST = (
    "Alice",
    "Bob",
    "Carol",
    "Dave",
    "Erin",
    "Frank",
    "Grace",
    "Heidi",
    "Ivan",
    "Judy",
    "Mallory",
    "Niaj",
    "Olivia",
    "Peggy",
    "Rupert",
    "Sybil",
    "Trent",
    "Victor",
    "Walter",
    "Wendy",
)
LAST = (
    "Smith",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Martin",
    "Lee",
    "Walker",
    "Hall",
    "Young",
    "King",
    "Wright",
    "Lopez",
    "Hill",
    "Scott",
    "Green",
    "Adams",
    "Baker",
)
UNICODE_NAMES = (
    "Zoë Lefèvre",
    "José Núñez",
    "Łukasz Wąsik",
    "Søren Østergård",
    "Jürgen Groß",
    "Ана Иванова",
    "李小龍",
    "Ångström Åsa",
)
DOMAINS = (
    "example.org",
    "example.net",
    "mail.example.com",
    "lists.example.org",
    "corp.example",
    "univ.example.edu",
    "shop.example",
    "news.example.net",
)
SUBJECT_WORDS = (
    "meeting",
    "report",
    "quarterly",
    "invoice",
    "draft",
    "review",
    "update",
    "release",
    "notes",
    "agenda",
    "budget",
    "proposal",
    "schedule",
    "question",
    "results",
    "deadline",
    "server",
    "outage",
    "lunch",
    "travel",
    "contract",
    "the",
    "for",
    "and",
    "about",
    "next",
    "week",
    "friday",
    "project",
    "plan",
)
UNICODE_SUBJECTS = (
    "Réunion de l'équipe",
    "Überprüfung des Entwurfs",
    "Presupuesto año próximo",
    "Встреча в пятницу",
    "会议记录",
    "Ωραίο πρόγραμμα",
)
TEXT_WORDS = (
    "mail",
    "daemon",
    "maildir",
    "session",
    "message",
    "benchmark",
    "loopback",
    "fork",
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "queue",
    "server",
    "client",
    "reply",
    "please",
    "find",
    "attached",
    "regards",
    "thanks",
    "meeting",
    "tomorrow",
    "we",
    "should",
    "discuss",
    "results",
    "numbers",
    "quarter",
    "release",
    "schedule",
    "review",
)
ZONES = ("+0000", "+0200 (CEST)", "-0700 (PDT)", "-0500", "+0100 (CET)", "+0530", "+0900 (JST)")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MAILERS = ("Mozilla Thunderbird 115.3", "Mutt/2.2.9", "Microsoft Outlook 16.0")
ATTACHMENTS = (
    ("application/pdf", "report.pdf"),
    ("image/jpeg", "photo 2024.jpg"),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "budget Q3.xlsx"),
    ("application/zip", "logs.zip"),
    ("image/png", "screen.png"),
)


def encoded_word(text: str, rng: random.Random) -> str:
    data = text.encode()
    if rng.random() < 0.5:
        return f"=?UTF-8?B?{base64.b64encode(data).decode()}?="
    quoted = "".join(
        chr(b) if 0x21 <= b < 0x7F and b not in b"=?_ " else ("_" if b == 0x20 else f"={b:02X}")
        for b in data
    )
    return f"=?UTF-8?Q?{quoted}?="


class MessageMaker:
    """Deterministic realistic messages (LF line ends) from one seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        lines = []
        for _ in range(4000):  # a pool of body lines: slices of it make the text parts
            words = []
            while sum(len(w) + 1 for w in words) < rng.randint(40, 74):
                words.append(rng.choice(TEXT_WORDS))
            lines.append(" ".join(words))
        lines[17] = ". a line that starts with a dot"
        self.lines = lines

    # -- pieces --

    def person(self) -> tuple[str, str]:
        rng = self.rng
        first, last = rng.choice(FIRST), rng.choice(LAST)
        return f"{first} {last}", f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}"

    def address(self) -> str:
        rng = self.rng
        name, addr = self.person()
        kind = rng.random()
        if kind < 0.45:
            return f"{name} <{addr}>"
        if kind < 0.60:
            return f'"{name.split()[1]}, {name.split()[0]}" <{addr}>'
        if kind < 0.75:
            return f"{encoded_word(rng.choice(UNICODE_NAMES), rng)} <{addr}>"
        if kind < 0.90:
            return addr
        return f"{addr} ({name})"

    def addresses(self, low: int, high: int) -> str:
        return ",\n\t".join(self.address() for _ in range(self.rng.randint(low, high)))

    def subject(self, index: int) -> str:
        rng = self.rng
        if rng.random() < 0.12:
            text = encoded_word(rng.choice(UNICODE_SUBJECTS) + f" {index}", rng)
        else:
            words = [rng.choice(SUBJECT_WORDS) for _ in range(rng.randint(2, 14))]
            text = " ".join(words).capitalize() + f" #{index}"
            if len(text) > 60:  # folded, as long subjects are
                cut = text.rfind(" ", 0, 60)
                text = text[:cut] + "\n\t" + text[cut + 1 :]
        prefix = rng.choice(("", "", "", "Re: ", "RE: ", "Fwd: ", "Re: [list] ", "[announce] "))
        return prefix + text

    def date(self, when: int) -> str:
        tm = time.gmtime(when)
        zone = self.rng.choice(ZONES)
        day = f"{DAYS[tm.tm_wday]}, " if self.rng.random() < 0.9 else ""
        return (
            f"{day}{tm.tm_mday} {MONTHS[tm.tm_mon - 1]} {tm.tm_year} "
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {zone}"
        )

    def text(self, size: int) -> str:
        """About `size` bytes of text lines from the pool."""
        start = self.rng.randrange(len(self.lines))
        out, total, index = [], 0, start
        while total < size:
            line = self.lines[index % len(self.lines)]
            out.append(line)
            total += len(line) + 1
            index += 1
        return "\n".join(out) + "\n"

    def header(self, index: int, user: str, when: int) -> str:
        rng = self.rng
        parts = [
            f"Return-Path: <bounce-{index}@{rng.choice(DOMAINS)}>",
            f"Delivered-To: {user}@bench.example.com",
        ]
        for hop in range(rng.randint(1, 6)):
            parts.append(
                f"Received: from relay{hop}.{rng.choice(DOMAINS)} (relay{hop}.example "
                f"[198.51.100.{rng.randint(1, 254)}])\n\tby {HOST} (Postfix) with ESMTPS id "
                f"4W{rng.getrandbits(40):010X}\n\tfor <{user}@bench.example.com>; "
                f"{self.date(when - hop * 7)}"
            )
        if rng.random() < 0.5:
            signature = base64.b64encode(rng.randbytes(192)).decode()
            parts.append(
                f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; "
                f"d={rng.choice(DOMAINS)}; s=sel{rng.randint(1, 9)};\n"
                f"\th=from:to:subject:date:message-id;\n"
                f"\tbh={base64.b64encode(rng.randbytes(32)).decode()};\n"
                f"\tb={signature[:70]}\n\t {signature[70:]}"
            )
        parts.append(f"From: {self.address()}")
        parts.append(f"To: {self.addresses(1, 5)}")
        if rng.random() < 0.3:
            parts.append(f"Cc: {self.addresses(1, 4)}")
        if rng.random() < 0.1:
            parts.append(f"Reply-To: {self.address()}")
        if rng.random() < 0.05:
            parts.append(f"Sender: {self.address()}")
        parts.append(f"Subject: {self.subject(index)}")
        parts.append(f"Date: {self.date(when)}")
        parts.append(
            f"Message-ID: <{when}.{index}.{rng.getrandbits(32):08x}@{rng.choice(DOMAINS)}>"
        )
        if rng.random() < 0.3:
            refs = [
                f"<{rng.getrandbits(48):012x}@{rng.choice(DOMAINS)}>"
                for _ in range(rng.randint(1, 6))
            ]
            parts.append(f"In-Reply-To: {refs[-1]}")
            parts.append("References: " + "\n\t".join(refs))
        if rng.random() < 0.2:
            parts.append("List-Id: Bench discussion <bench.lists.example.org>")
            parts.append("List-Unsubscribe: <mailto:bench-leave@lists.example.org>")
        if rng.random() < 0.4:
            parts.append(f"X-Mailer: {rng.choice(MAILERS)}")
        parts.append("MIME-Version: 1.0")
        return "\n".join(parts) + "\n"

    # -- whole messages --

    def message(self, index: int, user: str, when: int) -> bytes:
        rng = self.rng
        head = self.header(index, user, when)
        kind = rng.random()
        boundary = f"=_bench_{index}_{rng.getrandbits(32):08x}"
        if kind < 0.55:  # plain text, 0.5-8 KB
            body = "Content-Type: text/plain; charset=us-ascii\n\n" + self.text(
                int(rng.lognormvariate(7.8, 0.7)) % 8000 + 300
            )
        elif kind < 0.80:  # text and HTML alternatives, 4-40 KB
            text = self.text(rng.randint(1500, 12000))
            html = "".join(
                f"<p>{line}</p>\n" for line in self.text(rng.randint(2500, 28000)).splitlines()
            )
            body = (
                f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n'
                f"This is a multi-part message in MIME format.\n\n--{boundary}\n"
                "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 7bit\n\n"
                f"{text}\n--{boundary}\nContent-Type: text/html; charset=utf-8\n"
                f"Content-Transfer-Encoding: 7bit\n\n<html><body>\n{html}</body></html>\n"
                f"\n--{boundary}--\n"
            )
        else:  # text and an attachment: 17% up to 120 KB, 3% up to 700 KB
            size = rng.randint(150_000, 700_000) if kind > 0.97 else rng.randint(5000, 120_000)
            ctype, filename = rng.choice(ATTACHMENTS)
            data = base64.encodebytes(rng.randbytes(size * 3 // 4)).decode()
            body = (
                f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n'
                f"--{boundary}\nContent-Type: text/plain; charset=us-ascii\n\n"
                f"{self.text(rng.randint(200, 3000))}\n--{boundary}\n"
                f'Content-Type: {ctype}; name="{filename}"\n'
                f'Content-Disposition: attachment; filename="{filename}"\n'
                f"Content-Transfer-Encoding: base64\n\n{data}\n--{boundary}--\n"
            )
        return (head + body).encode()


@dataclass
class Seeded:
    user: str
    messages: int
    bytes: int
    seconds: float
    folders: list[str]


def seed_big(folders: list[Path], user: str, count: int, seed: int = 2024) -> Seeded:
    """The same N messages into each folder's new/, written directly (no tmp/ and rename: nothing
    reads the folders yet), named as Postfix names them, mtime = the time in the name."""
    begin = time.monotonic()
    maker = MessageMaker(seed)
    for folder in folders:
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
    first = 1_700_000_000
    span = 365 * 86400
    total = 0
    inode = 0x40000
    for index in range(count):
        when = first + index * span // max(1, count) + maker.rng.randrange(60)
        inode += maker.rng.randint(1, 40)
        name = f"{when}.V801I{inode:x}M{maker.rng.randrange(1_000_000)}.{HOST}"
        data = maker.message(index + 1, user, when)
        total += len(data)
        for folder in folders:
            fd = os.open(folder / "new" / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.utime(fd, (when, when))
            finally:
                os.close(fd)
    return Seeded(user, count, total, time.monotonic() - begin, [str(f) for f in folders])


# -- one measured session -------------------------------------------------------------------------


@dataclass
class Pass:
    server: str
    index: int  # 1 = cold
    login_select: float = 0.0  # seconds
    uid_fetch: float = 0.0
    bodies: float = 0.0
    server_cpu: float = 0.0  # seconds of the server's tree over the session
    other_cpu_pct: float = 0.0  # the machine's CPU used by neither side, % of all CPUs
    exists: int = 0
    fetched: int = 0  # FETCH responses with RFC822.SIZE to UID FETCH 1:*
    fetch_bytes: int = 0  # size of that whole response
    size_total: int = 0  # sum of RFC822.SIZE
    body_bytes: int = 0  # sum of the BODY[] literals
    errors: list[str] = field(default_factory=list)

    @property
    def select_and_fetch(self) -> float:
        return self.login_select + self.uid_fetch


def parse_fetch(lines: list[bytes]) -> dict[int, int]:
    """uid -> RFC822.SIZE from the responses to BIG_FETCH (items before ENVELOPE only)."""
    sizes = {}
    for line in lines:
        if not _FETCH_HEAD.match(line):
            continue
        head = line.split(b"ENVELOPE", 1)[0]
        uid, size = _UID.search(head), _SIZE.search(head)
        if uid and size:
            sizes[int(uid.group(1))] = int(size.group(1))
    return sizes


def run_pass(
    name: str,
    port: int,
    pid: int,
    user: str,
    index: int,
    bodies: int,
    wait_idle: Callable[[], None] | None = None,
) -> Pass:
    """One session: LOGIN+SELECT, UID FETCH 1:*, `bodies` random BODY[], LOGOUT."""
    result = Pass(name, index)
    conn = None
    cpu_before, busy_before = load.tree_cpu(pid), load.machine_busy()
    own_before, wall_before = own_cpu(), time.monotonic()
    try:
        conn = load.Conn("127.0.0.1", port, OP_TIMEOUT)
        imap = load.imap_greeting(conn)
        begin = time.perf_counter()
        imap.command(f"LOGIN {user} {load.DEFAULT_PASSWORD}")
        selected = imap.command("SELECT INBOX")
        after_select = time.perf_counter()
        lines = imap.command(BIG_FETCH)
        after_fetch = time.perf_counter()
        result.login_select, result.uid_fetch = after_select - begin, after_fetch - after_select
        for line in selected:
            found = _EXISTS.match(line)
            if found:
                result.exists = int(found.group(1))
        sizes = parse_fetch(lines)
        result.fetched = len(sizes)
        result.fetch_bytes = sum(len(line) for line in lines)
        result.size_total = sum(sizes.values())
        if result.fetched != result.exists:
            result.errors.append(f"{result.fetched} FETCH responses for {result.exists} EXISTS")
        uids = sorted(sizes)
        rng = random.Random(BODY_SEED + index)
        picks = [uids[rng.randrange(len(uids))] for _ in range(bodies)] if uids else []
        begin = time.perf_counter()
        for uid in picks:
            reply = imap.command(BODY_FETCH.format(uid=uid))
            found = next((m for m in (_BODY_LITERAL.search(r[:400]) for r in reply) if m), None)
            if found is None:
                result.errors.append(f"UID {uid}: no BODY[] literal")
                continue
            result.body_bytes += int(found.group(1))
            if int(found.group(1)) != sizes[uid]:
                result.errors.append(
                    f"UID {uid}: BODY[] {found.group(1).decode()} octets, RFC822.SIZE {sizes[uid]}"
                )
        result.bodies = time.perf_counter() - begin
        imap.command("LOGOUT")
        wait_closed(conn)
    except (OSError, load.ProtocolError) as exc:
        result.errors.append(load.describe_error(exc))
    finally:
        if conn is not None:
            conn.close()
    if wait_idle is not None:
        wait_idle()  # our child exits and is reaped, so its CPU is in the master's cutime
    result.server_cpu = load.tree_cpu(pid) - cpu_before
    other = load.machine_busy() - busy_before - result.server_cpu - (own_cpu() - own_before)
    capacity = max(1e-9, (time.monotonic() - wall_before) * (os.cpu_count() or 1))
    result.other_cpu_pct = max(0.0, 100.0 * other / capacity)
    return result


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_closed(conn: load.Conn, timeout: float = 30.0) -> None:
    """After LOGOUT: until the server closes, so its end-of-session writes (our size cache,
    Dovecot's index) are done before the next pass starts."""
    deadline = time.monotonic() + timeout
    conn.sock.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            if not conn.sock.recv(65536):
                return
        except TimeoutError:
            continue
        except OSError:
            return


# -- the table ------------------------------------------------------------------------------------


@dataclass
class BigResult:
    seeded: Seeded
    servers: list[str]  # ours first
    labels: list[str]
    bodies: int  # BODY[] fetches per pass
    passes: list[Pass] = field(default_factory=list)
    note: str = ""

    def of(self, server: str) -> list[Pass]:
        return sorted((p for p in self.passes if p.server == server), key=lambda p: p.index)

    def to_json(self) -> dict:
        return {
            "seeded": asdict(self.seeded),
            "servers": self.labels,
            "note": self.note,
            "bodies": self.bodies,
            "passes": [asdict(p) for p in self.passes],
        }


def warm(passes: list[Pass], attr: str) -> float | None:
    values = [getattr(p, attr) for p in passes if p.index > 1 and not p.errors]
    return sum(values) / len(values) if values else None


STEPS = (
    ("login_select", "LOGIN + SELECT INBOX"),
    ("uid_fetch", "UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)"),
    ("select_and_fetch", "  SELECT + UID FETCH (the target)"),
    ("bodies", "{bodies} x UID FETCH <random uid> BODY[]"),
    ("server_cpu", "server CPU of the whole session"),
    ("other_cpu_pct", "oth%: CPU used by others, % of the machine"),
)


def print_big(result: BigResult) -> None:
    seeded = result.seeded
    mean = seeded.bytes / max(1, seeded.messages) / 1024
    print(
        f"\nbig mailbox: user {seeded.user}, {seeded.messages} messages, "
        f"{seeded.bytes / 2**20:.0f} MiB per copy (mean {mean:.1f} KiB), seeded in "
        f"{seeded.seconds:.1f} s; each server its own copy;\n seconds per step; pass 1 cold "
        "(only the files, all in new/, in the page cache), then warm"
    )
    print(" servers: " + "; ".join(result.labels))
    if result.note:
        print(f"  ({result.note})")
    ours = result.servers[0]
    ref = result.servers[1] if len(result.servers) > 1 else None
    count = max((p.index for p in result.passes), default=0)
    cols = " ".join(["cold", *(f"warm{i}" for i in range(2, count + 1))])
    width = 8 * count - 1
    title = f"{'':48} | {ours:^{width}}"
    line = f"{'step':48} | " + " ".join(f"{c:>7}" for c in cols.split())
    if ref is not None:
        title += f" | {ref:^{width}} | {'ours/dovecot':^15}"
        line += " | " + " ".join(f"{c:>7}" for c in cols.split()) + f" | {'cold':>7} {'warm':>7}"
    print(title)
    print(line)
    for attr, text in STEPS:
        if attr == "bodies" and not result.bodies:
            continue
        text = text.format(bodies=result.bodies)
        share = attr == "other_cpu_pct"  # a share of the machine: no ratio
        cell = "{:7.0f}" if share else "{:7.3f}"
        mine = result.of(ours)
        row = f"{text:48} | " + " ".join(cell.format(getattr(p, attr)) for p in mine)
        if ref is not None:
            theirs = result.of(ref)
            row += " | " + " ".join(cell.format(getattr(p, attr)) for p in theirs)
            cold = (
                getattr(mine[0], attr) / getattr(theirs[0], attr)
                if mine and theirs and getattr(theirs[0], attr) and not share
                else None
            )
            a, b = warm(mine, attr), warm(theirs, attr)
            ratio = a / b if a is not None and b and not share else None
            row += f" | {fmt_ratio(cold)} {fmt_ratio(ratio)}"
        print(row)
    for server in result.servers:
        passes = result.of(server)
        if passes:
            last = passes[-1]
            print(
                f"  {server}: {last.exists} EXISTS, {last.fetched} FETCH responses, "
                f"{last.fetch_bytes / 2**20:.1f} MiB of UID FETCH response, RFC822.SIZE total "
                f"{last.size_total}, BODY[] bytes per pass "
                + "/".join(str(p.body_bytes) for p in passes)
            )
        for p in passes:
            for error in p.errors[:5]:
                print(f"  {server} pass {p.index} error: {error}")
    if ref is not None:
        mine, theirs = result.of(ours), result.of(ref)
        same = {p.size_total for p in mine} == {p.size_total for p in theirs} and [
            p.body_bytes for p in mine
        ] == [p.body_bytes for p in theirs]
        print(f"  same sizes and same BODY[] bytes from both servers: {'yes' if same else 'NO'}")
    print(
        "(warm = mean of passes 2.., ratio > 1: ours slower; oth% above a few per cent means "
        "other work on the machine disturbed that pass)"
    )
    print_big_targets(result)


def fmt_ratio(value: float | None) -> str:
    return f"{value:6.2f}x" if value is not None else f"{'-':>7}"


def print_big_targets(result: BigResult) -> None:
    ours = result.servers[0]
    mine = result.of(ours)
    print("\ntarget (issue 5, big mailbox):")
    clean = all(not p.errors for p in mine) and bool(mine)
    if len(result.servers) < 2:
        print(
            f"  (no Dovecot in this run: the {TARGET_FACTOR:g}x target is not checked); "
            f"{ours} errors: {sum(len(p.errors) for p in mine)}"
        )
        return
    theirs = result.of(result.servers[1])
    a, b = warm(mine, "select_and_fetch"), warm(theirs, "select_and_fetch")
    if a is None or b is None:
        print("  no clean warm pass on one side: FAIL")
        return
    ok = clean and a <= TARGET_FACTOR * b
    print(
        f"  {result.seeded.messages} messages, warm SELECT + UID FETCH: {ours} {a:.3f} s <= "
        f"{TARGET_FACTOR:g} x dovecot {b:.3f} s = {TARGET_FACTOR * b:.3f} s "
        f"({a / b:.1f}x), no error: {'PASS' if ok else 'FAIL'}"
    )


def main(argv: list[str] | None = None) -> int:
    """`bigmailbox.py [N] [compare.py options]`: compare.py --protocol imap --big N --big-only."""
    import compare  # compare imports this module when it runs --big

    args = list(sys.argv[1:] if argv is None else argv)
    count = args.pop(0) if args and args[0].isdigit() else "10000"
    return compare.main(["--protocol", "imap", "--big", count, "--big-only", *args])


if __name__ == "__main__":
    sys.exit(main())
