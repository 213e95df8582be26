"""How well a design tells the layers apart: an expected-confusion bound over layer pairs (numpy only).

The noise model is the model comparison's (docs/analysis.md): an observer who sees through layer X
answers a trial at amplitude α on item v with P(correct) = γ + (1 − γ − λ) F(α / T_X(v); β), the
project's psychometric function, threshold T_X(v) = k_X / √s_X(v). The scale k_X is free, so only
*relative* sensitivities matter: ln T_i(v) − ln T_j(v) = −½ (ln s_i(v) − ln s_j(v)) + const.

Criterion (docs/analysis.md, "Choosing the stimuli"). For a layer pair (i, j) and a design that gives
n_v trials to item v, the expected log-likelihood ratio of "j" against a lab that sees through "i",
with j's scale fitted to mimic i as well as it can (ln k profiled), is to second order in the
log-threshold differences Δ_ij(v) = ½ (ln s_i(v) − ln s_j(v)):

    E[LLR_ij] ≈ ½ w Σ_v n_v (Δ_ij(v) − Δ̄_ij)²,   Δ̄_ij = Σ n_v Δ_ij(v) / Σ n_v,

w the Fisher information about ln T of one trial placed where the tracks place them (α at multiples
:data:`PLACEMENT` of the threshold). A constant shift of Δ is absorbed by k: one item alone tells no
layers apart, and two items tell i from j by how differently the two layers rank them. The bound on
the confusion probability of the pair is exp(−E[LLR_ij]) (Chernoff); the design maximises the
smallest E[LLR] over all pairs (the worst-separated pair), greedily, in steps of trials.

Everything here is a pure function of a sensitivity matrix (items × layers), so the offline
selection (:mod:`analysis.design_selection`) and an online trial choice can share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import EigdistError
from .psychometric_function import sigmoid_log

#: Where trials land relative to the true threshold (α / T): a track's spread around its threshold.
PLACEMENT = tuple(2.0 ** np.linspace(-0.75, 0.75, 6))


class DesignError(EigdistError):
    """A design that cannot be chosen: too few layers, a budget the constraints do not allow."""


def trial_information(slope: float, lapse: float, guess: float, function: str = "weibull",
                      placement: tuple[float, ...] = PLACEMENT) -> float:
    """w: Fisher information about ln T of one trial, averaged over α = c·T for c in ``placement``.

    I(c) = (∂P/∂ln T)² / (P (1 − P)), P = γ + (1 − γ − λ) F(ln c; β).
    """
    x = np.log(np.asarray(placement, dtype=float))
    f, df_dm, _ = sigmoid_log(x, np.zeros_like(x), np.full_like(x, np.log(slope)), function)
    p = guess + (1.0 - guess - lapse) * f
    dp = (1.0 - guess - lapse) * df_dm
    return float(np.mean(dp * dp / (p * (1.0 - p))))


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


def pair_information(delta: np.ndarray, trials: np.ndarray, w: float) -> np.ndarray:
    """E[LLR] per pair (nats): ½ w Σ n_v (Δ_v − Δ̄)², the n-weighted spread of each pair's contrast."""
    n = np.asarray(trials, dtype=float)
    total = n.sum()
    if total == 0:
        return np.zeros(delta.shape[1])
    mean = n @ delta / total
    return 0.5 * w * (n @ (delta - mean) ** 2)


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
        if self.step < 1 or self.item_cap < self.step:
            raise DesignError(f"item cap {self.item_cap} trials must be at least one step ({self.step} trials, >= 1)")
        if self.image_cap < need:
            raise DesignError(f"image cap {self.image_cap} trials is below {need}: {self.per_image} directions × "
                              f"{self.step} trials per image")
        if self.budget < need:
            raise DesignError(f"budget {self.budget} trials is smaller than the constraints allow: at least {need} "
                              f"({self.per_image} directions of one image × {self.step} trials)")


@dataclass
class Design:
    """Trials per item (a multiple of the step, 0 = left out) and the criterion it reaches."""

    trials: np.ndarray
    information: np.ndarray

    @property
    def value(self) -> float:
        """The criterion: the smallest expected LLR over layer pairs (nats)."""
        return float(self.information.min())


def select(delta: np.ndarray, image: np.ndarray, w: float, limits: Constraints) -> Design:
    """Allocate ``limits.budget`` trials to items in steps, greedily maximising the smallest E[LLR] over pairs.

    Parameters
    ----------
    delta
        Items × pairs contrasts (:func:`pair_contrasts`) of the eligible items.
    image
        The image index (0, 1, …) of each item: an image enters with ``per_image`` items, then takes more;
        an image with fewer eligible items is never shown.
    w
        Per-trial information (:func:`trial_information`).
    limits
        Budget, step and caps.

    Returns
    -------
    Design
        Ties between equal minima go to the larger mean over pairs; the choice is deterministic.
    """
    limits.check()
    image = np.asarray(image)
    delta32 = np.ascontiguousarray(delta, dtype=np.float32)  # the scan's working copy: half the memory traffic
    n = np.zeros(len(delta))
    for first in _first_items(delta, image, limits.per_image):
        n[first] += limits.step
    buffer = np.empty_like(delta32)
    while True:
        grown = _grow(delta, delta32, buffer, image, n, limits)
        if grown is None:
            return Design(n.astype(int), pair_information(delta, n, w))
        n[grown] += limits.step


