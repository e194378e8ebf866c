"""The RETR transformer of seed 003: pipe a message through `/bin/sh -c CMD` (stdin to stdout).

A transformer that cannot start, exits non-zero, is killed or exceeds its time limit raises
TransformerError; the caller answers `-ERR [SYS/TEMP]` and the stored message stays untouched.
`cat`, the seed's default transformer, changes nothing: it and an empty value mean none, and no
process is started for them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

from common import turns

MAX_OUTPUT = 256 * 1024 * 1024


NO_TRANSFORMER = ("", "cat")


class TransformerError(Exception):
    pass


def in_force(command: str) -> str | None:
    """The command RETR pipes messages through, or None when the value means no transformer."""
    return None if command.strip() in NO_TRANSFORMER else command


def transform(command: str, message: bytes, timeout: float) -> bytes:
    """The transformer's output for `message`; runs in its own process group so a timeout kills
    everything it started."""
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        raise TransformerError(f"cannot start: {exc.strerror}") from None
    try:
        with turns.aside():  # a pool worker's other sessions run meanwhile
            output, _ = proc.communicate(message, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise TransformerError(f"timed out after {timeout:g}s") from None
    except OSError as exc:
        kill_group(proc)
        raise TransformerError(str(exc)) from None
    if proc.returncode != 0:
        raise TransformerError(f"exit status {proc.returncode}")
    if len(output) > MAX_OUTPUT:
        raise TransformerError("output too large")
    return output


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
