"""Whether a session on disk can be resumed, and in which columns.

A resume continues one session: it must find the record the session started with
(:data:`RESUME_FIELDS`, :func:`check_record`) and a trial file whose header this version can append
to (:func:`file_columns`). :func:`experiments.datafile.check_session_files` applies both, with the
checks of the rows and of the session order; a refusal is a :class:`SessionFileError` that names
the file, both values, and the way forward (:func:`restart_advice`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eigdist_core.contract import REQUIRED_COLUMNS, TRIAL_COLUMNS
from eigdist_core.errors import EigdistError

#: What a resume must share with the recorded session, and the option that sets each.
RESUME_FIELDS = {
    "participant": "--participant", "session": "--session", "set_id": "the stimulus set (--stimuli)",
    "config": "--config", "monitor": "--monitor", "observer": "the observer (--simulate)", "pilot": "--pilot",
    "calibrated": "calibrated (--pilot)", "display": "the monitor profile of --monitor",
    "main_trials": "trials.selection of --config, on a chosen subset",
}
#: Fields (``config.<key>``: of the config) that records of older versions lack, and what those versions ran
#: with; None: not compared when the record has none.
ADDED_FIELDS = {"display": None, "main_trials": "per_condition", "config.selection": None}


class SessionFileError(EigdistError):
    """A session's files cannot be (re)opened as asked; the message names the file and the fix."""


def restart_advice(trials: Path) -> str:
    """The way forward that always exists for a session that cannot be continued (even a one-session plan's)."""
    return (f"move {trials.name} and its .json out of {trials.parent} and run this --session again from its "
            "start (without --resume)")


def check_record(old: dict, record: dict, trials: Path) -> None:
    """Check that a resume asks for the session ``old`` records: every :data:`RESUME_FIELDS` equal.

    Parameters
    ----------
    old
        The sidecar's ``"eigdist"`` record, as the session's first run wrote it (maybe by an older
        version: the :data:`ADDED_FIELDS` it lacks count as what that version ran with).
    record
        The record this run would write.
    trials
        The session's trial file, named in the message.

    Raises
    ------
    SessionFileError
        Naming the first field that differs, its recorded and its asked value, and the option that sets it.
    """
    old = _with_added(old, record)
    for name, option in RESUME_FIELDS.items():
        found = _difference(old.get(name), record.get(name), name)
        if found:
            where, was, now = found
            advice = ("one session must not mix two displays: resume with the profile it started with, or "
                      + restart_advice(trials)) if name == "display" else "resume with the same settings"
            raise SessionFileError(
                f"cannot resume {trials}: {where} was {was!r} when the session started, now {now!r} "
                f"({option} differs); {advice}"
            )


def file_columns(path: Path, raw: bytes) -> tuple[str, ...]:
    """The columns to append to the trial file ``path`` with, whose bytes are ``raw``: its header's.

    A file started by an earlier version lacks only columns added at the end since (the models track's);
    its rows keep that layout, so that a lab can update eigdist in the middle of a session and resume it.

    Raises
    ------
    SessionFileError
        If the header is not this version's columns or a start of them.
    """
    columns = tuple(raw.split(b"\n", 1)[0].decode("utf-8", errors="replace").split("\t"))
    if len(columns) < len(REQUIRED_COLUMNS) or columns != TRIAL_COLUMNS[:len(columns)]:
        raise SessionFileError(f"{path} has other columns than this version writes; {restart_advice(path)}")
    return columns


def _with_added(old: dict, record: dict) -> dict:
    """An older version's record with the :data:`ADDED_FIELDS` it lacks: what it ran with, or the new value."""
    old = {**old, "config": dict(old["config"])} if isinstance(old.get("config"), dict) else dict(old)
    for path, ran in ADDED_FIELDS.items():
        *parent, key = path.split(".")
        was, now = (old.get(parent[0]), record.get(parent[0])) if parent else (old, record)
        now = now if isinstance(now, dict) else {}
        if isinstance(was, dict) and key not in was:  # a record that lacks it too has nothing to compare
            was[key] = now.get(key) if ran is None or key not in now else ran
    return old


def _difference(old: Any, new: Any, where: str) -> tuple[str, Any, Any] | None:
    """The first place where two JSON-like values differ: (path, old, new)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _difference(old.get(key), new.get(key), f"{where}.{key}")
            if found:
                return found
        return None
    return None if old == new else (where, old, new)
