"""The relay file `open-smtp` in vpopmail's format: one `<ip>:<rule>\\t<unix time>` a line.

A malformed line is reported with its line number and kept as it is; seed 002 stopped at the first
one (exit -5) without clearing anything. Lines are read and written as latin-1, so a line we do
not understand goes back byte for byte.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from common.relay.files import read_optional
from common.relay.tcprules import Instructions, RuleSyntaxError, parse_instructions

MAX_STAMP_DIGITS = 18


@dataclass(frozen=True)
class Entry:
    """One open-smtp line in vpopmail's format: `<ip>:<rule>\\t<unix time>`."""

    ip: str
    rule: str
    stamp: int
    lineno: int = 0

    def format(self) -> str:
        return f"{self.ip}:{self.rule}\t{self.stamp}\n"

    def instructions(self) -> Instructions:
        return parse_instructions(self.rule.encode("latin-1"))


@dataclass(frozen=True)
class OtherLine:
    """A line kept as it is: a comment (problem None) or a malformed line (problem says why)."""

    text: str
    lineno: int
    problem: str | None

    def format(self) -> str:
        return self.text + "\n"


Line = Entry | OtherLine


def rule_problem(rule: str) -> str | None:
    """Why `rule` cannot be an entry's rule (None when it can): tcprules must accept it."""
    # open-smtp keeps one entry a line and ends the rule at the first tab (vpopmail's strtok).
    if any(c in rule for c in "\t\r\n"):
        return "must not contain a tab or line break"
    try:
        parse_instructions(rule.encode("ascii"))
    except UnicodeEncodeError:
        return "must be ASCII"
    except RuleSyntaxError as exc:
        return str(exc)
    return None


def parse_open_smtp(text: str) -> list[Line]:
    """Every line of open-smtp; blank lines carry nothing and are left out."""
    lines: list[Line] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            lines.append(OtherLine(line, lineno, None))
        else:
            lines.append(parse_entry(line, lineno))
    return lines


def parse_entry(line: str, lineno: int) -> Line:
    """An Entry, or an OtherLine saying what is wrong with it."""
    head, tab, stamp = line.partition("\t")
    stamp = stamp.rstrip()  # the seed's fscanf("%u\n") took trailing white space too
    ip, colon, rule = head.partition(":")
    problem = None
    if not tab or not stamp.isascii() or not stamp.isdigit():
        problem = "expected <ip>:<rule><TAB><unix time>"
    elif len(stamp) > MAX_STAMP_DIGITS:  # int() refuses a str of over 4300 digits, and no
        problem = "unix time out of range"  # time of ours has more than 18

    elif not colon:
        problem = "no ':' after the address"
    elif not _is_ipv4(ip):
        problem = f"{ip!r} is not an IPv4 address"
    else:
        problem = rule_problem(rule)
    if problem:
        return OtherLine(line, lineno, problem)
    return Entry(ip, rule, int(stamp), lineno)


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def format_open_smtp(lines: list[Line]) -> bytes:
    # latin-1 both ways: a line we do not understand is written back byte for byte.
    return "".join(line.format() for line in lines).encode("latin-1")


def entries(lines: list[Line]) -> list[Entry]:
    return [line for line in lines if isinstance(line, Entry)]


def malformed(lines: list[Line]) -> list[OtherLine]:
    return [line for line in lines if isinstance(line, OtherLine) and line.problem]


def read_open_smtp(path: Path) -> list[Line]:
    """The parsed file; a file that does not exist yet has no lines."""
    data = read_optional(path)
    return parse_open_smtp(data.decode("latin-1")) if data else []


def describe_malformed(path: Path, line: OtherLine) -> str:
    """One stable line per malformed entry: path, line number, why; the line is kept."""
    return f"{path}:{line.lineno}: malformed line kept: {line.problem}: {line.text!r}"
