"""The session's trial file: one CSV row per trial, appended and fsynced as the trial ends.

Path and columns follow docs/formats.md:
``<data>/sub-<p>/ses-<s>/sub-<p>_ses-<s>_trials.csv`` (UTF-8, no BOM, header row,
booleans ``true``/``false``, missing values empty) plus the JSON sidecar
``sub-<p>_ses-<s>_session.json``. A crash loses at most the trial being
shown: every finished row is on disk before the next trial starts. Resuming
reads the rows back, refuses a file made with another stimulus set, drops a
torn final line (a row cut by the crash) and continues the numbering.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from eigdist_core.contract import (
    BOOL_COLUMNS, FLOAT_COLUMNS, INT_COLUMNS, MAY_BE_EMPTY, REQUIRED_COLUMNS, TRIAL_COLUMNS,
)
from eigdist_core.io import load_json, save_json

#: Every column of the file, in order (docs/formats.md).
COLUMNS = TRIAL_COLUMNS

_ID = re.compile(r"[A-Za-z0-9_-]+")


def check_participant(participant: Any) -> str:
    """Check a participant ID against ``[A-Za-z0-9_-]+`` (so it cannot leave the data folder)."""
    if not isinstance(participant, str) or not _ID.fullmatch(participant):
        raise ValueError(
            f"participant ID must be letters, digits, '_' or '-' only ([A-Za-z0-9_-]+), got {participant!r}"
        )
    return participant


def check_session(session: Any) -> int:
    """Check a session number: an int >= 1."""
    if isinstance(session, bool) or not isinstance(session, int) or session < 1:
        raise ValueError(f"session must be an int >= 1, got {session!r}")
    return session


@dataclass(frozen=True)
class SessionPaths:
    """Where one session's files live."""

    folder: Path
    trials: Path
    sidecar: Path
    psychopy: Path


def session_paths(data: str | os.PathLike, participant: str, session: int) -> SessionPaths:
    """The docs/formats.md paths of a session, checked to lie inside ``data``."""
    check_participant(participant)
    check_session(session)
    root = Path(data).resolve()
    folder = root / f"sub-{participant}" / f"ses-{session}"
    if root not in folder.resolve().parents:  # belt and braces: the ID check already forbids this
        raise ValueError(f"session folder {folder} would lie outside the data folder {root}")
    stem = f"sub-{participant}_ses-{session}"
    return SessionPaths(folder, folder / f"{stem}_trials.csv", folder / f"{stem}_session.json",
                        folder / "psychopy")


