"""Atomic writes into an SSM outgoing directory queue (dirq ``QueueSimple``).

``ssmsend`` reads the same queue. A message is written to a temporary file
at the queue's top level (which ``QueueSimple`` never lists), flushed to
disk, then linked into the queue by ``QueueSimple.add_path`` in one step: a
reader sees the whole message or nothing. If the disk is full or the
directory read-only, the temporary file is removed and the error says so.
"""

from __future__ import annotations

import ctypes
import errno
import os
import tempfile
from pathlib import Path

from dirq.QueueSimple import QueueSimple

from ai4os_kit.errors import KitError

_HINTS = {
    errno.ENOSPC: "the file system is full: free space there (ssmsend may be failing to send and drain it)",
    errno.EDQUOT: "the disk quota is exhausted: raise it or drain the queue",
    errno.EFBIG: "the file size limit was hit: raise the limit (ulimit -f) for the accounting service",
    errno.EROFS: "the file system is read-only: remount it read-write or point ssm.outgoing_dir elsewhere",
    errno.EACCES: "no write permission: give the accounting service user write access to the directory",
    errno.EPERM: "no write permission: give the accounting service user write access to the directory",
}


def _queue_error(path: Path, exc: OSError) -> KitError:
    hint = _HINTS.get(exc.errno or 0, "check the directory (ssm.outgoing_dir in the accounting config)")
    return KitError(f"cannot write to the SSM outgoing queue {path}: {exc.strerror or exc}; {hint}. "
                    "Nothing was half-written; records not queued are queued again by the next run")


try:
    _SYNCFS = ctypes.CDLL(None, use_errno=True).syncfs
except (OSError, AttributeError):  # not Linux/glibc: fall back to sync()
    _SYNCFS = None


class OutgoingQueue:
    """An SSM outgoing queue directory; every :meth:`add` is all-or-nothing."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if not self.path.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a directory")
            self.queue = QueueSimple(str(self.path))
        except OSError as exc:
            raise _queue_error(self.path, exc) from None

    def probe(self) -> None:
        """Fail now, with the reason, if a message could not be written."""
        try:
            fd, tmp = tempfile.mkstemp(prefix=".ai4os-probe-", suffix=".tmp", dir=self.path)
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            raise _queue_error(self.path, exc) from None

    def sync(self) -> None:
        """Make every message added so far durable (syncfs of the queue's file system)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _SYNCFS is None or _SYNCFS(fd) != 0:
                os.sync()
        finally:
            os.close(fd)

    def add(self, message: bytes, durable: bool = True) -> str:
        """Queue one message; returns its dirq element name.

        With ``durable=False`` the data is not flushed before the message is
        linked into the queue: the caller calls :meth:`sync` before it records
        the messages as sent (one file-system flush per batch, not per message).
        """
        fd, tmp = -1, ""
        try:
            fd, tmp = tempfile.mkstemp(prefix=".ai4os-", suffix=".tmp", dir=self.path)
            view = memoryview(message)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
            os.close(fd)
            fd = -1
            name: str = self.queue.add_path(tmp)
            return name
        except OSError as exc:
            raise _queue_error(self.path, exc) from None
        finally:
            if fd >= 0:
                os.close(fd)
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)
