"""Trial files → one validated DataFrame.

Reads every BIDS trial file ``*_beh.tsv`` (docs/formats.md, "Trial data") under the
given paths, and the first format's ``*_trials.csv`` (comma-separated, empty for missing,
no ``alpha_ceiling`` column: give ``--stimuli`` for those), checks the required columns
row by row and returns one table with the typed required columns, every extra column as
text (missing values ``""``), and ``source_file`` / ``source_line`` so later messages can
point back at a row. Every error names the file, the row (its line in the file; the header
is line 1) and the column. Files re-saved by a spreadsheet (a BOM, CRLF) are read as well.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from eigdist_core.contract import CATCH_TYPES, ITEM_DIRECTIONS, MISSING, REQUIRED_COLUMNS, TASKS
from eigdist_core.errors import EigdistError
from eigdist_core.io import nul_row

_BOOLS = {"true": True, "false": False}
#: Relative slack of the ceiling rule (α is written as a float computed from the ceiling).
CEILING_TOLERANCE = 1e-9


@dataclass(frozen=True)
class _Format:
    """How one kind of trial file is written."""

    pattern: str
    sep: str
    missing: str
    participant: re.Pattern
    required: tuple[str, ...]


#: The BIDS trial files, then the first format (read so a lab's existing data still count).
FORMATS = (
    _Format("*_beh.tsv", "\t", MISSING, re.compile(r"[A-Za-z0-9]+"), REQUIRED_COLUMNS),
    _Format("*_trials.csv", ",", "", re.compile(r"[A-Za-z0-9_-]+"),
            tuple(c for c in REQUIRED_COLUMNS if c != "alpha_ceiling")),
)


def _format(file: Path) -> _Format:
    return FORMATS[1] if file.suffix.lower() == ".csv" else FORMATS[0]


class TrialDataError(EigdistError):
    """A trial file breaks the contract; the message names file, row and column."""


def find_trial_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Every ``*_beh.tsv`` (and ``*_trials.csv``) named by ``paths`` (files as given, folders searched recursively).

    Raises
    ------
    FileNotFoundError
        If a path does not exist or no trial file is found.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(f for fmt in FORMATS for f in path.rglob(fmt.pattern) if "sourcedata" not in f.parts)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    if not files:
        raise FileNotFoundError(f"no trial files (*_beh.tsv, *_trials.csv) under {', '.join(map(str, paths))}")
    return sorted(set(files))


def _fail(file: Path, line: int, column: str, value: str, allowed: str) -> None:
    raise TrialDataError(f"{file}, row {line}, column {column!r}: bad value {value!r}; {allowed}")


def _check(file: Path, frame: pd.DataFrame, column: str, ok: np.ndarray, allowed: str) -> None:
    """Raise on the first row of ``frame`` where ``ok`` is false."""
    bad = np.flatnonzero(~np.asarray(ok, dtype=bool))
    if bad.size:
        i = bad[0]
        _fail(file, int(frame["source_line"].iat[i]), column, frame[column].iat[i], allowed)


def _parse_bool(file: Path, frame: pd.DataFrame, column: str) -> pd.Series:
    text = frame[column].str.strip().str.lower()
    _check(file, frame, column, text.isin(list(_BOOLS)).to_numpy(), "allowed: true or false")
    return text.map(_BOOLS).astype(bool)


def _parse_number(file: Path, frame: pd.DataFrame, column: str, *, integer: bool,
                  valid: Callable[[np.ndarray], np.ndarray], allowed: str) -> pd.Series:
    values = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(values)
    ok[ok] = valid(values[ok])
    if integer:
        ok &= np.equal(np.floor(values, where=ok, out=np.zeros_like(values)), values)
    _check(file, frame, column, ok, allowed)
    return pd.Series(values.astype(int) if integer else values, index=frame.index)


def check_alpha_ceiling(trials: pd.DataFrame, column: str = "alpha_ceiling", source: str = "") -> None:
    """The one ceiling rule: no trial shows an α above the ceiling of its track (rows without one pass).

    A session never shows more than its track's ceiling, so such a row was edited, or the
    ceiling (``column``, from ``source``) is not the one the session used.

    Raises
    ------
    TrialDataError
        Naming the file, row, α and ceiling of the first such row.
    """
    alpha, ceiling = trials["alpha"].to_numpy(dtype=float), trials[column].to_numpy(dtype=float)
    bad = np.flatnonzero(alpha > ceiling * (1 + CEILING_TOLERANCE))
    if bad.size:
        row = trials.iloc[bad[0]]
        raise TrialDataError(
            f"{row['source_file']}, row {row['source_line']}, column 'alpha': bad value {float(alpha[bad[0]])!r}: above "
            f"the track's ceiling {ceiling[bad[0]]:g} ({column}{source}); a session never shows more, so the row "
            "was edited or the ceiling is not the session's: restore the file or give the right ceiling"
        )


def _read_one(file: Path) -> pd.DataFrame:
    """Read and type one trial file; raise :class:`TrialDataError` on any breach."""
    fmt = _format(file)
    row = nul_row(file.read_bytes())
    if row is not None:
        fix = "'eigdist run --resume' of that session repairs it" if fmt is FORMATS[0] else "restore the file"
        raise TrialDataError(f"{file}, row {row}: NUL bytes at row {row} (crash?); {fix}")
    try:
        frame = pd.read_csv(file, sep=fmt.sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise TrialDataError(f"{file}, row 1, column (header): unreadable trial file: {exc}") from exc
    missing = [c for c in fmt.required if c not in frame.columns]
    if missing:
        raise TrialDataError(
            f"{file}, row 1, column {missing[0]!r}: required column missing "
            f"(missing: {', '.join(missing)}; required: {', '.join(fmt.required)})"
        )
    if "alpha_ceiling" not in frame:  # first format: the ceiling comes from --stimuli
        frame["alpha_ceiling"] = fmt.missing
    frame["source_file"] = str(file)
    frame["source_line"] = np.arange(2, len(frame) + 2)
    na = fmt.missing
    allowed = "letters and digits" if fmt is FORMATS[0] else "letters, digits, '_' and '-'"
    _check(file, frame, "participant", frame["participant"].str.fullmatch(fmt.participant).to_numpy(),
           f"allowed: {allowed}")
    for column in ("image_id", "model", "layer", "weights", "observer", "set_id"):
        _check(file, frame, column, ~frame[column].str.strip().isin(["", na]).to_numpy(), "must not be empty")
    _check(file, frame, "direction", frame["direction"].isin(ITEM_DIRECTIONS).to_numpy(),
           f"allowed: {', '.join(ITEM_DIRECTIONS)}")
    _check(file, frame, "task", frame["task"].isin(list(TASKS)).to_numpy(), f"allowed: {', '.join(TASKS)}")
    typed = {
        "session": _parse_number(file, frame, "session", integer=True, valid=lambda v: v >= 1,
                                 allowed="an integer >= 1"),
        "trial": _parse_number(file, frame, "trial", integer=True, valid=lambda v: v >= 1,
                               allowed="an integer >= 1"),
        "alpha": _parse_number(file, frame, "alpha", integer=False, valid=lambda v: v >= 0,
                               allowed="a finite number >= 0"),
        "n_alternatives": _parse_number(file, frame, "n_alternatives", integer=True,
                                        valid=lambda v: np.isin(v, (2, 3)), allowed="allowed: 2 or 3"),
    }
    if fmt is FORMATS[0]:
        typed["alpha_ceiling"] = _parse_number(file, frame, "alpha_ceiling", integer=False, valid=lambda v: v > 0,
                                               allowed="a finite number > 0")
    else:
        typed["alpha_ceiling"] = pd.Series(np.nan, index=frame.index)
    typed.update({c: _parse_bool(file, frame, c) for c in ("correct", "is_catch", "is_practice", "calibrated")})
    raw = frame.copy()  # messages quote the text as written
    for column in frame.columns.drop(["source_file", "source_line"]):
        frame[column] = typed[column] if column in typed else frame[column].mask(frame[column] == na, "")
    _check(file, raw, "catch_type", frame["catch_type"].isin(CATCH_TYPES).to_numpy(),
           f"allowed: easy, blank or {na or 'empty'}")
    _check(file, raw, "n_alternatives", (frame["task"].map(TASKS) == frame["n_alternatives"]).to_numpy(),
           "must match the task (2afc_ref: 2, 3afc_oddity: 3)")
    _check(file, raw, "catch_type", (frame["is_catch"] == (frame["catch_type"] != "")).to_numpy(),
           "must be easy or blank exactly when is_catch is true")
    blank = frame["catch_type"] == "blank"
    _check(file, raw, "alpha", (~blank | (frame["alpha"] == 0)).to_numpy(), "blank catch trials have alpha 0")
    _check(file, raw, "item_id", (blank | (frame["item_id"].str.strip() != "")).to_numpy(),
           "must name a manifest item (empty only on blank catch trials)")
    check_alpha_ceiling(frame)
    _check_trial_numbers(file, frame)
    return frame


def _check_trial_numbers(file: Path, frame: pd.DataFrame) -> None:
    """Trials of a session run 1, 2, … with no gaps (duplicates are checked across files)."""
    for _, session in frame.drop_duplicates(["participant", "session", "trial"]).groupby(
        ["participant", "session"], sort=False
    ):
        numbers = np.sort(session["trial"].to_numpy())
        expected = np.arange(1, len(numbers) + 1)
        if not np.array_equal(numbers, expected):
            first = int(numbers[np.flatnonzero(numbers != expected)[0]])
            row = session.loc[session["trial"] == first, "source_line"].iat[0]
            _fail(file, int(row), "trial", str(first),
                  f"trials of a session must run 1, 2, … with no gaps (expected "
                  f"{expected[np.flatnonzero(numbers != expected)[0]]})")


@dataclass(frozen=True)
class TrialFiles:
    """What :func:`load_trial_files` read: the trials, and the files that hold none (only a header)."""

    trials: pd.DataFrame
    empty: tuple[Path, ...]


#: A BIDS trial file's participant and session, from its name.
_SESSION_NAME = re.compile(r"sub-(?P<participant>[A-Za-z0-9]+)_ses-(?P<session>[0-9]+)_")


def session_of(file: Path) -> tuple[str, int | str]:
    """``(participant, session)`` of a trial file by its BIDS name (``n/a`` for a name without them)."""
    found = _SESSION_NAME.match(file.name)
    return (found["participant"], int(found["session"])) if found else (MISSING, MISSING)


def load_trial_files(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> TrialFiles:
    """Load and validate every trial file under ``paths``; see :func:`load_trials`.

    Returns
    -------
    TrialFiles
        The trials, and the files without a trial (a session that ended before its first
        trial): the analysis lists them among the exclusions, they never vanish unsaid.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = find_trial_files(paths)
    frames = [_read_one(f) for f in files]
    trials = pd.concat(frames, ignore_index=True)
    _check_duplicates(trials)
    return TrialFiles(trials, tuple(f for f, frame in zip(files, frames) if frame.empty))


