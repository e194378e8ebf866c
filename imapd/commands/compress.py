"""COMPRESS (RFC 4978): DEFLATE both ways, from right after the tagged OK (common/lineio.py).

States: authenticated and selected. Replies: OK (then compressed), NO [COMPRESSIONACTIVE] when the
session compresses already, BAD for any other mechanism.
"""

from __future__ import annotations

from imapd.commands.base import expect
from imapd.parser import Command, CompressArgs, parse_compress
from imapd.responses import ImapError, bad
from imapd.session import Session
from imapd.states import AUTHENTICATED, Result, Spec


def cmd_compress(session: Session, command: Command) -> Result:
    expect(command, CompressArgs)
    if session.io.compressed:
        raise ImapError("DEFLATE is active already", "COMPRESSIONACTIVE")
    if command.args.mechanism != "DEFLATE":
        raise bad("Unknown compression mechanism")
    session.compress_due = True  # the dispatcher starts it once this OK is on the wire
    return "DEFLATE active"


COMMANDS = {"COMPRESS": Spec(parse_compress, cmd_compress, AUTHENTICATED)}
