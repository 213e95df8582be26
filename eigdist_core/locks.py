"""The one exclusive lock of eigdist: a folder or file that one process works on at a time.

A stimulus-set build holds its set folder, a session holds its participant/session, for
as long as they write. A second process is refused at once (or after a short wait), and the error
names what is held and the process that holds it. The lock is an OS lock (``filelock``:
``fcntl`` on POSIX, ``msvcrt`` on Windows), so it is released when the holder exits,
even by SIGKILL; the lock file and its ``.holder`` note may stay behind and are harmless.
"""

from __future__ import annotations

import os
import re
import socket
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from .errors import EigdistError


class LockedError(EigdistError):
    """Another process holds the lock; the message names it."""


#: A holder note is ``pid <pid> on <host> boot <boot id> since <UTC time>``.
_NOTE = re.compile(r"^pid (?P<pid>\d+) on (?P<host>\S+) boot (?P<boot>\S+) since (?P<since>\S+)$")


def _boot_id() -> str:
    """This boot of this machine (Linux's boot_id; elsewhere the boot time to the minute)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        import time

        return str(int((time.time() - time.monotonic()) // 60))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _live_holder(note: Path, stale_after_s: float) -> str | None:
    """The holder recorded in ``note`` when it may still hold the lock, else None (no note, or a stale one).

    On this machine (same host name and boot) the holder is live while its pid runs; a note from an
    earlier boot is stale. Another machine's note is live for ``stale_after_s`` seconds from its start
    (this machine cannot see its processes), then stale.
    """
    try:
        found = _NOTE.match(note.read_text(encoding="utf-8").strip())
    except OSError:
        return None
    if found is None:
        return None
    if found["host"] == socket.gethostname():
        return found.group(0) if found["boot"] == _boot_id() and _alive(int(found["pid"])) else None
    try:
        age = (datetime.now(timezone.utc) - datetime.fromisoformat(found["since"])).total_seconds()
    except ValueError:
        return None
    return found.group(0) if age < stale_after_s else None


def _holder(lock_path: Path) -> str:
    try:
        return lock_path.with_name(lock_path.name + ".holder").read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


@contextmanager
def hold(path: str | os.PathLike, what: str, *, wait: float = 0.0,
         across_hosts_s: float | None = None) -> Iterator[Path]:
    """Hold the exclusive lock file ``path`` while the ``with`` block runs.

    Parameters
    ----------
    path
        The lock file (its folder is created). Its holder (pid, host, start time)
        is written next to it as ``<path>.holder`` for the message a second
        process gets.
    what
        What the lock protects, for the message (e.g. ``"stimulus set out/demo"``).
    wait
        Seconds to wait for a holder to finish (0: refuse at once; for short updates
        such as a line added to a shared file).
    across_hosts_s
        For a lock on a drive that several machines share, whose OS locks may not reach
        across them: the holder note also excludes, and a note of another machine holds
        for this many seconds from its start unless removed (a crash there leaves it);
        a note of this machine holds while its process runs (see :func:`_live_holder`).

    Raises
    ------
    LockedError
        If another process holds the lock: names ``what`` and the holder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _acquire(path, what, wait, across_hosts_s)
    note = path.with_name(path.name + ".holder")
    try:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        note.write_text(f"pid {os.getpid()} on {socket.gethostname()} boot {_boot_id()} since {stamp}\n",
                        encoding="utf-8")
        yield path
    finally:
        note.unlink(missing_ok=True)
        lock.release()


def probe(path: str | os.PathLike, what: str, *, across_hosts_s: float | None = None) -> None:
    """Refuse as :func:`hold` would if another process holds ``path``; create and write nothing.

    For checks that must leave a folder untouched (a session refused by its checks leaves DATA as
    it was); the holding itself is :func:`hold`, once the work starts.

    Raises
    ------
    LockedError
        If another process holds the lock: names ``what`` and the holder.
    """
    path = Path(path)
    if path.exists():  # no lock file: nobody holds it
        _acquire(path, what, 0.0, across_hosts_s).release()


def _acquire(path: Path, what: str, wait: float, across_hosts_s: float | None) -> FileLock:
    """The OS lock on ``path``, after checking that no other machine's live note holds it (see :func:`hold`)."""
    lock = FileLock(str(path), timeout=wait)
    try:
        lock.acquire()
    except Timeout:
        raise LockedError(
            f"{what} is in use by another process ({_holder(path)}); wait for it to finish or stop it"
        ) from None
    note = path.with_name(path.name + ".holder")
    if across_hosts_s is not None and (other := _live_holder(note, across_hosts_s)) is not None:
        lock.release()
        raise LockedError(
            f"{what} is in use by another process ({other}); wait for it to finish, or, if that machine "
            f"no longer runs it (a crash), remove {note}"
        )
    return lock
