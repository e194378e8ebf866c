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
import json
import os
import random
import re
import resource
import shutil
import subprocess
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

    def small(self, index: int, user: str, when: int) -> bytes:
        """1-6 KB in all (about 3 KB on average), as in issue 15's INBOX: the varied header
        above and a short text part, 15% of them with an HTML alternative."""
        rng = self.rng
        head = self.header(index, user, when)
        budget = max(200, int(rng.triangular(1000, 6000, 2300)) - len(head) - 60)
        if rng.random() < 0.85:
            plain = "Content-Type: text/plain; charset=us-ascii\n\n"
            return (head + plain + self.text(budget)).encode()
        boundary = f"=_bench_{index}_{rng.getrandbits(32):08x}"
        html = "".join(f"<p>{line}</p>\n" for line in self.text(budget // 2).splitlines())
        body = (
            f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n'
            f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n\n{self.text(budget // 2)}"
            f"\n--{boundary}\nContent-Type: text/html; charset=utf-8\n\n{html}\n--{boundary}--\n"
        )
        return (head + body).encode()

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
    kind: str = "mixed"


KINDS = ("mixed", "small")  # MessageMaker.message (issue 5), MessageMaker.small (issue 15)
SMALL_FROM = 50_000  # `--big-kind auto`: small messages from this many on


def kind_for(count: int, kind: str) -> str:
    """`auto`: issue 5's mixed messages (about 30 KB) for up to 10,000s, issue 15's small ones
    (1-6 KB) from SMALL_FROM on (100,000 mixed ones would be 3 GB per copy)."""
    if kind != "auto":
        return kind
    return "small" if count >= SMALL_FROM else "mixed"


def seed_big(
    folders: list[Path],
    user: str,
    count: int,
    seed: int = 2024,
    kind: str = "mixed",
    cache: Path | None = None,
) -> Seeded:
    """The same N messages into each folder's new/, named as Postfix names them, mtime = the time
    in the name. With `cache`, the messages are generated once into CACHE/<user>-<kind>-<seed>/
    and copied from there (`cp -a`) on later runs."""
    begin = time.monotonic()
    if cache is None:
        total = write_messages(folders, user, count, seed, kind)
    else:
        source, total = cached_seed(cache, user, count, seed, kind)
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            for sub in ("cur", "tmp"):
                (folder / sub).mkdir(exist_ok=True)
            subprocess.run(["cp", "-a", str(source / "new"), str(folder / "new")], check=True)
    return Seeded(user, count, total, time.monotonic() - begin, [str(f) for f in folders], kind)


def cached_seed(cache: Path, user: str, count: int, seed: int, kind: str) -> tuple[Path, int]:
    """CACHE/<user>-<kind>-<seed>/new, generated on first use (into a temporary directory,
    renamed into place when complete, so an interrupted run leaves nothing half-made)."""
    target = cache / f"{user}-{kind}-{seed}"
    stamp = target / "seeded.json"
    if not stamp.exists():
        cache.mkdir(parents=True, exist_ok=True)
        work = cache / f".{target.name}.{os.getpid()}.tmp"
        shutil.rmtree(work, ignore_errors=True)
        total = write_messages([work], user, count, seed, kind)
        (work / "seeded.json").write_text(json.dumps({"messages": count, "bytes": total}))
        shutil.rmtree(target, ignore_errors=True)
        os.rename(work, target)
    info = json.loads(stamp.read_text())
    return target, int(info["bytes"])


def write_messages(folders: list[Path], user: str, count: int, seed: int, kind: str) -> int:
    """Write the messages into each folder's new/ directly (no tmp/ and rename: nothing reads
    the folders yet); returns the bytes of one copy."""
    maker = MessageMaker(seed)
    make = maker.small if kind == "small" else maker.message
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
        data = make(index + 1, user, when)
        total += len(data)
        for folder in folders:
            fd = os.open(folder / "new" / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.utime(fd, (when, when))
            finally:
                os.close(fd)
    return total


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
    pss_select: float = 0.0  # MiB: PSS of the session's server process after SELECT
    pss_fetch: float = 0.0  # ... and after the UID FETCH
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
    session_pss: Callable[[], int] | None = None,
) -> Pass:
    """One session: LOGIN+SELECT, UID FETCH 1:*, `bodies` random BODY[], LOGOUT; with
    `session_pss`, the PSS of the server's session process after SELECT and after the UID FETCH
    (not timed)."""
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
        if session_pss is not None:
            result.pss_select = session_pss() / 2**20
        before_fetch = time.perf_counter()
        lines = imap.command(BIG_FETCH)
        after_fetch = time.perf_counter()
        if session_pss is not None:
            result.pss_fetch = session_pss() / 2**20
        result.login_select, result.uid_fetch = after_select - begin, after_fetch - before_fetch
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


# -- SEARCH and POP3 (issue 15) -------------------------------------------------------------------

# Needles found in part of the messages: a last name (in From's display names and addresses), a
# subject word, and one line of the body pool that about 1% of the small messages contain.
SEARCHES = (
    ("search_from", 'UID SEARCH FROM "walker"'),
    ("search_subject", 'UID SEARCH SUBJECT "deadline"'),
    ("search_body", 'UID SEARCH BODY "starts with a dot"'),
)
_SEARCH_LINE = re.compile(rb"^\* SEARCH")


@dataclass
class SearchPass:
    """One session: LOGIN + SELECT (not timed), then each of SEARCHES (timed one by one)."""

    server: str
    index: int
    search_from: float = 0.0
    search_subject: float = 0.0
    search_body: float = 0.0
    server_cpu: float = 0.0
    matches: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def run_search(
    name: str, port: int, pid: int, user: str, index: int, wait_idle: Callable[[], None] | None
) -> SearchPass:
    result = SearchPass(name, index)
    cpu_before = load.tree_cpu(pid)
    conn = None
    try:
        conn = load.Conn("127.0.0.1", port, OP_TIMEOUT)
        imap = load.imap_greeting(conn)
        imap.command(f"LOGIN {user} {load.DEFAULT_PASSWORD}")
        imap.command("SELECT INBOX")
        for attr, command in SEARCHES:
            begin = time.perf_counter()
            lines = imap.command(command)
            setattr(result, attr, time.perf_counter() - begin)
            found = [line for line in lines if _SEARCH_LINE.match(line)]
            result.matches[attr] = sum(len(line.split()) - 2 for line in found)
        imap.command("LOGOUT")
        wait_closed(conn)
    except (OSError, load.ProtocolError) as exc:
        result.errors.append(load.describe_error(exc))
    finally:
        if conn is not None:
            conn.close()
    if wait_idle is not None:
        wait_idle()
    result.server_cpu = load.tree_cpu(pid) - cpu_before
    return result


@dataclass
class Pop3Pass:
    """One POP3 session on the big maildrop: USER, PASS, STAT, UIDL timed together, QUIT."""

    server: str
    index: int
    login_stat_uidl: float = 0.0
    server_cpu: float = 0.0
    messages: int = 0  # from STAT
    uidl_lines: int = 0
    errors: list[str] = field(default_factory=list)


def run_pop3(
    name: str, port: int, pid: int, user: str, index: int, wait_idle: Callable[[], None] | None
) -> Pop3Pass:
    result = Pop3Pass(name, index)
    cpu_before = load.tree_cpu(pid)
    conn = None
    try:
        conn = load.Conn("127.0.0.1", port, OP_TIMEOUT)
        load.pop3_reply(conn)
        begin = time.perf_counter()
        load.pop3_command(conn, f"USER {user}")
        load.pop3_command(conn, f"PASS {load.DEFAULT_PASSWORD}")
        stat = load.pop3_command(conn, "STAT")
        uidl = load.pop3_command(conn, "UIDL", multiline=True)
        result.login_stat_uidl = time.perf_counter() - begin
        result.messages = int(stat.split()[1])
        result.uidl_lines = uidl.count(b"\r\n") - 2  # less the +OK line and the final dot
        if result.uidl_lines != result.messages:
            result.errors.append(f"{result.uidl_lines} UIDL lines for STAT {result.messages}")
        load.pop3_command(conn, "QUIT")
        wait_closed(conn)
    except (OSError, ValueError, IndexError, load.ProtocolError) as exc:
        result.errors.append(load.describe_error(exc))
    finally:
        if conn is not None:
            conn.close()
    if wait_idle is not None:
        wait_idle()
    result.server_cpu = load.tree_cpu(pid) - cpu_before
    return result


def session_pss(root: int, dovecot: bool) -> int:
    """PSS bytes of the process serving the one session: for our daemon every process under
    the master (its child for this connection), for Dovecot the largest `imap` mail process
    (the tuned set-up keeps idle ones waiting)."""
    pids = load.descendants(root)[1:]
    if not dovecot:
        return sum(load.process_pss(pid) for pid in pids)
    sizes = [load.process_pss(pid) for pid in pids if process_name(pid) == "imap"]
    return max(sizes, default=0)


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


# -- the table ------------------------------------------------------------------------------------


@dataclass
class BigResult:
    seeded: Seeded
    servers: list[str]  # ours first
    labels: list[str]
    bodies: int  # BODY[] fetches per pass
    passes: list[Pass] = field(default_factory=list)
    searches: list[SearchPass] = field(default_factory=list)
    pop3: list[Pop3Pass] = field(default_factory=list)
    note: str = ""

    def of(self, server: str) -> list[Pass]:
        return of(self.passes, server)

    def to_json(self) -> dict:
        return {
            "seeded": asdict(self.seeded),
            "servers": self.labels,
            "note": self.note,
            "bodies": self.bodies,
            "passes": [asdict(p) for p in self.passes],
            "searches": [asdict(p) for p in self.searches],
            "pop3": [asdict(p) for p in self.pop3],
        }


def of(rows: list, server: str) -> list:
    return sorted((p for p in rows if p.server == server), key=lambda p: p.index)


def warm(passes: list, attr: str) -> float | None:
    """The mean of the warm passes: from pass 3 on when there are that many (Dovecot's pass 2
    still fills its cache file, README), else pass 2."""
    first_warm = 3 if any(p.index >= 3 for p in passes) else 2
    values = [getattr(p, attr) for p in passes if p.index >= first_warm and not p.errors]
    return sum(values) / len(values) if values else None


STEPS = (
    ("login_select", "LOGIN + SELECT INBOX"),
    ("uid_fetch", "UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)"),
    ("select_and_fetch", "  SELECT + UID FETCH (issue 5's target)"),
    ("bodies", "{bodies} x UID FETCH <random uid> BODY[]"),
    ("server_cpu", "server CPU of the whole session"),
    ("pss_select", "MiB PSS of the session after SELECT"),
    ("pss_fetch", "MiB PSS of the session after UID FETCH"),
    ("other_cpu_pct", "oth%: CPU used by others, % of the machine"),
)
SEARCH_STEPS = (
    ("search_from", SEARCHES[0][1]),
    ("search_subject", SEARCHES[1][1]),
    ("search_body", SEARCHES[2][1]),
    ("server_cpu", "server CPU of the SEARCH session"),
)
POP3_STEPS = (
    ("login_stat_uidl", "POP3 USER + PASS + STAT + UIDL"),
    ("server_cpu", "server CPU of the POP3 session"),
)
NO_RATIO = {"other_cpu_pct"}


def print_big(result: BigResult) -> None:
    seeded = result.seeded
    mean = seeded.bytes / max(1, seeded.messages) / 1024
    print(
        f"\nbig mailbox: user {seeded.user}, {seeded.messages} {seeded.kind} messages, "
        f"{seeded.bytes / 2**20:.0f} MiB per copy (mean {mean:.1f} KiB), seeded in "
        f"{seeded.seconds:.1f} s; each server its own copy;\n seconds per step; pass 1 cold "
        "(only the files, all in new/, in the page cache), then warm"
    )
    print(" servers: " + "; ".join(result.labels))
    if result.note:
        print(f"  ({result.note})")
    steps = [
        (attr, text.format(bodies=result.bodies))
        for attr, text in STEPS
        if attr != "bodies" or result.bodies
    ]
    print_rows(result.servers, result.passes, steps, "pass")
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
    print_errors(result.servers, result.passes)
    if len(result.servers) > 1:
        mine, theirs = result.of(result.servers[0]), result.of(result.servers[1])
        same = {p.size_total for p in mine} == {p.size_total for p in theirs} and [
            p.body_bytes for p in mine
        ] == [p.body_bytes for p in theirs]
        print(f"  same sizes and same BODY[] bytes from both servers: {'yes' if same else 'NO'}")
    if result.searches:
        print("\nSEARCH, one session per pass after the passes above (seconds per command):")
        print_rows(result.servers, result.searches, list(SEARCH_STEPS), "pass")
        for server in result.servers:
            for p in of(result.searches, server)[-1:]:
                print(f"  {server} matches: " + ", ".join(f"{k} {v}" for k, v in p.matches.items()))
        print_errors(result.servers, result.searches)
    if result.pop3:
        print("\nPOP3 on the same maildrop, one session per pass (seconds):")
        print_rows(result.servers, result.pop3, list(POP3_STEPS), "pass")
        for server in result.servers:
            for p in of(result.pop3, server)[-1:]:
                print(f"  {server}: STAT {p.messages} messages, {p.uidl_lines} UIDL lines")
        print_errors(result.servers, result.pop3)
    print(
        "(first = pass 1 (cold for the IMAP passes), warm = mean of passes 3.. (2 when there are "
        "two); ratio > 1: ours slower; oth% above a few per cent means other work on the machine "
        "disturbed that pass)"
    )
    print_big_targets(result)


def print_rows(servers: list[str], rows: list, steps: list[tuple[str, str]], what: str) -> None:
    """One line per step: each server's value per pass, and ours/Dovecot first and warm."""
    ours = servers[0]
    ref = servers[1] if len(servers) > 1 else None
    count = max((p.index for p in rows), default=0)
    cols = ["first", *(f"{what}{i}" for i in range(2, count + 1))]
    width = 8 * count - 1
    title = f"{'':48} | {ours:^{width}}"
    line = f"{'step':48} | " + " ".join(f"{c:>7}" for c in cols)
    if ref is not None:
        title += f" | {ref:^{width}} | {'ours/dovecot':^15}"
        line += " | " + " ".join(f"{c:>7}" for c in cols) + f" | {'first':>7} {'warm':>7}"
    print(title)
    print(line)
    mine = of(rows, ours)
    theirs = of(rows, ref) if ref is not None else []
    for attr, text in steps:
        cell = "{:7.0f}" if attr in NO_RATIO else "{:7.3f}"
        row = f"{text[:48]:48} | " + " ".join(cell.format(getattr(p, attr)) for p in mine)
        if ref is not None:
            row += " | " + " ".join(cell.format(getattr(p, attr)) for p in theirs)
            first, warm_ratio = ratios(mine, theirs, attr)
            row += f" | {fmt_ratio(first)} {fmt_ratio(warm_ratio)}"
        print(row)


def ratios(mine: list, theirs: list, attr: str) -> tuple[float | None, float | None]:
    if attr in NO_RATIO or not mine or not theirs:
        return None, None
    a0, b0 = getattr(mine[0], attr), getattr(theirs[0], attr)
    first = a0 / b0 if b0 and not mine[0].errors and not theirs[0].errors else None
    a, b = warm(mine, attr), warm(theirs, attr)
    return first, (a / b if a is not None and b else None)


def print_errors(servers: list[str], rows: list) -> None:
    for server in servers:
        for p in of(rows, server):
            for error in p.errors[:5]:
                print(f"  {server} pass {p.index} error: {error}")


def fmt_ratio(value: float | None) -> str:
    return f"{value:6.2f}x" if value is not None else f"{'-':>7}"


# Issue 15's targets at 100,000 messages: (rows, attribute, which passes, factor, text).
ISSUE15_TARGETS = (
    ("passes", "login_select", "first", 2.0, "first LOGIN+SELECT of a never-seen folder"),
    ("passes", "uid_fetch", "first", 2.0, "first UID FETCH 1:* ENVELOPE"),
    ("passes", "login_select", "warm", 1.5, "warm LOGIN+SELECT"),
    ("passes", "uid_fetch", "warm", 1.5, "warm UID FETCH 1:* ENVELOPE"),
    ("passes", "bodies", "first", 1.5, "random non-PEEK BODY[], first pass"),
    ("passes", "bodies", "warm", 1.5, "random non-PEEK BODY[], warm"),
    ("searches", "search_from", "all", 2.0, "SEARCH FROM"),
    ("searches", "search_subject", "all", 2.0, "SEARCH SUBJECT"),
    ("searches", "search_body", "all", 2.0, "SEARCH BODY"),
    ("pop3", "login_stat_uidl", "all", 1.5, "POP3 login+STAT+UIDL"),
)
PSS_LIMIT_MIB = 64.0


def print_big_targets(result: BigResult) -> None:
    ours = result.servers[0]
    mine = result.of(ours)
    clean = all(not p.errors for p in mine) and bool(mine)
    if len(result.servers) < 2:
        print(
            f"\ntargets: no Dovecot in this run, the ratios are not checked; {ours} errors: "
            f"{sum(len(p.errors) for p in mine)}"
        )
        print_pss_target(result)
        return
    ref = result.servers[1]
    theirs = result.of(ref)
    print("\ntarget (issue 5, big mailbox):")
    a, b = warm(mine, "select_and_fetch"), warm(theirs, "select_and_fetch")
    if a is None or b is None:
        print("  no clean warm pass on one side: FAIL")
    else:
        ok = clean and a <= TARGET_FACTOR * b
        print(
            f"  {result.seeded.messages} messages, warm SELECT + UID FETCH: {ours} {a:.3f} s <= "
            f"{TARGET_FACTOR:g} x dovecot {b:.3f} s = {TARGET_FACTOR * b:.3f} s "
            f"({a / b:.1f}x), no error: {'PASS' if ok else 'FAIL'}"
        )
    print(f"targets (issue 15, {result.seeded.messages} messages; the issue's are for 100,000):")
    for rows_name, attr, which, factor, text in ISSUE15_TARGETS:
        rows = getattr(result, rows_name)
        if not rows:
            continue
        a_rows, b_rows = of(rows, ours), of(rows, ref)
        for label, pick in pass_groups(which):
            a_val, b_val = pick(a_rows, attr), pick(b_rows, attr)
            if a_val is None or b_val is None or not b_val:
                print(f"  {text}{label}: no clean pass on one side: FAIL")
                continue
            errors = any(p.errors for p in a_rows)
            ok = a_val <= factor * b_val and not errors
            print(
                f"  {text}{label}: {a_val:.3f} s <= {factor:g} x {b_val:.3f} s "
                f"({a_val / b_val:.2f}x): {'PASS' if ok else 'FAIL'}"
            )
    print_pss_target(result)


def pass_groups(which: str) -> list[tuple[str, Callable[[list, str], float | None]]]:
    def first(rows: list, attr: str) -> float | None:
        return getattr(rows[0], attr) if rows and not rows[0].errors else None

    if which == "first":
        return [("", first)]
    if which == "warm":
        return [("", warm)]
    return [(" (first)", first), (" (warm)", warm)]


def print_pss_target(result: BigResult) -> None:
    mine = result.of(result.servers[0])
    if not mine or not any(p.pss_fetch for p in mine):
        return
    worst = max(max(p.pss_select, p.pss_fetch) for p in mine)
    verdict = "PASS" if worst <= PSS_LIMIT_MIB else "FAIL"
    print(
        f"  session PSS with the folder selected, largest of any pass: {worst:.1f} MiB <= "
        f"{PSS_LIMIT_MIB:g} MiB: {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    """`bigmailbox.py [N] [compare.py options]`: compare.py --protocol imap --big N --big-only."""
    import compare  # compare imports this module when it runs --big

    args = list(sys.argv[1:] if argv is None else argv)
    count = args.pop(0) if args and args[0].isdigit() else "10000"
    return compare.main(["--protocol", "imap", "--big", count, "--big-only", *args])


if __name__ == "__main__":
    sys.exit(main())
