"""OBJECTID (RFC 8474): EMAILID and THREADID of a message, the MAILBOXID line of SELECT.

EMAILID is derived from the message's content (a SHA-256 of its octets, kept in the folder's
disposable cache): the same in every folder it is copied or moved to, however the store places
it (a hard link, a copy, a restore from backup), as RFC 8474 5.1 asks; identical messages share
one, as 5.1 allows. THREADID is derived from the first message ID of its References (or of
In-Reply-To, or its own Message-ID when it has neither: imapd/sortkeys.py thread_root), so a
thread keeps one id across folders without any stored state; a message with none of them is a
thread of its own. MAILBOXID lives with the folder (common/store/objectid.py).
"""

from __future__ import annotations

import hashlib

from common.store import Entry, StoreError
from imapd.selected import Selected
from imapd.sorting import thread_root

CACHE_FIELD = "emailid"
ID_HEX = 24  # 96 bits of the digest


def email_id(view: Selected, entry: Entry) -> str:
    """`M` and the start of the SHA-256 of the stored message (StoreError when it is gone)."""
    cached = view.mailbox.cached(entry, CACHE_FIELD)
    if cached is not None:
        return cached.decode("ascii", "replace")
    digest = hashlib.sha256(view.mailbox.read(entry)).hexdigest()
    value = "M" + digest[:ID_HEX]
    view.mailbox.remember(entry, CACHE_FIELD, value.encode())
    return value


def thread_id(view: Selected, entry: Entry) -> str:
    root = thread_root(view, entry)
    if not root:
        return "T" + email_id(view, entry)[1:]
    return "T" + hashlib.sha256(root.encode("utf-8", "surrogatepass")).hexdigest()[:ID_HEX]


def mailbox_id_line(view: Selected) -> bytes | None:
    """`* OK [MAILBOXID (id)]` for SELECT and EXAMINE (RFC 8474 4.2); None when the folder's
    id cannot be read or made just now."""
    try:
        return b"* OK [MAILBOXID (%s)] Ok\r\n" % view.mailbox.mailbox_id().encode()
    except StoreError:
        return None
