"""PsychoPy's first-use race, forced: ``python tests/psychopy_race.py ROLE SIGNALS`` opens a session's window.

PsychoPy's first ``import psychopy.monitors`` lists the monitor files, finds no testMonitor.json,
then creates it: ``open(…, "w")``, then the write. Two processes race when the second lists the
folder before the first opens the file, and reads it between the open and the write. Files in
SIGNALS force that order: the ``first`` process waits, before its open, for the ``second`` to have
listed the folder, and holds the empty file until the second has read it; each wait ends after
WAIT_S, so a process that cannot get there (the second waits on eigdist's lock) delays, never blocks.
"""

from __future__ import annotations

import builtins
import glob
import sys
import time
from pathlib import Path

import json_tricks

WAIT_S = 15.0


def wait_for(flag: Path) -> None:
    end = time.monotonic() + WAIT_S
    while not flag.exists() and time.monotonic() < end:
        time.sleep(0.02)


def force(role: str, signals: Path) -> None:
    real_open, real_glob, real_dump, real_load = builtins.open, glob.glob, json_tricks.dump, json_tricks.load
    test_monitor = "testMonitor.json"

    def opened(file, mode="r", *args, **kwargs):
        if role == "first" and str(file).endswith(test_monitor) and "w" in mode:
            wait_for(signals / "listed")
            fh = real_open(file, mode, *args, **kwargs)
            (signals / "opened").touch()
            return fh
        return real_open(file, mode, *args, **kwargs)

    def listed(pattern, *args, **kwargs):
        found = real_glob(pattern, *args, **kwargs)
        if role == "second" and str(pattern).endswith("*.json") and "monitors" in str(pattern):
            (signals / "listed").touch()
            wait_for(signals / "opened")
        return found

    def dumped(obj, fp, *args, **kwargs):
        if role == "first" and getattr(fp, "name", "").endswith(test_monitor):
            wait_for(signals / "read")
        return real_dump(obj, fp, *args, **kwargs)

    def loaded(fp, *args, **kwargs):
        if role == "second" and getattr(fp, "name", "").endswith(test_monitor):
            (signals / "read").touch()
        return real_load(fp, *args, **kwargs)

    builtins.open, glob.glob, json_tricks.dump, json_tricks.load = opened, listed, dumped, loaded


if __name__ == "__main__":
    force(sys.argv[1], Path(sys.argv[2]))
    from eigdist.cli.main import main

    sys.exit(main(sys.argv[3:]))
