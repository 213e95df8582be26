"""The model comparison's tables: scores with bootstrap intervals, the cross-prediction matrix, predictions.

Scores are held-out log-likelihoods (:mod:`analysis.comparison`) in bits per trial relative to the L2
baseline: (LL_m − LL_L2) / (n ln 2). Uncertainty: the crossed bootstrap of
:mod:`analysis.comparison_bootstrap` (participants and images redrawn as crossed factors), on (candidate,
participant, image) cells of held-out log-likelihood; every candidate, the ceiling and every matrix cell
share each draw, so differences and P(best) are paired. The mixture of the set's layers
(:mod:`analysis.mixture`) joins as one more candidate before the ceiling: scored, not ranked.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from eigdist_core.contract import (
    COMPARISON_COLUMNS, CONDITION_KEY, L2_MODEL, MATRIX_COLUMNS, MIXTURE, MIXTURE_COLUMNS, NOISE_CEILING,
    PREDICTION_COLUMNS, RANDOM_SOURCE, candidate_name,
)

from eigdist_core.sensitivities import SensitivityError

from .comparison import CANDIDATE, CompareOptions, Levels, by_candidate, cross_validate, folds, in_sample, levels
from .comparison_bootstrap import crossed_bootstrap_means
from .mixture import mixture, with_mixture

LN2 = np.log(2.0)
#: Random halves of the participants for the split-half reliability of the item thresholds.
SPLITS = 200
#: Scores closer than this (bits per trial) are a tie for P(best): float rounding of the same layer's s.
TIE = 1e-6


@dataclass
class Comparison:
    """Outputs of :func:`compare_models` (columns: docs/formats.md, contract ``*_COLUMNS``)."""

    comparison: pd.DataFrame
    matrix: pd.DataFrame
    predictions: pd.DataFrame
    mixture: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(MIXTURE_COLUMNS)))
    notes: list[str] = field(default_factory=list)
    draws: np.ndarray | None = None  # (n_boot, candidates + ceiling) bits vs L2, rows of ``comparison``


def compare_models(trials: pd.DataFrame, sensitivities: pd.DataFrame, thresholds: pd.DataFrame | None = None,
                   options: CompareOptions = CompareOptions()) -> Comparison:
    """Score every candidate of the sensitivity table on the lab's trials (docs/analysis.md, "Model comparison").

    Parameters
    ----------
    trials
        Trial rows after exclusions (catch trials are skipped), with ``item_id``.
    sensitivities
        The set's table (:func:`eigdist_core.sensitivities.read_table` as a frame): ``item_id``, ``model``,
        ``layer``, ``weights``, ``s`` and, where known, ``nonlinear``; the L2 baseline among the candidates.
    thresholds
        ``fits.csv`` of the same trials: the noise ceiling, the correlations and ``predictions.csv``
        (None: none of these).
    options
        Psychometric function, lapse bound, slope prior, bootstrap draws and seed.
    """
    bad = sensitivities[~(pd.to_numeric(sensitivities["s"], errors="coerce") >= 0)]
    if not bad.empty:
        row = bad.iloc[0]
        value = row["s"].item() if isinstance(row["s"], np.generic) else row["s"]
        raise SensitivityError(f"sensitivity of item {row['item_id']!r} under {row['model']}:{row['layer']} is "
                               f"{value!r}; s must be a number >= 0 (recompute the table)")
    lv = levels(trials, sensitivities, thresholds)
    cv = folds(lv.table)
    ll, _ = cross_validate(lv, cv, options)
    notes = list(cv.notes) + _zero_notes(lv)
    mix = mixture(lv, cv, options) if options.mixture else "no mixture: not asked for (CompareOptions.mixture)"
    if isinstance(mix, str):
        notes.append(mix)
    else:
        lv, sensitivities, ll = with_mixture(lv, sensitivities, ll, mix)
    pi, people = pd.factorize(lv.table["participant"], sort=True)
    ii, images = pd.factorize(lv.table["image_id"], sort=True)
    n = lv.table["n"].to_numpy(dtype=float)
    base = ll[lv.candidates.index(L2_MODEL)]
    delta = ll - base
    point, draws = _bits(delta, n, pi, ii, (len(people), len(images)), options)
    table = _score_table(lv, point, draws, cv.scheme)
    table["n_participants"], table["n_images"] = len(people), len(images)
    table["n_trials"] = int(n.sum())
    table = _with_correlations(table, lv, sensitivities, thresholds)
    table["n_nonlinear"] = _nonlinear_counts(lv, sensitivities)
    order = _order(table)
    notes += [note for note in [ceiling_note(table)] if note]
    matrix = _matrix(lv, delta, n, pi, ii, (len(people), len(images)), options)
    predictions = _predictions(lv, sensitivities, thresholds, options)
    mixed = pd.DataFrame(columns=list(MIXTURE_COLUMNS)) if isinstance(mix, str) else mix.table
    return Comparison(table.iloc[order].reset_index(drop=True)[list(COMPARISON_COLUMNS)], matrix, predictions,
                      mixed, notes, draws[:, order])


def _bits(delta: np.ndarray, n: np.ndarray, pi: np.ndarray, ii: np.ndarray, shape: tuple[int, int],
          options: CompareOptions) -> tuple[np.ndarray, np.ndarray]:
    """Point estimates and (n_boot, candidates) bootstrap draws of Σ delta / Σ n / ln 2 (NaN rows stay NaN)."""
    c = len(delta)
    total, count = np.zeros((c, *shape)), np.zeros((c, *shape))
    ok = np.isfinite(delta).all(axis=1)
    for j in np.flatnonzero(ok):
        np.add.at(total[j], (pi, ii), delta[j])
        np.add.at(count[j], (pi, ii), n)
    with np.errstate(invalid="ignore", divide="ignore"):
        point = np.where(ok, total.sum(axis=(1, 2)) / count.sum(axis=(1, 2)), np.nan) / LN2
        draws = crossed_bootstrap_means(total, count, options.n_boot, options.seed) / LN2
    draws[:, ~ok] = np.nan
    return point, draws


def _percentiles(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():  # a candidate without a score (no ceiling) gives NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(draws, [2.5, 97.5], axis=0)
    return lo, hi


def _score_table(lv: Levels, point: np.ndarray, draws: np.ndarray, scheme: str) -> pd.DataFrame:
    """bits, interval, explainable fraction, P(best), rank and at_ceiling of every candidate and the ceiling.

    The mixture is scored, not ranked: rank and P(best) compare single models.
    """
    table = pd.DataFrame(lv.candidates, columns=CANDIDATE)
    table["bits"] = point
    table["ci_low"], table["ci_high"] = _percentiles(draws)
    ceiling = len(lv.candidates) - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        table["explainable"] = point / point[ceiling]
        table["explainable_low"], table["explainable_high"] = _percentiles(draws / draws[:, [ceiling]])
    defined = ceiling_above_l2(point[ceiling], table["ci_low"].iloc[ceiling])
    if not defined:
        table[["explainable", "explainable_low", "explainable_high"]] = np.nan
    single = np.array([c != MIXTURE for c in lv.candidates[:ceiling]])
    scored = np.isfinite(point[:ceiling]) & single
    p_best = share_of_best(np.where(single, draws[:, :ceiling], np.nan))
    table["p_best"] = np.append(np.where(scored, p_best, np.nan), np.nan)
    rank = pd.Series(np.where(scored, point[:ceiling], np.nan)).rank(ascending=False, method="min")
    table["rank"] = pd.array(np.append(rank.to_numpy(), np.nan), dtype="Float64").astype("Int64")
    # a ceiling not reliably above L2 puts L2 itself "at the ceiling": no candidate is, then
    table["at_ceiling"] = np.append(defined & (point[:ceiling] >= table["ci_low"].iloc[ceiling]), False)
    table["cv"] = scheme
    return table


def ceiling_above_l2(bits: float, low: float) -> bool:
    """Whether the explainable fraction is defined: the ceiling's gain over L2 and its interval's lower end > 0.

    By Fieller's theorem the confidence set of a ratio D_m / D_c is a bounded interval only when the
    denominator is significantly non-zero (D_c² / var D_c > z², the ceiling's interval excludes 0);
    otherwise it is the whole line or two rays, and the point estimate flips sign with D_c
    (docs/analysis.md, "Scores"). NaN (no ceiling) is not above.
    """
    return bool(bits > 0 and low > 0)


def ceiling_note(comparison: pd.DataFrame) -> str:
    """The note saying why ``explainable`` is empty: no ceiling, or one not reliably above L2 ("" when the
    fraction is defined); from ``comparison.csv`` (the ceiling's row)."""
    row = comparison[comparison["model"] == NOISE_CEILING].iloc[0]
    if not np.isfinite(row["bits"]):
        return "no noise ceiling: it needs thresholds of two or more participants (explainable fraction n/a)"
    if ceiling_above_l2(row["bits"], row["ci_low"]):
        return ""
    return (f"explainable fraction n/a: the noise ceiling, {row['bits']:+.3f} bits per trial vs L2 "
            f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}], is not reliably above the L2 baseline, so "
            "(LL_m − LL_L2)/(LL_ceiling − LL_L2) has no bounded interval; the ceiling is each participant's "
            f"prediction from the other participants' thresholds ({int(row['n_participants'])} participants "
            "here): more observers or more trials per stimulus would make it reliable")