def format_value(value: Any) -> str:
    """A CSV cell: ``true``/``false``, empty for missing, ``repr`` for floats (exact round trip)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def parse_value(column: str, text: str) -> Any:
    """Inverse of :func:`format_value` for the known columns (others stay text)."""
    if text == "":
        return None if column != "catch_type" else ""
    if column in BOOL_COLUMNS:
        if text not in ("true", "false"):
            raise ValueError(f"column {column} must be true or false, got {text!r}")
        return text == "true"
    if column in INT_COLUMNS:
        return int(text)
    if column in FLOAT_COLUMNS:
        return float(text)
    return text


def read_trials(path: str | os.PathLike) -> list[dict]:
    """The rows of a trial file, typed (ints, floats, bools, ``None`` for empty).

    A final line without a newline is a row torn by a crash and is ignored.
    """
    raw = Path(path).read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ValueError(f"{path}: starts with a byte-order mark; trial files are UTF-8 without BOM")
    text = raw.decode("utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    return [{k: parse_value(k, v) for k, v in row.items()} for row in rows]


class TrialWriter:
    """Appends one row per trial; each row is flushed and fsynced before :meth:`write` returns.

    Use :func:`open_session` to get one; it writes the header of a new file
    and checks a resumed one.
    """

    def __init__(self, path: Path, columns: tuple[str, ...], next_trial: int) -> None:
        self.path, self.columns, self.next_trial = path, columns, next_trial
        self._fh = open(path, "a", encoding="utf-8", newline="")
        self._csv = csv.writer(self._fh, lineterminator="\n")

    def write(self, row: dict) -> None:
        """Append ``row`` (keys from the columns; missing ones empty) and fsync it.

        Raises
        ------
        ValueError
            If a required column is missing, a key is not a column, or the
            trial number is not the next one.
        """
        unknown = sorted(set(row) - set(self.columns))
        if unknown:
            raise ValueError(f"unknown trial column(s) {', '.join(unknown)}; allowed: {', '.join(self.columns)}")
        missing = [c for c in REQUIRED_COLUMNS if row.get(c) is None and c not in MAY_BE_EMPTY]
        if missing:
            raise ValueError(f"trial row lacks required column(s) {', '.join(missing)}")
        if row["trial"] != self.next_trial:
            raise ValueError(f"trial number must be {self.next_trial} (no gaps), got {row['trial']!r}")
        self._csv.writerow([format_value(row.get(c)) for c in self.columns])
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.next_trial += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "TrialWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_session(
    data: str | os.PathLike, participant: str, session: int, metadata: dict, *, resume: bool = False,
) -> tuple[TrialWriter, list[dict]]:
    """Open a session's trial file for appending; return the writer and the rows already there.

    Parameters
    ----------
    data
        The data folder.
    participant, session
        Checked by :func:`check_participant` and :func:`check_session`.
    metadata
        The sidecar's content; must hold ``set_id`` (the stimulus set's id).
        On resume the sidecar gains a ``resumed`` list of the trial numbers
        at which the session was continued.
    resume
        Continue an existing file. Without it an existing file is refused.

    Raises
    ------
    FileExistsError
        If the session has a trial file and ``resume`` is false.
    FileNotFoundError
        If ``resume`` is true and there is nothing to resume.
    ValueError
        If the existing file was made with another stimulus set, its header
        differs, or its trial numbers have gaps.
    """
    paths = session_paths(data, participant, session)
    if "set_id" not in metadata:
        raise ValueError("session metadata must hold the stimulus set's set_id")
    exists = paths.trials.exists()
    if exists and not resume:
        raise FileExistsError(
            f"{paths.trials} already exists; continue it with --resume or choose another --session"
        )
    if resume and not exists:
        raise FileNotFoundError(f"nothing to resume: {paths.trials} does not exist")
    rows: list[dict] = []
    if exists:
        rows = _check_existing(paths, metadata)
        _drop_torn_line(paths.trials)
        old = load_json(paths.sidecar)
        metadata = {**metadata, "resumed": old.get("resumed", []) + [len(rows) + 1]}
    else:
        paths.folder.mkdir(parents=True, exist_ok=True)
        with open(paths.trials, "w", encoding="utf-8", newline="") as fh:
            fh.write(",".join(COLUMNS) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    save_json(paths.sidecar, metadata)
    return TrialWriter(paths.trials, COLUMNS, len(rows) + 1), rows


def _check_existing(paths: SessionPaths, metadata: dict) -> list[dict]:
    if not paths.sidecar.exists():
        raise ValueError(f"{paths.sidecar} is missing: cannot check which stimulus set {paths.trials} used")
    old_set = load_json(paths.sidecar).get("set_id")
    if old_set != metadata["set_id"]:
        raise ValueError(
            f"{paths.trials} was recorded with stimulus set {old_set!r}, not {metadata['set_id']!r}; "
            "resume with the same --stimuli or start another session"
        )
    with open(paths.trials, encoding="utf-8", newline="") as fh:
        header = fh.readline().rstrip("\n").split(",")
    if tuple(header) != COLUMNS:
        raise ValueError(f"{paths.trials} has other columns than this version writes; start another session")
    rows = read_trials(paths.trials)
    for i, row in enumerate(rows, start=1):
        if row["trial"] != i or row["set_id"] not in (None, metadata["set_id"]):
            raise ValueError(f"{paths.trials}: row {i} has trial {row['trial']} or set_id {row['set_id']!r}; "
                             "the file is not one continuous session of this set")
    return rows


def _drop_torn_line(path: Path) -> None:
    """Cut a final line without a newline (a row the crash interrupted)."""
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        with open(path, "r+b") as fh:
            fh.truncate(raw.rfind(b"\n") + 1)
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
