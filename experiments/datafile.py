"""The session's trial file, a BIDS behavioural file: one row per trial, appended and fsynced as it ends.

Layout and format follow docs/formats.md ("Trial data: a BIDS dataset")::

    DATA/sub-<p>/ses-<s>/beh/sub-<p>_ses-<s>_task-noticeability_beh.tsv   the trials
    DATA/sub-<p>/ses-<s>/beh/sub-<p>_ses-<s>_task-noticeability_beh.json  columns + session record
    DATA/sourcedata/sub-<p>/ses-<s>/psychopy/                               PsychoPy's files

The trial file is UTF-8 without BOM, tab-separated, booleans ``true``/``false``, missing
values ``n/a``. A crash loses at most the trial being shown: every finished row is on disk
before the next trial starts. The sidecar's ``"eigdist"`` record is written when the session
starts; a resume appends a run to ``runs`` and changes nothing else, after
:func:`check_session_files` has compared what it was asked with what was recorded
(the one place that does). The dataset's own files (:mod:`experiments.bids`) are created by
the first session.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from eigdist_core.contract import (
    BIDS_TASK, BOOL_COLUMNS, COLUMN_INFO, COLUMN_LEVELS, FLOAT_COLUMNS, INT_COLUMNS, MAX_LABEL_LENGTH,
    MAY_BE_EMPTY, MISSING, REQUIRED_COLUMNS, TRIAL_COLUMNS,
)
from eigdist_core.errors import EigdistError
from eigdist_core.io import atomic_write_bytes, nul_row, save_json

from .resume_check import SessionFileError, check_record, file_columns, restart_advice

#: Every column of the file, in order (docs/formats.md).
COLUMNS = TRIAL_COLUMNS

_LABEL = re.compile(r"[A-Za-z0-9]+")

#: The task's BIDS description, at the top of each sidecar.
TASK_INFO = {
    "TaskName": BIDS_TASK,
    "TaskDescription": "Forced-choice detection of a model's eigendistortion added to an image; the amplitude "
                       "of each condition follows its own adaptive track (docs/experiment.md of eigdist).",
}


class SessionFinished(EigdistError):
    """``--resume`` of a session whose every trial is done: nothing to do, nothing changed."""


def check_participant(participant: Any) -> str:
    """Check a participant label: a BIDS label, letters and digits only, at most 64 characters."""
    if not isinstance(participant, str) or not _LABEL.fullmatch(participant):
        raise EigdistError(
            f"participant ID must be letters and digits only (a BIDS label, [A-Za-z0-9]+), got {participant!r}"
        )
    if len(participant) > MAX_LABEL_LENGTH:
        raise EigdistError(f"participant ID must be at most {MAX_LABEL_LENGTH} characters, got "
                         f"{len(participant)} ({participant[:20]}…)")
    return participant


def check_session(session: Any) -> int:
    """Check a session number: an int >= 1."""
    if isinstance(session, bool) or not isinstance(session, int) or session < 1:
        raise EigdistError(f"session must be an int >= 1, got {session!r}")
    return session


@dataclass(frozen=True)
class SessionPaths:
    """Where one session's files live (docs/formats.md)."""

    root: Path
    folder: Path
    trials: Path
    sidecar: Path
    psychopy: Path
    lock: Path  # in DATA (sourcedata), so machines sharing the drive exclude each other; taken once the checks passed


def session_paths(data: str | os.PathLike, participant: str, session: int) -> SessionPaths:
    """The docs/formats.md paths of a session, checked to lie inside ``data``."""
    check_participant(participant)
    check_session(session)
    root = Path(data).resolve()
    sub, ses = f"sub-{participant}", f"ses-{session}"
    folder = root / sub / ses / "beh"
    stem = f"{sub}_{ses}_task-{BIDS_TASK}_beh"
    source = root / "sourcedata" / sub / ses
    return SessionPaths(root, folder, folder / f"{stem}.tsv", folder / f"{stem}.json", source / "psychopy",
                        source / "session.lock")


