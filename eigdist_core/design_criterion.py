"""How well a design tells the layers apart: a bound on naming a wrong layer, per true layer (numpy only).

The noise model is the model comparison's (docs/analysis.md): an observer who sees through layer X
answers a trial at amplitude α on item v with P(correct) = γ + (1 − γ − λ) F(α / T_X(v); β), the
project's psychometric function, threshold T_X(v) = k_X / √s_X(v). The scale k_X is free, so only
*relative* sensitivities matter: ln T_i(v) − ln T_j(v) = −Δ_ij(v) + const, Δ_ij(v) = ½ (ln s_i(v) − ln s_j(v)).

Criterion (docs/analysis.md, "Choosing the stimuli"). One trial on item v, placed where the tracks place
them (α = c·T_i(v), c in :data:`PLACEMENT`), gives a lab that sees through i an expected log-likelihood
ratio g(x) against j, x the log-threshold difference left once j's scale is fitted:

    g(x) = ½ [G(x) + G(−x)],   G(x) = mean_c KL(P(c) ‖ P(c·e^−x)),

≈ ½ w x² near 0, w = mean_c (∂P/∂ln T)² / (P (1 − P)) the Fisher information about ln T of one
trial, and bounded far from it (a trial that j puts at chance
or at its lapse ceiling counts for no more than that). With n_v trials on item v and ln k_j profiled,

    E_ij = min_c Σ_v n_v g(Δ_ij(v) − c).

Read as a Gaussian LLR (mean E, variance 2E, its local form), P(j beats i) = Φ(−√(E/2)) ≤ ½ exp(−E/4),
so a lab that sees through i names a wrong layer with probability at most
B_i = ½ Σ_{j≠i} exp(−E_ij/4). The design minimises the worst true layer's B_i (ties to the smaller
Σ_i B_i), greedily, in steps of trials: a soft minimum over the pairs that involve each layer, so no
layer's pairs are left behind while one pair is pushed far beyond the others.

Everything here is a pure function of a sensitivity matrix (items × layers), so the offline
selection (:mod:`analysis.design_selection`) and an online trial choice can share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import xlogy

from .errors import EigdistError
from .psychometric_function import p_correct

#: Where trials land relative to the true threshold (α / T): a track's spread around its threshold.
PLACEMENT = tuple(2.0 ** np.linspace(-0.75, 0.75, 6))

#: The grid of |x| on which g is tabulated: 0 … 8 (a factor e^8 in threshold; g is flat long before).
GRID_STEP, GRID_END = 1e-3, 8.0


#: Items scored at once: ~1 MB of float32 at 190 pairs, so a step's passes run in cache.
CHUNK = 1024


class DesignError(EigdistError):
    """A design that cannot be chosen: too few layers, a budget the constraints do not allow."""


@dataclass(frozen=True)
class Divergence:
    """g(|x|) tabulated: ``table[k]`` = g((k + ½) · :data:`GRID_STEP`), the expected LLR of one trial (nats)."""

    table: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """g(x) at the middle of x's grid cell (off by at most GRID_STEP / 2 in x), constant beyond the grid."""
        x = np.asarray(x, dtype=float) * (1.0 / GRID_STEP)
        return self.lookup(x, x, np.empty(x.shape, np.int32))

    def lookup(self, scaled: np.ndarray, out: np.ndarray, index: np.ndarray) -> np.ndarray:
        """g at ``scaled`` = x / GRID_STEP into ``out`` (may be ``scaled``), with ``index`` (int32) as working space."""
        np.abs(scaled, out=out)
        np.minimum(out, len(self.table) - 1, out=out)
        np.copyto(index, out, casting="unsafe")  # truncation: the cell whose middle the table holds
        return np.take(self.table.astype(out.dtype, copy=False), index, out=out)


