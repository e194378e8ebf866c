"""The STATUS items of the extensions (RFC 3501 6.3.10 is in imapd/commands/mailboxes.py):
APPENDLIMIT (RFC 7889 3), the limit an APPEND to the mailbox must keep to; SIZE (RFC 8438), the
octets of all its messages as RFC822.SIZE counts them; MAILBOXID (RFC 8474 4.3). They are
answered through STATUS and LIST-STATUS alike."""

from __future__ import annotations

from common.store import Mailbox, Snapshot
from imapd.session import Session


def extra_status(
    session: Session, mailbox: Mailbox, snap: Snapshot, items: tuple[str, ...]
) -> dict[str, object]:
    """The values of the extension items among `items`."""
    values: dict[str, object] = {}
    if "APPENDLIMIT" in items:
        values["APPENDLIMIT"] = session.settings.get_int("max_literal")
    if "SIZE" in items:
        # A message expunged since the snapshot (None) no longer takes space.
        values["SIZE"] = sum(filter(None, mailbox.sizes(snap.entries)))
    if "MAILBOXID" in items:
        values["MAILBOXID"] = f"({mailbox.mailbox_id()})"
    return values
