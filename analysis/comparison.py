"""Every layer judges every stimulus: cross-validated trial-level scores of candidate models.

Each candidate m (every layer of the set, extra models, the L2 baseline) predicts every trial:
P(correct | α, v) = γ + (1 − γ − λ) F(α / T_m(v); β), the project's one psychometric function
(:mod:`eigdist_core.psychometric_function`), with T_m(v) = k_m / √s_m(v), s_m(v) = vᵀF_m v from the
set's sensitivity table. In log units ln α − ln T = (ln α + ½ ln s) − ln k: so a candidate is the
threshold fit of :mod:`analysis.fitting` on the shifted levels x = ln α + ½ ln s, with θ = (ln k,
ln β, λ) and the same slope prior and lapse bound as the threshold fits. One θ per training fold.

Cross-validation (:func:`folds`): leave-one-image-out within each participant when every participant
saw at least two images (scheme ``image``: θ per participant, fitted on their other images, scores
their trials at the held-out image); else leave-one-participant-out when there are two or more
(``observer``: θ fitted on the others' pooled trials); else in-sample only (``none``, said in the
notes). Items with s = 0 are predicted at chance (P = γ whatever θ), so they enter the score, not
the fit.

The noise ceiling is one more candidate, whose ½ ln s for participant p at item i is −ℓ₋ₚ,ᵢ, the
mean ln threshold of the *other* participants at that item (``fits.csv``): a free threshold per
stimulus fitted on the other observers, scored by the same folds. It needs two participants.

The scores, the bootstrap and the tables are :mod:`analysis.comparison_tables`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from eigdist_core.contract import CONDITION_KEY, L2_MODEL, NOISE_CEILING, RANDOM_SOURCE, candidate_name

from . import fitting
from .load import TrialDataError
from .psychometric import SLOPE_PRIOR, SPREAD_BOUNDS, validate_trials

CANDIDATE = ["model", "layer", "weights"]
SCHEMES = ("image", "observer", "none")
#: The ceiling's row in the candidate list.
CEILING = (NOISE_CEILING, "", "")


@dataclass(frozen=True)
class CompareOptions:
    """The psychometric function and fit settings (as the threshold fits have them), the bootstrap, and whether
    to fit the mixture of the set's layers (``False``: the single candidates only, as simulated labs that
    check their ranking need; the mixture is scored, not ranked, so the ranking is the same)."""

    function: str = "weibull"
    max_lapse: float = 0.06
    slope_prior: bool = True
    n_boot: int = 2000
    seed: int = 0
    max_iter: int = 300
    mixture: bool = True


@dataclass
class Levels:
    """The lab's non-catch trials pooled per (participant, item, α), with every candidate's ½ ln s.

    Attributes
    ----------
    table
        One row per level: participant, item_id, the item's condition key, ``source``, alpha, n, k.
    candidates
        (model, layer, weights) of each candidate, the L2 baseline among them, the ceiling last.
    h
        (candidates, levels): ½ ln s of the level's item (−inf where s = 0; the ceiling's row NaN
        where it cannot be formed).
    guess
        1 / n_alternatives of the lab.
    """

    table: pd.DataFrame
    candidates: list[tuple[str, str, str]]
    h: np.ndarray
    guess: float


def levels(trials: pd.DataFrame, sensitivities: pd.DataFrame, thresholds: pd.DataFrame | None) -> Levels:
    """Pool the trials and attach every candidate's prediction (see :class:`Levels`).

    Raises
    ------
    TrialDataError
        A trial whose item is not in the sensitivity table (naming its file and row), a table without the
        L2 baseline, a lab that mixes 2- and 3-alternative tasks.
    """
    data = validate_trials(trials, alpha_max=None if "alpha_ceiling" in trials else 1.0)  # the ceiling plays no part
    if "item_id" not in data:
        raise TrialDataError("trials lack column item_id; the comparison joins trials to the sensitivity table by it")
    known = set(sensitivities["item_id"])
    unknown = ~data["item_id"].isin(known)
    if unknown.any():
        row = data[unknown].iloc[0]
        where = f"{row['source_file']}, row {row['source_line']}: " if "source_file" in data else ""
        raise TrialDataError(f"{where}item {row['item_id']!r} is not in the stimulus set's sensitivity table "
                             f"({int(unknown.sum())} trial(s)); recompute the table ('eigdist stimuli sensitivities DIR') "
                             "or analyse these trials with their own set")
    alts = data["n_alternatives"].unique()
    if len(alts) > 1:
        raise TrialDataError(f"the lab mixes {sorted(int(a) for a in alts)} alternatives; the comparison fits one "
                             "psychometric function per candidate: compare each task on its own")
    keys = ["participant", "item_id", *CONDITION_KEY, "alpha"]
    table = data.groupby(keys, sort=True).agg(n=("correct", "size"), k=("correct", "sum")).reset_index()
    table["source"] = np.where(table["direction"] == "random", RANDOM_SOURCE,
                               [candidate_name(*c) for c in table[CANDIDATE].itertuples(index=False)])
    candidates = list(dict.fromkeys(sensitivities[CANDIDATE].itertuples(index=False, name=None)))
    if L2_MODEL not in candidates:
        raise TrialDataError("the sensitivity table has no L2 baseline (model l2, layer pixels, weights none)")
    s = by_candidate(sensitivities)
    h = np.empty((len(candidates) + 1, len(table)))
    with np.errstate(divide="ignore"):
        for c, cand in enumerate(candidates):
            h[c] = 0.5 * np.log(s[cand].reindex(table["item_id"]).to_numpy(dtype=float))
    h[-1] = _ceiling_h(table, thresholds)
    return Levels(table, [*candidates, CEILING], h, 1.0 / float(alts[0]))


def by_candidate(sensitivities: pd.DataFrame) -> dict[tuple[str, str, str], pd.Series]:
    """s of each candidate (model, layer, weights), indexed by item_id."""
    return {cand: frame.set_index("item_id")["s"].astype(float)
            for cand, frame in sensitivities.groupby(CANDIDATE, sort=False)}


def _ceiling_h(table: pd.DataFrame, thresholds: pd.DataFrame | None) -> np.ndarray:
    """−ℓ₋ₚ,ᵢ per level: minus the mean ln threshold of the other participants at the item (NaN: no ceiling).

    An item no other participant has a finite threshold for gets the mean of the participant's other
    items (an uninformative prediction).
    """
    if thresholds is None or thresholds["participant"].nunique() < 2:
        return np.full(len(table), np.nan)
    t = thresholds.merge(table[[*CONDITION_KEY, "item_id"]].drop_duplicates(), on=list(CONDITION_KEY))
    t = t.assign(ln=np.log(pd.to_numeric(t["threshold"], errors="coerce")))
    wide = t.pivot_table(index="participant", columns="item_id", values="ln", aggfunc="first")
    wide = wide.where(np.isfinite(wide))
    own = wide.to_numpy()
    present = np.isfinite(own)
    total, count = np.nansum(own, axis=0), present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a participant whose items no one else has: NaN
        loo = (total - np.where(present, own, 0.0)) / (count - present)
        loo = np.where(np.isfinite(loo), loo, np.nanmean(np.where(np.isfinite(loo), loo, np.nan), axis=1)[:, None])
    frame = pd.DataFrame(-loo, index=wide.index, columns=wide.columns).stack().rename("h").reset_index()
    return table.merge(frame, on=["participant", "item_id"], how="left")["h"].to_numpy(dtype=float)


@dataclass
class Folds:
    """Training and test levels of each fold, and the scheme that made them.

    ``test`` partitions the levels (each level is scored once); ``fold`` names each fold's held-out part.
    """

    scheme: str
    train: list[np.ndarray]
    test: list[np.ndarray]
    names: list[str]
    notes: list[str]


def folds(table: pd.DataFrame) -> Folds:
    """The cross-validation folds the design allows (module docstring): ``image``, ``observer`` or ``none``."""
    people = table["participant"].to_numpy()
    images = table["image_id"].to_numpy()
    per_person = table.groupby("participant")["image_id"].nunique()
    notes = []
    if (per_person >= 2).all():
        train, test, names = [], [], []
        for p in per_person.index:
            mine = people == p
            for j in np.unique(images[mine]):
                train.append(np.flatnonzero(mine & (images != j)))
                test.append(np.flatnonzero(mine & (images == j)))
                names.append(f"{p}/{j}")
        return Folds("image", train, test, names, notes)
    lonely = ", ".join(per_person.index[per_person < 2][:3])
    notes.append(f"leave-one-image-out needs two images per participant ({lonely} saw one)")
    if len(per_person) >= 2:
        notes.append("scored leave-one-participant-out instead (one psychometric function fitted on the others)")
        return Folds("observer", [np.flatnonzero(people != p) for p in per_person.index],
                     [np.flatnonzero(people == p) for p in per_person.index], list(per_person.index), notes)
    notes.append("nothing can be cross-validated with one participant and one image: the scores are in-sample "
                 "log-likelihoods (they favour flexible models) and there is no noise ceiling")
    return in_sample(table, notes)


def in_sample(table: pd.DataFrame, notes: list[str] | None = None) -> Folds:
    """One fold per participant, trained and scored on all of their levels (predictions.csv, or no CV)."""
    people = table["participant"].to_numpy()
    index = [np.flatnonzero(people == p) for p in pd.unique(people)]
    return Folds("none", index, index, list(pd.unique(people)), notes or [])


def fit_folds(lv: Levels, h: np.ndarray, train: list[np.ndarray], options: CompareOptions) -> np.ndarray:
    """θ = (ln k, ln β, λ) of one candidate (its ½ ln s per level: ``h``) on each training fold; NaN rows where
    a fold holds no level with s > 0."""
    idx, valid = padded(train)
    x = np.log(lv.table["alpha"].to_numpy())[idx] + h[idx]
    valid &= np.isfinite(x)
    n = np.where(valid, lv.table["n"].to_numpy(dtype=float)[idx], 0.0)
    k = np.where(valid, lv.table["k"].to_numpy(dtype=float)[idx], 0.0)
    x = np.where(valid, x, 0.0)
    empty = ~valid.any(axis=1)
    x_lo = np.where(valid, x, np.inf).min(axis=1)
    x_hi = np.where(valid, x, -np.inf).max(axis=1)
    x_lo, x_hi = np.where(empty, 0.0, x_lo), np.where(empty, 0.0, x_hi)
    c = len(train)
    lo_s, hi_s = SPREAD_BOUNDS[options.function]
    lower = np.stack([x_lo - 3.0, np.full(c, lo_s), np.zeros(c)], axis=1)
    upper = np.stack([x_hi + 3.0, np.full(c, hi_s), np.full(c, options.max_lapse)], axis=1)
    prior = SLOPE_PRIOR[options.function] if options.slope_prior else None
    batch = fitting.Batch(x, n, k, np.full(c, lv.guess), lower, upper, options.function, prior)
    theta, _, _ = fitting.fit(batch, options.max_iter, _start(batch, options))
    theta[empty] = np.nan
    return theta


def padded(index: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The level indices of each row, padded to one width (rows, width), and which entries are real."""
    idx = np.zeros((len(index), max(len(t) for t in index)), dtype=int)
    valid = np.zeros(idx.shape, dtype=bool)
    for f, t in enumerate(index):
        idx[f, : len(t)], valid[f, : len(t)] = t, True
    return idx, valid


