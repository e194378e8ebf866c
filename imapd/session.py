"""One IMAP session in a child: reading commands with their literals, the state machine of
RFC 3501 section 3, dispatch, and the goodbyes.

A command is read whole (line, then for each `{n}` literal a `+` continuation when synchronizing,
the n octets and the rest of the line) and handed to the parser; parse errors are `tag BAD` and the
session goes on. Pipelined commands are answered in order and flushed together (common/lineio).
"""

from __future__ import annotations

import time

from common.lineio import HEAD_SIZE, LineTooLong
from common.session import Goodbyes, ReplyError
from common.session import Session as BaseSession
from common.store import FolderTree, LockBusy, MailboxNotFound, StoreError
from imapd import responses as r
from imapd.parser import Command, ParseError, literal_at_end, parse_command, tag_of
from imapd.responses import ImapError
from imapd.selected import Selected
from imapd.states import SELECTED, Abort, Spec, State

PROTOCOL = "imap"
# ENABLEd, either makes mailbox names UTF-8 for the rest of the session (RFC 9051 5.1, RFC 6855 3).
UTF8_NAMES = frozenset({"IMAP4REV2", "UTF8=ACCEPT"})
MAX_BAD_COMMANDS = 30
CONTINUE = b"+ Ready for literal data\r\n"
# A command may hold max_literal octets of literals plus this much of everything else.
MAX_COMMAND_EXTRA = 1_000_000
# A refused non-synchronizing literal is read and dropped up to this size, else the session ends.
MAX_DISCARD = 1 << 30
# A literal's size is a number, 32 bits (RFC 3501 9): anything larger is not a size at all.
MAX_LITERAL_NUMBER = 0xFFFFFFFF
# RFC 7888 5: LITERAL- allows non-synchronizing literals up to this size.
LITERAL_MINUS_MAX = 4096
DISCARD_CHUNK = 1 << 20
# Before login a literal can only be a user name or a password: a client nobody knows may not
# make the child hold more, and one command must arrive whole within the idle timeout.
PRE_LOGIN_LITERAL = 8192


def bye(text: str) -> bytes:
    return r.untagged(f"BYE {text}")


