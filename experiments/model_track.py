"""Which layer does the observer see through? A QUEST+-style posterior over (layer, scale), and the next trial.

Every candidate layer m predicts a threshold T_m(v) = k_m / √s_m(v) for each item v, s_m(v) = vᵀF_m v
from the set's sensitivity table, through the project's one psychometric function
(:func:`eigdist_core.psychometric_function.weibull`, threshold at F = ½):

    P(correct | α, v; m, k, λ) = γ + (1 − γ − λ) F(α / T_m(v); β) = weibull(α √s_m(v), k, β, γ, λ),

so an item with s = 0 is seen at chance by that layer whatever k. The unknowns are the layer index m, its
scale k_m, on a grid of ``n_k`` log-spaced values per layer (:func:`scale_grid`), and the lapse λ, on the
QUEST+ track's lapse grid (0, 0.02, 0.05; :data:`experiments.staircase.DEFAULT_OPTIONS`): with λ fixed,
an observer who lapses more than assumed makes a wrong layer win too often (benchmarks/
bench_model_track.py). The slope β is fixed at 3.5, the middle of the QUEST+ track's slopes: a
misspecified slope barely changes the outcome (same benchmark), and each grid multiplies the table. The
prior is uniform over layers and, within a layer, uniform over its ln k grid × the lapses.

No layer predicts every item exactly: each item's ln threshold deviates from its layer's prediction by
δ_v ~ N(0, τ²) (τ = :data:`ITEM_SD`), shared by the item's trials and integrated out item by item
(:func:`shift_kernel`: on the ln k grid a deviation is a shift of the scale index), so the posterior is
P(m, k, λ) Π_v M_v(m, k, λ) and no single item, however often shown, decides between layers
(docs/experiment.md, "Item-level misfit").

The candidates of the next trial are the set's items × the log α grid, each α at most the item's
ceiling. :func:`choose` picks the candidate with the largest expected information about m, the layer
alone (k, λ and the item's deviation marginalised): with W_v(m, k', λ) the posterior of item v's own scale
index (:meth:`ModelTrack.predictive_weights`), for a candidate c on item v
p_m(c) = Σ_{k',λ} W_v(m, k', λ) P(correct | c; m, k', λ),

    I(m; y | c) = h(Σ_m P(m) p_m(c)) − Σ_m P(m) h(p_m(c)),   h the binary entropy (nats).

The likelihood of every candidate is tabulated once (:class:`ModelGrid`, shape layers × candidates ×
k × λ); a choice is a batched matrix product and a few vector operations. Everything is a pure function of
the settings and the ``(item, α, correct)`` history (ties go to the first candidate), so replaying saved
trials (:func:`rebuild`) gives the same posterior and the same next choice as the unbroken run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from eigdist_core.errors import EigdistError
from eigdist_core.psychometric_function import weibull

from .design import conditions

#: The fixed slope (the middle of the QUEST+ track's slopes) and the lapse grid (the QUEST+ track's).
SLOPE = 3.5
LAPSES = (0.0, 0.02, 0.05)
#: Default posterior probability of one layer that ends a models track.
STOP_AT = 0.95
#: τ: the sd of an item's ln threshold about its layer's prediction (0.1 log10 units, about the test–retest
#: sd of one psychophysical threshold); docs/experiment.md, "Item-level misfit".
ITEM_SD = 0.25


@dataclass(frozen=True)
class ModelGrid:
    """The fixed part: layers, items, sensitivities, grids and the likelihood table.

    Attributes
    ----------
    layers, items : tuple of str
        Names, in the order of ``s``'s columns and rows.
    s : numpy.ndarray
        Sensitivities, shape (items, layers), ≥ 0.
    alphas : numpy.ndarray
        The log-spaced α grid, shape (n_alpha,).
    log_k : numpy.ndarray
        ln k grid of each layer, shape (layers, n_k).
    cand_item, cand_alpha : numpy.ndarray
        The candidates: item index and α, each α ≤ the item's ceiling.
    table : numpy.ndarray
        P(correct) of each candidate, shape (layers, candidates, n_k × n_lapses) (layer first for the
        batched product; the last axis runs over k, then λ within each k).
    guess, slope, lapses
        The guess rate 1 / n_alternatives, the fixed Weibull slope, the lapse grid.
    item_sd : float
        τ, the sd of an item's deviation from its layer's predicted ln threshold (:func:`shift_kernel`).
    spread : numpy.ndarray
        :func:`shift_kernel` of ``log_k`` and ``item_sd``, shape (n_k, n_k).
    """

    layers: tuple[str, ...]
    items: tuple[str, ...]
    s: np.ndarray
    alphas: np.ndarray
    log_k: np.ndarray
    cand_item: np.ndarray
    cand_alpha: np.ndarray
    table: np.ndarray
    guess: float
    slope: float = SLOPE
    lapses: tuple[float, ...] = LAPSES
    item_sd: float = ITEM_SD
    spread: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.spread is None:
            object.__setattr__(self, "spread", shift_kernel(self.log_k, self.item_sd))

    def subset(self, items: Iterable[int]) -> "ModelGrid":
        """The grid with only the candidates that show one of ``items`` (item indices), its table a compact
        copy: a choice among them costs their share of a choice among all."""
        keep = np.isin(self.cand_item, np.fromiter(items, dtype=int))
        return replace(self, cand_item=self.cand_item[keep], cand_alpha=self.cand_alpha[keep],
                       table=np.ascontiguousarray(self.table[:, keep, :]))

    def p_correct(self, item: int, alpha: float) -> np.ndarray:
        """P(correct | α at item; m, k, λ), shape (layers, n_k × n_lapses), at any α (not only the grid's)."""
        level = alpha * np.sqrt(self.s[item])[:, None, None]
        p = weibull(level, np.exp(self.log_k)[:, :, None], self.slope, self.guess, np.asarray(self.lapses))
        return p.reshape(len(self.layers), -1)


def _check_s(s: np.ndarray, layers: Sequence[str], items: Sequence[str]) -> np.ndarray:
    if len(layers) < 2:
        raise EigdistError(f"a models track needs at least two layers to tell apart, got {len(layers)}: "
                           f"{', '.join(layers) or 'none'}")
    s = np.asarray(s, dtype=float)
    if s.shape != (len(items), len(layers)):
        raise EigdistError(f"sensitivities must have shape (items, layers) = ({len(items)}, {len(layers)}), "
                           f"got {s.shape}")
    bad = np.argwhere(~(s >= 0))
    if bad.size:
        i, m = bad[0]
        raise EigdistError(f"sensitivity of item {items[i]!r} under layer {layers[m]!r} is {float(s[i, m])!r}; "
                           f"s must be a number >= 0")
    dead = [layers[m] for m in range(len(layers)) if not (s[:, m] > 0).any()]
    if dead:
        raise EigdistError(f"layer {dead[0]!r} has s = 0 at every item: it predicts chance everywhere and "
                           f"has no scale to fit")
    return s


def scale_grid(s: np.ndarray, alpha_min: float, alpha_max: float, n_k: int) -> np.ndarray:
    """ln k grid of each layer: its typical item's threshold k / √s̃_m spans [α_min / 10, 10 α_max].

    s̃_m is the geometric mean of layer m's positive sensitivities. The same span in threshold units for
    every layer keeps the prior even-handed: a layer listed twice gets the same grid.
    """
    with np.errstate(divide="ignore"):
        logs = np.where(s > 0, np.log(np.where(s > 0, s, 1.0)), np.nan)
    half_log_s = 0.5 * np.nanmean(logs, axis=0)
    span = np.linspace(math.log(alpha_min / 10.0), math.log(alpha_max * 10.0), n_k)
    return half_log_s[:, None] + span[None, :]


def shift_kernel(log_k: np.ndarray, item_sd: float) -> np.ndarray:
    """S[k, k'] = Σ_j w_j [clip(k + j) = k']: an item's scale index k' given its layer's k.

    An item's ln threshold deviates from its layer's prediction by δ ~ N(0, τ²), τ = ``item_sd``; δ is
    discretised on the ln k grid's own step Δ (δ = jΔ, |j| ≤ ⌈3τ/Δ⌉, w_j ∝ exp(−(jΔ)² / 2τ²), Σ w_j = 1),
    so a deviation is a shift of the scale index and needs no new table; shifts past the grid's ends stop
    at its last point. τ = 0 gives the identity (every item exactly on its layer's prediction).
    """
    n_k = log_k.shape[1]
    step = float(log_k[0, 1] - log_k[0, 0]) if n_k > 1 else math.inf
    reach = math.ceil(3 * item_sd / step) if item_sd > 0 else 0
    j = np.arange(-reach, reach + 1)
    w = np.exp(-0.5 * (j * step / item_sd) ** 2) if item_sd > 0 else np.ones(1)
    spread = np.zeros((n_k, n_k))
    np.add.at(spread, (np.repeat(np.arange(n_k), j.size), np.clip(np.arange(n_k)[:, None] + j, 0, n_k - 1).ravel()),
              np.tile(w / w.sum(), n_k))
    return spread


def make_grid(
    s: np.ndarray, layers: Sequence[str], items: Sequence[str], ceilings: Sequence[float], *,
    n_alternatives: int = 2, n_alpha: int = 30, n_k: int = 40, alpha_min: float | None = None,
    slope: float = SLOPE, lapses: Sequence[float] = LAPSES, item_sd: float = ITEM_SD,
) -> ModelGrid:
    """Check the inputs and tabulate P(correct) of every (item, α ≤ its ceiling) × (layer, k).

    Parameters
    ----------
    s
        Sensitivities, shape (items, layers).
    layers, items
        Their names.
    ceilings
        Each item's largest α (the design's ``alpha_ceiling``); the α grid ends at the largest.
    n_alternatives
        2 or 3; the guess rate is ``1 / n_alternatives``.
    n_alpha, n_k
        Points of the α grid and of each layer's ln k grid.
    alpha_min
        The α grid's start; None: the largest ceiling / 1000 (three decades, as the QUEST+ track).
    slope, lapses
        The fixed Weibull slope and the lapse grid (each in [0, 0.5)).
    item_sd
        τ ≥ 0, the sd of an item's ln threshold about its layer's prediction (:func:`shift_kernel`).

    Raises
    ------
    EigdistError
        Fewer than two layers, a bad shape or sensitivity, a layer with s = 0 everywhere, a ceiling that
        is not > 0, a lapse outside [0, 0.5), an item_sd that is not ≥ 0, no candidate below the ceilings;
        the message names the value.
    """
    s = _check_s(s, layers, items)
    ceilings = np.asarray(ceilings, dtype=float)
    if ceilings.shape != (len(items),) or not (ceilings > 0).all() or not np.isfinite(ceilings).all():
        raise EigdistError(f"ceilings must be {len(items)} finite numbers > 0 (one per item), got {ceilings!r}")
    if n_alternatives not in (2, 3):
        raise EigdistError(f"n_alternatives must be 2 or 3, got {n_alternatives!r}")
    lapses = tuple(float(x) for x in lapses)
    if not lapses or not all(0.0 <= x < 0.5 for x in lapses):
        raise EigdistError(f"lapses must be a non-empty list of numbers in [0, 0.5), got {lapses!r}")
    if isinstance(item_sd, bool) or not isinstance(item_sd, (int, float)) or not 0 <= item_sd < math.inf:
        raise EigdistError(f"item_sd must be a finite number >= 0, got {item_sd!r}")
    alpha_max = float(ceilings.max())
    alpha_min = alpha_max / 1000.0 if alpha_min is None else float(alpha_min)
    if not 0 < alpha_min < alpha_max:
        raise EigdistError(f"alpha_min must lie in (0, {alpha_max}) (the largest ceiling), got {alpha_min!r}")
    alphas = np.logspace(math.log10(alpha_min), math.log10(alpha_max), n_alpha)
    item_idx, alpha_idx = np.nonzero(alphas[None, :] <= ceilings[:, None] * (1 + 1e-12))
    if item_idx.size == 0:
        raise EigdistError(f"no (item, α) candidate: every ceiling is below alpha_min = {alpha_min}")
    log_k = scale_grid(s, alpha_min, alpha_max, n_k)
    cand_alpha = alphas[alpha_idx]
    level = cand_alpha[None, :, None, None] * np.sqrt(s[item_idx].T)[:, :, None, None]
    table = weibull(level, np.exp(log_k)[:, None, :, None], slope, 1.0 / n_alternatives, np.asarray(lapses))
    return ModelGrid(tuple(layers), tuple(items), s, alphas, log_k, item_idx, cand_alpha,
                     np.ascontiguousarray(table.reshape(len(layers), len(cand_alpha), -1)), 1.0 / n_alternatives,
                     slope, lapses, float(item_sd))


def _entropy(p: np.ndarray) -> np.ndarray:
    """Binary entropy in nats, 0 at p ∈ {0, 1}."""
    q = np.clip(p, 1e-300, 1.0)
    r = np.clip(1.0 - p, 1e-300, 1.0)
    return -(p * np.log(q) + (1.0 - p) * np.log(r))


@dataclass
class ModelTrack:
    """The posterior over (layer, ln k, λ), each tested item's own evidence, and the history behind them.

    Attributes
    ----------
    grid : ModelGrid
        The fixed tables.
    log_post : numpy.ndarray
        Unnormalised log posterior over (layer, k × λ), shape (layers, n_k × n_lapses): Σ_v ln M_v, the
        items' marginal likelihoods (δ_v integrated out); starts uniform.
    item_loglik : dict of int to numpy.ndarray
        ℓ_v(m, k', λ): the log likelihood of item v's responses at each scale index k' (the item's own,
        deviation included), shape (layers, n_k × n_lapses), for each item with a trial.
    item_logm : dict of int to numpy.ndarray
        ln M_v(m, k, λ) = ln Σ_k' S[k, k'] exp ℓ_v(m, k', λ) of the same items.
    history : list of (int, float, bool)
        (item index, α, correct) fed to :meth:`update`.
    """

    grid: ModelGrid
    log_post: np.ndarray = field(default=None)  # type: ignore[assignment]
    item_loglik: dict[int, np.ndarray] = field(default_factory=dict)
    item_logm: dict[int, np.ndarray] = field(default_factory=dict)
    history: list[tuple[int, float, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.log_post is None:
            self.log_post = np.zeros(self.grid.table.shape[::2])
        with np.errstate(divide="ignore"):
            self._log_spread = np.log(self.grid.spread)

    @property
    def n_trials(self) -> int:
        return len(self.history)

    def joint(self) -> np.ndarray:
        """P(m, (k, λ)), normalised."""
        p = np.exp(self.log_post - self.log_post.max())
        return p / p.sum()

    def layer_probabilities(self) -> np.ndarray:
        """P(m): the posterior of each layer, k and λ marginalised."""
        return self.joint().sum(axis=1)

    def map_layer(self) -> tuple[str, float]:
        """The most probable layer (the first on ties) and its probability."""
        p = self.layer_probabilities()
        m = int(np.argmax(p))
        return self.grid.layers[m], float(p[m])

    def decided(self, stop_at: float = STOP_AT) -> bool:
        """Whether one layer's posterior has reached ``stop_at``."""
        return self.map_layer()[1] >= stop_at

    def _by_k(self, a: np.ndarray) -> np.ndarray:
        """(..., layers, n_k × n_lapses) viewed as (..., layers, n_k, n_lapses)."""
        return a.reshape(*a.shape[:-1], self.grid.log_k.shape[1], -1)

    def update(self, item: int, alpha: float, correct: bool) -> None:
        """Multiply in the likelihood of one response (α may be any value > 0, not only the grid's).

        The response enters item v's ℓ_v; ln M_v is recomputed (a log-sum-exp over the item's deviation)
        and replaces the old one in the posterior.
        """
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)) or not 0 <= item < len(self.grid.items):
            raise EigdistError(f"item must be an index in [0, {len(self.grid.items)}), got {item!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (0 < alpha < math.inf):
            raise EigdistError(f"alpha must be a finite number > 0, got {alpha!r}")
        item = int(item)
        p = self.grid.p_correct(item, float(alpha))
        # clipped: with λ = 0 an error far above threshold has likelihood 0 and must not empty the posterior
        loglik = self.item_loglik.get(item, 0.0) + np.log(np.clip(p if correct else 1.0 - p, 1e-300, 1.0))
        terms = self._log_spread[None, :, :, None] + self._by_k(loglik)[:, None, :, :]  # (m, k, k', λ)
        top = terms.max(axis=2)
        logm = (top + np.log(np.exp(terms - top[:, :, None, :]).sum(axis=2))).reshape(loglik.shape)
        self.log_post = self.log_post + (logm - self.item_logm.get(item, 0.0))
        self.log_post -= self.log_post.max()
        self.item_loglik[item], self.item_logm[item] = loglik, logm
        self.history.append((item, float(alpha), bool(correct)))

    def predictive_weights(self, items: Sequence[int]) -> np.ndarray:
        """W_v(m, k', λ) = P(item v's scale index k', λ | m, data) of each of ``items``, shape
        (len(items), layers, n_k × n_lapses); an item without a trial gets Σ_k S[k, k'] P(k, λ | m, data)."""
        rest = np.stack([self.log_post - self.item_logm.get(v, 0.0) for v in items])  # leave item v out
        own = np.stack([self.item_loglik.get(v, np.zeros_like(self.log_post)) for v in items])
        return self._weights(rest, own)

    def _weights(self, log_rest: np.ndarray, loglik: np.ndarray) -> np.ndarray:
        """W ∝ exp(ℓ_v(k')) Σ_k S[k, k'] exp(log_rest(k)), normalised over (k', λ) for each layer."""
        rest = np.exp(log_rest - log_rest.max(axis=2, keepdims=True))
        # Σ_k S[k, k'] rest(k): a rest below 1e-308 of its top counts as 0 (the top's k' stays positive)
        reach = np.tensordot(self._by_k(rest), self.grid.spread, axes=([2], [0]))  # (items, m, λ, k')
        with np.errstate(divide="ignore"):
            log_w = np.log(reach.transpose(0, 1, 3, 2)).reshape(rest.shape) + loglik
        w = np.exp(log_w - log_w.max(axis=2, keepdims=True))
        return w / w.sum(axis=2, keepdims=True)

    def information(self, among: ModelGrid | None = None) -> np.ndarray:
        """I(m; y | c) of every candidate c of ``among`` (a :meth:`ModelGrid.subset`; None: all), in nats.

        Candidates of items without a trial share one predictive weight; each tested item has its own.
        """
        grid = among or self.grid
        pm = self.layer_probabilities()
        untested = self._weights(self.log_post[None], np.zeros((1, *self.log_post.shape)))[0]
        p_m = np.matmul(grid.table, untested[:, :, None])[:, :, 0]  # (layers, candidates)
        tested = np.fromiter(self.item_loglik, dtype=int, count=len(self.item_loglik))
        first, last = np.searchsorted(grid.cand_item, tested, "left"), np.searchsorted(grid.cand_item, tested, "right")
        shown = first < last
        if shown.any():
            weights = self.predictive_weights(tested[shown])
            for w, a, b in zip(weights, first[shown], last[shown]):
                p_m[:, a:b] = np.matmul(grid.table[:, a:b, :], w[:, :, None])[:, :, 0]
        return _entropy(pm @ p_m) - pm @ _entropy(p_m)

    def choose(self, among: ModelGrid | None = None) -> tuple[int, float]:
        """The (item index, α) of largest expected information about the layer; no side effects.

        ``among``: choose only among the candidates of this :meth:`ModelGrid.subset` (None: all).
        """
        grid = among or self.grid
        c = int(np.argmax(self.information(grid)))
        return int(grid.cand_item[c]), float(grid.cand_alpha[c])

    def choose_random(self, rng: np.random.Generator) -> tuple[int, float]:
        """A uniformly random candidate: the baseline the information rule is measured against."""
        c = int(rng.integers(len(self.grid.cand_item)))
        return int(self.grid.cand_item[c]), float(self.grid.cand_alpha[c])


def rebuild(grid: ModelGrid, trials: Iterable[tuple[int, float, bool]]) -> ModelTrack:
    """A track fed the saved ``(item index, α, correct)`` trials in order: equal to the unbroken one."""
    track = ModelTrack(grid)
    for item, alpha, correct in trials:
        track.update(item, alpha, correct)
    return track


def set_layers(manifest: dict) -> list[tuple[str, str, str]]:
    """The set's own layers as (model, layer, weights), in config order; at least two.

    Raises
    ------
    EigdistError
        For a set with fewer than two layers, naming them.
    """
    layers = [(*m["spec"].split(":", 1), m["weights"]) for m in manifest["config"]["models"]]
    if len(layers) < 2:
        names = ", ".join(f"{mo}:{la} ({w})" for mo, la, w in layers) or "none"
        raise EigdistError(f"track kind 'models' needs a stimulus set with at least two layers to tell apart; "
                           f"this one has {len(layers)}: {names}")
    return layers


def grid_for_set(manifest: dict, table: dict[str, list], n_alternatives: int, **options) -> ModelGrid:
    """The models track's grid of a stimulus set: its items, their ceilings, its layers' sensitivities.

    ``table`` is the set's sensitivity table (:func:`eigdist_core.sensitivities.read_table`); ``options``
    go to :func:`make_grid` (n_alpha, n_k, alpha_min, slope, lapses).
    """
    layers = set_layers(manifest)
    conds = conditions(manifest)
    items = [c.item_id for c in conds]
    return make_grid(sensitivity_matrix(table, items, layers), [f"{mo}:{la} ({w})" for mo, la, w in layers],
                     items, [c.alpha_ceiling for c in conds], n_alternatives=n_alternatives, **options)


def open_grid(folder: str | Path, manifest: dict, n_alternatives: int, **options) -> ModelGrid:
    """:func:`grid_for_set` of the set in ``folder``, reading (and checking) its sensitivity table.

    Raises
    ------
    EigdistError
        A set with fewer than two layers, or without a valid sensitivity table (the message says how to add
        one).
    """
    from eigdist_core.sensitivities import SensitivityError, read_table  # imports torch: only when a set opens

    set_layers(manifest)
    try:
        table = read_table(folder, manifest)
    except SensitivityError as exc:
        raise EigdistError(f"track kind 'models' needs the set's sensitivity table: {exc}") from None
    return grid_for_set(manifest, table, n_alternatives, **options)


def sensitivity_matrix(table: dict[str, list], items: Sequence[str],
                       layers: Sequence[tuple[str, str, str]]) -> np.ndarray:
    """The (items, layers) matrix of s from a sensitivity table's columns (``read_table``'s output).

    ``layers`` are (model, layer, weights) triples; every (item, layer) must have a row.
    """
    where = {(i, mo, la, w): s for i, mo, la, w, s in
             zip(table["item_id"], table["model"], table["layer"], table["weights"], table["s"])}
    out = np.empty((len(items), len(layers)))
    for i, item in enumerate(items):
        for m, key in enumerate(layers):
            if (item, *key) not in where:
                raise EigdistError(f"sensitivity table has no row for item {item!r} under "
                                   f"{key[0]}:{key[1]} ({key[2]})")
            out[i, m] = where[(item, *key)]
    return out


def run_simulated(grid: ModelGrid, observe, *, budget: int, stop_at: float = STOP_AT,
                  rng: np.random.Generator | None = None) -> ModelTrack:
    """Run a track against ``observe(item, α) -> correct`` until one layer reaches ``stop_at`` or the budget.

    With ``rng`` the candidates are drawn at random (the baseline); without, by :meth:`ModelTrack.choose`.
    """
    track = ModelTrack(grid)
    while track.n_trials < budget and not track.decided(stop_at):
        item, alpha = track.choose() if rng is None else track.choose_random(rng)
        track.update(item, alpha, observe(item, alpha))
    return track
