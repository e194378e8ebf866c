"""common/shell.py: whether a site's shell command line (the RETR transformer) names a program
that can run, as MSMP SET checks it before storing it."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.shell import command_problem


@pytest.mark.parametrize(
    "command",
    [
        "cat",
        "tr a-z A-Z",
        "sed -e 's/a b/c/' | cat",
        "LC_ALL=C tr a-z A-Z",
        "exec tr a-z A-Z",
        "(cat)",
        "{ cat; }",
        "/bin/cat -u",
    ],
)
def test_commands_that_run(command: str) -> None:
    assert command_problem(command) is None


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("none", "no program 'none' on the server"),
        ("spamassassn -e", "no program 'spamassassn' on the server"),
        ("/nonexistent/filter", "no program '/nonexistent/filter' on the server"),
        ("/etc/passwd", "no program '/etc/passwd' on the server"),  # a file, not executable
        ("sed 's/a/b/", "not a shell command line: unbalanced quotes"),
        ("LANG=C", "no program named"),
        ("", "no program named"),
    ],
)
def test_commands_that_would_fail(command: str, problem: str) -> None:
    assert command_problem(command) == problem


def test_an_executable_path(tmp_path: Path) -> None:
    script = tmp_path / "filter"
    script.write_text("#!/bin/sh\nexec cat\n")
    assert command_problem(str(script)) == f"no program {str(script)!r} on the server"
    script.chmod(0o755)
    assert command_problem(f"{script} --quiet") is None
