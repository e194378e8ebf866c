"""tcprules's rule language, its cdb encoding and tcpserver's lookup order (ucspi-tcp 0.88).

The relay support (`common/relay/`, seed 002) compiles `tcp.smtp` plus the open-smtp entries the
way vpopmail's `update_rules()` has `tcprules` do it, so this module follows tcprules.c and
tcpserver's rules.c to the byte; the tests compare against Debian's `tcprules` and `tcprulescheck`.

Rule lines: `address:instructions`.

- A line starting with `#`, or one without a `:` (after trailing LF, space and tab are cut), is
  skipped. Anything else that does not parse is an error for the whole file, as in tcprules
  (which then leaves the old cdb in place).
- The address is the cdb key as written: an exact IP `1.2.3.4`, a prefix ending in `.` (`10.`),
  `=host`, `=.domain`, `=` (any known host), `info@ip`, or empty (everything). A range in one
  component (`1.2.3.4-7`, `1.2.3.-3`, `1-3.2.3.4`; no `=` or `@` in the address) is one key per
  number, capped at 255.
- Instructions: `allow` or `deny`, then any number of `,VAR=qVALUEq`, where q is whatever
  character follows the `=` (usually `"`) and VALUE runs to the next q.

cdb data for a rule: `D\\0` first when it denies, then `+VAR=VALUE\\0` per variable; an `allow`
without variables is empty data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from common.relay.cdb import CdbReader

MAX_COMPONENT = 255  # tcprules caps the top of a range here


class RuleSyntaxError(ValueError):
    """A rule line tcprules would refuse ("unable to parse this line"); lineno is 1-based or 0."""

    def __init__(self, reason: str, line: bytes = b"", lineno: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.lineno = lineno

    def __str__(self) -> str:
        where = f"line {self.lineno}: " if self.lineno else ""
        text = f": {self.line.decode('latin-1')!r}" if self.line else ""
        return f"{where}{self.reason}{text}"


@dataclass(frozen=True)
class Instructions:
    """What a rule tells tcpserver: deny the connection, or allow it with these variables set."""

    deny: bool = False
    env: tuple[tuple[bytes, bytes], ...] = ()

    def encode(self) -> bytes:
        """The cdb data tcprules writes for these instructions."""
        head = b"D\0" if self.deny else b""
        return head + b"".join(b"+" + name + b"=" + value + b"\0" for name, value in self.env)

    @classmethod
    def decode(cls, data: bytes) -> Instructions:
        """Read cdb data as tcpserver's found() does: NUL-ended entries, unknown ones ignored."""
        deny = False
        env: list[tuple[bytes, bytes]] = []
        for entry in data.split(b"\0")[:-1]:  # bytes after the last NUL are no entry
            if entry[:1] == b"D":
                deny = True
            elif entry[:1] == b"+" and b"=" in entry:
                name, _, value = entry[1:].partition(b"=")
                env.append((name, value))
        return cls(deny, tuple(env))

    def environment(self) -> dict[bytes, bytes]:
        """The variables as tcpserver leaves them (a later setting of a name wins)."""
        return dict(self.env)


def parse_instructions(text: bytes) -> Instructions:
    """`allow` or `deny` then `,VAR=qVALUEq` pairs, exactly as tcprules reads them."""
    if text.startswith(b"deny"):
        deny, rest = True, text[4:]
    elif text.startswith(b"allow"):
        deny, rest = False, text[5:]
    else:
        raise RuleSyntaxError("instructions must start with allow or deny")
    env: list[tuple[bytes, bytes]] = []
    while rest:
        name, value, rest = _split_variable(rest)
        env.append((name, value))
    return Instructions(deny, tuple(env))