def share_of_best(models: np.ndarray) -> np.ndarray:
    """P(best) of each candidate (columns) over bootstrap draws (rows); candidates tied at the top of a draw
    (within :data:`TIE` bits per trial) share it, so a layer listed twice splits its P(best) in two."""
    scores = np.where(np.isfinite(models), models, -np.inf)
    top = scores >= scores.max(axis=1, keepdims=True) - TIE
    return (top / top.sum(axis=1, keepdims=True)).mean(axis=0)


def _order(table: pd.DataFrame) -> np.ndarray:
    """Ranked candidates first (best first), the mixture and unscored ones, the ceiling last."""
    key = table["rank"].astype("Float64").fillna(len(table)).to_numpy(dtype=float)
    key[-1] = len(table) + 1
    return np.argsort(key, kind="stable")


def _zero_notes(lv: Levels) -> list[str]:
    notes = []
    for c, cand in enumerate(lv.candidates[:-1]):
        zero = lv.table.loc[lv.h[c] == -np.inf, "item_id"].nunique()
        if zero:
            notes.append(f"{candidate_name(*cand)} predicts {zero} item(s) invisible (s = 0): their trials are "
                         "scored at chance for it")
    return notes


def _nonlinear_counts(lv: Levels, sensitivities: pd.DataFrame) -> list:
    """Items of the lab flagged ``nonlinear`` under each candidate (NaN for the ceiling)."""
    if "nonlinear" not in sensitivities:
        return [np.nan] * len(lv.candidates)
    shown = sensitivities[sensitivities["item_id"].isin(set(lv.table["item_id"]))]
    flagged = shown[shown["nonlinear"].astype(bool)].groupby(CANDIDATE, sort=False)["item_id"].nunique()
    return [int(flagged.get(c, 0)) for c in lv.candidates[:-1]] + [np.nan]


