"""The statistic D, its bootstrap, and the ranking of the layers (CONTRACTS.md).

D = log10 T_min − log10 T_max per participant × image × (model, layer,
weights); the control D_random = log10 T_random − log10 T_max.

Censored thresholds (reported as alpha_max, a lower bound on the true one):
substituting alpha_max keeps the value a bound, and the bound's direction
follows from the sign each threshold carries in D:

* T_min censored only → D is a **lower** bound (the layer is at least this good);
* T_max censored only → D is an **upper** bound;
* both censored → D is **unknown**: left out of the means, flagged and counted.

Every D derived from a censored threshold is kept in ``d.csv`` with its
``bound`` and counted in ``n_censored``; the means therefore understate layers
whose min direction was invisible at alpha_max (a conservative ranking).

Uncertainty: a two-level cluster bootstrap, participants resampled with
replacement, then each drawn participant's images with replacement. All layers
share every draw, so paired differences and P(rank first) come from the same
draws. Fully vectorised: ``(draws, layers)`` means from one gather.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LAYER = ["model", "layer", "weights"]
RANKING_COLUMNS = ["model", "layer", "weights", "D", "ci_low", "ci_high", "rank", "p_best",
                   "n_participants", "n_images", "n_censored"]


def _bound(low_censored: pd.Series, high_censored: pd.Series) -> pd.Series:
    """Kind of bound of log T_a − log T_b when T_a (``low``) / T_b (``high``) are censored."""
    kind = np.select([low_censored & high_censored, low_censored, high_censored],
                     ["unknown", "lower", "upper"], default="exact")
    return pd.Series(kind, index=low_censored.index)


def compute_d(thresholds: pd.DataFrame) -> pd.DataFrame:
    """D and D_random per participant × image × (model, layer, weights).

    Parameters
    ----------
    thresholds
        From :func:`analysis.psychometric.fit_thresholds` (``threshold`` and
        ``censored`` per condition).

    Returns
    -------
    pandas.DataFrame
        ``participant, image_id, model, layer, weights, D, D_bound, D_random,
        D_random_bound`` with bounds ``exact | lower | upper | unknown``; unknown
        values are NaN. A missing direction gives NaN with bound ``missing``.
    """
    keys = ["participant", "image_id", *LAYER]
    wide = thresholds.pivot_table(index=keys, columns="direction",
                                  values=["log10_threshold", "censored"], aggfunc="first")
    out = wide.index.to_frame(index=False)
    for name, other in (("D", "min"), ("D_random", "random")):
        if ("log10_threshold", other) not in wide or ("log10_threshold", "max") not in wide:
            out[name], out[f"{name}_bound"] = np.nan, "missing"
            continue
        value = (wide[("log10_threshold", other)] - wide[("log10_threshold", "max")]).to_numpy()
        present = ~np.isnan(value)
        cens_o = wide[("censored", other)].fillna(False).astype(bool)
        cens_m = wide[("censored", "max")].fillna(False).astype(bool)
        bound = _bound(cens_o, cens_m).to_numpy()
        bound = np.where(present, bound, "missing")
        out[name] = np.where(bound == "unknown", np.nan, value)
        out[f"{name}_bound"] = bound
    return out


@dataclass
class BootstrapResult:
    """Outputs of :func:`rank_layers`: the tables, and the draws behind them."""

    ranking: pd.DataFrame
    pairwise: pd.DataFrame
    control: pd.DataFrame
    draws: np.ndarray  # (n_boot, n_layers) bootstrap means of D, rows of ``ranking``


def _cells(values: np.ndarray, index: tuple[np.ndarray, ...], shape: tuple[int, int, int]):
    """Sum and count matrices (layers, participants, images) of the finite ``values``."""
    finite = np.isfinite(values)
    where = tuple(i[finite] for i in index)
    total, count = np.zeros(shape), np.zeros(shape)
    np.add.at(total, where, values[finite])
    np.add.at(count, where, 1.0)
    return total, count


def _bootstrap_means(total: np.ndarray, count: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, layers) means over participants drawn with replacement, then their images."""
    rng = np.random.default_rng(seed)
    n_layers, n_p, n_i = total.shape
    people = rng.integers(0, n_p, size=(n_boot, n_p))
    weights = rng.multinomial(n_i, np.full(n_i, 1.0 / n_i), size=(n_boot, n_p)).astype(float)
    num = np.einsum("lbpi,bpi->bl", total[:, people], weights)
    den = np.einsum("lbpi,bpi->bl", count[:, people], weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _summary(d: pd.DataFrame, column: str, layers: pd.DataFrame, index: tuple[np.ndarray, ...],
             shape: tuple[int, int, int], n_boot: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    total, count = _cells(d[column].to_numpy(dtype=float), index, shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total.sum(axis=(1, 2)) / count.sum(axis=(1, 2))
    draws = _bootstrap_means(total, count, n_boot, seed)
    lo, hi = np.nanpercentile(draws, [2.5, 97.5], axis=0)
    censored = d[f"{column}_bound"].isin(["lower", "upper", "unknown"]).to_numpy()
    table = layers.copy()
    table[column] = mean
    table["ci_low"], table["ci_high"] = lo, hi
    table["n_participants"] = (count.sum(axis=2) > 0).sum(axis=1)
    table["n_images"] = (count.sum(axis=1) > 0).sum(axis=1)
    table["n_censored"] = np.bincount(index[0][censored], minlength=shape[0])
    return table, draws


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
        ``ranking`` (CONTRACTS.md columns, best first), ``pairwise`` (every pair,
        ``a`` ranked above ``b``: diff = D_a − D_b, its CI, P(D_a > D_b)),
        ``control`` (D_random per layer with CI, same order), and the draws.
    """
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if d.empty:
        raise ValueError("no D values to rank: every layer needs max and min thresholds")
    grouped = d.groupby(LAYER, sort=True)
    li = grouped.ngroup().to_numpy()
    layers = grouped.size().index.to_frame(index=False)
    pi, participants = pd.factorize(d["participant"], sort=True)
    ii, images = pd.factorize(d["image_id"], sort=True)
    index, shape = (li, pi, ii), (len(layers), len(participants), len(images))
    ranking, draws = _summary(d, "D", layers, index, shape, n_boot, seed)
    control, _ = _summary(d, "D_random", layers, index, shape, n_boot, seed)
    best = np.argmax(np.where(np.isnan(draws), -np.inf, draws), axis=1)
    ranking["p_best"] = np.bincount(best, minlength=len(layers)) / n_boot
    ranking["rank"] = ranking["D"].rank(ascending=False, method="min").fillna(len(layers)).astype(int)
    order = np.argsort(ranking["rank"].to_numpy(), kind="stable")
    ranking = ranking.iloc[order].reset_index(drop=True)[RANKING_COLUMNS]
    draws = draws[:, order]
    control = control.iloc[order].reset_index(drop=True)
    return BootstrapResult(ranking, _pairwise(ranking, draws), control, draws)


def _pairwise(ranking: pd.DataFrame, draws: np.ndarray) -> pd.DataFrame:
    rows = []
    for a in range(len(ranking)):
        for b in range(a + 1, len(ranking)):
            diff = draws[:, a] - draws[:, b]
            lo, hi = np.nanpercentile(diff, [2.5, 97.5])
            ra, rb = ranking.iloc[a], ranking.iloc[b]
            rows.append({
                **{f"{c}_a": ra[c] for c in LAYER}, **{f"{c}_b": rb[c] for c in LAYER},
                "diff": ra["D"] - rb["D"], "ci_low": lo, "ci_high": hi,
                "p_greater": float(np.mean(diff > 0)),
            })
    columns = [f"{c}_a" for c in LAYER] + [f"{c}_b" for c in LAYER] + ["diff", "ci_low", "ci_high", "p_greater"]
    return pd.DataFrame(rows, columns=columns)
