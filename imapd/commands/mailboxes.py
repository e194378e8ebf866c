"""Mailbox commands: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS
(RFC 3501 6.3), with LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE and
CREATE-SPECIAL-USE (RFC 6154), CHILDREN (RFC 3348) and QUOTA read-only (RFC 9208)."""

from __future__ import annotations

from common.folders import SEPARATOR, FolderTree
from common.mailbox import Mailbox
from imapd import responses as r
from imapd.commands.base import expect, AUTHENTICATED, Result, Spec, store_errors
from imapd.patterns import compile_pattern
from imapd.parser import (Command, CreateArgs, ListArgs, MailboxArgs, QuotaArgs, RenameArgs,
                          StatusArgs)
from imapd.responses import ImapError
from imapd.session import Session


def cmd_create(session: Session, command: Command) -> Result:
    expect(command, CreateArgs)
    tree = session.require_tree()
    name = without_trailing_separator(command.args.mailbox)
    if name.upper() == "INBOX":
        raise ImapError(*r.MAILBOX_EXISTS)
    for use in command.args.use:
        if use not in tree.SPECIAL_USE_ATTRIBUTES:
            raise ImapError("Unsupported special-use attribute", "USEATTR")
    with store_errors():
        tree.create(name)
        for use in command.args.use:
            tree.set_special_use(name, use)
    return "CREATE completed"


def without_trailing_separator(name: str) -> str:
    """One trailing separator only announces inferiors (RFC 3501 6.3.3); `a..` stays invalid."""
    return name[:-1] if name.endswith(SEPARATOR) else name


def cmd_delete(session: Session, command: Command) -> Result:
    expect(command, MailboxArgs)
    with store_errors():
        session.require_tree().delete(command.args.mailbox)
    return "DELETE completed"


def cmd_rename(session: Session, command: Command) -> Result:
    expect(command, RenameArgs)
    with store_errors():
        session.require_tree().rename(command.args.old,
                                      without_trailing_separator(command.args.new))
    return "RENAME completed"


def cmd_subscribe(session: Session, command: Command) -> Result:
    expect(command, MailboxArgs)
    tree = session.require_tree()
    with store_errors():
        if not tree.exists(command.args.mailbox):
            raise ImapError(*r.NO_SUCH_MAILBOX)
        tree.subscribe(canonical(command.args.mailbox), True)
    return "SUBSCRIBE completed"


def cmd_unsubscribe(session: Session, command: Command) -> Result:
    expect(command, MailboxArgs)
    with store_errors():
        session.require_tree().subscribe(canonical(command.args.mailbox), False)
    return "UNSUBSCRIBE completed"


# -- LIST and LSUB -----------------------------------------------------------------------------


def cmd_list(session: Session, command: Command) -> Result:
    expect(command, ListArgs)
    with store_errors():
        return list_mailboxes(session, command.args)


def list_mailboxes(session: Session, args: ListArgs) -> Result:
    tree = session.require_tree()
    if args.patterns == ("",) and not args.extended:
        session.untagged('LIST (\\Noselect) "." ""')
        return "LIST completed"
    names = tree.names()
    subscribed = set(tree.subscriptions())
    only_subscribed = "SUBSCRIBED" in args.select_opts
    only_special = "SPECIAL-USE" in args.select_opts
    for name, noselect in listed(names, args.reference, args.patterns):
        attrs = attributes(tree, name, names, noselect, subscribed, args)
        if only_subscribed and name not in subscribed:
            continue
        if only_special and not tree.special_use(name):
            continue
        session.untagged(f"LIST ({' '.join(attrs)}) \".\" ".encode() + r.mailbox(name))
        if "STATUS" in args.return_opts and not noselect:
            session.send(status_line(session, name, args.status_items))
    return "LIST completed"


def cmd_lsub(session: Session, command: Command) -> Result:
    expect(command, ListArgs)
    tree = session.require_tree()
    with store_errors():
        existing = set(tree.names())
        subscribed = tree.subscriptions()
    for name, parent in listed(subscribed, command.args.reference, command.args.patterns):
        # A parent that is listed only for a subscribed child is not itself subscribed, and a
        # subscribed name that no longer exists cannot be selected: both \Noselect (6.3.9).
        attrs = ["\\Noselect"] if parent or name not in existing else []
        session.untagged(f"LSUB ({' '.join(attrs)}) \".\" ".encode() + r.mailbox(name))
    return "LSUB completed"


def listed(names: list[str], reference: str, patterns: tuple[str, ...]) -> list[tuple[str, bool]]:
    """(name, is-a-missing-parent) for each match, in name order; a `%` match that falls on a
    hierarchy level with no folder of its own is listed \\Noselect (RFC 3501 6.3.8)."""
    found: dict[str, bool] = {}
    for pattern in patterns:
        matches = compile_pattern(reference + pattern, SEPARATOR)
        for name in names:
            if matches(name):
                found.setdefault(name, False)
            for parent in parents(name):
                if parent not in found and parent not in names and matches(parent):
                    found[parent] = True
    return sorted(found.items(), key=lambda item: (item[0] != "INBOX", item[0]))


