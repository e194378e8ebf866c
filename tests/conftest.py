"""Fixtures every component folder uses: a DaemonFactory that stops what it started, a temporary
mail site, a test CA with a server certificate, and pop3d (MSMP's tests drive one too). The
helpers behind them live in tests/support/; component fixtures live in each folder's
conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.daemons import DaemonFactory
from support.figures import NOTED
from support.pop3 import POP3_USERS, Pop3Server
from support.site import MailSite
from support.tls import Pki, make_pki

# A shell that ran `scripts/quickstart` may export MAILDAEMONS_CONF: every command would read the
# quick start's config where a test names none, so the tests never see it.
os.environ.pop("MAILDAEMONS_CONF", None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures tests noted for reading (support/figures.py), after the progress dots."""
    for title, texts in sorted(NOTED.items()):
        terminalreporter.write_sep("-", title)
        for text in texts:
            terminalreporter.write_line(text)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[DaemonFactory]:
    factory = DaemonFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA and a server certificate (chain in the file) for localhost and 127.0.0.x."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def site(tmp_path: Path) -> MailSite:
    return MailSite.create(tmp_path)


@pytest.fixture
def pop3d(daemons: DaemonFactory, site: MailSite):
    """Factory: start(extra_config, *flags, users=POP3_USERS) -> Pop3Server on 127.0.0.1."""

    def start(
        extra: str = "", *args: str, users: dict[str, str] | None = None, wait: bool = True
    ) -> Pop3Server:
        flags: list[str] = []
        for name, password in (POP3_USERS if users is None else users).items():
            flags += ["-u", f"{name}:{password}"]
        daemon = daemons.start(
            "pop3d", "-l", "127.0.0.1", *flags, *args, config=site.config(extra), wait=wait
        )
        return Pop3Server(daemon, site)

    return start