def format_value(value: Any) -> str:
    """A TSV cell: ``true``/``false``, ``n/a`` for missing (``None``, ``""``, NaN), ``repr`` for floats."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return MISSING if math.isnan(value) else repr(value)
    text = str(value)
    if any(c in text for c in "\t\r\n"):
        raise EigdistError(f"a trial value may not hold a tab or line break, got {text!r}")
    return text


def parse_value(column: str, text: str) -> Any:
    """Inverse of :func:`format_value` for the known columns (others stay text); ``n/a`` → ``None``."""
    if text == MISSING:
        return "" if column == "catch_type" else None
    if column in BOOL_COLUMNS:
        if text not in ("true", "false"):
            raise EigdistError(f"column {column} must be true or false, got {text!r}")
        return text == "true"
    if column in INT_COLUMNS:
        return int(text)
    if column in FLOAT_COLUMNS:
        return float(text)
    return text


def format_row(row: dict, columns: tuple[str, ...] = COLUMNS) -> str:
    """One line of a trial file (with its newline); refuses unknown keys and missing required values."""
    unknown = sorted(set(row) - set(columns))
    if unknown:
        raise ValueError(f"unknown trial column(s) {', '.join(unknown)}; allowed: {', '.join(columns)}")
    missing = [c for c in REQUIRED_COLUMNS if row.get(c) is None and c not in MAY_BE_EMPTY]
    if missing:
        raise ValueError(f"trial row lacks required column(s) {', '.join(missing)}")
    return "\t".join(format_value(row.get(c)) for c in columns) + "\n"


def _header(columns: tuple[str, ...] = COLUMNS) -> str:
    return "\t".join(columns) + "\n"


def _raw(path: Path) -> bytes:
    """A trial file's bytes as this module wrote them; a spreadsheet's re-save is refused, named."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf") or b"\r" in raw:
        raise SessionFileError(
            f"{path} was re-saved with Windows line endings or a byte-order mark (as a spreadsheet saves it); "
            f"a session appends only to the file it wrote: restore that file, or {restart_advice(path)} "
            "(the analysis reads the re-saved file as it is)"
        )
    return raw


def complete_length(path: Path, raw: bytes) -> int:
    """How many leading bytes of a trial file are whole rows; the rest is a tail torn by a crash.

    A torn tail is a final line without its newline, or the line of the first NUL byte with
    nothing but NULs after it (a crash can leave the file longer than what reached the disk, the
    gap read as NULs).

    Raises
    ------
    SessionFileError
        If NUL bytes are followed by rows: not a crash's tail, a damaged file.
    """
    row = nul_row(raw)
    if row is not None:
        start = raw.rfind(b"\n", 0, raw.find(b"\x00")) + 1
        if any(line.strip(b"\x00") for line in raw[start:].split(b"\n")[1:]):
            raise SessionFileError(f"{path}: NUL bytes at row {row} with rows after them: the file is damaged; "
                                   f"restore it from a backup, or {restart_advice(path)}")
        return start
    return raw.rfind(b"\n") + 1


def read_trials(path: str | os.PathLike) -> list[dict]:
    """The rows of a trial file, typed (ints, floats, bools, ``None`` for ``n/a``).

    A torn tail (:func:`complete_length`) is ignored; ``--resume`` cuts it off.
    """
    path = Path(path)
    return _rows(path, _raw(path))


def _rows(path: Path, raw: bytes) -> list[dict]:
    """The typed rows of a trial file's bytes ``raw``, without a torn tail."""
    lines = raw[: complete_length(path, raw)].decode("utf-8").splitlines()
    if not lines:
        return []
    header = lines[0].split("\t")
    return [{k: parse_value(k, v) for k, v in zip(header, line.split("\t"))} for line in lines[1:]]


