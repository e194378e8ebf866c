"""Keyword names of one folder: `dovecot-keywords`, the file Dovecot keeps, `<index> <name>` a line.

A message's keywords are the lower-case letters of its file name (common/store/flags.py): letter
`a` is index 0, up to `z`, so a folder holds at most 26 keywords. Names match case-insensitively,
as RFC 3501 flags do. The file is changed under the link lock and replaced atomically, so both
servers can share a folder.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from common.store.atomic import atomic_write, locked
from common.store.errors import TooManyKeywords
from common.store.flags import KEYWORD_LETTERS
from common.store.maildir import read_file

KEYWORDS_FILE = "dovecot-keywords"


class Keywords:
    """Keyword name <-> file-name letter for one folder (`dovecot-keywords`: `<index> <name>`)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / KEYWORDS_FILE
        self._file = str(self.path)  # stat()ed every command: a str spares pathlib
        self._stamp: tuple[int, int] | None = None
        self.names: list[str | None] = []

    def refresh(self) -> None:
        try:
            info = os.stat(self._file)
        except FileNotFoundError:
            self.names, self._stamp = [], None
            return
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._stamp:
            return
        names: list[str | None] = [None] * len(KEYWORD_LETTERS)
        with contextlib.suppress(OSError):
            text = read_file(self.path).decode("utf-8", "replace")  # never through a link
            for line in text.splitlines():
                index, _, name = line.partition(" ")
                if index.isdigit() and int(index) < len(names) and name:
                    names[int(index)] = name
        while names and names[-1] is None:
            names.pop()
        self.names, self._stamp = names, stamp

    def decode(self, letters: str) -> list[str]:
        self.refresh()
        result = []
        for letter in letters:
            index = KEYWORD_LETTERS.find(letter)
            name = self.names[index] if 0 <= index < len(self.names) else None
            if name:
                result.append(name)
        return result

    def letters_for(self, keywords: Iterable[str], create: bool) -> str:
        """Letters for keyword names (case-insensitive, as RFC 3501 flags are)."""
        wanted = list(keywords)
        if not wanted:
            return ""
        self.refresh()
        letters = []
        missing = []
        for name in wanted:
            index = self._index(name)
            if index is None:
                missing.append(name)
            else:
                letters.append(KEYWORD_LETTERS[index])
        if missing and create:
            letters.extend(self._add(missing))
        return "".join(letters)

    def all(self) -> list[str]:
        self.refresh()
        return [n for n in self.names if n]

    def _index(self, name: str) -> int | None:
        lowered = name.lower()
        for index, known in enumerate(self.names):
            if known is not None and known.lower() == lowered:
                return index
        return None

    def _add(self, names: list[str]) -> list[str]:
        with locked(self.path):
            self._stamp = None
            self.refresh()
            letters = []
            for name in names:
                index = self._index(name)
                if index is None:
                    if len(self.names) >= len(KEYWORD_LETTERS):
                        raise TooManyKeywords(name)
                    self.names.append(name)
                    index = len(self.names) - 1
                letters.append(KEYWORD_LETTERS[index])
            text = "".join(f"{i} {n}\n" for i, n in enumerate(self.names) if n)
            atomic_write(self.path, text.encode(), mode=0o600)
            self._stamp = None
        return letters