def _item_thresholds(lv: Levels, thresholds: pd.DataFrame) -> pd.DataFrame:
    """log10 thresholds per participant × item (finite ones), with the item id."""
    items = lv.table[[*CONDITION_KEY, "item_id", "source"]].drop_duplicates()
    t = thresholds.merge(items, on=list(CONDITION_KEY))
    t = t.assign(log10=np.log10(pd.to_numeric(t["threshold"], errors="coerce")))
    return t[np.isfinite(t["log10"])]


def _with_correlations(table: pd.DataFrame, lv: Levels, sensitivities: pd.DataFrame,
                       thresholds: pd.DataFrame | None) -> pd.DataFrame:
    """Spearman and Pearson r of −½ log10 s against the mean log10 threshold across items; split-half ceiling."""
    table["spearman"] = table["pearson"] = table["r_ceiling"] = np.nan
    if thresholds is None:
        return table
    t = _item_thresholds(lv, thresholds)
    mean = t.groupby("item_id")["log10"].mean()
    s = by_candidate(sensitivities)
    for c, cand in enumerate(lv.candidates[:-1]):
        with np.errstate(divide="ignore"):
            pred = -0.5 * np.log10(s[cand].reindex(mean.index).to_numpy(dtype=float))
        ok = np.isfinite(pred) & np.isfinite(mean.to_numpy())
        if ok.sum() >= 3 and np.ptp(pred[ok]) > 1e-6:  # L2 predicts one threshold: no correlation
            table.loc[c, "spearman"] = stats.spearmanr(pred[ok], mean.to_numpy()[ok])[0]
            table.loc[c, "pearson"] = stats.pearsonr(pred[ok], mean.to_numpy()[ok])[0]
    table["r_ceiling"] = _split_half(t)
    return table


