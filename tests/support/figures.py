"""Figures that tests measure for reading, never assert (tests do not assert on speed): noted
here during the run and printed in one section of pytest's closing summary
(`pytest_terminal_summary` in tests/conftest.py), not among the progress dots."""

from __future__ import annotations

NOTED: dict[str, list[str]] = {}


def note(title: str, text: str) -> None:
    """Keep `text` (one or more lines) for the summary section `title`."""
    NOTED.setdefault(title, []).append(text)
