"""PsychoPy's per-user files, created once and safely before any session uses them.

PsychoPy's first import on an account creates its per-user folder (``~/.psychopy3``;
``%APPDATA%/psychopy3`` on Windows): ``packages/…`` on ``import psychopy`` (``os.makedirs``,
which fails with "File exists" when another process makes it at the same moment) and
``monitors/testMonitor.json`` on ``import psychopy.monitors`` (opened, then written: another
process can read it empty and fail with a JSON error). Every eigdist command that starts
sessions imports PsychoPy through :func:`import_psychopy`, which holds one lock per account
while it does, so sessions started at once (the demo's, or a lab's) find the files whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator

from eigdist_core.errors import EigdistError
from eigdist_core.locks import hold

#: How long a process waits for another one's first PsychoPy import (seconds): generous, it takes a few.
WAIT_S = 600.0


def psychopy_user_folder() -> Path:
    """PsychoPy's per-user folder (as ``psychopy.preferences`` and ``psychopy.monitors.calibTools`` compute it)."""
    if sys.platform == "win32":
        return Path(os.environ["APPDATA"]) / "psychopy3"
    return Path(os.environ["HOME"]) / ".psychopy3"


def import_psychopy() -> None:
    """Import PsychoPy and its monitors module, creating its per-user files under this account's lock.

    Raises
    ------
    EigdistError
        If PsychoPy cannot read one of its own monitor files (e.g. one left empty by a PsychoPy
        process that was killed while writing it); the message names the file.
    """
    if "psychopy.monitors" in sys.modules:
        return
    folder = psychopy_user_folder()
    with hold(folder / "eigdist-first-use.lock", f"PsychoPy's per-user folder {folder}", wait=WAIT_S):
        import psychopy  # noqa: F401 (creates packages/)

        with quiet_console():  # not its "Monitor specification not found" on first use
            try:
                import psychopy.monitors  # noqa: F401 (creates monitors/testMonitor.json)
            except ValueError as exc:  # json_tricks' JSONDecodeError: a monitor file that is not JSON
                raise EigdistError(f"PsychoPy could not read {_unreadable(folder / 'monitors')} ({exc}); "
                                   "remove that file (PsychoPy writes a new testMonitor.json) or restore it") from exc


@contextlib.contextmanager
def quiet_console() -> Iterator[None]:
    """PsychoPy's console shows errors only for what is logged inside; the caller's console level is restored
    after, also on an exception (PsychoPy filters messages when it flushes them: done before restoring)."""
    from psychopy import logging

    level = logging.console.level
    logging.console.setLevel(logging.ERROR)
    try:
        yield
        logging.flush()
    finally:
        logging.console.setLevel(level)


def _unreadable(monitors: Path) -> str:
    """The monitor files of ``monitors`` that are not JSON (what PsychoPy failed on), or the folder."""
    bad = []
    for file in sorted(monitors.glob("*.json")):
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            bad.append(str(file))
    return ", ".join(bad) or f"a monitor file in {monitors}"
