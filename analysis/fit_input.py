"""The trial rows the threshold fits take: checked, typed, and pooled into counts per condition and α.

:func:`validate_trials` keeps the non-catch rows and refuses anything the fits cannot use, naming
the first bad row (and its file and line), its value and what is allowed; :func:`pool_levels`
counts trials and correct answers per (condition, α). Both serve every fitter
(:mod:`analysis.psychometric`, :mod:`analysis.psignifit_fit`) and the model comparison.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from eigdist_core.contract import TRACK_KEY

from .load import TrialDataError

#: Columns the fits need.
FIT_COLUMNS = (*TRACK_KEY, "alpha", "correct", "n_alternatives", "is_catch")
#: The per-condition α ceiling (the track's maximum, min of the set's alpha_max and the item's
#: alpha_displayable_max) in trial rows, thresholds.csv and fits.csv; LEGACY_CEILING is its first name.
CEILING = "alpha_ceiling"
LEGACY_CEILING = "alpha_max"


def _where(trials: pd.DataFrame, i: int) -> str:
    """'trial row <index>' and, when known, the file and line it came from."""
    row = trials.iloc[i]
    origin = f" ({row['source_file']}, row {row['source_line']})" if "source_file" in trials else ""
    return f"trial row {trials.index[i]!r}{origin}"


def _show(value: object) -> str:
    """A cell as the user wrote it: numpy scalars as plain Python values."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _bool_column(trials: pd.DataFrame, column: str) -> np.ndarray:
    """A column of True/False (bools or 0/1); anything else raises naming the first bad row."""
    if trials[column].dtype == bool:
        return trials[column].to_numpy()
    values = trials[column].to_numpy(dtype=object)
    ok = np.array([isinstance(v, (bool, np.bool_)) or (type(v) in (int, float, np.int64, np.float64) and v in (0, 1))
                   for v in values], dtype=bool)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise TrialDataError(f"{_where(trials, i)}, column {column!r}: bad value {_show(values[i])}; "
                             "allowed: True or False (or 1 / 0)")
    return values.astype(bool)


def _number_column(trials: pd.DataFrame, column: str, ok, allowed: str) -> np.ndarray:
    """A numeric column whose values pass ``ok``; else an error naming row, value and what is allowed."""
    values = pd.to_numeric(trials[column], errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        good = np.isfinite(values) & ok(values)
    if not good.all():
        i = int(np.flatnonzero(~good)[0])
        raise TrialDataError(f"{_where(trials, i)}, column {column!r}: bad value {_show(trials[column].iat[i])}; "
                             f"allowed: {allowed}")
    return values


def validate_trials(trials: pd.DataFrame, alpha_max: float | None = None) -> pd.DataFrame:
    """The non-catch trials, typed, after checking everything the fits rely on.

    Raises
    ------
    TrialDataError
        Naming the missing column, or the first bad row (and its file and line
        when the rows came from :func:`analysis.load.load_trials`), its value and
        what is allowed; or that no trials are left to fit.
    """
    if not isinstance(trials, pd.DataFrame):
        raise TrialDataError(f"trials must be a pandas DataFrame of trial rows, got {type(trials).__name__}")
    missing = [c for c in FIT_COLUMNS if c not in trials]
    if missing:
        raise TrialDataError(f"trials lack column(s) {', '.join(missing)}; the fits need {', '.join(FIT_COLUMNS)}")
    if trials.empty:
        raise TrialDataError("no trials to fit: the table has no rows")
    catch = _bool_column(trials, "is_catch")
    data = trials[~catch].copy()
    if data.empty:
        raise TrialDataError(f"no trials to fit: all {len(trials)} rows are catch trials")
    data["is_catch"] = False
    data["correct"] = _bool_column(data, "correct")
    data["alpha"] = _number_column(data, "alpha", lambda v: v > 0, "a finite number > 0 on non-catch trials")
    data["n_alternatives"] = _number_column(
        data, "n_alternatives", lambda v: (v >= 2) & (v == np.round(v)),
        "an integer >= 2 (the guess rate 1 / n_alternatives must be below 1)").astype(int)
    if alpha_max is not None and not (np.isfinite(alpha_max) and alpha_max > 0):
        raise TrialDataError(f"alpha_max must be a finite number > 0, got {alpha_max!r}")
    if CEILING not in data and LEGACY_CEILING in data:  # tables of the first format
        data = data.rename(columns={LEGACY_CEILING: CEILING})
    if CEILING not in data and alpha_max is None:
        raise TrialDataError(f"the α ceiling is unknown: give alpha_max, or an {CEILING} column in the trials")
    if alpha_max is not None:  # fills the rows that recorded no ceiling
        recorded = pd.to_numeric(data[CEILING], errors="coerce") if CEILING in data else np.nan
        data[CEILING] = pd.Series(recorded, index=data.index, dtype=float).fillna(float(alpha_max))
    data[CEILING] = _number_column(data, CEILING, lambda v: v > 0, "a finite number > 0")
    return data


def pool_levels(data: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-condition summary and per-(condition, α) counts of validated non-catch trials."""
    keys = list(TRACK_KEY)
    alts = data.groupby(keys, sort=True)["n_alternatives"].nunique()
    if (alts > 1).any():
        bad = alts[alts > 1].index[0]
        raise TrialDataError(f"condition {dict(zip(keys, bad))} mixes 2- and 3-alternative trials; "
                             "fit them as separate conditions")
    conditions = data.groupby(keys, sort=True).agg(
        n_alternatives=("n_alternatives", "first"), n_trials=("correct", "size"), **{CEILING: (CEILING, "max")}
    ).reset_index()
    levels = data.groupby(keys + ["alpha"], sort=True).agg(
        n=("correct", "size"), k=("correct", "sum")
    ).reset_index()
    levels = levels.merge(conditions[keys].reset_index(names="cond"), on=keys)
    return conditions, levels
