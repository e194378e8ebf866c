"""A temporary mail site (mail base, state and run directories, users and admins files, the
config that names them) and delivery into a Maildir the way an MTA does it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def deliver(maildir: Path, data: bytes, name: str | None = None, subdir: str = "new") -> Path:
    """Drop a message into a Maildir the way an MTA does (tmp/ then rename)."""
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    deliver.counter += 1  # type: ignore[attr-defined]
    name = name or f"{1700000000 + deliver.counter}.M{deliver.counter}P{os.getpid()}.testhost"  # type: ignore[attr-defined]
    tmp = maildir / "tmp" / name
    tmp.write_bytes(data)
    target = maildir / subdir / name
    os.rename(tmp, target)
    return target


deliver.counter = 0  # type: ignore[attr-defined]


@dataclass
class MailSite:
    """A temporary mail base, state directory and config for one test."""

    root: Path
    mail: Path
    state: Path
    run: Path

    @classmethod
    def create(cls, root: Path) -> MailSite:
        """The directories and the empty users and admins files under `root` (which exists)."""
        site = cls(root, root / "mail", root / "state", root / "run")
        for path in (site.mail, site.state, site.run):
            path.mkdir()
        (root / "users").write_text("")
        (root / "admins").write_text("")
        return site

    def maildir(self, user: str) -> Path:
        path = self.mail / user
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        return path

    def common_args(self) -> list[str]:
        return [
            "-d",
            str(self.mail),
            "--state-dir",
            str(self.state),
            "--stats-socket",
            str(self.run / "mailstatd.sock"),
        ]

    def config(self, extra: str = "") -> str:
        return (
            f"[common]\nmail_base = {self.mail}\nstate_dir = {self.state}\n"
            f"run_dir = {self.run}\nusers_file = {self.root / 'users'}\n"
            f"admins_file = {self.root / 'admins'}\nauth_failure_delay = 0\n"
            f"shutdown_grace = 5\n{extra}"
        )