def trial_divergence(slope: float, lapse: float, guess: float, function: str = "weibull",
                     placement: tuple[float, ...] = PLACEMENT) -> Divergence:
    """g: the expected LLR of one trial at α = c·T_i against a layer whose threshold is e^x times as large.

    KL(P ‖ Q) = P ln(P/Q) + (1 − P) ln((1 − P)/(1 − Q)), P = P(c), Q = P(c·e^−x), averaged over ``placement``
    and over ±x (a pair's two true layers alike). Near x = 0, g ≈ ½ w x², w = mean_c (∂P/∂ln T)² / (P (1 − P))
    (the Fisher information about ln T of one trial; tests/test_design_select.py checks this limit).
    """
    x = np.arange(0.0, GRID_END, GRID_STEP) + GRID_STEP / 2
    c = np.asarray(placement, dtype=float)[:, None]  # α / T_i: thresholds in units of T_i
    p = p_correct(c, 1.0, slope, guess, lapse, function)
    total = np.zeros_like(x)
    for sign in (1.0, -1.0):
        q = np.clip(p_correct(c * np.exp(-sign * x), 1.0, slope, guess, lapse, function), 1e-12, 1 - 1e-12)
        # xlogy: 0·ln 0 = 0 where P rounds to 1 (no lapse, a steep function), not NaN
        total += np.mean(xlogy(p, p / q) + xlogy(1 - p, (1 - p) / (1 - q)), axis=0)
    return Divergence(0.5 * total)


def layer_pairs(n_layers: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j), i < j, of every pair of ``n_layers`` layers."""
    if n_layers < 2:
        raise DesignError(f"a design tells layers apart: the pool has {n_layers} layer(s), at least 2 are needed")
    return np.triu_indices(n_layers, k=1)


def pair_contrasts(s: np.ndarray) -> np.ndarray:
    """Δ (items × pairs): ½ (ln s_i − ln s_j) per item and layer pair, for a matrix ``s`` of items × layers (s > 0)."""
    s = np.asarray(s, dtype=float)
    if s.ndim != 2 or not (s > 0).all():
        raise DesignError("sensitivities must be an items × layers matrix of numbers > 0 (leave out s = 0 items)")
    i, j = layer_pairs(s.shape[1])
    half = 0.5 * np.log(s)
    return half[:, i] - half[:, j]


def profile(delta: np.ndarray, trials: np.ndarray, g: Divergence) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: the shift c (ln k_j − ln k_i) that minimises Σ n_v g(Δ_v − c), and that minimum E (nats).

    g need not be convex (it saturates), so the start is the best of the n-weighted mean and nine
    quantiles of the shown items' Δ, refined by a shrinking three-point search (to GRID_STEP / 2).
    """
    n = np.asarray(trials, dtype=float)
    shown = np.flatnonzero(n)
    if len(shown) == 0:
        return np.zeros(delta.shape[1]), np.zeros(delta.shape[1])
    d, n = delta[shown], n[shown]
    quantiles = np.quantile(d, np.linspace(0, 1, 9), axis=0)  # g saturates: c may sit on a cluster, not the mean
    starts = np.vstack([n @ d / n.sum(), quantiles])

    def cost(c: np.ndarray) -> np.ndarray:
        return np.einsum("v,kvp->kp", n, g(d[None] - c[:, None]))

    cols = np.arange(d.shape[1])
    value = cost(starts)
    best = starts[value.argmin(axis=0), cols]
    width = (quantiles[-1] - quantiles[0]) / 8 + GRID_STEP
    while width.max() > GRID_STEP / 2:
        width /= 2
        tries = best + width * np.array([-1.0, 0.0, 1.0])[:, None]
        value = cost(tries)
        best = tries[value.argmin(axis=0), cols]
    return best, value.min(axis=0)


def pair_information(delta: np.ndarray, trials: np.ndarray, g: Divergence) -> np.ndarray:
    """E[LLR] per pair (nats), ln k profiled: min_c Σ n_v g(Δ_v − c)."""
    return profile(delta, trials, g)[1]


def layer_bounds(information: np.ndarray) -> np.ndarray:
    """B_i = ½ Σ_{j≠i} exp(−E_ij / 4) per layer, for E per pair (in :func:`layer_pairs` order)."""
    terms = 0.5 * np.exp(-0.25 * np.asarray(information, dtype=float))
    return terms @ _incidence(len(terms)).astype(float)


