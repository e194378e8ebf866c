"""Where things are, independent of the folder a test module sits in."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
CORPUS = TESTS / "corpus"  # the message corpus (*.eml, LF line ends as in a Maildir)
