"""Mailbox commands: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS
(RFC 3501 6.3), with LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE and
CREATE-SPECIAL-USE (RFC 6154), CHILDREN (RFC 3348) and QUOTA read-only (RFC 9208: GETQUOTA,
GETQUOTAROOT, SETQUOTA answered NO) from the Maildir++ `maildirsize`."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Container
from dataclasses import dataclass

from common.store import (
    SEEN,
    SEPARATOR,
    TRASHED,
    FolderTree,
    StoreError,
    canonical_name,
    is_inbox,
)
from imapd import responses as r
from imapd import rev2
from imapd.commands.base import enable_condstore, expect, store_errors
from imapd.parser import (
    Command,
    CreateArgs,
    ListArgs,
    MailboxArgs,
    QuotaArgs,
    RenameArgs,
    StatusArgs,
    parse_create,
    parse_getquota,
    parse_list,
    parse_lsub,
    parse_mailbox_only,
    parse_rename,
    parse_setquota,
    parse_status,
)
from imapd.patterns import compile_pattern
from imapd.responses import ImapError
from imapd.session import Session
from imapd.states import AUTHENTICATED, Result, Spec
from imapd.statusitems import extra_status


def cmd_create(session: Session, command: Command) -> Result:
    expect(command, CreateArgs)
    tree = session.require_tree()
    name = without_trailing_separator(command.args.mailbox)
    if is_inbox(name):
        raise ImapError(*r.MAILBOX_EXISTS)
    for use in command.args.use:
        if use not in tree.SPECIAL_USE_ATTRIBUTES:
            raise ImapError("Unsupported special-use attribute", "USEATTR")
    with store_errors():
        tree.create(name)
        for use in command.args.use:
            tree.set_special_use(name, use)
        # RFC 8474 4.1: the new mailbox's MAILBOXID.
        code = f"MAILBOXID ({tree.mailbox_id(name)})"
    rev2.report_created(session, command, command.args.mailbox, name)
    return ("CREATE completed", code)


def without_trailing_separator(name: str) -> str:
    """One trailing separator only announces inferiors (RFC 3501 6.3.3); `a..` stays invalid,
    and a name that is not modified UTF-7 stays one (the store refuses it)."""
    return type(name)(name[:-1]) if name.endswith(SEPARATOR) else name


def cmd_delete(session: Session, command: Command) -> Result:
    expect(command, MailboxArgs)
    with store_errors():
        session.require_tree().delete(command.args.mailbox)
    rev2.report_deleted(session, command, command.args.mailbox)
    return "DELETE completed"


def cmd_rename(session: Session, command: Command) -> Result:
    args = expect(command, RenameArgs)
    new = without_trailing_separator(args.new)
    with store_errors():
        session.require_tree().rename(args.old, new)
    rev2.report_renamed(session, command, args.old, new, args.new)
    return "RENAME completed"


def cmd_subscribe(session: Session, command: Command) -> Result:
    expect(command, MailboxArgs)
    tree = session.require_tree()
    with store_errors():
        if not tree.exists(command.args.mailbox):
            raise ImapError(*r.NO_SUCH_MAILBOX)
        tree.subscribe(command.args.mailbox, True)
    return "SUBSCRIBE completed"


def cmd_unsubscribe(session: Session, command: Command) -> Result:
    expect(command, MailboxArgs)
    with store_errors():
        session.require_tree().subscribe(command.args.mailbox, False)
    return "UNSUBSCRIBE completed"


# -- LIST and LSUB -----------------------------------------------------------------------------


def cmd_list(session: Session, command: Command) -> Result:
    """RFC 3501 6.3.8 with RFC 5258 (selection and return options, several patterns), RFC 5819
    (RETURN (STATUS ...)), RFC 6154 (SPECIAL-USE) and RFC 3348 (\\HasChildren, always sent)."""
    args = expect(command, ListArgs)
    rev2.check_status(session, args.status_items)
    if rev2.is_rev2(session) and not args.extended and args.patterns != ("",):
        # IMAP4rev2 has LIST-EXTENDED in its base: a mere level is \NonExistent (imapd/rev2.py).
        args = dataclasses.replace(args, extended=True)
    with store_errors():
        return list_mailboxes(session, args)


@dataclass
class Listing:
    """What one LIST looks at: the folders that exist, the subscriptions, the selection."""

    tree: FolderTree
    existing: set[str]
    subscribed: set[str]
    select_opts: tuple[str, ...]

    def meets(self, name: str) -> bool:
        """The selection criteria (RFC 5258 3.1): all the options given must hold."""
        if "SUBSCRIBED" in self.select_opts and name not in self.subscribed:
            return False
        return "SPECIAL-USE" not in self.select_opts or (
            name in self.existing and bool(self.tree.special_use(name))
        )

    @property
    def criteria(self) -> tuple[str, ...]:
        return tuple(o for o in self.select_opts if o in ("SUBSCRIBED", "SPECIAL-USE"))


def list_mailboxes(session: Session, args: ListArgs) -> Result:
    tree = session.require_tree()
    patterns = tuple(p for p in args.patterns if p)  # RFC 5258 3: "" patterns match nothing
    if args.patterns == ("",) and not args.extended:
        # `LIST "" ""`: the hierarchy delimiter and the root (RFC 3501 6.3.8).
        session.untagged('LIST (\\Noselect) "." ""')
        return "LIST completed"
    names = tree.names()
    view = Listing(tree, set(names), set(tree.subscriptions()), args.select_opts)
    candidates = set(names)
    if "SUBSCRIBED" in args.select_opts:
        candidates |= view.subscribed  # a subscribed name that is gone is \\NonExistent
    if "STATUS" in args.return_opts and "HIGHESTMODSEQ" in args.status_items:
        enable_condstore(session)
    everything = sorted(
        candidates | {p for n in candidates for p in parents(n)}, key=lambda n: (n != "INBOX", n)
    )
    matched = [compile_pattern(args.reference + p, SEPARATOR) for p in patterns]
    for name in everything:
        if not any(m(name) for m in matched):
            continue
        childinfo = child_info(view, name, everything, matched, args)
        if view.criteria and not view.meets(name) and not childinfo:
            continue
        attrs = attributes(view, name, names, args)
        line = f'LIST ({" ".join(attrs)}) "." '.encode() + session.mailbox_name(name)
        if childinfo:
            line += b' ("CHILDINFO" (' + " ".join(f'"{c}"' for c in childinfo).encode() + b"))"
        session.untagged(line)
        if "STATUS" in args.return_opts and name in view.existing:
            with contextlib.suppress(StoreError, OSError):
                session.send(status_line(session, name, args.status_items))
    return "LIST completed"


def child_info(
    view: Listing, name: str, everything: list[str], matched: list, args: ListArgs
) -> tuple[str, ...]:
    """RFC 5258 3.5 with RECURSIVEMATCH: the criteria met by a descendant of `name` that the
    patterns do not list themselves, so the client learns why a parent is there."""
    if "RECURSIVEMATCH" not in args.select_opts:
        return ()
    prefix = name + SEPARATOR
    for child in everything:
        if child.startswith(prefix) and view.meets(child) and not any(m(child) for m in matched):
            return view.criteria
    return ()


def attributes(view: Listing, name: str, names: list[str], args: ListArgs) -> list[str]:
    """Name attributes: a name that is no folder is \\NonExistent to an RFC 5258 client and
    \\Noselect to others (RFC 3501 6.3.8); children (RFC 3348), special use (RFC 6154, always)
    and \\Subscribed when asked for (RFC 5258 3.1, 3.4)."""
    attrs = []
    exists = name in view.existing
    if not exists:
        attrs.append("\\NonExistent" if args.extended else "\\Noselect")
    if view.tree.has_children(name, names):
        attrs.append("\\HasChildren")
    elif exists:
        attrs.append("\\HasNoChildren")
    use = view.tree.special_use(name) if exists else None
    if use:
        attrs.append(use)
    if name in view.subscribed and (
        "SUBSCRIBED" in args.return_opts or "SUBSCRIBED" in args.select_opts
    ):
        attrs.append("\\Subscribed")
    return attrs


def cmd_lsub(session: Session, command: Command) -> Result:
    expect(command, ListArgs)
    tree = session.require_tree()
    with store_errors():
        subscribed = tree.subscriptions()
    for name, parent in listed(subscribed, command.args.reference, command.args.patterns):
        # \Noselect in LSUB says "not subscribed itself, listed for a subscribed child"
        # (6.3.9). A subscribed name whose mailbox is gone is still subscribed and listed as
        # such (6.3.6 keeps it; Dovecot lists it so too): LIST tells whether it exists.
        attrs = ["\\Noselect"] if parent else []
        session.untagged(f'LSUB ({" ".join(attrs)}) "." '.encode() + session.mailbox_name(name))
    return "LSUB completed"


def listed(names: list[str], reference: str, patterns: tuple[str, ...]) -> list[tuple[str, bool]]:
    """(name, is-a-missing-parent) for each match, in name order; a `%` match that stops at a
    hierarchy level of a name, short of the name itself, is listed \\Noselect (RFC 3501
    6.3.9); where the name matches too (`*`) it stands for itself."""
    found: dict[str, bool] = {}
    for pattern in patterns:
        matches = compile_pattern(reference + pattern, SEPARATOR)
        for name in names:
            if matches(name):
                found.setdefault(name, False)
                continue
            for parent in parents(name):
                if parent not in found and parent not in names and matches(parent):
                    found[parent] = True
    return sorted(found.items(), key=lambda item: (item[0] != "INBOX", item[0]))


def parents(name: str) -> list[str]:
    levels = name.split(SEPARATOR)
    return [SEPARATOR.join(levels[:i]) for i in range(1, len(levels))]


# -- STATUS --------------------------------------------------------------------------------------


def cmd_status(session: Session, command: Command) -> Result:
    """RFC 3501 6.3.10, with HIGHESTMODSEQ (RFC 7162 3.1.7, a CONDSTORE enabling command) and
    DELETED and DELETED-STORAGE (RFC 9208 4.1.4, for QUOTA=RES-MESSAGE and RES-STORAGE)."""
    expect(command, StatusArgs)
    rev2.check_status(session, command.args.items)
    name = canonical_name(command.args.mailbox)
    if "HIGHESTMODSEQ" in command.args.items:
        enable_condstore(session)
    with store_errors():
        session.send(status_line(session, name, command.args.items))
    return "STATUS completed"


def status_line(session: Session, name: str, items: tuple[str, ...]) -> bytes:
    """The STATUS response for folder `name` (MailboxNotFound when there is none)."""
    selected = session.selected
    mine: Container[int] = frozenset()  # \Recent claimed by this session
    if selected is not None and selected.name == name:
        mailbox = selected.mailbox
        mine = selected.recent
        snap = mailbox.sync(claim_recent=False)
    else:
        mailbox, snap = session.require_tree().open(name)
    deleted = [e for e in snap.entries if TRASHED in e.letters]
    values: dict[str, object] = {
        "MESSAGES": len(snap.entries),
        "RECENT": sum(1 for e in snap.entries if snap.is_recent(e) or e.uid in mine),
        "UIDNEXT": snap.uidnext,
        "UIDVALIDITY": snap.uidvalidity,
        "UNSEEN": sum(1 for e in snap.entries if SEEN not in e.letters),
        "HIGHESTMODSEQ": snap.highestmodseq,
        "DELETED": len(deleted),
    }
    if "DELETED-STORAGE" in items:
        # What an EXPUNGE would free, in the 1024-octet units of the STORAGE resource (RFC 9208).
        values["DELETED-STORAGE"] = mailbox.reclaimable_size(deleted) // 1024
    values.update(extra_status(session, mailbox, snap, items))
    pairs = " ".join(f"{item} {values[item]}" for item in items if item in values)
    return b"* STATUS " + session.mailbox_name(name) + f" ({pairs})\r\n".encode()


# -- QUOTA (read-only, from Maildir++ maildirsize) -----------------------------------------


def cmd_getquotaroot(session: Session, command: Command) -> Result:
    """RFC 9208 4.3: one quota root, "", for the whole account, when `maildirsize` has limits."""
    expect(command, MailboxArgs)
    tree = session.require_tree()
    name = canonical_name(command.args.mailbox)
    with store_errors():
        if not tree.exists(name):
            raise ImapError(*r.NO_SUCH_MAILBOX)
        quota = tree.quota()
    session.untagged(b"QUOTAROOT " + session.mailbox_name(name) + (b' ""' if quota else b""))
    if quota:
        session.untagged(quota_line(quota))
    return "GETQUOTAROOT completed"


def cmd_getquota(session: Session, command: Command) -> Result:
    """RFC 9208 4.2."""
    expect(command, QuotaArgs)
    with store_errors():
        quota = session.require_tree().quota()
    if command.args.root != "" or not quota:
        raise ImapError("No such quota root", "NONEXISTENT")
    session.untagged(quota_line(quota))
    return "GETQUOTA completed"


def cmd_setquota(session: Session, command: Command) -> Result:
    """RFC 9208 4.1: quotas are read-only here (no QUOTASET); the mail system sets them."""
    expect(command, QuotaArgs)
    raise ImapError("Quotas are read-only", "NOPERM")


def quota_line(quota: dict[str, tuple[int, int]]) -> str:
    """STORAGE in 1024-octet units (RFC 9208): usage rounded up, the limit down."""
    parts = []
    if "S" in quota:
        used, limit = quota["S"]
        parts.append(f"STORAGE {math.ceil(used / 1024)} {limit // 1024}")
    if "C" in quota:
        used, limit = quota["C"]
        parts.append(f"MESSAGE {used} {limit}")
    return f'QUOTA "" ({" ".join(parts)})'


COMMANDS = {
    "CREATE": Spec(parse_create, cmd_create, AUTHENTICATED),
    "DELETE": Spec(parse_mailbox_only, cmd_delete, AUTHENTICATED),
    "RENAME": Spec(parse_rename, cmd_rename, AUTHENTICATED),
    "SUBSCRIBE": Spec(parse_mailbox_only, cmd_subscribe, AUTHENTICATED),
    "UNSUBSCRIBE": Spec(parse_mailbox_only, cmd_unsubscribe, AUTHENTICATED),
    "LIST": Spec(parse_list, cmd_list, AUTHENTICATED),
    "LSUB": Spec(parse_lsub, cmd_lsub, AUTHENTICATED),
    "STATUS": Spec(parse_status, cmd_status, AUTHENTICATED),
    "GETQUOTAROOT": Spec(parse_mailbox_only, cmd_getquotaroot, AUTHENTICATED),
    "GETQUOTA": Spec(parse_getquota, cmd_getquota, AUTHENTICATED),
    "SETQUOTA": Spec(parse_setquota, cmd_setquota, AUTHENTICATED),
}
