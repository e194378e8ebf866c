"""Update contexts (RFC 5267 4.3, 4.6): starting one for a SEARCH or SORT with RETURN (UPDATE),
and CANCELUPDATE. The contexts themselves live in imapd/contexts.py; they hang on the selected
view as its watcher, so they end with it when the mailbox is closed.

CANCELUPDATE: states selected; replies OK, NO when a tag names no context (then none ends).
"""

from __future__ import annotations

from common.store import Entry
from imapd.commands.base import expect
from imapd.contexts import Context, Contexts, freeze
from imapd.parser import CancelUpdateArgs, Command, SearchNode, SortKey, parse_cancelupdate
from imapd.responses import ImapError
from imapd.session import Session
from imapd.states import SELECTED, Result, Spec


def start_updates(
    session: Session,
    command: Command,
    criteria: SearchNode,
    program: tuple[SortKey, ...] | None,
    found: list[tuple[int, Entry]],
    done: str,
) -> Result:
    """Keep the result of `command` current from now on; `OK [NOUPDATE "tag"]` when this
    session has as many contexts as it may."""
    view = session.require_selected()
    contexts = view.watcher if isinstance(view.watcher, Contexts) else Contexts()
    view.watcher = contexts
    tag = command.tag.replace("\\", "\\\\").replace('"', '\\"')
    if contexts.full() and command.tag not in {c.tag for c in contexts.active}:
        return (done, f'NOUPDATE "{tag}"')
    context = Context(command.tag, command.uid, freeze(criteria, view), program)
    contexts.start(context, view, found)
    return done


def cmd_cancelupdate(session: Session, command: Command) -> Result:
    expect(command, CancelUpdateArgs)
    view = session.require_selected()
    contexts = view.watcher
    if not isinstance(contexts, Contexts) or not contexts.cancel(command.args.tags):
        raise ImapError("No update context with that tag")
    return "CANCELUPDATE completed"


COMMANDS = {"CANCELUPDATE": Spec(parse_cancelupdate, cmd_cancelupdate, SELECTED)}