def _start(batch: fitting.Batch, options: CompareOptions) -> np.ndarray:
    """Best ln k of a grid over the tested range, at the prior's slope and a small lapse (shift-equivariant)."""
    x_lo, x_hi = batch.lower[:, 0] + 3.0, batch.upper[:, 0] - 3.0
    spread = SLOPE_PRIOR[options.function][0]
    best, best_obj = np.zeros((len(x_lo), 3)), np.full(len(x_lo), -np.inf)
    for f in np.linspace(-0.2, 1.2, 29):
        theta = np.stack([x_lo + f * (x_hi - x_lo), np.full(len(x_lo), spread),
                          np.full(len(x_lo), min(0.02, options.max_lapse))], axis=1)
        theta = np.clip(theta, batch.lower, batch.upper)
        obj = fitting.objective(batch, theta)
        better = obj > best_obj
        best[better], best_obj[better] = theta[better], obj[better]
    return best


def score_levels(lv: Levels, h: np.ndarray, theta: np.ndarray, cv: Folds, function: str) -> np.ndarray:
    """Held-out log-likelihood (nats) of every level, each under the θ of the fold that held it out."""
    out = np.full(len(lv.table), np.nan)
    log_alpha = np.log(lv.table["alpha"].to_numpy())
    n, k = lv.table["n"].to_numpy(dtype=float), lv.table["k"].to_numpy(dtype=float)
    for f, test in enumerate(cv.test):
        x = log_alpha[test] + h[test]
        p, _ = fitting.curve(theta[f][None], np.where(np.isfinite(x), x, 0.0)[None], np.array([lv.guess]), function)
        p = np.where(x == -np.inf, lv.guess, p[0])
        out[test] = k[test] * np.log(p) + (n[test] - k[test]) * np.log1p(-p)
    return out


def cross_validate(lv: Levels, cv: Folds, options: CompareOptions) -> tuple[np.ndarray, list[np.ndarray]]:
    """(candidates, levels) held-out log-likelihoods and each candidate's θ per fold."""
    ll, thetas = np.full(lv.h.shape, np.nan), []
    for c in range(len(lv.candidates)):
        if np.isnan(lv.h[c]).all():
            thetas.append(np.full((len(cv.train), 3), np.nan))
            continue
        theta = fit_folds(lv, lv.h[c], cv.train, options)
        ll[c] = score_levels(lv, lv.h[c], theta, cv, options.function)
        thetas.append(theta)
    return ll, thetas
