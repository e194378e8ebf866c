"""Process titles, as sshd and postgres show them: `pop3d: master (3 children)`,
`pop3d: alice 127.0.0.1 RETR`. `ps` and /proc/PID/cmdline show what each process is doing."""

from __future__ import annotations

from setproctitle import setproctitle


def set_title(program: str, text: str) -> None:
    setproctitle(f"{program}: {text}")