def _split_half(t: pd.DataFrame, seed: int = 0) -> float:
    """Spearman–Brown corrected split-half correlation of the item means (random halves of participants)."""
    wide = t.pivot_table(index="participant", columns="item_id", values="log10", aggfunc="first").to_numpy()
    if len(wide) < 2 or wide.shape[1] < 3:
        return np.nan
    rng = np.random.default_rng(seed)
    rs = []
    for _ in range(SPLITS):
        half = rng.permutation(len(wide)) < len(wide) // 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            a, b = np.nanmean(wide[half], axis=0), np.nanmean(wide[~half], axis=0)
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() >= 3 and np.ptp(a[ok]) > 0 and np.ptp(b[ok]) > 0:
            rs.append(np.corrcoef(a[ok], b[ok])[0, 1])
    r = float(np.mean(rs)) if rs else np.nan
    return 2 * r / (1 + r) if np.isfinite(r) and r > -1 else np.nan


def _matrix(lv: Levels, delta: np.ndarray, n: np.ndarray, pi: np.ndarray, ii: np.ndarray, shape: tuple[int, int],
            options: CompareOptions) -> pd.DataFrame:
    """Bits per trial vs L2 of every candidate on the trials of each source (a layer's max/min items, random)."""
    rows = []
    present = set(lv.table["source"])
    # the candidates' own stimuli in candidate order (the diagonal), then any other layer's, random last
    sources = [s for s in (candidate_name(*c) for c in lv.candidates[:-1]) if s in present]
    sources += sorted(present - set(sources) - {RANDOM_SOURCE}) + [RANDOM_SOURCE] * (RANDOM_SOURCE in present)
    for source in sources:
        mine = (lv.table["source"] == source).to_numpy()
        point, draws = _bits(np.where(mine, delta, 0.0), np.where(mine, n, 0.0), pi, ii, shape, options)
        lo, hi = _percentiles(draws)
        for c, cand in enumerate(lv.candidates[:-1]):
            rows.append((*cand, source, point[c], lo[c], hi[c], int(n[mine].sum())))
    return pd.DataFrame(rows, columns=list(MATRIX_COLUMNS))


def _predictions(lv: Levels, sensitivities: pd.DataFrame, thresholds: pd.DataFrame | None,
                 options: CompareOptions) -> pd.DataFrame:
    """Each candidate's threshold k_m,p/√s per participant × item (k fitted on all of p's trials) beside the fit."""
    if thresholds is None:
        return pd.DataFrame(columns=list(PREDICTION_COLUMNS))
    fold = in_sample(lv.table)
    model_levels = Levels(lv.table, lv.candidates[:-1], lv.h[:-1], lv.guess)
    _, thetas = cross_validate(model_levels, fold, options)
    t = _item_thresholds(lv, thresholds).reset_index(drop=True)
    t = t.rename(columns={c: f"item_{c}" for c in ("model", "layer", "weights")})
    person = {p: f for f, p in enumerate(fold.names)}
    s = by_candidate(sensitivities)
    frames = []
    for c, cand in enumerate(model_levels.candidates):
        sc = s[cand].reindex(t["item_id"]).to_numpy(dtype=float)
        log_k = thetas[c][t["participant"].map(person).to_numpy(), 0]
        with np.errstate(divide="ignore"):
            predicted = np.exp(log_k - 0.5 * np.log(sc))
        frames.append(t.assign(model=cand[0], layer=cand[1], weights=cand[2], predicted=predicted, s=sc))
    out = pd.concat(frames, ignore_index=True)
    out["censored"] = out["censored"].astype(bool) if "censored" in out else False
    return out[list(PREDICTION_COLUMNS)]
