"""Change notification for folders (IMAP IDLE, RFC 2177) in a pool worker: one inotify instance
per worker, not a timer per session.

A session that waits in IDLE asks `FolderWatcher.watch(mailbox)` for a `Watch`: a descriptor
(an eventfd) that becomes readable when a message file appears in, leaves or is renamed in the
folder's new/ or cur/ (a delivery, a flag change, an expunge, by any session or program), so it
can wait on its socket and on the folder with one poll(). The worker's main thread reads the
inotify events (`dispatch`) and wakes the watches of that folder. Watches of one folder share its
two inotify watches.

inotify sees changes made through this kernel only: on a mail base shared over NFS a change made
by another host is seen by the IDLE loop's slower re-check (imapd/commands/idle.py). When inotify
cannot be had (no more instances or watches), `watch` returns None and IDLE polls as in the fork
model.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from inotify_simple import INotify
from inotify_simple import flags as in_flags

from common.store.mailbox import Mailbox

WATCHED = ("new", "cur")


class Watch:
    """One session's wait on one folder: readable when the folder changed since `clear()`."""

    def __init__(self, watcher: FolderWatcher, folder: Path) -> None:
        self.watcher = watcher
        self.folder = folder
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def fileno(self) -> int:
        return self.fd

    def clear(self) -> bool:
        """Reset; True when the folder had changed."""
        try:
            return os.eventfd_read(self.fd) > 0
        except BlockingIOError:
            return False

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            os.eventfd_write(self.fd, 1)

    def close(self) -> None:
        if self.fd >= 0:
            self.watcher.forget(self)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Folder:
    descriptors: list[int]
    watches: set[Watch] = field(default_factory=set)


class FolderWatcher:
    """The worker's inotify instance and who waits on which folder."""

    def __init__(self) -> None:
        self.inotify = INotify(nonblocking=True)
        self.mask = (
            in_flags.CREATE
            | in_flags.DELETE
            | in_flags.MOVED_FROM
            | in_flags.MOVED_TO
            | in_flags.DELETE_SELF
            | in_flags.MOVE_SELF
        )
        self.lock = threading.Lock()  # sessions add and drop watches; the main thread dispatches
        self.folders: dict[Path, _Folder] = {}
        self.by_descriptor: dict[int, _Folder] = {}

    def fileno(self) -> int:
        return int(self.inotify.fileno())

    def watch(self, mailbox: Mailbox) -> Watch | None:
        """A watch on `mailbox`'s folder, or None when inotify cannot watch it (then poll)."""
        folder = mailbox.path
        with self.lock:
            entry = self.folders.get(folder)
            if entry is None:
                entry = self._add_folder(folder)
                if entry is None:
                    return None
            watch = Watch(self, folder)
            entry.watches.add(watch)
        return watch

    def _add_folder(self, folder: Path) -> _Folder | None:
        descriptors: list[int] = []
        try:
            for sub in WATCHED:
                descriptors.append(self.inotify.add_watch(folder / sub, self.mask))
        except OSError:
            for wd in descriptors:
                with contextlib.suppress(OSError):
                    self.inotify.rm_watch(wd)
            return None
        entry = _Folder(descriptors)
        self.folders[folder] = entry
        for wd in descriptors:
            self.by_descriptor[wd] = entry
        return entry

    def forget(self, watch: Watch) -> None:
        with self.lock:
            entry = self.folders.get(watch.folder)
            if entry is None:
                return
            entry.watches.discard(watch)
            if entry.watches:
                return
            del self.folders[watch.folder]
            for wd in entry.descriptors:
                self.by_descriptor.pop(wd, None)
                with contextlib.suppress(OSError):
                    self.inotify.rm_watch(wd)

    def dispatch(self) -> None:
        """Main thread: read the waiting events and wake every watch of each folder named."""
        try:
            events = self.inotify.read(timeout=0)
        except (BlockingIOError, InterruptedError):
            return
        with self.lock:
            woken: set[int] = set()
            for event in events:
                entry = self.by_descriptor.get(event.wd)
                if entry is None or id(entry) in woken:
                    continue
                woken.add(id(entry))
                for watch in entry.watches:
                    watch.wake()

    def close(self) -> None:
        self.inotify.close()
