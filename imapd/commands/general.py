"""Commands valid in any state, and the small extensions: CAPABILITY, NOOP, LOGOUT (RFC 3501
6.1), ID (RFC 2971), ENABLE (RFC 5161; of CONDSTORE, QRESYNC, IMAP4rev2 and UTF8=ACCEPT),
NAMESPACE (RFC 2342), CHECK (RFC 3501 6.4.1)."""

from __future__ import annotations

from common.logs import printable
from common.version import VERSION
from imapd import responses as r
from imapd.commands.base import enable_condstore, expect
from imapd.parser import Command, EnableArgs, IdArgs, parse_enable, parse_id, parse_no_args
from imapd.session import Session
from imapd.states import ANY, AUTHENTICATED, SELECTED, Result, Spec, State

ENABLEABLE = frozenset({"CONDSTORE", "QRESYNC", "IMAP4REV2", "UTF8=ACCEPT"})
# The names ENABLED reports, as the capability list spells them.
ENABLED_NAMES = {"IMAP4REV2": "IMAP4rev2"}
MAX_ID_LOGGED = 10  # ID fields logged, each cut to 60 characters


def cmd_capability(session: Session, command: Command) -> Result:
    session.untagged(f"CAPABILITY {session.capabilities()}")
    return "Capability completed"


def cmd_noop(session: Session, command: Command) -> Result:
    """Does nothing itself: the dispatcher reports mailbox changes before the tagged OK."""
    return "NOOP completed"


def cmd_logout(session: Session, command: Command) -> Result:
    session.untagged(f"BYE {r.BYE_LOGOUT}")
    session.state = State.LOGOUT
    return "Logout completed"


def cmd_id(session: Session, command: Command) -> Result:
    """RFC 2971: the client's fields go to the log (printable, bounded); ours are answered."""
    expect(command, IdArgs)
    if command.args.params:
        fields = " ".join(
            f"{printable(k, 60)}={printable(v or 'NIL', 60)}"
            for k, v in command.args.params[:MAX_ID_LOGGED]
        )
        session.log.info("client id: %s", fields)
    session.untagged(f'ID ("name" "maildaemons" "version" "{VERSION}")')
    return "ID completed"


def cmd_enable(session: Session, command: Command) -> Result:
    """RFC 5161: unknown capabilities are ignored; ENABLED lists those of the request newly
    enabled. QRESYNC enables CONDSTORE too (RFC 7162 3.2.3). IMAP4rev2 and UTF8=ACCEPT make
    mailbox names UTF-8 from the next command on (Session.utf8_names, RFC 9051 5.1, RFC 6855
    3)."""
    expect(command, EnableArgs)
    newly = [c for c in command.args.capabilities if c in ENABLEABLE and c not in session.enabled]
    if {"CONDSTORE", "QRESYNC"} & set(newly):
        enable_condstore(session)
    session.enabled.update(newly)
    if "QRESYNC" in newly and session.selected is not None:
        session.selected.qresync = True
    if "IMAP4REV2" in newly and session.selected is not None:
        session.selected.rev2 = True  # RFC 9051 (imapd/rev2.py): from the next response on
    session.untagged("ENABLED" + "".join(f" {ENABLED_NAMES.get(c, c)}" for c in newly))
    return "ENABLE completed"


def cmd_namespace(session: Session, command: Command) -> Result:
    session.untagged('NAMESPACE (("" ".")) NIL NIL')
    return "NAMESPACE completed"


def cmd_check(session: Session, command: Command) -> Result:
    """Maildir writes are durable when a command completes; nothing is pending."""
    return "CHECK completed"


COMMANDS = {
    "CAPABILITY": Spec(parse_no_args, cmd_capability, ANY),
    "NOOP": Spec(parse_no_args, cmd_noop, ANY),
    "LOGOUT": Spec(parse_no_args, cmd_logout, ANY),
    "ID": Spec(parse_id, cmd_id, ANY),
    "ENABLE": Spec(parse_enable, cmd_enable, AUTHENTICATED),
    "NAMESPACE": Spec(parse_no_args, cmd_namespace, AUTHENTICATED),
    "CHECK": Spec(parse_no_args, cmd_check, SELECTED),
}
