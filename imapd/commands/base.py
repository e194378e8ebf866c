"""What every command module shares: the store's errors as IMAP replies, the arguments' type
check, and the CONDSTORE/QRESYNC steps several commands take."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TypeVar

from common.store import (
    LockBusy,
    MailboxExists,
    MailboxNotFound,
    MailboxReadOnly,
    MailboxRefused,
    MessageGone,
    StoreBusy,
    StoreError,
    StoreFull,
    no_space,
)
from imapd import responses as r
from imapd.parser import Command
from imapd.responses import ImapError
from imapd.selected import Selected
from imapd.session import Session

T = TypeVar("T")


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Map the store's typed errors to IMAP NO responses; the client never sees a path."""
    try:
        yield
    except MailboxExists:
        raise ImapError(*r.MAILBOX_EXISTS) from None
    except MailboxNotFound:
        raise ImapError(*r.NO_SUCH_MAILBOX) from None
    except MailboxRefused as exc:
        raise ImapError(str(exc), "CANNOT") from None
    except MailboxReadOnly:  # before LockBusy: a lock that cannot be made is both
        raise ImapError(*r.UNWRITABLE) from None
    except StoreFull:  # as MailboxReadOnly
        raise ImapError(*r.NO_SPACE) from None
    except (StoreBusy, LockBusy):
        raise ImapError(*r.MAILBOX_BUSY) from None
    except MessageGone:
        # Expunged by another session since this one last heard (RFC 5530 EXPUNGEISSUED):
        # the client learns which at its next NOOP.
        raise ImapError(*r.EXPUNGE_ISSUED) from None
    except (StoreError, OSError) as exc:
        # OSError too: a disk that is full or a file that cannot be read is a clean NO, not
        # the end of the session (the text with its path goes to the log only).
        logging.getLogger("imapd").error("store error: %s", exc)
        if no_space(exc):
            raise ImapError(*r.NO_SPACE) from None
        raise ImapError(*r.STORE_FAILED) from None


def expect(command: Command, kind: type[T]) -> T:
    """The command's arguments as the handler's dataclass (the table guarantees the match)."""
    if not isinstance(command.args, kind):
        raise TypeError(f"{command.name}: unexpected arguments {type(command.args).__name__}")
    return command.args


def enable_condstore(session: Session) -> None:
    """A CONDSTORE enabling command ran (RFC 7162 3.1): from now on every FETCH response carries
    MODSEQ. The first one with a mailbox selected also reports that mailbox's HIGHESTMODSEQ."""
    first = "CONDSTORE" not in session.enabled
    session.enabled.add("CONDSTORE")
    view = session.selected
    if view is None or view.condstore:
        return
    view.condstore = True
    highest = view.safe_highestmodseq()
    if first and highest is not None:
        session.untagged(f"OK [HIGHESTMODSEQ {highest}] Highest")


def highestmodseq_code(session: Session, view: Selected) -> str:
    """`HIGHESTMODSEQ n` for a tagged OK after an expunge with QRESYNC enabled, read after the
    changes up to it have been reported; "" otherwise."""
    if not view.qresync:
        return ""
    try:
        lines = view.refresh(allow_expunge=True, force=True)
    except (StoreError, LockBusy, OSError):
        return ""  # the expunge is done; the new HIGHESTMODSEQ comes with a later command
    for line in lines:
        session.send(line)
    highest = view.safe_highestmodseq()
    return "" if highest is None else f"HIGHESTMODSEQ {highest}"
