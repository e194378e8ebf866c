"""Fixtures of the imapd tests: a server of a test's own, and the seeded server the real IMAP
clients (mbsync, offlineimap) sync with. A module-wide server is `support.imap.shared_imapd`."""

from __future__ import annotations

import pytest

from support.imap import start_imapd
from support.sync import PASSWORD, USER, seed_server


@pytest.fixture
def imapd(daemons, site):
    """A server of the test's own (for the tests that restart it): start(extra, users)."""

    def start(extra: str = "", users: dict[str, str] | None = None):
        return start_imapd(daemons, site, extra, users)

    return start


@pytest.fixture
def server(daemons, site):
    """imapd on a Maildir seeded by `support.sync.seed_server` (what `seeded()` lists), for the
    real-client tests: (daemon, the user's Maildir)."""
    root = site.mail / USER
    seed_server(root)
    daemon = daemons.start(
        "imapd",
        "-l",
        "127.0.0.1",
        *site.common_args(),
        "-u",
        f"{USER}:{PASSWORD}",
        config=site.config(),
    )
    return daemon, root
