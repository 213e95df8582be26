"""The statistic D, its bootstrap, and the ranking of the layers (docs/formats.md).

D = log10 T_min − log10 T_max per participant × image × (model, layer,
weights); the control D_random = log10 T_random − log10 T_max.

Censored thresholds are replaced by the end of the tested range and are bounds:
``censored`` (never passed threshold below its ceiling) means T ≥ alpha_ceiling,
``below_range`` (above threshold at every tested α) means T ≤ the lowest α.
A bound on T_a or T_b in D = log T_a − log T_b is a bound on D, in the
direction its sign gives:

* T_min ≥ (or T_max ≤) → D is a **lower** bound (the layer is at least this good);
* T_max ≥ (or T_min ≤) → D is an **upper** bound;
* a lower and an upper bound at once (e.g. both censored at their ceilings) → D is
  **unknown**: left out of the means, flagged and counted.

Every D derived from a bounded threshold is kept in ``d.csv`` with its
``bound`` and counted in ``n_censored``. Bounds enter the means at their
value, so a layer whose min direction stayed invisible at its ceiling is
understated, never overstated (a conservative ranking).

Uncertainty: a two-level cluster bootstrap, participants resampled with
replacement, then each drawn participant's images with replacement. All layers
share every draw, so paired differences and P(rank first) come from the same
draws. Fully vectorised: ``(draws, layers)`` means from one gather.

P(best) and P(D_a > D_b) count only the draws where they are defined: a draw
in which a compared layer has no mean (none of its drawn participant × image
cells holds a D) says nothing about the order and is left out; a tie splits
its credit equally among the tied layers (:func:`win_shares`). The number of
draws used is reported (``n_valid_draws``).

Flags: a D that involves a threshold flagged few_trials, slope_at_bound,
poor_fit or unconverged is kept (the flag questions its precision, not its
direction) but marked ``D_flagged`` and counted per layer in ``n_flagged``;
:func:`flag_summary` counts every flag per layer. A layer without any D (e.g.
no ``min`` direction, or only not-estimable thresholds) is **not estimable**:
its row stays in the ranking with ``estimable = false``, no rank and no
p_best.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from eigdist_core.contract import DIRECTIONS
from eigdist_core.errors import EigdistError

from .psychometric import FLAGS, QUALITY_FLAGS

LAYER = ["model", "layer", "weights"]
#: model/layer/weights of the pooled random-direction control row in ``control``.
ALL = "(all layers)"
RANKING_COLUMNS = ["model", "layer", "weights", "D", "ci_low", "ci_high", "rank", "p_best", "n_valid_draws",
                   "n_participants", "n_images", "n_censored", "n_flagged", "estimable"]
PAIRWISE_COLUMNS = [f"{c}_{s}" for s in "ab" for c in LAYER] + [
    "diff", "ci_low", "ci_high", "p_greater", "n_valid_draws"]
#: Below this share of valid draws the report says that P(best) rests on few draws.
MIN_VALID_SHARE = 0.9


def _bound(a_above: np.ndarray, a_below: np.ndarray, b_above: np.ndarray, b_below: np.ndarray) -> np.ndarray:
    """Kind of bound of log T_a − log T_b given which thresholds are bounds (≥: above, ≤: below)."""
    lower = a_above | b_below
    upper = a_below | b_above
    return np.select([lower & upper, lower, upper], ["unknown", "lower", "upper"], default="exact")


def compute_d(thresholds: pd.DataFrame) -> pd.DataFrame:
    """D and D_random per participant × image × (model, layer, weights).

    Parameters
    ----------
    thresholds
        From :func:`analysis.psychometric.fit_thresholds` (``log10_threshold``,
        ``censored`` and, where present, ``below_range`` per condition).

    Returns
    -------
    pandas.DataFrame
        ``participant, image_id, model, layer, weights, D, D_bound, D_flagged,
        D_random, D_random_bound, D_random_flagged`` with bounds ``exact | lower |
        upper | unknown``; unknown values are NaN. A missing direction (or a
        not-estimable threshold) gives NaN with bound ``missing``. ``*_flagged``:
        one of its thresholds carries a quality flag (:data:`QUALITY_FLAGS`).
    """
    keys = ["participant", "image_id", *LAYER]
    thresholds = thresholds[thresholds["direction"].isin(DIRECTIONS)].copy()  # a layer's own items; not contrasts'
    for column in ("below_range", *QUALITY_FLAGS):
        if column not in thresholds:
            thresholds[column] = False
    thresholds["flagged"] = thresholds[list(QUALITY_FLAGS)].astype(bool).any(axis=1)
    thresholds[["censored", "below_range", "flagged"]] = thresholds[["censored", "below_range", "flagged"]].astype(float)
    wide = thresholds.pivot_table(index=keys, columns="direction",
                                  values=["log10_threshold", "censored", "below_range", "flagged"], aggfunc="first")
    out = wide.index.to_frame(index=False)

    def flag(column: str, direction: str) -> np.ndarray:
        return wide[(column, direction)].fillna(0).to_numpy() > 0

    for name, other in (("D", "min"), ("D_random", "random")):
        if ("log10_threshold", other) not in wide or ("log10_threshold", "max") not in wide:
            out[name], out[f"{name}_bound"], out[f"{name}_flagged"] = np.nan, "missing", False
            continue
        value = (wide[("log10_threshold", other)] - wide[("log10_threshold", "max")]).to_numpy()
        bound = _bound(flag("censored", other), flag("below_range", other),
                       flag("censored", "max"), flag("below_range", "max"))
        bound = np.where(np.isnan(value), "missing", bound)
        out[name] = np.where(bound == "unknown", np.nan, value)
        out[f"{name}_bound"] = bound
        out[f"{name}_flagged"] = (bound != "missing") & (flag("flagged", other) | flag("flagged", "max"))
    return out


@dataclass
class BootstrapResult:
    """Outputs of :func:`rank_layers`: the tables, and the draws behind them."""

    ranking: pd.DataFrame
    pairwise: pd.DataFrame
    control: pd.DataFrame
    draws: np.ndarray  # (n_boot, n_layers) bootstrap means of D, rows of ``ranking``


def cell_sums(values: np.ndarray, index: tuple[np.ndarray, ...], shape: tuple[int, int, int]):
    """Sum and count matrices (layers, participants, images) of the finite ``values``.

    ``index`` holds the (layer, participant, image) codes of each value.
    """
    finite = np.isfinite(values)
    where = tuple(i[finite] for i in index)
    total, count = np.zeros(shape), np.zeros(shape)
    np.add.at(total, where, values[finite])
    np.add.at(count, where, 1.0)
    return total, count


def bootstrap_draws(n_boot: int, n_p: int, n_i: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The draws of :func:`bootstrap_means`: (n_boot, n_p) participants drawn with replacement, and
    (n_boot, n_p, n_i) multinomial multiplicities of each drawn participant's images."""
    rng = np.random.default_rng(seed)
    people = rng.integers(0, n_p, size=(n_boot, n_p))
    weights = rng.multinomial(n_i, np.full(n_i, 1.0 / n_i), size=(n_boot, n_p)).astype(float)
    return people, weights