def _incidence(n_pairs: int) -> np.ndarray:
    """Pairs × layers: 1 where the pair involves the layer."""
    n_layers = int(round((1 + np.sqrt(1 + 8 * n_pairs)) / 2))
    i, j = layer_pairs(n_layers)
    out = np.zeros((n_pairs, n_layers), np.float32)
    out[np.arange(n_pairs), i] = out[np.arange(n_pairs), j] = 1
    return out


@dataclass(frozen=True)
class Constraints:
    """What a lab allows: the trial budget, trials per step, caps per item and image, directions per image."""

    budget: int
    step: int = 10
    item_cap: int = 60
    image_cap: int = 240
    per_image: int = 2

    def check(self) -> None:
        """Refuse a budget or caps that leave no design, naming the value and what the constraints need."""
        need = self.per_image * self.step
        if self.per_image < 2:  # as --per-image (docs/analysis.md, "Allocation")
            raise DesignError(f"per_image must be at least 2 directions of every image shown, got {self.per_image}")
        if self.step < 1:
            raise DesignError(f"step must be at least 1 trial, got {self.step}")
        if self.item_cap < self.step:
            raise DesignError(f"item cap {self.item_cap} trials must be at least one step ({self.step} trials)")
        if self.image_cap < need:
            raise DesignError(f"image cap {self.image_cap} trials is below {need}: {self.per_image} directions × "
                              f"{self.step} trials per image")
        if self.budget < need:
            raise DesignError(f"budget {self.budget} trials is smaller than the constraints allow: at least {need} "
                              f"({self.per_image} directions of one image × {self.step} trials)")


@dataclass
class Design:
    """Trials per item (a multiple of the step, 0 = left out), E per layer pair and B per true layer."""

    trials: np.ndarray
    information: np.ndarray
    bounds: np.ndarray

    @property
    def value(self) -> float:
        """The criterion: the worst true layer's bound on naming a wrong layer."""
        return float(self.bounds.max())


def select(delta: np.ndarray, image: np.ndarray, g: Divergence, limits: Constraints) -> Design:
    """Allocate ``limits.budget`` trials to items in steps, greedily minimising the worst layer's bound B_i.

    Parameters
    ----------
    delta
        Items × pairs contrasts (:func:`pair_contrasts`) of the eligible items.
    image
        The image index (0, 1, …) of each item: an image enters with ``per_image`` items, then takes more;
        an image with fewer eligible items is never shown.
    g
        The divergence of one trial (:func:`trial_divergence`).
    limits
        Budget, step and caps.

    Returns
    -------
    Design
        Ties between equal worst bounds go to the smaller sum over layers; the choice is deterministic.
    """
    limits.check()
    scan = _Scan(np.asarray(delta, dtype=float), np.asarray(image), g, limits.step)
    n = np.zeros(len(delta))
    for first in _first_items(scan, limits.per_image):
        n[first] += limits.step
    while True:
        grown = _grow(scan, n, limits)
        if grown is None:
            information = pair_information(scan.delta, n, g)
            return Design(n.astype(int), information, layer_bounds(information))
        n[grown] += limits.step


