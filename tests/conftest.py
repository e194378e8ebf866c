"""Fixtures every component folder uses: a DaemonFactory that stops what it started, a temporary
mail site, and pop3d (MSMP's tests drive one too). The helpers behind them live in
tests/support/; component fixtures live in each folder's conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.daemons import MODEL_ENV, DaemonFactory
from support.pop3 import POP3_USERS, Pop3Server
from support.site import MailSite


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--process-model",
        choices=("fork", "pool"),
        default=None,
        help="run every session daemon the tests start in this process model "
        "(default: the daemons' own default, fork)",
    )


def pytest_configure(config: pytest.Config) -> None:
    model = config.getoption("--process-model")
    if model:
        os.environ[MODEL_ENV] = model


def pytest_report_header(config: pytest.Config) -> str:
    return f"process model: {os.environ.get(MODEL_ENV) or 'fork (default)'}"


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[DaemonFactory]:
    factory = DaemonFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


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