def bootstrap_means(total: np.ndarray, count: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, layers) means over participants drawn with replacement, then their images.

    One draw picks participants with replacement and, for each drawn participant,
    images with replacement (multinomial weights); every layer sees the same draw,
    so differences between layers are paired.
    """
    people, weights = bootstrap_draws(n_boot, total.shape[1], total.shape[2], seed)
    num = np.einsum("lbpi,bpi->bl", total[:, people], weights)
    den = np.einsum("lbpi,bpi->bl", count[:, people], weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _summary(d: pd.DataFrame, column: str, layers: pd.DataFrame, index: tuple[np.ndarray, ...],
             shape: tuple[int, int, int], n_boot: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    total, count = cell_sums(d[column].to_numpy(dtype=float), index, shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total.sum(axis=(1, 2)) / count.sum(axis=(1, 2))
    draws = bootstrap_means(total, count, n_boot, seed)
    with warnings.catch_warnings():  # a layer without values (no random direction) gives NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(draws, [2.5, 97.5], axis=0)
    censored = d[f"{column}_bound"].isin(["lower", "upper", "unknown"]).to_numpy()
    table = layers.copy()
    table[column] = mean
    table["ci_low"], table["ci_high"] = lo, hi
    table["n_participants"] = (count.sum(axis=2) > 0).sum(axis=1)
    table["n_images"] = (count.sum(axis=1) > 0).sum(axis=1)
    table["n_censored"] = np.bincount(index[0][censored], minlength=shape[0])
    table["n_flagged"] = np.bincount(index[0][d[f"{column}_flagged"].to_numpy(dtype=bool)], minlength=shape[0])
    table["estimable"] = count.sum(axis=(1, 2)) > 0
    return table, draws


class NoDError(EigdistError):
    """No layer has a D: the message says why each participant × image × layer has none."""


#: Why a D is NaN, by its bound (:func:`compute_d`).
_NO_D = {
    "unknown": "both thresholds censored, i.e. outside the tested range: answers all right (below the lowest α) or "
               "all wrong (at alpha_max) over the α shown, so each threshold is only a bound; data of one answer "
               "only (e.g. responses not recorded) give this",
    "missing": "no estimable 'max' or 'min' threshold (a direction not tested, or too few α levels)",
}


def no_d_message(d: pd.DataFrame) -> str:
    """Why no D can be estimated, counted per cause (:data:`_NO_D`)."""
    head = ("no D can be estimated for any layer: D needs estimable 'max' and 'min' thresholds of the same "
            "participant × image")
    if d.empty:
        return head + "; there are no thresholds"
    counts = d["D_bound"].value_counts()
    lead = "every threshold is censored, so " if set(counts.index) == {"unknown"} else ""
    return lead + head + "; " + "; ".join(f"{counts[k]} of {len(d)} participant × image × layer have {why}"
                                          for k, why in _NO_D.items() if k in counts)


def rank_layers(d: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> BootstrapResult:
    """Rank the layers by mean D with bootstrap CIs, P(best) and paired differences.

    Parameters
    ----------
    d
        From :func:`compute_d`.
    n_boot
        Bootstrap draws (participants, then images within each).
    seed
        Seed of the draws (the same draws serve D and D_random).

    Returns
    -------
    BootstrapResult
        ``ranking`` (docs/formats.md columns, best first, then ``n_flagged`` and
        ``estimable``; not-estimable layers last, without rank or p_best; p_best over the
        ``n_valid_draws`` draws in which every ranked layer has a mean, ties split),
        ``pairwise`` (every pair, ``a`` ranked above ``b``: diff = D_a − D_b, its CI,
        P(D_a > D_b) over the draws in which both have a mean, ties counted ½),
        ``control`` (D_random per layer with CI, same order, then a row pooling
        every layer, named :data:`ALL`), and the draws.
    """
    if int(n_boot) < 1:
        raise EigdistError(f"n_boot must be >= 1, got {n_boot}")
    if d.empty or not np.isfinite(d["D"].to_numpy(dtype=float)).any():
        raise NoDError(no_d_message(d))
    grouped = d.groupby(LAYER, sort=True)
    li = grouped.ngroup().to_numpy()
    layers = grouped.size().index.to_frame(index=False)
    pi, participants = pd.factorize(d["participant"], sort=True)
    ii, images = pd.factorize(d["image_id"], sort=True)
    index, shape = (li, pi, ii), (len(layers), len(participants), len(images))
    ranking, draws = _summary(d, "D", layers, index, shape, n_boot, seed)
    control, _ = _summary(d, "D_random", layers, index, shape, n_boot, seed)
    estimable = ranking["estimable"].to_numpy()
    shares, n_valid = win_shares(draws[:, estimable])
    ranking["p_best"] = np.nan
    ranking.loc[estimable, "p_best"] = shares
    ranking["n_valid_draws"] = n_valid
    ranking["rank"] = ranking["D"].where(estimable).rank(ascending=False, method="min").astype("Int64")
    order = np.argsort(ranking["rank"].fillna(len(layers) + 1).to_numpy(), kind="stable")
    ranking = ranking.iloc[order].reset_index(drop=True)[RANKING_COLUMNS]
    draws = draws[:, order]
    # The pooled control: every layer's D_random as one sample (layer code 0 for all rows).
    pooled, _ = _summary(d, "D_random", pd.DataFrame([dict.fromkeys(LAYER, ALL)]),
                         (np.zeros_like(li), pi, ii), (1, *shape[1:]), n_boot, seed)
    control = pd.concat([control.iloc[order], pooled], ignore_index=True)
    return BootstrapResult(ranking, _pairwise(ranking, draws), control, draws)


def flag_summary(thresholds: pd.DataFrame) -> pd.DataFrame:
    """Per layer and overall: thresholds, and how many carry each flag of ``thresholds``.

    Parameters
    ----------
    thresholds
        From :func:`analysis.psychometric.fit_thresholds` (boolean flag columns).

    Returns
    -------
    pandas.DataFrame
        ``model, layer, weights, thresholds`` and one count column per flag present,
        then a row :data:`ALL` with the totals.
    """
    flags = [f for f in FLAGS if f in thresholds]
    per_layer = thresholds.groupby(LAYER, sort=True)[flags].sum().astype(int)
    per_layer.insert(0, "thresholds", thresholds.groupby(LAYER, sort=True).size())
    per_layer = per_layer.reset_index()
    total = pd.DataFrame([{**dict.fromkeys(LAYER, ALL), **per_layer.drop(columns=LAYER).sum().to_dict()}])
    return pd.concat([per_layer, total], ignore_index=True)


def win_shares(draws: np.ndarray) -> tuple[np.ndarray, int]:
    """P(each column has the highest mean) over the draws where every column has one.

    Parameters
    ----------
    draws
        ``(n_boot, k)`` bootstrap means; NaN where a draw holds no value of that column.

    Returns
    -------
    shares, n_valid
        ``shares[j]`` = Σ over valid draws of 1/|ties| if column j is among the |ties|
        columns at the draw's maximum (else 0), divided by ``n_valid``, the number of
        draws in which all k columns are finite; NaN when no draw is valid. The
        shares sum to 1.
    """
    valid = draws[np.isfinite(draws).all(axis=1)]
    if not len(valid):
        return np.full(draws.shape[1], np.nan), 0
    top = valid == valid.max(axis=1, keepdims=True)
    return (top / top.sum(axis=1, keepdims=True)).mean(axis=0), len(valid)


def _pairwise(ranking: pd.DataFrame, draws: np.ndarray) -> pd.DataFrame:
    rows = []
    ranked = int(ranking["estimable"].sum())  # estimable layers come first
    for a in range(ranked):
        for b in range(a + 1, ranked):
            diff = draws[:, a] - draws[:, b]
            diff = diff[np.isfinite(diff)]
            lo, hi = np.percentile(diff, [2.5, 97.5]) if len(diff) else (np.nan, np.nan)
            shares, n_valid = win_shares(draws[:, [a, b]])
            ra, rb = ranking.iloc[a], ranking.iloc[b]
            rows.append({
                **{f"{c}_a": ra[c] for c in LAYER}, **{f"{c}_b": rb[c] for c in LAYER},
                "diff": ra["D"] - rb["D"], "ci_low": lo, "ci_high": hi,
                "p_greater": shares[0], "n_valid_draws": n_valid,
            })
    return pd.DataFrame(rows, columns=PAIRWISE_COLUMNS)
