"""LIST and LSUB mailbox patterns (RFC 3501 6.3.8): `*` matches anything, `%` anything but the
hierarchy separator, and the name INBOX matches in any case.

Matched by walking the pattern positions a name can reach (linear in pattern times name), never
by a backtracking regular expression: `*a*a*a...b` against a long name took a regex minutes, and
a client controls the pattern.
"""

from __future__ import annotations

from collections.abc import Callable

from common.store import INBOX, is_inbox

WILDCARDS = frozenset("*%")


def compile_pattern(pattern: str, separator: str) -> Callable[[str], bool]:
    """A predicate telling whether a mailbox name matches `pattern`."""
    pattern = collapse(pattern)
    literals = sum(1 for char in pattern if char not in WILDCARDS)
    # Only the name INBOX itself is case-insensitive (RFC 3501 5.1): `inbox%` lists INBOX, but
    # not a folder called `INBOXES` that `INBOX%` would list.
    folded = INBOX + pattern[5:] if is_inbox(pattern[:5]) else pattern

    def matches(name: str) -> bool:
        if literals > len(name):  # each literal character needs a character of its own
            return False
        if name == INBOX and walk(folded, name, separator):
            return True
        return walk(pattern, name, separator)

    return matches


def collapse(pattern: str) -> str:
    """Equivalent pattern without runs of wildcards: `**`, `*%` and `%*` are `*`, `%%` is `%`."""
    out: list[str] = []
    for char in pattern:
        if char in WILDCARDS and out and out[-1] in WILDCARDS:
            out[-1] = "*" if "*" in (char, out[-1]) else "%"
            continue
        out.append(char)
    return "".join(out)


def walk(pattern: str, name: str, separator: str) -> bool:
    positions = _closure(pattern, {0})
    for char in name:
        reached = set()
        for pos in positions:
            if pos == len(pattern):
                continue
            wanted = pattern[pos]
            if wanted == "*" or (wanted == "%" and char != separator):
                reached.add(pos)
            elif wanted == char:
                reached.add(pos + 1)
        if not reached:
            return False
        positions = _closure(pattern, reached)
    return len(pattern) in positions


def _closure(pattern: str, positions: set[int]) -> set[int]:
    """Add the positions reached by letting wildcards match nothing."""
    result = set(positions)
    for pos in sorted(positions):
        while pos < len(pattern) and pattern[pos] in WILDCARDS:
            pos += 1
            result.add(pos)
    return result
