"""Fixtures every component folder uses: a DaemonFactory that stops what it started, a temporary
mail site, and pop3d (MSMP's tests drive one too). The helpers behind them live in
tests/support/; component fixtures live in each folder's conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from support.daemons import DaemonFactory
from support.pop3 import POP3_USERS, Pop3Server
from support.site import MailSite

# The property-based fuzz tests (test_*_fuzz.py): bounded and reproducible by default, so the
# whole set runs in seconds in CI and never flakes; HYPOTHESIS_PROFILE=deep explores far more,
# at random, for a run by hand (with --timeout=0: it takes minutes).
settings.register_profile(
    "maildaemons",
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "deep",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "maildaemons"))


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
