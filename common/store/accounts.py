"""A user's maildir as a whole: created when the user is added, moved aside when it is removed.

Removing a user never destroys mail (DESIGN.md "Storage"): the maildir is renamed to
`<base>/.deleted/<user>.<YYYYmmddTHHMMSS>` (`.deleted` can never be a user, since user names never
start with a dot, and it is not a Maildir++ folder, since those live inside a user's maildir).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from common.store.atomic import fsync_dir
from common.store.errors import StoreError
from common.store.maildir import ensure_maildir, user_maildir

DELETED_DIR = ".deleted"


def create_user_maildir(base: Path, user: str) -> None:
    """Make `<base>/<user>` a Maildir (`cur/ new/ tmp/`); one that exists is left as it is."""
    path = user_maildir(base, user)
    try:
        ensure_maildir(path)
    except OSError as exc:
        raise StoreError(str(exc)) from None


def retire_user_maildir(base: Path, user: str) -> Path | None:
    """Rename `<base>/<user>` into `<base>/.deleted/` under a name no other retirement used;
    returns where it went, or None when the user had no maildir."""
    source = user_maildir(base, user)
    if not os.path.lexists(source):
        return None
    attic = base / DELETED_DIR
    stamp = time.strftime("%Y%m%dT%H%M%S")
    try:
        attic.mkdir(mode=0o700, exist_ok=True)
        target = attic / f"{user}.{stamp}"
        serial = 1
        while os.path.lexists(target):
            serial += 1
            target = attic / f"{user}.{stamp}.{serial}"
        os.rename(source, target)
    except OSError as exc:
        raise StoreError(f"cannot move {source} aside: {exc.strerror}") from None
    fsync_dir(base)
    fsync_dir(attic)
    return target