def write_trial_file(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write a whole trial file at once (atomically) in the session's format, e.g. simulated data.

    The rows go through :func:`format_row`, the same formatting as a session's
    :class:`TrialWriter`.
    """
    atomic_write_bytes(path, (_header() + "".join(format_row(r) for r in rows)).encode("utf-8"))


class TrialWriter:
    """Appends one row per trial; each row is flushed and fsynced before :meth:`write` returns.

    Use :func:`open_session` to get one; it writes the header of a new file
    and checks a resumed one.
    """

    def __init__(self, path: Path, columns: tuple[str, ...], next_trial: int) -> None:
        self.path, self.columns, self.next_trial = path, columns, next_trial
        self._fh = open(path, "a", encoding="utf-8", newline="")

    def write(self, row: dict) -> None:
        """Append ``row`` (keys from the columns; missing ones ``n/a``) and fsync it.

        Raises
        ------
        ValueError
            If a required column is missing, a key is not a column, or the
            trial number is not the next one.
        """
        line = format_row(row, self.columns)
        if row["trial"] != self.next_trial:
            raise ValueError(f"trial number must be {self.next_trial} (no gaps), got {row['trial']!r}")
        self._fh.write(line)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.next_trial += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "TrialWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def column_descriptions(columns: tuple[str, ...] = COLUMNS) -> dict[str, dict]:
    """The BIDS description of every column (``LongName``, ``Description``, ``Units``, ``Levels``)."""
    out = {}
    for column in columns:
        long_name, description, units = COLUMN_INFO[column]
        entry: dict[str, Any] = {"LongName": long_name, "Description": description}
        if units:
            entry["Units"] = units
        if column in COLUMN_LEVELS:
            entry["Levels"] = COLUMN_LEVELS[column]
        out[column] = entry
    return out


def load_sidecar(path: Path) -> dict:
    """A session sidecar's ``"eigdist"`` record; a truncated or foreign file is an error naming it."""
    advice = "restore it from a backup, or " + restart_advice(path.with_suffix(".tsv"))
    try:
        record = json.loads(path.read_text(encoding="utf-8"))["eigdist"]
    except FileNotFoundError:
        raise SessionFileError(f"{path} is missing: cannot check what the session recorded; {advice}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise SessionFileError(f"{path}: not a session sidecar of eigdist ({exc}); it may have been cut by a "
                               f"crash or edited: {advice}") from None
    if not isinstance(record, dict) or not isinstance(record.get("runs"), list):
        raise SessionFileError(f"{path}: its \"eigdist\" record lacks runs[]; {advice}")
    return record


def check_session_order(data: Path, participant: str, session: int, set_id: str) -> None:
    """Sessions of a participant on one set run one after the other: each earlier one must be finished.

    Its tracks carry over into the next session (:mod:`experiments.engine`), so a session that
    starts (or resumes) while an earlier one of the same set is still running or was stopped
    would track from the wrong history. Sessions of another set, and earlier sessions whose
    sidecar cannot be read (their plan is unknown), do not count.

    Raises
    ------
    SessionFileError
        Naming the unfinished session, its progress, and the command that finishes it.
    """
    for earlier in range(1, session):
        paths = session_paths(data, participant, earlier)
        if not paths.trials.exists():
            continue
        try:
            old = load_sidecar(paths.sidecar)
        except SessionFileError:
            continue
        planned, done = planned_trials(old), len(read_trials(paths.trials))
        if old.get("set_id") == set_id and planned is not None and done < planned:
            raise SessionFileError(
                f"session {session} of participant {participant} cannot start: session {earlier} of the same "
                f"stimulus set is unfinished ({done} of {planned} trials; still running, or stopped), and its "
                f"tracks carry over into session {session}; finish it first (eigdist run --participant "
                f"{participant} --session {earlier} --resume, same --stimuli and --data)"
            )


def check_session_files(paths: SessionPaths, record: dict, *, resume: bool) -> tuple[tuple[str, ...], list[dict]]:
    """Check a session's files against what a run is asked to do; write nothing.

    The one place that compares a resume with the recorded session
    (:func:`experiments.resume_check.check_record`).

    Returns
    -------
    columns : tuple of str
        The columns to append with (:func:`experiments.resume_check.file_columns`; :data:`COLUMNS` for a new
        session).
    rows : list of dict
        The rows already in the file (empty for a new session).

    Raises
    ------
    FileExistsError
        If the session has a trial file and ``resume`` is false.
    FileNotFoundError
        If ``resume`` is true and there is nothing to resume.
    SessionFileError
        If the sidecar is missing or unreadable, a recorded parameter differs (naming both
        values), the file was re-saved by a spreadsheet, its header differs or its trials
        are not one continuous run.
    SessionFinished
        If every planned trial is done already.
    """
    if "participant" in record and "session" in record:  # every session record has them (engine.session_record)
        check_session_order(paths.root, record["participant"], record["session"], record["set_id"])
    exists = paths.trials.exists()
    if exists and not resume:
        raise FileExistsError(
            f"{paths.trials} already exists; continue it with --resume or choose another --session"
        )
    if not exists:
        if resume:
            raise FileNotFoundError(f"nothing to resume: {paths.trials} does not exist")
        return COLUMNS, []
    old = load_sidecar(paths.sidecar)
    check_record(old, record, paths.trials)
    raw = _raw(paths.trials)  # one read: the header's columns and the rows
    columns = file_columns(paths.trials, raw)
    rows = _rows(paths.trials, raw)
    for i, row in enumerate(rows, start=1):
        if row["trial"] != i or row["set_id"] != record["set_id"]:
            raise SessionFileError(f"{paths.trials}: row {i} has trial {row['trial']} or set_id "
                                   f"{row['set_id']!r}; the file is not one continuous session of this set")
    planned = planned_trials(old)
    if planned is not None and len(rows) >= planned:
        raise SessionFinished(f"session {paths.trials.name} is finished ({len(rows)} of {planned} trials); "
                              "nothing to resume, nothing changed")
    return columns, rows


def open_session(
    data: str | os.PathLike, participant: str, session: int, record: dict, run: dict, *,
    resume: bool = False, participant_info: dict | None = None,
) -> tuple[TrialWriter, list[dict]]:
    """Open a session's trial file for appending; return the writer and the rows already there.

    Parameters
    ----------
    data
        The data folder (a BIDS dataset; its own files are created by the first session).
    participant, session
        Checked by :func:`check_participant` and :func:`check_session`.
    record
        The session record (the sidecar's ``"eigdist"``); must hold ``set_id``.
        A new session writes it, with ``participant_info`` and ``runs = [run]``;
        a resume keeps the recorded one and appends ``run`` to its ``runs``.
    run
        What this start or resume records (time, window, versions); ``first_trial`` is added.
    resume
        Continue an existing file. Without it an existing file is refused.
    participant_info
        Optional details (age, sex, vision) for the sidecar and ``participants.tsv``.

    Raises
    ------
    FileExistsError, FileNotFoundError, SessionFileError, SessionFinished
        From :func:`check_session_files`.
    """
    from .bids import add_participant

    paths = session_paths(data, participant, session)
    if "set_id" not in record:
        raise ValueError("session record must hold the stimulus set's set_id")
    columns, rows = check_session_files(paths, record, resume=resume)
    run = {**run, "first_trial": len(rows) + 1}
    if rows or paths.trials.exists():
        _drop_torn_tail(paths.trials)
        sidecar = json.loads(paths.sidecar.read_text(encoding="utf-8"))  # read by load_sidecar above
        sidecar["eigdist"]["runs"].append(run)
        save_json(paths.sidecar, sidecar)
    else:
        add_participant(paths.root, participant, participant_info or {})
        info = {"participant_info": participant_info or {}}
        save_json(paths.sidecar, {**TASK_INFO, **column_descriptions(),
                                  "eigdist": {**record, **info, "runs": [run]}})
        atomic_write_bytes(paths.trials, _header().encode("utf-8"))
    return TrialWriter(paths.trials, columns, len(rows) + 1), rows


def planned_trials(record: dict) -> int | None:
    """The trials that finish a session: the plan's, or fewer where the models track stopped it."""
    return record["stopped"]["after_trial"] if "stopped" in record else record.get("n_trials")


def mark_stopped(paths: SessionPaths, after_trial: int, reason: str) -> None:
    """Record in the sidecar that the models track ended the session after ``after_trial`` trials, and why."""
    sidecar = json.loads(paths.sidecar.read_text(encoding="utf-8"))
    sidecar["eigdist"]["stopped"] = {"after_trial": after_trial, "reason": reason}
    save_json(paths.sidecar, sidecar)


def _drop_torn_tail(path: Path) -> None:
    """Cut a tail torn by a crash (:func:`complete_length`): a row the crash interrupted, NUL bytes."""
    raw = path.read_bytes()
    keep = complete_length(path, raw)
    if keep < len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())


def participant_trials(data: str | os.PathLike, participant: str, sessions: Iterable[int]) -> list[dict]:
    """All rows of the given sessions of a participant that exist, in session order."""
    rows: list[dict] = []
    for session in sessions:
        path = session_paths(data, participant, session).trials
        if path.exists():
            rows += read_trials(path)
    return rows