def _split_variable(text: bytes) -> tuple[bytes, bytes, bytes]:
    """One `,VAR=qVALUEq` from the front of `text`: (VAR, VALUE, the rest)."""
    if text[:1] != b",":
        raise RuleSyntaxError("expected ',VAR=\"value\"' after allow/deny")
    equals = text.find(b"=")
    if equals < 0:
        raise RuleSyntaxError("variable without '='")
    name, rest = text[1:equals], text[equals + 1 :]
    if not rest:
        raise RuleSyntaxError("variable without a value")
    quote, rest = rest[:1], rest[1:]
    end = rest.find(quote)
    if end < 0:
        raise RuleSyntaxError(f"value not closed by {quote.decode('latin-1')!r}")
    return name, rest[:end], rest[end + 1 :]


def parse_line(line: bytes) -> tuple[bytes, Instructions] | None:
    """(address, instructions) for a rule line, or None for a line tcprules skips."""
    if line.startswith(b"#"):
        return None
    address, colon, instructions = line.rstrip(b"\n \t").partition(b":")
    if not colon:
        return None
    return address, parse_instructions(instructions)


def expand_address(address: bytes) -> list[bytes]:
    """The cdb keys for an address: itself, or one per number of a `lo-hi` range."""
    dash = address.find(b"-")
    if dash < 0 or b"=" in address or b"@" in address:
        return [address]
    left = address.rfind(b".", 0, dash) + 1  # start of the component holding the dash
    right = address.find(b".", dash + 1)
    if right < 0:
        right = len(address)
    bottom = _number(address[left:dash], address)
    top = min(_number(address[dash + 1 : right], address), MAX_COMPONENT)
    prefix, suffix = address[:left], address[right:]
    return [prefix + str(n).encode() + suffix for n in range(bottom, top + 1)]


def _number(digits: bytes, address: bytes) -> int:
    # tcprules's getnum(): only digits; an empty bound reads as 0 (`1.2.3.-3` starts at 0).
    if digits and not digits.isdigit():
        raise RuleSyntaxError(f"bad range in address {address.decode('latin-1')!r}")
    return int(digits) if digits else 0


def split_lines(text: bytes) -> list[bytes]:
    """Lines as tcprules's getln() reads them: split at LF only; a last line needs no LF."""
    lines = text.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def compile_rules(text: bytes) -> list[tuple[bytes, bytes]]:
    """The cdb records for a rules file, in tcprules's order; RuleSyntaxError on a bad line."""
    records: list[tuple[bytes, bytes]] = []
    for lineno, line in enumerate(split_lines(text), 1):
        try:
            rule = parse_line(line)
            if rule is None:
                continue
            address, instructions = rule
            data = instructions.encode()
            records.extend((key, data) for key in expand_address(address))
        except RuleSyntaxError as exc:
            raise RuleSyntaxError(exc.reason, line, lineno) from None
    return records


def candidate_keys(
    ip: bytes, host: bytes | None = None, info: bytes | None = None
) -> Iterator[bytes]:
    """The keys tcpserver tries, in order, for a client (rules.c doit()); the first found wins."""
    if info is not None:
        yield info + b"@" + ip
        if host is not None:
            yield info + b"@=" + host
    yield ip
    if host is not None:
        yield b"=" + host
    for end in range(len(ip), 0, -1):  # prefixes ending in '.', longest first
        if ip[end - 1 : end] == b".":
            yield ip[:end]
    if host is not None:
        for start in range(len(host)):  # domain suffixes starting at a '.', longest first
            if host[start : start + 1] == b".":
                yield b"=" + host[start:]
        yield b"="
    yield b""


def lookup(
    reader: CdbReader, ip: str, host: str | None = None, info: str | None = None
) -> tuple[bytes, Instructions] | None:
    """(key, instructions) of the rule tcpserver applies to a client; None: no rule (allowed)."""
    for key in candidate_keys(
        ip.encode("latin-1"),
        None if host is None else host.encode("latin-1"),
        None if info is None else info.encode("latin-1"),
    ):
        data = reader.get(key)
        if data is not None:
            return key, Instructions.decode(data)
    return None
