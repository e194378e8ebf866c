"""The end state of a mail store, checked byte for byte against what a test expects.

Every message a reliability test sends is made by `Ledger.new()`: it carries a unique
`X-Rel-Id` and its bytes are kept, so any file found in a Maildir can be told apart as one of
them, whole (its bytes exactly those sent) or not. The ledger also keeps what each message's
fate may be in each folder, as the clients were told it: exactly one copy once an APPEND, a
delivery or a COPY was acknowledged, none once its expunge was, and "zero or one" (or "one in
either of two folders", for a MOVE) while a command about it was cut short by a kill and nobody
knows how far it got. `check()` then asserts, for one user's Maildir and all its folders:

- every file in cur/ and new/ is a message of the ledger, byte for byte (none half-written);
- every message is where its fate allows, as many times as it allows (exactly once when it was
  acknowledged and not deleted);
- every folder's uidlist (base and change log) parses, gives no UID twice, and keeps the UID of
  every message that had one before (`uid_map()` taken earlier) and the folder's UIDVALIDITY;
- the users files named parse as passwd-files.

Helpers read the store with the project's own readers (`common.store.uidlist.UidStore.load`)
and never write to it, so a check changes nothing it looks at.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from common.store.uidlist import UIDLIST, UidStore
from common.users import parse_line

ID_HEADER = re.compile(rb"^X-Rel-Id: (\S+)$", re.M)
INBOX = "INBOX"


def folder_path(maildir: Path, folder: str) -> Path:
    """The directory of `folder` (INBOX is the Maildir itself, `A.B` is `.A.B`)."""
    return maildir if folder == INBOX else maildir / f".{folder}"


def folders_of(maildir: Path) -> list[str]:
    """INBOX and every Maildir++ folder under `maildir` that is a Maildir."""
    found = [INBOX] if (maildir / "cur").is_dir() else []
    if maildir.is_dir():
        for entry in sorted(maildir.iterdir()):
            if entry.name.startswith(".") and (entry / "cur").is_dir():
                found.append(entry.name[1:])
    return found


def message_files(folder: Path) -> list[Path]:
    files: list[Path] = []
    for sub in ("new", "cur"):
        directory = folder / sub
        if directory.is_dir():
            files.extend(p for p in directory.iterdir() if not p.name.startswith("."))
    return sorted(files)


def message_id(data: bytes) -> str | None:
    header = data.split(b"\n\n", 1)[0]
    found = ID_HEADER.search(header)
    return found.group(1).decode() if found else None


# What the clients were told about a message in a folder. Each is only ever added, never taken
# back, so the order in which concurrent clients report does not matter.
IN, MAYBE_IN, MAYBE_OUT, OUT = "in", "maybe in", "maybe out", "out"


@dataclass
class Fate:
    """What is known of one message, per folder; `across`, when set, bounds its copies in two
    folders together: (folders, fewest, most) (a MOVE or RENAME cut short: in one of the two,
    never both, never none)."""

    per_folder: dict[str, set[str]] = field(default_factory=dict)
    across: tuple[frozenset[str], int, int] | None = None

    def note(self, folder: str, what: str) -> None:
        self.per_folder.setdefault(folder, set()).add(what)

    def bounds(self, folder: str) -> tuple[int, int]:
        """(fewest, most) copies `folder` may hold: none once a removal was acknowledged; one
        once it was acknowledged there, unless a removal is in doubt; else at most one when
        anything that could put it there is in doubt."""
        known = self.per_folder.get(folder, set())
        if OUT in known:
            return 0, 0
        if IN in known:
            return (0, 1) if MAYBE_OUT in known else (1, 1)
        return (0, 1) if MAYBE_IN in known else (0, 0)


@dataclass
class Ledger:
    """Messages a test sent, by id, and what the clients were told happened to them."""

    prefix: str = "m"
    messages: dict[str, bytes] = field(default_factory=dict)
    fates: dict[str, Fate] = field(default_factory=dict)
    _numbers: itertools.count = field(default_factory=lambda: itertools.count(1))

    # -- making messages ---------------------------------------------------------------------

    def new(self, size: int = 600, subject: str = "") -> tuple[str, bytes]:
        """A fresh message of about `size` bytes (LF line ends, as stored): (id, bytes). Its body
        is derived from its id, so no two messages share content."""
        number = next(self._numbers)
        ident = f"{self.prefix}{number}"
        head = (
            f"From: Sender {number} <s{number}@example.org>\n"
            f"To: rel@example.org\n"
            f"Subject: {subject or 'reliability'} {ident}\n"
            f"Message-ID: <{ident}@rel.example.org>\n"
            f"X-Rel-Id: {ident}\n\n"
        ).encode()
        seed = hashlib.sha256(ident.encode()).hexdigest()
        line = (seed + " " + seed[::-1] + "\n").encode()
        length = max(1, size - len(head))
        body = (line * (length // len(line) + 1))[:length]
        data = head + body[:-1] + b"\n"
        self.messages[ident] = data
        return ident, data

    # -- fates -------------------------------------------------------------------------------

    def fate(self, ident: str) -> Fate:
        return self.fates.setdefault(ident, Fate())

    def stored(self, ident: str, folder: str = INBOX) -> None:
        """Acknowledged in `folder` (APPEND OK, delivered, COPY OK): one copy there."""
        self.fate(ident).note(folder, IN)

    def maybe(self, ident: str, folder: str = INBOX) -> None:
        """A command that would put it in `folder` is under way (or was cut short)."""
        self.fate(ident).note(folder, MAYBE_IN)

    def maybe_gone(self, ident: str, folder: str = INBOX) -> None:
        """A command that would remove it from `folder` is under way (or was cut short)."""
        self.fate(ident).note(folder, MAYBE_OUT)

    def removed(self, ident: str, folder: str = INBOX) -> None:
        """Its removal from `folder` was acknowledged (EXPUNGE, VANISHED, QUIT): none there."""
        self.fate(ident).note(folder, OUT)

    def moving(self, ident: str, source: str, target: str) -> None:
        """A MOVE was cut short: one copy in `source` or in `target`."""
        fate = self.fate(ident)
        fate.note(source, MAYBE_OUT)
        fate.note(target, MAYBE_IN)
        fate.across = (frozenset({source, target}), 1, 1)

    def renamed(self, old: str, new: str) -> None:
        """Folder `old` is now `new` (a RENAME acknowledged): every fate follows it."""
        for fate in self.fates.values():
            if old in fate.per_folder:
                fate.per_folder[new] = fate.per_folder.pop(old)

    def rename_settled(self, old: str, new: str, happened: bool) -> None:
        """A RENAME cut short, once the test has looked where the folder is: every fate that
        `renaming` made two-sided is one folder's again."""
        for fate in self.fates.values():
            if fate.across is None or fate.across[0] != frozenset({old, new}):
                continue
            fate.across = None
            kept = fate.per_folder.pop(old) - {MAYBE_OUT}
            fate.per_folder.pop(new, None)
            fate.per_folder[new if happened else old] = kept

    def renaming(self, old: str, new: str) -> None:
        """A RENAME was cut short: each message of `old` is in `old` or in `new`, once."""
        for fate in self.fates.values():
            if old in fate.per_folder:
                low, high = fate.bounds(old)
                fate.note(old, MAYBE_OUT)
                fate.note(new, MAYBE_IN)
                fate.across = (frozenset({old, new}), low, high)

    def present(self, folder: str = INBOX) -> set[str]:
        """The ids that must be in `folder` exactly once."""
        # A copy first: other threads may add fates meanwhile (the soak's MTA).
        return {i for i, f in list(self.fates.items()) if f.bounds(folder) == (1, 1)}

    # -- checking ----------------------------------------------------------------------------

    def check(
        self, maildir: Path, before: UidMap | None = None, renames: dict[str, str] | None = None
    ) -> StoreState:
        """Assert the end state of `maildir` (see the module docstring); returns it."""
        state = StoreState.read(maildir)
        problems = state.problems(self)
        if before is not None:
            problems += state.uid_problems(before, renames or {})
        assert not problems, "\n".join(problems[:40])
        return state