@dataclass
class _Scan:
    """What every step of the greedy allocation reads: Δ (and Δ / GRID_STEP in float32), images, g, incidence."""

    delta: np.ndarray
    image: np.ndarray
    g: Divergence
    step: int

    def __post_init__(self) -> None:
        self.scaled = np.ascontiguousarray(self.delta / GRID_STEP, dtype=np.float32)  # float32: half the traffic
        incidence = _incidence(self.delta.shape[1])
        self.by_layer = np.nonzero(incidence.T)[1]  # each layer's L − 1 pairs, layer after layer
        self.layers = incidence.shape[1]
        self.buffer = np.empty((CHUNK, self.scaled.shape[1]), np.float32)
        self.index = np.empty((CHUNK, self.scaled.shape[1]), np.int32)

    def scores(self, n: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """ln max_i B_i and ln Σ_i B_i after adding one step to each of ``rows`` (all items when None).

        Adding m trials at x_v = Δ_v − c to N trials raises E by about m N / (N + m) g(x_v): exact for a
        quadratic g (the refit of c takes back m / (N + m) of it), c held at the current profile otherwise.
        """
        c, e = profile(self.delta, n, self.g)
        total, m = n.sum(), self.step
        low = e.min()  # the terms exp(−(E − low)/4) are ≤ 1: E only grows
        shift = (c / GRID_STEP).astype(np.float32)
        gain = np.float32(-0.25 * m * total / (total + m))
        offset = (-0.25 * (e - low)).astype(np.float32)
        scaled = self.scaled if rows is None else self.scaled[rows]
        per_layer = np.empty((len(scaled), self.layers), np.float32)
        for start in range(0, len(scaled), CHUNK):  # chunks that stay in cache through the passes
            part = slice(start, start + CHUNK)
            size = len(scaled[part])
            info = self.g.lookup(np.subtract(scaled[part], shift, out=self.buffer[:size]), self.buffer[:size],
                                 self.index[:size])
            info *= gain
            info += offset
            np.exp(info, out=info)
            # Σ over each layer's L − 1 pairs (a gather and a sum: no BLAS thread pool per chunk)
            np.sum(info[:, self.by_layer].reshape(size, -1, self.layers - 1), axis=2, out=per_layer[part])
        base = np.log(0.5) - 0.25 * low
        with np.errstate(divide="ignore"):  # a layer whose pairs are all far beyond the worst: ln 0 = −inf
            return base + np.log(per_layer.max(axis=1)), base + np.log(per_layer.sum(axis=1))


def _best(worst: np.ndarray, total: np.ndarray, eligible: np.ndarray) -> int:
    """The eligible index with the smallest worst-layer bound (in logs, within 1e-6), ties to the smaller sum."""
    worst = np.where(eligible, worst, np.inf)
    top = np.flatnonzero(worst <= worst.min() + 1e-6)
    return int(top[int(np.argmin(total[top]))])


def _first_items(scan: _Scan, per_image: int) -> list[int]:
    """The first image's ``per_image`` items: the best pair among the pairs' extremes and their image mates,
    then greedy partners."""
    delta, image = scan.delta, scan.image
    seeds = np.unique(np.concatenate([delta.argmax(axis=0), delta.argmin(axis=0)]))
    best, best_score = None, (np.inf, np.inf)
    for a in seeds:
        mates = np.flatnonzero((image == image[a]) & (np.arange(len(delta)) != a))
        if len(mates) < per_image - 1:
            continue
        n = np.zeros(len(delta))
        n[a] = scan.step
        worst, total = scan.scores(n, mates)
        k = _best(worst, total, np.ones(len(mates), bool))
        if (worst[k], total[k]) < best_score:
            best, best_score = [int(a), int(mates[k])], (worst[k], total[k])
    if best is None:
        raise DesignError(f"no image has {per_image} eligible directions; every image must show at least {per_image}")
    return _partners(scan, np.zeros(len(delta)), best, per_image)


def _partners(scan: _Scan, n: np.ndarray, chosen: list[int], per_image: int) -> list[int]:
    """``chosen`` and the best further items of their image, one by one, until the image shows ``per_image``."""
    trial = n.copy()
    trial[chosen] += scan.step
    while len(chosen) < per_image:
        mates = np.flatnonzero((scan.image == scan.image[chosen[0]]) & (trial == 0))
        worst, total = scan.scores(trial, mates)
        pick = int(mates[_best(worst, total, np.ones(len(mates), bool))])
        trial[pick] += scan.step
        chosen.append(pick)
    return chosen


def _grow(scan: _Scan, n: np.ndarray, limits: Constraints) -> int | list[int] | None:
    """The next step: an item of a shown image, or a new image's ``per_image`` items; None when none fits."""
    image = scan.image
    left = limits.budget - n.sum()
    per_image = np.bincount(image, weights=n, minlength=image.max() + 1)
    shown = per_image[image] > 0
    room = per_image[image] + limits.step <= limits.image_cap
    old = shown & room & (n + limits.step <= limits.item_cap) & (left >= limits.step)
    enough = np.bincount(image)[image] >= limits.per_image
    new = ~shown & enough & (left >= limits.per_image * limits.step)
    if not (old | new).any():
        return None
    pick = _best(*scan.scores(n), old | new)
    return pick if old[pick] else _partners(scan, n, [pick], limits.per_image)
