"""The mixture of the set's layers: s = Σ_m w_m s_m (w_m ≥ 0), scored like every other candidate.

Fisher information of independent populations adds, so an observer reading several layers sees the
item v with s(v) = Σ_m w_m s_m(v) and has the threshold 1/√s(v): the weights carry the scale k of the
single-layer candidates. The psychometric function, the slope prior, the lapse bound and the
cross-validation folds are those of :mod:`analysis.comparison`; the parameters are
θ = (0, ln β, λ, φ_1 … φ_M), the threshold position held at 0 and w_m = e^{φ_m} / g_m, where g_m is the
geometric mean of s_m over the lab's items with s_m > 0. Fitting in these per-layer units makes the
fit the same whatever unit each layer's s comes in (scaling every s_m by c only scales every g_m by c),
and e^{φ} keeps every weight positive. φ is bounded to ±:data:`SPAN` around the best equal-weight
start; each fit starts from equal weights and from each layer alone and keeps the best.

The mixture runs over the layers that made the lab's stimuli (the set's layers, not the L2 baseline
nor extra ``--models``): they are few, which keeps the fit well posed and cheap. Its weights, reported
as proportions w_m / Σ w (``mixture.csv``), come from one fit to all trials (one weight vector, slope and
lapse for the lab, as a leave-one-participant-out fold fits), their intervals from refitting the same
model on every draw of the comparison's bootstrap (participants, then their images; the draw's
multiplicities weight the trial counts), warm-started at the fit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import special

from eigdist_core.contract import L2_MODEL, MIXTURE, MIXTURE_COLUMNS, candidate_name

from . import fitting
from .comparison import CANDIDATE, CompareOptions, Folds, Levels, padded, score_levels
from .psychometric import SLOPE_PRIOR, SPREAD_BOUNDS
from .ranking import bootstrap_draws

#: φ stays within ± SPAN of the equal-weight start: e^-30 is a weight of zero for any purpose.
SPAN = 30.0
#: A single-layer start gives the other layers this φ below its own (weights e^-6 ≈ 0.25 %).
OTHERS = 6.0
#: Draws × levels × parameters per batch of bootstrap refits (memory).
CHUNK_CELLS = 4_000_000
#: The weights' intervals refit the first draws of the comparison's bootstrap, at most this many.
MAX_DRAWS = 500


@dataclass
class MixtureBatch(fitting.Batch):
    """Counts at x = ln α with ln s̃_m per level (C, K, M); θ = (0, ln spread, λ, φ_1 … φ_M)."""

    log_s: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> "MixtureBatch":
        return replace(super().take(rows), log_s=self.log_s[rows])

    def predict(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """p and ∂p/∂θ: the curve at x + ½ ln Σ e^{φ_m} s̃_m; ∂p/∂φ_m = ½ r_m ∂p/∂x, r_m the layer's share."""
        h, share = half_log_mix(self.log_s, theta[:, 3:])
        p, dp = fitting.curve(theta[:, :3], self.x + h, self.guess, self.function)
        return p, np.concatenate([dp, -0.5 * dp[..., :1] * share], axis=-1)  # ∂p/∂x = −∂p/∂(threshold)