def _score(info: np.ndarray) -> np.ndarray:
    """Rank designs by their worst pair, then their mean pair (…, pairs) → (…)."""
    return info.min(axis=-1) + 1e-9 * info.mean(axis=-1)


def _best(info: np.ndarray, eligible: np.ndarray) -> int:
    """The eligible row of ``info`` (rows × pairs) with the largest worst pair; ties to the larger mean."""
    worst = np.where(eligible, info.min(axis=1), -np.inf)
    top = np.flatnonzero(worst >= worst.max() * (1 - 1e-6))
    return int(top[int(np.argmax(info[top].mean(axis=1)))])


def _first_items(delta: np.ndarray, image: np.ndarray, per_image: int) -> list[int]:
    """The first image's ``per_image`` items: the pair with the best worst-pair spread among the pairs'
    extremes and their image mates, then greedy partners."""
    seeds = np.unique(np.concatenate([delta.argmax(axis=0), delta.argmin(axis=0)]))
    best, best_score = None, -np.inf
    for a in seeds:
        mates = np.flatnonzero((image == image[a]) & (np.arange(len(delta)) != a))
        if len(mates) < per_image - 1:
            continue
        score = _score((delta[mates] - delta[a]) ** 2)
        b = mates[int(np.argmax(score))]
        if score.max() > best_score:
            best, best_score = [int(a), int(b)], float(score.max())
    if best is None:
        raise DesignError(f"no image has {per_image} eligible directions; every image must show at least {per_image}")
    chosen = np.zeros(len(delta), bool)
    chosen[best] = True
    while chosen.sum() < per_image:
        mates = np.flatnonzero((image == image[best[0]]) & ~chosen)
        n = chosen.astype(float)
        chosen[mates[int(np.argmax(_score(_added(delta, n, 1.0, mates))))]] = True
    return list(np.flatnonzero(chosen))


def _moments(delta: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Δ̄ and Σ n (Δ − Δ̄)² per pair of the design ``n`` (trials > 0 somewhere)."""
    used = np.flatnonzero(n)
    mean = n[used] @ delta[used] / n.sum()
    return mean, n[used] @ (delta[used] - mean) ** 2


def _added(delta: np.ndarray, n: np.ndarray, step: float, rows: np.ndarray) -> np.ndarray:
    """Σ n (Δ − Δ̄)² per pair after adding ``step`` trials to each of ``rows`` in turn (rows × pairs).

    Adding m trials at Δ_v to N trials of mean Δ̄ raises the sum by m N / (N + m) (Δ_v − Δ̄)².
    """
    total = n.sum()
    mean, spread = _moments(delta, n)
    return spread + step * total / (total + step) * (delta[rows] - mean) ** 2


def _grow(delta: np.ndarray, delta32: np.ndarray, buffer: np.ndarray, image: np.ndarray, n: np.ndarray,
          limits: Constraints) -> int | list | None:
    """The next step: an item of a shown image, or a new image's ``per_image`` items; None when none fits.

    Every item is scored in ``buffer`` (items × pairs, float32) as :func:`_added` scores rows, in place.
    """
    left = limits.budget - n.sum()
    per_image = np.bincount(image, weights=n, minlength=image.max() + 1)
    shown = per_image[image] > 0
    room = per_image[image] + limits.step <= limits.image_cap
    old = shown & room & (n + limits.step <= limits.item_cap) & (left >= limits.step)
    enough = np.bincount(image)[image] >= limits.per_image
    new = ~shown & enough & (left >= limits.per_image * limits.step)
    if not (old | new).any():
        return None
    total = n.sum()
    mean, spread = _moments(delta, n)
    np.subtract(delta32, mean.astype(np.float32), out=buffer)
    np.square(buffer, out=buffer)
    buffer *= np.float32(limits.step * total / (total + limits.step))
    buffer += spread.astype(np.float32)
    pick = _best(buffer, old | new)
    return pick if old[pick] else _new_image(delta, image, n, pick, limits)


def _new_image(delta: np.ndarray, image: np.ndarray, n: np.ndarray, first: int, limits: Constraints) -> list[int]:
    """``first`` and the best partners from its image, so that the new image shows ``per_image`` directions."""
    trial = n.copy()
    trial[first] += limits.step
    chosen = [first]
    while len(chosen) < limits.per_image:
        mates = np.flatnonzero((image == image[first]) & (trial == 0))
        pick = int(mates[int(np.argmax(_score(_added(delta, trial, limits.step, mates))))])
        trial[pick] += limits.step
        chosen.append(pick)
    return chosen