def load_trials(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> pd.DataFrame:
    """Load and validate every trial file under ``paths`` into one DataFrame.

    Parameters
    ----------
    paths
        Trial files and/or folders searched recursively for ``*_beh.tsv`` (and ``*_trials.csv``).

    Returns
    -------
    pandas.DataFrame
        One row per trial: the required columns typed (ints, floats, bools), extra
        columns kept as text, plus ``source_file`` and ``source_line``.

    Raises
    ------
    TrialDataError
        On a missing column, a bad value (an α above its track's ceiling: :func:`check_alpha_ceiling`;
        NUL bytes a crash left), or a (participant, session, trial) that appears twice; the message
        names file, row and column.
    FileNotFoundError
        If a path does not exist or holds no trial files.
    """
    return load_trial_files(paths).trials


def _check_duplicates(trials: pd.DataFrame) -> None:
    key = ["participant", "session", "trial"]
    dup = trials.duplicated(key, keep="first")
    if dup.any():
        row = trials[dup].iloc[0]
        first = trials[(trials[key] == row[key]).all(axis=1)].iloc[0]
        raise TrialDataError(
            f"{row['source_file']}, row {row['source_line']}, column 'trial': duplicated "
            f"(participant, session, trial) = ({row['participant']}, {row['session']}, {row['trial']}); "
            f"first seen in {first['source_file']}, row {first['source_line']}"
        )