def half_log_mix(log_s: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """½ ln Σ_m e^{φ_m} s̃_m per level (−inf where every s̃ is 0) and each layer's share of the sum."""
    top = phi.max(axis=1)  # s̃ is O(1) at typical items: the largest weight sets the scale
    e = np.exp(log_s + (phi - top[:, None])[:, None, :])
    total = e.sum(axis=-1)
    with np.errstate(divide="ignore"):
        h = 0.5 * (np.log(total) + top[:, None])
    return h, e / np.where(total > 0, total, 1.0)[..., None]


@dataclass
class Mixture:
    """The mixture candidate: its layers, held-out log-likelihood per level, and the lab's fit.

    ``h``: ½ ln s of each level at the fitted proportions (s = Σ w_m s_m, w summing to 1);
    ``s``: that s per item_id; ``table``: ``mixture.csv``; ``theta``: the all-trials fit.
    """

    layers: list[tuple[str, str, str]]
    ll: np.ndarray
    h: np.ndarray
    s: pd.Series
    table: pd.DataFrame


def layers_of(lv: Levels) -> list[tuple[str, str, str]]:
    """The candidates whose stimuli the lab showed (the set's layers), in candidate order."""
    shown = set(lv.table[CANDIDATE].itertuples(index=False, name=None))
    return [c for i, c in enumerate(lv.candidates)  # a layer that sees none of the lab's items has no weight
            if c in shown and c != L2_MODEL and np.isfinite(lv.h[i]).any()]


def mixture(lv: Levels, cv: Folds, options: CompareOptions) -> Mixture | str:
    """Cross-validate and fit the mixture of the lab's layers, or say why there is none."""
    layers = layers_of(lv)
    if len(layers) < 2:
        named = ", ".join(candidate_name(*c) for c in layers) or "none"
        return f"no mixture: the lab's stimuli come from one layer ({named}); a mixture needs two or more"
    rows = [lv.candidates.index(c) for c in layers]
    log_s = 2.0 * lv.h[rows].T  # (levels, M): ln s_m
    log_g = np.array([np.mean(c[np.isfinite(c)]) for c in log_s.T])
    log_s = log_s - log_g
    theta = fit_rows(lv, log_s, cv.train, None, options)
    h = np.full(len(lv.table), np.nan)
    for f, test in enumerate(cv.test):
        h[test] = half_log_mix(log_s[test][None], theta[f:f + 1, 3:])[0][0]
    ll = score_levels(lv, h, theta[:, :3], cv, options.function)
    everything = [np.arange(len(lv.table))]
    best = fit_rows(lv, log_s, everything, None, options)
    draws = _bootstrap(lv, log_s, best, options)
    w = _proportions(best[:, 3:], log_g)[0]
    s = np.exp(log_s + log_g) @ w
    with np.errstate(divide="ignore"):
        h_fit = 0.5 * np.log(s)
    per_item = pd.Series(s, index=lv.table["item_id"]).groupby(level=0).first()
    table = _table(layers, w, _proportions(draws, log_g), special.softmax(best[0, 3:]), special.softmax(draws, axis=-1))
    return Mixture(layers, ll, h_fit, per_item, table)


def _proportions(phi: np.ndarray, log_g: np.ndarray) -> np.ndarray:
    """w_m / Σ w of each row of φ, w_m = e^{φ_m} / g_m."""
    return special.softmax(phi - log_g, axis=-1)


def _table(layers: list, w: np.ndarray, w_draws: np.ndarray, share: np.ndarray, share_draws: np.ndarray) -> pd.DataFrame:
    """``mixture.csv``: proportions and shares with their 95 % bootstrap percentile intervals."""
    table = pd.DataFrame(layers, columns=CANDIDATE)
    table["w"], table["share"] = w, share
    table["ci_low"], table["ci_high"] = np.nanpercentile(w_draws, [2.5, 97.5], axis=0)
    table["share_low"], table["share_high"] = np.nanpercentile(share_draws, [2.5, 97.5], axis=0)
    return table[list(MIXTURE_COLUMNS)]


def fit_rows(lv: Levels, log_s: np.ndarray, index: list[np.ndarray], weight: np.ndarray | None,
             options: CompareOptions, theta0: np.ndarray | None = None) -> np.ndarray:
    """θ of the mixture on each row's levels (``index``), trial counts times ``weight`` (rows × levels) if given.

    Starts from ``theta0`` or, without it, from equal weights and from each layer alone (the best fit
    of those); NaN rows where a row holds no level that any layer sees.
    """
    idx, valid = padded(index)
    x = np.log(lv.table["alpha"].to_numpy())[idx]
    ls = log_s[idx]
    valid &= np.isfinite(ls).any(axis=-1)
    n = lv.table["n"].to_numpy(dtype=float)[idx]
    k = lv.table["k"].to_numpy(dtype=float)[idx]
    if weight is not None:
        times = weight[np.arange(len(idx))[:, None], idx]
        n, k = n * times, k * times
    n, k = np.where(valid, n, 0.0), np.where(valid, k, 0.0)
    batch = _batch(np.where(valid, x, 0.0), np.where(valid[..., None], ls, 0.0), n, k, lv.guess, options)
    empty = ~valid.any(axis=1)
    if theta0 is not None:
        theta, _, _ = fitting.fit(batch.bounded(*_bounds(theta0[:, 3:].mean(axis=1), batch, options)),
                                  options.max_iter, theta0)
    else:
        theta = _multi_start(batch, valid, options)
    theta[empty] = np.nan
    return theta


def _batch(x, log_s, n, k, guess: float, options: CompareOptions) -> MixtureBatch:
    c, m = len(x), log_s.shape[-1]
    prior = SLOPE_PRIOR[options.function] if options.slope_prior else None
    zeros = np.zeros((c, 3 + m))
    return MixtureBatch(x, n, k, np.full(c, guess), zeros, zeros, options.function, prior, log_s)


def _bounds(centre: np.ndarray, batch: MixtureBatch, options: CompareOptions) -> tuple[np.ndarray, np.ndarray]:
    """Threshold position held at 0, ln spread and λ as the threshold fits bound them, φ within ± SPAN."""
    c, m = len(centre), batch.log_s.shape[-1]
    lo_s, hi_s = SPREAD_BOUNDS[options.function]
    lower = np.column_stack([np.zeros(c), np.full(c, lo_s), np.zeros(c), np.repeat(centre[:, None] - SPAN, m, 1)])
    upper = np.column_stack([np.zeros(c), np.full(c, hi_s), np.full(c, options.max_lapse),
                             np.repeat(centre[:, None] + SPAN, m, 1)])
    return lower, upper


def _grid_shift(batch: MixtureBatch, phi: np.ndarray, valid: np.ndarray, options: CompareOptions) -> np.ndarray:
    """θ with weights e^{φ + c}: the best common shift c of a grid that puts the threshold across the tested
    range, at the prior's slope and a small lapse."""
    h, _ = half_log_mix(batch.log_s, phi)
    q = batch.x + h
    q_lo, q_hi = np.where(valid, q, np.inf).min(axis=1), np.where(valid, q, -np.inf).max(axis=1)
    q_lo, q_hi = np.where(np.isfinite(q_lo), q_lo, 0.0), np.where(np.isfinite(q_hi), q_hi, 0.0)
    spread, lapse = SLOPE_PRIOR[options.function][0], min(0.02, options.max_lapse)
    best, best_obj = None, np.full(len(phi), -np.inf)
    for f in np.linspace(-0.2, 1.2, 29):
        shift = -2.0 * (q_lo + f * (q_hi - q_lo))  # ½ shift moves the threshold to that point of the range
        theta = np.column_stack([np.zeros(len(phi)), np.full(len(phi), spread), np.full(len(phi), lapse),
                                 phi + shift[:, None]])
        obj = fitting.objective(batch, theta)
        better = obj > best_obj
        best = theta if best is None else np.where(better[:, None], theta, best)
        best_obj = np.where(better, obj, best_obj)
    return best


def _multi_start(batch: MixtureBatch, valid: np.ndarray, options: CompareOptions) -> np.ndarray:
    """Fit from equal weights and from each layer alone (one batch), keep each row's best."""
    c, m = len(batch.x), batch.log_s.shape[-1]
    equal = _grid_shift(batch, np.zeros((c, m)), valid, options)
    lower, upper = _bounds(equal[:, 3:].mean(axis=1), batch, options)
    starts = [equal] + [_grid_shift(batch, -OTHERS * (np.arange(m) != j)[None].repeat(c, 0), valid, options)
                        for j in range(m)]
    tile = np.tile(np.arange(c), len(starts))
    stacked = batch.take(tile).bounded(lower[tile], upper[tile])
    theta, _, _ = fitting.fit(stacked, options.max_iter, np.clip(np.concatenate(starts), lower[tile], upper[tile]))
    obj = fitting.objective(stacked, theta).reshape(len(starts), c)
    return theta.reshape(len(starts), c, -1)[np.argmax(obj, axis=0), np.arange(c)]


def _bootstrap(lv: Levels, log_s: np.ndarray, best: np.ndarray, options: CompareOptions) -> np.ndarray:
    """φ of the all-trials fit refitted on the first :data:`MAX_DRAWS` draws of the comparison's bootstrap."""
    pi, people = pd.factorize(lv.table["participant"], sort=True)
    ii, images = pd.factorize(lv.table["image_id"], sort=True)
    drawn, multiplicity = bootstrap_draws(options.n_boot, len(people), len(images), options.seed)
    n_draws = min(options.n_boot, MAX_DRAWS)
    per_cell = np.zeros((n_draws, len(people), len(images)))
    for j in range(len(people)):
        np.add.at(per_cell, (np.arange(n_draws), drawn[:n_draws, j]), multiplicity[:n_draws, j])
    weight = per_cell[:, pi, ii]  # (n_boot, levels): how often the draw holds each level
    chunk = max(1, CHUNK_CELLS // (len(lv.table) * (3 + log_s.shape[1])))
    out = []
    for start in range(0, n_draws, chunk):
        rows = weight[start:start + chunk]
        everything = [np.arange(len(lv.table))] * len(rows)
        out.append(fit_rows(lv, log_s, everything, rows, options, np.repeat(best, len(rows), axis=0))[:, 3:])
    return np.concatenate(out)


def with_mixture(lv: Levels, sensitivities: pd.DataFrame, ll: np.ndarray, mix: Mixture
                 ) -> tuple[Levels, pd.DataFrame, np.ndarray]:
    """The levels, sensitivity table and held-out log-likelihoods with the mixture as one more candidate
    (before the ceiling; its s at the fitted proportions)."""
    at = len(lv.candidates) - 1
    levels = Levels(lv.table, [*lv.candidates[:at], MIXTURE, *lv.candidates[at:]],
                    np.insert(lv.h, at, mix.h, axis=0), lv.guess)
    rows = pd.DataFrame({"item_id": mix.s.index, "model": MIXTURE[0], "layer": MIXTURE[1], "weights": MIXTURE[2],
                         "s": mix.s.to_numpy()})
    if "nonlinear" in sensitivities:  # an item is nonlinear for the mixture when it is under one of its layers
        mine = sensitivities[sensitivities[CANDIDATE].apply(tuple, axis=1).isin(mix.layers)]
        rows["nonlinear"] = rows["item_id"].map(mine.groupby("item_id")["nonlinear"].any()).fillna(False).astype(bool)
    return levels, pd.concat([sensitivities, rows], ignore_index=True), np.insert(ll, at, mix.ll, axis=0)