UidMap = dict[str, tuple[int, dict[str, int]]]  # folder -> (UIDVALIDITY, key -> UID)


@dataclass
class StoreState:
    """What is on disk: per folder, the ids of its files (and how many of each), the files that
    are no message of ours, and its uidlist as a fresh reader loads it."""

    maildir: Path
    copies: dict[str, Counter[str]]  # folder -> id -> files
    contents: dict[str, list[tuple[str, bytes]]]  # folder -> (file name, bytes)
    uids: UidMap
    uidlist_problems: list[str]

    @classmethod
    def read(cls, maildir: Path) -> StoreState:
        copies: dict[str, Counter[str]] = {}
        contents: dict[str, list[tuple[str, bytes]]] = {}
        uids: UidMap = {}
        problems: list[str] = []
        for folder in folders_of(maildir):
            path = folder_path(maildir, folder)
            files = [(p.name, p.read_bytes()) for p in message_files(path)]
            contents[folder] = files
            copies[folder] = Counter(i for _n, d in files if (i := message_id(d)) is not None)
            found = uid_table(path, problems)
            if found is not None:
                uids[folder] = found
        return cls(maildir, copies, contents, uids, problems)

    def problems(self, ledger: Ledger) -> list[str]:
        out = list(self.uidlist_problems)
        for folder, files in self.contents.items():
            for name, data in files:
                ident = message_id(data)
                if ident is None or ledger.messages.get(ident) != data:
                    out.append(
                        f"{folder}/{name}: not a whole message that was sent ({len(data)} bytes)"
                    )
        for ident, fate in ledger.fates.items():
            for folder in fate.per_folder:
                low, high = fate.bounds(folder)
                count = self.copies.get(folder, Counter())[ident]
                if not low <= count <= high:
                    out.append(f"{ident}: {count} copies in {folder}, expected {low}..{high}")
            if fate.across is not None:
                pair, low, high = fate.across
                total = sum(self.copies.get(folder, Counter())[ident] for folder in pair)
                if not low <= total <= high:
                    out.append(f"{ident}: {total} in {sorted(pair)}, expected {low}..{high}")
            for folder, counter in self.copies.items():
                if counter[ident] and folder not in fate.per_folder:
                    out.append(f"{ident}: {counter[ident]} copies in {folder}, where it never went")
        for folder, counter in self.copies.items():
            for ident in counter:
                if ident not in ledger.fates and ident in ledger.messages:
                    out.append(f"{ident}: in {folder}, but never acknowledged anywhere")
        return out

    def uid_problems(self, before: UidMap, renames: dict[str, str]) -> list[str]:
        """Every message that had a UID keeps it, in the folder it is in now (RENAME moves a
        folder with its uidlist); every folder keeps its UIDVALIDITY."""
        out = []
        for folder, (validity, keys) in before.items():
            now_folder = renames.get(folder, folder)
            if now_folder not in self.uids:
                if now_folder in self.copies and self.copies[now_folder]:
                    out.append(f"{now_folder}: its uidlist is gone, with messages left")
                continue
            now_validity, now_keys = self.uids[now_folder]
            if now_validity != validity:
                out.append(f"{now_folder}: UIDVALIDITY {validity} became {now_validity}")
            for key, uid in keys.items():
                if key in now_keys and now_keys[key] != uid:
                    out.append(f"{now_folder}: {key} had UID {uid}, now {now_keys[key]}")
        return out

    def ids(self, folder: str = INBOX) -> Counter[str]:
        return self.copies.get(folder, Counter())


