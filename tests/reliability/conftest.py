"""Fixtures of the reliability suite: one rig (imapd and pop3d on one mail site, support/
reliability.py) for a whole module, and a fresh account of it for each test. Tests that kill
or restart daemons start a rig of their own with `own_rig`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.daemons import DaemonFactory
from support.reliability import Account, Rig
from support.site import MailSite


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("rig")
    factory = DaemonFactory(root)
    try:
        built = Rig(factory, MailSite.create(root))
        yield built
        built.assert_healthy()
    finally:
        factory.stop_all()


@pytest.fixture
def account(rig: Rig) -> Account:
    return rig.account()


@pytest.fixture
def own_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """start(extra config, msmpd=..., stats=...) -> a Rig of the test's own."""
    factory = DaemonFactory(tmp_path)

    def start(extra: str = "", **kwargs: object) -> Rig:
        return Rig(factory, MailSite.create(tmp_path), extra, **kwargs)  # type: ignore[arg-type]

    try:
        yield start
    finally:
        factory.stop_all()
