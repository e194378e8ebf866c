"""Shell command lines the daemons run for a site (the RETR transformer of seed 003, run as
`/bin/sh -c <command>`): whether one names a program that can run, checked before it is stored,
so a typo is refused at once instead of failing every later use."""

from __future__ import annotations

import os
import shlex
import shutil

# Words that start a shell command line without naming a program on the PATH.
SHELL_WORDS = frozenset(
    {":", ".", "[", "!", "{", "(", "case", "command", "echo", "eval", "exec", "false", "for"}
    | {"if", "printf", "test", "true", "until", "while"}
)


def command_problem(command: str) -> str | None:
    """Why `/bin/sh -c <command>` could not run its program, or None. Only the first program is
    looked up (on this process's PATH, or as the path given); a line that starts with a shell
    word is taken as it is."""
    try:
        words = shlex.split(command)
    except ValueError:
        return "not a shell command line: unbalanced quotes"
    while words and "=" in words[0] and words[0].split("=", 1)[0].isidentifier():
        words.pop(0)  # VAR=value before the program
    if not words:
        return "no program named"
    program = words[0]
    if program in SHELL_WORDS or program.startswith(("(", "{")):
        return None
    if "/" in program:
        found = os.path.isfile(program) and os.access(program, os.X_OK)
    else:
        found = shutil.which(program) is not None
    return None if found else f"no program {program!r} on the server"