def parents(name: str) -> list[str]:
    levels = name.split(SEPARATOR)
    return [SEPARATOR.join(levels[:i]) for i in range(1, len(levels))]


def attributes(tree: FolderTree, name: str, names: list[str], noselect: bool,
               subscribed: set[str], args: ListArgs) -> list[str]:
    attrs = ["\\Noselect"] if noselect else []
    attrs.append("\\HasChildren" if tree.has_children(name, names) else "\\HasNoChildren")
    use = tree.special_use(name)
    if use and (not args.extended or "SPECIAL-USE" in args.return_opts
                or "SPECIAL-USE" in args.select_opts or not args.return_opts):
        attrs.append(use)
    if name in subscribed and ("SUBSCRIBED" in args.return_opts
                               or "SUBSCRIBED" in args.select_opts):
        attrs.append("\\Subscribed")
    return attrs


def canonical(name: str) -> str:
    return "INBOX" if name.upper() == "INBOX" else name


# -- STATUS --------------------------------------------------------------------------------------


def cmd_status(session: Session, command: Command) -> Result:
    expect(command, StatusArgs)
    tree = session.require_tree()
    name = canonical(command.args.mailbox)
    with store_errors():
        if not tree.exists(name):
            raise ImapError(*r.NO_SUCH_MAILBOX)
        session.send(status_line(session, name, command.args.items))
    return "STATUS completed"


def status_line(session: Session, name: str, items: tuple[str, ...]) -> bytes:
    selected = session.selected
    mine: set[int] = set()  # \Recent claimed by this session (moved out of new/)
    if selected is not None and selected.name == name:
        snap = selected.mailbox.sync(claim_recent=False)
        mine = selected.recent
    else:
        snap = Mailbox(session.require_tree().path(name)).sync(claim_recent=False)
    values = {
        "MESSAGES": len(snap.entries),
        "RECENT": sum(1 for e in snap.entries if e.subdir == "new" or e.uid in mine),
        "UIDNEXT": snap.uidnext,
        "UIDVALIDITY": snap.uidvalidity,
        "UNSEEN": sum(1 for e in snap.entries if "S" not in e.letters),
        "HIGHESTMODSEQ": snap.highestmodseq,
    }
    pairs = " ".join(f"{item} {values[item]}" for item in items if item in values)
    return b"* STATUS " + r.mailbox(name) + f" ({pairs})\r\n".encode()


# -- QUOTA (read-only, from Maildir++ maildirsize) -----------------------------------------


def cmd_getquotaroot(session: Session, command: Command) -> Result:
    expect(command, MailboxArgs)
    tree = session.require_tree()
    if not tree.exists(command.args.mailbox):
        raise ImapError(*r.NO_SUCH_MAILBOX)
    quota = tree.quota()
    session.untagged(b"QUOTAROOT " + r.mailbox(canonical(command.args.mailbox))
                     + (b' ""' if quota else b""))
    if quota:
        session.untagged(quota_line(quota))
    return "GETQUOTAROOT completed"


def cmd_getquota(session: Session, command: Command) -> Result:
    expect(command, QuotaArgs)
    quota = session.require_tree().quota()
    if command.args.root != "" or not quota:
        raise ImapError("No such quota root", "NONEXISTENT")
    session.untagged(quota_line(quota))
    return "GETQUOTA completed"


def quota_line(quota: dict[str, tuple[int, int]]) -> str:
    parts = []
    if "S" in quota:
        used, limit = quota["S"]
        parts.append(f"STORAGE {used // 1024} {limit // 1024}")
    if "C" in quota:
        used, limit = quota["C"]
        parts.append(f"MESSAGE {used} {limit}")
    return f'QUOTA "" ({" ".join(parts)})'


COMMANDS = {
    "CREATE": Spec(cmd_create, AUTHENTICATED),
    "DELETE": Spec(cmd_delete, AUTHENTICATED),
    "RENAME": Spec(cmd_rename, AUTHENTICATED),
    "SUBSCRIBE": Spec(cmd_subscribe, AUTHENTICATED),
    "UNSUBSCRIBE": Spec(cmd_unsubscribe, AUTHENTICATED),
    "LIST": Spec(cmd_list, AUTHENTICATED),
    "LSUB": Spec(cmd_lsub, AUTHENTICATED),
    "STATUS": Spec(cmd_status, AUTHENTICATED),
    "GETQUOTAROOT": Spec(cmd_getquotaroot, AUTHENTICATED),
    "GETQUOTA": Spec(cmd_getquota, AUTHENTICATED),
}