def uid_table(path: Path, problems: list[str]) -> tuple[int, dict[str, int]] | None:
    """(UIDVALIDITY, key -> UID) of a folder as a fresh reader loads its uidlist (base and change
    log); None when it has none yet. A uidlist that does not parse, or gives a UID twice, is a
    problem."""
    if not (path / UIDLIST).exists():
        return None
    table = UidStore(path).load()
    if table is None:
        problems.append(f"{path}: its uidlist does not parse")
        return None
    uids = [e.uid for e in table.entries]
    if len(uids) != len(set(uids)) or uids != sorted(uids):
        problems.append(f"{path}: UIDs out of order or given twice")
    if uids and table.uidnext <= uids[-1]:
        problems.append(f"{path}: UIDNEXT {table.uidnext} not above UID {uids[-1]}")
    keys: dict[str, int] = {}
    for entry in table.entries:
        if entry.key in keys:
            problems.append(f"{path}: {entry.key} has two UIDs")
        keys[entry.key] = entry.uid
    return table.uidvalidity, keys


def uid_map(maildir: Path) -> UidMap:
    """Every folder's UIDVALIDITY and UIDs now (for a later `Ledger.check(before=...)`)."""
    problems: list[str] = []
    found: UidMap = {}
    for folder in folders_of(maildir):
        table = uid_table(folder_path(maildir, folder), problems)
        if table is not None:
            found[folder] = table
    assert not problems, problems
    return found


def check_users_file(path: Path) -> list[str]:
    """The names in a passwd-file; asserts every line parses to a name and a `{SCHEME}` hash,
    whole (a file cut short by a crash has a last line without its newline)."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"{path}: last line cut short"
    names = []
    for line in data.decode("utf-8").splitlines():
        entry = parse_line(line)
        assert entry is not None, f"{path}: unreadable line {line!r}"
        assert entry[1].startswith("{") and "}" in entry[1], f"{path}: no scheme in {line!r}"
        names.append(entry[0])
    assert len(names) == len(set(names)), f"{path}: a user twice"
    return names


def tmp_leftovers(maildir: Path) -> list[str]:
    """Files left in the tmp/ directories (a delivery killed before its rename): allowed, and
    reported for reading."""
    return [
        str(p.relative_to(maildir))
        for folder in folders_of(maildir)
        for p in (folder_path(maildir, folder) / "tmp").glob("*")
        if p.is_file()
    ]
