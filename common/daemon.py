"""Becoming a daemon: the start-up contract of DESIGN.md on python-daemon and lockfile.

Everything that can fail happens first, while stderr is still the terminal: config, users file,
TLS key, stale pidfile, bind. Then the launcher forks; its child drops root's privileges (when
started as root with `user` set), opens the `DaemonContext` (double fork, setsid, umask 077, stdio
to /dev/null, pidfile through `TimeoutPIDLockFile`), sets up logging and writes "ok" on the
readiness pipe. The launcher exits 0 only after that "ok"; otherwise it prints
the one error line it got and exits 1, leaving no pidfile and no process behind.
"""

from __future__ import annotations

import codecs
import contextlib
import grp
import logging
import os
import pwd
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import daemon
import daemon.pidfile

from common import logs
from common.config import ConfigError, Settings, one_line

READY = b"ok\n"
PIDFILE_TIMEOUT = 5


class StartupError(Exception):
    """The daemon cannot start; the message is the one line printed on stderr."""


def clear_stale_pidfile(pidfile: Path) -> None:
    """Remove a pidfile whose process is gone; refuse to start when it is alive."""
    try:
        text = pidfile.read_text().strip()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StartupError(f"cannot read pidfile {pidfile}: {exc.strerror}") from None
    try:
        pid = int(text)
    except ValueError:
        pid = 0
    if pid > 0 and process_alive(pid):
        raise StartupError(f"already running as pid {pid} (pidfile {pidfile})")
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_ids(settings: Settings) -> tuple[int | None, int | None]:
    """uid/gid to drop to after binding, when running as root with `user` configured."""
    user = settings.get("user")
    if os.geteuid() != 0 or not user:
        return None, None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise StartupError(f"unknown user {user!r} in setting 'user'") from None
    group = settings.get("group")
    if group:
        try:
            return entry.pw_uid, grp.getgrnam(group).gr_gid
        except KeyError:
            raise StartupError(f"unknown group {group!r} in setting 'group'") from None
    return entry.pw_uid, entry.pw_gid


def prepare_run_dir(directory: Path, uid: int | None, gid: int | None) -> None:
    """The pidfile is written after the drop to `user`: give its directory to that user."""
    if uid is None or gid is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        os.chown(directory, uid, gid)
    except OSError as exc:
        raise StartupError(f"cannot prepare {directory}: {exc.strerror}") from None


# Codecs the code names (`open(..., encoding=...)`, `bytes.decode(...)`) are imported at their
# first use: imported before the drop, while the daemon can still read the whole Python
# installation (one under root's home cannot be read by `user` afterwards). A message's own
# charsets that cannot be loaded are decoded as unknown ones (imapd/mimetext.py).
CODECS = ("ascii", "utf-8", "latin-1", "utf-16-be", "cp1252", "idna")


def load_codecs() -> None:
    """Import the codecs of CODECS now, while every directory can still be read."""
    for name in CODECS:
        codecs.lookup(name)


def drop_privileges(uid: int | None, gid: int | None) -> None:
    """Become `user` and `group` for good, before anything is accepted: the supplementary
    groups cleared first (root's must not stay, and none of the user's are wanted), then the
    group, then the user (real, effective and saved: root cannot come back)."""
    if uid is None or gid is None:
        return
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def warn_if_root(settings: Settings) -> None:
    """Still root after the drop: no `user` was set. Say so once, naming the key."""
    if os.geteuid() == 0:
        logging.getLogger(settings.daemon).warning(
            "running as root without 'user': sessions run as root too; "
            "set user in [common] (for example user = maildaemons)"
        )


def run(
    settings: Settings,
    foreground: bool,
    prepare: Callable[[], list[socket.socket]],
    serve: Callable[[list[socket.socket]], int],
) -> int:
    """Start the daemon per the start-up contract; returns the launcher's exit status.

    `prepare` binds the listeners (and anything else that must fail early) and returns the
    sockets to keep; `serve` runs the master loop in the final process.
    """
    program = settings.daemon
    try:
        uid, gid = owner_ids(settings)
        if uid is not None:
            load_codecs()  # before the bind: a bound port is soon followed by the drop
        pidfile = settings.pidfile
        prepare_run_dir(pidfile.parent, uid, gid)
        if not foreground or settings.optional_path("pidfile"):
            clear_stale_pidfile(pidfile)
        keep = prepare()
    except (StartupError, ConfigError, OSError) as exc:  # ConfigError: a setting read in prepare
        print(f"{program}: {one_line(exc)}", file=sys.stderr)
        return 1
    start = Start(settings, keep, serve, uid, gid)
    return run_foreground(start) if foreground else launch(start)


@dataclass(frozen=True)
class Start:
    """What the serving process needs: its settings, the sockets bound before detaching, the
    master loop, and the user and group to become."""

    settings: Settings
    keep: list[socket.socket]
    serve: Callable[[list[socket.socket]], int]
    uid: int | None
    gid: int | None


def run_foreground(start: Start) -> int:
    settings = start.settings
    logs.setup(settings.daemon, "stderr", settings.get("log_level"))
    drop_privileges(start.uid, start.gid)
    warn_if_root(settings)
    pidfile = settings.optional_path("pidfile")
    if pidfile:
        pidfile.write_text(f"{os.getpid()}\n")
    try:
        return start.serve(start.keep)
    finally:
        if pidfile:
            with contextlib.suppress(OSError):
                pidfile.unlink()


def launch(start: Start) -> int:
    """Fork; the launcher waits for the daemon's readiness line."""
    sys.stdout.flush()
    sys.stderr.flush()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(ready_w)
        return wait_until_ready(start.settings.daemon, pid, ready_r)
    os.close(ready_r)
    os._exit(become_daemon(start, ready_w))


def wait_until_ready(program: str, pid: int, ready_r: int) -> int:
    chunks = []
    while chunk := os.read(ready_r, 4096):
        chunks.append(chunk)
    os.close(ready_r)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    message = b"".join(chunks)
    if message == READY:
        return 0
    text = message.decode("utf-8", "replace").strip() or "daemon exited during start-up"
    print(f"{program}: {text}", file=sys.stderr)
    return 1


def become_daemon(start: Start, ready_w: int) -> int:
    """Runs in the launcher's child; returns only in the final daemon process."""
    settings = start.settings
    try:
        # Dropped here, not by DaemonContext: its initgroups adds the user's groups and never
        # calls setgid. The pidfile is then written as the user, in the run dir given to it.
        drop_privileges(start.uid, start.gid)
        context = daemon.DaemonContext(
            detach_process=True,
            umask=0o077,
            working_directory="/",
            files_preserve=[s.fileno() for s in start.keep] + [ready_w],
            pidfile=daemon.pidfile.TimeoutPIDLockFile(str(settings.pidfile), PIDFILE_TIMEOUT),
            signal_map={},
        )
        context.open()
        target = settings.get("log") if settings.get("log") else "syslog"
        logs.setup(settings.daemon, target, settings.get("log_level"))
        warn_if_root(settings)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(ready_w, f"{one_line(exc)}\n".encode())
        return 1
    os.write(ready_w, READY)
    os.close(ready_w)
    try:
        return start.serve(start.keep)
    finally:
        with contextlib.suppress(Exception):
            context.close()