class Session(BaseSession):
    PROTOCOL = PROTOCOL
    PROGRAM = "imapd"
    GOODBYES = Goodbyes(
        line_too_long=r.tagged("*", "BAD", r.LINE_TOO_LONG),
        too_many_bad=bye(r.BYE_TOO_MANY_BAD),
        timeout=bye(r.BYE_TIMEOUT),
        shutdown=bye(r.BYE_SHUTDOWN),
        internal_error=bye(r.BYE_INTERNAL),
        bad_compression=bye(r.BYE_COMPRESSION),
    )
    MAX_BAD_COMMANDS = MAX_BAD_COMMANDS

    state: State
    tree: FolderTree | None
    selected: Selected | None
    enabled: set[str]
    compress_due: bool  # COMPRESS succeeded: compress from right after its tagged OK

    def prepare(self) -> None:
        self.state = State.NOT_AUTHENTICATED
        self.tree = None
        self.selected = None
        self.enabled = set()
        self.compress_due = False

    # -- output ----------------------------------------------------------------------------

    def untagged(self, text: str | bytes) -> None:
        self.io.write(r.untagged(text))

    @property
    def utf8_names(self) -> bool:
        """Whether mailbox names go as UTF-8 (after ENABLE IMAP4rev2 or UTF8=ACCEPT) rather
        than modified UTF-7, both ways (imapd/names.py)."""
        return not UTF8_NAMES.isdisjoint(self.enabled)

    def mailbox_name(self, name: str) -> bytes:
        """A stored mailbox name as this session spells it in a response."""
        return r.mailbox(name, self.utf8_names)

    def report_changes(self, allow_expunge: bool) -> None:
        if self.selected is not None:
            for line in self.selected.refresh(allow_expunge):
                self.io.write(line)

    def report(self, allow_expunge: bool, final: bool = False) -> None:
        """Unilateral updates before the completion; a selected folder deleted under us ends
        the session. When the folder cannot be read just now, the changes wait for a later
        command. `final`: the report just before the tagged completion, which also tells a
        QRESYNC client about expunges still held back (Selected.held_back)."""
        try:
            self.report_changes(allow_expunge)
            if final and self.selected is not None:
                for line in self.selected.held_back():
                    self.send(line)
        except MailboxNotFound:
            raise Abort(r.BYE_MAILBOX_DELETED) from None
        except (StoreError, LockBusy, OSError) as exc:
            self.log.warning("cannot check the selected mailbox: %s", exc)

    # -- input -----------------------------------------------------------------------------

    def read_command(self) -> bytes:
        """One whole command with its literals, as the parser wants it. Before login, literals
        are small (PRE_LOGIN_LITERAL) and the whole command has one deadline; after it, the
        idle timeout bounds each line and each wait of a literal (a large APPEND may take long
        while it moves)."""
        max_literal = self.settings.get_int("max_literal")
        deadline = None
        if self.state is State.NOT_AUTHENTICATED:
            max_literal = min(max_literal, PRE_LOGIN_LITERAL)
            deadline = time.monotonic() + self.io.timeout
        line = self.io.readline(deadline)
        parts = [line]
        total = len(line)
        while (found := literal_at_end(line)) is not None:
            size, non_sync = found
            total += size
            if size > max_literal or total > max_literal + MAX_COMMAND_EXTRA:
                self.refuse_literal(parts[0], size, non_sync)
            if non_sync and size > LITERAL_MINUS_MAX and not self.settings.get_bool("literal_plus"):
                self.refuse_literal(parts[0], size, non_sync, r.LITERAL_MINUS)
            if not non_sync:
                self.send(CONTINUE)
                self.io.flush()
            parts.append(b"\r\n" + self.io.read_exact(size, deadline))
            try:
                line = self.io.readline(deadline)
            except LineTooLong:
                raise LineTooLong(parts[0][:HEAD_SIZE]) from None  # the tag is on the first line
            parts.append(line)
            total += len(line)  # lines count too: `{0}` after `{0}` must not grow forever
        return b"".join(parts)

    def refuse_literal(
        self, first_line: bytes, size: int, non_sync: bool, why: str = r.LITERAL_TOO_LARGE
    ) -> None:
        """`tag BAD [TOOBIG]` for a literal over `max_literal`, and `tag NO [TOOBIG]` when it is
        an APPEND's (RFC 7889 4: over the APPENDLIMIT); `why` for a non-synchronizing literal
        that LITERAL- does not allow. A synchronizing one was never invited (no `+`); a
        non-synchronizing one is already on its way (RFC 7888 4): its octets are read and
        dropped so that the next command is read as a command, not as data."""
        words = first_line.split(b" ", 2)
        raw_tag = words[0].decode("ascii", "replace")
        tag = raw_tag if raw_tag.isprintable() and "\ufffd" not in raw_tag else None
        if non_sync and self.state is State.NOT_AUTHENTICATED:
            # Nobody known asked to send this much: not worth reading to drop.
            self.send(r.tagged(tag or "*", "BAD", r.LITERAL_TOO_LARGE))
            raise Abort(r.BYE_LITERAL)
        if non_sync:
            self.discard_literal(size)
            self.skip_rest_of_command()
        append = len(words) > 1 and words[1].upper() == b"APPEND"
        if append and why == r.LITERAL_TOO_LARGE and size <= MAX_LITERAL_NUMBER:
            raise ReplyError(r.tagged(tag or "*", "NO", *r.MESSAGE_TOO_LARGE))
        raise ReplyError(r.tagged(tag or "*", "BAD", why))

    def discard_literal(self, size: int) -> None:
        if size > MAX_DISCARD:
            raise Abort(r.BYE_LITERAL)
        while size > 0:
            chunk = min(size, DISCARD_CHUNK)
            self.io.read_exact(chunk)
            size -= chunk

    def skip_rest_of_command(self) -> None:
        """Drop the rest of a refused command, with any further non-synchronizing literals."""
        line = self.io.readline()
        while (found := literal_at_end(line)) is not None and found[1]:
            self.discard_literal(found[0])
            line = self.io.readline()

    def read_continuation(self) -> bytes:
        """An AUTHENTICATE response line."""
        self.io.flush()
        return self.io.readline()

    # -- the session core (common/session.py) ----------------------------------------------

    def greeting(self) -> bytes:
        return r.untagged(f"OK [CAPABILITY {self.capabilities()}] {r.GREETING_NAME}")

    def capabilities(self) -> str:
        """What this session may use now: STARTTLS and the login capabilities only before
        login (RFC 3501 6.2.1, 6.2.3), COMPRESS until it is on (RFC 4978)."""
        before_login = self.state is State.NOT_AUTHENTICATED
        return r.capability_line(
            compressed=self.io.compressed,
            starttls=before_login and self.tls_offered,
            plaintext=self.plaintext_allowed or not before_login,
            literal_plus=self.settings.get_bool("literal_plus"),
            append_limit=self.settings.get_int("max_literal"),
        )

    def line_too_long(self, head: bytes) -> None:
        """`tag BAD` when the tag can be read from the line's start (a client waits for its
        tag, RFC 3501 2.2.2), else `* BAD`."""
        tag = tag_of(head)
        if tag is None:
            self.bad_command(self.GOODBYES.line_too_long)
        else:
            self.bad_command(r.tagged(tag, "BAD", r.LINE_TOO_LONG))

    def last_bad_reply(self, reply: bytes) -> bytes:
        # The client sees the BAD for its command, then the BYE.
        return reply + self.GOODBYES.too_many_bad

    def save(self) -> None:
        if self.selected is not None:
            self.selected.save_caches()

    def dispatch(self, raw: bytes) -> None:
        if raw.strip().upper() == b"DONE":
            # RFC 2177: DONE only ends an IDLE; here there is none to end.
            self.bad(None, r.DONE_WITHOUT_IDLE)
            return
        try:
            command = parse_command(raw, self.commands, self.utf8_names)
        except ParseError as exc:
            self.bad(exc.tag, exc.message)
            return
        self.execute(command)

    def execute(self, command: Command) -> None:
        """Check the state, report mailbox changes before a selected-state command runs (never
        EXPUNGE then) and again before the tagged completion (without EXPUNGE where RFC 3501
        7.4.1 forbids it; with QRESYNC, a lower HIGHESTMODSEQ for the expunges held back), run
        the handler and turn ImapError into `tag NO/BAD`. After the tagged OK of COMPRESS the
        connection switches to DEFLATE (RFC 4978)."""
        spec: Spec = self.commands[command.name]
        if self.state not in spec.states:
            self.bad(command.tag, f"{command.name} not allowed now")
            return
        self.title(command.name)
        if spec.states == SELECTED:
            # The command acts on the mailbox as it is now: new messages and flags changed by
            # others are announced first (expunges wait for the report after, when allowed), so
            # a FETCH never returns stale flags and a STORE never undoes another session's
            # change.
            self.report(allow_expunge=False)
        try:
            result = spec.handler(self, command)
        except ImapError as exc:
            if exc.status == "BAD":
                self.bad(command.tag, exc.text)
                return
            self.report(command.uid or spec.may_expunge, final=True)
            self.send(r.tagged(command.tag, "NO", exc.text, exc.code))
            return
        text, code = (result, "") if isinstance(result, str) else result
        if self.state is not State.LOGOUT:
            # LOGOUT is answered by BYE and the tagged OK alone (RFC 3501 6.1.3): updates
            # about a mailbox the client is leaving would be counted against a closed one.
            self.report(command.uid or spec.may_expunge, final=True)
        self.send(r.tagged(command.tag, "OK", text, code))
        if self.compress_due:
            self.start_compression()
        if self.state is State.LOGOUT:
            self.finished = True

    def bad(self, tag: str | None, text: str) -> None:
        """`tag BAD text` (untagged when the tag could not be read)."""
        self.bad_command(r.tagged(tag or "*", "BAD", text))

    # -- helpers for handlers ------------------------------------------------------------

    def require_tree(self) -> FolderTree:
        if self.tree is None:
            raise RuntimeError("no user logged in")
        return self.tree

    def require_selected(self) -> Selected:
        if self.selected is None:
            raise RuntimeError("no mailbox selected")
        return self.selected

    def start_compression(self) -> None:
        """RFC 4978: the tagged OK went out uncompressed; everything after it is DEFLATE."""
        self.compress_due = False
        self.io.start_compression()
        self.log.info("compression active")
