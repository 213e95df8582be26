"""The mixture of the set's layers: s = Σ_m w_m s_m (w_m ≥ 0), scored like every other candidate.

Fisher information of independent populations adds, so an observer reading several layers sees the
item v with s(v) = Σ_m w_m s_m(v) and has the threshold 1/√s(v): the weights carry the scale k of the
single-layer candidates. The psychometric function, the slope prior, the lapse bound and the
cross-validation folds are those of :mod:`analysis.comparison`. Weights are kept as
w_m = e^{φ_m} / g_m, g_m the geometric mean of s_m over the lab's items with s_m > 0: in these per-layer
units the fit is the same whatever unit each layer's s comes in (scaling every s_m by c only scales
every g_m by c). The optimiser works on v_m = e^{φ_m − c} ≥ 0 (bounded, so a weight reaches 0 exactly
and stays there while the likelihood pushes it down), c the row's best equal-weight scale, with
θ = (0, ln β, λ, v_1 … v_M): the threshold position is held at 0, the weights carry the scale. Each
fit starts from equal weights and from each layer alone and keeps the best.

The mixture runs over the layers that made the lab's stimuli (the set's layers, not the L2 baseline
nor extra ``--models``): they are few, which keeps the fit well posed and cheap. Its weights, reported
as proportions w_m / Σ w (``mixture.csv``), come from one fit to all trials (one weight vector, slope and
lapse for the lab, and a scale u_p of each participant's own, the single candidates' k_p: participants differ
in sensitivity, and one scale for all would pool their psychometric functions in proportions that an adaptive
track changes from item to item, which moves the weights), their intervals from the first
:data:`MAX_DRAWS` draws of the comparison's crossed bootstrap (:mod:`analysis.comparison_bootstrap`):
the model refitted with participants redrawn and with images redrawn (the multiplicities weight the
trial counts), each by :data:`STEPS` Fisher-scoring steps from the fit (a k-step bootstrap, Andrews
2002, Econometrica 70:119, which costs a fraction of refits to convergence), and the two deviations
from the fit added to it, as the scores' draws are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import special

from eigdist_core.contract import L2_MODEL, MIXTURE, MIXTURE_COLUMNS, candidate_name

from . import fitting
from .comparison import CANDIDATE, CompareOptions, Folds, Levels, padded, score_levels
from .comparison_bootstrap import crossed_draws, crossed_multiplicities
from .psychometric import SLOPE_PRIOR, SPREAD_BOUNDS

#: No weight grows beyond e^SPAN times its equal-weight start.
SPAN = 20.0
#: A single-layer start gives the other layers this φ below its own (weights e^-6 ≈ 0.25 %).
OTHERS = 6.0
#: A participant's scale u_p (ln α) stays within ±PERSON_SPAN of the reference participant's.
PERSON_SPAN = 5.0
#: Draws × levels × parameters per batch of bootstrap refits (memory).
CHUNK_CELLS = 4_000_000
#: The weights' intervals use the first draws of the comparison's bootstrap, at most this many (two refits each), ...
MAX_DRAWS = 200
#: ... each by this many Fisher-scoring steps from the all-trials fit (a k-step bootstrap, Andrews 2002).
STEPS = 3


@dataclass
class MixtureBatch(fitting.Batch):
    """Counts at x = ln α with s̃_m per level (C, K, M); θ = (0, ln spread, λ, v_1 … v_M[, u_1 … u_P]), v ≥ 0.

    Each row's s̃ is s_m/g_m times a scale e^{c} of its own (the best equal-weight start, so v ≈ 1 there):
    the weights of that row are e^{φ_m} = v_m e^{c}. With ``person`` (C, K: each level's participant, 0 … P−1),
    participant p sees s e^{2 u_p}: its own scale (the bounds hold one participant's u fixed per row).
    """

    s: np.ndarray | None = None
    person: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> "MixtureBatch":
        return replace(super().take(rows), s=self.s[rows], person=None if self.person is None else self.person[rows])

    def predict(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """p and ∂p/∂θ: the curve at x + ½ ln S + u_p, S = Σ v_m s̃_m; ∂p/∂v_m = ½ (s̃_m/S) ∂p/∂x,
        ∂p/∂u_p = ∂p/∂x at participant p's levels."""
        m = self.s.shape[-1]
        total = np.einsum("ckm,cm->ck", self.s, theta[:, 3:3 + m])
        seen = total > 0
        with np.errstate(divide="ignore"):
            x = np.where(seen, self.x + 0.5 * np.log(total), self.x - 50.0)  # seen by no weighted layer: chance
        if self.person is not None:
            x = x + np.take_along_axis(theta[:, 3 + m:], self.person, axis=1)
        p, dp = fitting.curve(theta[:, :3], x, self.guess, self.function)
        per_unit = self.s / np.where(seen, total, 1.0)[..., None]
        grads = [dp, -0.5 * dp[..., :1] * per_unit]  # ∂p/∂x = −∂p/∂(threshold)
        if self.person is not None:
            grads.append(-dp[..., :1] * (self.person[..., None] == np.arange(theta.shape[1] - 3 - m)))
        return p, np.concatenate(grads, axis=-1)


def half_log_mix(log_s: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """½ ln Σ_m e^{φ_m} s̃_m per level (−inf where no weighted layer sees it)."""
    top = phi.max(axis=1)  # s̃ is O(1) at typical items: the largest weight sets the scale
    total = np.exp(log_s + (phi - top[:, None])[:, None, :]).sum(axis=-1)
    with np.errstate(divide="ignore"):
        return 0.5 * (np.log(total) + top[:, None])


@dataclass
class Mixture:
    """The mixture candidate: its layers, held-out log-likelihood per level, and the lab's fit.

    ``h``: ½ ln s of each level at the fitted proportions (s = Σ w_m s_m, w summing to 1);
    ``s``: that s per item_id; ``table``: ``mixture.csv``.
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
    log_s, log_g = per_unit_log_s(lv, layers)
    m = len(layers)
    theta = fit_rows(lv, log_s, cv.train, None, options)
    h = np.full(len(lv.table), np.nan)
    for f, test in enumerate(cv.test):
        h[test] = half_log_mix(log_s[test][None], theta[f:f + 1, 3:])[0]
    ll = score_levels(lv, h, theta[:, :3], cv, options.function)
    everything = [np.arange(len(lv.table))]
    best = fit_rows(lv, log_s, everything, None, options, participants=True)
    phi_p, phi_i = _bootstrap(lv, log_s, best, options)
    w, share = _proportions(best[:, 3:3 + m], log_g)[0], special.softmax(best[0, 3:3 + m])
    s = np.exp(log_s + log_g) @ w
    with np.errstate(divide="ignore"):
        h_fit = 0.5 * np.log(s)
    per_item = pd.Series(s, index=lv.table["item_id"]).groupby(level=0).first()
    table = _table(layers, w, _crossed(w, _proportions(phi_p, log_g), _proportions(phi_i, log_g)), share,
                   _crossed(share, special.softmax(phi_p, axis=-1), special.softmax(phi_i, axis=-1)))
    return Mixture(layers, ll, h_fit, per_item, table)


def per_unit_log_s(lv: Levels, layers: list[tuple[str, str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """ln(s_m/g_m) per level and layer (levels, M), and ln g_m (:func:`item_log_means`)."""
    log_s = 2.0 * lv.h[[lv.candidates.index(c) for c in layers]].T
    log_g = item_log_means(log_s, lv.table["item_id"].to_numpy())
    return log_s - log_g, log_g


def item_log_means(log_s: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
    """ln g_m: the mean of ln s_m over the distinct items of the levels with s_m > 0, each item once (an
    adaptive track tests some items at more levels than others; weighting by levels would move the shares)."""
    _, first = np.unique(item_ids, return_index=True)
    return np.array([np.mean(c[np.isfinite(c)]) for c in log_s[first].T])


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
             options: CompareOptions, theta0: np.ndarray | None = None, participants: bool = False) -> np.ndarray:
    """θ = (0, ln β, λ, φ_1 … φ_M) of the mixture on each row's levels (``index``), trial counts times
    ``weight`` (rows × levels) if given; φ = −inf: a weight of 0.

    With ``participants``, θ also holds u_1 … u_P, each participant's ln-α scale (its s times e^{2u_p}, the
    single candidates' k_p): the first participant with trials in a row keeps its u (0, or ``theta0``'s),
    so that the weights carry the scale. Pooling participants of different sensitivity under one scale
    biases the weights wherever an adaptive track tests the items at different levels for each.
    From ``theta0`` (bootstrap draws): :data:`STEPS` Fisher-scoring steps. Without it: from equal weights
    and from each layer alone, to convergence (the best fit of those). NaN rows where a row holds no
    level that any layer sees.
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
    m = ls.shape[-1]
    person, u0 = None, np.zeros((len(idx), 0))
    if participants:
        person = pd.factorize(lv.table["participant"], sort=True)[0][idx]
        u0 = np.zeros((len(idx), person.max() + 1)) if theta0 is None else theta0[:, 3 + m:]
    batch = _batch(np.where(valid, x, 0.0), np.where(valid[..., None], np.exp(ls), 1.0), n, k, lv.guess, options,
                   person)
    bounds = _person_bounds(person, n, u0)
    empty = ~valid.any(axis=1)
    if theta0 is not None:
        scale = np.nanmax(theta0[:, 3:3 + m], axis=1)
        v0 = np.exp(theta0[:, 3:3 + m] - scale[:, None])
        theta, _, _, _ = fitting.score(_scaled(batch, scale, options, bounds),
                                       np.column_stack([theta0[:, :3], v0, u0]), STEPS)
    else:
        scale, theta = _multi_start(batch, valid, options, bounds)
    with np.errstate(divide="ignore"):
        theta[:, 3:3 + m] = np.log(theta[:, 3:3 + m]) + scale[:, None]
    theta[empty] = np.nan
    return theta


def _person_bounds(person: np.ndarray | None, n: np.ndarray, u0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of u per row: ±:data:`PERSON_SPAN` around 0 for participants with trials there, except the first,
    which (like participants without trials) is held at its start ``u0``."""
    if person is None:
        return u0, u0
    present = ((person[..., None] == np.arange(u0.shape[1])) & (n > 0)[..., None]).any(axis=1)
    free = present & (np.cumsum(present, axis=1) > 1)
    return np.where(free, -PERSON_SPAN, u0), np.where(free, PERSON_SPAN, u0)


def _batch(x, s, n, k, guess: float, options: CompareOptions, person: np.ndarray | None = None) -> MixtureBatch:
    c, m = len(x), s.shape[-1]
    prior = SLOPE_PRIOR[options.function] if options.slope_prior else None
    zeros = np.zeros((c, 3 + m + (0 if person is None else person.max() + 1)))
    return MixtureBatch(x, n, k, np.full(c, guess), zeros, zeros, options.function, prior, s, person)


def _scaled(batch: MixtureBatch, scale: np.ndarray, options: CompareOptions,
            person_bounds: tuple[np.ndarray, np.ndarray]) -> MixtureBatch:
    """s̃ times e^{scale} per row, with the bounds: threshold position held at 0, ln spread and λ as the threshold
    fits bound them, 0 ≤ v ≤ e^{SPAN}, u within ``person_bounds`` (:func:`_person_bounds`)."""
    c, m = len(scale), batch.s.shape[-1]
    lo_s, hi_s = SPREAD_BOUNDS[options.function]
    lower = np.column_stack([np.zeros(c), np.full(c, lo_s), np.zeros(c), np.zeros((c, m)), person_bounds[0]])
    upper = np.column_stack([np.zeros(c), np.full(c, hi_s), np.full(c, options.max_lapse), np.full((c, m), np.exp(SPAN)),
                             person_bounds[1]])
    return replace(batch, s=batch.s * np.exp(scale)[:, None, None], lower=lower, upper=upper)


def _grid_shift(batch: MixtureBatch, base: np.ndarray, valid: np.ndarray, options: CompareOptions) -> np.ndarray:
    """The best ln c of weights c·base on a grid that puts the threshold across the tested range, at the prior's
    slope and a small lapse."""
    with np.errstate(divide="ignore"):
        q = batch.x + 0.5 * np.log(np.einsum("ckm,cm->ck", batch.s, base))
    q_lo, q_hi = np.where(valid, q, np.inf).min(axis=1), np.where(valid, q, -np.inf).max(axis=1)
    q_lo, q_hi = np.where(np.isfinite(q_lo), q_lo, 0.0), np.where(np.isfinite(q_hi), q_hi, 0.0)
    spread, lapse = SLOPE_PRIOR[options.function][0], min(0.02, options.max_lapse)
    best, best_obj = np.zeros(len(base)), np.full(len(base), -np.inf)
    for f in np.linspace(-0.2, 1.2, 29):
        shift = -2.0 * (q_lo + f * (q_hi - q_lo))  # ½ shift moves the threshold to that point of the range
        theta = np.column_stack([np.zeros(len(base)), np.full(len(base), spread), np.full(len(base), lapse),
                                 np.exp(shift)[:, None] * base, np.zeros_like(batch.lower[:, 3 + base.shape[1]:])])
        obj = fitting.objective(batch, theta)
        better = obj > best_obj
        best, best_obj = np.where(better, shift, best), np.where(better, obj, best_obj)
    return best


def _multi_start(batch: MixtureBatch, valid: np.ndarray, options: CompareOptions,
                 person_bounds: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Fit from equal weights and from each layer alone (one batch), every u from its start, keep each row's
    best: (ln scale, θ in v)."""
    c, m = len(batch.x), batch.s.shape[-1]
    scale = _grid_shift(batch, np.ones((c, m)), valid, options)
    starts = [np.ones((c, m))]
    for j in range(m):
        base = np.where(np.arange(m) == j, 1.0, np.exp(-OTHERS))[None].repeat(c, 0)
        starts.append(np.exp(_grid_shift(batch, base, valid, options) - scale)[:, None] * base)
    spread, lapse = SLOPE_PRIOR[options.function][0], min(0.02, options.max_lapse)
    tile = np.tile(np.arange(c), len(starts))
    stacked = _scaled(batch.take(tile), scale[tile], options, (person_bounds[0][tile], person_bounds[1][tile]))
    theta0 = np.column_stack([np.zeros(len(tile)), np.full(len(tile), spread), np.full(len(tile), lapse),
                              np.concatenate(starts), np.zeros_like(person_bounds[0][tile])])
    theta, _, _ = fitting.fit(stacked, options.max_iter, np.clip(theta0, stacked.lower, stacked.upper))
    obj = fitting.objective(stacked, theta).reshape(len(starts), c)
    return scale, theta.reshape(len(starts), c, -1)[np.argmax(obj, axis=0), np.arange(c)]


def _bootstrap(lv: Levels, log_s: np.ndarray, best: np.ndarray, options: CompareOptions
               ) -> tuple[np.ndarray, np.ndarray]:
    """φ of the all-trials fit refitted on the first :data:`MAX_DRAWS` draws of the comparison's crossed
    bootstrap: (draws, M) with participants redrawn, and (draws, M) with images redrawn."""
    pi, people = pd.factorize(lv.table["participant"], sort=True)
    ii, images = pd.factorize(lv.table["image_id"], sort=True)
    n_draws = min(options.n_boot, MAX_DRAWS)
    by_people, by_images = crossed_multiplicities(options.n_boot, len(people), len(images), options.seed)
    weight = np.concatenate([by_people[:n_draws, pi], by_images[:n_draws, ii]])  # (2 draws, levels)
    chunk = max(1, CHUNK_CELLS // (len(lv.table) * best.shape[1]))
    out = []
    for start in range(0, len(weight), chunk):
        rows = weight[start:start + chunk]
        everything = [np.arange(len(lv.table))] * len(rows)
        out.append(fit_rows(lv, log_s, everything, rows, options, np.repeat(best, len(rows), axis=0),
                            participants=True)[:, 3:3 + log_s.shape[1]])
    phi = np.concatenate(out)
    return phi[:n_draws], phi[n_draws:]


def _crossed(point: np.ndarray, by_people: np.ndarray, by_images: np.ndarray) -> np.ndarray:
    """Crossed draws of proportions (:func:`analysis.comparison_bootstrap.crossed_draws`), clipped to [0, 1]: the
    sum of two deviations can leave the range near its ends, and clipping draws clips their percentiles."""
    return np.clip(crossed_draws(point, by_people, by_images), 0.0, 1.0)


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
