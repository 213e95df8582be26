"""Which trials the fits see, and why the others do not.

Every exclusion is reported with its reason in a plain table, so the report
says exactly what was left out: empty sessions (a trial file with only its
header), practice trials, uncalibrated (``--pilot``) sessions, participants who
failed the easy catch trials, and simulated observers when humans are present
(never mixed unless asked for).

The easy-catch score counts only the catches that are visible by
construction (:func:`attention_catches`): a catch that a model-consistent
observer cannot see (a ``min`` direction invisible below its ceiling) says
nothing about attention and must not exclude anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from eigdist_core.contract import EASY_CATCH_DIRECTION, MISSING
from eigdist_core.errors import EigdistError

from .load import session_of

EXCLUSION_COLUMNS = ("participant", "session", "observer", "reason", "n_trials")


@dataclass(frozen=True)
class ExclusionRules:
    """Settings of :func:`apply_exclusions`.

    Attributes
    ----------
    include_pilot
        Keep sessions run without a calibrated display (``calibrated`` false).
    observers
        ``"auto"``: humans when any human rows exist, otherwise the simulated
        observers; ``"human"``, ``"simulated"`` or ``"all"`` (mix them).
    min_catch_accuracy
        Participants whose accuracy on :func:`attention_catches` is below this are excluded.
    """

    include_pilot: bool = False
    observers: str = "auto"
    min_catch_accuracy: float = 0.9

    def __post_init__(self) -> None:
        if self.observers not in ("auto", "human", "simulated", "all"):
            raise EigdistError(
                f"observers must be auto, human, simulated or all, got {self.observers!r}"
            )
        if not 0.0 <= self.min_catch_accuracy <= 1.0:
            raise EigdistError(f"min_catch_accuracy must lie in [0, 1], got {self.min_catch_accuracy}")


def attention_catches(trials: pd.DataFrame) -> pd.Series:
    """Which rows are easy catches visible by construction: the ones the attention score uses.

    An easy catch on a ``max`` direction whose α lies below the row's ``alpha_ceiling``: the
    experiment showed ``easy_factor`` × a data-based threshold estimate there, far above
    threshold (:mod:`experiments.engine`). An easy catch shown at the ceiling (no room above the
    estimate, or no estimate yet) and, in files of the first format, one on a ``min`` or
    ``random`` direction, may be invisible to an attentive observer and is not scored.
    """
    easy = (trials["catch_type"] == "easy") & (trials["direction"] == EASY_CATCH_DIRECTION)
    return easy & (trials["alpha"] < trials["alpha_ceiling"])


def _report(rows: pd.DataFrame, reason: str) -> pd.DataFrame:
    grouped = rows.groupby(["participant", "session", "observer"], sort=True).size()
    table = grouped.rename("n_trials").reset_index()
    table.insert(3, "reason", reason)
    return table


def apply_exclusions(trials: pd.DataFrame, rules: ExclusionRules = ExclusionRules(),
                     empty: Sequence[Path] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop the trials the fits must not see.

    Parameters
    ----------
    trials
        Rows from :func:`analysis.load.load_trials`.
    rules
        What to keep.
    empty
        Trial files without a trial (:attr:`analysis.load.TrialFiles.empty`): each is listed as
        an excluded session (0 trials), so a session never vanishes from the report unsaid.

    Returns
    -------
    kept, excluded
        The remaining trials (catch trials included; the fits skip them) and a
        table with columns ``participant, session, observer, reason, n_trials``,
        one row per excluded session part and reason.
    """
    reports = [pd.DataFrame([{"participant": p, "session": s, "observer": MISSING, "n_trials": 0,
                              "reason": f"empty session: {file} holds no trial (only its header)"}
                             for file in empty for p, s in [session_of(Path(file))]],
                            columns=list(EXCLUSION_COLUMNS))] if empty else []

    def drop(mask: pd.Series, reason: str) -> None:
        nonlocal trials
        if mask.any():
            reports.append(_report(trials[mask], reason))
            trials = trials[~mask]

    drop(trials["is_practice"], "practice trial")
    if not rules.include_pilot:
        drop(~trials["calibrated"], "uncalibrated session (--pilot); include with --include-pilot")
    human = trials["observer"] == "human"
    wanted = rules.observers
    if wanted == "auto":
        wanted = "human" if human.any() else "simulated"
    if wanted == "human":
        drop(~human, "simulated observer (kept apart from humans; include with --observers)")
    elif wanted == "simulated":
        drop(human, "human observer (analysing simulated observers only)")
    accuracy = trials[attention_catches(trials)].groupby("participant")["correct"].mean()
    failed = accuracy.index[accuracy < rules.min_catch_accuracy]
    for participant in failed:
        drop(trials["participant"] == participant,
             f"easy-catch accuracy {accuracy[participant]:.2f} < {rules.min_catch_accuracy:g}")
    excluded = (pd.concat(reports, ignore_index=True) if reports
                else pd.DataFrame(columns=list(EXCLUSION_COLUMNS)))
    return trials.reset_index(drop=True), excluded
