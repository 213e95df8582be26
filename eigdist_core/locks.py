"""The one exclusive lock of eigdist: a folder or file that one process works on at a time.

A stimulus-set build holds its set folder, a session holds its participant/session, for
as long as they write. A second process is refused at once (no waiting), and the error
names what is held and the process that holds it. The lock is an OS lock (``filelock``:
``fcntl`` on POSIX, ``msvcrt`` on Windows), so it is released when the holder exits,
even by SIGKILL; the lock file and its ``.holder`` note may stay behind and are harmless.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from .errors import EigdistError


class LockedError(EigdistError):
    """Another process holds the lock; the message names it."""


def _holder(lock_path: Path) -> str:
    try:
        return lock_path.with_name(lock_path.name + ".holder").read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


@contextmanager
def hold(path: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold the exclusive lock file ``path`` while the ``with`` block runs.

    Parameters
    ----------
    path
        The lock file (its folder is created). Its holder (pid, host, start time)
        is written next to it as ``<path>.holder`` for the message a second
        process gets.
    what
        What the lock protects, for the message (e.g. ``"stimulus set out/demo"``).

    Raises
    ------
    LockedError
        If another process holds the lock: names ``what`` and the holder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockedError(
            f"{what} is in use by another process ({_holder(path)}); wait for it to finish or stop it"
        ) from None
    note = path.with_name(path.name + ".holder")
    try:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        note.write_text(f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n", encoding="utf-8")
        yield path
    finally:
        note.unlink(missing_ok=True)
        lock.release()
